//! Supervisor: owns one WorkerActor per schema and decides their fate.
//!
//! actix's own `Supervisor` restarts the same actor at once, forever, and
//! tells no one; here each worker reports its end with [`WorkerExited`], and
//! the restart policy (see `policy`) decides whether a fresh worker starts,
//! after which delay, or whether the worker is given up, and whether that
//! stops the service. Workers are keyed
//! by schema and numbered per schema (1 for a schema's first worker, 2 for
//! the next, never reused), so the report of a worker that was already
//! replaced or retired is never mistaken for the current one: a report is
//! matched on (schema, generation).
//!
//! Which workers there are follows a desired set of schemas: every source
//! of it (the settings, at start and at each reload; with `workers.match`,
//! the [`Discovery`] it starts, at each rescan) goes through
//! `Supervisor::reconcile`, which asks [`reconcile::plan`] what to start,
//! retire, revive, restart or tell, and carries that out. A retired
//! worker's `worker_stopped` says why (`reason`).
//!
//! The Supervisor also keeps the shared [`Status`] up to date (states,
//! failures, restarts) and beats a heartbeat into it every second from its
//! own mailbox, which is what `/healthz` reads: a Supervisor that stops
//! handling messages stops beating. Starting a large fleet logs its
//! progress (`workers_starting`, at most once a second) and one
//! `workers_started` line when every worker has initialised its schema.
//!
//! Shutdown is the same mechanism run to the end: every worker is asked to
//! stop, those still folding after `shutdown.grace` have their statement
//! cancelled, and when the last one has reported, the Supervisor stops and
//! with it the actor system, with the exit code the shutdown asked for.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{error, info, warn, Logger};

use crate::config_actor::SettingsChanged;
use crate::control::{Command, ControlCommand, Refused, Target};
use crate::coordination::{self, Coordinator, Leave, Ownership, UseConnector, Weights};
use crate::db::{Connector, Database, PoolMetrics};
use crate::discovery::{Discovered, Discovery, DiscoveryMetrics, RescanNow, StopDiscovery};
use crate::fleet_summary::FleetSummary;
use crate::job::{self, JobKind};
use crate::policy::{escalation, Decision, Escalation, RestartHistory};
use crate::settings::{SchemaTarget, Settings};
use crate::status::{DbHealth, Status, WorkerState, HEARTBEAT_INTERVAL};
use crate::worker::{
    reload_fold_window, worker_log, FleetHandles, FoldNow, FoldWorker, Reconfigure, SetPaused,
    Stop, WorkerError, WorkerExited, WorkerSpec, WorkerStarted,
};

pub mod reconcile;

use reconcile::{Action, Desired, Reason, SlotKind, TableKey};

/// SIGTERM or SIGINT: stop every worker, then the system.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub signal: &'static str,
}

/// How long after the cancel requests sent at the end of `shutdown.grace`
/// the Supervisor stops regardless.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

/// Fleets started at least this large log their start-up progress.
const PROGRESS_MIN_WORKERS: usize = 1000;

/// Workers told of a reload per turn of the Supervisor's mailbox: ticks
/// due meanwhile wait for one batch (about a millisecond), not for all
/// of a big fleet (10,000 at once made the first 250 ms after a reload
/// show a tick lateness p99 of 38 to 46 ms).
const RECONFIGURE_BATCH: usize = 256;
/// Workers a rescan starts per turn of the Supervisor's mailbox: ticks
/// due meanwhile wait for one batch, not for a thousand new tenants (1,000
/// started in one turn made a 250 ms window's tick lateness p99 44 ms in
/// a fleet of 10,000).
const START_BATCH: usize = 64;
/// The longest a graceful stop waits for the coordination session to
/// release its locks (they go with the process anyway).
const LEAVE_WITHIN: Duration = Duration::from_secs(1);
/// At most one progress line this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

pub struct Supervisor {
    /// systemd was told READY=1 (after the first start batch settled).
    told_ready: bool,
    last_watchdog: Option<Instant>,
    last_status_line: String,
    settings: Arc<Settings>,
    db: Database,
    /// The pool's series on `/metrics`, following `db` across reloads.
    pool_metrics: PoolMetrics,
    epoch: Instant,
    log: Logger,
    slots: BTreeMap<Arc<str>, Slot>,
    /// The table settings the workers in `slots` were started with.
    table: TableKey,
    /// Workers asked to stop because a reload or a rescan removed or
    /// replaced them, by (schema, generation), with why.
    retiring: HashMap<(Arc<str>, u64), Retiring>,
    /// With `workers.match`: the actor that rescans, numbered by `epoch`
    /// (a reload starts a new one), and what it last found.
    discovery: Option<Addr<Discovery>>,
    discovery_epoch: u64,
    discovered: Vec<Arc<str>>,
    discovery_metrics: DiscoveryMetrics,
    /// Discovered schemas whose workers departed (see `desired`).
    departures: HashMap<Arc<str>, Departure>,
    /// Paused by control messages (in memory: a restart of pgfleet
    /// forgets them): every schema, or these.
    paused_all: bool,
    paused: std::collections::HashSet<Arc<str>>,
    /// The last generation of each schema that left the configuration, so
    /// that one coming back never reuses a generation (a schema in
    /// `slots` keeps its own there).
    departed: HashMap<Arc<str>, u64>,
    /// What the workers share; made at the first spawn (it holds this
    /// actor's address).
    fleet: Option<Rc<FleetHandles>>,
    /// Running workers still to be told of the last reload (see
    /// [`RECONFIGURE_BATCH`]), and whether a batch is scheduled.
    reconfigure_queue: VecDeque<Arc<str>>,
    reconfiguring: bool,
    /// Workers a rescan found, still to be started (see [`START_BATCH`]),
    /// and whether a batch is scheduled.
    start_queue: VecDeque<SchemaTarget>,
    starting: bool,
    /// Workers started together that have not all initialised yet.
    batch: Option<StartBatch>,
    status: Status,
    summary: FleetSummary,
    shutting_down: bool,
    exit_code: i32,
    /// With `coordination.enabled`: the actor holding this instance's
    /// share, the share (None: coordination off, every schema is this
    /// instance's), whether folds may start (read by every worker), and
    /// the handovers waiting for their workers to stop.
    coordinator: Option<Addr<Coordinator>>,
    owned: Option<Arc<crate::ownership::Owned>>,
    lease: crate::lease::Lease,
    handovers: Vec<Handover>,
    /// The coordination last said this instance is a member.
    joined: bool,
    /// A shutdown's [`Leave`], on its way.
    leaving: Option<std::pin::Pin<Box<actix::dev::Request<Coordinator, Leave>>>>,
    /// The schemas per bucket the coordinator was last told, and the
    /// schema set's print.
    weights: Arc<Vec<u32>>,
    schema_set: Option<crate::ownership::SchemaSet>,
    /// Where the coordination session connects: `control.url`'s
    /// connector when set, else the database's.
    session_connector: Arc<Connector>,
}

/// Buckets given up, waiting for their workers to stop before their
/// locks are released (see `coordination`).
struct Handover {
    waiting: std::collections::HashSet<(Arc<str>, u64)>,
    done: tokio::sync::oneshot::Sender<()>,
}

/// A discovered schema's departures in a row, and until when a rescan
/// leaves it out.
struct Departure {
    count: u32,
    until: Instant,
}

/// A worker asked to stop, until it has: its target, its address (to
/// cancel its statement if the shutdown's grace runs out), and why.
type Retiring = (SchemaTarget, Addr<FoldWorker>, Stopped);

/// Why a worker stopped without failing (`worker_stopped`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// A reload no longer names it, or changed its table settings.
    Configuration,
    /// Discovery no longer finds it (dropped, renamed, its table dropped,
    /// no longer matching, now excluded, privileges revoked).
    Gone,
    /// The service stops.
    Shutdown,
    /// Another instance owns it now (`coordination`).
    HandedOver,
    /// The coordination session failed: nothing is this instance's until
    /// it has rejoined.
    CoordinationLost,
}

impl Stopped {
    fn of(why: Reason) -> Self {
        match why {
            Reason::Rescan => Stopped::Gone,
            Reason::Start | Reason::Reload => Stopped::Configuration,
            Reason::Handover => Stopped::HandedOver,
            Reason::CoordinationLost => Stopped::CoordinationLost,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Stopped::Configuration => "configuration",
            Stopped::Gone => "gone",
            Stopped::Shutdown => "shutdown",
            Stopped::HandedOver => "handed_over",
            Stopped::CoordinationLost => "coordination_lost",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Stopped::Configuration => "the configuration no longer names it",
            Stopped::Gone => {
                "workers.match no longer finds it (the schema or its table dropped or renamed, \
                 excluded, or no longer foldable: a REVOKE)"
            }
            Stopped::Shutdown => "the service stops",
            Stopped::HandedOver => "another instance owns it now (coordination)",
            Stopped::CoordinationLost => {
                "the coordination session failed: this instance folds nothing until it has rejoined"
            }
        }
    }
}

/// Why a failed worker starts again (`worker_restarted`'s `reason`).
#[derive(Clone, Copy)]
enum RestartReason {
    /// Its backoff ran out.
    Backoff,
    /// A reload came first: the operator may have fixed the cause.
    Reload,
}

struct Slot {
    target: SchemaTarget,
    /// Boxed: only a worker that failed has one (a fleet of 100,000
    /// healthy workers need not hold the room).
    history: Option<Box<RestartHistory>>,
    state: SlotState,
    /// Counted in the start batch and not initialised yet.
    awaiting_start: bool,
    /// A worker of this slot initialised the schema: it existed while
    /// pgfleet ran it, so a later worker finding it missing waits for it
    /// instead of creating it again (a tenant dropped on purpose).
    existed: bool,
}

/// Workers added at start (or by one reload) on their way to their first
/// fold: the progress of `workers_starting` and `workers_started`.
struct StartBatch {
    total: usize,
    started: usize,
    /// Given up or removed before they started.
    dropped: usize,
    began: Instant,
    last_logged: Option<Instant>,
    logged_started: usize,
}

enum SlotState {
    Running {
        addr: Addr<FoldWorker>,
        generation: u64,
        since: Instant,
    },
    /// `generation` of the worker that failed; `attempt` of the restart
    /// scheduled.
    Restarting {
        handle: SpawnHandle,
        generation: u64,
        attempt: u32,
    },
    GivenUp {
        generation: u64,
    },
}

impl SlotState {
    fn kind(&self) -> SlotKind {
        match self {
            SlotState::Running { .. } => SlotKind::Running,
            SlotState::Restarting { attempt, .. } => SlotKind::Restarting { attempt: *attempt },
            SlotState::GivenUp { .. } => SlotKind::GivenUp,
        }
    }

    fn generation(&self) -> u64 {
        match self {
            SlotState::Running { generation, .. }
            | SlotState::Restarting { generation, .. }
            | SlotState::GivenUp { generation } => *generation,
        }
    }
}

impl Supervisor {
    /// `connector` is the one built from `settings.database` where the
    /// configuration was read (see `config_actor::Loaded`).
    pub fn new(
        settings: Arc<Settings>,
        connector: Arc<Connector>,
        control: Option<Arc<Connector>>,
        log: Logger,
        status: Status,
    ) -> Self {
        let session_connector = control.unwrap_or_else(|| Arc::clone(&connector));
        let lease = if settings.coordination.enabled {
            crate::lease::Lease::coordinated()
        } else {
            crate::lease::Lease::always()
        };
        let owned = settings.coordination.enabled.then(|| {
            Arc::new(crate::ownership::Owned::nothing(
                settings.coordination.buckets,
            ))
        });
        if settings.coordination.enabled {
            status.coordination_lease(lease.clone());
            status.coordination(crate::status::CoordinationView {
                buckets: settings.coordination.buckets,
                ..Default::default()
            });
        }
        let db = Database::new(connector, &settings.database, settings.restart.delay, &log);
        let table = TableKey::from_settings(&settings);
        let pool_metrics = PoolMetrics::default();
        status.register(|registry| pool_metrics.register(registry));
        let discovery_metrics = DiscoveryMetrics::default();
        status.register(|registry| discovery_metrics.register(registry));
        Supervisor {
            told_ready: false,
            last_watchdog: None,
            last_status_line: String::new(),
            settings,
            db,
            pool_metrics,
            epoch: Instant::now(),
            log,
            slots: BTreeMap::new(),
            table,
            retiring: HashMap::new(),
            discovery: None,
            discovery_epoch: 0,
            discovered: Vec::new(),
            discovery_metrics,
            departures: HashMap::new(),
            paused_all: false,
            paused: std::collections::HashSet::new(),
            departed: HashMap::new(),
            fleet: None,
            reconfigure_queue: VecDeque::new(),
            reconfiguring: false,
            start_queue: VecDeque::new(),
            starting: false,
            batch: None,
            status,
            summary: FleetSummary::new(Instant::now()),
            shutting_down: false,
            exit_code: 0,
            coordinator: None,
            owned,
            lease,
            handovers: Vec::new(),
            joined: false,
            leaving: None,
            weights: Arc::new(Vec::new()),
            schema_set: None,
            session_connector,
        }
    }

    /// The pool `/metrics` and the health probes read from now on.
    fn watch_pool(&self) {
        self.pool_metrics.watch(&self.db);
        let db = self.db.clone();
        self.status.set_database_probe(move || db.health());
    }

    fn worker_log(&self, target: &SchemaTarget, generation: u64) -> Logger {
        worker_log(&self.log, target, generation)
    }

    fn fleet_handles(&mut self, ctx: &mut Context<Self>) -> Rc<FleetHandles> {
        let fleet = self.fleet.get_or_insert_with(|| {
            Rc::new(FleetHandles {
                epoch: self.epoch,
                supervisor: ctx.address().recipient(),
                started: ctx.address().recipient(),
                status: self.status.clone(),
                log: self.log.clone(),
                lease: self.lease.clone(),
            })
        });
        Rc::clone(fleet)
    }

    /// Starts a worker for `target`, numbered after the schema's previous
    /// one; `restart` when the restart policy starts it again.
    fn spawn_worker(
        &mut self,
        target: &SchemaTarget,
        restart: bool,
        ctx: &mut Context<Self>,
    ) -> SlotState {
        let last = match self.slots.get(&target.schema) {
            Some(slot) => slot.state.generation(),
            None => self.departed.remove(&target.schema).unwrap_or(0),
        };
        let generation = last + 1;
        let existed = self
            .slots
            .get(&target.schema)
            .is_some_and(|slot| slot.existed);
        self.status.worker_spawned(target, generation, restart);
        let spec = WorkerSpec {
            target: target.clone(),
            generation,
            naptime: self.settings.naptime,
            db: self.db.clone(),
            fleet: self.fleet_handles(ctx),
        };
        let addr = FoldWorker::new(
            spec,
            job::build(JobKind::of(&self.settings), target, &self.settings)
                .after_it_existed(existed),
        )
        .start();
        if self.paused_all || self.paused.contains(&target.schema) {
            addr.do_send(SetPaused(true));
        }
        SlotState::Running {
            addr,
            generation,
            since: Instant::now(),
        }
    }

    fn add_worker(&mut self, target: SchemaTarget, ctx: &mut Context<Self>) {
        self.count_in_start_batch();
        self.add_slot(target, ctx);
    }

    /// Starts `target` a few turns later, with others (see
    /// [`START_BATCH`]); counted in the start batch now.
    fn queue_start(&mut self, target: SchemaTarget, ctx: &mut Context<Self>) {
        self.count_in_start_batch();
        self.start_queue.push_back(target);
        if !std::mem::replace(&mut self.starting, true) {
            ctx.run_later(Duration::ZERO, |supervisor, ctx| {
                supervisor.start_queued(ctx)
            });
        }
    }

    fn start_queued(&mut self, ctx: &mut Context<Self>) {
        let batch = START_BATCH.min(self.start_queue.len());
        for target in self.start_queue.drain(..batch).collect::<Vec<_>>() {
            self.add_slot(target, ctx);
        }
        if self.start_queue.is_empty() {
            self.starting = false;
        } else {
            ctx.run_later(Duration::ZERO, |supervisor, ctx| {
                supervisor.start_queued(ctx)
            });
        }
    }

    /// Forgets the starts still queued, before a reconcile plans from the
    /// slots: it asks for those still wanted again, with the settings in
    /// force then, a batch a turn as before (starting them all at once
    /// would be the very pause [`START_BATCH`] avoids).
    fn forget_queued_starts(&mut self) {
        let queued = self.start_queue.len();
        self.start_queue.clear();
        if let Some(batch) = self.batch.as_mut() {
            batch.total = batch.total.saturating_sub(queued);
        }
    }

    fn count_in_start_batch(&mut self) {
        let batch = self.batch.get_or_insert_with(|| StartBatch {
            total: 0,
            started: 0,
            dropped: 0,
            began: Instant::now(),
            last_logged: None,
            logged_started: 0,
        });
        batch.total += 1;
    }

    fn add_slot(&mut self, target: SchemaTarget, ctx: &mut Context<Self>) {
        let state = self.spawn_worker(&target, false, ctx);
        self.slots.insert(
            Arc::clone(&target.schema),
            Slot {
                target,
                history: None,
                state,
                awaiting_start: true,
                existed: false,
            },
        );
    }

    /// A worker of the start batch started (`true`), or will not (given
    /// up, removed); the last one logs `workers_started`.
    fn settle(&mut self, started: bool) {
        let Some(batch) = self.batch.as_mut() else {
            return;
        };
        if started {
            batch.started += 1;
        } else {
            batch.dropped += 1;
        }
        self.finish_start_batch_if_done();
    }

    /// The start batch is over when each of its workers started or will
    /// not: `workers_started`, and READY=1 the first time.
    fn finish_start_batch_if_done(&mut self) {
        let Some(batch) = self.batch.as_ref() else {
            return;
        };
        if batch.started + batch.dropped < batch.total {
            return;
        }
        let (workers, given_up) = (batch.started, batch.dropped);
        let elapsed_ms = batch.began.elapsed().as_millis() as u64;
        self.batch = None;
        self.tell_ready();
        if workers + given_up == 0 {
            return;
        }
        if given_up == 0 {
            info!(self.log, "{workers} workers started in {elapsed_ms} ms";
                "event" => "workers_started", "workers" => workers, "elapsed_ms" => elapsed_ms);
        } else {
            info!(self.log, "{workers} workers started in {elapsed_ms} ms; {given_up} did not";
                "event" => "workers_started", "workers" => workers, "not_started" => given_up,
                "elapsed_ms" => elapsed_ms);
        }
    }

    /// systemd's watchdog, fed from the heartbeat (so it stops when the
    /// actor thread hangs), and `STATUS=` when the summary changed.
    fn tell_systemd(&mut self) {
        if !crate::notify::active() {
            return;
        }
        if let Some(every) = crate::notify::watchdog_interval() {
            let now = Instant::now();
            if self
                .last_watchdog
                .is_none_or(|last| now.duration_since(last) >= every)
            {
                self.last_watchdog = Some(now);
                crate::notify::tell(crate::notify::Note::Watchdog);
            }
        }
        let line = self.status_line();
        if self.last_status_line != line {
            self.last_status_line.clone_from(&line);
            crate::notify::tell(crate::notify::Note::Status(line));
        }
    }

    /// One line for systemd's `STATUS=`: `folding 3000 schemas, 0 failing`,
    /// or, while nothing can fold, `3000 schemas waiting for the database
    /// at app@db:5432/app (sslmode=prefer): unreachable`.
    fn status_line(&self) -> String {
        let summary = self.status.summary();
        let count = |state| summary.by_state.get(&state).copied().unwrap_or(0);
        let failing = count(WorkerState::Restarting) + count(WorkerState::GivenUp);
        let workers = summary.workers;
        match summary.database {
            Some(DbHealth::Unreachable { server, .. }) => {
                format!("{workers} schemas waiting for the database at {server}: unreachable")
            }
            Some(DbHealth::Refused { server, kind, .. }) => format!(
                "{workers} schemas waiting for the database at {server}: it refuses pgfleet ({kind})"
            ),
            Some(DbHealth::Unknown) => {
                format!("{workers} schemas, {failing} failing; database: no answer yet")
            }
            Some(DbHealth::Up) | None => format!("folding {workers} schemas, {failing} failing"),
        }
    }

    /// Every [`HEARTBEAT_INTERVAL`], from the mailbox: `/healthz`, and the
    /// progress of a large start.
    fn on_heartbeat(&mut self) {
        // The tests freeze the actor thread here to see /healthz fail.
        crate::test_hooks::pause("heartbeat");
        self.status.heartbeat();
        self.tell_systemd();
        let every = self.settings.log.summary_every;
        self.summary
            .tick(&self.status, every, Instant::now(), &self.log);
        let Some(batch) = self.batch.as_mut() else {
            return;
        };
        let now = Instant::now();
        // The heartbeat comes every second, give or take a millisecond.
        let every = PROGRESS_EVERY.mul_f64(0.9);
        let due = batch
            .last_logged
            .map_or(now.duration_since(batch.began) >= every, |last| {
                now.duration_since(last) >= every
            });
        if batch.total >= PROGRESS_MIN_WORKERS && due && batch.started != batch.logged_started {
            batch.last_logged = Some(now);
            batch.logged_started = batch.started;
            info!(self.log, "started {}/{} workers", batch.started, batch.total;
                "event" => "workers_starting", "started" => batch.started, "workers" => batch.total);
        }
    }

    /// Starts a failed worker again: its backoff ran out, or a reload came
    /// first.
    fn restart_worker(
        &mut self,
        schema: &str,
        attempt: u32,
        reason: RestartReason,
        ctx: &mut Context<Self>,
    ) {
        let Some(target) = self
            .slots
            .get(schema)
            .filter(|slot| matches!(slot.state, SlotState::Restarting { .. }))
            .map(|slot| slot.target.clone())
        else {
            return;
        };
        let state = self.spawn_worker(&target, true, ctx);
        let generation = match &state {
            SlotState::Running { generation, .. } => *generation,
            _ => 0,
        };
        if let Some(slot) = self.slots.get_mut(schema) {
            slot.state = state;
        }
        let (why, reason) = match reason {
            RestartReason::Backoff => ("", "backoff"),
            RestartReason::Reload => (" at once: a reload may have fixed its cause", "reload"),
        };
        info!(self.worker_log(&target, generation), "{} restarted{why} (attempt {attempt})", target.worker;
            "event" => "worker_restarted", "attempt" => attempt, "reason" => reason);
    }

    /// Stops a worker on purpose (its schema left the configuration or the
    /// database, or its table settings changed).
    fn retire(&mut self, schema: &str, why: Stopped, ctx: &mut Context<Self>) {
        let Some(slot) = self.slots.remove(schema) else {
            return;
        };
        self.departed
            .insert(Arc::clone(&slot.target.schema), slot.state.generation());
        // A pause goes with the schema when another instance is to fold
        // it; a schema that comes back here later is still paused.
        if !matches!(why, Stopped::HandedOver | Stopped::CoordinationLost) {
            self.paused.remove(schema);
        }
        self.status.worker_removed(schema);
        if slot.awaiting_start {
            self.settle(false);
        }
        match slot.state {
            SlotState::Running {
                addr, generation, ..
            } => {
                addr.do_send(Stop {
                    cancel_in_flight: false,
                });
                self.retiring.insert(
                    (Arc::clone(&slot.target.schema), generation),
                    (slot.target, addr, why),
                );
            }
            SlotState::Restarting {
                handle, generation, ..
            } => {
                ctx.cancel_future(handle);
                self.log_stopped(&slot.target, generation, why.as_str(), why.describe());
            }
            SlotState::GivenUp { generation } => {
                self.log_stopped(&slot.target, generation, why.as_str(), why.describe())
            }
        }
    }

    fn log_stopped(&self, target: &SchemaTarget, generation: u64, reason: &str, why: &str) {
        info!(self.worker_log(target, generation), "{} stopped: {why}", target.worker;
            "event" => "worker_stopped", "reason" => reason.to_owned());
    }

    /// With `workers.match`, starts rescanning (at start, and after each
    /// reload, with the new settings: a reload rescans at once); without,
    /// forgets what was found. A rescan already on its way from the old
    /// actor is ignored (its epoch is not current).
    fn start_discovery(&mut self, ctx: &mut Context<Self>) {
        if let Some(old) = self.discovery.take() {
            old.do_send(StopDiscovery);
        }
        self.discovery_epoch += 1;
        if !self.settings.discovers() {
            self.discovered.clear();
            return;
        }
        let discovery = Discovery::new(
            self.discovery_epoch,
            &self.settings,
            self.db.clone(),
            ctx.address().recipient(),
            &self.log,
            self.discovery_metrics.clone(),
        );
        self.discovery = Some(discovery.start());
    }

    /// What the settings name and discovery found, but for the schemas
    /// whose workers departed a short while ago (see
    /// [`policy::departure_delay`](crate::policy::departure_delay)).
    ///
    /// With coordination, only the schemas of the buckets this instance
    /// holds.
    fn desired(&self) -> Desired {
        let mut desired = self.wanted();
        if let Some(owned) = &self.owned {
            desired.targets.retain(|target| owned.owns(&target.schema));
        }
        desired
    }

    /// [`Supervisor::desired`] before ownership: every instance's.
    fn wanted(&self) -> Desired {
        let now = Instant::now();
        if self.departures.values().all(|d| d.until <= now) {
            return Desired::with_discovered(&self.settings, &self.discovered);
        }
        let discovered: Vec<Arc<str>> = self
            .discovered
            .iter()
            .filter(|schema| self.departures.get(*schema).is_none_or(|d| d.until <= now))
            .cloned()
            .collect();
        Desired::with_discovered(&self.settings, &discovered)
    }

    fn on_failure(
        &mut self,
        schema: &str,
        generation: u64,
        since: Instant,
        error: WorkerError,
        ctx: &mut Context<Self>,
    ) {
        let Some(target) = self.slots.get(schema).map(|slot| slot.target.clone()) else {
            return;
        };
        let log = self.worker_log(&target, generation);
        let Some(slot) = self.slots.get_mut(schema) else {
            return;
        };
        let worker = slot.target.worker.clone();
        let error_text = error.to_string();
        self.status.worker_failed(schema, generation, &error_text);
        error!(log, "{worker} failed: {error_text}"; "event" => "worker_failed", "error" => error_text.clone());
        let decision = slot.history.get_or_insert_default().on_failure(
            &self.settings.restart,
            Instant::now(),
            since.elapsed(),
            rand::random(),
        );
        match decision {
            Decision::Restart { attempt, delay } => {
                let delay_ms = delay.as_millis() as u64;
                info!(log, "{worker} will restart in {delay_ms} ms (attempt {attempt})";
                    "event" => "worker_restart_scheduled", "attempt" => attempt, "delay_ms" => delay_ms);
                self.status.worker_restarting(schema, generation, delay);
                let schema = schema.to_owned();
                let handle = ctx.run_later(delay, move |supervisor, ctx| {
                    supervisor.restart_worker(&schema, attempt, RestartReason::Backoff, ctx);
                });
                slot.state = SlotState::Restarting {
                    handle,
                    generation,
                    attempt,
                };
            }
            Decision::GiveUp { reason } => {
                error!(log, "{worker} given up: {reason}"; "event" => "worker_given_up", "reason" => reason.clone());
                self.status.worker_given_up(schema, generation, &reason);
                slot.state = SlotState::GivenUp { generation };
                if std::mem::take(&mut slot.awaiting_start) {
                    self.settle(false);
                }
                match escalation(&self.settings.restart, target.origin) {
                    Escalation::None => {}
                    Escalation::StopService { exit_code } => {
                        error!(self.log, "restart.escalate is true: stopping the service because {worker} was given up";
                            "event" => "shutdown_started", "signal" => "escalation");
                        self.begin_shutdown(exit_code, ctx);
                    }
                }
            }
        }
    }

    fn apply(
        &mut self,
        settings: Arc<Settings>,
        connector: Arc<Connector>,
        ctx: &mut Context<Self>,
    ) {
        // coordination.* is read at start: the fence every worker takes,
        // the buckets the weights are counted in, stay what the other
        // instances use until this one restarts.
        let settings = if settings.coordination == self.settings.coordination {
            settings
        } else {
            warn!(self.log, "coordination.* changed: it applies at the next start; this instance goes on \
                             with the coordination it started with";
                "event" => "config_needs_restart", "key" => "coordination");
            let mut kept = (*settings).clone();
            kept.coordination = self.settings.coordination.clone();
            if kept.coordination.enabled
                && kept.control.url.expose().is_empty()
                && kept.database.pooler == crate::settings::PoolerMode::Transaction
            {
                error!(self.log, "coordination stays on until the next start, but database.url now goes through a \
                                  transaction-mode pooler (database.pooler: transaction) and control.url is empty: the \
                                  coordination session cannot join there, and this instance folds nothing; set control.url \
                                  to a direct URL, or restart with the new configuration";
                    "event" => "config_needs_restart", "key" => "coordination");
            }
            Arc::new(kept)
        };
        let old = std::mem::replace(&mut self.settings, settings);
        let new = Arc::clone(&self.settings);
        self.status.configure(&new);
        if old.http.listen != new.http.listen {
            warn!(self.log, "http.listen changed from {:?} to {:?}: it applies at the next start; \
                             the endpoints stay on {:?} until then", old.http.listen, new.http.listen, old.http.listen;
                "event" => "config_needs_restart", "key" => "http.listen");
        }
        if old.database != new.database {
            // Workers move to the new pool with the Reconfigure that the
            // reconcile below sends; the old pool closes when its last
            // connection is returned.
            self.db = Database::new(connector, &new.database, new.restart.delay, &self.log);
            self.watch_pool();
        } else if old.restart.delay != new.restart.delay {
            self.db.set_probe_interval(new.restart.delay);
        }
        // Discovery starts afresh (and rescans at once) only when what it
        // looks for, or where, changed: a fresh one vets every schema
        // again.
        let (was, is) = (&old.workers, &new.workers);
        if (
            was.matching.as_slice(),
            was.exclude.as_slice(),
            &was.table,
            was.rescan,
        ) != (
            is.matching.as_slice(),
            is.exclude.as_slice(),
            &is.table,
            is.rescan,
        ) || old.database != new.database
        {
            if was.table != is.table {
                // Found with the old table: the new discovery says.
                self.discovered.clear();
            }
            self.start_discovery(ctx);
        }
        self.reconcile(self.desired(), Reason::Reload, ctx);
    }

    /// Brings the workers to `desired`, for `why`: the one way workers
    /// join or leave the fleet (the restart policy and shutdown aside),
    /// whatever the set's source. [`reconcile::plan`] decides; this only
    /// carries it out.
    fn reconcile(&mut self, desired: Desired, why: Reason, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        self.share_weights();
        self.forget_queued_starts();
        let slots = self
            .slots
            .values()
            .map(|slot| (&slot.target, slot.state.kind()));
        let actions = reconcile::plan(&self.table, slots, &desired, why);
        self.table = desired.table;
        for action in actions {
            match action {
                Action::Retire { schema } => self.retire(&schema, Stopped::of(why), ctx),
                // A rescan's new tenants start a batch a turn; the
                // settings' workers at once.
                Action::Start { target } if why != Reason::Start && why != Reason::Reload => {
                    self.queue_start(target, ctx)
                }
                Action::Start { target } => self.add_worker(target, ctx),
                Action::Revive { schema } => self.revive(&schema, ctx),
                Action::RestartNow { schema, attempt } => {
                    if let Some(SlotState::Restarting { handle, .. }) =
                        self.slots.get(&schema).map(|slot| &slot.state)
                    {
                        ctx.cancel_future(*handle);
                    }
                    self.restart_worker(&schema, attempt, RestartReason::Reload, ctx);
                }
                // Every running worker, the ones still waiting from an
                // earlier reload included: each is told the settings
                // current when its batch goes, so none sees an older
                // reload after a newer one.
                Action::Reconfigure { schemas } => {
                    self.reconfigure_queue = schemas.into();
                    if !std::mem::replace(&mut self.reconfiguring, true) {
                        self.reconfigure_batch(ctx);
                    }
                }
            }
        }
        // Forgotten queued starts the plan did not ask for again may have
        // been the last the batch waited for.
        self.finish_start_batch_if_done();
    }

    /// Starts a given-up worker afresh, its restart history forgotten.
    fn revive(&mut self, schema: &str, ctx: &mut Context<Self>) {
        let Some(target) = self
            .slots
            .get(schema)
            .filter(|slot| matches!(slot.state, SlotState::GivenUp { .. }))
            .map(|slot| slot.target.clone())
        else {
            return;
        };
        let state = self.spawn_worker(&target, false, ctx);
        if let Some(slot) = self.slots.get_mut(schema) {
            slot.history = None;
            slot.state = state;
        }
    }

    /// Tells the next [`RECONFIGURE_BATCH`] running workers of the reload,
    /// then lets the thread run what is due before the next batch.
    fn reconfigure_batch(&mut self, ctx: &mut Context<Self>) {
        let batch = RECONFIGURE_BATCH.min(self.reconfigure_queue.len());
        for schema in self.reconfigure_queue.drain(..batch) {
            if let Some(SlotState::Running { addr, .. }) =
                self.slots.get(&schema).map(|slot| &slot.state)
            {
                addr.do_send(Reconfigure {
                    naptime: self.settings.naptime,
                    settings: Arc::clone(&self.settings),
                    db: self.db.clone(),
                    reload_window: reload_fold_window(self.slots.len(), self.settings.naptime),
                });
            }
        }
        if self.reconfigure_queue.is_empty() {
            self.reconfiguring = false;
        } else {
            ctx.run_later(Duration::ZERO, |supervisor, ctx| {
                supervisor.reconfigure_batch(ctx)
            });
        }
    }

    fn begin_shutdown(&mut self, exit_code: i32, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        crate::notify::tell(crate::notify::Note::Stopping);
        self.shutting_down = true;
        // The buckets go to the others now, not after the last fold here
        // has ended: a fold still running is fenced, and none starts
        // (the lease is revoked).
        // Sent now (`send` puts it in the coordinator's mailbox at once);
        // its answer is awaited when the last worker has stopped.
        if let Some(coordinator) = self.coordinator.take() {
            self.leaving = Some(Box::pin(coordinator.send(Leave)));
        }
        if let Some(discovery) = self.discovery.take() {
            discovery.do_send(StopDiscovery);
        }
        self.exit_code = exit_code;
        self.status.shutting_down();
        self.batch = None;
        self.reconfigure_queue.clear();
        self.start_queue.clear();
        let schemas: Vec<Arc<str>> = self.slots.keys().cloned().collect();
        for schema in schemas {
            let Some(slot) = self.slots.get(&schema) else {
                continue;
            };
            match &slot.state {
                SlotState::Running { addr, .. } => addr.do_send(Stop {
                    cancel_in_flight: false,
                }),
                SlotState::Restarting { handle, .. } => {
                    ctx.cancel_future(*handle);
                    self.slots.remove(&schema);
                    self.status.worker_removed(&schema);
                }
                SlotState::GivenUp { .. } => {
                    self.slots.remove(&schema);
                    self.status.worker_removed(&schema);
                }
            }
        }
        let grace = self.settings.shutdown.grace;
        ctx.run_later(grace, |supervisor, ctx| {
            let still_folding = supervisor.slots.len() + supervisor.retiring.len();
            warn!(supervisor.log, "shutdown.grace elapsed: cancelling {still_folding} statements in flight";
                "event" => "shutdown_cancelling", "workers" => still_folding);
            for slot in supervisor.slots.values() {
                if let SlotState::Running { addr, .. } = &slot.state {
                    addr.do_send(Stop { cancel_in_flight: true });
                }
            }
            for (_, addr, _) in supervisor.retiring.values() {
                addr.do_send(Stop { cancel_in_flight: true });
            }
            ctx.run_later(CANCEL_WAIT, |_, ctx| ctx.stop());
        });
        self.finish_shutdown_if_done(ctx);
    }

    fn finish_shutdown_if_done(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down && self.slots.is_empty() && self.retiring.is_empty() {
            // The buckets' release, sent when the shutdown began, is
            // waited for (briefly): the locks go with the process anyway.
            match self.leaving.take() {
                Some(leaving) => {
                    ctx.wait(
                        async move {
                            let _ = tokio::time::timeout(LEAVE_WITHIN, leaving).await;
                        }
                        .into_actor(self)
                        .map(|(), _, ctx| ctx.stop()),
                    );
                }
                None => ctx.stop(),
            }
        }
    }

    /// Tells the coordinator how many schemas each bucket holds, when that
    /// changed (the shares are balanced by it, see `ownership::assign`).
    fn share_weights(&mut self) {
        let Some(coordinator) = &self.coordinator else {
            return;
        };
        let wanted = self.wanted();
        let names = || wanted.targets.iter().map(|target| &*target.schema);
        let weights = crate::ownership::weights(names(), self.settings.coordination.buckets);
        // The set's hash too: the same counts per bucket can hide a swap
        // of two names.
        let set = crate::ownership::SchemaSet::of(names());
        if *self.weights == weights && self.schema_set == Some(set) {
            return;
        }
        self.weights = Arc::new(weights);
        self.schema_set = Some(set);
        coordinator.do_send(Weights {
            weights: Arc::clone(&self.weights),
            set,
        });
    }

    /// READY=1 for systemd, once: the first start batch settled, and,
    /// sharing the fleet, this instance is a member (so "ready" means
    /// folding what it owns).
    fn tell_ready(&mut self) {
        if self.told_ready || (self.owned.is_some() && !self.joined) {
            return;
        }
        self.told_ready = true;
        crate::notify::tell(crate::notify::Note::Ready(self.status_line()));
    }

    /// A worker retired by a handover stopped: its buckets may go once
    /// all of theirs have.
    fn handover_progress(&mut self, schema: &Arc<str>, generation: u64) {
        let key = (Arc::clone(schema), generation);
        for handover in &mut self.handovers {
            handover.waiting.remove(&key);
        }
        let (done, waiting): (Vec<Handover>, Vec<Handover>) = std::mem::take(&mut self.handovers)
            .into_iter()
            .partition(|handover| handover.waiting.is_empty());
        self.handovers = waiting;
        for handover in done {
            let _ = handover.done.send(());
        }
    }

    /// With `coordination.enabled`: the actor that holds this instance's
    /// share of the fleet.
    fn start_coordination(&mut self, ctx: &mut Context<Self>) {
        if !self.settings.coordination.enabled {
            return;
        }
        // Discovery's instances rescan at different moments: a tenant
        // found by one is unknown to another for up to a rescan.
        let differ_grace = if self.settings.discovers() {
            (self.settings.workers.rescan * 2).max(Duration::from_secs(10))
        } else {
            Duration::from_secs(10)
        };
        let coordinator = Coordinator::new(
            &self.settings.coordination,
            differ_grace,
            Arc::clone(&self.session_connector),
            ctx.address().recipient(),
            self.lease.clone(),
            &self.status,
            &self.log,
        );
        self.coordinator = Some(coordinator.start());
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.status.configure(&self.settings);
        self.status.heartbeat();
        self.watch_pool();
        ctx.run_interval(HEARTBEAT_INTERVAL, |supervisor, _| {
            supervisor.on_heartbeat()
        });
        if !self.settings.workers.schemas.is_empty() {
            info!(self.log, "workers.schemas names {} schemas; workers.total is not used",
                self.settings.workers.schemas.len(); "event" => "schemas_listed");
        }
        if self.settings.discovers() {
            let workers = &self.settings.workers;
            let exclude = if workers.exclude.is_empty() {
                String::new()
            } else {
                format!(" except {}", workers.exclude.join(", "))
            };
            info!(self.log, "workers.match: folding every schema like {}{exclude} that holds {}, rescanning every {}",
                workers.matching.join(", "), workers.table, humantime::format_duration(workers.rescan);
                "event" => "discovery_started", "match" => workers.matching.join(","),
                "exclude" => workers.exclude.join(","));
        }
        self.start_discovery(ctx);
        self.start_coordination(ctx);
        let desired = self.desired();
        self.reconcile(desired, Reason::Start, ctx);
    }

    /// The Supervisor stops when a shutdown is done, and then stops the
    /// system with the shutdown's exit code. Any other stop is a panic in
    /// it: without a Supervisor no worker would be restarted or stopped, so
    /// the service ends with exit 1 (see `panics`).
    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.status.supervisor_stopped();
        if crate::panics::essential_actor_stopped("Supervisor", self.shutting_down, &self.log) {
            return;
        }
        crate::panics::system_stopping();
        System::current().stop_with_code(self.exit_code);
    }
}

impl Handler<WorkerExited> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: WorkerExited, ctx: &mut Self::Context) {
        if let Some((target, _, why)) = self.retiring.remove(&(msg.schema.clone(), msg.generation))
        {
            self.log_stopped(&target, msg.generation, why.as_str(), why.describe());
            self.handover_progress(&msg.schema, msg.generation);
            return self.finish_shutdown_if_done(ctx);
        }
        let since = match self.slots.get(&msg.schema).map(|slot| &slot.state) {
            Some(SlotState::Running {
                generation, since, ..
            }) if *generation == msg.generation => *since,
            _ => return, // a worker already replaced
        };
        match msg.failure {
            Some(error) if !self.shutting_down => {
                self.on_failure(&msg.schema, msg.generation, since, error, ctx)
            }
            _ => {
                if let Some(slot) = self.slots.remove(&msg.schema) {
                    self.departed
                        .insert(Arc::clone(&msg.schema), msg.generation);
                    self.status.worker_removed(&msg.schema);
                    match &msg.departed {
                        // Between two rescans: the next one (asked for now)
                        // starts it again if it is back, or under its new name.
                        Some(why) => {
                            if slot.awaiting_start {
                                self.settle(false);
                            }
                            self.discovered.retain(|schema| *schema != msg.schema);
                            self.paused.remove(&msg.schema);
                            // A worker that ran a while starts the count again.
                            let ran = since.elapsed() >= self.settings.restart.reset_after;
                            let departure = self
                                .departures
                                .entry(Arc::clone(&msg.schema))
                                .or_insert(Departure {
                                    count: 0,
                                    until: Instant::now(),
                                });
                            departure.count = if ran { 1 } else { departure.count + 1 };
                            let delay = crate::policy::departure_delay(
                                &self.settings.restart,
                                departure.count,
                            );
                            departure.until = Instant::now() + delay;
                            let why = if delay.is_zero() {
                                why.clone()
                            } else {
                                format!(
                                    "{why}; it departed {} times in a row, so rescans leave it out for {}",
                                    departure.count,
                                    humantime::format_duration(delay)
                                )
                            };
                            self.log_stopped(&slot.target, msg.generation, "gone", &why);
                            if let Some(discovery) = &self.discovery {
                                discovery.do_send(RescanNow {
                                    recheck: vec![Arc::clone(&msg.schema)],
                                });
                            }
                        }
                        None => {
                            let why = Stopped::Shutdown;
                            self.log_stopped(
                                &slot.target,
                                msg.generation,
                                why.as_str(),
                                why.describe(),
                            );
                        }
                    }
                }
                self.finish_shutdown_if_done(ctx);
            }
        }
    }
}

impl Handler<Discovered> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Discovered, ctx: &mut Self::Context) {
        if msg.epoch != self.discovery_epoch || self.shutting_down {
            return;
        }
        let change = schema_set_change(&self.discovered, &msg.schemas);
        let changed = change.is_some();
        if let Some((added, removed, text)) = change {
            info!(self.log, "rescan: {} schemas found ({text})", msg.schemas.len();
                "event" => "schemas_discovered", "schemas" => msg.schemas.len(),
                "added" => added, "removed" => removed);
        }
        self.discovered = msg.schemas;
        // A departed schema whose pause is over is back in the set.
        let now = Instant::now();
        let returning = self.departures.iter().any(|(schema, departure)| {
            departure.until <= now
                && !self.slots.contains_key(schema)
                && self.discovered.binary_search(schema).is_ok()
        });
        // Forget departures long past: the count starts again anyway once
        // a worker has run for restart.reset_after.
        let memory = self.settings.restart.max_delay + self.settings.restart.reset_after;
        self.departures
            .retain(|_, d| now.saturating_duration_since(d.until) < memory);
        // Nothing came or went: nothing to plan (at 10,000 schemas and
        // `rescan: 1s`, a plan each second showed in the tick lateness).
        if changed || returning {
            self.reconcile(self.desired(), Reason::Rescan, ctx);
        }
        // Nothing to start (no schema matches yet): ready all the same.
        if self.batch.is_none() {
            self.tell_ready();
        }
    }
}

/// What changed between two lists of schemas sorted by name: how many
/// came, how many went, and `+a +b -c` (counts, and the first five of
/// each, beyond five); None when nothing did. One walk along both, no
/// allocation when nothing changed: it runs at every rescan.
fn schema_set_change(old: &[Arc<str>], new: &[Arc<str>]) -> Option<(usize, usize, String)> {
    if old == new {
        return None;
    }
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => (i, j) = (i + 1, j + 1),
            (Some(a), Some(b)) if a < b => {
                removed.push(a);
                i += 1;
            }
            (_, Some(b)) => {
                added.push(b);
                j += 1;
            }
            (Some(a), None) => {
                removed.push(a);
                i += 1;
            }
            (None, None) => break,
        }
    }
    let part = |sign: &str, names: &[&Arc<str>]| -> Option<String> {
        match names.len() {
            0 => None,
            1..=5 => Some(
                names
                    .iter()
                    .map(|name| format!("{sign}{name}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            n => Some(format!(
                "{sign}{n} ({}, ...)",
                names[..5]
                    .iter()
                    .map(|name| name.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    };
    let text = [part("+", &added), part("-", &removed)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    Some((added.len(), removed.len(), text))
}

impl Handler<ControlCommand> for Supervisor {
    type Result = Result<String, Refused>;

    /// A control message (`control`): what was done, or why nothing was.
    /// A schema pgfleet does not run is refused, never guessed.
    fn handle(
        &mut self,
        ControlCommand(command): ControlCommand,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        if self.shutting_down {
            return Err(Refused::Stopping);
        }
        // A schema a rescan just found, queued to start (see START_BATCH).
        let queued = |name: &str| self.start_queue.iter().any(|t| &*t.schema == name);
        if let Command::Fold(schema)
        | Command::Pause(Target::Schema(schema))
        | Command::Resume(Target::Schema(schema)) = &command
        {
            if !self.slots.contains_key(schema.as_str()) && queued(schema) {
                return Err(Refused::NotNow(format!(
                    "{schema} was just found and its worker is starting: try again in a moment"
                )));
            }
        }
        let running =
            |slots: &BTreeMap<Arc<str>, Slot>, schema: &str| -> Result<Addr<FoldWorker>, Refused> {
                match slots.get(schema).map(|slot| &slot.state) {
                    Some(SlotState::Running { addr, .. }) => Ok(addr.clone()),
                    Some(_) => Err(Refused::NotNow(format!(
                        "the worker of {schema} is not running (failed or given up)"
                    ))),
                    None => Err(Refused::UnknownSchema(schema.to_owned())),
                }
            };
        // A worker that failed keeps its pause across its restart (see
        // `spawn_worker`); one that is running is told now.
        let tell = |slots: &BTreeMap<Arc<str>, Slot>, schema: &str, message: SetPaused| {
            if let Some(SlotState::Running { addr, .. }) = slots.get(schema).map(|slot| &slot.state)
            {
                addr.do_send(message);
            }
        };
        let known = |slots: &BTreeMap<Arc<str>, Slot>, schema: &str| {
            if slots.contains_key(schema) {
                Ok(())
            } else {
                Err(Refused::UnknownSchema(schema.to_owned()))
            }
        };
        // With coordination, a schema of the fleet that another instance
        // folds: that one acts (every instance hears every NOTIFY). A
        // pause or resume is remembered for when it comes here.
        if let Command::Fold(schema)
        | Command::Pause(Target::Schema(schema))
        | Command::Resume(Target::Schema(schema)) = &command
        {
            let name = schema.as_str();
            if self.owned.is_some()
                && !self.slots.contains_key(name)
                && self.wanted().targets.iter().any(|t| &*t.schema == name)
            {
                match &command {
                    Command::Pause(_) => {
                        self.paused.insert(name.into());
                    }
                    Command::Resume(_) => {
                        self.paused.remove(name);
                    }
                    _ => {}
                }
                return Err(Refused::Elsewhere(name.to_owned()));
            }
        }
        match command {
            Command::Rescan => match &self.discovery {
                Some(discovery) => {
                    discovery.do_send(RescanNow::default());
                    Ok("rescanning now".into())
                }
                None => Err(Refused::NotNow(
                    "workers.match is not set: there is nothing to rescan".into(),
                )),
            },
            Command::Fold(schema) => {
                running(&self.slots, &schema)?.do_send(FoldNow);
                Ok(format!("folding {schema} now"))
            }
            Command::Pause(Target::All) => {
                self.paused_all = true;
                for schema in self.slots.keys() {
                    tell(&self.slots, schema, SetPaused(true));
                }
                Ok(format!(
                    "pausing every schema ({} now, and those started while it lasts)",
                    self.slots.len()
                ))
            }
            Command::Resume(Target::All) => {
                self.paused_all = false;
                self.paused.clear();
                for schema in self.slots.keys() {
                    tell(&self.slots, schema, SetPaused(false));
                }
                Ok(format!("resuming every schema ({})", self.slots.len()))
            }
            Command::Pause(Target::Schema(schema)) => {
                known(&self.slots, &schema)?;
                tell(&self.slots, &schema, SetPaused(true));
                self.paused.insert(schema.as_str().into());
                Ok(format!("pausing {schema}"))
            }
            Command::Resume(Target::Schema(schema)) => {
                if self.paused_all {
                    return Err(Refused::NotNow(
                        "every schema is paused ('pause *'): resume them all with 'resume *'"
                            .into(),
                    ));
                }
                known(&self.slots, &schema)?;
                tell(&self.slots, &schema, SetPaused(false));
                self.paused.remove(schema.as_str());
                Ok(format!("resuming {schema}"))
            }
            // The listener sends it where SIGHUP goes.
            Command::Reload => Err(Refused::NotNow("reload is not the Supervisor's".into())),
        }
    }
}

impl Handler<Ownership> for Supervisor {
    type Result = ();

    /// The coordination moved this instance's share: workers start for
    /// the schemas it took and stop for those it gave (or lost); a
    /// handover is answered once the latter have stopped.
    fn handle(&mut self, msg: Ownership, ctx: &mut Self::Context) {
        self.joined = msg.joined;
        if self.shutting_down || self.owned.is_none() {
            if let Some(done) = msg.stopped {
                let _ = done.send(());
            }
            return;
        }
        self.owned = Some(msg.owned);
        let why = match msg.change {
            coordination::Change::Rebalanced => Reason::Handover,
            coordination::Change::Lost(_) => Reason::CoordinationLost,
        };
        self.reconcile(self.desired(), why, ctx);
        // An instance that owns nothing (more instances than buckets with
        // schemas) is ready all the same: it stands by.
        if self.batch.is_none() && self.start_queue.is_empty() {
            self.tell_ready();
        }
        if let Some(done) = msg.stopped {
            let stopped = Stopped::of(why);
            let waiting: std::collections::HashSet<(Arc<str>, u64)> = self
                .retiring
                .iter()
                .filter(|(_, (_, _, reason))| *reason == stopped)
                .map(|(key, _)| key.clone())
                .collect();
            if waiting.is_empty() {
                let _ = done.send(());
            } else {
                self.handovers.push(Handover { waiting, done });
            }
        }
    }
}

impl Handler<WorkerStarted> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: WorkerStarted, _ctx: &mut Self::Context) {
        let Some(slot) = self.slots.get_mut(&msg.schema) else {
            return;
        };
        let current = matches!(slot.state, SlotState::Running { generation, .. } if generation == msg.generation);
        slot.existed = true;
        if current && std::mem::take(&mut slot.awaiting_start) {
            self.settle(true);
        }
    }
}

impl Handler<SettingsChanged> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: SettingsChanged, ctx: &mut Self::Context) {
        #[cfg(feature = "test-hooks")]
        if std::env::var_os("TEST_HOOK_PANIC_IN_SUPERVISOR").is_some() {
            panic!("test hook: a panic in the Supervisor");
        }
        if !self.shutting_down {
            self.session_connector = msg.control.unwrap_or_else(|| Arc::clone(&msg.connector));
            // Where the session connects: control.url, else database.url,
            // with the database's TLS, password and timeouts either way.
            let (was, is) = (&self.settings, &msg.settings);
            let moved = was.control.url != is.control.url
                || (is.control.url.expose().is_empty() && was.database.url != is.database.url);
            if let Some(coordinator) = &self.coordinator {
                coordinator.do_send(UseConnector {
                    connector: Arc::clone(&self.session_connector),
                    moved,
                });
            }
            self.apply(msg.settings, msg.connector, ctx);
        }
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Self::Context) {
        info!(self.log, "{} received: stopping {} workers", msg.signal, self.slots.len();
            "event" => "shutdown_started", "signal" => msg.signal);
        self.begin_shutdown(0, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|&name| name.into()).collect()
    }

    #[test]
    fn a_rescan_says_what_came_and_went() {
        let old = names(&["a", "b", "c"]);
        assert_eq!(schema_set_change(&old, &old), None);
        assert_eq!(
            schema_set_change(&old, &names(&["a", "c", "d"])),
            Some((1, 1, "+d -b".into()))
        );
        let many: Vec<Arc<str>> = (1..=7).map(|n| format!("t{n}").into()).collect();
        assert_eq!(
            schema_set_change(&[], &many),
            Some((7, 0, "+7 (t1, t2, t3, t4, t5, ...)".into()))
        );
        assert_eq!(
            schema_set_change(&many[..2], &[]),
            Some((0, 2, "-t1 -t2".into()))
        );
    }
}

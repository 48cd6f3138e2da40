//! WorkerActor: one schema's schedule; what runs at each tick is its
//! [`Job`] (worker_spi's fold, [`FoldJob`], by default; see `job`).
//!
//! Ticks come from `run_interval`, at a phase within the interval that
//! depends only on the schema name: ten thousand workers spread their folds
//! evenly instead of queueing on the pool at the same instant, and a
//! restarted worker keeps its slot. A fold runs as a spawned future with a
//! busy flag rather than `ctx.wait`, so the mailbox stays responsive: a
//! tick that arrives while a fold is in flight is skipped and counted, and
//! a `Stop` can cancel the statement on the server.
//!
//! The schema is initialised at start and, while the database cannot be
//! reached, again at each tick until it can. A database error ends the
//! worker with that error, and the Supervisor decides what happens next;
//! but an unreachable database or a lock/statement time-out is nobody's
//! fault here: the tick is skipped, and the next one tries again.
//!
//! Everything a worker does is also written to the shared [`Status`] (a
//! fold, a skipped tick, how late the tick ran, what the database said),
//! which the HTTP endpoints read; writing there never waits on a reader.

use std::any::Any;
use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::FutureExt;
use slog::{debug, info, warn, Logger};
use tokio_postgres::CancelToken;

use crate::db::{Absence, Database, DbError, JobFault, LaneLease, PgClient, PgConnection};
use crate::job::{FoldJob, Job, Postponed, SharedStep, Step};
use crate::settings::{Origin, SchemaTarget, Settings};
use crate::status::{Status, WorkerState};

/// Why a worker ended.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("the worker panicked: {0}")]
    Panicked(String),
}

/// Apply reloaded settings, then fold once, as worker_spi does on SIGHUP
/// (spread over a short window: [`reload_fold_delay`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure {
    pub naptime: Duration,
    /// For the job's own keys (e.g. `workers.vacuum_after`).
    pub settings: Arc<Settings>,
    pub db: Database,
    /// The window this reload's folds are spread over
    /// ([`reload_fold_window`]).
    pub reload_window: Duration,
}

/// Stop after the fold in flight, if any; with `cancel_in_flight`, cancel
/// that statement on the server instead of waiting for it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop {
    pub cancel_in_flight: bool,
}

/// A worker's last word to its Supervisor (through
/// [`FleetHandles::supervisor`]): `failure` is None when it stopped because
/// it was asked to. Sent by the worker, handled by the Supervisor; defined
/// here so that a worker needs nothing of the Supervisor's.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerExited {
    pub schema: Arc<str>,
    pub generation: u64,
    pub failure: Option<WorkerError>,
    /// A discovered schema's worker found the schema or its table gone
    /// (dropped, renamed): why, in words. It left the fleet; it did not
    /// fail.
    pub departed: Option<String>,
}

/// How a worker ended, when it was not asked to stop.
enum End {
    Failed(WorkerError),
    /// Its discovered schema, or the table, is gone: why, in words.
    Departed(String),
}

/// A worker initialised its schema and folds from now on (through
/// [`FleetHandles::started`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerStarted {
    pub schema: Arc<str>,
    pub generation: u64,
}

/// Everything a worker is started with.
pub struct WorkerSpec {
    pub target: SchemaTarget,
    pub generation: u64,
    pub naptime: Duration,
    pub db: Database,
    pub fleet: Rc<FleetHandles>,
}

/// What every worker of one Supervisor holds alike, held once: each actix
/// recipient is about 100 bytes of its own, a logger with the worker's
/// names about 200; a hundred thousand workers would keep 40 MB of copies.
/// (Workers run on the Supervisor's thread, hence `Rc`.)
pub struct FleetHandles {
    /// Shared by all workers, so phases are relative to one instant.
    pub epoch: Instant,
    pub supervisor: Recipient<WorkerExited>,
    /// Told once the schema is initialised (start-up progress).
    pub started: Recipient<WorkerStarted>,
    pub status: Status,
    /// The Supervisor's; a worker's lines add its names ([`worker_log`]).
    pub log: Logger,
    /// Whether folds may start now (see `lease`): always, unless several
    /// instances share the fleet.
    pub lease: crate::lease::Lease,
}

/// A worker's logger. `generation` tells apart the workers a schema had
/// over time: a retired one may report its stop after its replacement
/// started. Built for each use rather than kept (see [`FleetHandles`]).
pub fn worker_log(base: &Logger, target: &SchemaTarget, generation: u64) -> Logger {
    base.new(slog::o!(
        "worker" => Arc::clone(&target.worker),
        "schema" => Arc::clone(&target.schema),
        "generation" => generation,
    ))
}

/// A worker: the schedule of one schema; what it runs is its [`Job`]
/// (worker_spi's fold unless said otherwise).
///
/// # Memory per worker
///
/// About 1.7 KB of heap, measured with heaptrack at 100,000 workers (the
/// process resident 241 MB in all, allocator overhead, the fixed parts and
/// the folds waiting for a connection while the server's caches warm up
/// included):
///
/// | bytes | what |
/// | ---: | --- |
/// | 976 | this actor: its tokio task (768: `WorkerActor`, 256 of them, inside actix's `Context`; `a_worker_stays_small` keeps it within 400), its mailbox and address |
/// | 279 | its entry in [`Status`] (`/workers`, metrics): counters and times, 152 bytes in a B-tree's nodes (263 measured at 136; 16 more for a total of any column type and the backlog); a failing worker's record boxed apart |
/// | 195 | the Supervisor's slot: state, generation, the worker's address (a failing worker's restart history boxed apart) |
/// | 128 | actix's `run_interval` ticker |
/// | 64 | the schema's and worker's names, one allocation each, shared by the slot, the worker, its job and its status entry ([`SchemaTarget`]) |
/// | 56 | its [`TableSql`](crate::sql::TableSql) (statements are built when sent, not kept) |
/// | 40 | the in-flight state shared with the statement's future |
///
/// Not per worker: what all workers hold alike is held once
/// ([`FleetHandles`]), and a worker's logger is built when it logs. Fixed,
/// whatever the fleet: 6.8 MB for the log queue (65,536 records, so that
/// 10,000 workers starting lose no line).
pub struct WorkerActor<J: Job> {
    spec: WorkerSpec,
    job: J,
    initialised: bool,
    busy_since: Option<Instant>,
    ticker: Option<SpawnHandle>,
    last_tick: Option<Instant>,
    fold_requested: bool,
    stop_requested: bool,
    /// An operator paused it (see [`SetPaused`]): nothing folds but what
    /// an operator asks for ([`FoldNow`], `fold_forced`).
    paused: bool,
    fold_forced: bool,
    /// How it ended, if not as asked: failed, or (a discovered schema)
    /// departed (see [`WorkerExited`]).
    end: Option<End>,
    in_flight: InFlight,
    ticks_skipped: u64,
    /// While its table is locked by someone else, or gone (boxed: rare).
    waiting: Option<Box<Waiting>>,
    /// The next run the job asked for before the next tick (a backlog).
    again: Option<SpawnHandle>,
}

/// A schema that cannot fold for a reason outside pgfleet that is nobody's
/// failure: since when, and when it last tried.
struct Waiting {
    what: WaitingFor,
    since: Instant,
    last_attempt: Instant,
    ticks_skipped: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WaitingFor {
    /// Another session holds the table's lock (a migration): the fold gave
    /// up after `database.fold_lock_timeout`.
    Lock,
    /// The table, which existed, was dropped: it is not created again.
    Table,
}

impl WaitingFor {
    fn reason(self) -> &'static str {
        match self {
            WaitingFor::Lock => "waiting_for_lock",
            WaitingFor::Table => "table_dropped",
        }
    }
}

pub use crate::job::LOCK_RETRY_EVERY;

/// The statement in flight, for `Stop`: its cancel token while it runs,
/// and whether a cancel was sent for it. A connection that got a cancel is
/// never handed to another worker: the server may act on the request late,
/// and would then cancel that worker's statement instead.
#[derive(Default)]
struct InFlightState {
    /// Boxed: a token is 152 bytes, and needed only while a statement
    /// runs; ten thousand idle workers need not hold the room for one.
    token: Option<Box<CancelToken>>,
    cancel_sent: bool,
}

type InFlight = Rc<RefCell<InFlightState>>;

/// What a statement that gets no answer within the deadline means.
#[derive(Clone, Copy)]
enum NoAnswer {
    /// The server is stalled: the database is unreachable (a fold, whose
    /// statement_timeout the server enforces).
    Outage,
    /// It may just be slow (VACUUM of a big table, which a pooler runs
    /// without pgfleet's statement_timeout): cancel it and try later.
    SlowStatement,
}

type Guarded<T> = Result<Result<T, DbError>, Box<dyn Any + Send>>;

/// What a step needs of its connection.
enum Work<T> {
    /// A connection of its own, before any new fold takes one:
    /// initialisation (a transaction).
    Own(Step<T>),
    /// A share of one, pipelined with other workers' folds.
    Shared(SharedStep<T>),
    /// A connection of its own only if one is free, within the
    /// maintenance bulkhead, else postponed: VACUUM (see
    /// `db::maintenance`).
    Maintenance(Step<T>),
}

/// The connection a step ran on, until its answer has been looked at.
enum Held {
    Own(Box<PgConnection>),
    Shared(LaneLease),
}

impl Held {
    fn client(&self) -> &PgClient {
        match self {
            Held::Own(conn) => conn,
            Held::Shared(lease) => lease.client(),
        }
    }
}

/// A fold in flight when the next tick comes is news once it has run a
/// whole naptime, and at least this long: with `naptime: 1ms` a fold of
/// 2 ms is the database's normal pace, not a stuck statement.
const SLOW_FOLD_FLOOR: Duration = Duration::from_secs(1);

/// How often one tick's work is tried on a connection that turns out lost.
const MAX_ATTEMPTS_ON_LOST_CONNECTIONS: u32 = 3;

/// A worker whose job is worker_spi's fold: what the Supervisor starts
/// (see `job::build`).
pub type FoldWorker = WorkerActor<FoldJob>;

impl<J: Job> WorkerActor<J> {
    pub fn new(spec: WorkerSpec, job: J) -> Self {
        WorkerActor {
            spec,
            job,
            initialised: false,
            busy_since: None,
            ticker: None,
            last_tick: None,
            fold_requested: false,
            stop_requested: false,
            paused: false,
            fold_forced: false,
            end: None,
            in_flight: Rc::new(RefCell::new(InFlightState::default())),
            ticks_skipped: 0,
            waiting: None,
            again: None,
        }
    }

    fn log(&self) -> Logger {
        worker_log(
            &self.spec.fleet.log,
            &self.spec.target,
            self.spec.generation,
        )
    }

    /// (Re)starts the ticks at this schema's phase of the interval.
    fn schedule_ticks(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.ticker.take() {
            ctx.cancel_future(handle);
        }
        let naptime = self.spec.naptime;
        let first = until_next_slot(
            self.spec.fleet.epoch,
            Instant::now(),
            naptime,
            &self.spec.target.schema,
        );
        // Each tick is due at the slot itself (the interval runs from the
        // deadline, not from when the previous tick ran), so how late it
        // ran is measured against the slot.
        let start = tokio::time::Instant::now() + first;
        self.ticker = Some(ctx.run_interval_at(start, naptime, |worker, ctx| worker.on_tick(ctx)));
    }

    fn on_tick(&mut self, ctx: &mut Context<Self>) {
        #[cfg(feature = "test-hooks")]
        if crate::test_hooks::panic_wanted(
            crate::test_hooks::PanicPoint::Tick,
            &self.spec.target.schema,
        ) && self.initialised
        {
            panic!(
                "test hook: a panic in a tick of {}",
                self.spec.target.schema
            );
        }
        let now = Instant::now();
        // After a stall, run_interval fires every missed tick back to back;
        // one fold covers them all.
        if self
            .last_tick
            .is_some_and(|last| now.duration_since(last) < self.spec.naptime / 2)
        {
            return;
        }
        self.last_tick = Some(now);
        self.spec.fleet.status.tick_late(lateness(
            self.spec.fleet.epoch,
            now,
            self.spec.naptime,
            &self.spec.target.schema,
        ));
        if let Some(since) = self.busy_since {
            self.ticks_skipped += 1;
            let running = now.duration_since(since);
            let running_ms = running.as_millis() as u64;
            // A tick meeting the fold a reload just started, a fold queued
            // for a pooled connection, or an initialisation queued behind
            // thousands of others at start, is routine; a fold that has run
            // on the server for a whole naptime is news.
            let on_server = self.in_flight.borrow().token.is_some();
            let reason = match (self.initialised, on_server) {
                (false, _) => "initialising",
                (true, false) => "waiting_for_connection",
                (true, true) => "fold_in_flight",
            };
            self.note_skipped(reason);
            if reason == "fold_in_flight" && running >= self.spec.naptime.max(SLOW_FOLD_FLOOR) {
                warn!(self.log(), "tick skipped: the previous fold is still running after {running_ms} ms";
                    "event" => "worker_tick_skipped", "reason" => reason,
                    "running_ms" => running_ms, "skipped" => self.ticks_skipped);
            } else {
                debug!(self.log(), "tick skipped: the previous work is still running after {running_ms} ms";
                    "event" => "worker_tick_skipped", "reason" => reason,
                    "running_ms" => running_ms, "skipped" => self.ticks_skipped);
            }
            return;
        }
        if let Some(wait) = &mut self.waiting {
            if !retry_due(now.duration_since(wait.last_attempt), self.spec.naptime) {
                wait.ticks_skipped += 1;
                self.ticks_skipped += 1;
                let reason = wait.what.reason();
                self.note_skipped(reason);
                return;
            }
            wait.last_attempt = now;
        }
        if self.initialised {
            // Paused: the schema is left alone until resumed (a `fold`
            // control message still folds).
            if !self.paused {
                self.fold(ctx);
            }
        } else {
            self.initialise(ctx);
        }
    }

    /// Runs `work` on a pooled connection (its own, or a share of one,
    /// see [`Work`]), in the background, with a deadline for the server's
    /// answer, and hands the result to `done`. When the connection itself
    /// is lost (one backend terminated, a closed socket), the work runs
    /// again on another connection, up to
    /// [`MAX_ATTEMPTS_ON_LOST_CONNECTIONS`] times; after that the tick is
    /// skipped. Only a failed connection attempt makes the database
    /// unreachable (the pool reports it, see `db`).
    fn run_on_database<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        no_answer: NoAnswer,
        work: Work<T>,
        done: impl FnOnce(&mut Self, Guarded<T>, &mut Context<Self>) + 'static,
    ) {
        self.busy_since = Some(Instant::now());
        let db = self.spec.db.clone();
        let home = db.home_of(&self.spec.target.schema);
        let in_flight = Rc::clone(&self.in_flight);
        let lease = self.spec.fleet.lease.clone();
        let guarded = async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let deadline = db.answer_deadline();
                // Held until the answer has been looked at.
                let mut _maintenance_slot = None;
                let (answer, held) = match &work {
                    Work::Own(step) | Work::Maintenance(step) => {
                        let mut conn = if let Work::Maintenance(_) = &work {
                            let (conn, slot) = db.maintenance_connection().await?;
                            _maintenance_slot = Some(slot);
                            conn
                        } else {
                            db.own_connection().await?
                        };
                        in_flight.borrow_mut().token = Some(Box::new(conn.cancel_token()));
                        let answer = tokio::time::timeout(deadline, step(&mut conn))
                            .await
                            .map_err(|_| ());
                        (answer, Held::Own(Box::new(conn)))
                    }
                    Work::Shared(step) => {
                        let connection = db.shared_connection(home).await?;
                        // The wait for a connection may have outlasted the
                        // coordination's trust (a saturated pool at a
                        // freeze or a cut): checked again before sending.
                        if !lease.trusted() {
                            return Err(DbError::LeaseExpired(
                                "the coordination lease expired while the fold waited for a connection".into(),
                            ));
                        }
                        let lease = connection;
                        in_flight.borrow_mut().token =
                            Some(Box::new(lease.client().cancel_token()));
                        let answer = lane_answer(deadline, &lease, step(lease.client())).await;
                        (answer, Held::Shared(lease))
                    }
                };
                let conn = held.client();
                let cancel_sent = {
                    let mut state = in_flight.borrow_mut();
                    state.token = None;
                    std::mem::take(&mut state.cancel_sent)
                };
                if cancel_sent {
                    conn.discard();
                }
                return match answer {
                    Err(_) => {
                        // Never reuse this connection: it may still be
                        // waiting for the answer.
                        conn.discard();
                        let waited = format!(
                            "no answer within {deadline:?} (database.statement_timeout + database.connect_timeout)"
                        );
                        match no_answer {
                            NoAnswer::Outage => Err(db.unreachable(waited)),
                            NoAnswer::SlowStatement => {
                                let _ = db.cancel(conn.cancel_token()).await;
                                Err(DbError::TimedOut {
                                    code: tokio_postgres::error::SqlState::QUERY_CANCELED,
                                    reason: format!("{waited}; cancelled, tried again later"),
                                })
                            }
                        }
                    }
                    Ok(Err(DbError::ConnectionLost(reason))) => {
                        // Another pooled connection may have died with
                        // this one (every backend terminated at once):
                        // each is discarded as it is found. Only a failed
                        // connection attempt says the server is gone.
                        conn.discard();
                        // Not after a cancel: the worker is stopping.
                        if attempt < MAX_ATTEMPTS_ON_LOST_CONNECTIONS && !cancel_sent {
                            continue;
                        }
                        Err(DbError::ConnectionLost(reason))
                    }
                    Ok(Err(DbError::Unreachable(reason))) => Err(db.unreachable(reason)),
                    Ok(result) => {
                        db.reachable();
                        result
                    }
                };
            }
        };
        ctx.spawn(
            AssertUnwindSafe(guarded)
                .catch_unwind()
                .into_actor(self)
                .map(move |result, worker, ctx| {
                    worker.busy_since = None;
                    done(worker, result, ctx);
                    if worker.stop_requested {
                        ctx.stop();
                    } else if worker.fold_requested
                        && worker.initialised
                        && worker.busy_since.is_none()
                        && (!worker.paused || worker.fold_forced)
                    {
                        worker.fold(ctx);
                    }
                }),
        );
    }

    /// Initialises the schema once one of the pool's start permits is
    /// free (see [`Database::start_permits`]): ten thousand workers
    /// starting wait as ten thousand small futures, not ten thousand
    /// statements' worth of state queued for a connection.
    fn initialise(&mut self, ctx: &mut Context<Self>) {
        self.busy_since = Some(Instant::now());
        let permits = self.spec.db.start_permits();
        ctx.spawn(
            async move { permits.acquire_owned().await.ok() }
                .into_actor(self)
                .map(|permit, worker, ctx| worker.initialise_with(permit, ctx)),
        );
    }

    fn initialise_with(
        &mut self,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
        ctx: &mut Context<Self>,
    ) {
        let step = Work::Own(self.job.initialise());
        self.run_on_database(ctx, NoAnswer::Outage, step, |worker, result, ctx| {
            // Held until the initialisation has answered, however.
            let _permit = permit;
            match result {
                Ok(Ok(found)) => {
                    worker.wait_over();
                    worker.job.initialised(found, &worker.log());
                    worker.initialised = true;
                    info!(worker.log(), "{} initialized with {}", worker.spec.target.worker, worker.job.display_name();
                        "event" => "worker_started");
                    let (schema, generation) = (&worker.spec.target.schema, worker.spec.generation);
                    worker.spec.fleet.status.worker_initialised(schema, generation);
                    if worker.paused {
                        worker.spec.fleet.status.worker_paused(schema, generation, true);
                    }
                    worker.spec.fleet.started.do_send(WorkerStarted {
                        schema: schema.clone(),
                        generation,
                    });
                }
                Ok(Err(error)) => worker.handle_error(error, ctx),
                Err(panic) => worker.fail(WorkerError::Panicked(panic_message(&*panic)), ctx),
            }
        });
    }

    /// One run of the job; the fold, for worker_spi's job.
    fn fold(&mut self, ctx: &mut Context<Self>) {
        self.fold_requested = false;
        self.fold_forced = false;
        // Several instances share the fleet, and this one's coordination
        // session has not answered lately (frozen, cut off, continued
        // after SIGSTOP): its buckets may be another's by now. The
        // coordination actor hands them over or rejoins; until then,
        // nothing starts.
        if !self.spec.fleet.lease.trusted() {
            self.ticks_skipped += 1;
            self.note_skipped("lease_expired");
            debug!(self.log(), "tick skipped: the coordination lease is not confirmed";
                "event" => "worker_tick_skipped", "reason" => "lease_expired",
                "skipped" => self.ticks_skipped);
            return;
        }
        if let Some(again) = self.again.take() {
            // This run is the one asked for.
            ctx.cancel_future(again);
        }
        let step = Work::Shared(self.job.run());
        self.run_on_database(
            ctx,
            NoAnswer::Outage,
            step,
            |worker, result, ctx| match result {
                Ok(Ok(found)) => {
                    worker.wait_over();
                    // The status first: whoever reads the run's log line
                    // finds it there.
                    worker.spec.fleet.status.fold_done(
                        &worker.spec.target.schema,
                        worker.spec.generation,
                        J::tally(&found),
                    );
                    let (report, maintenance) = worker.job.ran(found, &worker.log());
                    if let Some(fault) = report.fault {
                        worker.handle_error(fault, ctx);
                        return;
                    }
                    if let Some(step) = maintenance {
                        worker.maintain(step, ctx);
                    }
                    if let Some(pause) = report.again_after {
                        worker.run_again_after(pause, ctx);
                    }
                }
                Ok(Err(error)) => worker.handle_error(error, ctx),
                Err(panic) => worker.fail(WorkerError::Panicked(panic_message(&*panic)), ctx),
            },
        );
    }

    /// The job has more to do now (a backlog of deltas, folded batch after
    /// batch): run it again after `pause`, or at the next tick if that
    /// comes first, rather than a whole naptime later. The job makes the
    /// pause as long as its run took, so that the schemas sharing this
    /// schema's connection have it at least half the time; a run that
    /// finds the worker busy (the VACUUM after a batch) follows it.
    fn run_again_after(&mut self, pause: Duration, ctx: &mut Context<Self>) {
        if let Some(again) = self.again.take() {
            ctx.cancel_future(again);
        }
        let pause = pause.min(self.spec.naptime);
        self.again = Some(ctx.run_later(pause, |worker, ctx| {
            worker.again = None;
            // Paused mid-backlog: the rest waits for the resume.
            if worker.stop_requested || worker.paused {
                return;
            }
            if worker.busy_since.is_some() {
                worker.fold_requested = true;
            } else {
                worker.fold(ctx);
            }
        }));
    }

    /// Maintenance the job asked for (VACUUM): a step of its own, with its
    /// own deadline, after the run it follows has been reported, so a slow
    /// or failed VACUUM never takes a committed fold's result with it, and
    /// a slow one is never mistaken for a stalled server.
    fn maintain(&mut self, step: Step<()>, ctx: &mut Context<Self>) {
        self.run_on_database(
            ctx,
            NoAnswer::SlowStatement,
            Work::Maintenance(step),
            |worker, result, ctx| {
                let status = &worker.spec.fleet.status;
                match result {
                    Ok(Ok(())) => {
                        status.vacuum_ran("done");
                        worker.job.maintained(&worker.log());
                    }
                    // Someone holds the table (autovacuum on it, a
                    // migration): the VACUUM is tried again after later
                    // folds, and never waits longer than a fold would.
                    Ok(Err(DbError::LockNotAvailable(reason))) => {
                        status.vacuum_ran("locked");
                        let log = worker.log();
                        let why = Postponed::Locked(reason);
                        worker.job.maintenance_postponed(why, Instant::now(), &log);
                    }
                    // Maintenance never waits for a connection, nor holds
                    // more than its share (see `db::maintenance`).
                    Ok(Err(DbError::MaintenancePostponed(reason))) => {
                        status.vacuum_ran("postponed");
                        let log = worker.log();
                        let why = Postponed::NoConnection(reason);
                        worker.job.maintenance_postponed(why, Instant::now(), &log);
                    }
                    Ok(Err(error)) => {
                        status.vacuum_ran("failed");
                        worker.handle_error(error, ctx);
                    }
                    Err(panic) => worker.fail(WorkerError::Panicked(panic_message(&*panic)), ctx),
                }
            },
        );
    }

    /// Unreachable, refused and timed out: skip this tick. Anything else:
    /// fail.
    fn handle_error(&mut self, error: DbError, ctx: &mut Context<Self>) {
        match error {
            // The stop's cancel ends the statement in flight (57014), or the
            // stop came while the work failed: neither is news.
            other if self.stop_requested => {
                debug!(self.log(), "statement ended by the stop: {other}");
            }
            // A discovered schema is folded while it holds the table: one
            // that went (between two rescans) is a tenant leaving.
            gone if self.spec.target.origin == Origin::Discovered && gone.is_gone() => {
                debug!(self.log(), "the schema or its table is gone: {gone}");
                let why = format!(
                    "{} is gone (the schema or its table dropped or renamed); \
                     a rescan takes it again if it comes back",
                    self.job.display_name()
                );
                self.depart(why, ctx);
            }
            // A REVOKE: a rescan vets it again, and says so once, instead
            // of a restart loop.
            DbError::Permission(reason) if self.spec.target.origin == Origin::Discovered => {
                let why = format!(
                    "pgfleet's role was refused a privilege on {} ({reason}); \
                     a rescan takes it again once it is granted",
                    self.job.display_name()
                );
                self.depart(why, ctx);
            }
            // Logged once for all workers by the Database (database_lost,
            // database_refused).
            DbError::Unreachable(_) | DbError::ConnectionLost(_) | DbError::Refused { .. } => {
                self.ticks_skipped += 1;
                self.note_skipped(error.kind());
                // One connection lost is that connection's problem (the
                // work is retried on a fresh one); the others are the
                // database's, and nothing folds until it answers.
                if !matches!(error, DbError::ConnectionLost(_)) {
                    let status = &self.spec.fleet.status;
                    status.database_blocks(&self.spec.target.schema, self.spec.generation);
                }
                debug!(self.log(), "tick skipped: {error}";
                    "event" => "worker_tick_skipped", "reason" => error.kind(),
                    "skipped" => self.ticks_skipped);
            }
            DbError::LockNotAvailable(reason) => self.wait(WaitingFor::Lock, reason),
            // Another instance's fold of this schema is in its transaction
            // (a handover in flight): nothing was done, nothing is wrong
            // here; the owner folds.
            DbError::Fenced(reason) => {
                self.ticks_skipped += 1;
                self.note_skipped("fenced");
                info!(self.log(), "tick skipped: {reason}";
                    "event" => "worker_tick_skipped", "reason" => "fenced",
                    "skipped" => self.ticks_skipped);
            }
            DbError::LeaseExpired(reason) => {
                self.ticks_skipped += 1;
                self.note_skipped("lease_expired");
                debug!(self.log(), "tick skipped: {reason}";
                    "event" => "worker_tick_skipped", "reason" => "lease_expired",
                    "skipped" => self.ticks_skipped);
            }
            error @ DbError::Job(JobFault {
                absence: Some(Absence::Gone),
                ..
            }) => self.wait(WaitingFor::Table, error.to_string()),
            DbError::TimedOut { reason, .. } => {
                self.ticks_skipped += 1;
                self.note_skipped("timed_out");
                warn!(self.log(), "tick skipped: {reason}";
                    "event" => "worker_tick_skipped", "reason" => "timed_out",
                    "error" => reason.clone(), "skipped" => self.ticks_skipped);
            }
            error @ DbError::PoolExhausted { .. } => {
                self.ticks_skipped += 1;
                self.note_skipped("pool_exhausted");
                // One warning for the whole pool now and then, with the
                // fleet's count; each worker's own at debug.
                match self.spec.db.pool_exhausted_warning_due(Instant::now()) {
                    Some(fleet_skipped) => {
                        warn!(self.log(), "tick skipped: {error} ({fleet_skipped} ticks skipped for want of a connection since the last such warning, in all workers)";
                            "event" => "worker_tick_skipped", "reason" => "pool_exhausted",
                            "error" => error.to_string(), "skipped" => self.ticks_skipped,
                            "fleet_skipped" => fleet_skipped);
                    }
                    None => {
                        debug!(self.log(), "tick skipped: {error}";
                            "event" => "worker_tick_skipped", "reason" => "pool_exhausted",
                            "error" => error.to_string(), "skipped" => self.ticks_skipped);
                    }
                }
            }
            other => self.fail(other.into(), ctx),
        }
    }

    /// The fold (or initialisation) gave up waiting for a lock on the
    /// table (a migration or DDL holds it), or found the table dropped.
    /// Nobody's failure, and not the database's: the schema waits, tries
    /// again at its next tick (at most every [`LOCK_RETRY_EVERY`]), and
    /// says so once, not at every tick.
    fn wait(&mut self, what: WaitingFor, reason: String) {
        self.ticks_skipped += 1;
        self.note_skipped(what.reason());
        let now = Instant::now();
        if let Some(wait) = self.waiting.as_mut().filter(|wait| wait.what == what) {
            wait.ticks_skipped += 1;
            debug!(self.log(), "tick skipped: still {}: {reason}", what.reason().replace('_', " ");
                "event" => "worker_tick_skipped", "reason" => what.reason(),
                "skipped" => self.ticks_skipped);
            return;
        }
        self.waiting = Some(Box::new(Waiting {
            what,
            since: now,
            last_attempt: now,
            ticks_skipped: 1,
        }));
        let (status, schema, generation) = (
            &self.spec.fleet.status,
            &self.spec.target.schema,
            self.spec.generation,
        );
        let (worker, table) = (&self.spec.target.worker, self.job.display_name());
        match what {
            WaitingFor::Lock => {
                status.worker_waiting(schema, generation, WorkerState::WaitingForLock);
                warn!(self.log(), "{worker} waits for a lock on {table}: another session holds the table (a migration, ALTER TABLE, CREATE INDEX?) \
                                   or its total row; it tries again at each tick without holding a connection meanwhile: {reason}";
                    "event" => "worker_waiting_for_lock", "error" => reason.clone(),
                    "skipped" => self.ticks_skipped);
            }
            WaitingFor::Table => {
                status.worker_waiting(schema, generation, WorkerState::TableDropped);
                warn!(self.log(), "{worker}: {reason}";
                    "event" => "worker_table_dropped", "error" => reason.clone());
            }
        }
    }

    /// The fold (or initialisation) succeeded: a wait, if any, is over.
    fn wait_over(&mut self) {
        let Some(wait) = self.waiting.take() else {
            return;
        };
        let waited_ms = wait.since.elapsed().as_millis() as u64;
        let (worker, skipped) = (&self.spec.target.worker, wait.ticks_skipped);
        match wait.what {
            WaitingFor::Lock => {
                info!(self.log(), "{worker} folds again: the lock it waited for was released after {waited_ms} ms ({skipped} ticks skipped)";
                    "event" => "worker_lock_released", "waited_ms" => waited_ms, "skipped" => skipped);
            }
            WaitingFor::Table => {
                info!(self.log(), "{worker}: {} exists again after {waited_ms} ms ({skipped} ticks skipped)", self.job.display_name();
                    "event" => "worker_table_back", "waited_ms" => waited_ms, "skipped" => skipped);
            }
        }
    }

    fn note_skipped(&self, reason: &'static str) {
        self.spec
            .fleet
            .status
            .tick_skipped(&self.spec.target.schema, self.spec.generation, reason);
    }

    /// A discovered schema's worker leaves the fleet: not a failure.
    fn depart(&mut self, why: String, ctx: &mut Context<Self>) {
        self.end = Some(End::Departed(why));
        self.stop_requested = true;
        ctx.stop();
    }

    fn fail(&mut self, error: WorkerError, ctx: &mut Context<Self>) {
        self.end = Some(End::Failed(error));
        ctx.stop();
    }
}

impl<J: Job> Actor for WorkerActor<J> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.schedule_ticks(ctx);
        self.initialise(ctx);
    }

    /// A worker stops because it was asked to, because it failed, or
    /// with the actor system; any other stop is a panic in the worker's
    /// own code (a tick, a log line: a panic in its database work is
    /// caught where it runs), which actix ends by stopping the actor. That
    /// is reported as a failure, for the restart policy like any other.
    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if self.end.is_none() && !self.stop_requested && !crate::panics::is_system_stopping() {
            self.end = Some(End::Failed(WorkerError::Panicked(
                crate::panics::last_message(),
            )));
        }
        let (failure, departed) = match self.end.take() {
            Some(End::Failed(error)) => (Some(error), None),
            Some(End::Departed(why)) => (None, Some(why)),
            None => (None, None),
        };
        self.spec.fleet.supervisor.do_send(WorkerExited {
            schema: self.spec.target.schema.clone(),
            generation: self.spec.generation,
            failure,
            departed,
        });
    }
}

impl<J: Job> Handler<Reconfigure> for WorkerActor<J> {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, ctx: &mut Self::Context) {
        let naptime_changed = msg.naptime != self.spec.naptime;
        self.spec.naptime = msg.naptime;
        self.job.reconfigure(&msg.settings);
        self.spec.db = msg.db;
        if naptime_changed {
            self.last_tick = None;
            self.schedule_ticks(ctx);
        }
        if self.busy_since.is_some() || !self.initialised {
            // Folds when the work in flight (or the initialisation) is done.
            self.fold_requested = true;
        } else {
            // worker_spi folds at once on SIGHUP; ten thousand workers
            // doing so would ask the pool for ten thousand connections in
            // the same millisecond, so each waits its own share of a
            // short window first.
            let delay = reload_fold_delay(&self.spec.target.schema, msg.reload_window);
            ctx.run_later(delay, |worker, ctx| {
                if worker.busy_since.is_some() {
                    worker.fold_requested = true;
                } else if !worker.stop_requested && !worker.paused {
                    worker.fold(ctx);
                }
            });
        }
    }
}

/// Pause (`true`) or resume a worker: while paused, its ticks do nothing.
/// Sent by the Supervisor for a control message.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct SetPaused(pub bool);

/// Fold now, paused or not; the ticks stay where they were. Sent by the
/// Supervisor for a control message.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct FoldNow;

impl<J: Job> Handler<SetPaused> for WorkerActor<J> {
    type Result = ();

    fn handle(&mut self, SetPaused(paused): SetPaused, ctx: &mut Self::Context) {
        if std::mem::replace(&mut self.paused, paused) == paused {
            return;
        }
        if paused {
            // A backlog's next batch, a reload's fold: not while paused.
            if let Some(again) = self.again.take() {
                ctx.cancel_future(again);
            }
        }
        if self.initialised {
            let (schema, generation) = (&self.spec.target.schema, self.spec.generation);
            self.spec
                .fleet
                .status
                .worker_paused(schema, generation, paused);
        }
    }
}

impl<J: Job> Handler<FoldNow> for WorkerActor<J> {
    type Result = ();

    fn handle(&mut self, _msg: FoldNow, ctx: &mut Self::Context) {
        if self.busy_since.is_some() || !self.initialised {
            // Folds when the work in flight (or the initialisation) is
            // done, paused or not.
            self.fold_requested = true;
            self.fold_forced = true;
        } else if !self.stop_requested {
            self.fold(ctx);
        }
    }
}

impl<J: Job> Handler<Stop> for WorkerActor<J> {
    type Result = ();

    fn handle(&mut self, msg: Stop, ctx: &mut Self::Context) {
        self.stop_requested = true;
        let token = self.in_flight.borrow().token.clone();
        match token {
            // Idle, or still waiting for a pooled connection: nothing has
            // reached the server, so there is nothing to finish.
            None => ctx.stop(),
            // Dropping the future alone would leave the statement running on
            // the server: send the cancel request. The statement is rolled
            // back there, and nothing is lost. The token stays, marked, and
            // the worker stops when the statement answers (or its deadline
            // passes), whichever of the two answers comes first: its
            // connection is then discarded, never handed to another worker
            // whose statement a late cancel would hit. Stopping at the
            // cancel's own answer would drop the connection back into the
            // pool instead.
            Some(token) if msg.cancel_in_flight => {
                self.in_flight.borrow_mut().cancel_sent = true;
                let db = self.spec.db.clone();
                ctx.spawn(
                    async move { db.cancel(*token).await }
                        .into_actor(self)
                        .map(|_, _, _| {}),
                );
            }
            // Let the statement finish; the worker stops when it answers.
            Some(_) => {}
        }
    }
}

/// Whether a waiting schema (see [`LOCK_RETRY_EVERY`]) tries again at a
/// tick `since_last_try` after its last try. Half a naptime of slack, so
/// that ticks a second apart all try, however late the previous one ran.
pub fn retry_due(since_last_try: Duration, naptime: Duration) -> bool {
    since_last_try + naptime / 2 >= LOCK_RETRY_EVERY
}

/// The answer to a statement pipelined on a lane, or `Err` once the lane
/// has answered nothing at all for `deadline`. A statement queued behind
/// others on one connection can only start when they have answered, so
/// its deadline counts from the lane's last answer, not from when it was
/// queued: a lane that keeps answering is never taken for a stalled server.
async fn lane_answer<T>(
    deadline: Duration,
    lease: &LaneLease,
    answer: impl std::future::Future<Output = T>,
) -> Result<T, ()> {
    tokio::pin!(answer);
    loop {
        let silent_until = lease.last_answer() + deadline;
        match tokio::time::timeout_at(silent_until.into(), &mut answer).await {
            Ok(answer) => return Ok(answer),
            // The lane answered meanwhile (and still counts: a fold that
            // gave up on it discards it).
            Err(_)
                if !lease.client().is_discarded()
                    && lease.last_answer() + deadline > Instant::now() =>
            {
                continue
            }
            Err(_) => return Err(()),
        }
    }
}

/// The fold a reload asks for is spread over at least this window (or
/// the naptime, if shorter), each schema at a fixed offset within it.
pub const RELOAD_FOLD_WINDOW: Duration = Duration::from_secs(1);

/// ... and over a longer one for a big fleet: the reload's folds come on
/// top of the ticks', and 10,000 of them within one second kept the actor
/// thread busy enough to make ticks 45 to 49 ms late (p99) for 1.75 s,
/// against 2.5 ms otherwise.
pub const RELOAD_FOLDS_PER_SECOND: u32 = 2_000;

/// The window a reload's folds are spread over, for a fleet of `workers`:
/// [`RELOAD_FOLD_WINDOW`], or as long as [`RELOAD_FOLDS_PER_SECOND`]
/// needs, never longer than the naptime (after which every schema has
/// folded at its tick anyway).
pub fn reload_fold_window(workers: usize, naptime: Duration) -> Duration {
    let spread = Duration::from_secs_f64(workers as f64 / f64::from(RELOAD_FOLDS_PER_SECOND));
    RELOAD_FOLD_WINDOW.max(spread).min(naptime)
}

/// How long after a reload this schema folds: its own offset within
/// `window` (see [`reload_fold_window`]).
pub fn reload_fold_delay(schema: &str, window: Duration) -> Duration {
    let window = window.as_nanos().max(1);
    let mut hasher = DefaultHasher::new();
    (schema, "reload").hash(&mut hasher);
    Duration::from_nanos((u128::from(hasher.finish()) % window) as u64)
}

/// How long after its slot a tick running at `now` runs: the time since
/// the latest slot at or before `now` (ticks never run early).
pub fn lateness(epoch: Instant, now: Instant, naptime: Duration, schema: &str) -> Duration {
    let wait = until_next_slot(epoch, now, naptime, schema);
    if wait.is_zero() {
        Duration::ZERO
    } else {
        naptime.saturating_sub(wait)
    }
}

/// Time from `now` to this schema's next slot: slots are
/// `epoch + phase + k * naptime`, the phase a hash of the schema name.
pub fn until_next_slot(epoch: Instant, now: Instant, naptime: Duration, schema: &str) -> Duration {
    let period = naptime.as_nanos().max(1);
    let mut hasher = DefaultHasher::new();
    schema.hash(&mut hasher);
    let phase = u128::from(hasher.finish()) % period;
    let elapsed = now.saturating_duration_since(epoch).as_nanos() % period;
    let wait = (phase + period - elapsed) % period;
    Duration::from_nanos(wait as u64)
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The actor's own part of a worker's memory (see "Memory per worker"
    /// on [`WorkerActor`]): a budget, so a field added in passing shows.
    #[test]
    fn a_worker_stays_small() {
        use std::mem::size_of;
        assert!(
            size_of::<FoldWorker>() <= 400,
            "WorkerActor is {} bytes",
            size_of::<FoldWorker>()
        );
        assert!(size_of::<InFlightState>() <= 16);
        assert!(size_of::<Database>() <= 8);
    }

    #[test]
    fn a_waiting_schema_tries_at_most_once_a_second() {
        let ms = Duration::from_millis;
        // Ticks of a second or more: every tick tries, even a tick that
        // comes a little early after a late one.
        assert!(retry_due(ms(999), ms(1000)));
        assert!(retry_due(ms(9_990), ms(10_000)));
        // 100 ms ticks: one try in ten.
        assert!(!retry_due(ms(100), ms(100)));
        assert!(!retry_due(ms(900), ms(100)));
        assert!(retry_due(ms(1_000), ms(100)));
        let tries = (1..=50u64)
            .scan(Duration::ZERO, |since, _| {
                *since += ms(100);
                let due = retry_due(*since, ms(100));
                if due {
                    *since = Duration::ZERO;
                }
                Some(due)
            })
            .filter(|due| *due)
            .count();
        assert_eq!(tries, 5, "in 5 s of 100 ms ticks");
    }

    #[test]
    fn slots_are_stable_and_within_the_interval() {
        let epoch = Instant::now();
        let naptime = Duration::from_secs(10);
        let first = until_next_slot(epoch, epoch, naptime, "schema1");
        assert!(first < naptime);
        // One interval later the same schema waits the same time.
        let later = until_next_slot(epoch, epoch + naptime, naptime, "schema1");
        assert_eq!(first, later);
    }

    #[test]
    fn lateness_is_measured_from_the_latest_slot() {
        let epoch = Instant::now();
        let naptime = Duration::from_secs(10);
        let slot = epoch + until_next_slot(epoch, epoch, naptime, "schema1");
        assert_eq!(lateness(epoch, slot, naptime, "schema1"), Duration::ZERO);
        let late = lateness(epoch, slot + Duration::from_millis(3), naptime, "schema1");
        assert_eq!(late, Duration::from_millis(3));
        let next = slot + naptime + Duration::from_millis(7);
        assert_eq!(
            lateness(epoch, next, naptime, "schema1"),
            Duration::from_millis(7)
        );
    }

    #[test]
    fn a_big_fleets_reload_folds_are_spread_wider() {
        let s = Duration::from_secs;
        let naptime = s(10);
        assert_eq!(reload_fold_window(2, naptime), s(1));
        assert_eq!(reload_fold_window(2_000, naptime), s(1));
        assert_eq!(reload_fold_window(10_000, naptime), s(5));
        // Never past the naptime: every schema folds at its tick by then.
        assert_eq!(reload_fold_window(100_000, naptime), naptime);
        assert_eq!(
            reload_fold_window(2, Duration::from_millis(50)),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn the_fold_after_a_reload_is_spread_over_its_window() {
        let mut buckets = [0usize; 10];
        for n in 0..10_000 {
            let delay = reload_fold_delay(&format!("schema{n}"), RELOAD_FOLD_WINDOW);
            assert!(delay < RELOAD_FOLD_WINDOW);
            buckets[(delay.as_millis() / 100) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&count| (800..1200).contains(&count)),
            "{buckets:?}"
        );
        // Never longer than the naptime.
        let short = Duration::from_millis(50);
        assert!((0..1000).all(|n| reload_fold_delay(&format!("schema{n}"), short) < short));
    }

    #[test]
    fn slots_spread_schemas_over_the_interval() {
        let epoch = Instant::now();
        let naptime = Duration::from_secs(10);
        let mut buckets = [0usize; 10];
        for n in 0..10_000 {
            let wait = until_next_slot(epoch, epoch, naptime, &format!("schema{n}"));
            buckets[wait.as_secs() as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&count| (800..1200).contains(&count)),
            "{buckets:?}"
        );
    }
}

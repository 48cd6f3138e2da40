//! The fleet's status, shared by the actors that make it and the HTTP
//! handlers that show it.
//!
//! Workers and the Supervisor write here as things happen (a fold, a
//! failure, a restart, a heartbeat); the HTTP server, on threads of its
//! own, only reads. Nothing served asks an actor anything, so a slow or
//! hostile HTTP client can never hold up a fold, and a scrape costs the
//! actors nothing. Updates are a short critical section on one map keyed
//! by schema, plus atomics: at 10,000 schemas folding every 10 s that is
//! about 1,000 lock acquisitions a second, each a few hundred nanoseconds.
//!
//! What is read from here: `/metrics` (see `metrics.rs`), `/healthz`
//! ([`Status::liveness`], from the Supervisor's heartbeat), `/readyz`
//! ([`Status::readiness`]), `/workers` and the status page
//! ([`Status::workers`]).

pub mod history;
mod metrics;

use std::collections::{btree_map, BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::counter::{Backlog, Total};
/// The database's health is db's to say; it is shown here, so the
/// Supervisor and the pages find it beside the rest of the status.
pub use crate::db::DbHealth;
use crate::settings::{Origin, SchemaTarget, Settings};

use history::History;

/// The Supervisor beats this often ...
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// ... and `/healthz` fails once the last beat is older than this.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(5);
/// Tick lateness samples kept for the status page's percentiles.
const RECENT_LATENESS: usize = 4096;

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkerState {
    /// Started; its schema is not initialised yet (the database may be
    /// down: it keeps trying at each tick).
    Starting,
    /// Initialised and folding at each tick.
    Running,
    /// Initialised, but its last fold gave up waiting for a lock on its
    /// table (a migration, ALTER TABLE, CREATE INDEX): it tries again at
    /// its next tick, and is `running` again after its next fold.
    WaitingForLock,
    /// Its table existed and was dropped (a tenant leaving): it is not
    /// created again; the worker folds again if it comes back.
    TableDropped,
    /// Its table has no total row (or a NULL one) and deltas wait in it:
    /// they are kept, not folded, until someone inserts the total row
    /// (see [`WorkerStatus::waiting`]). The worker itself is fine.
    WaitingForTotal,
    /// Initialised, but its last tick could not reach the database, or the
    /// database refused pgfleet: nothing folds until the database answers.
    WaitingForDatabase,
    /// Paused by an operator (`NOTIFY pgfleet, 'pause <schema>'`): its
    /// ticks do nothing until it is resumed; a `fold` still folds.
    Paused,
    /// Failed; the restart policy will start it again after a delay.
    Restarting,
    /// Failed and given up by the restart policy; a reload tries again.
    GivenUp,
}

impl WorkerState {
    pub const ALL: [WorkerState; 9] = [
        WorkerState::Starting,
        WorkerState::Running,
        WorkerState::WaitingForLock,
        WorkerState::TableDropped,
        WorkerState::WaitingForTotal,
        WorkerState::WaitingForDatabase,
        WorkerState::Paused,
        WorkerState::Restarting,
        WorkerState::GivenUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Running => "running",
            WorkerState::WaitingForLock => "waiting_for_lock",
            WorkerState::TableDropped => "table_dropped",
            WorkerState::WaitingForTotal => "waiting_for_total",
            WorkerState::WaitingForDatabase => "waiting_for_database",
            WorkerState::Paused => "paused",
            WorkerState::Restarting => "restarting",
            WorkerState::GivenUp => "given_up",
        }
    }

    /// Running, for readiness: folding, waiting for a lock (the fold's
    /// or, rarely, the initialisation's), for a total row, or for the
    /// database: readiness does not fail because a migration runs or a
    /// tenant's table lacks its total row, and says the database is down
    /// on its own (and is ready again as soon as it is back, before each
    /// worker's next fold).
    pub fn counts_as_running(self) -> bool {
        matches!(
            self,
            WorkerState::Running
                | WorkerState::WaitingForLock
                | WorkerState::WaitingForTotal
                | WorkerState::WaitingForDatabase
                | WorkerState::Paused
        )
    }

    /// A fold that succeeds ends these: the wait is over.
    fn ended_by_a_fold(self) -> bool {
        matches!(
            self,
            WorkerState::WaitingForLock
                | WorkerState::TableDropped
                | WorkerState::WaitingForTotal
                | WorkerState::WaitingForDatabase
        )
    }

    /// Order on the status page: what needs a person first.
    pub fn urgency(self) -> u8 {
        match self {
            WorkerState::GivenUp => 0,
            WorkerState::Restarting => 1,
            WorkerState::WaitingForTotal => 2,
            WorkerState::WaitingForLock | WorkerState::TableDropped => 3,
            WorkerState::WaitingForDatabase | WorkerState::Starting => 4,
            WorkerState::Paused => 5,
            WorkerState::Running => 6,
        }
    }
}

/// One schema's worker, as last reported.
///
/// A fleet of 100,000 keeps 100,000 of these, so an entry holds what every
/// worker has (its names shared with the Supervisor's slot, see
/// [`SchemaTarget`]) and boxes what only a troubled one has ([`Trouble`]):
/// 152 bytes instead of 256, and no allocation of its own (a total beyond
/// bigint's range aside). A total of any column type (16 bytes, where an
/// `integer` one took 8) and the backlog (8) cost 1.6 MB at 100,000
/// schemas.
#[derive(Debug, Clone)]
pub struct WorkerStatus {
    pub schema: Arc<str>,
    pub worker: Arc<str>,
    /// Numbers the workers this schema has had: 1 for the first.
    pub generation: u64,
    /// Listed in the settings, or found by `workers.match`.
    pub origin: Origin,
    pub state: WorkerState,
    pub state_since: SystemTime,
    pub last_fold_at: Option<SystemTime>,
    pub last_fold_duration: Option<Duration>,
    /// The total after the last fold; None before the first fold, or when
    /// the table has no total row.
    pub last_total: Option<Total>,
    pub folds: u64,
    pub rows_folded: u64,
    pub ticks_skipped: u64,
    /// When it last skipped a tick, in whole seconds since the Unix epoch
    /// (0: never); see [`WorkerStatus::last_skipped_at`]. Four bytes that
    /// fit in the entry's padding.
    last_skipped_s: u32,
    /// Ticks skipped since its last fold (saturating at 255: the page
    /// asks "two or more"); one byte more of the padding, the `origin`
    /// another.
    skipped_in_a_row: u8,
    /// Deltas the last fold left: because its batch was full (0 when it
    /// took every delta it found; see [`WorkerStatus::backlog`]), or, in
    /// state `WaitingForTotal`, because there is no total row to fold them
    /// into (see [`WorkerStatus::waiting`]); never both at once.
    backlog_left: u64,
    backlog_at_least: bool,
    trouble: Option<Box<Trouble>>,
}

/// What only a worker that failed, restarts or was given up on has.
#[derive(Debug, Clone, Default)]
struct Trouble {
    failures: u64,
    restarts: u64,
    last_error: Option<String>,
    last_error_at: Option<SystemTime>,
    /// While restarting: when the policy starts it again.
    restart_at: Option<SystemTime>,
    /// When given up: why.
    given_up_reason: Option<String>,
}

impl WorkerStatus {
    fn new(target: &SchemaTarget, generation: u64) -> Self {
        WorkerStatus {
            schema: Arc::clone(&target.schema),
            worker: Arc::clone(&target.worker),
            generation,
            origin: target.origin,
            state: WorkerState::Starting,
            state_since: SystemTime::now(),
            last_fold_at: None,
            last_fold_duration: None,
            last_total: None,
            folds: 0,
            rows_folded: 0,
            ticks_skipped: 0,
            last_skipped_s: 0,
            skipped_in_a_row: 0,
            backlog_left: 0,
            backlog_at_least: false,
            trouble: None,
        }
    }

    /// The deltas the last fold left because its batch was full: 0 when it
    /// took every delta it found (or none ran yet); counted up to ten
    /// batches' worth, beyond which `at_least` is set.
    pub fn backlog(&self) -> Backlog {
        if self.state == WorkerState::WaitingForTotal {
            return Backlog {
                left: 0,
                at_least: false,
            };
        }
        Backlog {
            left: self.backlog_left,
            at_least: self.backlog_at_least,
        }
    }

    /// In state `WaitingForTotal`: the deltas kept for want of a total row
    /// (counted up to ten batches' worth, as a backlog is).
    pub fn waiting(&self) -> Option<Backlog> {
        (self.state == WorkerState::WaitingForTotal).then_some(Backlog {
            left: self.backlog_left,
            at_least: self.backlog_at_least,
        })
    }

    /// When it last skipped a tick (to the second); None: never.
    pub fn last_skipped_at(&self) -> Option<SystemTime> {
        (self.last_skipped_s > 0)
            .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(self.last_skipped_s.into()))
    }

    /// Ticks skipped since its last fold: 0 when it folded at its last
    /// tick.
    pub fn skipped_in_a_row(&self) -> u16 {
        u16::from(self.skipped_in_a_row)
    }

    pub fn failures(&self) -> u64 {
        self.trouble.as_ref().map_or(0, |trouble| trouble.failures)
    }

    /// Restarts of this schema's worker by the policy.
    pub fn restarts(&self) -> u64 {
        self.trouble.as_ref().map_or(0, |trouble| trouble.restarts)
    }

    pub fn last_error(&self) -> Option<&str> {
        self.trouble.as_ref()?.last_error.as_deref()
    }

    pub fn last_error_at(&self) -> Option<SystemTime> {
        self.trouble.as_ref()?.last_error_at
    }

    /// While restarting: when the policy starts it again.
    pub fn restart_at(&self) -> Option<SystemTime> {
        self.trouble.as_ref()?.restart_at
    }

    /// When given up: why.
    pub fn given_up_reason(&self) -> Option<&str> {
        self.trouble.as_ref()?.given_up_reason.as_deref()
    }

    fn trouble(&mut self) -> &mut Trouble {
        self.trouble.get_or_insert_with(Box::default)
    }

    fn set_state(&mut self, state: WorkerState) {
        if self.state != state {
            self.state = state;
            self.state_since = SystemTime::now();
        }
        if let Some(trouble) = &mut self.trouble {
            if state != WorkerState::Restarting {
                trouble.restart_at = None;
            }
            if state != WorkerState::GivenUp {
                trouble.given_up_reason = None;
            }
        }
    }
}

/// What a fold did, as the status keeps it (a job's run report, see
/// `job::RunReport`, without what only the worker acts on).
#[derive(Debug, Clone, Copy)]
pub struct FoldDone<'a> {
    pub took: Duration,
    pub rows: u64,
    pub total: Option<&'a Total>,
    /// When the fold took a full batch: the work it left.
    pub backlog: Option<Backlog>,
    /// Without a total row: the deltas kept until one exists.
    pub waiting: Option<Backlog>,
}

type HealthProbe = Arc<dyn Fn() -> DbHealth + Send + Sync>;

/// The fleet at a glance, for the status page.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub workers: usize,
    pub by_state: BTreeMap<WorkerState, usize>,
    pub folds: u64,
    pub rows_folded: u64,
    pub failures: u64,
    pub restarts: u64,
    pub ticks_skipped: u64,
    pub naptime: Duration,
    pub started_at: Option<SystemTime>,
    pub database: Option<DbHealth>,
    /// Tick lateness over the recent ticks: (p50, p99, samples).
    pub lateness: Option<(Duration, Duration, usize)>,
}

/// Cheap to clone; every clone is the same status.
#[derive(Clone)]
pub struct Status {
    inner: Arc<Inner>,
    /// The status's own series, and those its owners add ([`Status::register`]).
    registry: Arc<RwLock<Registry>>,
}

struct Inner {
    version: &'static str,
    started_at: SystemTime,
    clock: Instant,
    /// Milliseconds after `clock` of the Supervisor's last heartbeat.
    heartbeat_ms: AtomicU64,
    supervisor_stopped: AtomicBool,
    config_loaded: AtomicBool,
    discovers: AtomicBool,
    /// With `coordination.enabled`: this instance's share, as last told.
    coordination: std::sync::Mutex<Option<CoordinationView>>,
    /// With coordination: whether folds may start now.
    lease: std::sync::Mutex<Option<crate::lease::Lease>>,
    shutting_down: AtomicBool,
    per_schema_max: AtomicU32,
    naptime_ms: AtomicU64,
    folds: AtomicU64,
    rows_folded: AtomicU64,
    failures: AtomicU64,
    restarts: AtomicU64,
    ticks_skipped_total: AtomicU64,
    fleet: Mutex<Fleet>,
    /// The fleet-wide counters over the last minutes (status page charts).
    history: Mutex<History>,
    database_probe: Mutex<Option<HealthProbe>>,
    log_lines_dropped: Mutex<Option<Arc<AtomicU64>>>,
    ticks_skipped: Family<[(&'static str, &'static str); 1], Counter>,
    vacuums: Family<[(&'static str, &'static str); 1], Counter>,
    config_reloads: Family<[(&'static str, &'static str); 1], Counter>,
    fold_duration: Histogram,
    tick_lateness: Histogram,
}

#[derive(Default)]
struct Fleet {
    workers: BTreeMap<Arc<str>, WorkerStatus>,
    recent_lateness: VecDeque<f64>,
    /// Ticks pushed to `recent_lateness` ever: the history takes the ones
    /// since its last sample.
    lateness_ticks: u64,
}

impl Default for Status {
    fn default() -> Self {
        Self::new()
    }
}

impl Status {
    pub fn new() -> Self {
        let inner = Arc::new(Inner {
            version: env!("CARGO_PKG_VERSION"),
            started_at: SystemTime::now(),
            clock: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            supervisor_stopped: AtomicBool::new(false),
            config_loaded: AtomicBool::new(false),
            discovers: AtomicBool::new(false),
            coordination: std::sync::Mutex::new(None),
            lease: std::sync::Mutex::new(None),
            shutting_down: AtomicBool::new(false),
            per_schema_max: AtomicU32::new(0),
            naptime_ms: AtomicU64::new(0),
            folds: AtomicU64::new(0),
            rows_folded: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            ticks_skipped_total: AtomicU64::new(0),
            fleet: Mutex::new(Fleet::default()),
            history: Mutex::new(History::default()),
            database_probe: Mutex::new(None),
            log_lines_dropped: Mutex::new(None),
            ticks_skipped: Family::default(),
            vacuums: Family::default(),
            config_reloads: Family::default(),
            fold_duration: Histogram::new(metrics::FOLD_DURATION_BUCKETS),
            tick_lateness: Histogram::new(metrics::TICK_LATENESS_BUCKETS),
        });
        let registry = Arc::new(RwLock::new(metrics::registry(&inner)));
        Status { inner, registry }
    }

    pub fn version(&self) -> &'static str {
        self.inner.version
    }

    // ---- written by the Supervisor -------------------------------------

    /// A configuration is in force (at start, and after each reload).
    pub fn configure(&self, settings: &Settings) {
        let inner = &self.inner;
        inner
            .per_schema_max
            .store(settings.http.per_schema_metrics_max, Ordering::Relaxed);
        let naptime_ms = u64::try_from(settings.naptime.as_millis()).unwrap_or(u64::MAX);
        inner.naptime_ms.store(naptime_ms, Ordering::Relaxed);
        inner
            .discovers
            .store(settings.discovers(), Ordering::Relaxed);
        inner.config_loaded.store(true, Ordering::Relaxed);
    }

    /// The coordination's view of this instance (see `coordination`).
    pub fn coordination(&self, view: CoordinationView) {
        if let Ok(mut current) = self.inner.coordination.lock() {
            *current = Some(view);
        }
    }

    /// The lease the workers read (see `lease`), for readiness.
    pub fn coordination_lease(&self, lease: crate::lease::Lease) {
        if let Ok(mut current) = self.inner.lease.lock() {
            *current = Some(lease);
        }
    }

    /// None without coordination; `trusted` read now.
    pub fn coordination_view(&self) -> Option<CoordinationView> {
        let mut view = self.inner.coordination.lock().ok()?.clone()?;
        if let Some(lease) = self.inner.lease.lock().ok().and_then(|lease| lease.clone()) {
            view.trusted = lease.trusted();
        }
        Some(view)
    }

    /// `workers.match` is set (for the status page's rescan button).
    pub fn discovers(&self) -> bool {
        self.inner.discovers.load(Ordering::Relaxed)
    }

    /// The Supervisor is handling messages (see [`HEARTBEAT_INTERVAL`]).
    pub fn heartbeat(&self) {
        let now = self.inner.clock.elapsed().as_millis();
        self.inner
            .heartbeat_ms
            .store(u64::try_from(now).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn supervisor_stopped(&self) {
        self.inner.supervisor_stopped.store(true, Ordering::Relaxed);
    }

    pub fn shutting_down(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Lets an owner of series add them to `/metrics` (a collector read at
    /// each scrape, or metrics it updates itself), so that a new metric is
    /// the file that emits it plus its registration: `db::PoolMetrics`, for
    /// one. Once per owner: a name registered twice is served twice.
    pub fn register(&self, add: impl FnOnce(&mut Registry)) {
        add(&mut self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner));
    }

    /// Where the database's health comes from when the pool can tell it
    /// (it sees every connection attempt, and the kind of a refusal);
    /// unknown until one is set. Replaced when a reload builds a new pool.
    pub fn set_database_probe(&self, probe: impl Fn() -> DbHealth + Send + Sync + 'static) {
        *lock(&self.inner.database_probe) = Some(Arc::new(probe));
    }

    /// A worker was started for `target`: its first, or a restart.
    pub fn worker_spawned(&self, target: &SchemaTarget, generation: u64, restart: bool) {
        if restart {
            self.inner.restarts.fetch_add(1, Ordering::Relaxed);
        }
        let mut fleet = self.fleet();
        let entry = fleet
            .workers
            .entry(Arc::clone(&target.schema))
            .or_insert_with(|| WorkerStatus::new(target, generation));
        entry.generation = generation;
        entry.worker = Arc::clone(&target.worker);
        entry.origin = target.origin;
        if restart {
            entry.trouble().restarts += 1;
        }
        entry.set_state(WorkerState::Starting);
    }

    /// A worker ended with an error.
    pub fn worker_failed(&self, schema: &str, generation: u64, error: &str) {
        self.inner.failures.fetch_add(1, Ordering::Relaxed);
        self.update(schema, generation, |worker| {
            let trouble = worker.trouble();
            trouble.failures += 1;
            trouble.last_error = Some(error.to_owned());
            trouble.last_error_at = Some(SystemTime::now());
        });
    }

    /// The policy will start the schema's worker again after `delay`.
    pub fn worker_restarting(&self, schema: &str, generation: u64, delay: Duration) {
        self.update(schema, generation, |worker| {
            worker.set_state(WorkerState::Restarting);
            worker.trouble().restart_at = Some(SystemTime::now() + delay);
        });
    }

    pub fn worker_given_up(&self, schema: &str, generation: u64, reason: &str) {
        self.update(schema, generation, |worker| {
            worker.set_state(WorkerState::GivenUp);
            worker.trouble().given_up_reason = Some(reason.to_owned());
        });
    }

    /// The schema has no worker any more (a reload removed it, or the
    /// service is stopping).
    pub fn worker_removed(&self, schema: &str) {
        self.fleet().workers.remove(schema);
    }

    // ---- written by the workers ----------------------------------------

    /// The worker initialised its schema and folds from now on.
    pub fn worker_initialised(&self, schema: &str, generation: u64) {
        self.update(schema, generation, |worker| {
            worker.set_state(WorkerState::Running)
        });
    }

    /// A fold ran: `report.rows` delta rows, leaving `report.total` (None:
    /// no total row), in `report.took`.
    pub fn fold_done(&self, schema: &str, generation: u64, report: FoldDone<'_>) {
        let inner = &self.inner;
        inner.folds.fetch_add(1, Ordering::Relaxed);
        inner.rows_folded.fetch_add(report.rows, Ordering::Relaxed);
        inner.fold_duration.observe(report.took.as_secs_f64());
        self.update(schema, generation, |worker| {
            let waiting = report.waiting.filter(|waiting| waiting.left > 0);
            if worker.state == WorkerState::Paused {
                // A `fold` of a paused schema: still paused.
            } else if waiting.is_some() {
                worker.set_state(WorkerState::WaitingForTotal);
            } else if worker.state.ended_by_a_fold() {
                worker.set_state(WorkerState::Running);
            }
            worker.folds += 1;
            worker.skipped_in_a_row = 0;
            worker.rows_folded += report.rows;
            worker.last_fold_at = Some(SystemTime::now());
            worker.last_fold_duration = Some(report.took);
            worker.last_total = report.total.cloned();
            let backlog = waiting.or(report.backlog).unwrap_or(Backlog {
                left: 0,
                at_least: false,
            });
            worker.backlog_left = backlog.left;
            worker.backlog_at_least = backlog.at_least;
        });
    }

    /// The worker waits: for a lock on its table, for its dropped table
    /// to come back, or for the database (`state` says which).
    pub fn worker_waiting(&self, schema: &str, generation: u64, state: WorkerState) {
        self.update(schema, generation, |worker| {
            // A paused worker's `fold` that waited: still paused.
            if worker.state != WorkerState::Paused {
                worker.set_state(state);
            }
        });
    }

    /// An operator paused (or resumed) the worker.
    pub fn worker_paused(&self, schema: &str, generation: u64, paused: bool) {
        self.update(schema, generation, |worker| {
            if paused {
                worker.set_state(WorkerState::Paused);
            } else if worker.state == WorkerState::Paused {
                worker.set_state(WorkerState::Running);
            }
        });
    }

    /// A tick of an initialised worker found the database unreachable, or
    /// refusing pgfleet: it waits for the database, and is `running` again
    /// after its next fold.
    pub fn database_blocks(&self, schema: &str, generation: u64) {
        self.update(schema, generation, |worker| {
            if !matches!(worker.state, WorkerState::Starting | WorkerState::Paused) {
                worker.set_state(WorkerState::WaitingForDatabase);
            }
        });
    }

    /// A tick was not folded; `reason` as in `worker_tick_skipped`.
    pub fn tick_skipped(&self, schema: &str, generation: u64, reason: &'static str) {
        self.inner
            .ticks_skipped
            .get_or_create(&[("reason", reason)])
            .inc();
        self.inner
            .ticks_skipped_total
            .fetch_add(1, Ordering::Relaxed);
        let now_s = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| {
                u32::try_from(since.as_secs()).unwrap_or(u32::MAX)
            });
        self.update(schema, generation, |worker| {
            worker.ticks_skipped += 1;
            worker.last_skipped_s = now_s;
            worker.skipped_in_a_row = worker.skipped_in_a_row.saturating_add(1);
        });
    }

    /// A worker's VACUUM ended: `done`, `locked` (it gave up waiting for
    /// the table's lock), `postponed` (no connection free for maintenance)
    /// or `failed` (timed out, or an error).
    pub fn vacuum_ran(&self, result: &'static str) {
        self.inner
            .vacuums
            .get_or_create(&[("result", result)])
            .inc();
    }

    /// A tick ran `lateness` after its scheduled slot.
    pub fn tick_late(&self, lateness: Duration) {
        let seconds = lateness.as_secs_f64();
        self.inner.tick_lateness.observe(seconds);
        let mut fleet = self.fleet();
        if fleet.recent_lateness.len() == RECENT_LATENESS {
            fleet.recent_lateness.pop_front();
        }
        fleet.recent_lateness.push_back(seconds);
        fleet.lateness_ticks += 1;
    }

    // ---- written by others ---------------------------------------------

    /// A SIGHUP's configuration was applied (`true`) or rejected.
    pub fn config_reloaded(&self, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        self.inner
            .config_reloads
            .get_or_create(&[("result", result)])
            .inc();
    }

    /// Exports `counter` (log lines dropped because the output stalled or
    /// failed) as `pgfleet_log_lines_dropped_total`.
    pub fn export_log_lines_dropped(&self, counter: Arc<AtomicU64>) {
        *lock(&self.inner.log_lines_dropped) = Some(counter);
    }

    // ---- read by the HTTP handlers -------------------------------------

    /// `Ok` while the Supervisor handles messages; else why not.
    pub fn liveness(&self) -> Result<(), String> {
        let inner = &self.inner;
        if inner.supervisor_stopped.load(Ordering::Relaxed) {
            return Err("the supervisor has stopped".into());
        }
        let beat = Duration::from_millis(inner.heartbeat_ms.load(Ordering::Relaxed));
        let age = inner.clock.elapsed().saturating_sub(beat);
        if age > HEARTBEAT_STALE {
            return Err(format!(
                "the supervisor has not handled a message for {} s",
                age.as_secs()
            ));
        }
        Ok(())
    }

    /// `Ok` when the configuration is loaded, the database answers and at
    /// least one worker runs; else every reason why not.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let inner = &self.inner;
        let mut reasons = Vec::new();
        if let Err(e) = self.liveness() {
            reasons.push(e);
        }
        if inner.shutting_down.load(Ordering::Relaxed) {
            reasons.push("shutting down".into());
        }
        if !inner.config_loaded.load(Ordering::Relaxed) {
            reasons.push("the configuration is not loaded yet".into());
        }
        match self.database() {
            DbHealth::Up => {}
            DbHealth::Unknown => reasons.push("no answer from the database yet".into()),
            down => reasons.extend(down.problem()),
        }
        // Sharing the fleet, an instance is ready when it is a member whose
        // lease is confirmed: it folds what it holds (which may be
        // nothing: a fourth instance for three schemas). Buckets it awaits
        // and schema lists that differ can last a whole rollout of a
        // changed list: they are metrics and alerts, not unreadiness, or
        // that rollout would never finish. Alone, when a worker runs.
        match self.coordination_view() {
            Some(view) => {
                if view.member.is_none() {
                    reasons.push(
                        "not a member of the coordination (joining, or its session was lost)"
                            .into(),
                    );
                } else if !view.trusted {
                    reasons.push("the coordination lease is not confirmed: folding nothing".into());
                }
            }
            None => {
                let running = self
                    .fleet()
                    .workers
                    .values()
                    .filter(|w| w.state.counts_as_running())
                    .count();
                if running == 0 {
                    reasons.push("no worker runs".into());
                }
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    pub fn database(&self) -> DbHealth {
        database(&self.inner)
    }

    /// Every worker, by schema.
    pub fn workers(&self) -> Vec<WorkerStatus> {
        self.fleet().workers.values().cloned().collect()
    }

    /// Lends every worker, by schema, to `read` while holding the lock the
    /// workers write under: for a reader that needs a few of 100,000
    /// entries (the status page), instead of a copy of them all. Keep
    /// `read` short: every worker's next report waits for it.
    pub fn read_workers<R>(
        &self,
        read: impl FnOnce(btree_map::Values<'_, Arc<str>, WorkerStatus>) -> R,
    ) -> R {
        read(self.fleet().workers.values())
    }

    pub fn worker(&self, schema: &str) -> Option<WorkerStatus> {
        self.fleet().workers.get(schema).cloned()
    }

    pub fn summary(&self) -> Summary {
        let inner = &self.inner;
        let (workers, by_state, mut recent) = {
            let fleet = self.fleet();
            let mut by_state = BTreeMap::new();
            for worker in fleet.workers.values() {
                *by_state.entry(worker.state).or_insert(0) += 1;
            }
            let recent: Vec<f64> = fleet.recent_lateness.iter().copied().collect();
            (fleet.workers.len(), by_state, recent)
        };
        recent.sort_by(f64::total_cmp);
        let quantile = |q: f64| -> Duration {
            let index = ((recent.len() as f64 - 1.0) * q).round() as usize;
            Duration::from_secs_f64(recent.get(index).copied().unwrap_or(0.0).max(0.0))
        };
        let lateness = (!recent.is_empty()).then(|| (quantile(0.5), quantile(0.99), recent.len()));
        Summary {
            workers,
            by_state,
            folds: inner.folds.load(Ordering::Relaxed),
            rows_folded: inner.rows_folded.load(Ordering::Relaxed),
            failures: inner.failures.load(Ordering::Relaxed),
            restarts: inner.restarts.load(Ordering::Relaxed),
            ticks_skipped: inner.ticks_skipped_total.load(Ordering::Relaxed),
            naptime: Duration::from_millis(inner.naptime_ms.load(Ordering::Relaxed)),
            started_at: Some(inner.started_at),
            database: Some(self.database()),
            lateness,
        }
    }

    /// Adds a sample of the fleet-wide counters to the history (see
    /// [`history`]); called every [`history::SAMPLE_EVERY`] by the HTTP
    /// side, never by a worker.
    pub fn sample_history(&self) {
        let inner = &self.inner;
        let last_ticks = lock(&inner.history).last_ticks();
        // The ticks since the last sample are the newest of the recent
        // ones (all of them, unless more ran than the ring keeps).
        let (ticks, mut recent) = {
            let fleet = self.fleet();
            let since_last = fleet.lateness_ticks.saturating_sub(last_ticks);
            let take = usize::try_from(since_last)
                .unwrap_or(usize::MAX)
                .min(fleet.recent_lateness.len());
            let skip = fleet.recent_lateness.len() - take;
            let recent: Vec<f64> = fleet.recent_lateness.range(skip..).copied().collect();
            (fleet.lateness_ticks, recent)
        };
        let sample = history::Sample {
            at: inner.clock.elapsed(),
            folds: inner.folds.load(Ordering::Relaxed),
            rows_folded: inner.rows_folded.load(Ordering::Relaxed),
            ticks_skipped: inner.ticks_skipped_total.load(Ordering::Relaxed),
            ticks,
            lateness: history::lateness_of(&mut recent),
        };
        lock(&inner.history).record(sample);
    }

    /// The intervals of the history, oldest first, and the time now on
    /// their clock (an interval ended `now - end` ago).
    pub fn history(&self) -> (Vec<history::Interval>, Duration) {
        let intervals = lock(&self.inner.history).intervals();
        (intervals, self.inner.clock.elapsed())
    }

    /// `/metrics`, in the OpenMetrics text format.
    pub fn encode_metrics(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(8 * 1024);
        let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        Ok(text)
    }

    // ---- helpers -------------------------------------------------------

    fn fleet(&self) -> MutexGuard<'_, Fleet> {
        lock(&self.inner.fleet)
    }

    /// Applies `change` to the schema's entry, if it is still that
    /// generation's: a retired worker's last report does not overwrite its
    /// successor's.
    fn update(&self, schema: &str, generation: u64, change: impl FnOnce(&mut WorkerStatus)) {
        if let Some(worker) = self.fleet().workers.get_mut(schema) {
            if worker.generation == generation {
                change(worker);
            }
        }
    }
}

/// What the database's last connection attempt or statement found, as
/// the pool (`db::Database::health`) tells it; unknown until one is set.
fn database(inner: &Inner) -> DbHealth {
    let probe = lock(&inner.database_probe).clone();
    probe.map_or(DbHealth::Unknown, |probe| probe())
}

/// A panic while holding one of these locks leaves plain data behind;
/// carry on with it rather than fail every later reader.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(schema: &str) -> SchemaTarget {
        SchemaTarget::listed(schema.into(), schema.into())
    }

    /// A fleet keeps one entry a schema: a budget, so a field added in
    /// passing shows (see "Memory per worker" on `WorkerActor`).
    #[test]
    fn an_entry_stays_small() {
        let size = std::mem::size_of::<WorkerStatus>();
        assert!(size <= 152, "WorkerStatus is {size} bytes");
    }

    #[test]
    fn a_retired_generation_does_not_overwrite_its_successor() {
        let status = Status::new();
        status.worker_spawned(&target("s"), 1, false);
        status.worker_spawned(&target("s"), 2, true);
        status.worker_initialised("s", 1);
        status.fold_done("s", 1, report(5, Some(&Total::from(5))));
        let worker = status.worker("s").expect("entry");
        assert_eq!(worker.generation, 2);
        assert_eq!(worker.state, WorkerState::Starting);
        assert_eq!(worker.folds, 0);
        assert_eq!(worker.restarts(), 1);
        // Fleet-wide counters count every fold, whoever made it.
        assert_eq!(status.summary().folds, 1);
    }

    /// An operator's pause is the state until the resume: a `fold` of the
    /// paused schema, a wait for a lock or for the database do not end it;
    /// a failure does.
    #[test]
    fn a_paused_worker_stays_paused_until_resumed() {
        let status = Status::new();
        status.worker_spawned(&target("s"), 1, false);
        status.worker_initialised("s", 1);
        status.worker_paused("s", 1, true);
        status.fold_done("s", 1, report(5, Some(&Total::from(5))));
        status.worker_waiting("s", 1, WorkerState::WaitingForLock);
        status.database_blocks("s", 1);
        let state = |status: &Status| status.worker("s").expect("entry").state;
        assert_eq!(state(&status), WorkerState::Paused);
        assert!(
            WorkerState::Paused.counts_as_running(),
            "ready while paused"
        );
        status.worker_paused("s", 1, false);
        assert_eq!(state(&status), WorkerState::Running);
        status.worker_paused("s", 1, true);
        status.worker_failed("s", 1, "overflow");
        status.worker_restarting("s", 1, Duration::from_secs(5));
        assert_eq!(state(&status), WorkerState::Restarting, "a failure is news");
    }

    #[test]
    fn readiness_needs_config_database_and_a_running_worker() {
        let status = Status::new();
        status.heartbeat();
        let reasons = status.readiness().expect_err("not ready at first");
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        status.configure(&test_settings());
        status.worker_spawned(&target("s"), 1, false);
        status.worker_initialised("s", 1);
        let health = Arc::new(Mutex::new(DbHealth::Up));
        let probe = Arc::clone(&health);
        status.set_database_probe(move || lock(&probe).clone());
        assert_eq!(status.readiness(), Ok(()));
        *lock(&health) = DbHealth::Refused {
            server: "app@db:5432/app".into(),
            kind: "authentication",
            reason: "password authentication failed".into(),
        };
        assert!(matches!(status.database(), DbHealth::Refused { .. }));
        assert!(status.readiness().is_err());
        *lock(&health) = DbHealth::Up;
        assert_eq!(status.readiness(), Ok(()));
    }

    /// A fold without a total row that leaves deltas makes the worker
    /// `waiting_for_total` with their count; a fold with a total ends it.
    /// An outage makes a running worker `waiting_for_database` until its
    /// next fold; a starting one stays starting.
    #[test]
    fn waits_for_a_total_row_or_the_database_are_states_a_fold_ends() {
        let status = Status::new();
        status.worker_spawned(&target("s"), 1, false);
        status.worker_initialised("s", 1);
        let waiting = Backlog {
            left: 152,
            at_least: false,
        };
        status.fold_done(
            "s",
            1,
            FoldDone {
                waiting: Some(waiting),
                ..report(0, None)
            },
        );
        let worker = status.worker("s").expect("entry");
        assert_eq!(worker.state, WorkerState::WaitingForTotal);
        assert_eq!(worker.waiting(), Some(waiting));
        assert_eq!(worker.backlog().left, 0);
        assert!(worker.state.counts_as_running());
        status.fold_done("s", 1, report(152, Some(&Total::from(152))));
        let worker = status.worker("s").expect("entry");
        assert_eq!(worker.state, WorkerState::Running);
        assert_eq!(worker.waiting(), None);

        status.database_blocks("s", 1);
        assert_eq!(
            status.worker("s").expect("entry").state,
            WorkerState::WaitingForDatabase
        );
        status.fold_done("s", 1, report(0, Some(&Total::from(152))));
        assert_eq!(
            status.worker("s").expect("entry").state,
            WorkerState::Running
        );

        status.worker_spawned(&target("t"), 1, false);
        status.database_blocks("t", 1);
        assert_eq!(
            status.worker("t").expect("entry").state,
            WorkerState::Starting
        );
    }

    #[test]
    fn lateness_percentiles_come_from_recent_ticks() {
        let status = Status::new();
        for ms in 1..=100 {
            status.tick_late(Duration::from_millis(ms));
        }
        let (p50, p99, samples) = status.summary().lateness.expect("samples");
        assert_eq!(samples, 100);
        assert!((50..=51).contains(&p50.as_millis()), "{p50:?}");
        assert_eq!(p99.as_millis(), 99);
    }

    /// A fold of `rows` deltas, leaving `total`.
    pub(super) fn report(rows: u64, total: Option<&Total>) -> FoldDone<'_> {
        FoldDone {
            took: Duration::from_millis(1),
            rows,
            total,
            backlog: None,
            waiting: None,
        }
    }

    fn test_settings() -> Settings {
        crate::settings::ConfigSources::new(Vec::new())
            .load()
            .expect("the built-in defaults load")
    }
}

/// What `/coordination` and the status page show of an instance sharing
/// the fleet (see `coordination`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CoordinationView {
    /// This instance's member id while it is a member.
    pub member: Option<u32>,
    /// Live members, this one included (0 while not a member).
    pub members: usize,
    pub buckets: u32,
    pub buckets_owned: usize,
    /// Owned by this instance but still held by another that has not let
    /// go yet.
    pub buckets_awaited: usize,
    /// Buckets taken from, given to, and lost to other instances since
    /// start.
    pub taken: u64,
    pub given: u64,
    pub lost: u64,
    /// Whether folds may start now (the lease is confirmed).
    pub trusted: bool,
    /// How many schemas this instance knows (listed and discovered), and
    /// whether every live member has said the same set for longer than
    /// the grace (see `coordination`).
    pub schemas: u64,
    pub schemas_agree: bool,
}

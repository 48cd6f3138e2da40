//! The database as the workers see it: a pool, an outage gate, and errors
//! sorted by whose problem they are (see `error`).
//!
//! One bb8 pool serves every worker: a fold is one short statement, so a
//! handful of connections serve thousands of schemas. Folds run prepared
//! (`prepared`) and share connections, pipelined (`lanes`);
//! initialisation takes a connection of its own, first; VACUUM takes one
//! only when it is free, in a bulkhead of its own (`maintenance`).

pub mod connect;
mod error;
mod health;
mod lanes;
pub mod maintenance;
mod manager;
mod metrics;
mod outage;
mod prepared;
mod server_cert;
pub mod tls;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bb8::{ErrorSink, Pool, PooledConnection, RunError};
use slog::{error, info, warn, Logger};

pub use connect::{Connector, Session};
pub use error::{describe, Absence, DbError, JobFault, Refusal};
pub use health::DbHealth;
use lanes::Joined;
pub use lanes::{LaneLease, MaintenanceSlot};
pub use manager::{Manager, PgClient};
pub use metrics::PoolMetrics;
pub use outage::{OutageGate, OutageSoFar};

use crate::settings::DatabaseSettings;

pub type PgPool = Pool<Manager>;
pub type PgConnection = PooledConnection<'static, Manager>;

/// What every worker holds: the pool and its outage gate. Cloned cheaply;
/// a reload that changes `database.*` makes a new one, and the old pool
/// closes when the last worker lets go of it.
#[derive(Clone)]
pub struct Database {
    /// One allocation shared by every worker: a clone per worker (and per
    /// fold) is one reference count, not a copy of each part.
    inner: Arc<Shared>,
}

struct Shared {
    /// Unique in the process: the key of this pool's lanes.
    id: u64,
    pool: PgPool,
    /// `database.pool_size`, for `pgfleet_pool_size`.
    pool_size: u32,
    /// Initialisations under way at once (see [`Database::start_permits`]).
    start_permits: Arc<tokio::sync::Semaphore>,
    prepared: Arc<prepared::PreparedPolicy>,
    gate: Arc<OutageGate>,
    health: Health,
    connector: Arc<Connector>,
    log: Logger,
    answer_deadline: Duration,
    /// Ticks skipped for want of a pooled connection, for the warning.
    exhausted: std::sync::Mutex<Exhausted>,
}

/// When the pool-exhausted warning was last logged, and the ticks it
/// skipped since.
#[derive(Default)]
struct Exhausted {
    last_warned: Option<Instant>,
    since: u64,
}

/// A pool too small for the fleet makes every worker skip ticks: one
/// warning this often, for all of them.
pub const POOL_EXHAUSTED_WARN_EVERY: Duration = Duration::from_secs(10);

/// A place taken in the pool's queue by a fold (see
/// [`Database::shared_connection`]).
type QueuedForPool<'a> = Pin<Box<dyn Future<Output = Result<PgConnection, DbError>> + 'a>>;

/// The connection the pool hands `place`; never, when no place was taken.
async fn pool_turn(place: &mut Option<QueuedForPool<'_>>) -> Result<PgConnection, DbError> {
    match place {
        Some(queued) => queued.await,
        None => std::future::pending().await,
    }
}

impl Database {
    /// Builds the pool on `connector` (built from the same `settings`
    /// where the configuration was read, see `config_actor::Loaded`)
    /// without connecting: the service starts, and keeps trying, when the
    /// database is down. `probe_interval` caps the spacing of connection
    /// attempts during an outage.
    pub fn new(
        connector: Arc<Connector>,
        settings: &DatabaseSettings,
        probe_interval: Duration,
        log: &Logger,
    ) -> Self {
        let gate = Arc::new(OutageGate::new(probe_interval));
        let health = Health::new(connector.describe_target());
        let prepared = Arc::new(prepared::PreparedPolicy::new(settings, log));
        let manager = Manager::new(Arc::clone(&connector), Arc::clone(&prepared));
        let pool = Pool::builder()
            .max_size(settings.pool_size)
            .connection_timeout(settings.connect_timeout)
            // A dead connection shows on its next statement; checking every
            // checkout would double each fold's round trips.
            .test_on_check_out(false)
            // One attempt per request: the outage gate does the spacing.
            .retry_connection(false)
            .error_sink(Box::new(LogSink::new(
                log,
                Arc::clone(&gate),
                Health::clone(&health),
            )))
            .build_unchecked(manager);
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Database {
            inner: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                pool,
                pool_size: settings.pool_size,
                start_permits: Arc::new(tokio::sync::Semaphore::new(
                    usize::try_from(settings.pool_size)
                        .unwrap_or(usize::MAX)
                        .saturating_mul(2),
                )),
                prepared,
                gate,
                health,
                connector,
                log: log.clone(),
                answer_deadline: settings.statement_timeout + settings.connect_timeout,
                exhausted: std::sync::Mutex::default(),
            }),
        }
    }

    /// What the last connection attempt or statement found: for
    /// `/readyz`, `pgfleet_database_up` and the status page.
    pub fn health(&self) -> DbHealth {
        self.inner.health.get()
    }

    /// Cancels the statement running on the connection `token` came from.
    pub async fn cancel(&self, token: tokio_postgres::CancelToken) -> Result<(), DbError> {
        self.inner.connector.cancel(token).await
    }

    /// How long to wait for any answer before the server counts as stalled.
    pub fn answer_deadline(&self) -> Duration {
        self.inner.answer_deadline
    }

    /// A connection, unless the database is known to be down and it is not
    /// this caller's turn to probe it.
    pub async fn connection(&self) -> Result<PgConnection, DbError> {
        if !self.inner.gate.admit(Instant::now()) {
            return Err(DbError::Unreachable(
                "waiting for the next connection attempt".into(),
            ));
        }
        // Connections whose server went away (restart, pg_terminate_backend)
        // are closed by now; skip them rather than fail a fold on each.
        for _ in 0..=self.inner.pool.state().connections {
            // Give up on the first failed connection attempt instead of
            // waiting out connect_timeout: the tick is skipped either way.
            let checkout = tokio::select! {
                checkout = self.inner.pool.get_owned() => checkout,
                () = self.inner.gate.next_failure() => {
                    return Err(DbError::Unreachable("a connection attempt failed".into()));
                }
            };
            let conn = match checkout {
                Ok(conn) => conn,
                Err(RunError::TimedOut) => {
                    let waited = self.inner.pool.config().connection_timeout;
                    let size = self.inner.pool.config().max_size;
                    let state = self.inner.pool.state();
                    // Every connection open (and busy while this waited;
                    // one may have come back this instant): the pool is
                    // too small for the fleet, or the folds too slow, not
                    // the database down.
                    if state.connections >= size {
                        return Err(DbError::PoolExhausted { waited, size });
                    }
                    return Err(DbError::Unreachable(format!(
                        "no connection within {waited:?}"
                    )));
                }
                Err(RunError::User(e)) => return Err(self.connect_failed(e)),
            };
            if !conn.is_closed() {
                return Ok(conn);
            }
        }
        Err(self.unreachable("every pooled connection was closed".into()))
    }

    /// Permits for initialising a schema: twice the pool's connections, so
    /// the pool always has the next initialisation ready, while the
    /// thousands of others of a big start wait without holding the state
    /// of a statement each (measured at 10,000 schemas: a 69 MB start-up
    /// peak that the allocator then kept as resident memory).
    pub fn start_permits(&self) -> Arc<tokio::sync::Semaphore> {
        Arc::clone(&self.inner.start_permits)
    }

    /// A connection of its own, for a transaction or a long statement:
    /// while it waits, folds stop joining lanes (see `lanes`).
    pub async fn own_connection(&self) -> Result<PgConnection, DbError> {
        let _waiting = self.lanes().own_waiting();
        self.connection().await
    }

    /// A connection for maintenance (VACUUM) and its place in the
    /// maintenance bulkhead, both held until the step has answered; or
    /// [`DbError::MaintenancePostponed`] at once when the bulkhead is full
    /// or no connection is free. It never waits for a connection, and
    /// folds never wait for it (see `maintenance`).
    pub async fn maintenance_connection(&self) -> Result<(PgConnection, MaintenanceSlot), DbError> {
        let lanes = self.lanes();
        let state = self.inner.pool.state();
        let available = maintenance::Available {
            in_maintenance: lanes.in_maintenance(),
            at_once: maintenance::at_once(self.inner.pool.config().max_size),
            pool_idle: state.idle_connections,
            pool_open: state.connections,
            pool_size: self.inner.pool.config().max_size,
            idle_lanes: lanes.idle_lanes(),
        };
        let postponed =
            |why: maintenance::Why| DbError::MaintenancePostponed(why.describe().into());
        match maintenance::source(available) {
            maintenance::Source::Postpone(why) => Err(postponed(why)),
            maintenance::Source::Pool => {
                let slot = lanes.maintenance_slot();
                Ok((self.connection().await?, slot))
            }
            maintenance::Source::IdleLane => {
                if !self.inner.gate.admit(Instant::now()) {
                    return Err(DbError::Unreachable(
                        "waiting for the next connection attempt".into(),
                    ));
                }
                let slot = lanes.maintenance_slot();
                match lanes.take_idle() {
                    Some(conn) => Ok((conn, slot)),
                    None => Err(postponed(maintenance::Why::NoFreeConnection)),
                }
            }
        }
    }

    /// This pool's lanes on this thread.
    fn lanes(&self) -> std::rc::Rc<lanes::LaneSet> {
        lanes::LaneSet::of(self.inner.id, || {
            let pool = Arc::downgrade(&self.inner);
            move || pool.strong_count() > 0
        })
    }

    /// Which of the pool's lanes is `schema`'s home (see `lanes`): a hash
    /// of its name, so it is the same after a restart.
    pub fn home_of(&self, schema: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (schema, "home").hash(&mut hasher);
        let homes = u64::from(self.inner.pool.config().max_size.max(1));
        usize::try_from(hasher.finish() % homes).unwrap_or(0)
    }

    /// A share of a connection for one fold of the schema whose home is
    /// `home`, pipelined with the folds already in flight on it (see
    /// `lanes`).
    pub async fn shared_connection(&self, home: usize) -> Result<LaneLease, DbError> {
        let lanes = self.lanes();
        let waited = self.inner.pool.config().connection_timeout;
        let deadline = tokio::time::Instant::now() + waited;
        let exhausted = || DbError::PoolExhausted {
            waited,
            size: self.inner.pool.config().max_size,
        };
        // A place in the pool's queue, once taken, is kept while the lanes
        // are looked at again, and looked at itself whatever else is
        // waited for: when a connection comes back the pool wakes one
        // waiter (a `Notify`), and a waiter woken but never polled keeps
        // that wake-up while the connection sits idle and everything
        // behind it waits out `connect_timeout`. Dropped, it passes the
        // wake-up on.
        let mut from_pool: Option<QueuedForPool<'_>> = None;
        loop {
            let state = self.inner.pool.state();
            let room =
                state.idle_connections > 0 || state.connections < self.inner.pool.config().max_size;
            match lanes.join(home, room, Instant::now()) {
                Joined::Lease(lease) => return Ok(lease),
                Joined::HomeFull(space) => {
                    tokio::select! {
                        conn = pool_turn(&mut from_pool) => return Ok(lanes.add(conn?, home, Instant::now())),
                        () = space.wait() => {}
                        () = tokio::time::sleep_until(deadline) => return Err(exhausted()),
                    }
                }
                // A new lane: the pool's next connection (at once when it
                // has one to spare); without room, or room in a lane,
                // whichever comes first. With room, the pool's queue alone
                // is not waited for either: the connection it seemed to
                // have may go to whoever was ahead in the queue, and lanes
                // that keep answering (parked for their homes) give none
                // back for a while. A rolling restart once saw one
                // schema's fold wait out `connect_timeout` there, 5 s,
                // while the lanes around it folded every other schema. So
                // it looks at the lanes again after `OPEN_FOR`, on a timer
                // of its own: were it to wait for room in a lane, it would
                // take the wake-ups that the folds without room need.
                Joined::NewLane => {
                    from_pool.get_or_insert_with(|| Box::pin(self.connection()));
                    let look_again = async {
                        if room {
                            tokio::time::sleep(lanes::OPEN_FOR).await;
                        } else {
                            lanes.room_anywhere().await;
                        }
                    };
                    tokio::select! {
                        conn = pool_turn(&mut from_pool) => return Ok(lanes.add(conn?, home, Instant::now())),
                        () = look_again => {}
                        () = tokio::time::sleep_until(deadline) => return Err(exhausted()),
                    }
                }
                // Initialisation first; as long as waiting for a pooled
                // connection may take. The place in the pool's queue is
                // given up: the pool's wake-up goes on to the next waiter,
                // the initialisation (a rolling restart once saw every
                // fold of the instance taking over wait 5 s behind one
                // such place).
                Joined::OwnFirst => {
                    from_pool = None;
                    tokio::select! {
                        () = lanes.own_served() => {}
                        () = tokio::time::sleep_until(deadline) => return Err(exhausted()),
                    }
                }
            }
        }
    }

    /// A tick was skipped because no pooled connection came free: returns
    /// how many were since the last warning when one is due now (at most
    /// one per [`POOL_EXHAUSTED_WARN_EVERY`] for the whole pool; 100,000
    /// workers on a small pool would otherwise warn thousands of times a
    /// second).
    pub fn pool_exhausted_warning_due(&self, now: Instant) -> Option<u64> {
        let mut exhausted = self
            .inner
            .exhausted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        exhausted.since += 1;
        let due = exhausted
            .last_warned
            .is_none_or(|last| now.duration_since(last) >= POOL_EXHAUSTED_WARN_EVERY);
        if !due {
            return None;
        }
        exhausted.last_warned = Some(now);
        Some(std::mem::take(&mut exhausted.since))
    }

    /// Notes a failure to reach the database; logs when an outage begins.
    pub fn unreachable(&self, reason: String) -> DbError {
        self.connect_failed(DbError::Unreachable(reason))
    }

    /// Notes a failed connection attempt (unreachable or refused): spaces
    /// the next attempts, and logs when this begins an outage.
    fn connect_failed(&self, error: DbError) -> DbError {
        note_connect_failure(
            &self.inner.log,
            &self.inner.gate,
            &self.inner.health,
            &error,
        );
        error
    }

    /// Notes that the database answered; logs when an outage ends.
    pub fn reachable(&self) {
        self.inner.health.set(DbHealth::Up);
        if let Some(outage) = self.inner.gate.reachable(Instant::now()) {
            let down_ms = outage.as_millis() as u64;
            let server = &*self.inner.health.server;
            info!(self.inner.log, "the database at {server} is reachable again after {down_ms} ms";
                "event" => "database_back", "down_ms" => down_ms, "server" => server);
        }
    }

    /// Applies a reloaded `restart.delay` to the spacing of probes.
    pub fn set_probe_interval(&self, interval: Duration) {
        self.inner.gate.set_max_interval(interval);
    }
}

/// bb8 only tells a waiting caller "timed out"; the reason a connection
/// could not be made comes here. Each failed attempt closes the gate.
#[derive(Clone)]
struct LogSink {
    log: Logger,
    gate: Arc<OutageGate>,
    health: Health,
}

impl LogSink {
    fn new(log: &Logger, gate: Arc<OutageGate>, health: Health) -> Self {
        LogSink {
            log: log.clone(),
            gate,
            health,
        }
    }
}

/// The database's health as the last attempt found it, shared by the
/// pool's error sink and the workers' statements, and the server it is
/// about (`user@host:port/dbname`, as `--check` names it) for every
/// message that says it is down.
#[derive(Clone)]
struct Health {
    last: Arc<std::sync::Mutex<Option<DbHealth>>>,
    server: Arc<str>,
}

impl Health {
    fn new(server: String) -> Self {
        Health {
            last: Arc::default(),
            server: server.into(),
        }
    }

    fn get(&self) -> DbHealth {
        self.last.lock().map_or(DbHealth::Unknown, |health| {
            health.clone().unwrap_or(DbHealth::Unknown)
        })
    }

    fn set(&self, health: DbHealth) {
        if let Ok(mut current) = self.last.lock() {
            *current = Some(health);
        }
    }
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSink")
    }
}

impl ErrorSink<DbError> for LogSink {
    fn sink(&self, error: DbError) {
        note_connect_failure(&self.log, &self.gate, &self.health, &error);
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<DbError>> {
        Box::new(self.clone())
    }
}

/// A failed connection attempt: the gate spaces the next ones, whatever
/// the cause. Unreachable is a WARN (`database_lost` when it begins); a
/// refusal needs an operator and is an ERROR (`database_refused`), named by
/// its kind. While it lasts, it is repeated at a slowing rate (see
/// `outage`), with the attempts so far.
fn note_connect_failure(log: &Logger, gate: &OutageGate, health: &Health, error: &DbError) {
    let server = Arc::clone(&health.server);
    health.set(match error {
        DbError::Refused { kind, .. } => DbHealth::Refused {
            server: Arc::clone(&server),
            kind: kind.as_str(),
            reason: error.to_string(),
        },
        DbError::Unreachable(reason) => DbHealth::Unreachable {
            server: Arc::clone(&server),
            reason: reason.clone(),
        },
        other => DbHealth::Unreachable {
            server: Arc::clone(&server),
            reason: other.to_string(),
        },
    });
    let now = Instant::now();
    let began = gate.unreachable(now);
    let repeat = if began {
        None
    } else {
        gate.repeat_report_due(now)
    };
    let reason = match error {
        DbError::Unreachable(reason) => reason.clone(),
        other => other.to_string(),
    };
    let so_far = |outage: OutageSoFar| {
        format!(
            "{} failed attempts in {} s",
            outage.attempts,
            outage.down_for.as_secs()
        )
    };
    match (error, repeat) {
        (DbError::Refused { kind, .. }, _) if began => {
            error!(log, "cannot connect to the database at {server}: {reason}; retrying with backoff";
                "event" => "database_refused", "kind" => kind.as_str(), "error" => reason.clone(),
                "server" => &*server);
        }
        (DbError::Refused { kind, .. }, Some(outage)) => {
            error!(log, "cannot connect to the database at {server}: {reason}; still retrying ({})", so_far(outage);
                "event" => "database_refused", "kind" => kind.as_str(), "error" => reason.clone(),
                "attempts" => outage.attempts, "server" => &*server);
        }
        _ if began => {
            warn!(log, "the database at {server} is unreachable: {reason}; retrying with backoff";
                "event" => "database_lost", "kind" => error.kind(), "error" => reason.clone(),
                "server" => &*server);
        }
        (_, Some(outage)) => {
            warn!(log, "the database at {server} is still unreachable: {reason} ({})", so_far(outage);
                "event" => "database_unreachable", "kind" => error.kind(), "error" => reason.clone(),
                "attempts" => outage.attempts, "server" => &*server);
        }
        _ => {}
    }
}

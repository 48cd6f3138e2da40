//! The database as the workers see it: a pool, an outage gate, and errors
//! sorted by whose problem they are.
//!
//! One bb8 pool serves every worker: a fold holds a connection for about a
//! millisecond, so a handful of connections serve thousands of schemas.
//! Errors fall in three kinds, because each calls for a different answer:
//! - the database is unreachable (connection refused, closed, server
//!   shutting down, no answer in time): nobody's fault here, so the tick is
//!   skipped and the outage gate spaces the retries;
//! - the statement timed out (lock_timeout, statement_timeout): skipped,
//!   retried at the next tick;
//! - anything else (overflow, a missing table, permissions) is the worker's
//!   own failure, for the Supervisor and its restart policy.

mod manager;
mod outage;
mod statements;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bb8::{ErrorSink, Pool, PooledConnection, RunError};
use slog::{info, warn, Logger};
use tokio_postgres::error::SqlState;

pub use manager::{ConnectError, Manager, PgClient};
pub use outage::OutageGate;
pub use statements::{fold, initialise, vacuum, FoldOutcome};

use crate::settings::DatabaseSettings;

pub type PgPool = Pool<Manager>;
pub type PgConnection = PooledConnection<'static, Manager>;

/// Why a statement did not do its job.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached; not this worker's fault.
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// lock_timeout or statement_timeout: retried at the next tick.
    #[error("{0}")]
    TimedOut(String),
    /// Every pooled connection stayed busy for connect_timeout: the pool is
    /// too small for the fleet (or folds are slow), not the database down.
    #[error("no pooled connection came free within {waited:?}; database.pool_size ({size}) may be too small")]
    PoolExhausted { waited: Duration, size: u32 },
    #[error("schema {schema} does not exist, and workers.create_schema is false")]
    MissingSchema { schema: String },
    #[error("table {table} does not exist, and workers.create_schema is false")]
    MissingTable { table: String },
    #[error("the total of {table} would overflow integer, so nothing was folded ({detail})")]
    Overflow { table: String, detail: String },
    #[error("{0}")]
    Postgres(String),
    #[error("unexpected reply to the fold: {0}")]
    UnexpectedReply(String),
}

impl DbError {
    /// Sorts a driver error into the three kinds.
    pub fn from_pg(error: &tokio_postgres::Error) -> Self {
        let text = describe(error);
        match error.code() {
            _ if error.is_closed() => DbError::Unreachable(text),
            // Not from the server at all: I/O, the connection.
            None => DbError::Unreachable(text),
            Some(code) if is_unreachable(code) => DbError::Unreachable(text),
            Some(code)
                if *code == SqlState::LOCK_NOT_AVAILABLE || *code == SqlState::QUERY_CANCELED =>
            {
                DbError::TimedOut(text)
            }
            Some(_) => DbError::Postgres(text),
        }
    }

    pub fn is_unreachable(&self) -> bool {
        matches!(self, DbError::Unreachable(_))
    }
}

/// Connection exceptions (class 08), the server shutting down or starting
/// (57P01..57P03), and too many connections.
fn is_unreachable(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
        ]
        .contains(code)
}

/// tokio-postgres displays server errors as just "db error"; the operator
/// needs the SQLSTATE and the server's words.
pub fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn describe_connect(error: &ConnectError) -> String {
    match error {
        ConnectError::Postgres(e) => describe(e),
        ConnectError::TimedOut(_) => error.to_string(),
    }
}

/// What every worker holds: the pool and its outage gate. Cloned cheaply;
/// a reload that changes `database.*` makes a new one, and the old pool
/// closes when the last worker lets go of it.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    gate: Arc<OutageGate>,
    log: Logger,
    answer_deadline: Duration,
}

impl Database {
    /// Builds the pool without connecting: the service starts, and keeps
    /// trying, when the database is down. `probe_interval` caps the spacing
    /// of connection attempts during an outage.
    pub fn new(
        settings: &DatabaseSettings,
        probe_interval: Duration,
        log: &Logger,
    ) -> Result<Self, String> {
        let config = settings
            .pg_config()
            .map_err(|e| format!("database.url: {}", describe(&e)))?;
        let gate = Arc::new(OutageGate::new(probe_interval));
        let manager = Manager::new(config, settings.connect_timeout);
        let pool = Pool::builder()
            .max_size(settings.pool_size)
            .connection_timeout(settings.connect_timeout)
            // A dead connection shows on its next statement; checking every
            // checkout would double each fold's round trips.
            .test_on_check_out(false)
            // One attempt per request: the outage gate does the spacing.
            .retry_connection(false)
            .error_sink(Box::new(LogSink::new(log, Arc::clone(&gate))))
            .build_unchecked(manager);
        Ok(Database {
            pool,
            gate,
            log: log.clone(),
            answer_deadline: settings.statement_timeout + settings.connect_timeout,
        })
    }

    /// How long to wait for any answer before the server counts as stalled.
    pub fn answer_deadline(&self) -> Duration {
        self.answer_deadline
    }

    /// A connection, unless the database is known to be down and it is not
    /// this caller's turn to probe it.
    pub async fn connection(&self) -> Result<PgConnection, DbError> {
        if !self.gate.admit(Instant::now()) {
            return Err(DbError::Unreachable(
                "waiting for the next connection attempt".into(),
            ));
        }
        // Connections whose server went away (restart, pg_terminate_backend)
        // are closed by now; skip them rather than fail a fold on each.
        for _ in 0..=self.pool.state().connections {
            // Give up on the first failed connection attempt instead of
            // waiting out connect_timeout: the tick is skipped either way.
            let checkout = tokio::select! {
                checkout = self.pool.get_owned() => checkout,
                () = self.gate.next_failure() => {
                    return Err(DbError::Unreachable("a connection attempt failed".into()));
                }
            };
            let conn = match checkout {
                Ok(conn) => conn,
                Err(RunError::TimedOut) => {
                    let waited = self.pool.config().connection_timeout;
                    return Err(DbError::Unreachable(format!(
                        "no connection within {waited:?}"
                    )));
                }
                Err(RunError::User(e)) => return Err(self.unreachable(describe_connect(&e))),
            };
            if !conn.is_closed() {
                return Ok(conn);
            }
        }
        Err(self.unreachable("every pooled connection was closed".into()))
    }

    /// Notes a failure to reach the database; logs when an outage begins.
    pub fn unreachable(&self, reason: String) -> DbError {
        if self.gate.unreachable(Instant::now()) {
            warn!(self.log, "the database is unreachable: {reason}; retrying with backoff";
                "event" => "database_lost", "error" => reason.clone());
        }
        DbError::Unreachable(reason)
    }

    /// Notes that the database answered; logs when an outage ends.
    pub fn reachable(&self) {
        if let Some(outage) = self.gate.reachable(Instant::now()) {
            let down_ms = outage.as_millis() as u64;
            info!(self.log, "the database is reachable again after {down_ms} ms";
                "event" => "database_back", "down_ms" => down_ms);
        }
    }

    /// Applies a reloaded `restart.delay` to the spacing of probes.
    pub fn set_probe_interval(&self, interval: Duration) {
        self.gate.set_max_interval(interval);
    }
}

/// bb8 only tells a waiting caller "timed out"; the reason a connection
/// could not be made comes here. Each failed attempt closes the gate, and
/// is logged at most once a second.
#[derive(Clone)]
struct LogSink {
    log: Logger,
    gate: Arc<OutageGate>,
    last_logged_second: Arc<AtomicU64>,
}

impl LogSink {
    fn new(log: &Logger, gate: Arc<OutageGate>) -> Self {
        LogSink {
            log: log.clone(),
            gate,
            last_logged_second: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSink")
    }
}

impl ErrorSink<ConnectError> for LogSink {
    fn sink(&self, error: ConnectError) {
        let reason = describe_connect(&error);
        let began = self.gate.unreachable(Instant::now());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if began {
            warn!(self.log, "the database is unreachable: {reason}; retrying with backoff";
                "event" => "database_lost", "error" => reason.clone());
        } else if self.last_logged_second.swap(now, Ordering::Relaxed) != now {
            warn!(self.log, "cannot connect to the database: {reason}";
                "event" => "database_unreachable", "error" => reason.clone());
        }
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<ConnectError>> {
        Box::new(self.clone())
    }
}

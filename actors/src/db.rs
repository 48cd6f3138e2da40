//! The connection pool, and the two things a worker asks of PostgreSQL:
//! make sure its table exists, and fold it.
//!
//! One bb8 pool serves every worker: a fold holds a connection for about a
//! millisecond, so a handful of connections serve thousands of schemas and
//! the server never sees a connection per schema.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bb8::{ErrorSink, Pool, PooledConnection, RunError};
use bb8_postgres::PostgresConnectionManager;
use slog::{warn, Logger};
use tokio_postgres::{NoTls, SimpleQueryMessage};

use crate::settings::DatabaseSettings;
use crate::sql::{TableSql, INIT_LOCK, INIT_PROBE};

pub type PgPool = Pool<PostgresConnectionManager<NoTls>>;
pub type PgConnection = PooledConnection<'static, PostgresConnectionManager<NoTls>>;

/// Why a statement did not do its job.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// No pooled connection within `database.connect_timeout`: the whole
    /// database is unreachable or saturated, not this worker's fault.
    #[error("no database connection within {0:?}")]
    PoolTimeout(Duration),
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
    fn from_pg(error: &tokio_postgres::Error, sql: &TableSql) -> Self {
        if error.code() == Some(&tokio_postgres::error::SqlState::NUMERIC_VALUE_OUT_OF_RANGE) {
            return DbError::Overflow {
                table: sql.display_name.clone(),
                detail: describe(error),
            };
        }
        DbError::Postgres(describe(error))
    }

    fn from_pool(error: RunError<tokio_postgres::Error>, timeout: Duration) -> Self {
        match error {
            RunError::TimedOut => DbError::PoolTimeout(timeout),
            RunError::User(error) => DbError::Postgres(describe(&error)),
        }
    }
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

/// Builds the pool without connecting: the service starts, and keeps
/// trying, when the database is down.
pub fn build_pool(settings: &DatabaseSettings, log: &Logger) -> Result<PgPool, String> {
    let mut config: tokio_postgres::Config = settings
        .url
        .expose()
        .parse()
        .map_err(|e| format!("database.url: {e}"))?;
    // The URL's own application_name or connect_timeout wins over the keys.
    if config.get_application_name().is_none() {
        config.application_name(&settings.application_name);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(settings.connect_timeout);
    }
    let manager = PostgresConnectionManager::new(config, NoTls);
    Ok(Pool::builder()
        .max_size(settings.pool_size)
        .connection_timeout(settings.connect_timeout)
        // A dead connection shows on its next statement, which fails the
        // fold; checking every checkout would double each fold's round trips.
        .test_on_check_out(false)
        .error_sink(Box::new(LogSink::new(log)))
        .build_unchecked(manager))
}

/// bb8 only tells a waiting caller "timed out"; the reason a connection
/// could not be made goes to this sink, which logs it at most once a second.
#[derive(Clone)]
struct LogSink {
    log: Logger,
    last_logged_second: Arc<AtomicU64>,
}

impl LogSink {
    fn new(log: &Logger) -> Self {
        LogSink {
            log: log.new(slog::o!()),
            last_logged_second: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSink")
    }
}

impl ErrorSink<tokio_postgres::Error> for LogSink {
    fn sink(&self, error: tokio_postgres::Error) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.last_logged_second.swap(now, Ordering::Relaxed) != now {
            warn!(self.log, "cannot connect to the database: {}", describe(&error);
                "event" => "database_unreachable", "error" => describe(&error));
        }
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<tokio_postgres::Error>> {
        Box::new(self.clone())
    }
}

pub async fn connection(pool: &PgPool) -> Result<PgConnection, DbError> {
    pool.get_owned()
        .await
        .map_err(|e| DbError::from_pool(e, pool_timeout(pool)))
}

fn pool_timeout(pool: &PgPool) -> Duration {
    pool.config().connection_timeout
}

/// Makes sure the schema and table exist, as worker_spi does at start,
/// safely when several workers or pgfleet instances race: creation is
/// serialised by an advisory lock, and a creator that does not take it
/// (worker_spi itself) only makes the probe find the schema next time.
pub async fn initialise(pool: &PgPool, sql: &TableSql, create: bool) -> Result<(), DbError> {
    let mut conn = connection(pool).await?;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match initialise_once(&mut conn, sql, create).await {
            Err(DbError::Postgres(text)) if attempts < 3 && is_creation_race(&text) => continue,
            other => return other,
        }
    }
}

/// duplicate_schema, duplicate_table, unique_violation (on pg_namespace).
fn is_creation_race(text: &str) -> bool {
    ["42P06", "42P07", "23505"]
        .iter()
        .any(|code| text.contains(code))
}

async fn initialise_once(
    conn: &mut PgConnection,
    sql: &TableSql,
    create: bool,
) -> Result<(), DbError> {
    let pg = |e: tokio_postgres::Error| DbError::from_pg(&e, sql);
    let tx = conn.transaction().await.map_err(pg)?;
    tx.execute(INIT_LOCK, &[&sql.schema]).await.map_err(pg)?;
    let row = tx
        .query_one(INIT_PROBE, &[&sql.schema, &sql.qualified])
        .await
        .map_err(pg)?;
    let (schema_exists, table_exists): (bool, bool) = (row.get(0), row.get(1));
    match (schema_exists, table_exists, create) {
        (true, true, _) => {}
        (false, _, true) => tx.batch_execute(&sql.create_schema).await.map_err(pg)?,
        (true, false, true) => {
            tx.batch_execute(&sql.create_table_in_existing_schema)
                .await
                .map_err(pg)?;
            tx.batch_execute(&sql.create_index_in_existing_schema)
                .await
                .map_err(pg)?;
        }
        (false, _, false) => {
            return Err(DbError::MissingSchema {
                schema: sql.schema.clone(),
            })
        }
        (true, false, false) => {
            return Err(DbError::MissingTable {
                table: sql.display_name.clone(),
            })
        }
    }
    tx.commit().await.map_err(pg)
}

/// What one fold found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoldOutcome {
    /// Delta rows deleted and added to the total.
    pub folded: i64,
    /// The total after the fold; None when the table has no (non-NULL)
    /// total row.
    pub total: Option<i32>,
    /// Deltas left alone because there is no total row to fold them into.
    pub waiting: i64,
}

/// Runs the fold on `conn`, one statement, one round trip. `simple_query`
/// because the statement text differs per schema: preparing it would cost a
/// round trip, and caching it would cost server memory per schema and
/// connection.
pub async fn fold(conn: &PgConnection, sql: &TableSql) -> Result<FoldOutcome, DbError> {
    let messages = conn
        .simple_query(&sql.fold)
        .await
        .map_err(|e| DbError::from_pg(&e, sql))?;
    let row = messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or_else(|| DbError::UnexpectedReply("no row".into()))?;
    let number = |index: usize| -> Result<Option<i64>, DbError> {
        row.try_get(index)
            .map_err(|e| DbError::UnexpectedReply(e.to_string()))?
            .map(|text: &str| {
                text.parse::<i64>()
                    .map_err(|e| DbError::UnexpectedReply(e.to_string()))
            })
            .transpose()
    };
    let total = number(1)?
        .map(|t| i32::try_from(t).map_err(|e| DbError::UnexpectedReply(e.to_string())))
        .transpose()?;
    Ok(FoldOutcome {
        folded: number(0)?.unwrap_or(0),
        total,
        waiting: number(2)?.unwrap_or(0),
    })
}

pub async fn vacuum(conn: &PgConnection, sql: &TableSql) -> Result<(), DbError> {
    conn.batch_execute(&sql.vacuum)
        .await
        .map_err(|e| DbError::from_pg(&e, sql))
}

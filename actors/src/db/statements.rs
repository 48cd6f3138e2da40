//! The three things a worker asks of PostgreSQL: make sure its table
//! exists, fold it, vacuum it. The SQL itself is in `crate::sql`.
//!
//! Only the prepared fold (see `prepared`, on when no pooler is known)
//! uses a named statement. Everything else goes as the unnamed statement
//! (`*_typed`: parse, bind and execute in one message, parameters typed
//! here) or through the simple protocol. A named statement is closed by
//! tokio-postgres only when the last `Row` holding it is dropped, which
//! can be after `COMMIT`; behind a transaction-mode pooler that `Close`
//! reaches another server connection, the statement stays where it was,
//! and the next pgfleet that prepares the same name there fails (42P05).
//! The unnamed statement needs no `Close` and is replaced by the next one.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{SimpleQueryMessage, Statement};

use super::{DbError, PgClient, PgConnection};
use crate::sql::{TableSql, INIT_LOCK, INIT_PROBE};

/// What `initialise` found, for the worker to log: this module has no
/// logger, and the warning belongs with the worker's other lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InitOutcome {
    /// The schema was missing, but one whose name differs only in case
    /// exists (`orders` for a configured `Orders`). worker_spi quotes
    /// names, so PostgreSQL takes them case-sensitively, and the new schema
    /// sits beside the old one: almost always a configuration mistake, so
    /// worth a warning, yet a legal name, so not an error.
    pub case_twin: Option<String>,
}

/// Makes sure the schema and table exist, as worker_spi does at start,
/// safely when several workers or pgfleet instances race: creation is
/// serialised by an advisory lock, and a creator that does not take it
/// (worker_spi itself) only makes the probe find the schema next time.
///
/// The session's `lock_timeout` is the fold's, a few milliseconds; the
/// initialisation may wait longer (`database.lock_timeout`, 0 = as long as
/// `statement_timeout`): it runs once, on a connection of its own.
pub async fn initialise(
    conn: &mut PgConnection,
    sql: &TableSql,
    create: bool,
    lock_timeout: Duration,
) -> Result<InitOutcome, DbError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match initialise_once(conn, sql, create, lock_timeout).await {
            Err(error) if attempts < 3 && is_creation_race(&error) => continue,
            other => return other,
        }
    }
}

/// A schema whose name equals $1 but for case. Sent only when the schema
/// is missing, so a worker that finds its schema still needs one round trip.
const CASE_TWIN: &str = "SELECT nspname::text FROM pg_catalog.pg_namespace \
     WHERE lower(nspname) = lower($1) AND nspname <> $1 ORDER BY nspname LIMIT 1";

/// duplicate_schema, duplicate_table, unique_violation (on pg_namespace).
fn is_creation_race(error: &DbError) -> bool {
    error.code().is_some_and(|code| {
        [
            SqlState::DUPLICATE_SCHEMA,
            SqlState::DUPLICATE_TABLE,
            SqlState::UNIQUE_VIOLATION,
        ]
        .contains(code)
    })
}

async fn initialise_once(
    conn: &mut PgConnection,
    sql: &TableSql,
    create: bool,
    lock_timeout: Duration,
) -> Result<InitOutcome, DbError> {
    let pg = |e: tokio_postgres::Error| DbError::from_statement(&e);
    let set_local = format!(
        "{}SET LOCAL lock_timeout = {}",
        conn.set_local().unwrap_or_default(),
        lock_timeout.as_millis()
    );
    let tx = conn.transaction().await.map_err(pg)?;
    tx.batch_execute(&set_local).await.map_err(pg)?;
    let schema: &str = &sql.schema;
    tx.execute_typed(INIT_LOCK, &[(&schema, Type::TEXT)])
        .await
        .map_err(pg)?;
    let row = tx
        .query_typed_one(
            INIT_PROBE,
            &[(&schema, Type::TEXT), (&sql.qualified(), Type::TEXT)],
        )
        .await
        .map_err(pg)?;
    let (schema_exists, table_exists): (bool, bool) = (row.get(0), row.get(1));
    let mut outcome = InitOutcome::default();
    if !schema_exists && create {
        outcome.case_twin = tx
            .query_typed_opt(CASE_TWIN, &[(&schema, Type::TEXT)])
            .await
            .map_err(pg)?
            .map(|row| row.get(0));
    }
    match (schema_exists, table_exists, create) {
        (true, true, _) => {}
        (false, _, true) => {
            tx.batch_execute(&sql.create_schema()).await.map_err(pg)?;
        }
        (true, false, true) => {
            tx.batch_execute(&sql.create_table_in_existing_schema())
                .await
                .map_err(pg)?;
            tx.batch_execute(&sql.create_index_in_existing_schema())
                .await
                .map_err(pg)?;
        }
        (false, _, false) => {
            return Err(DbError::MissingSchema {
                schema: sql.schema.to_string(),
            })
        }
        (true, false, false) => {
            return Err(DbError::MissingTable {
                table: sql.display_name().to_string(),
            })
        }
    }
    tx.commit().await.map_err(pg)?;
    Ok(outcome)
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

/// Runs the fold on `conn`: one statement in one round trip, prepared
/// when this connection keeps it prepared (see `prepared`; the first fold
/// of a schema on a connection also prepares it), else as text.
pub async fn fold(conn: &PgClient, sql: &TableSql) -> Result<FoldOutcome, DbError> {
    let prepared = match conn.prepared_fold(sql).await {
        Ok(statement) => statement,
        Err(error) => {
            conn.prepared_fold_failed(error)?;
            None
        }
    };
    if let Some(statement) = prepared {
        match fold_prepared(conn, &statement, sql).await {
            // The statement went missing (a pooler): it never ran.
            Err(error) => conn.prepared_fold_failed(error)?,
            done => return done,
        }
    }
    fold_unprepared(conn, sql).await
}

/// The prepared fold. Behind a pooler (`database.prepared: on` there)
/// the timeouts need a transaction of their own: `BEGIN; SET LOCAL …`,
/// the fold and `COMMIT` are sent together without waiting (tokio-postgres
/// pipelines them), so it is still one round trip.
#[expect(
    clippy::disallowed_methods,
    reason = "runs the fold prepared by PgClient::prepared_fold, a Statement, not text"
)]
async fn fold_prepared(
    conn: &PgClient,
    statement: &Statement,
    sql: &TableSql,
) -> Result<FoldOutcome, DbError> {
    let row = match conn.set_local() {
        None => conn
            .query_one(statement, &[])
            .await
            .map_err(|e| fold_error(&e, sql))?,
        Some(set_local) => {
            let begin = format!("BEGIN; {set_local}");
            let (begun, row, committed) = tokio::join!(
                conn.batch_execute(&begin),
                conn.query_one(statement, &[]),
                conn.batch_execute("COMMIT"),
            );
            // A failed BEGIN aborts the transaction, so the fold did not
            // run; a failed COMMIT leaves it unknown: either way an error.
            begun.map_err(|e| DbError::from_statement(&e))?;
            let row = row.map_err(|e| fold_error(&e, sql))?;
            committed.map_err(|e| DbError::from_statement(&e))?;
            row
        }
    };
    let unexpected = |e: tokio_postgres::Error| DbError::UnexpectedReply(e.to_string());
    Ok(FoldOutcome {
        folded: row.try_get(0).map_err(unexpected)?,
        total: row.try_get(1).map_err(unexpected)?,
        waiting: row
            .try_get::<_, Option<i64>>(2)
            .map_err(unexpected)?
            .unwrap_or(0),
    })
}

/// An error of the fold statement itself; 22003 is the total's overflow.
fn fold_error(error: &tokio_postgres::Error, sql: &TableSql) -> DbError {
    if error.code() == Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE) {
        DbError::Overflow {
            table: sql.display_name().to_string(),
            detail: super::describe(error),
        }
    } else {
        DbError::from_statement(error)
    }
}

/// The fold as text, through the simple protocol: the server parses and
/// plans it each time. Behind a pooler the timeouts go in the same
/// message, as `SET LOCAL`s of the implicit transaction it runs in.
async fn fold_unprepared(conn: &PgClient, sql: &TableSql) -> Result<FoldOutcome, DbError> {
    let text = match conn.set_local() {
        Some(set_local) => format!("{set_local}{}", sql.fold()),
        None => sql.fold(),
    };
    let messages = conn
        .simple_query(&text)
        .await
        .map_err(|e| fold_error(&e, sql))?;
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

/// VACUUM waits for its table's lock no longer than a fold would: on a
/// direct connection the session's `lock_timeout` (`fold_lock_timeout`)
/// ends the wait with 55P03. Behind a pooler no `lock_timeout` can reach
/// it (VACUUM cannot run in a transaction, so not after a `SET LOCAL`,
/// and a plain `SET` would stay on the server connection for the next
/// client), and it would wait up to pgfleet's answer deadline, its schema
/// not folding meanwhile and a connection held: so it goes with
/// `SKIP_LOCKED` (PostgreSQL 12 and later), which does not wait at all,
/// and whose skip (a warning with 55P03, not an error) is read from the
/// connection ([`PgClient::lock_skips`](super::PgClient::lock_skips)).
pub async fn vacuum(conn: &PgConnection, sql: &TableSql) -> Result<(), DbError> {
    let behind_pooler = conn.set_local().is_some();
    let skips = conn.lock_skips();
    let statement = if behind_pooler {
        sql.vacuum_skip_locked()
    } else {
        sql.vacuum()
    };
    conn.batch_execute(&statement)
        .await
        .map_err(|e| DbError::from_statement(&e))?;
    if conn.lock_skips() > skips {
        return Err(DbError::LockNotAvailable(format!(
            "WARNING 55P03: VACUUM (SKIP_LOCKED) skipped {}: another session holds a lock on it",
            sql.display_name()
        )));
    }
    Ok(())
}

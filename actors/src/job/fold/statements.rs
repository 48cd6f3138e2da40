//! The three things the fold asks of PostgreSQL: make sure its table
//! exists, fold it, vacuum it; what each found, and the fold's own errors
//! (the total's overflow, the table gone). The SQL itself is in
//! `crate::sql`; the connections, and errors by SQLSTATE, in `crate::db`.
//!
//! Only the prepared fold (see `db::prepared`, on when no pooler is known)
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

use crate::counter::{Backlog, Total, ValueType};
use crate::db::{self, DbError, PgClient, PgConnection};
use crate::sql::{FoldBatch, TableSql, INIT_LOCK, INIT_PROBE};

use super::error::{vanished, FoldError};

/// What `initialise` found, for the worker to log: this module has no
/// logger, and the warning belongs with the worker's other lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOutcome {
    /// The schema was missing, but one whose name differs only in case
    /// exists (`orders` for a configured `Orders`). worker_spi quotes
    /// names, so PostgreSQL takes them case-sensitively, and the new schema
    /// sits beside the old one: almost always a configuration mistake, so
    /// worth a warning, yet a legal name, so not an error.
    pub case_twin: Option<String>,
    /// The type of the table's `value` column (worker_spi's `integer` when
    /// pgfleet created the table).
    pub value_type: ValueType,
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
    let found_type: Option<String> = row.get(2);
    let mut outcome = InitOutcome {
        case_twin: None,
        // What pgfleet creates; replaced below when the table exists.
        value_type: ValueType::Integer,
    };
    if !schema_exists && create {
        outcome.case_twin = tx
            .query_typed_opt(CASE_TWIN, &[(&schema, Type::TEXT)])
            .await
            .map_err(pg)?
            .map(|row| row.get(0));
    }
    if table_exists {
        outcome.value_type = found_type
            .as_deref()
            .and_then(ValueType::from_name)
            .ok_or_else(|| FoldError::ValueType {
                table: sql.display_name().to_string(),
                qualified: sql.qualified(),
                found: found_type.clone(),
            })?;
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
            return Err(FoldError::MissingSchema {
                schema: sql.schema.to_string(),
            }
            .into())
        }
        (true, false, false) => {
            return Err(FoldError::MissingTable {
                table: sql.display_name().to_string(),
            }
            .into())
        }
    }
    tx.commit().await.map_err(pg)?;
    Ok(outcome)
}

/// What one fold found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldOutcome {
    /// Delta rows deleted and added to the total.
    pub folded: i64,
    /// The total after the fold; None when the table has no (non-NULL)
    /// total row.
    pub total: Option<Total>,
    /// The `value` column's type as the fold found it; `Err` with its name
    /// when pgfleet does not fold that type (the column was changed since
    /// the worker initialised: the fold ran, and committed).
    pub value_type: Result<ValueType, String>,
    /// Without a total row: the deltas left alone, to be folded once one
    /// exists (counted up to the cap, as a backlog is).
    pub waiting: Option<Backlog>,
    /// When the fold took a full batch: the deltas it left.
    pub backlog: Option<Backlog>,
}

impl FoldOutcome {
    /// The fold's answer (see [`TableSql::fold`]), read the same way from
    /// either protocol. Cannot fail: the statement casts every column to
    /// one type, and any text is a [`Total`]. `batch`: the most deltas the
    /// fold could take.
    fn from_answer(answer: Answer<'_>, batch: i64) -> Self {
        let value_type = answer.value_type.unwrap_or_default();
        let folded = answer.rows.unwrap_or(0);
        let cap = FoldBatch::count_cap(batch);
        let counted = |folded| {
            answer
                .deltas
                .map(|deltas| Backlog::from_count(deltas, cap, folded))
        };
        FoldOutcome {
            folded,
            total: answer.total.map(Total::parse),
            value_type: ValueType::from_name(value_type).ok_or_else(|| value_type.to_owned()),
            waiting: if answer.total.is_none() {
                counted(0)
            } else {
                None
            },
            backlog: if folded >= batch {
                counted(folded)
            } else {
                None
            },
        }
    }
}

/// The fold's answer, its columns as read (see [`TableSql::fold`]).
#[derive(Debug, Default)]
struct Answer<'a> {
    rows: Option<i64>,
    total: Option<&'a str>,
    value_type: Option<&'a str>,
    deltas: Option<i64>,
    /// Another session holds the schema's fence (see `TableSql::fold`):
    /// nothing was done.
    fenced: bool,
}

impl Answer<'_> {
    /// The fold's outcome, or the fence's refusal.
    fn outcome(self, sql: &TableSql, batch: i64) -> Result<FoldOutcome, DbError> {
        if self.fenced {
            return Err(DbError::Fenced(format!(
                "another session is folding {} (it holds the schema's fence lock: another pgfleet \
                 instance that still believes it owns the schema); nothing was done, the next tick tries again",
                sql.display_name()
            )));
        }
        Ok(FoldOutcome::from_answer(self, batch))
    }
}

/// Runs the fold on `conn`: one statement in one round trip, prepared
/// when this connection keeps it prepared (see `prepared`; the first fold
/// of a schema on a connection also prepares it), else as text.
/// It deletes at most `batch` deltas. `value_type`: the column's type as
/// the worker knows it, for the overflow error.
pub async fn fold(
    conn: &PgClient,
    sql: &TableSql,
    batch: i64,
    value_type: ValueType,
) -> Result<FoldOutcome, DbError> {
    let prepared = match conn.prepared_fold(sql).await {
        Ok(statement) => statement,
        Err(error) => {
            conn.prepared_fold_failed(error)?;
            None
        }
    };
    if let Some(statement) = prepared {
        match fold_prepared(conn, &statement, sql, batch, value_type).await {
            // The plan's result type changed under it (the statement never
            // ran): it is prepared again at the next fold.
            Err(error) if is_changed_result_type(&error) => conn.forget_prepared_fold(sql),
            // The statement went missing (a pooler): it never ran.
            Err(error) => conn.prepared_fold_failed(error)?,
            done => return done,
        }
    }
    fold_unprepared(conn, sql, batch, value_type).await
}

/// 0A000 from a prepared statement: "cached plan must not change result
/// type", raised when the server plans it again after its table changed,
/// before it runs. The fold's answer is cast to fixed types so that an
/// `ALTER` of the value column does not change it; should a change of the
/// table ever change it anyway, that is the table's news, not a failure.
fn is_changed_result_type(error: &DbError) -> bool {
    error.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED)
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
    batch: i64,
    value_type: ValueType,
) -> Result<FoldOutcome, DbError> {
    let cap = FoldBatch::count_cap(batch);
    let limits: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&batch, &cap];
    let row = match conn.set_local() {
        None => conn
            .query_one(statement, &limits)
            .await
            .map_err(|e| fold_error(&e, sql, value_type))?,
        Some(set_local) => {
            let begin = format!("BEGIN; {set_local}");
            let (begun, row, committed) = tokio::join!(
                conn.batch_execute(&begin),
                conn.query_one(statement, &limits),
                conn.batch_execute("COMMIT"),
            );
            // A failed BEGIN aborts the transaction, so the fold did not
            // run; a failed COMMIT leaves it unknown: either way an error.
            begun.map_err(|e| DbError::from_statement(&e))?;
            let row = row.map_err(|e| fold_error(&e, sql, value_type))?;
            committed.map_err(|e| DbError::from_statement(&e))?;
            row
        }
    };
    // The statement fixes each column's type (bigint, text, text, bigint),
    // whatever the table's: these reads match them by construction.
    let unexpected = |e: tokio_postgres::Error| DbError::UnexpectedReply(e.to_string());
    let answer = Answer {
        rows: row.try_get(0).map_err(unexpected)?,
        total: row.try_get(1).map_err(unexpected)?,
        value_type: row.try_get(2).map_err(unexpected)?,
        deltas: row.try_get(3).map_err(unexpected)?,
        fenced: row.try_get(4).map_err(unexpected)?,
    };
    answer.outcome(sql, batch)
}

/// An error of the fold statement itself; 22003 is the total's overflow.
fn fold_error(error: &tokio_postgres::Error, sql: &TableSql, value_type: ValueType) -> DbError {
    if error.code() == Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE) {
        FoldError::Overflow {
            table: sql.display_name().to_string(),
            qualified: sql.qualified(),
            value_type,
            detail: db::describe(error),
        }
        .into()
    } else {
        DbError::from_statement(error)
    }
}

/// The fold as text, through the simple protocol: the server parses and
/// plans it each time. Behind a pooler the timeouts go in the same
/// message, as `SET LOCAL`s of the implicit transaction it runs in.
async fn fold_unprepared(
    conn: &PgClient,
    sql: &TableSql,
    batch: i64,
    value_type: ValueType,
) -> Result<FoldOutcome, DbError> {
    let fold = sql.fold(FoldBatch::Rows(batch));
    let text = match conn.set_local() {
        Some(set_local) => format!("{set_local}{fold}"),
        None => fold,
    };
    let messages = conn
        .simple_query(&text)
        .await
        .map_err(|e| fold_error(&e, sql, value_type))?;
    let row = messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or_else(|| DbError::UnexpectedReply("no row".into()))?;
    let text = |index: usize| row.try_get(index).ok().flatten();
    // Counts, printed by PostgreSQL: digits that always parse.
    let count = |index: usize| text(index).and_then(|n| n.parse::<i64>().ok());
    let answer = Answer {
        rows: count(0),
        total: text(1),
        value_type: text(2),
        deltas: count(3),
        fenced: text(4) == Some("t"),
    };
    answer.outcome(sql, batch)
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
/// connection ([`PgClient::lock_skips`](crate::db::PgClient::lock_skips)).
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

/// A fold failed with `error`, 42P01 or 3F000: is it the table itself that
/// is gone ([`FoldError::TableGone`]), or a relation something else names (a
/// trigger's, a rule's), which is the fold's own failure? Asked on the
/// same connection, as the unnamed statement; when the question fails
/// too, the error stays what it was.
pub async fn confirm_table_gone(conn: &PgClient, sql: &TableSql, error: DbError) -> DbError {
    let qualified = sql.qualified();
    let gone = conn
        .query_typed_one(
            "SELECT to_regclass($1) IS NULL",
            &[(&qualified, Type::TEXT)],
        )
        .await
        .map(|row| row.get::<_, bool>(0));
    match gone {
        Ok(true) => vanished(error, sql.display_name()),
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer<'a>(rows: i64, total: Option<&'a str>, value_type: &'a str) -> Answer<'a> {
        Answer {
            rows: Some(rows),
            total,
            value_type: Some(value_type),
            ..Answer::default()
        }
    }

    #[test]
    fn an_answer_is_read_whatever_the_column_holds() {
        let folded = FoldOutcome::from_answer(answer(3, Some("5000000000"), "bigint"), 100);
        assert_eq!(folded.folded, 3);
        assert_eq!(folded.total, Some(Total::Int(5_000_000_000)));
        assert_eq!(folded.value_type, Ok(ValueType::BigInt));
        let exact = FoldOutcome::from_answer(answer(2, Some("0.75"), "numeric"), 100);
        assert_eq!(exact.total, Some(Total::parse("0.75")));
        assert_eq!(exact.value_type, Ok(ValueType::Numeric));
    }

    #[test]
    fn an_answer_without_a_total_says_what_waits() {
        let waiting = FoldOutcome::from_answer(
            Answer {
                deltas: Some(3),
                ..answer(0, None, "integer")
            },
            100,
        );
        assert_eq!(waiting.total, None);
        assert_eq!(
            waiting.waiting,
            Some(Backlog {
                left: 3,
                at_least: false
            })
        );
        assert_eq!(waiting.backlog, None);
        assert_eq!(waiting.value_type, Ok(ValueType::Integer));
    }

    /// A column changed to a type pgfleet does not fold: the fold that ran
    /// is read all the same, and says what it found.
    #[test]
    fn an_answer_names_a_type_pgfleet_does_not_fold() {
        let float = FoldOutcome::from_answer(answer(1, Some("0.75"), "double precision"), 100);
        assert_eq!(float.folded, 1);
        assert_eq!(float.value_type, Err("double precision".to_owned()));
    }

    #[test]
    fn a_full_batch_says_the_backlog_it_left() {
        let partial = FoldOutcome::from_answer(answer(7, Some("7"), "integer"), 10);
        assert_eq!(partial.backlog, None);
        let full = FoldOutcome::from_answer(
            Answer {
                deltas: Some(35),
                ..answer(10, Some("10"), "integer")
            },
            10,
        );
        assert_eq!(
            full.backlog,
            Some(Backlog {
                left: 25,
                at_least: false
            })
        );
        // Counting stops at ten batches' worth.
        let capped = FoldOutcome::from_answer(
            Answer {
                deltas: Some(100),
                ..answer(10, Some("10"), "integer")
            },
            10,
        );
        assert_eq!(
            capped.backlog,
            Some(Backlog {
                left: 90,
                at_least: true
            })
        );
    }
}

//! Every statement pgfleet sends, and the quoting that makes any schema name
//! safe in them.
//!
//! Identifiers cannot be bind parameters, so they are always quoted here, in
//! one place: a schema called `a"b; drop table x` is just a strange name.
//!
//! The fold differs from worker_spi's in three ways, each for a reason:
//! - it deletes deltas only while it holds a lock on a non-NULL total row, so
//!   deltas are never deleted into nothing (worker_spi loses them when the
//!   total row is missing, or deleted concurrently);
//! - it updates the total only when it deleted something, so an idle tick
//!   writes no row version, no WAL and needs no commit flush;
//! - it still reads the total, for the log line and the metrics;
//! - it deletes at most `workers.fold_batch` deltas (see [`FoldBatch`]);
//! - it returns the total as text, with the `value` column's type by name
//!   (see `counter`), so its answer has one shape whatever the column is.
//!
//! Overflow needs no code: the sum is assigned back to the `value` column
//! (`integer + bigint` to an `integer`, `bigint + numeric` to a `bigint`),
//! which fails with SQLSTATE 22003 and rolls the whole statement back.
//!
//! **Batches.** A backlog of millions of deltas (pgfleet stopped for hours
//! while the writers went on) cannot be deleted in one statement within
//! `statement_timeout`: every fold would be cancelled, and the schema would
//! never catch up. So one fold deletes at most a batch: the `ctid`s of up
//! to that many deltas, then those rows by `ctid` (a TID scan). Each batch
//! is one atomic statement, so `total + remaining deltas` is right after
//! every one, and a fold that took a full batch counts what is left (up to
//! [`Backlog::COUNT_BATCHES`](crate::counter::Backlog::COUNT_BATCHES)
//! batches' worth, so the count is bounded too) for the worker to fold
//! again soon.

use std::sync::Arc;

/// `name` as a quoted PostgreSQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `name` quoted only when PostgreSQL would need it (what worker_spi prints
/// in its log line, via quote_identifier). Keywords are not detected, so a
/// schema named `select` is shown bare; the SQL always quotes.
pub fn display_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        quote_ident(name)
    }
}

/// The names of one schema's counter table, and its statements. The
/// statements are built when sent, not kept: the fold alone is about 1.5 KB
/// of text, which a fleet of 100,000 workers would hold as 150 MB, while a
/// prepared fold needs its text once per connection (see `db::prepared`).
/// The names are the fleet's own (shared with the worker's
/// [`SchemaTarget`](crate::settings::SchemaTarget) and the settings), so
/// one costs its id and two pointers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSql {
    /// Unique in the process: the key of this fold in each connection's
    /// prepared-statement cache (a restarted worker builds a new one).
    pub id: u64,
    pub schema: Arc<str>,
    pub table: Arc<str>,
    /// With `coordination.enabled`: the transaction advisory lock
    /// (`namespace`, `key`) every fold of this schema takes inside its own
    /// statement (see [`TableSql::fold`]).
    pub fence: Option<(i32, i32)>,
}

/// See [`TableSql::display_name`].
pub struct DisplayName<'a>(&'a TableSql);

impl std::fmt::Display for DisplayName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let TableSql { schema, table, .. } = self.0;
        write!(f, "{}.{}", display_ident(schema), display_ident(table))
    }
}

const COLUMNS: &str = "(type text CHECK (type IN ('total', 'delta')), value integer)";

/// Serialises schema creation between workers and between pgfleet
/// instances: (class, hashtext(schema)) as a transaction advisory lock.
pub const INIT_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('pgfleet.init'), hashtext($1))";

/// $1 = schema name, $2 = quoted qualified table name: whether the schema
/// and the table exist, and the type of the table's `value` column (NULL
/// when the table or the column is missing).
pub const INIT_PROBE: &str =
    "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1), \
     to_regclass($2) IS NOT NULL, \
     (SELECT atttypid::regtype::text FROM pg_catalog.pg_attribute \
       WHERE attrelid = to_regclass($2) AND attname = 'value' AND attnum > 0 AND NOT attisdropped)";

/// How a fold's batch size reaches its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldBatch {
    /// `$1` (the most deltas to fold) and `$2` (the most to count after a
    /// full batch), both `bigint`: the prepared fold, so that a reload
    /// that changes `workers.fold_batch` needs no new statement.
    Parameters,
    /// At most this many deltas, written into the text (a fold sent as
    /// text, which has no parameters).
    Rows(i64),
}

impl FoldBatch {
    /// The most deltas a full batch's fold counts to report the backlog
    /// left: [`Backlog::COUNT_BATCHES`](crate::counter::Backlog::COUNT_BATCHES) batches.
    pub fn count_cap(batch: i64) -> i64 {
        batch.saturating_mul(crate::counter::Backlog::COUNT_BATCHES)
    }

    /// The batch's and the count's limits, as SQL.
    fn limits(self) -> (String, String) {
        match self {
            FoldBatch::Parameters => ("$1".into(), "$2".into()),
            FoldBatch::Rows(rows) => (rows.to_string(), Self::count_cap(rows).to_string()),
        }
    }
}

impl TableSql {
    pub fn new(schema: Arc<str>, table: Arc<str>) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        TableSql {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            schema,
            table,
            fence: None,
        }
    }

    /// Every fold fenced by the advisory lock `key` (see [`TableSql::fold`]).
    pub fn fenced_by(mut self, key: Option<(i32, i32)>) -> Self {
        self.fence = key;
        self
    }

    /// `schema.table` as worker_spi's log line shows it; formatted only
    /// when a line is written.
    pub fn display_name(&self) -> DisplayName<'_> {
        DisplayName(self)
    }

    /// `"schema"."table"` for to_regclass.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }

    fn index(&self) -> String {
        quote_ident(&format!("{}_unique_total", self.table))
    }

    /// worker_spi's schema creation, table and index in one statement.
    pub fn create_schema(&self) -> String {
        let (s, t, index) = (
            quote_ident(&self.schema),
            quote_ident(&self.table),
            self.index(),
        );
        format!(
            "CREATE SCHEMA {s} CREATE TABLE {t} {COLUMNS} \
             CREATE UNIQUE INDEX {index} ON {t} (type) WHERE type = 'total'"
        )
    }

    pub fn create_table_in_existing_schema(&self) -> String {
        format!("CREATE TABLE IF NOT EXISTS {} {COLUMNS}", self.qualified())
    }

    pub fn create_index_in_existing_schema(&self) -> String {
        format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (type) WHERE type = 'total'",
            self.index(),
            self.qualified()
        )
    }

    /// The fold (see the module's doc for how it differs from worker_spi's).
    /// Its answer, one row: `rows` folded (`bigint`), the `total` after it
    /// (`text`, NULL without a total row), the `value` column's `type`
    /// (`text`), and, when there is no total row (all deltas wait) or the
    /// batch was full (a backlog), the `deltas` it saw (`bigint`, counted up
    /// to the cap; its own deletions included, since a statement does not
    /// see them). One count for both: each subquery costs every fold its
    /// set-up, run or not (measured: 9% of an idle prepared fold).
    ///
    /// `result` is materialised so that the total is read once, not once
    /// per column that uses it (measured: 8% of an idle prepared fold).
    ///
    /// With a fence (`coordination.enabled`) the fold first takes
    /// `pg_try_advisory_xact_lock(namespace, key)`, in the same statement:
    /// refused (another instance's fold of this schema is in its
    /// transaction), the total row is not selected, so nothing is
    /// deleted or updated, and the answer's fifth column, `fenced`, is
    /// true. Held, the lock lasts until the fold commits. So no two folds
    /// of one schema overlap, whatever each instance believes it owns.
    /// Without a fence, `fenced` is always false.
    pub fn fold(&self, batch: FoldBatch) -> String {
        let qualified = self.qualified();
        let (limit, cap) = batch.limits();
        let (fence, fenced_out, fenced) = match self.fence {
            Some((namespace, key)) => (
                format!(
                    "fence AS MATERIALIZED (SELECT pg_try_advisory_xact_lock({namespace}, {key}) AS held), "
                ),
                " AND (SELECT held FROM fence)",
                "NOT (SELECT held FROM fence)",
            ),
            None => (String::new(), "", "false"),
        };
        format!(
            "WITH {fence}total_row AS (\
                 SELECT value FROM {qualified} \
                  WHERE type = 'total' AND value IS NOT NULL{fenced_out} \
                    AND EXISTS (SELECT FROM {qualified} WHERE type = 'delta') \
                    FOR UPDATE\
             ), deleted AS (\
                 DELETE FROM {qualified} \
                  WHERE ctid = ANY (ARRAY(\
                            SELECT ctid FROM {qualified} \
                             WHERE type = 'delta' AND EXISTS (SELECT FROM total_row) \
                             LIMIT {limit})) \
                    AND type = 'delta' \
                 RETURNING value\
             ), folded AS (\
                 SELECT count(*) AS rows, coalesce(sum(value), 0) AS sum FROM deleted\
             ), updated AS (\
                 UPDATE {qualified} AS counter SET value = counter.value + folded.sum \
                   FROM folded \
                  WHERE counter.type = 'total' AND folded.rows > 0 \
                 RETURNING counter.value\
             ), result AS MATERIALIZED (\
                 SELECT folded.rows, coalesce(\
                          (SELECT value FROM updated), \
                          (SELECT value FROM {qualified} WHERE type = 'total')) AS total \
                   FROM folded\
             ) \
             SELECT rows, total::text AS total, pg_typeof(total)::text AS type, \
                    CASE WHEN total IS NULL OR rows >= {limit} \
                         THEN (SELECT count(*) FROM (SELECT FROM {qualified} WHERE type = 'delta' \
                                                      LIMIT {cap}) AS deltas) END AS deltas, \
                    {fenced} AS fenced \
               FROM result"
        )
    }

    pub fn vacuum(&self) -> String {
        format!("VACUUM {}", self.qualified())
    }

    /// VACUUM that skips the table, with a warning, rather than wait for
    /// its lock (PostgreSQL 12 and later).
    pub fn vacuum_skip_locked(&self) -> String {
        format!("VACUUM (SKIP_LOCKED) {}", self.qualified())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_every_identifier() {
        assert_eq!(quote_ident("schema1"), "\"schema1\"");
        assert_eq!(
            quote_ident("a\"b; drop table x"),
            "\"a\"\"b; drop table x\""
        );
    }

    #[test]
    fn displays_like_quote_identifier() {
        assert_eq!(display_ident("schema1"), "schema1");
        assert_eq!(display_ident("Sales"), "\"Sales\"");
        assert_eq!(display_ident("1st"), "\"1st\"");
        assert_eq!(display_ident("has space"), "\"has space\"");
    }

    #[test]
    fn create_statement_is_worker_spis() {
        let sql = TableSql::new("schema1".into(), "counted".into());
        assert_eq!(
            sql.create_schema(),
            "CREATE SCHEMA \"schema1\" CREATE TABLE \"counted\" \
             (type text CHECK (type IN ('total', 'delta')), value integer) \
             CREATE UNIQUE INDEX \"counted_unique_total\" ON \"counted\" (type) WHERE type = 'total'"
        );
        assert_eq!(sql.display_name().to_string(), "schema1.counted");
    }

    #[test]
    fn hostile_names_stay_inside_quotes() {
        let sql = TableSql::new("x\"; DROP TABLE t; --".into(), "counted".into());
        let fold = sql.fold(FoldBatch::Rows(10));
        assert!(fold.contains("\"x\"\"; DROP TABLE t; --\".\"counted\""));
        assert!(!fold.contains("\"x\"; DROP"));
    }

    #[test]
    fn a_fold_as_text_carries_its_batch_and_count_limits() {
        let sql = TableSql::new("schema1".into(), "counted".into());
        let fold = sql.fold(FoldBatch::Rows(100_000));
        assert!(fold.contains("LIMIT 100000)"), "{fold}");
        assert!(fold.contains("rows >= 100000"), "{fold}");
        assert!(fold.contains("LIMIT 1000000)"), "{fold}");
        assert!(fold.contains("total IS NULL OR rows >= 100000"), "{fold}");
        assert!(!fold.contains('$'), "a text fold has no parameters: {fold}");
    }

    #[test]
    fn a_prepared_fold_takes_its_limits_as_parameters() {
        let sql = TableSql::new("schema1".into(), "counted".into());
        let fold = sql.fold(FoldBatch::Parameters);
        assert!(
            fold.contains("LIMIT $1)") && fold.contains("rows >= $1"),
            "{fold}"
        );
        assert!(fold.contains("LIMIT $2)"), "{fold}");
        assert_eq!(FoldBatch::count_cap(i64::MAX), i64::MAX);
    }

    /// The answer's shape does not depend on the column's type: every
    /// column is cast to one type in the statement itself.
    #[test]
    fn the_answer_has_one_shape_whatever_the_value_type() {
        let sql = TableSql::new("schema1".into(), "counted".into());
        let fold = sql.fold(FoldBatch::Rows(1));
        let answer = &fold[fold.rfind(") SELECT").expect("the final SELECT")..];
        assert!(answer.contains("total::text AS total"), "{answer}");
        assert!(
            answer.contains("pg_typeof(total)::text AS type"),
            "{answer}"
        );
        assert!(answer.contains("SELECT rows,"), "{answer}");
        assert!(answer.contains("false AS fenced"), "{answer}");
    }

    #[test]
    fn a_fenced_fold_tries_its_lock_before_it_selects_the_total() {
        let sql = TableSql::new("schema1".into(), "counted".into()).fenced_by(Some((7, -42)));
        let fold = sql.fold(FoldBatch::Rows(1));
        assert!(
            fold.starts_with("WITH fence AS MATERIALIZED (SELECT pg_try_advisory_xact_lock(7, -42) AS held), total_row AS"),
            "{fold}"
        );
        assert!(
            fold.contains("value IS NOT NULL AND (SELECT held FROM fence)"),
            "{fold}"
        );
        assert!(
            fold.contains("NOT (SELECT held FROM fence) AS fenced"),
            "{fold}"
        );
    }
}

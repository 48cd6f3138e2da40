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
//! - it still reads the total, for the log line and the metrics.
//!
//! Integer overflow needs no code: `integer + bigint` is assigned back to an
//! `integer` column, which fails with SQLSTATE 22003 and rolls the whole
//! statement back.

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

/// $1 = schema name, $2 = quoted qualified table name.
pub const INIT_PROBE: &str =
    "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1), \
     to_regclass($2) IS NOT NULL";

impl TableSql {
    pub fn new(schema: Arc<str>, table: Arc<str>) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        TableSql {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            schema,
            table,
        }
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
    pub fn fold(&self) -> String {
        let qualified = self.qualified();
        format!(
            "WITH total_row AS (\
                 SELECT value FROM {qualified} \
                  WHERE type = 'total' AND value IS NOT NULL \
                    AND EXISTS (SELECT FROM {qualified} WHERE type = 'delta') \
                    FOR UPDATE\
             ), deleted AS (\
                 DELETE FROM {qualified} \
                  WHERE type = 'delta' AND EXISTS (SELECT FROM total_row) \
                 RETURNING value\
             ), folded AS (\
                 SELECT count(*) AS rows, coalesce(sum(value), 0) AS sum FROM deleted\
             ), updated AS (\
                 UPDATE {qualified} AS counter SET value = counter.value + folded.sum \
                   FROM folded \
                  WHERE counter.type = 'total' AND folded.rows > 0 \
                 RETURNING counter.value\
             ), result AS (\
                 SELECT folded.rows, coalesce(\
                          (SELECT value FROM updated), \
                          (SELECT value FROM {qualified} WHERE type = 'total')) AS total \
                   FROM folded\
             ) \
             SELECT rows, total, \
                    CASE WHEN total IS NULL \
                         THEN (SELECT count(*) FROM {qualified} WHERE type = 'delta') END AS waiting \
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
        let fold = sql.fold();
        assert!(fold.contains("\"x\"\"; DROP TABLE t; --\".\"counted\""));
        assert!(!fold.contains("\"x\"; DROP"));
    }
}

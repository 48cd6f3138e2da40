//! The catalog query of a rescan: every schema whose name matches
//! `workers.match` (and none of `workers.exclude`) and that holds
//! `workers.table`, and whether this role can fold it.
//!
//! One statement for the whole fleet, on catalogs every role may read
//! (`pg_namespace`, `pg_class`): no privilege beyond the fold's own is
//! needed to find the schemas. It starts from `pg_class`'s index on
//! (`relname`, `relnamespace`), so it visits the tables named
//! `workers.table`, not every relation of the database. It goes as the
//! unnamed statement, which any pooler passes.
//!
//! "Can fold" asks the server's own privilege functions, each privilege on
//! its own: `has_table_privilege(t, 'SELECT, UPDATE')` is true when
//! *any* of them is held.

use std::sync::Arc;

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::db::DbError;

/// One schema that matches and holds the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub schema: Arc<str>,
    /// The role may use the schema and SELECT, UPDATE and DELETE its table:
    /// what a fold does.
    pub foldable: bool,
}

/// What a rescan looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patterns {
    pub matching: Vec<String>,
    pub exclude: Vec<String>,
    pub table: Arc<str>,
}

const SCAN: &str = "
SELECT n.nspname::text,
       has_schema_privilege(n.oid, 'USAGE')
       AND has_table_privilege(c.oid, 'SELECT')
       AND has_table_privilege(c.oid, 'UPDATE')
       AND has_table_privilege(c.oid, 'DELETE'),
       current_user::text
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = $1
  AND c.relkind IN ('r', 'p')
  AND n.nspname LIKE ANY ($2::text[])
  AND NOT n.nspname LIKE ANY ($3::text[])";

/// What one rescan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scanned {
    /// In byte order of their names.
    pub found: Vec<Found>,
    /// The role the scan ran as (none when nothing matched): the one a
    /// GRANT must name.
    pub role: Option<String>,
}

/// The schemas `patterns` find now.
pub async fn scan(client: &Client, patterns: &Patterns) -> Result<Scanned, DbError> {
    let table: &str = &patterns.table;
    let rows = client
        .query_typed(
            SCAN,
            &[
                (&table, Type::TEXT),
                (&patterns.matching, Type::TEXT_ARRAY),
                (&patterns.exclude, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(|e| DbError::from_statement(&e))?;
    let mut found = Vec::with_capacity(rows.len());
    let mut role = None;
    for row in rows {
        if role.is_none() {
            role = row.try_get(2).map_err(|e| DbError::from_statement(&e))?;
        }
        let schema: String = row.try_get(0).map_err(|e| DbError::from_statement(&e))?;
        let foldable: Option<bool> = row.try_get(1).map_err(|e| DbError::from_statement(&e))?;
        found.push(Found {
            schema: schema.into(),
            foldable: foldable.unwrap_or(false),
        });
    }
    found.sort_unstable_by(|a, b| a.schema.cmp(&b.schema));
    Ok(Scanned { found, role })
}

//! The catalog queries of a rescan, in two steps:
//!
//! 1. [`LIST`]: the schemas whose name matches `workers.match` (and none
//!    of `workers.exclude`), and the schemas that hold a relation named
//!    `workers.table`, as two scans in one statement: `pg_namespace`
//!    read once, and the index of `pg_class` on (`relname`,
//!    `relnamespace`) (or the table once, when its statistics say the
//!    tenants' counters are a good part of it: 20 ms at 10,000 of 30,000
//!    relations). The two are joined here, not on
//!    the server: a join there is planned from the catalogs' statistics,
//!    and right after thousands of tenants were created they say "one
//!    row", and the plan is a loop of 10,000 index lookups. Measured at
//!    100,000 schemas: 23 to 29 ms of server time; a join on the server
//!    took 66 to 78 ms with fresh statistics, and one that also read each
//!    table's kind and asked each privilege 340 to 440 ms.
//! 2. [`VET`], for the names the list holds that are new (and those found
//!    unfoldable before, so a GRANT is taken at the next rescan): whether
//!    the relation is a table (ordinary or partitioned) and whether this
//!    role can fold it. The server's own privilege functions answer, each
//!    privilege asked on its own: `has_table_privilege(t, 'SELECT,
//!    UPDATE')` is true when *any* of them is held.
//!
//! Both read catalogs every role may read: no privilege beyond the fold's
//! own is needed to find the schemas. Both go as the unnamed statement,
//! which any pooler passes.

use std::collections::HashSet;
use std::sync::Arc;

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::db::DbError;

/// What a rescan looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patterns {
    pub matching: Vec<String>,
    pub exclude: Vec<String>,
    pub table: Arc<str>,
}

/// One schema the list found, vetted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub schema: Arc<str>,
    /// Its `workers.table` is a table, and the role may use the schema and
    /// SELECT, UPDATE and DELETE the table: what a fold does.
    pub foldable: bool,
}

/// Step 1: the schemas that match (their oid and name), then the oids of
/// the schemas that hold a relation named `$1` (name NULL). PostgreSQL's
/// own schemas never match (`pg_catalog`, `pg_toast`, a session's
/// `pg_temp_N`, `information_schema`): `match: '%'` must not take a
/// temporary table named like the counter.
pub const LIST: &str = "
SELECT n.oid, n.nspname::text
FROM pg_catalog.pg_namespace n
WHERE n.nspname LIKE ANY ($2::text[])
  AND NOT n.nspname LIKE ANY ($3::text[])
  AND n.nspname NOT LIKE 'pg\\_%'
  AND n.nspname <> 'information_schema'
UNION ALL
SELECT c.relnamespace, NULL
FROM pg_catalog.pg_class c
WHERE c.relname = $1";

/// Step 2: for the schemas `$1`, whether their `$2` can be folded, and the
/// role asking (the one a GRANT must name).
pub const VET: &str = "
SELECT s.name,
       c.relkind IN ('r', 'p')
       AND has_schema_privilege(n.oid, 'USAGE')
       AND has_table_privilege(c.oid, 'SELECT')
       AND has_table_privilege(c.oid, 'UPDATE')
       AND has_table_privilege(c.oid, 'DELETE'),
       current_user::text
FROM unnest($1::text[]) AS s(name)
JOIN pg_catalog.pg_namespace n ON n.nspname = s.name
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = $2";

fn pg(error: tokio_postgres::Error) -> DbError {
    DbError::from_statement(&error)
}

/// Step 1: the names, in byte order.
pub async fn list(client: &Client, patterns: &Patterns) -> Result<Vec<Arc<str>>, DbError> {
    let table: &str = &patterns.table;
    let rows = client
        .query_typed(
            LIST,
            &[
                (&table, Type::TEXT),
                (&patterns.matching, Type::TEXT_ARRAY),
                (&patterns.exclude, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(pg)?;
    let mut matching: Vec<(u32, String)> = Vec::new();
    let mut holding: HashSet<u32> = HashSet::new();
    for row in rows {
        let oid: u32 = row.try_get(0).map_err(pg)?;
        match row.try_get::<_, Option<String>>(1).map_err(pg)? {
            Some(name) => matching.push((oid, name)),
            None => {
                holding.insert(oid);
            }
        }
    }
    let mut names: Vec<Arc<str>> = matching
        .into_iter()
        .filter(|(oid, _)| holding.contains(oid))
        .map(|(_, name)| name.into())
        .collect();
    names.sort_unstable();
    Ok(names)
}

/// What [`vet`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vetted {
    /// The schemas asked about that still hold the table, in the order
    /// the server gave them.
    pub found: Vec<Found>,
    /// The role the query ran as (none when nothing was asked or found).
    pub role: Option<String>,
}

/// Step 2, for `schemas`.
pub async fn vet(client: &Client, schemas: &[Arc<str>], table: &str) -> Result<Vetted, DbError> {
    if schemas.is_empty() {
        return Ok(Vetted::default());
    }
    let names: Vec<&str> = schemas.iter().map(|schema| &**schema).collect();
    let rows = client
        .query_typed(VET, &[(&names, Type::TEXT_ARRAY), (&table, Type::TEXT)])
        .await
        .map_err(pg)?;
    let mut vetted = Vetted {
        found: Vec::with_capacity(rows.len()),
        role: None,
    };
    for row in rows {
        if vetted.role.is_none() {
            vetted.role = row.try_get(2).map_err(pg)?;
        }
        let schema: String = row.try_get(0).map_err(pg)?;
        let foldable: Option<bool> = row.try_get(1).map_err(pg)?;
        vetted.found.push(Found {
            schema: schema.into(),
            foldable: foldable.unwrap_or(false),
        });
    }
    Ok(vetted)
}

/// Both steps for every schema the list finds: what `pgfleet --check`
/// shows, in byte order.
pub async fn scan(client: &Client, patterns: &Patterns) -> Result<Vetted, DbError> {
    let names = list(client, patterns).await?;
    let mut vetted = vet(client, &names, &patterns.table).await?;
    vetted
        .found
        .sort_unstable_by(|a, b| a.schema.cmp(&b.schema));
    Ok(vetted)
}

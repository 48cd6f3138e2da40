//! Can this role do the fold? Asked by `pgfleet --check`, so that a role
//! without privileges fails the deploy step with the GRANT that fixes it,
//! instead of passing and then failing every worker with 42501.
//!
//! One query covers every configured schema (10,000 are one round trip),
//! and asks the server's own `has_*_privilege` functions rather than
//! reading ACLs here: they know role membership, PUBLIC and ownership.
//!
//! Both queries go as the unnamed statement: `--check` runs through the
//! same poolers as the service, and exits right after, so a named
//! statement's `Close` might never be sent (see `statements`).

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::db::DbError;
use crate::settings::Settings;
use crate::sql::quote_ident;

/// What the job needs and the role lacks, with the statement that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub what: String,
    pub fix: String,
}

/// What the fold asks of the database, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs<'a> {
    pub schemas: &'a [String],
    pub table: &'a str,
    pub create_schema: bool,
    pub vacuum: bool,
}

impl<'a> Needs<'a> {
    /// What folding `schemas` with `settings` needs: their table, the
    /// right to create what is missing when `workers.create_schema` is on,
    /// the right to VACUUM when `workers.vacuum_after` is.
    pub fn of(settings: &'a Settings, schemas: &'a [String]) -> Self {
        Needs {
            schemas,
            table: &settings.workers.table,
            create_schema: settings.workers.create_schema,
            vacuum: settings.workers.vacuum_after > 0,
        }
    }
}

const PROBE: &str = "
SELECT s.name,
       n.oid IS NOT NULL,
       c.oid IS NOT NULL,
       coalesce(has_schema_privilege(n.oid, 'USAGE'), false),
       coalesce(has_schema_privilege(n.oid, 'CREATE'), false),
       coalesce(has_table_privilege(c.oid, 'SELECT'), false),
       coalesce(has_table_privilege(c.oid, 'UPDATE'), false),
       coalesce(has_table_privilege(c.oid, 'DELETE'), false),
       coalesce(pg_has_role(c.relowner, 'USAGE')
                OR pg_has_role(d.datdba, 'USAGE')
                OR r.rolsuper
                OR (current_setting('server_version_num')::int >= 170000
                    AND has_table_privilege(c.oid, 'MAINTAIN')), false)
FROM unnest($1::text[]) AS s(name)
CROSS JOIN (SELECT datdba FROM pg_database WHERE datname = current_database()) AS d
CROSS JOIN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS r
LEFT JOIN pg_namespace n ON n.nspname = s.name
LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = $2 AND c.relkind IN ('r', 'p')
ORDER BY s.name";

const WHO: &str = "SELECT current_user::text, current_database()::text, \
                   has_database_privilege(current_database(), 'CREATE'), \
                   current_setting('server_version_num')::int";

/// Everything `job` needs that the connected role lacks; empty when it
/// can do the job.
pub async fn missing(client: &Client, job: &Needs<'_>) -> Result<Vec<Missing>, DbError> {
    let pg = |e: tokio_postgres::Error| DbError::from_statement(&e);
    let who = client.query_typed_one(WHO, &[]).await.map_err(pg)?;
    let (role, database, can_create_schemas, version): (String, String, bool, i32) =
        (who.get(0), who.get(1), who.get(2), who.get(3));
    let role_q = quote_ident(&role);
    let rows = client
        .query_typed(
            PROBE,
            &[(&job.schemas, Type::TEXT_ARRAY), (&job.table, Type::TEXT)],
        )
        .await
        .map_err(pg)?;
    let mut found = Vec::new();
    let mut need_database_create = false;
    for row in rows {
        let name: String = row.get(0);
        let (schema_exists, table_exists): (bool, bool) = (row.get(1), row.get(2));
        let (usage, create_in_schema): (bool, bool) = (row.get(3), row.get(4));
        let (select, update, delete, vacuum): (bool, bool, bool, bool) =
            (row.get(5), row.get(6), row.get(7), row.get(8));
        let schema_q = quote_ident(&name);
        let table_q = format!("{schema_q}.{}", quote_ident(job.table));
        if !schema_exists {
            if !job.create_schema {
                found.push(Missing {
                    what: format!("schema {schema_q} does not exist (workers.create_schema is false)"),
                    fix: format!(
                        "CREATE SCHEMA {schema_q}; then create {table_q} as worker_spi does, or set workers.create_schema: true"
                    ),
                });
            } else if !can_create_schemas {
                need_database_create = true;
            }
            continue;
        }
        if !usage {
            found.push(Missing {
                what: format!("USAGE on schema {schema_q}"),
                fix: format!("GRANT USAGE ON SCHEMA {schema_q} TO {role_q};"),
            });
        }
        if !table_exists {
            if !job.create_schema {
                found.push(Missing {
                    what: format!(
                        "table {table_q} does not exist (workers.create_schema is false)"
                    ),
                    fix: format!(
                        "create {table_q} as worker_spi does, or set workers.create_schema: true"
                    ),
                });
            } else if !create_in_schema {
                found.push(Missing {
                    what: format!("CREATE on schema {schema_q} (to create {table_q})"),
                    fix: format!("GRANT CREATE ON SCHEMA {schema_q} TO {role_q};"),
                });
            }
            continue;
        }
        let lacking: Vec<&str> = [("SELECT", select), ("UPDATE", update), ("DELETE", delete)]
            .iter()
            .filter(|(_, granted)| !granted)
            .map(|(privilege, _)| *privilege)
            .collect();
        if !lacking.is_empty() {
            let privileges = lacking.join(", ");
            found.push(Missing {
                what: format!("{privileges} on {table_q}"),
                fix: format!("GRANT {privileges} ON {table_q} TO {role_q};"),
            });
        }
        if job.vacuum && !vacuum {
            let fix = if version >= 170000 {
                format!("GRANT MAINTAIN ON {table_q} TO {role_q}; (or set workers.vacuum_after: 0)")
            } else {
                format!(
                    "ALTER TABLE {table_q} OWNER TO {role_q}; (VACUUM needs the owner before PostgreSQL 17; or set workers.vacuum_after: 0)"
                )
            };
            found.push(Missing {
                what: format!("the right to VACUUM {table_q} (workers.vacuum_after is on)"),
                fix,
            });
        }
    }
    if need_database_create {
        found.insert(
            0,
            Missing {
                what: format!(
                    "CREATE on database {} (to create missing schemas; workers.create_schema is true)",
                    quote_ident(&database)
                ),
                fix: format!(
                    "GRANT CREATE ON DATABASE {} TO {role_q};",
                    quote_ident(&database)
                ),
            },
        );
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_needs_follow_the_settings() {
        let mut settings = crate::settings::ConfigSources::default()
            .load_without_env()
            .expect("the built-in defaults load");
        settings.workers.table = "tally".into();
        settings.workers.create_schema = false;
        settings.workers.vacuum_after = 0;
        let schemas = vec!["a".to_owned(), "B".to_owned()];
        assert_eq!(
            Needs::of(&settings, &schemas),
            Needs {
                schemas: &schemas,
                table: "tally",
                create_schema: false,
                vacuum: false,
            }
        );
        settings.workers.create_schema = true;
        settings.workers.vacuum_after = 1;
        let needs = Needs::of(&settings, &schemas);
        assert!(needs.create_schema && needs.vacuum);
    }
}

//! `pgfleet --check`: is this configuration good, can it reach the
//! database, and can the role do the job? For deploy scripts and systemd's
//! ExecStartPre: a role without privileges must fail here, with the GRANT
//! that fixes it, not pass and then fail every worker.

use std::time::Duration;

use pgfleet_actors::config_actor::Loaded;
use pgfleet_actors::db::DbError;
use pgfleet_actors::discovery::scan::{self, Patterns, Vetted};
use pgfleet_actors::job::privileges::{self, Needs};
use slog::{o, Drain, Logger};

/// The database cannot be reached, refuses us, or the role lacks a
/// privilege.
pub const EXIT_CHECK_FAILED: i32 = 1;

/// Connects as the service does (same hosts, TLS, password sources,
/// pooler handling: the connector the configuration was validated with)
/// and checks the role's privileges on every schema.
pub fn run(
    Loaded {
        settings,
        connector,
        control,
    }: Loaded,
) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pgfleet: cannot start the async runtime: {e}");
            return EXIT_CHECK_FAILED;
        }
    };
    let log = Logger::root(StderrWarnings.fuse(), o!());
    let connector = connector.with_log(&log);
    let settings_control = control.map(|control| control.with_log(&log));
    let mut targets: Vec<String> = settings
        .targets()
        .into_iter()
        .map(|t| t.schema.to_string())
        .collect();
    let listed = targets.len();
    let patterns = Patterns {
        matching: settings.workers.matching.clone(),
        exclude: settings.workers.exclude.clone(),
        table: settings.workers.table.clone(),
    };
    // Every host may take connect_timeout, twice with sslmode prefer/allow.
    let answer_within = connector.connect_timeout() * 2 + settings.database.statement_timeout;
    let result = runtime.block_on(async {
        let session = connector.connect().await?;
        let client = &session.client;
        let version = tokio::time::timeout(
            answer_within,
            // The unnamed statement, as every statement of the check: a
            // named one could stay on a pooler's server connection.
            client.query_typed_one("SELECT current_setting('server_version')", &[]),
        )
        .await
        .map_err(|_| no_answer(answer_within))?
        .map_err(|e| DbError::from_statement(&e))?;
        // What workers.match finds now; the foldable ones are checked
        // like the listed (VACUUM's ownership).
        let found = if settings.discovers() {
            tokio::time::timeout(answer_within, scan::scan(client, &patterns))
                .await
                .map_err(|_| no_answer(answer_within))??
        } else {
            Vetted::default()
        };
        let listed_names: std::collections::HashSet<String> = targets.iter().cloned().collect();
        let (foldable, unfoldable): (Vec<_>, Vec<_>) =
            found.found.into_iter().partition(|found| found.foldable);
        targets.extend(
            foldable
                .iter()
                .map(|found| found.schema.to_string())
                .filter(|schema| !listed_names.contains(schema)),
        );
        let needs = Needs::of(&settings, &targets);
        let missing = tokio::time::timeout(answer_within, privileges::missing(client, &needs))
            .await
            .map_err(|_| no_answer(answer_within))??;
        let encryption = if session.tls { "TLS" } else { "plaintext" };
        // control.url: the listener's own session, tried as the service
        // would (its LISTEN needs nothing but a connection).
        if let Some(control) = &settings_control {
            let session = control.connect().await?;
            tokio::time::timeout(answer_within, session.client.batch_execute("SELECT 1"))
                .await
                .map_err(|_| no_answer(answer_within))?
                .map_err(|e| DbError::from_statement(&e))?;
            println!("control.url: connected to {}", control.describe_target());
        }
        // coordination.enabled: its session tried as the service would
        // hold it (control.url, else database.url), without joining.
        let mut coordination_line = None;
        if settings.coordination.enabled {
            let coordination = settings_control.as_ref().unwrap_or(&connector);
            let session = coordination.connect().await?;
            let other = coordination.connect().await?;
            let shared = pgfleet_actors::coordination::session::shares_backends(
                &session.client,
                &other.client,
            )
            .await
            .map_err(|text| DbError::Statement { code: None, text })?;
            drop(other);
            if shared {
                return Err(DbError::Statement {
                    code: None,
                    text: format!(
                        "coordination cannot work at {}: {}",
                        coordination.describe_target(),
                        pgfleet_actors::coordination::session::SHARED_BACKENDS
                    ),
                });
            }
            let keys = pgfleet_actors::ownership::Keys {
                namespace: settings.coordination.namespace,
            };
            let probe = tokio::time::timeout(
                answer_within,
                pgfleet_actors::coordination::session::probe(
                    &session.client,
                    keys,
                    settings.coordination.lease,
                ),
            )
            .await
            .map_err(|_| no_answer(answer_within))?
            .map_err(|why| DbError::Statement {
                code: None,
                text: format!(
                    "coordination cannot work at {}: {why}",
                    coordination.describe_target()
                ),
            })?;
            if probe.handed_down > 0 {
                eprintln!(
                    "pgfleet: warning: the coordination session's server connection at {} came with {} \
                     advisory locks of the client before it (the service releases them when it joins): {}",
                    coordination.describe_target(),
                    probe.handed_down,
                    pgfleet_actors::coordination::session::HANDED_DOWN
                );
            }
            coordination_line = Some(format!(
                "coordination: works at {} (a session of its own; idle_session_timeout {} enforced by the server); \
                 {} instances of namespace {} live now",
                coordination.describe_target(),
                humantime::format_duration(settings.coordination.lease),
                probe.members,
                settings.coordination.namespace
            ));
        }
        if settings.discovers() {
            println!(
                "workers.match finds {} schemas now{}",
                targets.len() - listed,
                examples(targets[listed..].iter().map(String::as_str))
            );
            if !unfoldable.is_empty() {
                eprintln!(
                    "pgfleet: warning: {} more match and hold {:?}, but the role cannot fold them \
                     (USAGE on the schema; SELECT, UPDATE and DELETE on the table): they are left \
                     alone{}",
                    unfoldable.len(),
                    settings.workers.table,
                    examples(unfoldable.iter().map(|found| &*found.schema))
                );
            }
        }
        Ok::<_, DbError>((version.get::<_, String>(0), encryption, missing, coordination_line))
    });
    let at = connector.describe_target();
    match result {
        Ok((version, encryption, missing, coordination)) if missing.is_empty() => {
            println!(
                "configuration OK: {} workers on table {:?}; connected to {at} over {encryption} \
                 (PostgreSQL {version}); the role has every privilege the job needs",
                targets.len(),
                settings.workers.table,
            );
            if let Some(line) = coordination {
                println!("{line}");
            }
            0
        }
        Ok((_, _, missing, _)) => {
            eprintln!(
                "pgfleet: connected to {at}, but the role lacks what the job needs ({} problems):",
                missing.len()
            );
            const SHOWN: usize = 20;
            for item in missing.iter().take(SHOWN) {
                eprintln!("  missing {}\n    fix: {}", item.what, item.fix);
            }
            if missing.len() > SHOWN {
                eprintln!("  ... and {} more", missing.len() - SHOWN);
            }
            EXIT_CHECK_FAILED
        }
        Err(e) => {
            let what = match &e {
                DbError::Refused { .. } => "the database refused the connection",
                DbError::Unreachable(_) => "the database cannot be reached",
                _ => "the check failed",
            };
            eprintln!(
                "pgfleet: configuration OK, but {what} at {at} [{}]: {e}",
                e.kind()
            );
            EXIT_CHECK_FAILED
        }
    }
}

/// `: a, b, c` and `, ...` beyond ten; nothing for none.
fn examples<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    let more = names.len().saturating_sub(10);
    let shown: Vec<&str> = names.take(10).collect();
    match (shown.is_empty(), more) {
        (true, _) => String::new(),
        (false, 0) => format!(": {}", shown.join(", ")),
        (false, more) => format!(": {}, ... ({more} more)", shown.join(", ")),
    }
}

fn no_answer(waited: Duration) -> DbError {
    DbError::Unreachable(format!("the server did not answer within {waited:?}"))
}

/// What the connector warns about (a password file ignored for its
/// permissions), as `--check` output.
struct StderrWarnings;

impl Drain for StderrWarnings {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        if record.level().is_at_least(slog::Level::Warning) {
            eprintln!("pgfleet: warning: {}", record.msg());
        }
        Ok(())
    }
}

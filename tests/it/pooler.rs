//! Statements behind a transaction-mode pooler (SPEC §11): pgfleet started
//! again and again through the same Debian PgBouncer 1.18, whose server
//! connections outlive every pgfleet process. A named prepared statement
//! left on one of them fails the next pgfleet that prepares the same name
//! (42P05); one whose parse and execute reach different server
//! connections is missing (26000). So every start-up probe, every
//! initialisation and every unprepared fold must go as the unnamed
//! statement or the simple protocol, and each test ends by reading
//! `pg_prepared_statements` on every server connection of the pool
//! ([`PgBouncer::statements_on_servers`]): a named statement that
//! reappears anywhere on these paths fails here, before any user meets it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cluster::{cluster, TestDb};
use crate::support::pgbouncer::PgBouncer;
use crate::support::pgfleet::{execute, ready, run, schema_names, ConfigFile, Pgfleet};

/// 20 schemas: enough for several initialisations per pooled connection,
/// so statement names climb past what one connection alone would use.
const SCHEMAS: usize = 20;

/// Asserts that `pgfleet`'s log has none of `events`.
fn assert_none(pgfleet: &Pgfleet, events: &[&str], when: &str) {
    for event in events {
        let found = pgfleet.events(event);
        assert!(
            found.is_empty(),
            "{when}: {} {event}: {found:?}",
            found.len()
        );
    }
}

/// The totals of `schemas` reach `expected` each, with no delta left.
fn wait_for_totals(pgfleet: &Pgfleet, db: &TestDb, schemas: &[String], expected: i64) {
    let rows: Vec<String> = schemas
        .iter()
        .map(|s| format!("SELECT type, value FROM {s}.counted"))
        .collect();
    let sql = format!(
        "SELECT count(*) FILTER (WHERE type = 'delta')::text, \
         count(*) FILTER (WHERE type = 'total' AND value = {expected})::text \
         FROM ({}) AS rows",
        rows.join(" UNION ALL ")
    );
    let mut client = db.client();
    pgfleet.eventually(&format!("every schema's total is {expected}"), || {
        let messages = client.simple_query(&sql).expect("totals");
        messages.iter().any(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => {
                row.get(0) == Some("0") && row.get(1) == Some(&*schemas.len().to_string())
            }
            _ => false,
        })
    });
}

/// One delta of 1 into every schema.
fn one_delta_each(db: &TestDb, schemas: &[String]) {
    let inserts: Vec<String> = schemas
        .iter()
        .map(|s| format!("INSERT INTO {s}.counted VALUES ('delta', 1);"))
        .collect();
    execute(db, &inserts.join("\n"));
}

/// Three starts of pgfleet in a row through one PgBouncer in transaction
/// mode with its default reset settings (none in transaction mode), with
/// `yaml` over a short naptime: each start, every worker starts once and
/// none fails, and a delta per schema is folded.
fn three_starts_through_one_pgbouncer(yaml: &str) {
    let db = cluster().create_database();
    let bouncer = PgBouncer::start(cluster().port(), "transaction", "");
    let schemas = schema_names(SCHEMAS);
    let yaml = format!("naptime: 50ms\nworkers:\n  total: {SCHEMAS}\n{yaml}");
    for start in 1..=3 {
        let mut pgfleet = Pgfleet::start_with(
            &db,
            &yaml,
            &[("PGFLEET__DATABASE__URL", &bouncer.url(&db.name))],
        );
        if start == 1 {
            ready(&pgfleet, &db, &schemas);
        } else {
            for schema in &schemas {
                pgfleet.wait_schema_event("worker_started", schema);
            }
        }
        one_delta_each(&db, &schemas);
        wait_for_totals(&pgfleet, &db, &schemas, start);
        let status = pgfleet.stop();
        assert!(status.success(), "start {start}: {status}");
        let when = format!("start {start}");
        assert_none(&pgfleet, &["worker_failed", "database_lost"], &when);
        assert_eq!(
            pgfleet.events("worker_started").len(),
            SCHEMAS,
            "{when}: each worker starts once"
        );
        let left = bouncer.statements_on_servers(&db.name);
        assert!(left.is_empty(), "{when} left statements behind: {left:?}");
    }
}

#[test]
fn restarts_through_a_transaction_pgbouncer_with_its_defaults_fail_no_worker() {
    three_starts_through_one_pgbouncer("");
}

#[test]
fn restarts_through_a_transaction_pgbouncer_unprepared_fail_no_worker() {
    three_starts_through_one_pgbouncer("database:\n  pooler: transaction\n  prepared: \"off\"\n");
}

/// Other clients take and release PgBouncer's server connections, so
/// consecutive transactions of one client seldom land on the same one:
/// pgbench through the PgBouncer, killed when dropped. Throttled to 200
/// transactions a second: churn enough (the code before the fix failed
/// with it in 3 runs of 3, as with an unthrottled pgbench) without taking
/// the CPU from the tests running beside it.
struct Load {
    child: Child,
    _script: tempfile::TempDir,
}

impl Load {
    fn start(db: &TestDb, bouncer: &PgBouncer) -> Self {
        let script = tempfile::tempdir().expect("script dir");
        let path = script.path().join("load.sql");
        std::fs::write(&path, "SELECT 1;\n").expect("write script");
        let child = Command::new(db.pgbench_path())
            .env("PGSSLMODE", "disable")
            .args(["-n", "-h", "127.0.0.1", "-p", &bouncer.port().to_string()])
            .args([
                "-U", "postgres", "-c", "4", "-j", "1", "-R", "200", "-T", "600",
            ])
            .arg("-f")
            .arg(Path::new(&path))
            .arg(&db.name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgbench");
        Load {
            child,
            _script: script,
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PgBouncer with `extra_float_digits,options` in `ignore_startup_parameters`
/// (a common setting, for JDBC clients): it takes pgfleet's start-up
/// options and drops them, so `pooler: auto` asks the server what arrived.
fn pgbouncer_that_drops_options() -> PgBouncer {
    PgBouncer::start(
        cluster().port(),
        "transaction",
        "ignore_startup_parameters = extra_float_digits,options",
    )
}

/// Under pgbench load through the same PgBouncer, pgfleet's start-up
/// probes reach whichever server connection is free at each step: every
/// start, all workers initialise within seconds, and nothing is called an
/// outage.
#[test]
fn starts_through_a_loaded_pgbouncer_that_drops_options_initialise_every_worker() {
    let db = cluster().create_database();
    let bouncer = pgbouncer_that_drops_options();
    let schemas = schema_names(SCHEMAS);
    let load = Load::start(&db, &bouncer);
    let yaml = format!("naptime: 50ms\nworkers:\n  total: {SCHEMAS}\n");
    let mut slowest = Duration::ZERO;
    for start in 1..=4 {
        let began = Instant::now();
        let mut pgfleet = Pgfleet::start_with(
            &db,
            &yaml,
            &[("PGFLEET__DATABASE__URL", &bouncer.url(&db.name))],
        );
        for schema in &schemas {
            pgfleet.wait_schema_event("worker_started", schema);
        }
        let took = began.elapsed();
        slowest = slowest.max(took);
        let detected = pgfleet.wait_event("pooler_detected");
        assert!(
            detected["msg"]
                .as_str()
                .is_some_and(|m| m.contains("did not arrive")),
            "{detected}"
        );
        if start == 1 {
            ready(&pgfleet, &db, &schemas);
        }
        one_delta_each(&db, &schemas);
        wait_for_totals(&pgfleet, &db, &schemas, start);
        let status = pgfleet.stop();
        assert!(status.success(), "start {start}: {status}");
        let when = format!("start {start}");
        assert_none(&pgfleet, &["worker_failed", "database_lost"], &when);
        assert!(
            took < Duration::from_secs(10),
            "{when}: {SCHEMAS} workers took {took:?} to start"
        );
    }
    drop(load);
    let left = bouncer.statements_on_servers(&db.name);
    assert!(left.is_empty(), "statements left behind: {left:?}");
    eprintln!(
        "MEASURED loaded PgBouncer that drops options: 4 starts, {SCHEMAS} workers each \
         started within {slowest:?} at the slowest; 0 database_lost, 0 worker_failed"
    );
}

/// `pgfleet --check` (a deploy step, run again at every deploy) through
/// the same PgBouncer, loaded and dropping the options: it passes each
/// time and leaves nothing on the server connections.
#[test]
fn check_through_a_transaction_pgbouncer_passes_again_and_again() {
    let db = cluster().create_database();
    let bouncer = pgbouncer_that_drops_options();
    let config = ConfigFile::new(&format!(
        "workers:\n  total: {SCHEMAS}\ndatabase:\n  connect_timeout: 2s\n"
    ));
    let path = config.path.to_str().expect("utf-8 path");
    let url = bouncer.url(&db.name);
    let check = || {
        run(
            &["--check", "--config", path],
            &[("PGFLEET__DATABASE__URL", &url)],
        )
    };
    for attempt in 1..=3 {
        let output = check();
        assert_eq!(
            output.status.code(),
            Some(0),
            "check {attempt}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let load = Load::start(&db, &bouncer);
    for attempt in 4..=6 {
        let output = check();
        assert_eq!(
            output.status.code(),
            Some(0),
            "check {attempt}, under load: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    drop(load);
    let left = bouncer.statements_on_servers(&db.name);
    assert!(left.is_empty(), "statements left behind: {left:?}");
}

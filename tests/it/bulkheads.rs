//! Bulkheads: trouble in some schemas never stalls the others, and is
//! never reported as a database outage (issue 16, SPEC §11).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::http::{folds, json, scrape, start, value};
use crate::support::cluster::{cluster, TestDb};
use crate::support::pgbouncer::PgBouncer;
use crate::support::pgfleet::{eventually, execute, ready, schema_names, Pgfleet};

/// Schemas in the migration scenario, and how many of them it locks.
const SCHEMAS: usize = 120;
const LOCKED: usize = 90;
const NAPTIME: Duration = Duration::from_millis(500);
/// How long the measured window of the lock lasts.
const WINDOW: Duration = Duration::from_secs(8);

/// `pgfleet_ticks_skipped_total` by reason.
fn skipped_by_reason(address: SocketAddr) -> BTreeMap<String, f64> {
    let samples = scrape(address);
    [
        "waiting_for_lock",
        "fold_in_flight",
        "waiting_for_connection",
        "pool_exhausted",
        "timed_out",
    ]
    .into_iter()
    .map(|reason| {
        let n = value(
            &samples,
            "pgfleet_ticks_skipped_total",
            &[("reason", reason)],
        );
        (reason.to_owned(), n.unwrap_or(0.0))
    })
    .collect()
}

/// The share of their ticks `schemas` fold over `window`, from `/workers`.
fn fold_share(address: SocketAddr, schemas: &[String], window: Duration) -> f64 {
    let before = folds(address);
    let started = Instant::now();
    std::thread::sleep(window);
    let after = folds(address);
    let ticks = started.elapsed().as_secs_f64() / NAPTIME.as_secs_f64();
    let folded: u64 = schemas.iter().map(|s| after[s] - before[s]).sum();
    folded as f64 / (ticks * schemas.len() as f64)
}

/// A schema-per-tenant migration: one transaction locks most tenant tables
/// (`LOCK TABLE … IN EXCLUSIVE MODE`, as ALTER TABLE would, tenant by
/// tenant) and holds them. The schemas nobody locked fold at least 90% of
/// their ticks meanwhile; the locked ones show as `waiting_for_lock` (state,
/// skip reason, metric), no `database_lost` is reported while the server
/// answers, and every locked schema folds soon after the lock goes.
fn a_migration_does_not_stall_the_others(db: &TestDb, extra_yaml: &str, env: &[(&str, &str)]) {
    let schemas = schema_names(SCHEMAS);
    let yaml = format!(
        "naptime: {}ms\nworkers:\n  total: {SCHEMAS}\nlog:\n  summary_every: 0s\n{extra_yaml}",
        NAPTIME.as_millis()
    );
    let (pgfleet, address) = start(db, &yaml, env);
    ready(&pgfleet, db, &schemas);
    let (locked, free) = schemas.split_at(LOCKED);
    // The same schemas without the lock first, side by side: on a loaded
    // machine both measures fall alike, and the lock must not add to it.
    let baseline = fold_share(address, free, WINDOW);

    let mut migration = db.client();
    let mut tx = migration.transaction().expect("begin");
    let tables: Vec<String> = locked.iter().map(|s| format!("{s}.counted")).collect();
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        tables.join(", ")
    ))
    .expect("the migration's locks");
    // Deltas for the locked schemas to fold once the lock goes (EXCLUSIVE
    // keeps other sessions' INSERTs out too: these commit with it).
    for schema in locked {
        tx.batch_execute(&format!("INSERT INTO {schema}.counted VALUES ('delta', 7)"))
            .expect("a delta inside the migration");
    }
    // Every locked worker has met the lock at least once.
    eventually("the locked schemas show as waiting for the lock", || {
        pgfleet.events("worker_waiting_for_lock").len() >= LOCKED
    });
    let before = folds(address);
    let skipped_before = skipped_by_reason(address);
    let share = fold_share(address, free, WINDOW);
    let after = folds(address);
    let skipped: Vec<String> = skipped_by_reason(address)
        .into_iter()
        .map(|(reason, n)| {
            format!(
                "{reason} {}",
                n - skipped_before.get(&reason).unwrap_or(&0.0)
            )
        })
        .collect();
    eprintln!(
        "MEASURED a migration locking {LOCKED} of {SCHEMAS} tables for {WINDOW:?} ({extra_yaml:?}): \
         the {} others folded {:.1}% of their ticks, against {:.1}% without the lock just before; \
         ticks skipped meanwhile: {}",
        free.len(),
        share * 100.0,
        baseline * 100.0,
        skipped.join(", ")
    );
    // A window's edges count a tick more or less per schema: a share may
    // pass 100% by a few points, and counts as 100%.
    assert!(
        share >= 0.9 * baseline.min(1.0),
        "the unlocked schemas folded {share:.3} of their ticks during the lock, {baseline:.3} without"
    );
    let locked_folds: u64 = locked.iter().map(|s| after[s] - before[s]).sum();
    assert_eq!(locked_folds, 0, "a locked schema cannot fold");

    // Visible as what it is.
    let workers = json(address, "/workers");
    let waiting = workers
        .as_array()
        .expect("array")
        .iter()
        .filter(|w| w["state"] == "waiting_for_lock")
        .count();
    assert_eq!(waiting, LOCKED, "{workers:#}");
    let samples = scrape(address);
    assert_eq!(
        value(
            &samples,
            "pgfleet_workers",
            &[("state", "waiting_for_lock")]
        ),
        Some(LOCKED as f64)
    );
    assert!(
        value(
            &samples,
            "pgfleet_ticks_skipped_total",
            &[("reason", "waiting_for_lock")]
        )
        .is_some_and(|n| n >= LOCKED as f64),
        "no waiting_for_lock skips"
    );
    // One warning per locked schema, not one per tick.
    assert_eq!(pgfleet.events("worker_waiting_for_lock").len(), LOCKED);

    tx.commit().expect("the migration commits");
    let released: String = migration
        .query_one("SELECT clock_timestamp()::text", &[])
        .expect("the time of the release")
        .get(0);
    eventually("every locked schema folded its delta", || {
        let mut client = db.client();
        let folded = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM ({}) AS totals WHERE value = 7",
                    locked
                        .iter()
                        .map(|s| format!("SELECT value FROM {s}.counted WHERE type = 'total'"))
                        .collect::<Vec<_>>()
                        .join(" UNION ALL ")
                ),
                &[],
            )
            .map_or(0, |row| row.get::<_, i64>(0));
        folded == LOCKED as i64
    });
    eventually("every locked schema said it folds again", || {
        pgfleet.events("worker_lock_released").len() == LOCKED
    });
    // From the release to the last schema's first fold, by pgfleet's own
    // clock (its log), not by how often this test looks.
    let last_fold = pgfleet
        .events("worker_lock_released")
        .iter()
        .filter_map(|e| e["ts"].as_str().map(str::to_owned))
        .max()
        .expect("worker_lock_released lines");
    let caught_up: f64 = migration
        .query_one(
            "SELECT extract(epoch FROM $1::text::timestamptz - $2::text::timestamptz)::float8",
            &[&last_fold, &released],
        )
        .expect("seconds from the release to the last fold")
        .get(0);
    eprintln!("MEASURED every locked schema folded within {caught_up:.3} s after the lock went");
    // The target is 3 s, measured at 0.6 to 1.1 s (docs/faults.md, "During
    // a migration"): a schema tries again at most once a second, and 90
    // folds wait their turn for 8 connections. A CI machine busy with other
    // tests has been seen at 3.6 s through PgBouncer; a retry that waited
    // for more than a tick or two would be far beyond.
    assert!(
        caught_up < 5.0,
        "the locked schemas took {caught_up:.3} s to fold after the lock went"
    );
    assert_eq!(pgfleet.events("worker_lock_released").len(), LOCKED);
    for event in ["database_lost", "worker_failed", "database_unreachable"] {
        assert!(
            pgfleet.events(event).is_empty(),
            "{event}: {:?}",
            pgfleet.events(event)
        );
    }
    let states = folds(address);
    assert_eq!(states.len(), SCHEMAS);
}

#[test]
fn a_migration_locking_most_tables_does_not_stall_the_others() {
    let db = cluster().create_database();
    a_migration_does_not_stall_the_others(&db, "", &[]);
}

/// `database.lock_timeout` is initialisation's: even "wait as long as
/// statement_timeout" does not let a fold hold a shared connection.
#[test]
fn a_migration_does_not_stall_the_others_with_lock_timeout_0() {
    let db = cluster().create_database();
    a_migration_does_not_stall_the_others(&db, "database:\n  lock_timeout: 0s\n", &[]);
}

#[test]
fn a_migration_does_not_stall_the_others_through_transaction_pooling_pgbouncer() {
    let db = cluster().create_database();
    let bouncer = PgBouncer::start(cluster().port(), "transaction", "");
    let url = bouncer.url(&db.name);
    a_migration_does_not_stall_the_others(&db, "", &[("PGFLEET__DATABASE__URL", &url)]);
}

/// A fold pipelined behind folds that wait for locks (here a
/// `fold_lock_timeout` as long as `statement_timeout`, on purpose) can
/// start only when they answer: its deadline counts from the lane's last
/// answer, so a lane that keeps answering is never taken for a stalled
/// server, however many folds were queued on it.
#[test]
fn folds_queued_behind_locked_ones_are_not_an_outage() {
    let db = cluster().create_database();
    let schemas = schema_names(40);
    // Each locked fold gives up after 1 s (fold_lock_timeout); the server
    // counts as stalled after 2.5 s (statement_timeout + connect_timeout)
    // without an answer.
    let yaml = "naptime: 200ms\nworkers:\n  total: 40\ndatabase:\n  pool_size: 2\n  \
                statement_timeout: 2s\n  connect_timeout: 500ms\n  fold_lock_timeout: 1s\n\
                log:\n  summary_every: 0s\n";
    let pgfleet = Pgfleet::start(&db, yaml);
    ready(&pgfleet, &db, &schemas);
    let mut migration = db.client();
    let mut tx = migration.transaction().expect("begin");
    let tables: Vec<String> = schemas[..30]
        .iter()
        .map(|s| format!("{s}.counted"))
        .collect();
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        tables.join(", ")
    ))
    .expect("lock");
    pgfleet.wait_for("folds giving up on the lock", |e| {
        e["event"] == "worker_waiting_for_lock"
    });
    std::thread::sleep(Duration::from_secs(5));
    tx.rollback().expect("release");
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 3)");
    pgfleet.wait_for("schema1 folds after the lock", |e| {
        e["event"] == "worker_tick" && e["schema"] == "schema1" && e["total"] == 3
    });
    for event in ["database_lost", "worker_failed"] {
        assert!(
            pgfleet.events(event).is_empty(),
            "{event}: {:?}",
            pgfleet.events(event)
        );
    }
}

/// Whether `schema` exists in `db`.
fn schema_exists(db: &TestDb, schema: &str) -> bool {
    db.client()
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .map(|row| row.get::<_, bool>(0))
        .unwrap_or_else(|e| panic!("pg_namespace: {e}"))
}

/// A tenant leaves: its schema, listed in the configuration, is dropped
/// while pgfleet folds it. worker_spi's create-if-missing applies when a
/// worker starts, never to a schema that was there and went away: the
/// worker says so once, waits without failing, the others fold on, and it
/// folds again when the schema comes back.
fn a_dropped_schema_is_waited_for(create_schema: bool) {
    let db = cluster().create_database();
    let schemas = schema_names(3);
    let yaml = format!("workers:\n  total: 3\n  create_schema: {create_schema}\n");
    if !create_schema {
        for schema in &schemas {
            execute(
                &db,
                &format!("CREATE SCHEMA {schema} CREATE TABLE counted (type text, value integer)"),
            );
        }
    }
    let (pgfleet, address) = start(&db, &yaml, &[]);
    ready(&pgfleet, &db, &schemas);
    execute(&db, "DROP SCHEMA schema2 CASCADE");
    let dropped = pgfleet.wait_schema_event("worker_table_dropped", "schema2");
    assert_eq!(dropped["level"], "warn", "{dropped}");
    // Many ticks and restart delays later: not created again, no failure.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!schema_exists(&db, "schema2"), "schema2 was created again");
    pgfleet.assert_no_event("worker_failed");
    assert_eq!(pgfleet.events("worker_table_dropped").len(), 1);
    let workers = json(address, "/workers");
    let schema2 = workers
        .as_array()
        .expect("array")
        .iter()
        .find(|w| w["schema"] == "schema2")
        .expect("schema2 in /workers");
    assert_eq!(schema2["state"], "table_dropped", "{schema2}");
    // The others fold on.
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 5)");
    execute(&db, "INSERT INTO schema3.counted VALUES ('delta', 6)");
    for (schema, total) in [("schema1", 5), ("schema3", 6)] {
        pgfleet.wait_for("the others fold on", |e| {
            e["event"] == "worker_tick" && e["schema"] == schema && e["total"] == total
        });
    }
    // The tenant comes back.
    execute(
        &db,
        "CREATE SCHEMA schema2 CREATE TABLE counted (type text, value integer); \
         INSERT INTO schema2.counted VALUES ('total', 10), ('delta', 1)",
    );
    pgfleet.wait_schema_event("worker_table_back", "schema2");
    pgfleet.wait_for("schema2 folds again", |e| {
        e["event"] == "worker_tick" && e["schema"] == "schema2" && e["total"] == 11
    });
    pgfleet.assert_no_event("worker_failed");
}

#[test]
fn a_dropped_schema_is_not_created_again() {
    a_dropped_schema_is_waited_for(true);
}

#[test]
fn a_dropped_schema_with_create_schema_false_is_no_failure_loop() {
    a_dropped_schema_is_waited_for(false);
}

/// A worker restarted for another reason (here a panic in every fold,
/// through a test hook) after its schema was dropped does not create it
/// again either: the Supervisor remembers that the schema existed.
#[test]
fn a_restarted_worker_does_not_create_a_dropped_schema_again() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start_with(
        &db,
        "workers:\n  total: 2\nrestart:\n  max_restarts: 1000\n",
        &[("TEST_HOOK_PANIC_IN_FOLD_OF", "schema2")],
    );
    ready(&pgfleet, &db, &schema_names(2));
    pgfleet.wait_schema_event("worker_restarted", "schema2");
    execute(&db, "DROP SCHEMA schema2 CASCADE");
    pgfleet.wait_schema_event("worker_table_dropped", "schema2");
    let restarts = pgfleet.events("worker_restarted").len();
    std::thread::sleep(Duration::from_secs(2));
    assert!(!schema_exists(&db, "schema2"), "schema2 was created again");
    // Waiting, not failing: the restarts stopped with the drop.
    assert!(pgfleet.events("worker_restarted").len() <= restarts + 1);
}

/// A 42P01 that is not about the table itself (a trigger on it naming a
/// relation that is gone) is the fold's own failure, not a dropped table:
/// pgfleet asks the catalog before it says "dropped" and waits quietly.
#[test]
fn a_missing_relation_in_a_trigger_is_a_failure_not_a_drop() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 1\nrestart:\n  policy: never\n");
    ready(&pgfleet, &db, &schema_names(1));
    execute(
        &db,
        "CREATE FUNCTION public.audit_fold() RETURNS trigger LANGUAGE plpgsql AS \
           $$BEGIN INSERT INTO public.gone_long_ago VALUES (1); RETURN OLD; END$$; \
         CREATE TRIGGER audit_fold BEFORE DELETE ON schema1.counted \
           FOR EACH ROW EXECUTE FUNCTION public.audit_fold(); \
         INSERT INTO schema1.counted VALUES ('delta', 1)",
    );
    let failed = pgfleet.wait_schema_event("worker_failed", "schema1");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("42P01") && e.contains("gone_long_ago")),
        "{failed}"
    );
    pgfleet.assert_no_event("worker_table_dropped");
}

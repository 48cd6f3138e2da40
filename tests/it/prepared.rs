//! Prepared folds (`database.prepared`, `database.prepared_cache`): kept
//! per connection within the bound, counted by `pgfleet_prepared_statements`,
//! off behind a pooler in `auto`, and through Debian's PgBouncer 1.18,
//! which cannot keep protocol-level prepared statements in transaction
//! mode: `auto` finds out and folds unprepared, `on` fails and says what
//! to change.

use std::net::SocketAddr;
use std::time::Duration;

use crate::http::{scrape, start, value, wait_for_total};
use crate::support::cluster::cluster;
use crate::support::pgbouncer::PgBouncer;
use crate::support::pgfleet::{eventually, execute, ready, scalar_i64, schema_names, Pgfleet};
use crate::support::writers::{ledger, Writers};

fn prepared_statements(address: SocketAddr) -> f64 {
    value(&scrape(address), "pgfleet_prepared_statements", &[]).unwrap_or(-1.0)
}

#[test]
fn folds_are_prepared_once_per_connection_within_the_bound() {
    let db = cluster().create_database();
    let schemas = schema_names(3);
    // One connection that may keep two statements: two schemas fold
    // prepared, the third unprepared, and nothing is evicted.
    let (pgfleet, address) = start(
        &db,
        "naptime: 50ms\nworkers:\n  total: 3\n  vacuum_after: 0\n\
         database:\n  pool_size: 1\n  prepared_cache: 2\n",
        &[],
    );
    ready(&pgfleet, &db, &schemas);
    eventually("two statements prepared", || {
        prepared_statements(address) == 2.0
    });
    let writers = Writers::start(&db, &schemas);
    std::thread::sleep(Duration::from_secs(1));
    writers.stop();
    let (counted, committed) = ledger(&db, &schemas);
    assert_eq!(counted, committed, "total + remaining deltas != committed");
    for (n, schema) in schemas.iter().enumerate() {
        execute(
            &db,
            &format!(
                "INSERT INTO {schema}.counted VALUES ('delta', {})",
                1000 + n
            ),
        );
    }
    eventually("every delta folded, prepared or not", || {
        let remaining: i64 = schemas
            .iter()
            .map(|s| {
                scalar_i64(
                    &db,
                    &format!("SELECT count(*) FROM {s}.counted WHERE type = 'delta'"),
                )
            })
            .sum();
        remaining == 0
    });
    assert_eq!(prepared_statements(address), 2.0, "the bound held");
    pgfleet.assert_no_event("worker_failed");
}

#[test]
fn prepared_off_prepares_nothing() {
    let db = cluster().create_database();
    let (pgfleet, address) = start(
        &db,
        "naptime: 50ms\nworkers:\n  total: 2\ndatabase:\n  prepared: \"off\"\n",
        &[],
    );
    ready(&pgfleet, &db, &schema_names(2));
    execute(&db, "INSERT INTO schema2.counted VALUES ('delta', 5)");
    wait_for_total(&pgfleet, "schema2", 5);
    assert_eq!(prepared_statements(address), 0.0);
}

/// PgBouncer 1.18 in transaction mode, told to wipe every server
/// connection after each transaction (`DISCARD ALL`), so a statement
/// prepared in one transaction is always gone in the next: the worst
/// case of a pooler that moves sessions, made deterministic.
fn forgetful_pgbouncer() -> PgBouncer {
    PgBouncer::start(
        cluster().port(),
        "transaction",
        "ignore_startup_parameters = options\nserver_reset_query = DISCARD ALL\n\
         server_reset_query_always = 1",
    )
}

#[test]
fn auto_behind_a_detected_pooler_prepares_nothing() {
    let db = cluster().create_database();
    let bouncer = PgBouncer::start(cluster().port(), "transaction", "");
    let (pgfleet, address) = start(
        &db,
        "naptime: 50ms\nworkers:\n  total: 2\n",
        &[("PGFLEET__DATABASE__URL", &bouncer.url(&db.name))],
    );
    pgfleet.wait_event("pooler_detected");
    ready(&pgfleet, &db, &schema_names(2));
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 7)");
    wait_for_total(&pgfleet, "schema1", 7);
    assert_eq!(prepared_statements(address), 0.0);
}

/// `pooler: none` says there is no pooler, yet one is there and loses the
/// statements: `auto` notices the first missing statement (26000), turns
/// prepared folds off, and folds that tick again unprepared; nothing fails
/// and nothing is folded twice.
#[test]
fn auto_turns_prepared_folds_off_when_a_statement_goes_missing() {
    let db = cluster().create_database();
    let bouncer = forgetful_pgbouncer();
    let schemas = schema_names(2);
    let (pgfleet, address) = start(
        &db,
        "naptime: 50ms\nworkers:\n  total: 2\ndatabase:\n  pool_size: 2\n  pooler: none\n",
        &[("PGFLEET__DATABASE__URL", &bouncer.url(&db.name))],
    );
    ready(&pgfleet, &db, &schemas);
    let off = pgfleet.wait_event("prepared_statements_off");
    assert!(
        off["error"].as_str().is_some_and(|e| e.contains("26000")),
        "{off}"
    );
    let writers = Writers::start(&db, &schemas);
    std::thread::sleep(Duration::from_secs(1));
    writers.stop();
    let (counted, committed) = ledger(&db, &schemas);
    assert_eq!(counted, committed, "total + remaining deltas != committed");
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 100000)");
    pgfleet.wait_for("a fold after prepared folds were turned off", |e| {
        e["event"] == "worker_tick"
            && e["schema"] == "schema1"
            && e["total"].as_i64().is_some_and(|t| t >= 100_000)
    });
    assert_eq!(pgfleet.events("prepared_statements_off").len(), 1);
    pgfleet.assert_no_event("worker_failed");
    assert_eq!(prepared_statements(address), 0.0);
}

#[test]
fn prepared_on_through_a_pooler_that_loses_them_fails_and_says_why() {
    let db = cluster().create_database();
    let bouncer = forgetful_pgbouncer();
    let pgfleet = Pgfleet::start_with(
        &db,
        "naptime: 50ms\nworkers:\n  total: 1\ndatabase:\n  pooler: transaction\n  prepared: \"on\"\n",
        &[("PGFLEET__DATABASE__URL", &bouncer.url(&db.name))],
    );
    let failed = pgfleet.wait_event("worker_failed");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("26000")
            && error.contains("PgBouncer before 1.21")
            && error.contains("database.prepared: auto or off"),
        "{failed}"
    );
}

/// `prepared: on` behind a pooler that keeps sessions (PgBouncer in session
/// mode, with `pooler: transaction`): the fold is prepared, and its
/// timeouts still reach the server, in the same pipelined transaction.
#[test]
fn prepared_on_behind_a_pooler_keeps_the_timeouts_and_the_invariant() {
    let db = cluster().create_database();
    let bouncer = PgBouncer::start(cluster().port(), "session", "");
    let schemas = schema_names(2);
    let (pgfleet, address) = start(
        &db,
        "naptime: 50ms\nworkers:\n  total: 2\n  vacuum_after: 0\n\
         database:\n  pool_size: 2\n  pooler: transaction\n  prepared: \"on\"\n  fold_lock_timeout: 300ms\n",
        &[("PGFLEET__DATABASE__URL", &bouncer.url(&db.name))],
    );
    ready(&pgfleet, &db, &schemas);
    let writers = Writers::start(&db, &schemas);
    std::thread::sleep(Duration::from_secs(1));
    writers.stop();
    let (counted, committed) = ledger(&db, &schemas);
    assert_eq!(counted, committed, "total + remaining deltas != committed");
    assert!(prepared_statements(address) >= 2.0);

    let mut holder = db.client();
    let mut tx = holder.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE schema1.counted IN ACCESS EXCLUSIVE MODE")
        .expect("lock");
    let skipped = pgfleet.wait_for("a prepared fold that gave up on the lock", |e| {
        e["event"] == "worker_waiting_for_lock"
            && e["error"].as_str().is_some_and(|m| m.contains("55P03"))
    });
    tx.rollback().expect("rollback");
    assert_eq!(skipped["schema"], "schema1", "{skipped}");
    pgfleet.assert_no_event("worker_failed");
}

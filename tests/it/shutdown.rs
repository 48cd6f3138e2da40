//! Termination through actor stopping (SPEC §1): SIGTERM/SIGINT stop the
//! Supervisor, which stops every worker, and the process exits 0 with
//! `service_stopped` last; a statement stuck past `shutdown.grace` is
//! cancelled on the server; a second signal exits at once.

use std::time::{Duration, Instant};

use crate::support::cluster::{cluster, TestDb};
use crate::support::pgfleet::{eventually, execute, scalar_i64, Pgfleet, PATIENCE};

fn assert_clean_stop(pgfleet: &Pgfleet, signal: &str, workers: usize) {
    let events = pgfleet.all_events();
    let last = events.last().expect("a last line");
    assert_eq!(last["event"], "service_stopped", "last line: {last}");
    assert_eq!(last["exit_code"], 0);
    assert!(events
        .iter()
        .any(|e| e["event"] == "shutdown_started" && e["signal"] == signal));
    assert_eq!(pgfleet.events("worker_stopped").len(), workers);
}

#[test]
fn sigterm_stops_every_worker_and_exits_0() {
    let db = cluster().create_database();
    let mut pgfleet = Pgfleet::start(&db, "workers:\n  total: 3\n");
    pgfleet.wait_schema_event("worker_started", "schema3");
    let status = pgfleet.stop();
    assert_eq!(status.code(), Some(0));
    assert_clean_stop(&pgfleet, "SIGTERM", 3);
}

#[test]
fn sigint_does_the_same() {
    let db = cluster().create_database();
    let mut pgfleet = Pgfleet::start(&db, "workers:\n  total: 2\n");
    pgfleet.wait_schema_event("worker_started", "schema2");
    pgfleet.signal(libc::SIGINT);
    assert_eq!(pgfleet.wait_exit(PATIENCE).code(), Some(0));
    assert_clean_stop(&pgfleet, "SIGINT", 2);
}

/// Holds an exclusive lock on schema1.counted until dropped, so that the
/// next fold blocks.
fn lock_table(db: &TestDb) -> postgres::Client {
    let mut holder = db.client();
    holder
        .batch_execute("BEGIN; LOCK TABLE schema1.counted IN ACCESS EXCLUSIVE MODE")
        .expect("lock the table");
    holder
}

fn pgfleet_waiting_on_lock(db: &TestDb) -> i64 {
    scalar_i64(
        db,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'pgfleet' AND wait_event_type = 'Lock'",
    )
}

#[test]
fn a_stuck_fold_is_cancelled_after_the_grace_period() {
    let db = cluster().create_database();
    let mut pgfleet = Pgfleet::start(
        &db,
        "workers:\n  total: 1\nshutdown:\n  grace: 1s\ndatabase:\n  fold_lock_timeout: 1m\n",
    );
    pgfleet.wait_schema_event("worker_started", "schema1");
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('total', 0), ('delta', 1)",
    );
    pgfleet.wait_for("the first fold", |e| {
        e["event"] == "worker_tick" && e["total"] == 1
    });
    // Even an idle fold reads the table, so it waits on the lock.
    let _lock = lock_table(&db);
    eventually("the fold waits on the lock", || {
        pgfleet_waiting_on_lock(&db) == 1
    });
    let skipped = pgfleet.wait_event("worker_tick_skipped");
    assert_eq!(skipped["reason"], "fold_in_flight");

    let asked = Instant::now();
    pgfleet.signal(libc::SIGTERM);
    let status = pgfleet.wait_exit(PATIENCE);
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took >= Duration::from_secs(1),
        "did not wait for the grace period: {took:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "took {took:?} for a 1s grace"
    );
    assert!(!pgfleet.events("shutdown_cancelling").is_empty());
    assert_clean_stop(&pgfleet, "SIGTERM", 1);
    eventually("the statement is cancelled on the server", || {
        pgfleet_waiting_on_lock(&db) == 0
    });
}

#[test]
fn a_second_signal_exits_at_once() {
    let db = cluster().create_database();
    let mut pgfleet = Pgfleet::start(
        &db,
        "workers:\n  total: 1\nshutdown:\n  grace: 1m\ndatabase:\n  fold_lock_timeout: 1m\n",
    );
    pgfleet.wait_schema_event("worker_started", "schema1");
    execute(&db, "INSERT INTO schema1.counted VALUES ('total', 0)");
    // Even an idle fold reads the table, so it waits on the lock.
    let _lock = lock_table(&db);
    eventually("the fold waits on the lock", || {
        pgfleet_waiting_on_lock(&db) == 1
    });
    pgfleet.signal(libc::SIGTERM);
    pgfleet.wait_event("shutdown_started");
    let asked = Instant::now();
    pgfleet.signal(libc::SIGTERM);
    let status = pgfleet.wait_exit(PATIENCE);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?}",
        asked.elapsed()
    );
    assert_eq!(status.code(), Some(1));
    let events = pgfleet.all_events();
    assert_eq!(
        events.last().expect("last line")["event"],
        "service_stopped"
    );
    assert!(events.iter().any(|e| e["event"] == "shutdown_forced"));
}

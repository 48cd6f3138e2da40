//! The Supervisor and the restart policy (SPEC §3 `restart.*`), with a
//! worker made to fail for real: a total that would overflow integer fails
//! every fold until someone fixes the row.

use std::time::Duration;

use crate::support::cluster::cluster;
use crate::support::pgfleet::{execute, Pgfleet, PATIENCE};

const OVERFLOWING: &str = "INSERT INTO schema1.counted VALUES ('total', 2147483647), ('delta', 1)";

#[test]
fn backoff_restarts_with_growing_delays_then_gives_up() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(
        &db,
        "workers:\n  total: 2\nrestart:\n  policy: backoff\n  delay: 100ms\n  multiplier: 2.0\n  max_restarts: 2\n  window: 1m\n",
    );
    pgfleet.wait_schema_event("worker_started", "schema1");
    pgfleet.wait_schema_event("worker_started", "schema2");
    execute(&db, OVERFLOWING);
    execute(&db, "INSERT INTO schema2.counted VALUES ('total', 0)");

    let given_up = pgfleet.wait_schema_event("worker_given_up", "schema1");
    assert!(
        given_up["reason"]
            .as_str()
            .expect("reason")
            .contains("max_restarts (2)"),
        "{given_up}"
    );
    let scheduled = pgfleet.events("worker_restart_scheduled");
    let plan: Vec<(u64, u64)> = scheduled
        .iter()
        .map(|e| {
            (
                e["attempt"].as_u64().expect("attempt"),
                e["delay_ms"].as_u64().expect("delay"),
            )
        })
        .collect();
    assert_eq!(plan, [(1, 100), (2, 200)]);
    let restarted: Vec<u64> = pgfleet
        .events("worker_restarted")
        .iter()
        .map(|e| e["attempt"].as_u64().expect("attempt"))
        .collect();
    assert_eq!(restarted, [1, 2]);
    assert_eq!(pgfleet.events("worker_failed").len(), 3);

    // schema2 was never disturbed.
    execute(&db, "INSERT INTO schema2.counted VALUES ('delta', 5)");
    pgfleet.wait_for("schema2 folding", |e| {
        e["event"] == "worker_tick" && e["schema"] == "schema2" && e["total"] == 5
    });
    assert!(pgfleet
        .all_events()
        .iter()
        .all(|e| e["schema"] != "schema2" || e["event"] != "worker_failed"));

    // A reload gives the given-up worker another chance.
    execute(
        &db,
        "UPDATE schema1.counted SET value = 0 WHERE type = 'total'",
    );
    let mark = pgfleet.mark();
    pgfleet.signal(libc::SIGHUP);
    pgfleet.wait_for_from(mark, "schema1 started again", |e| {
        e["event"] == "worker_started" && e["schema"] == "schema1"
    });
    pgfleet.wait_for_from(mark, "schema1 folding again", |e| {
        e["event"] == "worker_tick" && e["schema"] == "schema1" && e["total"] == 1
    });
}

#[test]
fn policy_never_gives_up_at_the_first_failure() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 1\nrestart:\n  policy: never\n");
    pgfleet.wait_schema_event("worker_started", "schema1");
    execute(&db, OVERFLOWING);
    let given_up = pgfleet.wait_schema_event("worker_given_up", "schema1");
    assert_eq!(given_up["reason"], "restart.policy is never");
    pgfleet.assert_no_event("worker_restart_scheduled");
}

#[test]
fn escalate_stops_the_service_with_exit_code_1() {
    let db = cluster().create_database();
    let mut pgfleet = Pgfleet::start(
        &db,
        "workers:\n  total: 2\nrestart:\n  policy: never\n  escalate: true\n",
    );
    pgfleet.wait_schema_event("worker_started", "schema1");
    execute(&db, OVERFLOWING);
    let status = pgfleet.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(1));
    let events = pgfleet.all_events();
    let last = events.last().expect("a last line");
    assert_eq!(last["event"], "service_stopped");
    assert_eq!(last["exit_code"], 1);
    assert!(events
        .iter()
        .any(|e| e["event"] == "shutdown_started" && e["signal"] == "escalation"));
}

/// `restart.*` changes on reload: the policy in force when a worker fails
/// is the one that decides.
#[test]
fn a_reloaded_restart_policy_decides_the_next_failure() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 1\nrestart:\n  policy: backoff\n");
    pgfleet.wait_schema_event("worker_started", "schema1");
    pgfleet.reload("workers:\n  total: 1\nrestart:\n  policy: never\n");
    let reloaded = pgfleet.wait_event("config_reloaded");
    assert!(
        reloaded["changes"]
            .as_str()
            .expect("changes")
            .contains("restart.policy"),
        "{reloaded}"
    );
    execute(&db, OVERFLOWING);
    let given_up = pgfleet.wait_schema_event("worker_given_up", "schema1");
    assert_eq!(given_up["reason"], "restart.policy is never");
    pgfleet.assert_no_event("worker_restart_scheduled");
}

/// A reload is the operator's "I fixed it": a worker waiting out its
/// backoff starts again at once (SPEC §11), not after `restart.delay`, and
/// folds as soon as it has initialised (SPEC §2: a reload folds at once),
/// not at its slot of a long naptime.
#[test]
fn a_reload_restarts_a_worker_waiting_in_backoff_at_once() {
    let db = cluster().create_database();
    // A long naptime: the fold after the reload must not wait for the
    // worker's slot either.
    let yaml = "naptime: 5m\nworkers:\n  schemas: [tenant]\n  create_schema: false\n\
                restart:\n  delay: 5m\n  jitter: 0.0\n";
    let pgfleet = Pgfleet::start(&db, yaml);
    let failed = pgfleet.wait_schema_event("worker_failed", "tenant");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not exist")),
        "{failed}"
    );
    let scheduled = pgfleet.wait_schema_event("worker_restart_scheduled", "tenant");
    assert!(
        scheduled["delay_ms"].as_u64() >= Some(60_000),
        "{scheduled}"
    );
    // The operator fixes the cause, then reloads.
    execute(
        &db,
        "CREATE SCHEMA tenant CREATE TABLE counted (type text, value integer); \
         INSERT INTO tenant.counted VALUES ('total', 0), ('delta', 4)",
    );
    let mark = pgfleet.mark();
    let asked = std::time::Instant::now();
    pgfleet.reload(yaml);
    let (_, restarted) = pgfleet.wait_for_from(mark, "the restart the reload brings", |e| {
        e["event"] == "worker_restarted" && e["schema"] == "tenant"
    });
    assert_eq!(restarted["reason"], "reload", "{restarted}");
    assert_eq!(restarted["attempt"], 1, "{restarted}");
    pgfleet.wait_for_from(mark, "the fold after the fix", |e| {
        e["event"] == "worker_tick" && e["schema"] == "tenant" && e["total"] == 4
    });
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "folded {:?} after the reload",
        asked.elapsed()
    );
    // Any restart before five minutes is the reload's.
    eprintln!(
        "MEASURED a worker in a 5 min backoff folded {:?} after the reload",
        asked.elapsed()
    );
}

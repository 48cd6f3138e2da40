//! What an operator greps for (SPEC §5): JSON with the documented fields,
//! text with the same fields, and never a password.

use crate::support::cluster::cluster;
use crate::support::pgfleet::{eventually, execute, Pgfleet, PATIENCE};

#[test]
fn json_lines_carry_the_documented_fields() {
    let db = cluster().create_database();
    let mut pgfleet = Pgfleet::start(&db, "workers:\n  total: 2\n");
    let started = pgfleet.wait_event("service_started");
    assert_eq!(started["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(started["workers"], 2);
    let worker = pgfleet.wait_schema_event("worker_started", "schema1");
    assert_eq!(worker["worker"], "worker 1");
    pgfleet.stop();
    for event in pgfleet.all_events() {
        for field in ["ts", "level", "msg", "event"] {
            assert!(event.get(field).is_some(), "{field} missing in {event}");
        }
    }
    for line in pgfleet.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(&line).is_ok(),
            "not JSON: {line}"
        );
    }
}

#[test]
fn text_lines_carry_the_same_fields() {
    let db = cluster().create_database();
    let mut pgfleet = Pgfleet::start_with(
        &db,
        "workers:\n  total: 1\n",
        &[("PGFLEET__LOG__FORMAT", "text")],
    );
    eventually("a worker_started line", || {
        pgfleet
            .lines()
            .iter()
            .any(|l| l.contains("event: worker_started"))
    });
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('total', 0), ('delta', 2)",
    );
    eventually("a worker_tick line", || {
        pgfleet
            .lines()
            .iter()
            .any(|l| l.contains("event: worker_tick"))
    });
    pgfleet.signal(libc::SIGTERM);
    pgfleet.wait_exit(PATIENCE);
    let lines = pgfleet.lines();
    let tick = lines
        .iter()
        .find(|l| l.contains("event: worker_tick"))
        .expect("tick line");
    for part in [
        "INFO",
        "worker 1: count in schema1.counted is now 2",
        "worker: worker 1",
        "schema: schema1",
        "total: 2",
        "folded: 1",
    ] {
        assert!(tick.contains(part), "{part:?} missing in {tick}");
    }
    assert!(
        lines
            .last()
            .expect("last line")
            .contains("event: service_stopped"),
        "{lines:?}"
    );
}

/// Everything a debug-level run prints (start, folds, failures, a reload
/// that changes the URL, shutdown) is free of the password.
#[test]
fn the_password_never_reaches_the_log() {
    const SECRET: &str = "hunter2-s3cret";
    let db = cluster().create_database();
    // The test cluster trusts every local connection, so any password works.
    let url = db
        .url()
        .replace("postgres@", &format!("postgres:{SECRET}@"));
    // The URL lives in the file (an empty variable does not override it),
    // so that the reload below changes it.
    let mut pgfleet = Pgfleet::start_with(
        &db,
        &format!("workers:\n  total: 2\nlog:\n  level: trace\nrestart:\n  policy: never\ndatabase:\n  url: \"{url}\"\n"),
        &[("PGFLEET__DATABASE__URL", "")],
    );
    pgfleet.wait_schema_event("worker_started", "schema1");
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('total', 2147483647), ('delta', 1)",
    );
    pgfleet.wait_schema_event("worker_failed", "schema1");
    pgfleet.reload(&format!(
        "workers:\n  total: 2\nlog:\n  level: trace\ndatabase:\n  url: \"{}\"\n",
        url.replace(SECRET, "other-secret")
    ));
    let reloaded = pgfleet.wait_event("config_reloaded");
    assert!(
        reloaded["changes"]
            .as_str()
            .expect("changes")
            .contains("database.url"),
        "{reloaded}"
    );
    pgfleet.reload("workers:\n  total: []\n");
    pgfleet.wait_event("config_rejected");
    pgfleet.stop();
    let lines = pgfleet.lines();
    assert!(
        lines.len() > 10,
        "too little logged to prove anything: {lines:?}"
    );
    for line in lines {
        assert!(
            !line.contains(SECRET) && !line.contains("other-secret"),
            "password logged: {line}"
        );
    }
}

//! SIGHUP (SPEC §3): every layer re-read, validated, applied live, and a
//! fold at once; a bad config rejected while the old one keeps running.

use std::thread;
use std::time::Duration;

use crate::support::cluster::cluster;
use crate::support::pgfleet::{eventually, execute, scalar_i64, Pgfleet};

#[test]
fn a_reload_folds_at_once_and_applies_the_new_naptime() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "naptime: 1h\nworkers:\n  total: 1\n");
    pgfleet.wait_schema_event("worker_started", "schema1");
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('total', 0), ('delta', 1)",
    );
    thread::sleep(Duration::from_millis(500));
    assert!(
        pgfleet.events("worker_tick").is_empty(),
        "folded before its hour-long naptime"
    );

    pgfleet.signal(libc::SIGHUP);
    let reloaded = pgfleet.wait_event("config_reloaded");
    assert_eq!(reloaded["changes"], "none");
    pgfleet.wait_for("the fold on reload", |e| {
        e["event"] == "worker_tick" && e["total"] == 1
    });

    let mark = pgfleet.mark();
    pgfleet.reload("naptime: 100ms\nworkers:\n  total: 1\n");
    let (mark, reloaded) = pgfleet.wait_for_from(mark, "the second reload", |e| {
        e["event"] == "config_reloaded"
    });
    assert!(
        reloaded["changes"]
            .as_str()
            .expect("changes")
            .contains("naptime: \"1h\" -> \"100ms\""),
        "{reloaded}"
    );
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 1)");
    pgfleet.wait_for_from(mark, "a fold at the new naptime", |e| {
        e["event"] == "worker_tick" && e["total"] == 2
    });
}

#[test]
fn a_reload_starts_and_stops_workers() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 2\n");
    pgfleet.wait_schema_event("worker_started", "schema2");
    pgfleet.reload("workers:\n  total: 4\n");
    pgfleet.wait_schema_event("worker_started", "schema3");
    pgfleet.wait_schema_event("worker_started", "schema4");
    pgfleet.reload("workers:\n  total: 1\n");
    for schema in ["schema2", "schema3", "schema4"] {
        pgfleet.wait_schema_event("worker_stopped", schema);
    }
    assert_eq!(
        pgfleet.events("worker_stopped").len(),
        3,
        "schema1 must keep running"
    );
    assert_eq!(
        pgfleet.events("worker_started").len(),
        4,
        "no worker started twice"
    );
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('total', 0), ('delta', 2)",
    );
    pgfleet.wait_for("schema1 still folding", |e| {
        e["event"] == "worker_tick" && e["total"] == 2
    });
}

#[test]
fn a_reload_changes_the_log_level() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 1\n");
    pgfleet.wait_schema_event("worker_started", "schema1");
    execute(&db, "INSERT INTO schema1.counted VALUES ('total', 3)");
    pgfleet.wait_for("the first tick", |e| e["event"] == "worker_tick");
    thread::sleep(Duration::from_millis(600));
    assert!(
        pgfleet.all_events().iter().all(|e| e["level"] != "debug"),
        "debug lines at level info"
    );
    pgfleet.reload("workers:\n  total: 1\nlog:\n  level: debug\n");
    pgfleet.wait_for("a debug tick", |e| {
        e["event"] == "worker_tick" && e["level"] == "debug"
    });
}

#[test]
fn a_reload_moves_workers_to_a_new_pool() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 2\n");
    pgfleet.wait_schema_event("worker_started", "schema2");
    let sessions = |name: &str| {
        scalar_i64(
            &db,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = '{name}'"
            ),
        )
    };
    eventually("pgfleet's sessions show in pg_stat_activity", || {
        sessions("pgfleet") > 0
    });
    pgfleet.reload("workers:\n  total: 2\ndatabase:\n  application_name: pgfleet-blue\n");
    eventually("the new pool connects", || sessions("pgfleet-blue") > 0);
    eventually("the old pool drains", || sessions("pgfleet") == 0);
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('total', 0), ('delta', 4)",
    );
    pgfleet.wait_for("folding through the new pool", |e| {
        e["event"] == "worker_tick" && e["total"] == 4
    });
}

#[test]
fn a_bad_reload_is_rejected_and_the_old_config_stays() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 1\n");
    pgfleet.wait_schema_event("worker_started", "schema1");
    pgfleet.reload("workers:\n  total: 1\n  tabel: other\nnaptime: 1h\n");
    let rejected = pgfleet.wait_event("config_rejected");
    let error = rejected["error"].as_str().expect("error");
    assert!(
        error.contains("workers.tabel") && error.contains("workers.table"),
        "{error}"
    );
    assert!(
        error.contains(
            pgfleet
                .config
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("name")
        ),
        "{error}"
    );
    assert_eq!(rejected["level"], "error");
    // Still the old naptime (200ms), not the rejected hour.
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('total', 0), ('delta', 9)",
    );
    pgfleet.wait_for("folding on the old config", |e| {
        e["event"] == "worker_tick" && e["total"] == 9
    });
    assert!(pgfleet.events("config_reloaded").is_empty());
}

//! SIGHUP (SPEC §3): every layer re-read, validated, applied live, and a
//! fold at once; a bad config rejected while the old one keeps running.

use std::thread;
use std::time::Duration;

use crate::support::cluster::cluster;
use crate::support::pgfleet::{
    eventually, execute, ready, scalar_i64, schema_names, seconds_of, Pgfleet,
};

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

/// worker_spi folds every worker at once on SIGHUP; pgfleet spreads that
/// fold over a second (or the naptime, if shorter), so a big fleet does not
/// ask the pool for every connection in the same millisecond.
///
/// Measured on the second reload: by then every schema has folded once,
/// as one whose first slot (a hash of its name, within the hour) passes
/// while the test sets up has on a slow machine, and a fold that finds
/// nothing to do says so only at debug level.
#[test]
fn the_fold_after_a_reload_is_spread_over_a_second() {
    let db = cluster().create_database();
    let schemas = schema_names(40);
    let pgfleet = Pgfleet::start(
        &db,
        "naptime: 1h
workers:
  total: 40
log:
  level: debug
",
    );
    ready(&pgfleet, &db, &schemas);
    folds_after_a_reload(&pgfleet, &schemas);
    let times = folds_after_a_reload(&pgfleet, &schemas);
    let first = times.iter().cloned().fold(f64::MAX, f64::min);
    let last = times.iter().cloned().fold(f64::MIN, f64::max);
    // 40 offsets spread over a second: the first and last are far apart,
    // and all within the window (plus the time the folds take).
    assert!(last - first > 0.5, "folded within {:.3} s", last - first);
    assert!(last - first < 1.5, "folded over {:.3} s", last - first);
}

/// Sends SIGHUP and returns when each of `schemas` folded next (in
/// seconds of the day), once all have.
fn folds_after_a_reload(pgfleet: &Pgfleet, schemas: &[String]) -> Vec<f64> {
    let mark = pgfleet.mark();
    pgfleet.signal(libc::SIGHUP);
    let (mark, _) = pgfleet.wait_for_from(mark, "the reload", |e| e["event"] == "config_reloaded");
    let mut folded = std::collections::BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while folded.len() < schemas.len() {
        if std::time::Instant::now() >= deadline {
            let missing: Vec<&String> = schemas
                .iter()
                .filter(|s| !folded.contains_key(s.as_str()))
                .collect();
            panic!(
                "{missing:?} did not fold within 10 s of the reload; log:\n{}",
                pgfleet.lines().join("\n")
            );
        }
        for event in pgfleet.all_events().iter().skip(mark) {
            if let ("worker_tick", Some(schema)) = (
                event["event"].as_str().unwrap_or_default(),
                event["schema"].as_str(),
            ) {
                let at = event["ts"].as_str().unwrap_or_default().to_owned();
                folded.entry(schema.to_owned()).or_insert(at);
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    folded.values().map(|ts| seconds_of(ts)).collect()
}

/// A reload reaches a big fleet in batches (the Supervisor lets due
/// ticks run between them): every worker is told, and two reloads in
/// quick succession leave every worker on the second one's settings.
#[test]
fn a_reload_reaches_every_worker_of_a_big_fleet_and_the_last_one_wins() {
    let db = cluster().create_database();
    let count = 300;
    let schemas = schema_names(count);
    let config = |naptime: &str| {
        format!(
            "naptime: {naptime}\nworkers:\n  total: {count}\n  vacuum_after: 0\n\
             http:\n  per_schema_metrics_max: {count}\n"
        )
    };
    let (pgfleet, address) = crate::http::start(&db, &config("1h"), &[]);
    ready(&pgfleet, &db, &schemas);
    let mark = pgfleet.mark();
    pgfleet.reload(&config("2h"));
    pgfleet.reload(&config("400ms"));
    pgfleet.wait_for_from(mark, "the second reload", |e| {
        e["event"] == "config_reloaded"
            && e["changes"].as_str().is_some_and(|c| c.contains("400ms"))
    });
    let folds = || {
        let samples = crate::http::scrape(address);
        schemas
            .iter()
            .map(|s| {
                crate::http::value(&samples, "pgfleet_folds_total", &[("schema", s)]).unwrap_or(0.0)
            })
            .collect::<Vec<f64>>()
    };
    // At naptime 400ms every worker folds again and again; on a 1 h or
    // 2 h naptime, once more at most (the reload's fold).
    let before = folds();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        thread::sleep(Duration::from_millis(500));
        let now = folds();
        let behind = before
            .iter()
            .zip(&now)
            .filter(|(b, n)| **n < **b + 3.0)
            .count();
        if behind == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{behind} of {count} schemas did not fold 3 times after the second reload"
        );
    }
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

/// A schema that leaves the configuration and comes back gets a new
/// generation: a late report of its old worker is never taken for one of
/// the new worker's.
#[test]
fn a_schema_that_comes_back_gets_a_new_generation() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 2\n");
    let first = pgfleet.wait_schema_event("worker_started", "schema2");
    assert_eq!(first["generation"], 1, "{first}");
    pgfleet.reload("workers:\n  total: 1\n");
    pgfleet.wait_schema_event("worker_stopped", "schema2");
    let mark = pgfleet.mark();
    pgfleet.reload("workers:\n  total: 2\n");
    let (_, again) = pgfleet.wait_for_from(mark, "schema2 started again", |e| {
        e["event"] == "worker_started" && e["schema"] == "schema2"
    });
    assert_eq!(again["generation"], 2, "{again}");
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
    pgfleet.assert_no_event("config_reloaded");
}

/// A SIGHUP that arrives after the configuration was read but before the
/// signal handler is installed (systemd's `ExecReload` right after start)
/// is applied once the handler is there, not lost. A test hook widens the
/// window to 1.5 s.
#[test]
fn a_reload_during_start_up_is_not_lost() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start_with(
        &db,
        "workers:\n  total: 1\n",
        &[("TEST_HOOK_PAUSE_BEFORE_SIGNALS_MS", "1500")],
    );
    pgfleet.wait_event("service_started");
    pgfleet.reload("workers:\n  total: 2\n");
    pgfleet.wait_schema_event("worker_started", "schema2");
    pgfleet.wait_reloaded_with("workers.total: 1 -> 2");
}

/// Reading the configuration from a hung mount (here: a
/// `database.password_file` that became a FIFO nobody writes, whose open
/// blocks) freezes nothing: folds go on, the reload is rejected after
/// `READ_WITHIN` (5 s), and SIGTERM stops the service at once.
#[test]
fn a_hung_configuration_read_freezes_nothing() {
    let db = cluster().create_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("password");
    std::fs::write(&secret, "unused-by-trust-auth\n").expect("write secret");
    let mut pgfleet = Pgfleet::start(
        &db,
        &format!(
            "workers:\n  total: 1\ndatabase:\n  password_file: {}\n",
            secret.display()
        ),
    );
    ready(&pgfleet, &db, &schema_names(1));
    std::fs::remove_file(&secret).expect("remove the secret");
    let fifo = std::ffi::CString::new(secret.to_str().expect("utf-8 path")).expect("no NUL");
    // SAFETY: a valid C string; mkfifo touches no memory of ours.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
    let mark = pgfleet.mark();
    pgfleet.signal(libc::SIGHUP);
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 7)");
    pgfleet.wait_for_from(mark, "a fold while the read hangs", |e| {
        e["event"] == "worker_tick" && e["total"] == 7
    });
    let rejected = pgfleet.wait_for_from(mark, "the hung read rejected", |e| {
        e["event"] == "config_rejected"
    });
    assert!(
        rejected.1["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not finish within")),
        "{}",
        rejected.1
    );
    let asked = std::time::Instant::now();
    let status = pgfleet.stop();
    assert!(status.success(), "{status}");
    assert!(asked.elapsed() < std::time::Duration::from_secs(3));
}

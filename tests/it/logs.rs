//! What an operator greps for (SPEC §5): JSON with the documented fields,
//! text with the same fields, and never a password.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cluster::{cluster, TestDb};
use crate::support::pgfleet::{binary, eventually, execute, ConfigFile, Pgfleet, PATIENCE};

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

/// A big fleet's log: `fold_lines: debug` moves worker_spi's line per
/// fold to debug, and `fleet_summary` says what the fleet did instead.
#[test]
fn a_fleet_summary_replaces_the_line_per_fold() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(
        &db,
        "naptime: 100ms\nworkers:\n  total: 2\nlog:\n  fold_lines: debug\n  summary_every: 1s\n",
    );
    crate::support::pgfleet::ready(&pgfleet, &db, &crate::support::pgfleet::schema_names(2));
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('delta', 3), ('delta', 4); \
         INSERT INTO schema2.counted VALUES ('delta', 5)",
    );
    let summary = pgfleet.wait_for("a summary with the three rows", |e| {
        e["event"] == "fleet_summary" && e["rows"].as_u64() >= Some(3)
    });
    assert_eq!(summary["rows"], 3, "{summary}");
    assert_eq!(summary["workers"], 2, "{summary}");
    assert_eq!(summary["running"], 2, "{summary}");
    assert_eq!(summary["failures"], 0, "{summary}");
    assert!(summary["folds"].as_u64() >= Some(2), "{summary}");
    assert!(summary["lateness_p99_ms"].is_u64(), "{summary}");
    pgfleet.assert_no_event("worker_tick");
    // The next summary counts from this one.
    let mark = pgfleet.mark();
    let (_, next) =
        pgfleet.wait_for_from(mark, "the next summary", |e| e["event"] == "fleet_summary");
    assert_eq!(next["rows"], 0, "{next}");
}

/// The default volume, as docs/operations.md states it: a small fleet
/// logs worker_spi's line for each worker's first fold (its starting
/// count) and for each fold that changed a total, none for the idle folds
/// in between; everything else is a state change or a warning.
#[test]
fn a_small_fleet_logs_a_line_per_changed_total_and_nothing_when_idle() {
    let db = cluster().create_database();
    let schemas = crate::support::pgfleet::schema_names(3);
    let pgfleet = Pgfleet::start(&db, "naptime: 100ms\nworkers:\n  total: 3\n");
    crate::support::pgfleet::ready(&pgfleet, &db, &schemas);
    for schema in &schemas {
        crate::http::wait_for_total(&pgfleet, schema, 0);
    }
    // Thirty idle ticks a schema, then one delta in schema1.
    std::thread::sleep(Duration::from_secs(3));
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 3)");
    crate::http::wait_for_total(&pgfleet, "schema1", 3);
    std::thread::sleep(Duration::from_millis(500));
    let ticks = pgfleet.events("worker_tick");
    let by_schema = |schema: &str| ticks.iter().filter(|e| e["schema"] == schema).count();
    assert_eq!(
        (
            by_schema("schema1"),
            by_schema("schema2"),
            by_schema("schema3")
        ),
        (2, 1, 1),
        "{ticks:#?}"
    );
    let other: Vec<_> = pgfleet
        .all_events()
        .into_iter()
        .filter(|e| e["event"] != "worker_tick" && e["level"] != "info")
        .collect();
    assert!(other.is_empty(), "warnings in a quiet run: {other:#?}");
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
            .any(|l| l.contains("event=worker_started"))
    });
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('total', 0), ('delta', 2)",
    );
    eventually("a worker_tick line", || {
        pgfleet
            .lines()
            .iter()
            .any(|l| l.contains("event=worker_tick"))
    });
    pgfleet.signal(libc::SIGTERM);
    pgfleet.wait_exit(PATIENCE);
    let lines = pgfleet.lines();
    let tick = lines
        .iter()
        .find(|l| l.contains("event=worker_tick"))
        .expect("tick line");
    // 2026-11-26T19:39:44.766Z INFO  worker 1: count in … | event=worker_tick total=2 folded=1
    let (ts, rest) = tick.split_once(' ').expect("a timestamp first");
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "not an ISO 8601 time in UTC: {tick}"
    );
    assert!(
        rest.starts_with("INFO  worker 1: count in schema1.counted is now 2 | event=worker_tick"),
        "{tick}"
    );
    for part in ["total=2", "folded=1"] {
        assert!(tick.contains(part), "{part:?} missing in {tick}");
    }
    assert!(
        !tick.contains("worker=") && !tick.contains("schema="),
        "fields the message already says are repeated: {tick}"
    );
    let failed_lines: Vec<&String> = lines.iter().filter(|l| l.contains(" ERRO ")).collect();
    assert!(
        failed_lines.is_empty(),
        "abbreviated level names: {failed_lines:?}"
    );
    assert!(
        lines
            .last()
            .expect("last line")
            .contains("event=service_stopped"),
        "{lines:?}"
    );
}

/// pgfleet with its stderr given to the test as is: closed or never read.
fn spawn_raw(db: &TestDb, yaml: &str) -> (Child, ConfigFile) {
    let config = ConfigFile::new(yaml);
    let child = Command::new(binary())
        .arg("--config")
        .arg(&config.path)
        .env("PGFLEET__DATABASE__URL", db.url())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgfleet");
    (child, config)
}

/// Folding goes on: a delta inserted now is folded.
fn folds_go_on(db: &TestDb, expected_total: i64) {
    execute(db, "INSERT INTO schema1.counted VALUES ('delta', 1)");
    eventually(&format!("the total reaches {expected_total}"), || {
        db.client()
            .query_one(
                "SELECT coalesce(sum(value), 0)::int8 FROM schema1.counted WHERE type = 'total'",
                &[],
            )
            .is_ok_and(|row| row.get::<_, i64>(0) == expected_total)
    });
}

/// SIGTERM ends the process within `shutdown.grace` + 2 s, with exit 0.
fn stops_in_time(child: &mut Child, grace: Duration) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let asked = Instant::now();
    let deadline = grace + Duration::from_secs(2);
    loop {
        if let Some(status) = child.try_wait().expect("poll") {
            assert!(status.success(), "exit {status}");
            eprintln!(
                "MEASURED log output gone or stalled: exit 0 {} ms after SIGTERM",
                asked.elapsed().as_millis()
            );
            return;
        }
        assert!(
            asked.elapsed() < deadline,
            "no exit within {deadline:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn schema_ready(db: &TestDb) {
    eventually("schema1.counted exists", || {
        db.client()
            .query_one("SELECT to_regclass('schema1.counted') IS NOT NULL", &[])
            .is_ok_and(|row| row.get::<_, bool>(0))
    });
    execute(db, "INSERT INTO schema1.counted VALUES ('total', 0)");
}

/// Lots of lines (trace, with tokio-postgres's own), fast ticks, no HTTP.
const NOISY: &str = "naptime: 50ms\nworkers:\n  total: 10\nlog:\n  level: trace\nshutdown:\n  grace: 1s\nhttp:\n  listen: \"\"\n";

/// A log reader that went away (a dead log shipper, a closed `| tee`):
/// every write fails, and pgfleet folds on and stops cleanly.
#[test]
fn a_closed_log_reader_stops_nothing() {
    folds_go_on_whatever_the_log_reader(false);
}

/// A log reader that never reads: the pipe fills, writes block, and the
/// actors do not notice.
#[test]
fn a_stalled_log_reader_stops_nothing() {
    folds_go_on_whatever_the_log_reader(true);
}

/// With stderr's read end closed, or kept open and never read: deltas are
/// folded before and after far more than a pipe's 64 KiB was logged, and
/// SIGTERM stops the service in time.
fn folds_go_on_whatever_the_log_reader(keep_the_reader: bool) {
    let db = cluster().create_database();
    let (mut child, _config) = spawn_raw(&db, NOISY);
    let reader = child.stderr.take();
    let _never_read = if keep_the_reader {
        reader
    } else {
        drop(reader);
        None
    };
    schema_ready(&db);
    folds_go_on(&db, 1);
    std::thread::sleep(Duration::from_millis(500));
    folds_go_on(&db, 2);
    stops_in_time(&mut child, Duration::from_secs(1));
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

/// The libraries' own `log` records (tokio-postgres here) reach the same
/// output, at debug, with their `target`; at info they are not there.
#[test]
fn library_log_records_appear_at_debug() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 1\nlog:\n  level: debug\n");
    let record = pgfleet.wait_for("a tokio-postgres record", |e| {
        e["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("tokio_postgres"))
    });
    assert_eq!(record["level"], "debug", "{record}");
    let quiet = Pgfleet::start(&db, "workers:\n  total: 1\n");
    quiet.wait_schema_event("worker_started", "schema1");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        quiet.all_events().iter().all(|e| e.get("target").is_none()),
        "library records at info"
    );
}

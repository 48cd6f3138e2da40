use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::serial;
use crate::support::cluster::{cluster, TestDb};
use crate::support::pgfleet::{eventually, execute, ready, schema_names, Pgfleet};
use crate::support::proxy::{Mode, Proxy};
use crate::support::writers::{ledger, Writers};

const NAPTIME_MS: u64 = 200;
const RESTART_DELAY_MS: u64 = 500;

fn config(schemas: usize, extra: &str) -> String {
    format!("naptime: {NAPTIME_MS}ms\nworkers:\n  total: {schemas}\nrestart:\n  delay: {RESTART_DELAY_MS}ms\n{extra}")
}

/// Stops the writers, waits until every delta is folded, and checks the
/// invariant; returns the number of committed deltas.
fn settle(pgfleet: &Pgfleet, db: &TestDb, writers: Writers, n: usize) -> i64 {
    let runs = writers.stop();
    assert!(runs > 0);
    let names = schema_names(n);
    let (counted, committed) = ledger(db, &names);
    assert_eq!(
        counted, committed,
        "total + remaining deltas != committed deltas"
    );
    eventually("every delta is folded", || deltas_left(db, &names) == 0);
    assert_eq!(ledger(db, &names), (committed, committed));
    pgfleet.assert_no_event("worker_given_up");
    committed
}

/// The delta rows left in `names` (1 for a schema that cannot be read).
fn deltas_left(db: &TestDb, names: &[String]) -> i64 {
    names
        .iter()
        .map(|s| {
            db.client()
                .query_one(
                    &format!("SELECT count(*) FROM {s}.counted WHERE type = 'delta'"),
                    &[],
                )
                .map_or(1, |row| row.get::<_, i64>(0))
        })
        .sum()
}

/// The first fold that folded something after event index `mark`.
fn next_fold(pgfleet: &Pgfleet, mark: usize) {
    pgfleet.wait_for_from(mark, "a fold", |e| {
        e["event"] == "worker_tick" && e["folded"].as_i64() > Some(0)
    });
}

fn restart_under_load(mode: &str) {
    let _serial = serial();
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, &config(4, ""));
    ready(&pgfleet, &db, &schema_names(4));
    let writers = Writers::start(&db, &schema_names(4));
    thread::sleep(Duration::from_secs(1));

    let output = cluster().pg_ctl(&["restart", "-m", mode, "-w"]);
    assert!(
        output.status.success(),
        "pg_ctl restart: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let back = Instant::now();
    let mark = pgfleet.mark();
    next_fold(&pgfleet, mark);
    let recovered = back.elapsed();
    thread::sleep(Duration::from_secs(1));
    let committed = settle(&pgfleet, &db, writers, 4);
    let failures = pgfleet.events("worker_failed").len();
    eprintln!(
        "MEASURED restart -m {mode}: first fold {} ms after the database was back; \
         {committed} deltas committed, {committed} folded; {failures} worker failures",
        recovered.as_millis()
    );
    // SPEC: folding resumes within restart.delay + naptime (plus a second
    // of slack for a loaded CI machine).
    let bound = Duration::from_millis(RESTART_DELAY_MS + NAPTIME_MS + 1000);
    assert!(
        recovered < bound,
        "first fold {recovered:?} after the restart"
    );
}

#[test]
fn database_restart_fast_under_write_load() {
    restart_under_load("fast");
}

#[test]
fn database_restart_immediate_under_write_load() {
    restart_under_load("immediate");
}

#[test]
fn database_down_at_start() {
    let _serial = serial();
    let db = cluster().create_database();
    let proxy = Proxy::start(cluster().port(), Mode::Refuse);
    let pgfleet = Pgfleet::start_with(
        &db,
        &config(3, ""),
        &[("PGFLEET__DATABASE__URL", &proxy.url(&db.name))],
    );
    let lost = pgfleet.wait_event("database_lost");
    assert!(
        lost["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{lost}"
    );
    let start = Instant::now();
    let before = proxy.accepted();
    thread::sleep(Duration::from_secs(3));
    let attempts = proxy.accepted() - before;
    let per_second = attempts as f64 / start.elapsed().as_secs_f64();
    pgfleet.assert_no_event("worker_started");
    // Probes double from 250 ms up to restart.delay (500 ms): about 2 a
    // second, where every worker on its own would make 15 (3 workers every
    // 200 ms) and bb8's own retries more.
    assert!(
        (1..=10).contains(&attempts),
        "{attempts} connection attempts in 3 s"
    );

    proxy.set_mode(Mode::Forward);
    let up = Instant::now();
    for schema in schema_names(3) {
        pgfleet.wait_schema_event("worker_started", &schema);
    }
    let started = up.elapsed();
    let back = pgfleet.wait_event("database_back");
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('total', 0), ('delta', 5)",
    );
    pgfleet.wait_for("the fold", |e| {
        e["event"] == "worker_tick" && e["total"] == 5
    });
    eprintln!(
        "MEASURED database down at start: {attempts} connection attempts in 3 s ({per_second:.1}/s) \
         while down; workers started {} ms after it came up; database_back after {} ms down",
        started.as_millis(),
        back["down_ms"]
    );
    assert!(
        started < Duration::from_millis(RESTART_DELAY_MS + NAPTIME_MS + 1000),
        "{started:?}"
    );
    pgfleet.assert_no_event("worker_failed");
}

#[test]
fn backends_terminated_under_write_load() {
    let _serial = serial();
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, &config(3, ""));
    ready(&pgfleet, &db, &schema_names(3));
    let writers = Writers::start(&db, &schema_names(3));
    let mut terminated = 0;
    for _ in 0..5 {
        thread::sleep(Duration::from_millis(400));
        let rows = db
            .client()
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'pgfleet' AND datname = current_database()",
                &[],
            )
            .expect("terminate");
        terminated += rows.len();
    }
    let mark = pgfleet.mark();
    let last_kill = Instant::now();
    next_fold(&pgfleet, mark);
    let recovered = last_kill.elapsed();
    let committed = settle(&pgfleet, &db, writers, 3);
    let failures = pgfleet.events("worker_failed").len();
    eprintln!(
        "MEASURED pg_terminate_backend: {terminated} backends killed in 5 rounds; next fold {} ms after \
         the last round; {committed} deltas committed and folded; {failures} worker failures",
        recovered.as_millis()
    );
    assert!(terminated >= 5, "only {terminated} pgfleet backends found");
    assert_eq!(failures, 0, "{:?}", pgfleet.events("worker_failed"));
    // Each terminated connection was that connection's problem: discarded
    // and retried, while the database was fine all along.
    pgfleet.assert_no_event("database_lost");
}

/// A server that accepts and never answers: no hang, recovery when it
/// answers again, and shutdown in time while it does not.
#[test]
fn stalled_server() {
    let _serial = serial();
    let db = cluster().create_database();
    let proxy = Proxy::start(cluster().port(), Mode::Forward);
    let extra =
        "database:\n  statement_timeout: 1s\n  connect_timeout: 500ms\nshutdown:\n  grace: 1s\n";
    let mut pgfleet = Pgfleet::start_with(
        &db,
        &config(2, extra),
        &[("PGFLEET__DATABASE__URL", &proxy.url(&db.name))],
    );
    ready(&pgfleet, &db, &schema_names(2));

    proxy.set_mode(Mode::Stall);
    let stalled = Instant::now();
    pgfleet.wait_event("database_lost");
    let noticed = stalled.elapsed();
    proxy.set_mode(Mode::Forward);
    let resumed = Instant::now();
    let mark = pgfleet.mark();
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 3)");
    pgfleet.wait_for_from(mark, "a fold after the stall", |e| {
        e["event"] == "worker_tick" && e["total"] == 3
    });
    let recovered = resumed.elapsed();

    proxy.set_mode(Mode::Stall);
    thread::sleep(Duration::from_millis(700));
    let asked = Instant::now();
    pgfleet.signal(libc::SIGTERM);
    let status = pgfleet.wait_exit(Duration::from_secs(15));
    let stopped = asked.elapsed();
    eprintln!(
        "MEASURED stalled server: noticed after {} ms (statement_timeout 1s + connect_timeout 500ms); \
         folding {} ms after it answered again; SIGTERM while stalled: exit {:?} after {} ms",
        noticed.as_millis(),
        recovered.as_millis(),
        status.code(),
        stopped.as_millis()
    );
    assert_eq!(status.code(), Some(0));
    assert!(
        stopped < Duration::from_secs(5),
        "shutdown took {stopped:?} with grace 1s"
    );
    assert!(noticed < Duration::from_secs(4), "{noticed:?}");
}

/// The whole server paused with SIGSTOP (postmaster and backends), then
/// resumed with SIGCONT.
#[test]
fn server_paused_with_sigstop() {
    let _serial = serial();
    let db = cluster().create_database();
    let extra = "database:\n  statement_timeout: 1s\n  connect_timeout: 500ms\n";
    let pgfleet = Pgfleet::start(&db, &config(2, extra));
    ready(&pgfleet, &db, &schema_names(2));
    let signal = server_signaller();
    signal("STOP");
    let paused = Instant::now();
    pgfleet.wait_event("database_lost");
    let noticed = paused.elapsed();
    thread::sleep(Duration::from_secs(1));
    signal("CONT");
    let resumed = Instant::now();
    let mark = pgfleet.mark();
    execute(&db, "INSERT INTO schema2.counted VALUES ('delta', 4)");
    pgfleet.wait_for_from(mark, "a fold after SIGCONT", |e| {
        e["event"] == "worker_tick" && e["total"] == 4
    });
    eprintln!(
        "MEASURED SIGSTOP: noticed after {} ms; folding {} ms after SIGCONT",
        noticed.as_millis(),
        resumed.elapsed().as_millis()
    );
    pgfleet.assert_no_event("worker_failed");
}

/// `pgfleet --check` against a server that never answers says so within
/// connect_timeout instead of hanging.
#[test]
fn check_against_a_stalled_server_exits_1_in_time() {
    let _serial = serial();
    let db = cluster().create_database();
    let proxy = Proxy::start(cluster().port(), Mode::Stall);
    let asked = Instant::now();
    let output = crate::support::pgfleet::run(
        &["--check"],
        &[
            ("PGFLEET__DATABASE__URL", &proxy.url(&db.name)),
            ("PGFLEET__DATABASE__CONNECT_TIMEOUT", "500ms"),
        ],
    );
    let took = asked.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot be reached"), "{stderr}");
    assert!(took < Duration::from_secs(3), "--check took {took:?}");
}

/// Sends a signal (by name: "STOP", "CONT") to the server: the postmaster
/// and the backends it has now.
fn server_signaller() -> impl Fn(&str) {
    let postmaster = std::fs::read_to_string(cluster().datadir().join("postmaster.pid"))
        .expect("postmaster.pid")
        .lines()
        .next()
        .expect("pid line")
        .trim()
        .to_owned();
    let children = Command::new("pgrep")
        .args(["-P", &postmaster])
        .output()
        .expect("pgrep");
    let pids: Vec<String> = String::from_utf8_lossy(&children.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    // A backend may exit between pgrep and kill (a previous test's
    // connections closing): only the postmaster must get the signal.
    move |name: &str| {
        for pid in &pids {
            let _ = Command::new("kill")
                .arg(format!("-{name}"))
                .arg(pid)
                .status();
        }
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(&postmaster)
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} {postmaster}");
    }
}

/// A stalled server with many folds pipelined on one connection: each
/// gives up within one answer deadline of the last answer, not one
/// deadline after the other (a fold that gave up is no answer), so the
/// schemas are free to fold again as soon as the server is back.
#[test]
fn a_stalled_server_ends_every_pipelined_fold_within_one_deadline() {
    let _serial = serial();
    let db = cluster().create_database();
    // One connection, so every fold shares it; an answer deadline of 1.5 s.
    let extra = "database:\n  pool_size: 1\n  statement_timeout: 1s\n  connect_timeout: 500ms\n";
    let pgfleet = Pgfleet::start(&db, &config(40, extra));
    ready(&pgfleet, &db, &schema_names(40));
    let signal = server_signaller();
    let mark = pgfleet.mark();
    signal("STOP");
    thread::sleep(Duration::from_secs(8));
    signal("CONT");
    let in_flight: Vec<u64> = pgfleet.all_events()[mark..]
        .iter()
        .filter(|e| e["event"] == "worker_tick_skipped" && e["reason"] == "fold_in_flight")
        .filter_map(|e| e["running_ms"].as_u64())
        .collect();
    let longest = in_flight.iter().copied().max().unwrap_or(0);
    eprintln!(
        "MEASURED a server stopped 8 s under 40 schemas pipelined on one connection: \
         the longest fold in flight ran {longest} ms (answer deadline 1.5 s)"
    );
    assert!(
        longest < 4_000,
        "a fold stayed in flight {longest} ms, more than two answer deadlines"
    );
    execute(&db, "INSERT INTO schema7.counted VALUES ('delta', 2)");
    pgfleet.wait_for_from(mark, "a fold after SIGCONT", |e| {
        e["event"] == "worker_tick" && e["schema"] == "schema7" && e["total"] == 2
    });
}

/// Two instances sharing the fleet (`coordination.enabled`) through a
/// database restart under writers: every coordination session ends with
/// the server, both instances fold nothing until they have rejoined, then
/// share the schemas again; nothing is lost or folded twice.
#[test]
fn database_restart_with_coordination_under_write_load() {
    let _serial = serial();
    let db = cluster().create_database();
    let names = schema_names(8);
    crate::support::schemas::create_counter_schemas(&db, "schema", 1, 8);
    let yaml = config(8, "coordination:\n  enabled: true\n");
    let a = Pgfleet::start_with(
        &db,
        &yaml,
        &[("PGFLEET__DATABASE__APPLICATION_NAME", "pgfleet-a")],
    );
    let b = Pgfleet::start_with(
        &db,
        &yaml,
        &[("PGFLEET__DATABASE__APPLICATION_NAME", "pgfleet-b")],
    );
    for pgfleet in [&a, &b] {
        pgfleet.wait_event("coordination_rebalanced");
    }
    let writers = Writers::start(&db, &names);
    thread::sleep(Duration::from_secs(2));

    let (mark_a, mark_b) = (a.mark(), b.mark());
    let output = cluster().pg_ctl(&["restart", "-m", "fast", "-w"]);
    assert!(
        output.status.success(),
        "pg_ctl restart: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let back = Instant::now();
    for (pgfleet, mark) in [(&a, mark_a), (&b, mark_b)] {
        pgfleet.wait_for_from(mark, "coordination_lost", |e| {
            e["event"] == "coordination_lost"
        });
        pgfleet.wait_for_from(mark, "rejoining", |e| e["event"] == "coordination_joined");
    }
    let rejoined = back.elapsed();
    // A delta written now is folded in every schema, by one of the two.
    for schema in &names {
        execute(
            &db,
            &format!("INSERT INTO {schema}.counted VALUES ('delta', 1)"),
        );
    }
    thread::sleep(Duration::from_secs(1));
    assert!(writers.stop() > 0);
    eventually("every delta folded after the restart", || {
        deltas_left(&db, &names) == 0
    });
    let folding = back.elapsed();
    // The audit counts the writers' deltas; the 8 written by hand are in
    // the totals too.
    let (counted, committed) = ledger(&db, &names);
    assert_eq!(
        counted,
        committed + names.len() as i64,
        "total + remaining deltas"
    );
    for pgfleet in [&a, &b] {
        pgfleet.assert_no_event("worker_failed");
    }
    eprintln!(
        "coordination through a database restart: both rejoined {} ms after the server was back, \
         every delta folded {} ms after (the writers stopped 1 s after the rejoin); {committed} deltas \
         committed, all counted",
        rejoined.as_millis(),
        folding.as_millis()
    );
}

//! Fold rate: how many folds a second pgfleet runs, side by side in one run
//! with the floor, `pgbench` running pgfleet's own fold statement over the
//! same schemas on as many connections (issue 9, target 1).
//!
//! `cargo bench --bench fold_rate` (needs what the tests need:
//! `bash scripts/install-test-deps.sh`). The machine is noisy, so only the
//! ratios of one run mean something: each round runs every side for
//! `SECONDS`, one after the other, and the table shows the medians of
//! `ROUNDS` rounds (`PGFLEET_BENCH_ROUNDS` to change it). pgbench's
//! pipeline mode (`\startpipeline`, `PIPELINE` folds per round trip) is
//! the figure to beat once pgfleet pipelines too.
//!
//! Under `cargo test --all-targets` (as CI runs it) the binary is started
//! without `--bench` and only checks that it would run.

#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use pgfleet_actors::sql::TableSql;
use support::cluster::{cluster, TestDb};
use support::pgfleet::{execute, Pgfleet};

const SCHEMAS: usize = 64;
const CONNECTIONS: usize = 4;
const SECONDS: u64 = 5;
const ROUNDS: usize = 3;
/// Folds per pipeline in pgbench's pipeline mode.
const PIPELINE: usize = 8;

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("fold_rate: run with `cargo bench --bench fold_rate`");
        return;
    }
    let db = cluster().create_database();
    let mut ddl = String::new();
    for n in 1..=SCHEMAS {
        let _ = write!(
            ddl,
            "CREATE SCHEMA schema{n} CREATE TABLE counted (type text CHECK (type IN ('total','delta')), value integer) \
             CREATE UNIQUE INDEX counted_unique_total ON counted (type) WHERE type = 'total'; \
             INSERT INTO schema{n}.counted VALUES ('total', 0);"
        );
    }
    execute(&db, &ddl);

    let rounds = std::env::var("PGFLEET_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS)
        .max(1);
    let mut rows: Vec<Round> = Vec::new();
    for round in 1..=rounds {
        let prepared = pgbench(&db, "prepared", 1);
        let simple = pgbench(&db, "simple", 1);
        let pipelined = pgbench(&db, "prepared", PIPELINE);
        let pgfleet = pgfleet_rate(&db, "auto");
        let unprepared = pgfleet_rate(&db, "off");
        eprintln!(
            "round {round}/{rounds}: pgbench prepared {prepared:.0}, simple {simple:.0}, \
             pipelined {pipelined:.0}; pgfleet {:.0} ({:.1} us of its CPU per fold), \
             unprepared {:.0} folds/s",
            pgfleet.folds_per_second, pgfleet.cpu_us_per_fold, unprepared.folds_per_second
        );
        rows.push(Round {
            prepared,
            simple,
            pipelined,
            pgfleet,
            unprepared,
        });
    }
    let median = |pick: &dyn Fn(&Round) -> f64| {
        let mut values: Vec<f64> = rows.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let prepared = median(&|r| r.prepared);
    let simple = median(&|r| r.simple);
    let pipelined = median(&|r| r.pipelined);
    let pgfleet = median(&|r| r.pgfleet.folds_per_second);
    let unprepared = median(&|r| r.unprepared.folds_per_second);
    let cpu_us = median(&|r| r.pgfleet.cpu_us_per_fold);
    let core = median(&|r| r.pgfleet.cpu_share);
    // Ratios per round, then their median: each pairs runs made minutes apart
    // at most, on the same machine state.
    let vs_prepared = median(&|r| r.pgfleet.folds_per_second / r.prepared);
    let vs_simple = median(&|r| r.pgfleet.folds_per_second / r.simple);
    let vs_pipelined = median(&|r| r.pgfleet.folds_per_second / r.pipelined);
    let off_vs_simple = median(&|r| r.unprepared.folds_per_second / r.simple);
    println!(
        "fold rate over {SCHEMAS} idle schemas, {CONNECTIONS} connections; medians of {rounds} rounds of {SECONDS} s per side"
    );
    println!("| side | folds/s | pgfleet / side |");
    println!("| --- | ---: | ---: |");
    println!("| pgbench -M prepared (the floor) | {prepared:.0} | {vs_prepared:.2}x |");
    println!("| pgbench -M simple | {simple:.0} | {vs_simple:.2}x |");
    println!(
        "| pgbench -M prepared, pipelines of {PIPELINE} | {pipelined:.0} | {vs_pipelined:.2}x |"
    );
    println!("| pgfleet (naptime 1ms, pool {CONNECTIONS}, prepared: auto) | {pgfleet:.0} | |");
    println!("| pgfleet, prepared: off | {unprepared:.0} | {off_vs_simple:.2}x of simple |");
    println!(
        "pgfleet's own CPU: {cpu_us:.1} us per fold, {:.0}% of one core",
        core * 100.0
    );
}

struct Round {
    prepared: f64,
    simple: f64,
    pipelined: f64,
    pgfleet: Rate,
    unprepared: Rate,
}

/// pgfleet's folds per second, and its own CPU time for them.
struct Rate {
    folds_per_second: f64,
    cpu_us_per_fold: f64,
    /// CPU seconds per second: 1.0 is one core.
    cpu_share: f64,
}

/// pgbench running the fold statement of a random one of the schemas,
/// one script per schema, as fast as it can; with `pipeline` > 1, each
/// script sends that many folds (of consecutive schemas) in one pipeline,
/// and the rate counts folds, not scripts.
fn pgbench(db: &TestDb, mode: &str, pipeline: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args: Vec<String> = Vec::new();
    for n in 1..=SCHEMAS {
        let path = dir.path().join(format!("fold{n}.sql"));
        let mut script = String::new();
        if pipeline > 1 {
            script.push_str("\\startpipeline\n");
        }
        for k in 0..pipeline {
            let schema = (n - 1 + k) % SCHEMAS + 1;
            let sql = TableSql::new(&format!("schema{schema}"), "counted");
            let _ = writeln!(script, "{};", sql.fold);
        }
        if pipeline > 1 {
            script.push_str("\\endpipeline\n");
        }
        std::fs::write(&path, script).expect("write script");
        args.push("-f".into());
        args.push(format!("{}@1", path.display()));
    }
    let port = db.port.to_string();
    let output = Command::new(db.pgbench_path())
        .env("PGSSLMODE", "disable")
        .args(["-n", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
        .args(["-c", &CONNECTIONS.to_string(), "-j", "2"])
        .args(["-T", &SECONDS.to_string(), "-M", mode])
        .args(&args)
        .arg(&db.name)
        .output()
        .expect("run pgbench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("tps = ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|tps| tps.parse::<f64>().ok())
        })
        .map(|tps| tps * pipeline as f64)
        .unwrap_or_else(|| panic!("no tps in pgbench's output:\n{stdout}"))
}

/// pgfleet folding the same schemas as fast as it can (`database.prepared`
/// as given), measured from its own `pgfleet_folds_total` over `SECONDS`,
/// and its CPU time from `/proc`.
fn pgfleet_rate(db: &TestDb, prepared: &str) -> Rate {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let yaml = format!(
        "naptime: 1ms\nworkers:\n  total: {SCHEMAS}\n  vacuum_after: 0\n\
         database:\n  pool_size: {CONNECTIONS}\n  prepared: \"{prepared}\"\n  url: \"{}?sslmode=disable\"\n\
         log:\n  level: warn\nhttp:\n  listen: \"{listen}\"\n  per_schema_metrics_max: 0\n",
        db.url()
    );
    let mut pgfleet = Pgfleet::start_with(db, &yaml, &[("PGFLEET__DATABASE__URL", "")]);
    // Warm up: every worker started and folding.
    let warm = Instant::now() + Duration::from_secs(30);
    while folds(&listen).is_none_or(|n| n < (SCHEMAS * 10) as f64) {
        assert!(Instant::now() < warm, "pgfleet did not start folding");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = pgfleet.pid();
    let (start, cpu_start, begun) = (
        folds(&listen).expect("metrics"),
        cpu_seconds(pid),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(SECONDS));
    let (end, cpu_end, took) = (
        folds(&listen).expect("metrics"),
        cpu_seconds(pid),
        begun.elapsed(),
    );
    pgfleet.stop();
    let (folded, cpu) = (end - start, cpu_end - cpu_start);
    Rate {
        folds_per_second: folded / took.as_secs_f64(),
        cpu_us_per_fold: cpu / folded.max(1.0) * 1e6,
        cpu_share: cpu / took.as_secs_f64(),
    }
}

/// User and system CPU time of process `pid`, in seconds.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the whole line.
    let ticks: f64 = fields
        .get(11..13)
        .map(|t| t.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / per_second
}

/// `pgfleet_folds_total` from `/metrics`.
fn folds(listen: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(listen).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    body.lines()
        .filter(|line| line.starts_with("pgfleet_folds_total"))
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

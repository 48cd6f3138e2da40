//! Fold rate: how many folds a second pgfleet runs, side by side in one run
//! with the floor, `pgbench` running pgfleet's own fold statement over the
//! same schemas on as many connections (issue 9, target 1).
//!
//! `cargo bench --bench fold_rate` (needs what the tests need:
//! `bash scripts/install-test-deps.sh`). The machine is noisy, so only the
//! ratios of one run mean something; each side runs for `SECONDS`.
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

    let prepared = pgbench(&db, "prepared");
    let simple = pgbench(&db, "simple");
    let pgfleet = pgfleet_rate(&db);
    println!("fold rate over {SCHEMAS} idle schemas, {CONNECTIONS} connections, {SECONDS} s each");
    println!("  pgbench -M prepared (the floor): {prepared:>9.0} folds/s");
    println!("  pgbench -M simple:               {simple:>9.0} folds/s");
    println!(
        "  pgfleet (naptime 1ms, pool {CONNECTIONS}):  {pgfleet:>9.0} folds/s = {:.2}x prepared, {:.2}x simple",
        pgfleet / prepared,
        pgfleet / simple
    );
}

/// pgbench running the fold statement of a random one of the schemas,
/// one script per schema, as fast as it can.
fn pgbench(db: &TestDb, mode: &str) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args: Vec<String> = Vec::new();
    for n in 1..=SCHEMAS {
        let path = dir.path().join(format!("fold{n}.sql"));
        let sql = TableSql::new(&format!("schema{n}"), "counted");
        std::fs::write(&path, format!("{};\n", sql.fold)).expect("write script");
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
        .unwrap_or_else(|| panic!("no tps in pgbench's output:\n{stdout}"))
}

/// pgfleet folding the same schemas as fast as it can, measured from its
/// own `pgfleet_folds_total` over `SECONDS`.
fn pgfleet_rate(db: &TestDb) -> f64 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let yaml = format!(
        "naptime: 1ms\nworkers:\n  total: {SCHEMAS}\n  vacuum_after: 0\n\
         database:\n  pool_size: {CONNECTIONS}\n  url: \"{}?sslmode=disable\"\n\
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
    let (start, begun) = (folds(&listen).expect("metrics"), Instant::now());
    std::thread::sleep(Duration::from_secs(SECONDS));
    let (end, took) = (folds(&listen).expect("metrics"), begun.elapsed());
    pgfleet.stop();
    (end - start) / took.as_secs_f64()
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

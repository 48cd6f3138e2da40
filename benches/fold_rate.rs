//! Fold rate: how many folds a second pgfleet runs, side by side in one run
//! with the floor, `pgbench` running pgfleet's own fold statement over the
//! same schemas on as many connections (issue 9, target 1).
//!
//! `cargo bench --bench fold_rate` (needs what the tests need:
//! `bash scripts/install-test-deps.sh`). The machine is noisy, so only the
//! ratios of one run mean something: each round runs every side for
//! `SECONDS`, one after the other, and the table shows the medians of
//! `ROUNDS` rounds (`PGFLEET_BENCH_ROUNDS` to change it). pgbench's
//! pipeline mode (`\startpipeline`, `PIPELINE` folds per round trip) runs
//! twice: as pgbench does it, the folds of a pipeline in one transaction
//! (PostgreSQL 15's pgbench sends one Sync, at `\endpipeline`), and with
//! each fold in its own transaction, as pgfleet runs them (one schema's
//! error must not roll back another's fold).
//!
//! Under `cargo test --all-targets` (as CI runs it) the binary is started
//! without `--bench` and only checks that it would run.

#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code)]
mod support;

#[path = "common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::json;

use common::{cpu_seconds, free_listen, median, Scrape};
use pgfleet_actors::sql::{FoldBatch, TableSql};
use support::cluster::{cluster, TestDb};
use support::pgfleet::{execute, Pgfleet};

const SCHEMAS: usize = 64;
const CONNECTIONS: usize = 4;
const SECONDS: u64 = 5;
const ROUNDS: usize = 3;
/// `workers.fold_batch`'s default.
const FOLD_BATCH: i64 = 100_000;
/// Folds per pipeline in pgbench's pipeline mode.
const PIPELINE: usize = 8;

fn main() {
    if !common::asked_to_run("fold_rate") {
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

    let rounds = common::rounds(ROUNDS);
    let mut rows: Vec<Round> = Vec::new();
    for round in 1..=rounds {
        let prepared = pgbench(&db, "prepared", 1);
        let simple = pgbench(&db, "simple", 1);
        let pipelined = pgbench(&db, "prepared", PIPELINE);
        let pipelined_own = pgbench_pipelined_own_transactions(&db);
        let pgfleet = pgfleet_rate(&db, "auto", "");
        let unprepared = pgfleet_rate(&db, "off", "");
        // One instance with coordination on: it holds every bucket, and
        // each fold also takes its schema's fence lock.
        let fenced = pgfleet_rate(&db, "auto", "coordination:\n  enabled: true\n");
        eprintln!(
            "round {round}/{rounds}: pgbench prepared {prepared:.0}, simple {simple:.0}, \
             pipelined {pipelined:.0} (a transaction a fold: {pipelined_own:.0}); pgfleet {:.0} ({:.1} us of its CPU per fold), \
             unprepared {:.0}, fenced {:.0} folds/s",
            pgfleet.folds_per_second,
            pgfleet.cpu_us_per_fold,
            unprepared.folds_per_second,
            fenced.folds_per_second
        );
        rows.push(Round {
            prepared,
            simple,
            pipelined,
            pipelined_own,
            pgfleet,
            unprepared,
            fenced,
        });
    }
    let median = |pick: &dyn Fn(&Round) -> f64| median(&rows.iter().map(pick).collect::<Vec<_>>());
    let prepared = median(&|r| r.prepared);
    let simple = median(&|r| r.simple);
    let pipelined = median(&|r| r.pipelined);
    let pipelined_own = median(&|r| r.pipelined_own);
    let pgfleet = median(&|r| r.pgfleet.folds_per_second);
    let unprepared = median(&|r| r.unprepared.folds_per_second);
    let cpu_us = median(&|r| r.pgfleet.cpu_us_per_fold);
    let core = median(&|r| r.pgfleet.cpu_share);
    // Ratios per round, then their median: each pairs runs made minutes apart
    // at most, on the same machine state.
    let vs_prepared = median(&|r| r.pgfleet.folds_per_second / r.prepared);
    let vs_simple = median(&|r| r.pgfleet.folds_per_second / r.simple);
    let vs_pipelined = median(&|r| r.pgfleet.folds_per_second / r.pipelined);
    let vs_pipelined_own = median(&|r| r.pgfleet.folds_per_second / r.pipelined_own);
    let off_vs_simple = median(&|r| r.unprepared.folds_per_second / r.simple);
    let fenced = median(&|r| r.fenced.folds_per_second);
    let fenced_vs_pgfleet = median(&|r| r.fenced.folds_per_second / r.pgfleet.folds_per_second);
    println!(
        "fold rate over {SCHEMAS} idle schemas, {CONNECTIONS} connections; medians of {rounds} rounds of {SECONDS} s per side"
    );
    println!("| side | folds/s | pgfleet / side |");
    println!("| --- | ---: | ---: |");
    println!("| pgbench -M prepared (the floor) | {prepared:.0} | {vs_prepared:.2}x |");
    println!("| pgbench -M simple | {simple:.0} | {vs_simple:.2}x |");
    println!(
        "| pgbench -M prepared, pipelines of {PIPELINE}, a transaction a fold (as pgfleet) | {pipelined_own:.0} | {vs_pipelined_own:.2}x |"
    );
    println!(
        "| pgbench -M prepared, pipelines of {PIPELINE} in one transaction | {pipelined:.0} | {vs_pipelined:.2}x |"
    );
    println!("| pgfleet (naptime 1ms, pool {CONNECTIONS}, prepared: auto) | {pgfleet:.0} | |");
    println!("| pgfleet, prepared: off | {unprepared:.0} | {off_vs_simple:.2}x of simple |");
    println!(
        "| pgfleet, coordination on (every fold fenced) | {fenced:.0} | {fenced_vs_pgfleet:.2}x of pgfleet |"
    );
    println!(
        "pgfleet's own CPU: {cpu_us:.1} us per fold, {:.0}% of one core",
        core * 100.0
    );
    let figures = json!({
        "schemas": SCHEMAS, "connections": CONNECTIONS, "rounds": rounds, "seconds": SECONDS,
        "pgbench_prepared": prepared, "pgbench_simple": simple,
        "pgbench_pipelined": pipelined, "pipeline": PIPELINE,
        "pgbench_pipelined_own_transactions": pipelined_own,
        "pgfleet_vs_pipelined_own_transactions": vs_pipelined_own,
        "pgfleet": pgfleet, "pgfleet_unprepared": unprepared,
        "pgfleet_vs_prepared": vs_prepared, "pgfleet_vs_simple": vs_simple,
        "pgfleet_vs_pipelined": vs_pipelined, "unprepared_vs_simple": off_vs_simple,
        "pgfleet_cpu_us_per_fold": cpu_us, "pgfleet_cpu_share": core,
        "pgfleet_fenced": fenced, "fenced_vs_pgfleet": fenced_vs_pgfleet,
    });
    println!(
        "figures: {}",
        common::write_json("fold_rate", &figures).display()
    );
}

struct Round {
    prepared: f64,
    simple: f64,
    pipelined: f64,
    pipelined_own: f64,
    pgfleet: Rate,
    unprepared: Rate,
    fenced: Rate,
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
    pgbench_scripts(db, mode, pipeline, false)
}

/// pgbench's pipeline mode with each fold in its own transaction
/// (`BEGIN`, the fold, `COMMIT`), as pgfleet runs its pipelined folds.
fn pgbench_pipelined_own_transactions(db: &TestDb) -> f64 {
    pgbench_scripts(db, "prepared", PIPELINE, true)
}

fn pgbench_scripts(db: &TestDb, mode: &str, pipeline: usize, own_transactions: bool) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args: Vec<String> = Vec::new();
    for n in 1..=SCHEMAS {
        let path = dir.path().join(format!("fold{n}.sql"));
        // The batch limits as pgbench variables: parameters of the
        // prepared statement (as pgfleet prepares it), literals in simple
        // mode (as pgfleet sends it unprepared).
        let mut script = format!(
            "\\set batch {FOLD_BATCH}\n\\set cap {}\n",
            FoldBatch::count_cap(FOLD_BATCH)
        );
        if pipeline > 1 {
            script.push_str("\\startpipeline\n");
        }
        for k in 0..pipeline {
            let schema = (n - 1 + k) % SCHEMAS + 1;
            let sql = TableSql::new(format!("schema{schema}").into(), "counted".into());
            let fold = sql
                .fold(FoldBatch::Parameters)
                .replace("$1", ":batch")
                .replace("$2", ":cap");
            if own_transactions {
                let _ = writeln!(script, "BEGIN;\n{fold};\nCOMMIT;");
            } else {
                let _ = writeln!(script, "{fold};");
            }
        }
        if pipeline > 1 {
            script.push_str("\\endpipeline\n");
        }
        std::fs::write(&path, script).expect("write script");
        args.push("-f".into());
        args.push(format!("{}@1", path.display()));
    }
    let seconds = SECONDS.to_string();
    let connections = CONNECTIONS.to_string();
    let mut all: Vec<&str> = vec!["-c", &connections, "-j", "2", "-T", &seconds, "-M", mode];
    all.extend(args.iter().map(String::as_str));
    common::pgbench(db, &all).tps * pipeline as f64
}

/// pgfleet folding the same schemas as fast as it can (`database.prepared`
/// as given), measured from its own `pgfleet_folds_total` over `SECONDS`,
/// and its CPU time from `/proc`.
fn pgfleet_rate(db: &TestDb, prepared: &str, more: &str) -> Rate {
    let listen = free_listen();
    let yaml = format!(
        "naptime: 1ms\nworkers:\n  total: {SCHEMAS}\n  vacuum_after: 0\n\
         database:\n  pool_size: {CONNECTIONS}\n  prepared: \"{prepared}\"\n  url: \"{}?sslmode=disable\"\n\
         log:\n  level: warn\nhttp:\n  listen: \"{listen}\"\n  per_schema_metrics_max: 0\n{more}",
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

/// `pgfleet_folds_total`, summed over schemas, from `/metrics`.
fn folds(listen: &str) -> Option<f64> {
    Scrape::get(listen).map(|scrape| scrape.sum("pgfleet_folds_total"))
}

//! Discovery at fleet scale (issue 18 §1): 10,000 schemas found by
//! `workers.match` at start, then 1,000 more created at once while the
//! fleet runs, and what a rescan costs the server.
//!
//! - start: seconds from spawn until every discovered worker runs (goal
//!   10 s);
//! - tick lateness, p99 of each 250 ms window from 5 s before the 1,000
//!   are created to 20 s after, against the fleet's own goal (p99 ≤ 25 ms,
//!   `cargo bench --bench fleet`), and how long until they all run;
//! - a rescan's list query, as pgfleet sends it, in server time (EXPLAIN
//!   ANALYZE, median of 5) at 11,000 schemas; with `PGFLEET_BENCH_100K=1`
//!   also at 100,000 (creating 89,000 more takes about 2.5 minutes) (goal
//!   under 100 ms).
//!
//! `cargo bench --bench discovery` (needs what the tests need:
//! `bash scripts/install-test-deps.sh`); the figures also go to
//! `target/bench/discovery.json`. Under `cargo test --all-targets` the
//! binary only says how to run it.

#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code)]
mod support;

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use serde_json::json;

use common::{median, HistogramDelta, Scrape};
use support::cluster::{cluster, TestDb};
use support::pgfleet::Pgfleet;
use support::schemas::{create_counter_schemas, list_query_cost};

const FLEET: usize = 10_000;
const ARRIVING: usize = 1_000;
const BIG: usize = 100_000;
const POOL: usize = 16;
const SAMPLE: Duration = Duration::from_millis(250);
const BEFORE: Duration = Duration::from_secs(5);
const AFTER: Duration = Duration::from_secs(20);
const LATENESS: &str = "pgfleet_tick_lateness_seconds";
const RUNNING: &str = "pgfleet_workers{state=\"running\"}";

fn main() {
    if !common::asked_to_run("discovery") {
        return;
    }
    let began = Instant::now();
    let db = cluster().create_database();
    let created = create_counter_schemas(&db, "tenant", 1, FLEET);
    println!("created {FLEET} schemas in {:.1} s", created.as_secs_f64());

    let listen = common::free_listen();
    let yaml = format!(
        "naptime: 10s\nworkers:\n  match: tenant%\n  rescan: 1s\n  vacuum_after: 0\n\
         database:\n  pool_size: {POOL}\n  url: \"{}?sslmode=disable\"\n\
         log:\n  level: warn\nhttp:\n  listen: \"{listen}\"\n  per_schema_metrics_max: 0\n",
        db.url()
    );
    let spawned = Instant::now();
    let mut pgfleet = Pgfleet::start_with(&db, &yaml, &[("PGFLEET__DATABASE__URL", "")]);
    let start = wait_running(&listen, FLEET, spawned, Duration::from_secs(120));
    println!(
        "  every one of {FLEET} discovered workers running {start:.2} s after spawn (goal 10 s)"
    );
    std::thread::sleep(Duration::from_secs(10));

    // 1,000 tenants sign up at once, in the middle of a sampling run.
    let begun = Instant::now();
    let mut scrapes = vec![(0.0, Scrape::get(&listen).expect("/metrics"))];
    let samples_before = (BEFORE.as_millis() / SAMPLE.as_millis()) as u32;
    let samples = samples_before + (AFTER.as_millis() / SAMPLE.as_millis()) as u32;
    let mut creating = false;
    let mut created_at = 0.0;
    let mut all_running_after = f64::NAN;
    std::thread::scope(|scope| {
        for k in 1..=samples {
            let due = begun + SAMPLE * k;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let scrape = Scrape::get(&listen).expect("/metrics");
            let t = begun.elapsed().as_secs_f64();
            if all_running_after.is_nan()
                && creating
                && scrape
                    .value(RUNNING)
                    .is_some_and(|n| n as usize >= FLEET + ARRIVING)
            {
                all_running_after = t - created_at;
            }
            scrapes.push((t, scrape));
            if k == samples_before {
                created_at = t;
                let db = &db;
                creating = true;
                scope.spawn(move || {
                    create_counter_schemas(db, "tenant", FLEET + 1, FLEET + ARRIVING)
                });
            }
        }
    });
    let windows: Vec<(f64, f64)> = scrapes
        .windows(2)
        .map(|pair| {
            let delta = HistogramDelta::between(&pair[0].1, &pair[1].1, LATENESS);
            (pair[1].0 - created_at, delta.quantile(0.99).value)
        })
        .collect();
    let worst = |after: bool| {
        windows
            .iter()
            .filter(|(t, _)| (*t > 0.0) == after)
            .map(|(_, p99)| *p99)
            .filter(|v| !v.is_nan())
            .fold(f64::NAN, f64::max)
    };
    let (worst_before, worst_after) = (worst(false), worst(true));
    println!(
        "  {ARRIVING} schemas created at once: all running {all_running_after:.1} s after their creation began; \
         worst p99 tick lateness of a 250 ms window: {:.1} ms before, {:.1} ms in the 20 s after (goal <= 25)",
        worst_before * 1e3,
        worst_after * 1e3
    );
    let rescans = Scrape::get(&listen).expect("/metrics");
    let (sum, count) = (
        rescans.sum("pgfleet_rescan_duration_seconds_sum"),
        rescans.sum("pgfleet_rescan_duration_seconds_count"),
    );
    let status = pgfleet.stop();
    assert!(status.success(), "pgfleet exited with {status}");

    let cost_11k = list_cost(&db);
    println!(
        "  a rescan's list query at {} schemas: {:.1} ms of server time (median of 5); \
         pgfleet's own rescans took {:.1} ms on average (a connection, the list, the vetting of new schemas; {count:.0} rescans)",
        FLEET + ARRIVING,
        cost_11k * 1e3,
        sum / count * 1e3
    );
    let cost_100k = if std::env::var("PGFLEET_BENCH_100K").is_ok_and(|v| v == "1") {
        let more = create_counter_schemas(&db, "tenant", FLEET + ARRIVING + 1, BIG);
        let cost = list_cost(&db);
        println!(
            "  created {} more in {:.0} s; a rescan's list query at {BIG} schemas: {:.1} ms of server time (goal < 100)",
            BIG - FLEET - ARRIVING,
            more.as_secs_f64(),
            cost * 1e3
        );
        Some(cost)
    } else {
        println!("  {BIG} schemas skipped: run with PGFLEET_BENCH_100K=1");
        None
    };
    let path = common::write_json(
        "discovery",
        &json!({
            "schemas": FLEET,
            "start_s": start,
            "arriving": ARRIVING,
            "arriving_all_running_s": all_running_after,
            "worst_p99_before_ms": worst_before * 1e3,
            "worst_p99_after_ms": worst_after * 1e3,
            "list_cost_11k_ms": cost_11k * 1e3,
            "rescan_mean_ms": sum / count * 1e3,
            "list_cost_100k_ms": cost_100k.map(|c| c * 1e3),
        }),
    );
    println!(
        "figures: {} (the bench took {:.0} s)",
        path.display(),
        began.elapsed().as_secs_f64()
    );
}

/// Seconds from `spawned` until `/metrics` says `schemas` workers run.
fn wait_running(listen: &str, schemas: usize, spawned: Instant, patience: Duration) -> f64 {
    loop {
        let running = Scrape::get(listen).and_then(|s| s.value(RUNNING));
        if running.is_some_and(|n| n as usize >= schemas) {
            return spawned.elapsed().as_secs_f64();
        }
        assert!(
            spawned.elapsed() < patience,
            "{running:?} of {schemas} running after {patience:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The list query's server time (see `list_query_cost`), median of 5.
fn list_cost(db: &TestDb) -> f64 {
    let costs: Vec<f64> = (0..5)
        .map(|_| list_query_cost(db, &["tenant%"]).0.as_secs_f64())
        .collect();
    median(&costs)
}

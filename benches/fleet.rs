//! Many schemas in one process (issue 9, targets 2 to 4): 10,000 idle
//! schemas folded every 10 s on 16 connections. How long until every worker
//! runs, the memory and CPU of the process, its server connections, the WAL
//! an idle fleet writes, tick lateness; then tick lateness across a reload
//! (SIGHUP, unchanged config), drawn into `docs/lateness-across-reload.png`.
//! Then, on request (`PGFLEET_BENCH_100K=1`: creating 90,000 more schemas
//! takes about 2.5 minutes on a 2-core machine, and each round about 4
//! more), 100,000 schemas at naptime 60 s.
//!
//! `cargo bench --bench fleet` (needs what the tests need:
//! `bash scripts/install-test-deps.sh`). Each figure is the median of
//! `PGFLEET_BENCH_ROUNDS` rounds (3), each round a fresh pgfleet process on
//! the same schemas; the figures also go to `target/bench/fleet.json`.
//!
//! Under `cargo test --all-targets` (as CI runs it) the binary is started
//! without `--bench` and only says how to run it.

#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code)]
mod support;

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use serde_json::json;

use common::{cpu_seconds, median, memory_mb, HistogramDelta, Scrape};
use support::cluster::{cluster, TestDb};
use support::pgfleet::Pgfleet;
use support::schemas::{create_counter_schemas, SCHEMAS_PER_TRANSACTION};

const SCHEMAS: usize = 10_000;
const BIG_FLEET: usize = 100_000;
const POOL: usize = 16;
/// After every worker runs, a naptime for the first folds to pass, then
/// the steady window the figures come from.
const SETTLE: Duration = Duration::from_secs(10);
/// At 100,000 schemas the window starts two naptimes after all run: each
/// backend first loads the catalog entries of the tables of its home
/// schemas (see `db::lanes`, "Homes"), and until then a fold costs the
/// server about four times its warm cost.
const WARM_UP_100K: Duration = Duration::from_secs(120);
const WINDOW: Duration = Duration::from_secs(20);
/// Lateness sampled this often from `BEFORE` a reload to `AFTER` it.
const SAMPLE: Duration = Duration::from_millis(250);
const BEFORE: Duration = Duration::from_secs(5);
const AFTER: Duration = Duration::from_secs(15);
/// The most the bench waits for a fleet to run (three times the goal),
/// before it measures the fleet as it is.
const START_PATIENCE_10K: Duration = Duration::from_secs(30);
const START_PATIENCE_100K: Duration = Duration::from_secs(180);

const LATENESS: &str = "pgfleet_tick_lateness_seconds";
const RUNNING: &str = "pgfleet_workers{state=\"running\"}";

/// What one round of a fleet measured.
#[derive(Clone, Debug)]
struct Round {
    schemas: f64,
    /// Seconds from spawn to every worker running; infinite when they
    /// were not all running after three times the goal.
    start: f64,
    running_at_start: f64,
    rss_mb: f64,
    hwm_mb: f64,
    anon_mb: f64,
    threads: f64,
    cpu_percent: f64,
    connections: f64,
    wal_mb: f64,
    ticks: f64,
    p50: common::BucketQuantile,
    p99: common::BucketQuantile,
    ticks_skipped: f64,
    /// Ticks skipped in the window, by series (reason).
    skipped_by_reason: Vec<(String, f64)>,
    failures: f64,
    /// The reload's part, when the round ran one.
    reload: Option<Reload>,
}

#[derive(Clone, Debug)]
struct Reload {
    /// (seconds since SIGHUP at the window's end, p99 s, max bucket bound s, ticks).
    windows: Vec<(f64, f64, f64, f64)>,
    worst_p99_after: f64,
    worst_max_after: f64,
    folds_after: f64,
}

fn main() {
    if !common::asked_to_run("fleet") {
        return;
    }
    let began = Instant::now();
    let rounds = common::rounds(3);
    let db = cluster().create_database();

    let creation = create_counter_schemas(&db, "schema", 1, SCHEMAS);
    println!(
        "created {SCHEMAS} schemas in {:.1} s ({SCHEMAS_PER_TRANSACTION} a transaction)",
        creation.as_secs_f64()
    );
    let mut results = Vec::new();
    for round in 1..=rounds {
        let r = run_fleet(
            &db,
            SCHEMAS,
            "10s",
            WINDOW,
            START_PATIENCE_10K,
            SETTLE,
            true,
        );
        println!(
            "  round {round}/{rounds}: all running in {:.2} s, RSS {:.1} MB, CPU {:.1} %, p99 {}, worst p99 after reload {:.1} ms",
            r.start,
            r.rss_mb,
            r.cpu_percent,
            r.p99.describe_ms(),
            r.reload.as_ref().map_or(f64::NAN, |x| x.worst_p99_after * 1e3)
        );
        print_skipped(&r);
        results.push(r);
    }
    let ten_k = summarise(&results);
    print_table(
        &format!("{SCHEMAS} idle schemas, naptime 10s, pool {POOL}, median of {rounds} rounds"),
        &ten_k,
        &Goals {
            start: 10.0,
            rss: 64.0,
            cpu: 15.0,
        },
    );
    let reload_worst = median(
        &results
            .iter()
            .filter_map(|r| r.reload.as_ref().map(|x| x.worst_p99_after))
            .collect::<Vec<_>>(),
    );
    let reload_max = median(
        &results
            .iter()
            .filter_map(|r| r.reload.as_ref().map(|x| x.worst_max_after))
            .collect::<Vec<_>>(),
    );
    println!(
        "  reload (SIGHUP, unchanged config): worst p99 of a {} ms window in the {} s after it: {:.1} ms \
         (goal <= 25), worst tick up to {} ms (bucket bound); {:.0} folds in those {} s (ticks alone: {})",
        SAMPLE.as_millis(),
        AFTER.as_secs(),
        reload_worst * 1e3,
        bound_ms(reload_max),
        ten_k["reload_folds_after"].as_f64().unwrap_or(f64::NAN),
        AFTER.as_secs(),
        SCHEMAS as u64 * AFTER.as_secs() / 10
    );
    if let Some(reload) = results.last().and_then(|r| r.reload.as_ref()) {
        if common::register_font() {
            let path = common::doc_path("lateness-across-reload.png");
            match draw_reload(&path, reload) {
                Ok(()) => println!("  chart: {}", path.display()),
                Err(e) => println!("  (chart not drawn: {e})"),
            }
        }
    }

    // Target 3: 100,000 schemas.
    let estimate = creation.mul_f64((BIG_FLEET - SCHEMAS) as f64 / SCHEMAS as f64);
    let asked = std::env::var("PGFLEET_BENCH_100K").is_ok_and(|v| v == "1");
    let mut big = serde_json::Value::Null;
    if asked {
        let creation = create_counter_schemas(&db, "schema", SCHEMAS + 1, BIG_FLEET);
        println!(
            "created {} more schemas in {:.1} s ({BIG_FLEET} in all)",
            BIG_FLEET - SCHEMAS,
            creation.as_secs_f64()
        );
        let mut results = Vec::new();
        for round in 1..=rounds {
            let r = run_fleet(
                &db,
                BIG_FLEET,
                "60s",
                Duration::from_secs(60),
                START_PATIENCE_100K,
                WARM_UP_100K,
                false,
            );
            println!(
                "  round {round}/{rounds}: all running in {:.2} s, RSS {:.1} MB (peak {:.1}), CPU {:.1} %",
                r.start, r.rss_mb, r.hwm_mb, r.cpu_percent
            );
            print_skipped(&r);
            results.push(r);
        }
        let summary = summarise(&results);
        print_table(
            &format!(
                "{BIG_FLEET} idle schemas, naptime 60s, pool {POOL}, 60 s window, median of {rounds} rounds"
            ),
            &summary,
            &Goals {
                start: 60.0,
                rss: 256.0,
                cpu: f64::NAN,
            },
        );
        big = json!({
            "schemas": BIG_FLEET,
            "naptime_s": 60,
            "creation_s": creation.as_secs_f64(),
            "median": summary,
            "rounds": results.iter().map(round_json).collect::<Vec<_>>(),
        });
    } else {
        println!(
            "{BIG_FLEET} schemas (target 3) skipped: creating them would take about {:.0} s here \
             (2.5 minutes on the 2-core machine), then {rounds} rounds of about 4 minutes each; \
             run it with `PGFLEET_BENCH_100K=1 cargo bench --bench fleet`",
            estimate.as_secs_f64()
        );
    }

    let path = common::write_json(
        "fleet",
        &json!({
            "rounds": rounds,
            "ten_thousand": {
                "schemas": SCHEMAS,
                "naptime_s": 10,
                "pool_size": POOL,
                "creation_s": creation.as_secs_f64(),
                "window_s": WINDOW.as_secs(),
                "median": ten_k,
                "reload_worst_p99_after_ms": reload_worst * 1e3,
                "reload_worst_bucket_after_ms": reload_max * 1e3,
                "rounds": results.iter().map(round_json).collect::<Vec<_>>(),
                "reload_windows_last_round": results.last().and_then(|r| r.reload.as_ref()).map(|x| {
                    x.windows.iter().map(|(t, p99, max, n)| json!({
                        "t_s": t, "p99_ms": p99 * 1e3, "max_bucket_ms": max * 1e3, "ticks": n,
                    })).collect::<Vec<_>>()
                }),
            },
            "hundred_thousand": big,
        }),
    );
    println!(
        "figures: {} (the bench took {:.0} s)",
        path.display(),
        began.elapsed().as_secs_f64()
    );
}

/// One pgfleet process over `schemas` schemas: until all run, a settling
/// naptime, the steady window, and (with `reload`) a SIGHUP.
fn run_fleet(
    db: &TestDb,
    schemas: usize,
    naptime: &str,
    window: Duration,
    patience: Duration,
    settle: Duration,
    reload: bool,
) -> Round {
    let listen = common::free_listen();
    let yaml = format!(
        "naptime: {naptime}\nworkers:\n  total: {schemas}\n  vacuum_after: 0\n\
         database:\n  pool_size: {POOL}\n  url: \"{}?sslmode=disable\"\n\
         log:\n  level: warn\nhttp:\n  listen: \"{listen}\"\n  per_schema_metrics_max: 0\n",
        db.url()
    );
    let spawned = Instant::now();
    let mut pgfleet = Pgfleet::start_with(db, &yaml, &[("PGFLEET__DATABASE__URL", "")]);
    let pid = pgfleet.pid();
    // A fleet that is not all running after `patience` is measured as it
    // is then: the start figure says how far it got.
    let (start, running_at_start) = loop {
        let running = Scrape::get(&listen).and_then(|s| s.value(RUNNING));
        if running.is_some_and(|n| n as usize >= schemas) {
            break (spawned.elapsed().as_secs_f64(), schemas as f64);
        }
        if spawned.elapsed() > patience {
            let Some(running) = running else {
                panic!(
                    "no /metrics after {patience:?}; log:\n{}",
                    pgfleet.lines().join("\n")
                );
            };
            println!(
                "  not every worker runs after {} s: {running:.0} of {schemas}",
                patience.as_secs()
            );
            break (f64::INFINITY, running);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(settle);

    let mut client = db.client();
    let wal = |client: &mut postgres::Client| -> f64 {
        let row = client
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8",
                &[],
            )
            .expect("WAL position");
        row.get::<_, f64>(0)
    };
    let connections = |client: &mut postgres::Client| -> i64 {
        client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgfleet'",
                &[],
            )
            .expect("pg_stat_activity")
            .get(0)
    };
    let before = Scrape::get(&listen).expect("/metrics");
    let (cpu0, wal0, t0) = (cpu_seconds(pid), wal(&mut client), Instant::now());
    let mut most_connections = 0;
    while t0.elapsed() < window {
        most_connections = most_connections.max(connections(&mut client));
        std::thread::sleep(Duration::from_millis(500).min(window.saturating_sub(t0.elapsed())));
    }
    let (cpu1, wal1, took) = (cpu_seconds(pid), wal(&mut client), t0.elapsed());
    let after = Scrape::get(&listen).expect("/metrics");
    let (rss_mb, hwm_mb) = memory_mb(pid);
    let (anon_mb, _, threads) = common::memory_detail(pid);
    let lateness = HistogramDelta::between(&before, &after, LATENESS);
    let counter = |name: &str| after.sum(name) - before.sum(name);

    let reload = reload.then(|| measure_reload(&pgfleet, &listen));

    let status = pgfleet.stop();
    assert!(
        status.success(),
        "pgfleet exited with {status}; log:\n{}",
        pgfleet.lines().join("\n")
    );
    Round {
        schemas: schemas as f64,
        start,
        running_at_start,
        rss_mb,
        hwm_mb,
        anon_mb,
        threads,
        cpu_percent: (cpu1 - cpu0) / took.as_secs_f64() * 100.0,
        connections: most_connections as f64,
        wal_mb: (wal1 - wal0) / 1e6,
        ticks: lateness.count(),
        p50: lateness.quantile(0.5),
        p99: lateness.quantile(0.99),
        ticks_skipped: counter("pgfleet_ticks_skipped_total"),
        skipped_by_reason: after
            .samples
            .iter()
            .filter(|(key, _)| key.starts_with("pgfleet_ticks_skipped_total{"))
            .map(|(key, value)| (key.clone(), value - before.value(key).unwrap_or(0.0)))
            .filter(|(_, n)| *n > 0.0)
            .collect(),
        failures: counter("pgfleet_worker_failures_total"),
        reload,
    }
}

/// Samples the lateness histogram every [`SAMPLE`] from [`BEFORE`] a SIGHUP
/// (unchanged config) to [`AFTER`] it.
fn measure_reload(pgfleet: &Pgfleet, listen: &str) -> Reload {
    let samples_before = (BEFORE.as_millis() / SAMPLE.as_millis()) as u32;
    let samples = samples_before + (AFTER.as_millis() / SAMPLE.as_millis()) as u32;
    let begun = Instant::now();
    let mut scrapes = vec![(0.0, Scrape::get(listen).expect("/metrics"))];
    let mut sighup_at = None;
    for k in 1..=samples {
        let due = begun + SAMPLE * k;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let scrape = Scrape::get(listen).expect("/metrics");
        scrapes.push((begun.elapsed().as_secs_f64(), scrape));
        if k == samples_before {
            sighup_at = Some(begun.elapsed().as_secs_f64());
            pgfleet.signal(libc::SIGHUP);
        }
    }
    let sighup_at = sighup_at.expect("a SIGHUP was sent");
    let applied = "pgfleet_config_reloads_total{result=\"applied\"}";
    let (first, last) = (&scrapes[0].1, &scrapes[scrapes.len() - 1].1);
    assert_eq!(
        last.value(applied).unwrap_or(0.0) - first.value(applied).unwrap_or(0.0),
        1.0,
        "the reload was not applied; log:\n{}",
        pgfleet.lines().join("\n")
    );
    let windows: Vec<(f64, f64, f64, f64)> = scrapes
        .windows(2)
        .map(|pair| {
            let delta = HistogramDelta::between(&pair[0].1, &pair[1].1, LATENESS);
            (
                pair[1].0 - sighup_at,
                delta.quantile(0.99).value,
                delta.max_bound().unwrap_or(f64::NAN),
                delta.count(),
            )
        })
        .collect();
    let after: Vec<&(f64, f64, f64, f64)> = windows.iter().filter(|w| w.0 > 0.0).collect();
    let worst = |f: fn(&(f64, f64, f64, f64)) -> f64| {
        after
            .iter()
            .map(|w| f(w))
            .filter(|v| !v.is_nan())
            .fold(f64::NAN, f64::max)
    };
    let folds_at_reload = scrapes
        .iter()
        .find(|(t, _)| *t >= sighup_at)
        .map_or(0.0, |(_, s)| s.sum("pgfleet_folds_total"));
    Reload {
        worst_p99_after: worst(|w| w.1),
        worst_max_after: worst(|w| w.2),
        folds_after: last.sum("pgfleet_folds_total") - folds_at_reload,
        windows,
    }
}

struct Goals {
    start: f64,
    rss: f64,
    cpu: f64,
}

fn summarise(rounds: &[Round]) -> serde_json::Value {
    let m = |f: fn(&Round) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
    json!({
        "start_s": m(|r| r.start),
        "running_at_start": m(|r| r.running_at_start),
        "rss_mb": m(|r| r.rss_mb),
        "hwm_mb": m(|r| r.hwm_mb),
        "anon_mb": m(|r| r.anon_mb),
        "threads": m(|r| r.threads),
        "schemas": m(|r| r.schemas),
        "cpu_percent": m(|r| r.cpu_percent),
        "connections": m(|r| r.connections),
        "wal_mb": m(|r| r.wal_mb),
        "ticks": m(|r| r.ticks),
        "lateness_p50_ms": m(|r| r.p50.value * 1e3),
        "lateness_p99_ms": m(|r| r.p99.value * 1e3),
        "ticks_skipped": m(|r| r.ticks_skipped),
        "worker_failures": m(|r| r.failures),
        "reload_folds_after": m(|r| r.reload.as_ref().map_or(f64::NAN, |x| x.folds_after)),
    })
}

fn round_json(r: &Round) -> serde_json::Value {
    json!({
        "start_s": r.start,
        "running_at_start": r.running_at_start,
        "rss_mb": r.rss_mb,
        "hwm_mb": r.hwm_mb,
        "anon_mb": r.anon_mb,
        "threads": r.threads,
        "cpu_percent": r.cpu_percent,
        "connections": r.connections,
        "wal_mb": r.wal_mb,
        "ticks": r.ticks,
        "lateness_p50_ms": r.p50.value * 1e3,
        "lateness_p50_bucket_ms": [r.p50.lower * 1e3, r.p50.upper * 1e3],
        "lateness_p99_ms": r.p99.value * 1e3,
        "lateness_p99_bucket_ms": [r.p99.lower * 1e3, r.p99.upper * 1e3],
        "ticks_skipped": r.ticks_skipped,
        "ticks_skipped_by_reason": r.skipped_by_reason.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "worker_failures": r.failures,
        "reload_worst_p99_after_ms": r.reload.as_ref().map(|x| x.worst_p99_after * 1e3),
        "reload_worst_bucket_after_ms": r.reload.as_ref().map(|x| x.worst_max_after * 1e3),
        "reload_folds_after": r.reload.as_ref().map(|x| x.folds_after),
    })
}

fn print_table(title: &str, m: &serde_json::Value, goals: &Goals) {
    let f = |key: &str| m[key].as_f64().unwrap_or(f64::NAN);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("{title}");
    println!("  {:<36} {:>16}   {:<12} ", "figure", "measured", "goal");
    let row = |name: &str, value: String, goal: String, ok: Option<bool>| {
        println!(
            "  {name:<36} {value:>16}   {goal:<12} {}",
            ok.map_or("", verdict)
        );
    };
    row(
        "spawn to every worker running",
        if f("start_s").is_finite() {
            format!("{:.2} s", f("start_s"))
        } else {
            format!(
                "> {:.0} s ({:.0} running)",
                goals.start * 3.0,
                f("running_at_start")
            )
        },
        format!("<= {} s", goals.start),
        Some(f("start_s") <= goals.start),
    );
    row(
        "RSS at the end of the window (VmRSS)",
        format!("{:.1} MB", f("rss_mb")),
        format!("<= {} MB", goals.rss),
        Some(f("rss_mb") <= goals.rss),
    );
    row(
        "peak RSS (VmHWM)",
        format!("{:.1} MB", f("hwm_mb")),
        format!("<= {} MB", goals.rss),
        Some(f("hwm_mb") <= goals.rss),
    );
    row(
        "  of it anonymous (heap), per schema",
        format!(
            "{:.1} MB, {:.1} kB",
            f("anon_mb"),
            f("anon_mb") * 1e3 / f("schemas")
        ),
        format!("{} threads", f("threads")),
        None,
    );
    row(
        "CPU, % of one core, steady",
        format!("{:.1} %", f("cpu_percent")),
        if goals.cpu.is_nan() {
            "-".into()
        } else {
            format!("<= {} %", goals.cpu)
        },
        (!goals.cpu.is_nan()).then(|| f("cpu_percent") <= goals.cpu),
    );
    row(
        "server connections (most seen)",
        format!("{:.0}", f("connections")),
        format!("<= {POOL}"),
        Some(f("connections") <= POOL as f64),
    );
    row(
        "WAL written while idle",
        format!("{:.3} MB", f("wal_mb")),
        "<= 1 MB".into(),
        Some(f("wal_mb") <= 1.0),
    );
    row(
        "tick lateness p50",
        format!("{:.2} ms", f("lateness_p50_ms")),
        "-".into(),
        None,
    );
    row(
        "tick lateness p99",
        format!("{:.2} ms", f("lateness_p99_ms")),
        "<= 25 ms".into(),
        Some(f("lateness_p99_ms") <= 25.0),
    );
    row(
        "ticks in the window",
        format!("{:.0}", f("ticks")),
        "-".into(),
        None,
    );
    row(
        "ticks skipped / worker failures",
        format!("{:.0} / {:.0}", f("ticks_skipped"), f("worker_failures")),
        "0 / 0".into(),
        Some(f("ticks_skipped") == 0.0 && f("worker_failures") == 0.0),
    );
}

fn bound_ms(bound: f64) -> String {
    if bound.is_infinite() {
        "more than 60000".into()
    } else {
        format!("{}", bound * 1e3)
    }
}

/// p99 and the highest bucket's bound of each window, in ms on a log
/// scale, against seconds since the SIGHUP.
fn draw_reload(path: &std::path::Path, reload: &Reload) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    const FLOOR_MS: f64 = 0.1;
    let finite = |v: f64| v.is_finite().then_some((v * 1e3).max(FLOOR_MS));
    let p99: Vec<(f64, f64)> = reload
        .windows
        .iter()
        .filter_map(|w| Some((w.0, finite(w.1)?)))
        .collect();
    let max: Vec<(f64, f64)> = reload
        .windows
        .iter()
        .filter_map(|w| Some((w.0, finite(w.2)?)))
        .collect();
    let top = max.iter().chain(&p99).map(|p| p.1).fold(10.0, f64::max) * 2.0;
    let (x0, x1) = (-(BEFORE.as_secs_f64()), AFTER.as_secs_f64());

    let root = BitMapBackend::new(path, (1000, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Tick lateness across a reload: {SCHEMAS} schemas, naptime 10s, pool {POOL}, {} ms windows",
                SAMPLE.as_millis()
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, (FLOOR_MS..top).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds since SIGHUP (unchanged config)")
        .y_desc("tick lateness, ms (log scale)")
        .y_label_formatter(&|v| format!("{v}"))
        .draw()?;
    chart
        .draw_series(LineSeries::new(max, BLUE.stroke_width(2)))?
        .label("highest bucket reached (upper bound)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(p99, RED.stroke_width(2)))?
        .label("p99 (interpolated in its bucket)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            vec![(x0, 25.0), (x1, 25.0)],
            GREEN.stroke_width(1),
        ))?
        .label("goal: p99 <= 25 ms")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, FLOOR_MS), (0.0, top)],
            BLACK.stroke_width(2),
        ))?
        .label("SIGHUP")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The ticks a round's window skipped, by reason, when there were any.
fn print_skipped(r: &Round) {
    if !r.skipped_by_reason.is_empty() {
        let reasons: Vec<String> = r
            .skipped_by_reason
            .iter()
            .map(|(key, n)| format!("{key} {n:.0}"))
            .collect();
        println!("    skipped in the window: {}", reasons.join(", "));
    }
}

//! Keeping up with writers (issue 9, target 5).
//!
//! 1. One schema, 8 pgbench writers inserting deltas as fast as they can:
//!    the insert rate with pgfleet folding (naptime 1s) against the same
//!    without pgfleet, side by side in each round; the backlog of unfolded
//!    deltas, sampled every 100 ms, in naptimes of inserts; and at the end
//!    `total + remaining deltas == committed inserts`.
//! 2. The hot row worker_spi's counter avoids: 16 clients UPDATE-ing one row
//!    against 16 clients inserting deltas with pgfleet folding, drawn into
//!    `docs/hot-row-vs-deltas.png`.
//!
//! `cargo bench --bench writers` (needs what the tests need:
//! `bash scripts/install-test-deps.sh`). Each figure is the median of
//! `PGFLEET_BENCH_ROUNDS` rounds (3); the figures also go to
//! `target/bench/writers.json`.
//!
//! Under `cargo test --all-targets` (as CI runs it) the binary is started
//! without `--bench` and only says how to run it.

#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code)]
mod support;

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use common::{median, quantile, PgbenchRun, Scrape};
use support::cluster::{cluster, TestDb};
use support::pgfleet::Pgfleet;

/// Seconds each pgbench run lasts.
const SECONDS: u64 = 10;
const BACKLOG_EVERY: Duration = Duration::from_millis(100);
/// pgfleet's naptime, in seconds: the backlog's unit is this many
/// seconds of inserts.
const NAPTIME_S: f64 = 1.0;

const INSERT: &str = "INSERT INTO schema1.counted VALUES ('delta', 1);\n";
const HOT: &str = "UPDATE hot SET value = value + 1 WHERE id = 1;\n";

/// Part 1, one round.
struct WriterRound {
    without: PgbenchRun,
    with: PgbenchRun,
    backlog_max: f64,
    backlog_p95: f64,
    backlog: Vec<(f64, f64)>,
}

/// Part 2, one round.
struct HotRound {
    hot: PgbenchRun,
    deltas: PgbenchRun,
}

fn main() {
    if !common::asked_to_run("writers") {
        return;
    }
    let began = Instant::now();
    let rounds = common::rounds(3);
    let db = cluster().create_database();
    db.client()
        .batch_execute(
            "CREATE SCHEMA schema1 CREATE TABLE counted (type text CHECK (type IN ('total','delta')), value integer) \
             CREATE UNIQUE INDEX counted_unique_total ON counted (type) WHERE type = 'total'; \
             CREATE TABLE public.hot (id integer PRIMARY KEY, value bigint NOT NULL); \
             INSERT INTO public.hot VALUES (1, 0);",
        )
        .expect("the schema and the hot row");
    let scripts = tempfile::tempdir().expect("script dir");
    let insert = scripts.path().join("insert.sql");
    let hot = scripts.path().join("hot.sql");
    std::fs::write(&insert, INSERT).expect("write script");
    std::fs::write(&hot, HOT).expect("write script");
    let (insert, hot) = (insert.display().to_string(), hot.display().to_string());

    // Part 1.
    let mut writer_rounds = Vec::new();
    for round in 1..=rounds {
        let r = writers_round(&db, &insert);
        println!(
            "  round {round}/{rounds}: 8 writers {:.0} tps alone, {:.0} tps with pgfleet folding ({:.2}x); \
             backlog max {:.0}, p95 {:.0} deltas",
            r.without.tps,
            r.with.tps,
            r.with.tps / r.without.tps,
            r.backlog_max,
            r.backlog_p95
        );
        writer_rounds.push(r);
    }
    let m =
        |f: &dyn Fn(&WriterRound) -> f64| median(&writer_rounds.iter().map(f).collect::<Vec<_>>());
    let tps_without = m(&|r| r.without.tps);
    let tps_with = m(&|r| r.with.tps);
    let ratio = m(&|r| r.with.tps / r.without.tps);
    let backlog_max = m(&|r| r.backlog_max);
    let backlog_p95 = m(&|r| r.backlog_p95);
    let naptimes_max = m(&|r| r.backlog_max / (r.with.tps * NAPTIME_S));
    let naptimes_p95 = m(&|r| r.backlog_p95 / (r.with.tps * NAPTIME_S));
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "one schema, 8 pgbench writers (-c 8 -j 2 -M prepared, {SECONDS} s), pgfleet naptime 1s, median of {rounds} rounds"
    );
    println!("  {:<44} {:>14}   {:<10}", "figure", "measured", "goal");
    println!("  {:<44} {:>10.0} tps", "inserts, no pgfleet", tps_without);
    println!(
        "  {:<44} {:>10.0} tps",
        "inserts, pgfleet folding", tps_with
    );
    println!(
        "  {:<44} {:>13.2}x   {:<10} {}",
        "ratio (median of each round's ratio)",
        ratio,
        ">= 0.9x",
        verdict(ratio >= 0.9)
    );
    println!(
        "  {:<44} {:>14}   {:<10} {}",
        "backlog max (deltas, naptimes of inserts)",
        format!("{backlog_max:.0}, {naptimes_max:.2}"),
        "< 2",
        verdict(naptimes_max < 2.0)
    );
    println!(
        "  {:<44} {:>14}   {:<10} {}",
        "backlog p95 (deltas, naptimes of inserts)",
        format!("{backlog_p95:.0}, {naptimes_p95:.2}"),
        "< 2",
        verdict(naptimes_p95 < 2.0)
    );
    println!(
        "  {:<44} {:>14}",
        "total + remaining deltas == committed inserts", "yes, each round"
    );

    // Part 2.
    let mut hot_rounds = Vec::new();
    for round in 1..=rounds {
        let r = hot_round(&db, &hot, &insert);
        println!(
            "  round {round}/{rounds}: hot row {:.0} tps, deltas with pgfleet {:.0} tps ({:.2}x)",
            r.hot.tps,
            r.deltas.tps,
            r.deltas.tps / r.hot.tps
        );
        hot_rounds.push(r);
    }
    let h = |f: &dyn Fn(&HotRound) -> f64| median(&hot_rounds.iter().map(f).collect::<Vec<_>>());
    let hot_tps = h(&|r| r.hot.tps);
    let delta_tps = h(&|r| r.deltas.tps);
    let hot_ratio = h(&|r| r.deltas.tps / r.hot.tps);
    println!("hot row against deltas, 16 clients each (-c 16 -j 2 -M prepared, {SECONDS} s), median of {rounds} rounds");
    println!(
        "  {:<44} {:>10.0} tps",
        "UPDATE hot SET value = value + 1 WHERE id = 1", hot_tps
    );
    println!(
        "  {:<44} {:>10.0} tps",
        "INSERT delta, pgfleet folding every 1s", delta_tps
    );
    println!(
        "  {:<44} {:>13.2}x",
        "deltas / hot row (median of ratios)", hot_ratio
    );
    if let Some(last) = hot_rounds.last() {
        if common::register_font() {
            let path = common::doc_path("hot-row-vs-deltas.png");
            match draw_hot(&path, hot_tps, delta_tps, last) {
                Ok(()) => println!("  chart: {}", path.display()),
                Err(e) => println!("  (chart not drawn: {e})"),
            }
        }
    }

    let path = common::write_json(
        "writers",
        &json!({
            "rounds": rounds,
            "seconds": SECONDS,
            "writers": {
                "clients": 8,
                "naptime_s": NAPTIME_S,
                "tps_without_pgfleet": tps_without,
                "tps_with_pgfleet": tps_with,
                "ratio": ratio,
                "backlog_max": backlog_max,
                "backlog_p95": backlog_p95,
                "backlog_max_naptimes": naptimes_max,
                "backlog_p95_naptimes": naptimes_p95,
                "rounds": writer_rounds.iter().map(|r| json!({
                    "tps_without": r.without.tps,
                    "tps_with": r.with.tps,
                    "inserted_with": r.with.transactions,
                    "backlog_max": r.backlog_max,
                    "backlog_p95": r.backlog_p95,
                })).collect::<Vec<_>>(),
                "backlog_last_round": writer_rounds.last().map(|r| {
                    r.backlog.iter().map(|(t, n)| json!([t, n])).collect::<Vec<_>>()
                }),
            },
            "hot_row": {
                "clients": 16,
                "tps_hot_row": hot_tps,
                "tps_deltas": delta_tps,
                "ratio": hot_ratio,
                "rounds": hot_rounds.iter().map(|r| json!({
                    "tps_hot_row": r.hot.tps,
                    "tps_deltas": r.deltas.tps,
                    "per_second_hot_row": r.hot.per_second,
                    "per_second_deltas": r.deltas.per_second,
                })).collect::<Vec<_>>(),
            },
        }),
    );
    println!(
        "figures: {} (the bench took {:.0} s)",
        path.display(),
        began.elapsed().as_secs_f64()
    );
}

/// Empties the table, with a fresh total row of 0.
fn reset(db: &TestDb) {
    db.client()
        .batch_execute("TRUNCATE schema1.counted; INSERT INTO schema1.counted VALUES ('total', 0);")
        .expect("reset schema1.counted");
}

/// pgbench inserting deltas (or running `script`) with `clients` clients.
fn run_pgbench(db: &TestDb, script: &str, clients: u32) -> PgbenchRun {
    let clients = clients.to_string();
    let seconds = SECONDS.to_string();
    let run = common::pgbench(
        db,
        &[
            "-c", &clients, "-j", "2", "-T", &seconds, "-M", "prepared", "-P", "1", "-f", script,
        ],
    );
    assert_eq!(run.failed, 0, "pgbench had failed transactions");
    run
}

/// pgfleet folding schema1 every second, every worker running.
fn start_pgfleet(db: &TestDb) -> (Pgfleet, String) {
    let listen = common::free_listen();
    let yaml = format!(
        "naptime: 1s\nworkers:\n  total: 1\n  vacuum_after: 100000\n\
         database:\n  url: \"{}?sslmode=disable\"\n\
         log:\n  level: warn\nhttp:\n  listen: \"{listen}\"\n",
        db.url()
    );
    let pgfleet = Pgfleet::start_with(db, &yaml, &[("PGFLEET__DATABASE__URL", "")]);
    pgfleet.eventually("pgfleet's worker runs", || {
        Scrape::get(&listen)
            .and_then(|s| s.value("pgfleet_workers{state=\"running\"}"))
            .is_some_and(|n| n >= 1.0)
    });
    (pgfleet, listen)
}

/// Once the writers stopped: pgfleet folds what is left, and
/// `total + remaining deltas` equals what pgbench committed (it reported
/// no failed transaction, so its count is every committed insert).
fn check_ledger(db: &TestDb, pgfleet: &Pgfleet, inserted: u64) {
    let ledger = || -> (i64, i64) {
        let row = db
            .client()
            .query_one(
                "SELECT coalesce(sum(value) FILTER (WHERE type = 'total'), 0)::bigint, \
                        coalesce(sum(value) FILTER (WHERE type = 'delta'), 0)::bigint \
                 FROM schema1.counted",
                &[],
            )
            .expect("ledger");
        (row.get(0), row.get(1))
    };
    // Up to a few naptimes for the last fold.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ledger().1 != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (total, remaining) = ledger();
    assert_eq!(
        total + remaining,
        inserted as i64,
        "total {total} + remaining deltas {remaining} != {inserted} committed inserts; log:\n{}",
        pgfleet.lines().join("\n")
    );
    assert_eq!(remaining, 0, "pgfleet left deltas unfolded after 10 s");
}

fn writers_round(db: &TestDb, insert: &str) -> WriterRound {
    reset(db);
    let without = run_pgbench(db, insert, 8);

    reset(db);
    let (mut pgfleet, _listen) = start_pgfleet(db);
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (db, sampling) = (db.clone(), Arc::clone(&sampling));
        std::thread::spawn(move || {
            let mut client = db.client();
            let begun = Instant::now();
            let mut samples = Vec::new();
            let mut k = 0;
            while sampling.load(Ordering::SeqCst) {
                let n: i64 = client
                    .query_one(
                        "SELECT count(*) FROM schema1.counted WHERE type = 'delta'",
                        &[],
                    )
                    .expect("backlog")
                    .get(0);
                samples.push((begun.elapsed().as_secs_f64(), n as f64));
                k += 1;
                let due = begun + BACKLOG_EVERY * k;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            samples
        })
    };
    let with = run_pgbench(db, insert, 8);
    sampling.store(false, Ordering::SeqCst);
    let backlog = sampler.join().expect("backlog sampler");
    check_ledger(db, &pgfleet, with.transactions);
    let status = pgfleet.stop();
    assert!(status.success(), "pgfleet exited with {status}");

    let counts: Vec<f64> = backlog.iter().map(|s| s.1).collect();
    WriterRound {
        backlog_max: counts.iter().copied().fold(0.0, f64::max),
        backlog_p95: quantile(&counts, 0.95),
        without,
        with,
        backlog,
    }
}

fn hot_round(db: &TestDb, hot: &str, insert: &str) -> HotRound {
    let hot = run_pgbench(db, hot, 16);
    reset(db);
    let (mut pgfleet, _listen) = start_pgfleet(db);
    let deltas = run_pgbench(db, insert, 16);
    check_ledger(db, &pgfleet, deltas.transactions);
    let status = pgfleet.stop();
    assert!(status.success(), "pgfleet exited with {status}");
    HotRound { hot, deltas }
}

/// Left: the two medians as bars. Right: each second of the last round.
fn draw_hot(
    path: &std::path::Path,
    hot_tps: f64,
    delta_tps: f64,
    last: &HotRound,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = BitMapBackend::new(path, (1100, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(420);
    let top = hot_tps.max(delta_tps) * 1.2;
    let bar_colour = |i: usize| if i == 0 { RED } else { BLUE };

    let mut bars = ChartBuilder::on(&left)
        .caption("16 clients, median tps", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0f64..2.0, 0.0f64..top)?;
    bars.configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc("transactions per second")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    let labels = ["hot row UPDATE", "delta INSERT + pgfleet"];
    for (i, tps) in [hot_tps, delta_tps].into_iter().enumerate() {
        let x = i as f64;
        bars.draw_series(std::iter::once(Rectangle::new(
            [(x + 0.2, 0.0), (x + 0.8, tps)],
            bar_colour(i).filled(),
        )))?;
        bars.draw_series(std::iter::once(Text::new(
            format!("{tps:.0}"),
            (x + 0.32, tps + top * 0.03),
            ("sans-serif", 18),
        )))?;
        bars.draw_series(std::iter::once(Text::new(
            labels[i],
            (x + 0.05, top * 0.98),
            ("sans-serif", 15),
        )))?;
    }

    let seconds = last.hot.per_second.len().max(last.deltas.per_second.len()) as f64;
    let peak = last
        .hot
        .per_second
        .iter()
        .chain(&last.deltas.per_second)
        .fold(1.0, |a: f64, b| a.max(*b))
        * 1.2;
    let mut lines = ChartBuilder::on(&right)
        .caption(
            "each second of the last round (pgbench -P 1)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0f64..seconds.max(1.0) + 0.5, 0.0f64..peak)?;
    lines
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("tps")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (i, (name, series)) in [
        ("hot row UPDATE", &last.hot.per_second),
        (
            "delta INSERT, pgfleet folding every 1s",
            &last.deltas.per_second,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let colour = bar_colour(i);
        lines
            .draw_series(LineSeries::new(
                series
                    .iter()
                    .enumerate()
                    .map(|(s, tps)| ((s + 1) as f64, *tps)),
                colour.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    lines
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

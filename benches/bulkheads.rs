//! Isolation (issue 16 §1 and §2), side by side in one run:
//!
//! (a) A migration: 400 schemas, `naptime: 1s`, every other setting at its
//!     default; one transaction holds `LOCK TABLE … IN EXCLUSIVE MODE` on
//!     300 of the tables. The other 100 schemas' folds while it holds them
//!     against the same window without the lock, and how long after the
//!     release every locked schema had folded; direct and through PgBouncer
//!     in transaction mode.
//! (b) Frequent VACUUM: 50 schemas, `naptime: 100ms`, pgbench inserting
//!     about 14,000 deltas a second spread over them: the folds with
//!     `vacuum_after: 300` (each table vacuumed about once a second) against
//!     `vacuum_after: 0`; direct and through PgBouncer, on a calm machine
//!     and beside two busy loops. One fleet per setting, switched between
//!     the two values by a reload every few seconds, so a load that comes
//!     and goes weighs on both sides alike; a round is one pair of phases.
//!
//! `cargo bench --bench bulkheads` (needs what the tests need:
//! `bash scripts/install-test-deps.sh`). Each figure is the median of
//! `PGFLEET_BENCH_ROUNDS` rounds (3); the figures also go to
//! `target/bench/bulkheads.json`. About 4 minutes on a 2-core machine.
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

use common::{median, Scrape};
use support::cluster::{cluster, TestDb};
use support::load::{CpuLoad, SpreadWriters};
use support::pgbouncer::PgBouncer;
use support::pgfleet::Pgfleet;

const RUNNING: &str = "pgfleet_workers{state=\"running\"}";

/// Part (a).
const MIGRATION_SCHEMAS: usize = 400;
const MIGRATION_LOCKED: usize = 300;
const MIGRATION_WINDOW: Duration = Duration::from_secs(6);
/// After the lock is taken, before its window: every locked schema has
/// met it once (a tick a second).
const MIGRATION_SETTLE: Duration = Duration::from_secs(2);

/// Part (b).
const VACUUM_SCHEMAS: usize = 50;
const VACUUM_NAPTIME_MS: u64 = 100;
const WRITES_PER_SECOND: u32 = 14_000;
const VACUUM_AFTER: u64 = 300;
const BUSY_LOOPS: usize = 2;
const PHASE: Duration = Duration::from_secs(5);
/// After each reload, before its phase is counted: the reload's own fold,
/// and the VACUUMs that come due at once when VACUUM comes back.
const PHASE_SETTLE: Duration = Duration::from_secs(1);

/// Where pgfleet connects: straight to the server, or through PgBouncer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    PgBouncer,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::PgBouncer => "PgBouncer (transaction)",
        }
    }

    /// The URL, and the PgBouncer to keep running while it is used.
    fn url(self, db: &TestDb) -> (String, Option<PgBouncer>) {
        match self {
            // The load needs no TLS (the test cluster offers it).
            Path::Direct => (format!("{}?sslmode=disable", db.url()), None),
            Path::PgBouncer => {
                let bouncer = PgBouncer::start(cluster().port(), "transaction", "");
                (bouncer.url(&db.name), Some(bouncer))
            }
        }
    }
}

/// One round of part (a).
struct MigrationRound {
    /// Folds of the unlocked schemas in the window without the lock, and
    /// in the window while it is held.
    free_without: f64,
    free_during: f64,
    possible: f64,
    /// Seconds from the commit to the last locked schema's fold.
    caught_up: f64,
    database_lost: usize,
}

/// One round (one pair of phases) of part (b).
struct VacuumRound {
    without: f64,
    with: f64,
    /// Ticks the phase without VACUUM had room for.
    possible: f64,
    /// How long each phase was: they differ (a scrape on a loaded machine
    /// takes a while), so the folds are compared as rates.
    seconds_without: f64,
    seconds_with: f64,
    /// Deltas folded a second, over both phases.
    rows_per_second: f64,
    vacuums_done: f64,
    vacuums_postponed: f64,
    vacuums_locked: f64,
}

impl VacuumRound {
    /// Folds a second with VACUUM, as a share of those without.
    fn share(&self) -> f64 {
        (self.with / self.seconds_with) / (self.without / self.seconds_without)
    }
}

/// Part (b) for one setting: where pgfleet connects and what runs beside
/// it, its rounds, and the schemas that did not fold at all in the phases
/// with VACUUM.
struct VacuumSetting {
    path: Path,
    busy_loops: usize,
    rounds: Vec<VacuumRound>,
    unfolded: usize,
}

fn main() {
    if !common::asked_to_run("bulkheads") {
        return;
    }
    let began = Instant::now();
    let rounds = common::rounds(3);

    // (a)
    let mut migration = Vec::new();
    for path in [Path::Direct, Path::PgBouncer] {
        let results = migration_rounds(path, rounds);
        migration.push((path, results));
    }
    print_migration(&migration, rounds);

    // (b)
    let mut vacuum = Vec::new();
    for (path, load) in [
        (Path::Direct, 0),
        (Path::Direct, BUSY_LOOPS),
        (Path::PgBouncer, 0),
        (Path::PgBouncer, BUSY_LOOPS),
    ] {
        vacuum.push(vacuum_rounds(path, load, rounds));
    }
    print_vacuum(&vacuum, rounds);

    let path = common::write_json(
        "bulkheads",
        &json!({
            "rounds": rounds,
            "migration": migration.iter().map(|(path, rs)| json!({
                "path": path.name(),
                "schemas": MIGRATION_SCHEMAS,
                "locked": MIGRATION_LOCKED,
                "window_s": MIGRATION_WINDOW.as_secs(),
                "free_folds_without_lock": median(&rs.iter().map(|r| r.free_without).collect::<Vec<_>>()),
                "free_folds_during_lock": median(&rs.iter().map(|r| r.free_during).collect::<Vec<_>>()),
                "free_share_during_lock": median(&rs.iter().map(|r| r.free_during / r.free_without).collect::<Vec<_>>()),
                "caught_up_s": median(&rs.iter().map(|r| r.caught_up).collect::<Vec<_>>()),
                "database_lost": rs.iter().map(|r| r.database_lost).sum::<usize>(),
                "rounds": rs.iter().map(|r| json!({
                    "free_without": r.free_without, "free_during": r.free_during,
                    "possible": r.possible, "caught_up_s": r.caught_up,
                    "database_lost": r.database_lost,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "vacuum": vacuum.iter().map(|v| (v, &v.rounds)).map(|(v, rs)| json!({
                "path": v.path.name(),
                "busy_loops": v.busy_loops,
                "schemas": VACUUM_SCHEMAS,
                "naptime_ms": VACUUM_NAPTIME_MS,
                "vacuum_after": VACUUM_AFTER,
                "phase_s": PHASE.as_secs(),
                "folds_without": median(&rs.iter().map(|r| r.without).collect::<Vec<_>>()),
                "folds_with": median(&rs.iter().map(|r| r.with).collect::<Vec<_>>()),
                "share": median(&rs.iter().map(VacuumRound::share).collect::<Vec<_>>()),
                "rows_per_second": median(&rs.iter().map(|r| r.rows_per_second).collect::<Vec<_>>()),
                "schemas_without_a_fold_with_vacuum": v.unfolded,
                "rounds": rs.iter().map(|r| json!({
                    "without": r.without, "with": r.with, "possible": r.possible,
                    "seconds_without": r.seconds_without, "seconds_with": r.seconds_with,
                    "rows_per_second": r.rows_per_second,
                    "vacuums_done": r.vacuums_done, "vacuums_postponed": r.vacuums_postponed,
                    "vacuums_locked": r.vacuums_locked,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
    );
    println!(
        "figures: {} (the bench took {:.0} s)",
        path.display(),
        began.elapsed().as_secs_f64()
    );
}

/// The config file: `yaml`, with HTTP on `listen` and per-schema series.
fn config(yaml: &str, listen: &str) -> String {
    format!(
        "{yaml}log:\n  summary_every: 0s\nhttp:\n  listen: \"{listen}\"\n  per_schema_metrics_max: 1000\n"
    )
}

/// `pgfleet` on `db` through `url`, with `yaml` and HTTP on `listen`.
fn start_pgfleet(db: &TestDb, url: &str, yaml: &str, listen: &str) -> Pgfleet {
    Pgfleet::start_with(
        db,
        &config(yaml, listen),
        &[("PGFLEET__DATABASE__URL", url)],
    )
}

/// Waits until `schemas` workers run; panics with the log after a minute.
fn wait_running(pgfleet: &Pgfleet, listen: &str, schemas: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = Scrape::get(listen).and_then(|s| s.value(RUNNING));
        if running.is_some_and(|n| n as usize >= schemas) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{running:?} of {schemas} workers running after a minute; log:\n{}",
            pgfleet.lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Folds so far of each of `schemas`, from the per-schema series.
fn folds_of(scrape: &Scrape, schemas: impl Iterator<Item = usize>) -> f64 {
    schemas
        .map(|n| {
            scrape
                .value(&format!("pgfleet_folds_total{{schema=\"schema{n}\"}}"))
                .unwrap_or(0.0)
        })
        .sum()
}

/// Gives every schema of 1..=`n` a total row of 0, in one statement.
fn totals(db: &TestDb, n: usize) {
    let inserts: Vec<String> = (1..=n)
        .map(|i| format!("INSERT INTO schema{i}.counted VALUES ('total', 0);"))
        .collect();
    db.client()
        .batch_execute(&inserts.join("\n"))
        .expect("the total rows");
}

/// Part (a): `rounds` rounds of a fresh pgfleet each, on one database.
fn migration_rounds(path: Path, rounds: usize) -> Vec<MigrationRound> {
    let db = cluster().create_database();
    let (url, _bouncer) = path.url(&db);
    let yaml = format!("naptime: 1s\nworkers:\n  total: {MIGRATION_SCHEMAS}\n");
    let free = MIGRATION_LOCKED + 1..=MIGRATION_SCHEMAS;
    let possible = (MIGRATION_SCHEMAS - MIGRATION_LOCKED) as f64 * MIGRATION_WINDOW.as_secs_f64();
    let mut results = Vec::new();
    for round in 1..=rounds {
        let listen = common::free_listen();
        let pgfleet = start_pgfleet(&db, &url, &yaml, &listen);
        wait_running(&pgfleet, &listen, MIGRATION_SCHEMAS);
        if round == 1 {
            totals(&db, MIGRATION_SCHEMAS);
        }
        // A naptime for the first folds.
        std::thread::sleep(Duration::from_secs(1));

        let before = Scrape::get(&listen).expect("/metrics");
        std::thread::sleep(MIGRATION_WINDOW);
        let after = Scrape::get(&listen).expect("/metrics");
        let free_without = folds_of(&after, free.clone()) - folds_of(&before, free.clone());

        let mut migration = db.client();
        let tables: Vec<String> = (1..=MIGRATION_LOCKED)
            .map(|n| format!("schema{n}.counted"))
            .collect();
        // A delta in each locked table, committed with the migration: the
        // schema has folded it once its total has it.
        let deltas: Vec<String> = (1..=MIGRATION_LOCKED)
            .map(|n| format!("INSERT INTO schema{n}.counted VALUES ('delta', 1);"))
            .collect();
        migration
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {} IN EXCLUSIVE MODE; {}",
                tables.join(", "),
                deltas.join(" ")
            ))
            .expect("the migration's locks");
        std::thread::sleep(MIGRATION_SETTLE);
        let before = Scrape::get(&listen).expect("/metrics");
        std::thread::sleep(MIGRATION_WINDOW);
        let after = Scrape::get(&listen).expect("/metrics");
        let free_during = folds_of(&after, free.clone()) - folds_of(&before, free.clone());

        migration
            .batch_execute("COMMIT")
            .expect("the migration commits");
        let released = Instant::now();
        let pending = format!(
            "SELECT count(*) FROM ({}) AS deltas",
            (1..=MIGRATION_LOCKED)
                .map(|n| format!("SELECT 1 FROM schema{n}.counted WHERE type = 'delta'"))
                .collect::<Vec<_>>()
                .join(" UNION ALL ")
        );
        let caught_up = loop {
            let left: i64 = migration
                .query_one(&pending, &[])
                .expect("deltas left")
                .get(0);
            if left == 0 {
                break released.elapsed().as_secs_f64();
            }
            if released.elapsed() > Duration::from_secs(60) {
                break f64::INFINITY;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let r = MigrationRound {
            free_without,
            free_during,
            possible,
            caught_up,
            database_lost: pgfleet.events("database_lost").len(),
        };
        println!(
            "  (a) {} round {round}/{rounds}: the {} unlocked schemas folded {:.0} times without the lock, \
             {:.0} during it ({:.1}%; {possible:.0} ticks); every locked schema folded {:.2} s after the release",
            path.name(),
            MIGRATION_SCHEMAS - MIGRATION_LOCKED,
            r.free_without,
            r.free_during,
            100.0 * r.free_during / r.free_without,
            r.caught_up
        );
        results.push(r);
    }
    results
}

/// Part (b): one fleet, `rounds` pairs of phases (`vacuum_after: 0`, then
/// [`VACUUM_AFTER`]).
fn vacuum_rounds(path: Path, busy_loops: usize, rounds: usize) -> VacuumSetting {
    let _load = CpuLoad::start(busy_loops);
    let db = cluster().create_database();
    let (url, _bouncer) = path.url(&db);
    let listen = common::free_listen();
    let yaml = |vacuum_after: u64| {
        format!(
            "naptime: {VACUUM_NAPTIME_MS}ms\nworkers:\n  total: {VACUUM_SCHEMAS}\n  vacuum_after: {vacuum_after}\n"
        )
    };
    let pgfleet = start_pgfleet(&db, &url, &yaml(0), &listen);
    wait_running(&pgfleet, &listen, VACUUM_SCHEMAS);
    totals(&db, VACUUM_SCHEMAS);
    let schemas: Vec<String> = (1..=VACUUM_SCHEMAS).map(|n| format!("schema{n}")).collect();
    let _writers = SpreadWriters::start(&db, &schemas, 8, WRITES_PER_SECOND);

    let mut folded_with = vec![0.0; VACUUM_SCHEMAS];
    let mut results = Vec::new();
    for round in 1..=rounds {
        let phase = |vacuum_after: u64, folded: Option<&mut Vec<f64>>| {
            let reload = pgfleet.mark();
            pgfleet.reload(&config(&yaml(vacuum_after), &listen));
            pgfleet.wait_for_from(reload, "the reload", |e| e["event"] == "config_reloaded");
            std::thread::sleep(PHASE_SETTLE);
            let before = Scrape::get(&listen).expect("/metrics");
            let started = Instant::now();
            std::thread::sleep(PHASE);
            let after = Scrape::get(&listen).expect("/metrics");
            let seconds = started.elapsed().as_secs_f64();
            if let Some(folded) = folded {
                for (n, total) in folded.iter_mut().enumerate() {
                    *total += folds_of(&after, std::iter::once(n + 1))
                        - folds_of(&before, std::iter::once(n + 1));
                }
            }
            let delta = |key: &str| after.sum(key) - before.sum(key);
            let vacuums = |result: &str| {
                let key = format!("pgfleet_vacuums_total{{result=\"{result}\"}}");
                after.value(&key).unwrap_or(0.0) - before.value(&key).unwrap_or(0.0)
            };
            (
                delta("pgfleet_folds_total"),
                delta("pgfleet_rows_folded_total") / seconds,
                seconds,
                [vacuums("done"), vacuums("postponed"), vacuums("locked")],
            )
        };
        let (without, rows_without, seconds_without, _) = phase(0, None);
        let (with, rows_with, seconds_with, [done, postponed, locked]) =
            phase(VACUUM_AFTER, Some(&mut folded_with));
        let r = VacuumRound {
            without,
            with,
            possible: seconds_without * 1000.0 / VACUUM_NAPTIME_MS as f64 * VACUUM_SCHEMAS as f64,
            seconds_without,
            seconds_with,
            rows_per_second: (rows_without + rows_with) / 2.0,
            vacuums_done: done,
            vacuums_postponed: postponed,
            vacuums_locked: locked,
        };
        println!(
            "  (b) {}{} round {round}/{rounds}: {:.0} folds with vacuum_after {VACUUM_AFTER}, {:.0} with 0 \
             ({:.1}%; {:.0} ticks); {:.0} deltas/s; VACUUMs {done:.0} done, {postponed:.0} postponed, {locked:.0} locked",
            path.name(),
            if busy_loops > 0 { format!(" + {busy_loops} busy loops") } else { String::new() },
            r.with,
            r.without,
            100.0 * r.share(),
            r.possible,
            r.rows_per_second
        );
        results.push(r);
    }
    let unfolded = folded_with.iter().filter(|n| **n == 0.0).count();
    for event in ["database_lost", "worker_failed"] {
        let found = pgfleet.events(event);
        if !found.is_empty() {
            println!("  (b) {}: {} {event} events", path.name(), found.len());
        }
    }
    VacuumSetting {
        path,
        busy_loops,
        rounds: results,
        unfolded,
    }
}

fn print_migration(results: &[(Path, Vec<MigrationRound>)], rounds: usize) {
    println!(
        "(a) a migration holds {MIGRATION_LOCKED} of {MIGRATION_SCHEMAS} tables (LOCK TABLE … IN EXCLUSIVE MODE), \
         naptime 1s, defaults otherwise; {} s windows, median of {rounds} rounds",
        MIGRATION_WINDOW.as_secs()
    );
    print!("  {:<52}", "figure");
    for (path, _) in results {
        print!(" {:>24}", path.name());
    }
    println!("   goal");
    let row = |name: &str, f: &dyn Fn(&[MigrationRound]) -> String, goal: &str| {
        print!("  {name:<52}");
        for (_, rs) in results {
            print!(" {:>24}", f(rs));
        }
        println!("   {goal}");
    };
    let m = |rs: &[MigrationRound], f: &dyn Fn(&MigrationRound) -> f64| {
        median(&rs.iter().map(f).collect::<Vec<_>>())
    };
    row(
        "folds of the other 100, without the lock",
        &|rs| {
            format!(
                "{:.0} of {:.0}",
                m(rs, &|r| r.free_without),
                m(rs, &|r| r.possible)
            )
        },
        "",
    );
    row(
        "folds of the other 100, while it holds the lock",
        &|rs| {
            format!(
                "{:.0} of {:.0}",
                m(rs, &|r| r.free_during),
                m(rs, &|r| r.possible)
            )
        },
        "",
    );
    row(
        "during / without",
        &|rs| format!("{:.1}%", 100.0 * m(rs, &|r| r.free_during / r.free_without)),
        ">= 90%",
    );
    row(
        "every locked schema folded, after the release",
        &|rs| format!("{:.2} s", m(rs, &|r| r.caught_up)),
        "< 3 s",
    );
    row(
        "database_lost (all rounds)",
        &|rs| format!("{}", rs.iter().map(|r| r.database_lost).sum::<usize>()),
        "0",
    );
}

fn print_vacuum(results: &[VacuumSetting], rounds: usize) {
    println!(
        "(b) frequent VACUUM: {VACUUM_SCHEMAS} schemas, naptime {VACUUM_NAPTIME_MS}ms, pgbench at up to \
         {WRITES_PER_SECOND} deltas/s; vacuum_after {VACUUM_AFTER} against 0, switched by a reload, \
         {} s phases, median of {rounds} rounds",
        PHASE.as_secs()
    );
    print!("  {:<44}", "figure");
    for setting in results {
        let name = match (setting.path, setting.busy_loops) {
            (Path::Direct, 0) => "direct".to_string(),
            (Path::Direct, n) => format!("direct, {n} busy"),
            (Path::PgBouncer, 0) => "PgBouncer".to_string(),
            (Path::PgBouncer, n) => format!("PgBouncer, {n} busy"),
        };
        print!(" {name:>18}");
    }
    println!("   goal");
    let row = |name: &str, f: &dyn Fn(&VacuumSetting) -> String, goal: &str| {
        print!("  {name:<44}");
        for setting in results {
            print!(" {:>18}", f(setting));
        }
        println!("   {goal}");
    };
    let m = |rs: &[VacuumRound], f: &dyn Fn(&VacuumRound) -> f64| {
        median(&rs.iter().map(f).collect::<Vec<_>>())
    };
    row(
        "deltas folded a second",
        &|v| format!("{:.0}", m(&v.rounds, &|r| r.rows_per_second)),
        "",
    );
    row(
        "folds, vacuum_after 0",
        &|v| {
            let rs = &v.rounds;
            format!(
                "{:.0} of {:.0}",
                m(rs, &|r| r.without),
                m(rs, &|r| r.possible)
            )
        },
        "",
    );
    row(
        &format!("folds, vacuum_after {VACUUM_AFTER}"),
        &|v| {
            let rs = &v.rounds;
            format!("{:.0} of {:.0}", m(rs, &|r| r.with), m(rs, &|r| r.possible))
        },
        "",
    );
    row(
        &format!("vacuum_after {VACUUM_AFTER} / 0"),
        &|v| format!("{:.1}%", 100.0 * m(&v.rounds, &VacuumRound::share)),
        ">= 90%",
    );
    row(
        "schemas without a fold while VACUUM ran",
        &|v| format!("{}", v.unfolded),
        "0",
    );
    row(
        "VACUUMs a phase: done / postponed / locked",
        &|v| {
            let rs = &v.rounds;
            format!(
                "{:.0} / {:.0} / {:.0}",
                m(rs, &|r| r.vacuums_done),
                m(rs, &|r| r.vacuums_postponed),
                m(rs, &|r| r.vacuums_locked)
            )
        },
        "",
    );
}

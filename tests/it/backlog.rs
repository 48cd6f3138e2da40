//! A backlog bigger than one statement (issue 16 §5, SPEC §11): millions
//! of deltas piled up while pgfleet was stopped are folded exactly, in
//! batches of `workers.fold_batch` rows that each fit in
//! `statement_timeout`, one right after the other rather than one a
//! naptime, with the backlog left shown; the other schemas fold on, and
//! `total + remaining deltas == committed` holds at every instant.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::http::{json, start};
use crate::support::cluster::{cluster, TestDb};
use crate::support::pgfleet::{execute, scalar_i64, schema_names, Pgfleet};
use crate::support::schemas::counter_table;
use crate::support::writers::{ledger, Writers};

fn deltas(db: &TestDb, schema: &str) -> i64 {
    scalar_i64(
        db,
        &format!("SELECT count(*) FROM {schema}.counted WHERE type = 'delta'"),
    )
}

/// `/workers/{schema}`'s `folds`.
fn folds(address: SocketAddr, schema: &str) -> u64 {
    json(address, &format!("/workers/{schema}"))["folds"]
        .as_u64()
        .expect("folds")
}

const BACKLOG: i64 = 3_000_000;
const NAPTIME: Duration = Duration::from_millis(500);
/// A batch fits in `statement_timeout` (2 s): this long without one is a stall.
const STALL: Duration = Duration::from_secs(10);
/// The whole backlog, on the slowest machine seen (CI: 60 batches in ~60 s).
const CAP: Duration = Duration::from_secs(240);

/// The scenario: 3,000,000 deltas, which one statement cannot
/// delete within `statement_timeout: 2s` on this machine, in one schema;
/// pgbench writers on it and on a second schema, which shares the one
/// pooled connection with it. The backlog is folded exactly, batch after
/// batch without a stall; the second schema folds at least 90% of its ticks meanwhile;
/// no fold times out; the invariant holds whenever it is looked at.
#[test]
fn three_million_deltas_fold_in_batches_while_another_schema_folds_on() {
    let db = cluster().create_database();
    let schemas = schema_names(2);
    for schema in &schemas {
        counter_table(&db, schema);
    }
    execute(
        &db,
        &format!(
            "INSERT INTO schema1.counted SELECT 'delta', 1 FROM generate_series(1, {BACKLOG})"
        ),
    );
    let writers = Writers::start(&db, &schemas);
    let (pgfleet, address) = start(
        &db,
        &format!(
            "naptime: {}ms\nworkers:\n  total: 2\ndatabase:\n  pool_size: 1\n  statement_timeout: 2s\n\
             log:\n  summary_every: 0s\n",
            NAPTIME.as_millis()
        ),
        &[],
    );
    pgfleet.wait_schema_event("worker_started", "schema2");
    let started = Instant::now();
    let other_before = folds(address, "schema2");

    // Progress is visible while it catches up.
    // How fast a batch goes depends on the machine (0.2 s calm, 0.8 s on a
    // busy CI runner): what must hold is that it never stalls, so the
    // deadline is for progress, with a generous cap for the whole backlog.
    let mut backlog_seen = None;
    let mut checks = 0;
    let mut left = deltas(&db, "schema1");
    let mut last_progress = Instant::now();
    while left > 50_000 {
        assert!(
            last_progress.elapsed() < STALL && started.elapsed() < CAP,
            "the backlog stalled ({} without a batch, {:.0} s in): {left} deltas left; log:\n{}",
            humantime::format_duration(last_progress.elapsed()),
            started.elapsed().as_secs_f64(),
            pgfleet.lines().join("\n")
        );
        let (counted, committed) = ledger(&db, &schemas);
        assert_eq!(
            counted,
            committed + BACKLOG,
            "total + remaining deltas != committed"
        );
        checks += 1;
        let worker = json(address, "/workers/schema1");
        if worker["backlog"].as_u64().is_some_and(|left| left > 0) {
            backlog_seen = Some(worker);
        }
        std::thread::sleep(Duration::from_millis(100));
        let now_left = deltas(&db, "schema1");
        if now_left < left {
            last_progress = Instant::now();
        }
        left = now_left;
    }
    let caught_up = pgfleet.wait_schema_event("worker_caught_up", "schema1");
    let took = started.elapsed();
    let other_folds = folds(address, "schema2") - other_before;
    let possible = took.as_secs_f64() / NAPTIME.as_secs_f64();
    writers.stop();
    pgfleet.eventually("every delta folded", || {
        deltas(&db, "schema1") == 0 && deltas(&db, "schema2") == 0
    });
    let (counted, committed) = ledger(&db, &schemas);
    assert_eq!(
        counted,
        committed + BACKLOG,
        "total + remaining deltas != committed"
    );

    let batches: Vec<_> = pgfleet
        .events("worker_tick")
        .into_iter()
        .filter(|e| e["schema"] == "schema1" && e["backlog"].is_u64())
        .collect();
    let sizes: Vec<u64> = batches
        .iter()
        .filter_map(|e| e["folded"].as_u64())
        .collect();
    eprintln!(
        "MEASURED a backlog of {BACKLOG} deltas with statement_timeout 2s: caught up in {:.1} s \
         ({} full batches of {} to {} rows, {}); the other schema on the same connection folded {other_folds} times \
         of about {possible:.0} ticks ({:.1}%); the invariant held at {checks} looks",
        took.as_secs_f64(),
        batches.len(),
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0),
        caught_up["msg"],
        100.0 * other_folds as f64 / possible
    );
    // 50,000 rows at most (workers.fold_batch), fewer where a batch took
    // longer than half the naptime.
    assert!(batches.len() >= 59, "{} full batches", batches.len());
    assert!(
        sizes.iter().all(|&rows| (1_000..=50_000).contains(&rows)),
        "{sizes:?}"
    );
    assert!(
        batches.iter().all(|e| e["backlog"].as_u64().is_some()),
        "a full batch's line has no backlog: {batches:?}"
    );
    let shown = backlog_seen.expect("/workers never showed a backlog for schema1");
    assert!(shown["backlog"].as_u64().is_some(), "{shown}");
    assert!(
        other_folds as f64 >= 0.9 * possible,
        "the other schema folded {other_folds} times of about {possible:.0} ticks; log:\n{}",
        pgfleet.lines().join("\n")
    );
    let skipped_for_timeouts = pgfleet
        .events("worker_tick_skipped")
        .into_iter()
        .filter(|e| e["reason"] == "timed_out")
        .count();
    assert_eq!(skipped_for_timeouts, 0, "a fold timed out");
    for event in ["worker_failed", "database_lost"] {
        pgfleet.assert_no_event(event);
    }
}

/// Batches of `fold_batch` rows, each right after the one before (not a
/// naptime later), each saying the backlog it left: counted exactly up to
/// ten batches' worth, then "at least" that; a line when it is caught up.
#[test]
fn batches_follow_each_other_and_count_what_is_left() {
    let db = cluster().create_database();
    counter_table(&db, "schema1");
    execute(
        &db,
        "INSERT INTO schema1.counted SELECT 'delta', 2 FROM generate_series(1, 135)",
    );
    let pgfleet = Pgfleet::start(
        &db,
        "naptime: 10s\nworkers:\n  total: 1\n  fold_batch: 10\n  vacuum_after: 0\n",
    );
    // The first fold now, not at the schema's slot up to a naptime away: a
    // reload folds every schema at once.
    pgfleet.wait_schema_event("worker_started", "schema1");
    pgfleet.signal(libc::SIGHUP);
    let caught_up = pgfleet.wait_schema_event("worker_caught_up", "schema1");
    let ticks: Vec<_> = pgfleet
        .events("worker_tick")
        .into_iter()
        .filter(|e| e["folded"].as_i64().is_some_and(|n| n > 0))
        .collect();
    let folded: Vec<i64> = ticks.iter().filter_map(|e| e["folded"].as_i64()).collect();
    assert_eq!(folded, [vec![10; 13], vec![5]].concat(), "{ticks:#?}");
    let left: Vec<Option<u64>> = ticks.iter().map(|e| e["backlog"].as_u64()).collect();
    let expected: Vec<Option<u64>> = [90, 90, 90, 90, 85, 75, 65, 55, 45, 35, 25, 15, 5]
        .into_iter()
        .map(Some)
        .chain([None])
        .collect();
    assert_eq!(left, expected, "{ticks:#?}");
    let at_least: Vec<bool> = ticks
        .iter()
        .map(|e| e["backlog_at_least"] == true)
        .collect();
    assert_eq!(at_least[..5], [true, true, true, true, false], "{ticks:#?}");
    assert_eq!(ticks[13]["total"], 270, "{ticks:#?}");
    // All within a fraction of the naptime.
    let first = ticks[0]["ts"].as_str().expect("ts");
    let last = ticks[13]["ts"].as_str().expect("ts");
    let spread: f64 = db
        .client()
        .query_one(
            "SELECT extract(epoch FROM $1::text::timestamptz - $2::text::timestamptz)::float8",
            &[&last, &first],
        )
        .expect("seconds between the first and the last batch")
        .get(0);
    assert!(spread < 2.0, "14 batches took {spread} s");
    assert_eq!(caught_up["rows"], 135, "{caught_up}");
    assert_eq!(caught_up["batches"], 14, "{caught_up}");
    assert_eq!(deltas(&db, "schema1"), 0);
}

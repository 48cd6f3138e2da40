//! Starting the fleet: generations numbered per schema, one
//! `workers_started` line when every worker has initialised its schema,
//! and progress lines (`workers_starting`) while a large fleet starts.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::support::cluster::cluster;
use crate::support::pgfleet::{schema_names, Pgfleet, PATIENCE};

#[test]
fn generations_number_the_workers_of_each_schema() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start_with(
        &db,
        "workers:\n  total: 3\n",
        &[("TEST_HOOK_PANIC_IN_FOLD_OF", "schema2")],
    );
    let started = pgfleet.wait_event("workers_started");
    assert_eq!(started["workers"], 3, "{started}");
    // schema2 fails at its first fold and is restarted: its second worker.
    let restarted = pgfleet.wait_for("the restart of schema2", |e| {
        e["event"] == "worker_started" && e["schema"] == "schema2" && e["generation"] == 2
    });
    assert_eq!(restarted["worker"], "worker 2", "{restarted}");
    let first: BTreeMap<String, u64> = pgfleet
        .events("worker_started")
        .iter()
        .filter_map(|e| Some((e["schema"].as_str()?.to_owned(), e["generation"].as_u64()?)))
        .filter(|(schema, _)| schema != "schema2")
        .collect();
    assert_eq!(
        first,
        BTreeMap::from([("schema1".to_owned(), 1), ("schema3".to_owned(), 1)]),
        "every schema's first worker is generation 1"
    );
    let failed = pgfleet.wait_schema_event("worker_failed", "schema2");
    assert_eq!(failed["generation"], 1, "{failed}");
    let restarted = pgfleet.wait_schema_event("worker_restarted", "schema2");
    assert_eq!(restarted["generation"], 2, "{restarted}");
    assert_eq!(pgfleet.events("workers_started").len(), 1);
}

#[test]
fn a_large_fleet_logs_its_start_progress() {
    let db = cluster().create_database();
    // The smallest fleet that logs progress: creating its 1,000 schemas and
    // tables takes a few seconds.
    let began = Instant::now();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 1000\n");
    // A few seconds on a calm machine, over a minute on a crowded one:
    // what must hold is that the start goes on, not how fast.
    let mut seen = 0;
    let mut last_progress = Instant::now();
    let done = loop {
        if let Some(done) = pgfleet.events("workers_started").pop() {
            break done;
        }
        let now_seen = pgfleet.events("worker_started").len();
        if now_seen > seen {
            (seen, last_progress) = (now_seen, Instant::now());
        }
        assert!(
            last_progress.elapsed() < PATIENCE,
            "the start stalled at {seen} of 1,000 workers:\n{}",
            pgfleet.lines().join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let took = began.elapsed();
    assert_eq!(done["workers"], 1000, "{done}");
    let progress = pgfleet.events("workers_starting");
    assert!(!progress.is_empty(), "no progress in {took:?}");
    let mut last = 0;
    for line in &progress {
        assert_eq!(line["workers"], 1000, "{line}");
        let started = line["started"].as_u64().unwrap_or_default();
        assert!(started > last && started < 1000, "{progress:?}");
        last = started;
    }
    // About once a second: no more lines than seconds it took.
    assert!(
        progress.len() as u64 <= took.as_secs() + 1,
        "{} lines in {took:?}",
        progress.len()
    );
    assert_eq!(
        pgfleet.events("worker_started").len(),
        schema_names(1000).len()
    );
    eprintln!(
        "MEASURED start of 1,000 workers (schemas created): workers_started after {} ms, {} progress lines",
        took.as_millis(),
        progress.len()
    );
}

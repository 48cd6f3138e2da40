//! Folds pipelined on shared connections (`db::lanes`): several due folds
//! sent on one connection without waiting for each answer, counted by
//! `pgfleet_folds_pipelined_total`; never behind a pooler, where each
//! fold's `SET LOCAL`s need a transaction of their own.

use std::time::Duration;

use crate::http::{scrape, start, value};
use crate::support::cluster::cluster;
use crate::support::pgbouncer::PgBouncer;
use crate::support::pgfleet::{eventually, ready, schema_names};
use crate::support::writers::{ledger, Writers};

fn pipelined(address: std::net::SocketAddr) -> f64 {
    value(&scrape(address), "pgfleet_folds_pipelined_total", &[]).unwrap_or(-1.0)
}

/// Twenty workers on one connection: folds share it, and writers'
/// deltas are all counted.
#[test]
fn folds_share_a_connection_and_lose_nothing() {
    let db = cluster().create_database();
    let schemas = schema_names(20);
    let (pgfleet, address) = start(
        &db,
        "naptime: 20ms\nworkers:\n  total: 20\n  vacuum_after: 0\ndatabase:\n  pool_size: 1\n",
        &[],
    );
    ready(&pgfleet, &db, &schemas);
    let writers = Writers::start(&db, &schemas);
    std::thread::sleep(Duration::from_secs(2));
    writers.stop();
    let (counted, committed) = ledger(&db, &schemas);
    assert_eq!(counted, committed, "total + remaining deltas != committed");
    eventually("folds pipelined on the one connection", || {
        pipelined(address) > 0.0
    });
    assert!(
        pgfleet.events("worker_failed").is_empty(),
        "{:?}",
        pgfleet.events("worker_failed")
    );
}

#[test]
fn behind_a_pooler_each_fold_has_its_connection() {
    let db = cluster().create_database();
    let bouncer = PgBouncer::start(cluster().port(), "transaction", "");
    let schemas = schema_names(10);
    let (pgfleet, address) = start(
        &db,
        "naptime: 20ms\nworkers:\n  total: 10\ndatabase:\n  pool_size: 1\n",
        &[("PGFLEET__DATABASE__URL", &bouncer.url(&db.name))],
    );
    pgfleet.wait_event("pooler_detected");
    ready(&pgfleet, &db, &schemas);
    let writers = Writers::start(&db, &schemas);
    std::thread::sleep(Duration::from_secs(1));
    writers.stop();
    let (counted, committed) = ledger(&db, &schemas);
    assert_eq!(counted, committed, "total + remaining deltas != committed");
    // Ten workers every 20 ms on one connection: plenty of folds due
    // together, none of them pipelined.
    eventually("schema1 folded a dozen times", || {
        value(
            &scrape(address),
            "pgfleet_folds_total",
            &[("schema", "schema1")],
        ) > Some(12.0)
    });
    assert_eq!(pipelined(address), 0.0);
}

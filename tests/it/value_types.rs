//! Counters beyond 2³¹ (issue 16 §4, SPEC §11): the value column may be
//! `integer`, `bigint` or `numeric` (and `smallint`), from the start or
//! changed under a running worker; each type's overflow fails loudly with
//! nothing changed; what pgfleet says (the log line, `/workers`) is the
//! table's true total, on the prepared path and the unprepared one.

use std::net::SocketAddr;

use serde_json::Value;

use crate::http::{json, scrape, start, value};
use crate::support::cluster::{cluster, TestDb};
use crate::support::pgfleet::{execute, scalar_i64, schema_names, Pgfleet};
use crate::support::writers::{ledger, Writers};

/// worker_spi's table, with `value` of type `value_type`, in a new schema.
fn create_table(db: &TestDb, schema: &str, value_type: &str) {
    execute(
        db,
        &format!(
            "CREATE SCHEMA {schema} CREATE TABLE counted (type text CHECK (type IN ('total', 'delta')), \
             value {value_type}) CREATE UNIQUE INDEX counted_unique_total ON counted (type) WHERE type = 'total'"
        ),
    );
}

/// The total as the table holds it, as text (exact for every type).
fn total_text(db: &TestDb, schema: &str) -> String {
    db.client()
        .query_one(
            &format!("SELECT value::text FROM {schema}.counted WHERE type = 'total'"),
            &[],
        )
        .expect("the total row")
        .get(0)
}

fn deltas(db: &TestDb, schema: &str) -> i64 {
    scalar_i64(
        db,
        &format!("SELECT count(*) FROM {schema}.counted WHERE type = 'delta'"),
    )
}

/// `/workers/{schema}`'s `last_total`.
fn last_total(address: SocketAddr, schema: &str) -> Value {
    json(address, &format!("/workers/{schema}"))["last_total"].clone()
}

/// The first thing a user does when a counter outgrows `integer`: ALTER it
/// to `bigint`, under the running worker and its writers. The worker goes
/// on (one `worker_table_changed`, no failure), folds past 2³¹, and says
/// the true total in its log line and in `/workers`; nothing is lost.
fn an_integer_column_widened_under_writers(prepared: &str) {
    let db = cluster().create_database();
    let schemas = schema_names(2);
    let (pgfleet, address) = start(
        &db,
        &format!(
            "naptime: 100ms\nworkers:\n  total: 2\n  vacuum_after: 0\ndatabase:\n  prepared: \"{prepared}\"\n"
        ),
        &[],
    );
    for schema in &schemas {
        pgfleet.wait_schema_event("worker_started", schema);
    }
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('total', 2000000000); \
         INSERT INTO schema2.counted VALUES ('total', 0)",
    );
    let writers = Writers::start(&db, &schemas);
    pgfleet.wait_for("a fold under the writers", |e| {
        e["event"] == "worker_tick"
            && e["schema"] == "schema1"
            && e["folded"].as_i64().is_some_and(|n| n > 0)
    });
    let prepared_before = value(&scrape(address), "pgfleet_prepared_statements", &[]);
    if prepared == "auto" {
        assert!(
            prepared_before.is_some_and(|n| n >= 1.0),
            "the folds are not prepared: {prepared_before:?}"
        );
    }
    let altered = std::time::Instant::now();
    execute(&db, "ALTER TABLE schema1.counted ALTER value TYPE bigint");
    // Alone beyond what integer holds.
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('delta', 3000000000)",
    );
    let beyond = pgfleet.wait_for("schema1's total beyond 2^31", |e| {
        e["event"] == "worker_tick"
            && e["schema"] == "schema1"
            && e["total"].as_i64().is_some_and(|t| t > 5_000_000_000)
    });
    let beyond_after = altered.elapsed();
    assert!(
        beyond["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("worker 1: count in schema1.counted is now 5")),
        "{beyond}"
    );
    writers.stop();
    pgfleet.eventually("every delta folded", || {
        deltas(&db, "schema1") == 0 && deltas(&db, "schema2") == 0
    });
    let (counted, committed) = ledger(&db, &schemas);
    assert_eq!(
        counted,
        committed + 2_000_000_000 + 3_000_000_000,
        "total + remaining deltas != committed"
    );
    let total: i64 = total_text(&db, "schema1").parse().expect("a bigint");
    assert!(total > 5_000_000_000);
    eprintln!(
        "MEASURED ALTER value TYPE bigint under writers (prepared: {prepared}): folded beyond 2^31 \
         {} ms after the ALTER; {committed} deltas committed, all folded; total {total}",
        beyond_after.as_millis()
    );
    pgfleet.wait_for("the line with the table's total", |e| {
        e["event"] == "worker_tick" && e["schema"] == "schema1" && e["total"] == total
    });
    pgfleet.eventually("/workers shows the table's total", || {
        last_total(address, "schema1") == total
    });

    let changed = pgfleet.events("worker_table_changed");
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["schema"], "schema1", "{changed:?}");
    assert_eq!(changed[0]["level"], "info", "{changed:?}");
    assert_eq!(changed[0]["value_type"], "bigint", "{changed:?}");
    assert_eq!(changed[0]["was"], "integer", "{changed:?}");
    for event in ["worker_failed", "worker_restarted", "database_lost"] {
        pgfleet.assert_no_event(event);
    }
}

#[test]
fn an_integer_column_widened_to_bigint_under_writers_is_picked_up_prepared() {
    an_integer_column_widened_under_writers("auto");
}

#[test]
fn an_integer_column_widened_to_bigint_under_writers_is_picked_up_unprepared() {
    an_integer_column_widened_under_writers("off");
}

/// Tables made with a wider column than worker_spi's fold from the start,
/// and their totals reach the log and `/workers` exactly: a JSON number
/// for a whole total within bigint's range, the exact text as a string for
/// a numeric one beyond it or with a fraction.
fn wide_columns_fold_from_the_start(prepared: &str) {
    let db = cluster().create_database();
    create_table(&db, "small", "smallint");
    create_table(&db, "big", "bigint");
    create_table(&db, "exact", "numeric");
    create_table(&db, "cents", "numeric(20, 2)");
    execute(
        &db,
        "INSERT INTO small.counted VALUES ('total', 100), ('delta', 1);
         INSERT INTO big.counted VALUES ('total', 9000000000000000000), ('delta', 100), ('delta', 23);
         INSERT INTO exact.counted VALUES ('total', 1000000000000000000000000000000), ('delta', 1), ('delta', 2);
         INSERT INTO cents.counted VALUES ('total', 0.50), ('delta', 0.25), ('delta', 0.25)",
    );
    let (pgfleet, address) = start(
        &db,
        &format!(
            "workers:\n  schemas: [small, big, exact, cents]\ndatabase:\n  prepared: \"{prepared}\"\n"
        ),
        &[],
    );
    let expected: [(&str, Value); 4] = [
        ("small", Value::from(101)),
        ("big", Value::from(9_000_000_000_000_000_123_i64)),
        ("exact", Value::from("1000000000000000000000000000003")),
        ("cents", Value::from("1.00")),
    ];
    for (schema, total) in &expected {
        let tick = pgfleet.wait_for(&format!("{schema} folded to {total}"), |e| {
            e["event"] == "worker_tick" && e["schema"] == *schema && e["total"] == *total
        });
        let shown = total
            .as_str()
            .map_or_else(|| total.to_string(), str::to_owned);
        assert_eq!(
            tick["msg"],
            format!("{schema}: count in {schema}.counted is now {shown}"),
            "{tick}"
        );
        assert_eq!(total_text(&db, schema), shown);
        assert_eq!(deltas(&db, schema), 0);
        pgfleet.eventually(&format!("/workers shows {schema}'s total"), || {
            last_total(address, schema) == *total
        });
    }
    pgfleet.assert_no_event("worker_failed");
    pgfleet.assert_no_event("worker_table_changed");
}

#[test]
fn smallint_bigint_and_numeric_columns_fold_from_the_start_prepared() {
    wide_columns_fold_from_the_start("auto");
}

#[test]
fn smallint_bigint_and_numeric_columns_fold_from_the_start_unprepared() {
    wide_columns_fold_from_the_start("off");
}

/// bigint's overflow fails the worker as integer's does, saying which type
/// overflowed; nothing changes in the table.
#[test]
fn a_bigint_overflow_changes_nothing_and_says_bigint() {
    let db = cluster().create_database();
    create_table(&db, "big", "bigint");
    execute(
        &db,
        "INSERT INTO big.counted VALUES ('total', 9223372036854775800), ('delta', 5), ('delta', 5)",
    );
    let pgfleet = Pgfleet::start(
        &db,
        "workers:\n  schemas: [big]\nrestart:\n  policy: never\n",
    );
    let failed = pgfleet.wait_schema_event("worker_failed", "big");
    let error = failed["error"].as_str().expect("error field");
    assert!(
        error.contains("overflow bigint") && error.contains("22003"),
        "{error}"
    );
    assert!(error.contains("9223372036854775807"), "{error}");
    pgfleet.wait_schema_event("worker_given_up", "big");
    assert_eq!(total_text(&db, "big"), "9223372036854775800");
    assert_eq!(deltas(&db, "big"), 2);
}

/// integer's overflow, as before, and the message names the way out.
#[test]
fn an_integer_overflow_names_the_wider_type() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 1\nrestart:\n  policy: never\n");
    pgfleet.wait_schema_event("worker_started", "schema1");
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('total', 2147483600), ('delta', 40), ('delta', 40)",
    );
    let failed = pgfleet.wait_schema_event("worker_failed", "schema1");
    let error = failed["error"].as_str().expect("error field");
    assert!(
        error.contains("overflow integer")
            && error.contains("2147483647")
            && error.contains("ALTER TABLE \"schema1\".\"counted\" ALTER value TYPE bigint"),
        "{error}"
    );
    assert_eq!(total_text(&db, "schema1"), "2147483600");
    assert_eq!(deltas(&db, "schema1"), 2);
}

/// A column pgfleet cannot fold exactly (floating point) is refused at
/// initialisation, saying which types it folds; its deltas stay.
#[test]
fn a_floating_point_column_is_refused_and_left_alone() {
    let db = cluster().create_database();
    create_table(&db, "float", "double precision");
    execute(
        &db,
        "INSERT INTO float.counted VALUES ('total', 0.5), ('delta', 0.25)",
    );
    let pgfleet = Pgfleet::start(
        &db,
        "workers:\n  schemas: [float]\nrestart:\n  policy: never\n",
    );
    let failed = pgfleet.wait_schema_event("worker_failed", "float");
    let error = failed["error"].as_str().expect("error field");
    assert!(
        error.contains("double precision") && error.contains("bigint"),
        "{error}"
    );
    pgfleet.assert_no_event("worker_started");
    assert_eq!(deltas(&db, "float"), 1);
}

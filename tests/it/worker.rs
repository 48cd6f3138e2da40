//! What a worker does to its table (SPEC §2): worker_spi's behaviour, and
//! the guards pgfleet adds.

use std::thread;
use std::time::Duration;

use crate::support::cluster::{cluster, TestDb};
use crate::support::pgfleet::{eventually, execute, scalar_i64, Pgfleet};

fn total(db: &TestDb, schema: &str) -> Option<i64> {
    db.client()
        .query_opt(
            &format!("SELECT value::bigint FROM {schema}.counted WHERE type = 'total'"),
            &[],
        )
        .expect("read total")
        .and_then(|row| row.get(0))
}

fn deltas(db: &TestDb, schema: &str) -> i64 {
    scalar_i64(
        db,
        &format!("SELECT count(*) FROM {schema}.counted WHERE type = 'delta'"),
    )
}

/// PostgreSQL's own worker_spi test: four workers, a total and a delta in
/// schema4, and the total becomes 1.
#[test]
fn worker_spi_regression_scenario() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 4\n");
    for n in 1..=4 {
        pgfleet.wait_schema_event("worker_started", &format!("schema{n}"));
    }
    execute(
        &db,
        "INSERT INTO schema4.counted VALUES ('total', 0), ('delta', 1)",
    );
    let tick = pgfleet.wait_for("schema4's total to be 1", |e| {
        e["event"] == "worker_tick" && e["schema"] == "schema4" && e["total"] == 1
    });
    assert_eq!(tick["msg"], "worker 4: count in schema4.counted is now 1");
    assert_eq!(tick["worker"], "worker 4");
    assert_eq!(tick["folded"], 1);
    assert_eq!(total(&db, "schema4"), Some(1));
    assert_eq!(deltas(&db, "schema4"), 0);
}

/// The schema, table, check constraint and index are worker_spi's, compared
/// with what worker_spi's own statement creates.
#[test]
fn creates_the_schema_exactly_like_worker_spi() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 1\n");
    pgfleet.wait_schema_event("worker_started", "schema1");
    execute(
        &db,
        "CREATE SCHEMA \"reference\" CREATE TABLE \"counted\" ( type text CHECK (type IN ('total', 'delta')), \
         value integer)CREATE UNIQUE INDEX \"counted_unique_total\" ON \"counted\" (type) WHERE type = 'total'",
    );
    let shape = |schema: &str| -> Vec<String> {
        let mut client = db.client();
        let sql =
            "SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                   WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 ORDER BY a.attnum";
        let mut shape: Vec<String> = client
            .query(sql, &[&format!("{schema}.counted")])
            .expect("columns")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let constraints = "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = $1::text::regclass";
        shape.extend(
            client
                .query(constraints, &[&format!("{schema}.counted")])
                .expect("checks")
                .iter()
                .map(|r| r.get(0)),
        );
        let index = "SELECT replace(indexdef, $1, 'S') FROM pg_indexes WHERE schemaname = $1";
        shape.extend(
            client
                .query(index, &[&schema])
                .expect("index")
                .iter()
                .map(|r| r.get(0)),
        );
        shape
    };
    let created = shape("schema1");
    assert_eq!(created, shape("reference"));
    assert!(
        created
            .iter()
            .any(|s| s.contains("UNIQUE INDEX counted_unique_total")),
        "{created:?}"
    );
}

/// Two instances start at once on the same schemas: creation is serialised,
/// nobody fails.
#[test]
fn two_instances_race_to_create_the_schemas() {
    let db = cluster().create_database();
    let config = "workers:\n  total: 20\n";
    let first = Pgfleet::start(&db, config);
    let second = Pgfleet::start(&db, config);
    for pgfleet in [&first, &second] {
        for n in 1..=20 {
            pgfleet.wait_schema_event("worker_started", &format!("schema{n}"));
        }
    }
    first.assert_no_event("worker_failed");
    second.assert_no_event("worker_failed");
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'schema%'"
        ),
        20
    );
}

/// worker_spi deletes deltas even without a total row, losing them; pgfleet
/// keeps them, says so once, and folds them once a total row exists.
#[test]
fn deltas_wait_for_a_total_row() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 1\n");
    pgfleet.wait_schema_event("worker_started", "schema1");
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('delta', 5), ('delta', 5), ('delta', 5)",
    );
    let warning = pgfleet.wait_schema_event("worker_no_total", "schema1");
    assert_eq!(warning["waiting"], 3);
    assert_eq!(warning["level"], "warn");
    thread::sleep(Duration::from_secs(1)); // five more ticks
    assert_eq!(
        deltas(&db, "schema1"),
        3,
        "deltas were deleted without a total row"
    );
    assert_eq!(
        pgfleet.events("worker_no_total").len(),
        1,
        "said more than once"
    );

    execute(&db, "INSERT INTO schema1.counted VALUES ('total', NULL)");
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        deltas(&db, "schema1"),
        3,
        "deltas were folded into a NULL total"
    );

    execute(
        &db,
        "UPDATE schema1.counted SET value = 100 WHERE type = 'total'",
    );
    pgfleet.wait_for("the deltas folded", |e| {
        e["event"] == "worker_tick" && e["total"] == 115
    });
    assert_eq!(deltas(&db, "schema1"), 0);
}

/// A total that would overflow integer: nothing changes, and the worker
/// fails saying why.
#[test]
fn overflow_changes_nothing_and_fails_the_worker() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 2\nrestart:\n  policy: never\n");
    pgfleet.wait_schema_event("worker_started", "schema1");
    pgfleet.wait_schema_event("worker_started", "schema2");
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('total', 2147483600), ('delta', 40), ('delta', 40);
         INSERT INTO schema2.counted VALUES ('total', 0)",
    );
    let failed = pgfleet.wait_schema_event("worker_failed", "schema1");
    let error = failed["error"].as_str().expect("error field");
    assert!(
        error.contains("overflow") && error.contains("22003"),
        "{error}"
    );
    let given_up = pgfleet.wait_schema_event("worker_given_up", "schema1");
    assert!(given_up["reason"]
        .as_str()
        .expect("reason")
        .contains("never"));
    assert_eq!(total(&db, "schema1"), Some(2_147_483_600));
    assert_eq!(deltas(&db, "schema1"), 2);
    // The other worker is not disturbed.
    execute(&db, "INSERT INTO schema2.counted VALUES ('delta', 7)");
    pgfleet.wait_for("schema2 folding on", |e| {
        e["event"] == "worker_tick" && e["schema"] == "schema2" && e["total"] == 7
    });
}

/// An idle tick writes no row version and takes no row lock (which would
/// write WAL and need a commit flush), yet still reads the total.
#[test]
fn an_idle_fold_writes_nothing() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 1\nlog:\n  level: debug\n");
    pgfleet.wait_schema_event("worker_started", "schema1");
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('total', 5), ('delta', 1)",
    );
    let (mark, _) = pgfleet.wait_for_from(0, "the fold", |e| {
        e["event"] == "worker_tick" && e["total"] == 6
    });
    let version = || -> (String, String, String) {
        let row = db
            .client()
            .query_one(
                "SELECT ctid::text, xmin::text, xmax::text FROM schema1.counted WHERE type = 'total'",
                &[],
            )
            .expect("total row");
        (row.get(0), row.get(1), row.get(2))
    };
    let before = version();
    let mut seen = mark;
    for _ in 0..5 {
        let (index, tick) = pgfleet.wait_for_from(seen + 1, "an idle tick", |e| {
            e["event"] == "worker_tick" && e["folded"] == 0
        });
        assert_eq!(tick["total"], 6);
        assert_eq!(
            tick["level"], "debug",
            "an unchanged total is logged at debug"
        );
        seen = index;
    }
    // A new row version changes ctid and xmin; a row lock (FOR UPDATE)
    // sets xmax to the locking transaction.
    assert_eq!(
        before,
        version(),
        "an idle fold changed or locked the total row (ctid, xmin, xmax)"
    );
}

#[test]
fn vacuums_after_folding_vacuum_after_rows() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 1\n  vacuum_after: 10\n");
    pgfleet.wait_schema_event("worker_started", "schema1");
    execute(&db, "INSERT INTO schema1.counted VALUES ('total', 0)");
    execute(
        &db,
        "INSERT INTO schema1.counted SELECT 'delta', 1 FROM generate_series(1, 6)",
    );
    pgfleet.wait_for("6 folded", |e| {
        e["event"] == "worker_tick" && e["total"] == 6
    });
    assert!(
        pgfleet.events("worker_vacuumed").is_empty(),
        "vacuumed before 10 rows"
    );
    execute(
        &db,
        "INSERT INTO schema1.counted SELECT 'delta', 1 FROM generate_series(1, 6)",
    );
    let vacuumed = pgfleet.wait_event("worker_vacuumed");
    assert_eq!(vacuumed["rows"], 12);
    eventually("pg_stat_user_tables shows the vacuum", || {
        scalar_i64(
            &db,
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'counted'",
        ) >= 1
    });
}

#[test]
fn without_create_schema_a_missing_schema_is_an_error() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(
        &db,
        "workers:\n  total: 1\n  create_schema: false\nrestart:\n  policy: never\n",
    );
    let failed = pgfleet.wait_schema_event("worker_failed", "schema1");
    let error = failed["error"].as_str().expect("error");
    assert!(
        error.contains("schema1") && error.contains("create_schema"),
        "{error}"
    );
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'schema1'"
        ),
        0
    );
}

/// An existing schema without the table gets the table (with
/// create_schema), as an operator who pre-created schemas would expect.
#[test]
fn creates_the_table_in_an_existing_schema() {
    let db = cluster().create_database();
    execute(&db, "CREATE SCHEMA schema1");
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 1\n");
    pgfleet.wait_schema_event("worker_started", "schema1");
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('total', 1), ('delta', 1)",
    );
    pgfleet.wait_for("the fold", |e| {
        e["event"] == "worker_tick" && e["total"] == 2
    });
    let err = db
        .client()
        .batch_execute("INSERT INTO schema1.counted VALUES ('total', 1)");
    assert!(err.is_err(), "the unique index on the total row is missing");
}

/// Quotes, semicolons, spaces, capitals, keywords, unicode: just names.
#[test]
fn strange_schema_names_are_just_names() {
    let db = cluster().create_database();
    execute(
        &db,
        "CREATE TABLE public.x (keep int); INSERT INTO public.x VALUES (1)",
    );
    let names = [
        "a\"b; drop table x",
        "Sales",
        "with space",
        "select",
        "ünïcødé",
        "x\"); DROP TABLE public.x; --",
    ];
    let list: Vec<String> = names
        .iter()
        .map(|n| format!("'{}'", n.replace('\'', "''")))
        .collect();
    let pgfleet = Pgfleet::start(
        &db,
        &format!("workers:\n  schemas: [{}]\n", list.join(", ")),
    );
    for name in names {
        pgfleet.wait_schema_event("worker_started", name);
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        execute(
            &db,
            &format!("INSERT INTO {quoted}.counted VALUES ('total', 0), ('delta', 3)"),
        );
    }
    for name in names {
        let tick = pgfleet.wait_for(&format!("{name} folded"), |e| {
            e["event"] == "worker_tick" && e["schema"] == name && e["total"] == 3
        });
        assert_eq!(tick["worker"], name);
    }
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM public.x"),
        1,
        "public.x was touched"
    );
}

/// worker_spi quotes names, so a configured `Orders` is a new schema beside
/// an existing `orders`: legal, so created as before, but almost always a
/// mistake, so a warning says so, once, naming both.
#[test]
fn a_schema_differing_only_in_case_is_warned_about() {
    let db = cluster().create_database();
    execute(&db, "CREATE SCHEMA orders");
    let pgfleet = Pgfleet::start(&db, "workers:\n  schemas: [Orders, sales]\n");
    let warning = pgfleet.wait_for("the case warning", |e| e["event"] == "schema_case_mismatch");
    assert_eq!(warning["level"], "warn", "{warning}");
    assert_eq!(warning["schema"], "Orders", "{warning}");
    assert_eq!(warning["existing"], "orders", "{warning}");
    let msg = warning["msg"].as_str().expect("msg");
    assert!(msg.contains("case"), "{msg}");
    pgfleet.wait_schema_event("worker_started", "Orders");
    pgfleet.wait_schema_event("worker_started", "sales");
    assert_eq!(
        pgfleet.events("schema_case_mismatch").len(),
        1,
        "sales has no twin: {:?}",
        pgfleet.events("schema_case_mismatch")
    );
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('orders', 'Orders')"
        ),
        2,
        "Orders is created beside orders"
    );
}

//! What an operator sees is what is true (issue 17 §2, §3): deltas that
//! wait for a total row are a state, a count, a gauge and a row on the
//! status page, not a single log line; during a database outage nothing
//! says "running", and every message names the server it is about.

use std::net::SocketAddr;

use serde_json::Value;

use crate::http::{get, json, scrape, start, value};
use crate::operating::FakeSystemd;
use crate::support::cluster::cluster;
use crate::support::pgfleet::{execute, ready, scalar_i64, schema_names};
use crate::support::proxy::{Mode, Proxy};

fn worker(address: SocketAddr, schema: &str) -> Value {
    json(address, &format!("/workers/{schema}"))
}

/// `/metrics`: schemas `waiting_for_total`, and the deltas they keep.
fn waiting_for_total(address: SocketAddr) -> (Option<f64>, Option<f64>) {
    let samples = scrape(address);
    (
        value(
            &samples,
            "pgfleet_workers",
            &[("state", "waiting_for_total")],
        ),
        value(&samples, "pgfleet_deltas_waiting_for_total", &[]),
    )
}

/// Whether every worker in `/workers` is in `state`.
fn all_in_state(address: SocketAddr, state: &str) -> bool {
    json(address, "/workers")
        .as_array()
        .expect("an array")
        .iter()
        .all(|w| w["state"] == state)
}

/// A schema without a total row keeps its deltas (worker_spi would lose
/// them): it is `waiting_for_total` with the count, in `/workers`, in
/// `pgfleet_workers` and `pgfleet_deltas_waiting_for_total`, and on the
/// status page; readiness is not affected. Once someone inserts the total
/// row, the deltas are folded and the worker says so.
#[test]
fn deltas_waiting_for_a_total_row_are_a_state_a_gauge_and_a_row() {
    let db = cluster().create_database();
    let (pgfleet, address) = start(&db, "naptime: 200ms\nworkers:\n  total: 3\n", &[]);
    let schemas = schema_names(3);
    pgfleet.wait_schema_event("worker_started", "schema3");
    // schema2 gets no total row (`ready` would insert them all).
    let with_total: Vec<String> = schemas
        .iter()
        .filter(|s| *s != "schema2")
        .cloned()
        .collect();
    ready(&pgfleet, &db, &with_total);
    execute(
        &db,
        "INSERT INTO schema2.counted SELECT 'delta', 1 FROM generate_series(1, 152); \
         INSERT INTO schema1.counted VALUES ('delta', 7)",
    );
    pgfleet.wait_schema_event("worker_no_total", "schema2");
    pgfleet.eventually("schema2 is waiting_for_total with its 152 deltas", || {
        let w = worker(address, "schema2");
        w["state"] == "waiting_for_total" && w["waiting_for_total"] == 152
    });
    assert_eq!(worker(address, "schema1")["state"], "running");
    assert_eq!(worker(address, "schema1")["waiting_for_total"], 0);
    assert_eq!(waiting_for_total(address), (Some(1.0), Some(152.0)));
    assert_eq!(get(address, "/readyz").status, 200);
    let page = get(address, "/").body;
    assert!(
        page.contains("schema2") && page.contains("no total row: 152 deltas wait"),
        "the status page does not show the waiting deltas:\n{page}"
    );

    execute(&db, "INSERT INTO schema2.counted VALUES ('total', 1000)");
    let found = pgfleet.wait_schema_event("worker_total_found", "schema2");
    assert_eq!(found["folded"], 152, "{found}");
    assert_eq!(found["total"], 1152, "{found}");
    pgfleet.eventually("schema2 runs again", || {
        worker(address, "schema2")["state"] == "running"
    });
    assert_eq!(waiting_for_total(address), (Some(0.0), Some(0.0)));
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM schema2.counted WHERE type = 'delta'"
        ),
        0
    );
}

/// During an outage the fleet's headline says so: workers are
/// `waiting_for_database` (not "running") in `/workers`, the metrics and
/// `fleet_summary`, which names the server; all `running` again after the
/// database is back.
#[test]
fn during_an_outage_nothing_says_running() {
    let db = cluster().create_database();
    let proxy = Proxy::start(cluster().port(), Mode::Forward);
    let url = proxy.url(&db.name);
    let mut systemd = FakeSystemd::new();
    let (pgfleet, address) = start(
        &db,
        "naptime: 200ms\nworkers:\n  total: 3\nlog:\n  summary_every: 1s\n",
        &[
            ("PGFLEET__DATABASE__URL", &url),
            ("NOTIFY_SOCKET", &systemd.path),
        ],
    );
    let schemas = schema_names(3);
    ready(&pgfleet, &db, &schemas);
    let server = format!("127.0.0.1:{}/{}", proxy.port(), db.name);

    proxy.set_mode(Mode::Refuse);
    proxy.cut_all();
    pgfleet.eventually("every worker waits for the database", || {
        all_in_state(address, "waiting_for_database")
    });
    let samples = scrape(address);
    assert_eq!(
        value(
            &samples,
            "pgfleet_workers",
            &[("state", "waiting_for_database")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(&samples, "pgfleet_workers", &[("state", "running")]),
        Some(0.0)
    );
    let mark = pgfleet.mark();
    let (_, summary) = pgfleet.wait_for_from(mark, "a fleet_summary in the outage", |e| {
        e["event"] == "fleet_summary" && e["database"] == "unreachable"
    });
    let msg = summary["msg"].as_str().expect("msg");
    assert!(
        msg.contains(&server) && msg.contains("3 waiting_for_database") && !msg.contains("running"),
        "{msg}"
    );
    assert_eq!(summary["running"], 0, "{summary}");
    // systemd's STATUS= says it too, not "folding 3 schemas".
    systemd.wait_for_line_from(0, "STATUS= naming the outage", |line| {
        line.starts_with("STATUS=3 schemas waiting for the database at ")
            && line.contains(&server)
            && line.ends_with("unreachable")
    });

    proxy.set_mode(Mode::Forward);
    pgfleet.eventually("every worker runs again", || {
        all_in_state(address, "running")
    });
    let back = pgfleet.wait_event("database_back");
    assert!(
        back["server"].as_str().is_some_and(|s| s.contains(&server)),
        "{back}"
    );
}

/// A reload that adds one tenant and removes another says just that, not
/// both whole lists.
#[test]
fn a_reload_names_the_schemas_added_and_removed() {
    let db = cluster().create_database();
    let (pgfleet, _) = start(
        &db,
        "workers:\n  schemas: [tenant_a, tenant_b, tenant_c]\n",
        &[],
    );
    pgfleet.wait_schema_event("worker_started", "tenant_c");
    pgfleet.reload("workers:\n  schemas: [tenant_a, tenant_c, tenant_d]\n");
    let reloaded = pgfleet.wait_event("config_reloaded");
    assert_eq!(
        reloaded["changes"], "workers.schemas: +tenant_d -tenant_b",
        "{reloaded}"
    );
}

//! Control from SQL (issue 18 §2): `NOTIFY pgfleet, '…'` pauses, resumes
//! and folds a schema, rescans, reloads; what is not understood is a
//! warning, rate-limited, and acts on nothing; the listener comes back
//! after its session is killed, and says it cannot listen through a
//! transaction-mode pooler.

use std::time::Duration;

use crate::http::{json, start};
use crate::support::cluster::{cluster, TestDb};
use crate::support::pgbouncer::PgBouncer;
use crate::support::pgfleet::{execute, ready, scalar_i64, schema_names, Pgfleet};

fn notify(db: &TestDb, payload: &str) {
    execute(
        db,
        &format!("NOTIFY pgfleet, '{}'", payload.replace('\'', "''")),
    );
}

fn deltas(db: &TestDb, schema: &str) -> i64 {
    scalar_i64(
        db,
        &format!("SELECT count(*) FROM {schema}.counted WHERE type = 'delta'"),
    )
}

fn add_deltas(db: &TestDb, schema: &str, n: u32) {
    execute(
        db,
        &format!("INSERT INTO {schema}.counted SELECT 'delta', 1 FROM generate_series(1, {n})"),
    );
}

#[test]
fn notify_pauses_resumes_and_folds_a_schema() {
    let db = cluster().create_database();
    let (pgfleet, address) = start(&db, "workers:\n  total: 3\n", &[]);
    ready(&pgfleet, &db, &schema_names(3));
    pgfleet.wait_event("control_listening");

    // Paused: its ticks leave its deltas alone; the others fold on.
    notify(&db, "pause schema2");
    let done = pgfleet.wait_for("the pause", |e| {
        e["event"] == "control_received" && e["kind"] == "pause"
    });
    assert!(
        done["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("pausing schema2"),
        "{done}"
    );
    pgfleet.eventually("schema2 paused in /workers", || {
        json(address, "/workers/schema2")["state"] == "paused"
    });
    add_deltas(&db, "schema2", 5);
    add_deltas(&db, "schema1", 5);
    pgfleet.eventually("schema1 folded", || deltas(&db, "schema1") == 0);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(deltas(&db, "schema2"), 5, "a paused schema was folded");
    // A reload folds every worker once (as worker_spi on SIGHUP), but
    // not a paused one: the pause holds.
    pgfleet.reload("workers:\n  total: 3\n");
    pgfleet.wait_event("config_reloaded");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(deltas(&db, "schema2"), 5, "a reload folded a paused schema");
    assert_eq!(json(address, "/workers/schema2")["state"], "paused");

    // 'fold' folds it now, paused or not.
    notify(&db, "fold schema2");
    pgfleet.eventually("schema2 folded on demand", || deltas(&db, "schema2") == 0);
    add_deltas(&db, "schema2", 3);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(deltas(&db, "schema2"), 3, "the fold resumed the schema");

    notify(&db, "resume schema2");
    pgfleet.eventually("schema2 folds again", || deltas(&db, "schema2") == 0);
    assert_eq!(json(address, "/workers/schema2")["state"], "running");

    // Every schema at once.
    notify(&db, "pause *");
    pgfleet.eventually("every schema paused", || {
        (1..=3).all(|n| json(address, &format!("/workers/schema{n}"))["state"] == "paused")
    });
    add_deltas(&db, "schema3", 2);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(deltas(&db, "schema3"), 2);
    notify(&db, "resume *");
    pgfleet.eventually("schema3 folds again", || deltas(&db, "schema3") == 0);

    // What is not understood, or names a schema pgfleet does not run:
    // warned about at most once per 10 s, and nothing happens.
    for payload in ["drop schema1", "fold nosuch", "pause", "rescan"] {
        notify(&db, payload);
    }
    for _ in 0..40 {
        notify(&db, "bogus");
    }
    let warned = pgfleet.wait_event("control_rejected");
    assert_eq!(warned["level"], "warn", "{warned}");
    std::thread::sleep(Duration::from_secs(1));
    let warnings = pgfleet
        .events("control_rejected")
        .into_iter()
        .filter(|e| e["level"] == "warn")
        .count();
    assert_eq!(warnings, 1, "rejections were not rate-limited");
    let metrics = crate::http::get(address, "/metrics").body;
    assert!(
        metrics.contains("pgfleet_control_messages_total{kind=\"unknown\",result=\"rejected\"} 42"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pgfleet_control_messages_total{kind=\"pause\",result=\"done\"} 2"),
        "{metrics}"
    );

    // 'reload' does what SIGHUP does.
    notify(&db, "reload");
    pgfleet.wait_event("config_reloaded");
    pgfleet.assert_no_event("worker_failed");
}

fn rescans(address: std::net::SocketAddr) -> u64 {
    crate::http::get(address, "/metrics")
        .body
        .lines()
        .find_map(|line| line.strip_prefix("pgfleet_rescans_total{result=\"ok\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The listener's session killed (as a database restart would): it comes
/// back, rescans, and listens again.
#[test]
fn the_listener_comes_back_after_its_session_is_killed() {
    let db = cluster().create_database();
    let (pgfleet, address) = start(
        &db,
        "workers:\n  schemas: [schema1]\n  match: tenant_%\n  rescan: 1h\n",
        &[],
    );
    ready(&pgfleet, &db, &schema_names(1));
    pgfleet.wait_event("control_listening");
    pgfleet.eventually("the first rescan", || rescans(address) == 1);
    execute(
        &db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'pgfleet'",
    );
    let lost = pgfleet.wait_event("control_lost");
    assert!(lost["error"].is_string(), "{lost}");
    let again = pgfleet.wait_for("listening again", |e| {
        e["event"] == "control_listening" && e["again"] == true
    });
    assert!(
        again["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("rescanning"),
        "{again}"
    );
    pgfleet.eventually("a rescan after coming back", || rescans(address) == 2);
    assert_eq!(
        pgfleet.events("control_lost").len(),
        1,
        "one loss said once: {:?}",
        pgfleet.events("control_lost")
    );
    notify(&db, "pause schema1");
    pgfleet.wait_for("a pause after the session came back", |e| {
        e["event"] == "control_received" && e["kind"] == "pause"
    });
}

/// Through PgBouncer in transaction mode LISTEN cannot work: pgfleet says
/// so at start; with `control.url` pointing at the server it listens.
#[test]
fn a_transaction_pooler_needs_a_control_url() {
    let db = cluster().create_database();
    let bouncer = PgBouncer::start(cluster().port(), "transaction", "");
    let through = bouncer.url(&db.name);
    let pgfleet = Pgfleet::start_with(
        &db,
        "workers:\n  total: 1\ndatabase:\n  pooler: transaction\n",
        &[("PGFLEET__DATABASE__URL", &through)],
    );
    let said = pgfleet.wait_event("control_unavailable");
    assert!(
        said["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("control.url"),
        "{said}"
    );
    drop(pgfleet);

    // With the default pooler: auto, the LISTEN works on one server
    // connection and a later query lands on another: noticed, and said.
    let pgfleet = Pgfleet::start_with(
        &db,
        "workers:\n  total: 2\n",
        &[("PGFLEET__DATABASE__URL", &through)],
    );
    pgfleet.wait_event("workers_started");
    let said = pgfleet.wait_for_within(
        "control_unavailable through a transaction-mode pooler with pooler: auto",
        |e| e["event"] == "control_unavailable",
        Duration::from_secs(60),
    );
    assert!(
        said["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("control.url"),
        "{said}"
    );
    drop(pgfleet);

    let direct = db.url();
    let pgfleet = Pgfleet::start_with(
        &db,
        "workers:\n  total: 1\ndatabase:\n  pooler: transaction\n",
        &[
            ("PGFLEET__DATABASE__URL", &through),
            ("PGFLEET__CONTROL__URL", &direct),
        ],
    );
    ready(&pgfleet, &db, &schema_names(1));
    pgfleet.wait_event("control_listening");
    notify(&db, "fold schema1");
    pgfleet.wait_for("the fold through the direct session", |e| {
        e["event"] == "control_received" && e["kind"] == "fold"
    });
}

fn post(
    address: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> crate::http::Response {
    crate::http::request_with(address, "POST", path, headers, "")
}

/// The same actions over HTTP, for people and scripts: on loopback with
/// no token file they are open; a schema pgfleet does not run is 404;
/// another site's page is refused; the status page has the buttons, in
/// Chromium too.
#[test]
fn http_actions_pause_resume_and_fold() {
    let db = cluster().create_database();
    let (pgfleet, address) = start(&db, "workers:\n  total: 2\n", &[]);
    ready(&pgfleet, &db, &schema_names(2));

    let paused = post(address, "/workers/schema1/pause", &[]);
    assert_eq!(paused.status, 200, "{}", paused.all());
    assert!(paused.body.contains("pausing schema1"), "{}", paused.body);
    // The worker is told; its state follows at once after.
    pgfleet.eventually("schema1 paused", || {
        json(address, "/workers/schema1")["state"] == "paused"
    });
    add_deltas(&db, "schema1", 4);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(deltas(&db, "schema1"), 4, "a paused schema was folded");
    assert_eq!(post(address, "/workers/schema1/fold", &[]).status, 200);
    pgfleet.eventually("schema1 folded on demand", || deltas(&db, "schema1") == 0);

    // The page offers the buttons; a browser's form post comes back to it.
    let (text, dom) = crate::http::in_chromium(address, "/");
    assert!(
        dom.contains("action=\"/workers/schema1/resume\"")
            && dom.contains("action=\"/workers/schema2/pause\""),
        "{dom}"
    );
    assert!(text.contains(" paused "), "{text}");
    let from_page = post(
        address,
        "/workers/schema1/resume",
        &[
            ("Accept", "text/html"),
            ("Origin", &format!("http://{address}")),
        ],
    );
    assert_eq!(from_page.status, 303, "{}", from_page.all());
    assert_eq!(from_page.header("location"), Some("/"));
    pgfleet.eventually("schema1 resumed", || {
        json(address, "/workers/schema1")["state"] == "running"
    });

    assert_eq!(post(address, "/workers/nosuch/pause", &[]).status, 404);
    let said = pgfleet.wait_event("http_action_refused");
    assert_eq!(said["status"], 404, "{said}");
    assert_eq!(post(address, "/workers/schema1/drop", &[]).status, 404);
    assert_eq!(
        crate::http::get(address, "/workers/schema1/drop").status,
        404
    );
    assert_eq!(
        post(address, "/rescan", &[]).status,
        409,
        "no workers.match"
    );
    let get = crate::http::get(address, "/workers/schema1/pause");
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
    let forged = post(
        address,
        "/workers/schema2/pause",
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(forged.status, 403, "{}", forged.all());
    assert_eq!(json(address, "/workers/schema2")["state"], "running");
}

/// With `http.token_file`, every action needs the token: by header for
/// scripts, by the page's unlock form (a cookie) for people. Without one,
/// on an address other than loopback, actions are refused.
#[test]
fn http_actions_need_the_token() {
    let db = cluster().create_database();
    let dir = tempfile::tempdir().expect("a temp dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret; with=odd chars\n").expect("write the token");
    let (pgfleet, address) = start(
        &db,
        &format!(
            "workers:\n  total: 1\nhttp:\n  token_file: {}\n",
            token_file.display()
        ),
        &[],
    );
    ready(&pgfleet, &db, &schema_names(1));
    assert_eq!(post(address, "/workers/schema1/pause", &[]).status, 401);
    let wrong = post(
        address,
        "/workers/schema1/pause",
        &[("Authorization", "Bearer nope")],
    );
    assert_eq!(wrong.status, 403);
    let page = crate::http::get(address, "/").body;
    assert!(page.contains("action=\"/unlock\""), "no unlock form");
    assert!(
        !page.contains("/workers/schema1/pause"),
        "buttons without the token"
    );
    // The scheme's name in any case (RFC 9110).
    let ok = post(
        address,
        "/workers/schema1/pause",
        &[("Authorization", "bearer s3cret; with=odd chars")],
    );
    assert_eq!(ok.status, 200, "{}", ok.all());

    // The page's form: the token becomes a cookie, and the buttons work.
    let unlocked = crate::http::request_with(
        address,
        "POST",
        "/unlock",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "token=s3cret%3B+with%3Dodd+chars",
    );
    assert_eq!(unlocked.status, 303, "{}", unlocked.all());
    let cookie = unlocked
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a cookie")
        .to_owned();
    pgfleet.eventually("the page's resume button, with the cookie", || {
        crate::http::request_with(address, "GET", "/", &[("Cookie", &cookie)], "")
            .body
            .contains("action=\"/workers/schema1/resume\"")
    });
    let resumed = post(address, "/workers/schema1/resume", &[("Cookie", &cookie)]);
    assert_eq!(resumed.status, 200, "{}", resumed.all());
    drop(pgfleet);

    // Listening beyond loopback with no token file: refused, saying why.
    let (_pgfleet, address) = start(
        &db,
        "workers:\n  total: 1\n",
        &[("PGFLEET__HTTP__LISTEN", "0.0.0.0:0")],
    );
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], address.port()));
    let refused = post(address, "/workers/schema1/pause", &[]);
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("http.token_file"), "{}", refused.body);
    assert_eq!(
        crate::http::get(address, "/workers").status,
        200,
        "GETs stay open"
    );
}

/// `--check` connects with `control.url` too, and a `control.url` that is
/// no connection string is a configuration error naming the key.
#[test]
fn check_tries_the_control_url() {
    let db = cluster().create_database();
    let url = db.url();
    let ok = crate::support::pgfleet::run(
        &["--check"],
        &[
            ("PGFLEET__DATABASE__URL", url.as_str()),
            ("PGFLEET__CONTROL__URL", url.as_str()),
        ],
    );
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("control.url: connected to"), "{stdout}");
    let bad = crate::support::pgfleet::run(
        &["--check"],
        &[
            ("PGFLEET__DATABASE__URL", url.as_str()),
            ("PGFLEET__CONTROL__URL", "postgres://app:hunter2@[::1"),
        ],
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(stderr.contains("control.url"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

//! The HTTP endpoints (SPEC §6), tried as Prometheus, a Kubernetes probe,
//! a script and a person with a browser would: `/metrics` read by the
//! reference OpenMetrics parser (Prometheus's own Python client, Debian's
//! `python3-prometheus-client`), the status page rendered by a real
//! headless Chromium, and the rest over plain TCP.
//!
//! Each run listens on `127.0.0.1:0` and reads the port from its
//! `http_listening` log line, so parallel tests never race for a port.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::cluster::{cluster, TestDb};
use crate::support::pgfleet::{
    execute, ready, run_until_exit, schema_names, within, ConfigFile, Pgfleet, PATIENCE,
};
use crate::support::proxy::{Mode, Proxy};
use crate::support::schemas::create_counter_schemas;
use crate::support::tls::PASSWORD_USER;

/// Starts pgfleet with HTTP on a port of the kernel's choosing; returns
/// the service and the address it serves on.
pub(crate) fn start(db: &TestDb, yaml: &str, env: &[(&str, &str)]) -> (Pgfleet, SocketAddr) {
    let mut all_env = vec![("PGFLEET__HTTP__LISTEN", "127.0.0.1:0")];
    all_env.extend_from_slice(env);
    let pgfleet = Pgfleet::start_with(db, yaml, &all_env);
    let listening = pgfleet.wait_event("http_listening");
    let address = listening["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {listening}"));
    (pgfleet, address)
}

pub(crate) struct Response {
    pub(crate) status: u16,
    /// Status line and headers, header names lower-cased.
    head: String,
    pub(crate) body: String,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    pub(crate) fn all(&self) -> String {
        format!("{}\n\n{}", self.head, self.body)
    }
}

/// One request on a fresh connection (`Connection: close`).
fn request(address: SocketAddr, method: &str, path: &str) -> Response {
    request_with(address, method, path, &[], "")
}

/// [`request`] with `headers` (name, value) and a `body`.
pub(crate) fn request_with(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {address}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: reading the answer: {e}"));
    let text = String::from_utf8(raw).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no end of headers in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status in {head:?}"));
    Response {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

pub(crate) fn get(address: SocketAddr, path: &str) -> Response {
    request(address, "GET", path)
}

/// Folds so far of each schema, from `/workers`.
pub(crate) fn folds(address: SocketAddr) -> std::collections::BTreeMap<String, u64> {
    json(address, "/workers")
        .as_array()
        .expect("/workers is an array")
        .iter()
        .map(|w| {
            let schema = w["schema"].as_str().expect("schema").to_owned();
            (schema, w["folds"].as_u64().expect("folds"))
        })
        .collect()
}

pub(crate) fn json(address: SocketAddr, path: &str) -> Value {
    let response = get(address, path);
    assert_eq!(response.status, 200, "{}", response.all());
    serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {}", response.body))
}

/// One sample as the reference parser read it.
#[derive(Debug)]
pub(crate) struct Sample {
    family: String,
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `/metrics`, checked by the reference OpenMetrics parser.
pub(crate) fn scrape(address: SocketAddr) -> Vec<Sample> {
    let response = get(address, "/metrics");
    assert_eq!(response.status, 200, "{}", response.all());
    let content_type = response.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    parse_openmetrics(&response.body)
}

const PARSER: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append({"family": family.name, "type": family.type, "name": s.name,
                        "labels": s.labels, "value": s.value})
print(json.dumps(samples))
"#;

/// Runs Prometheus's Python client's OpenMetrics parser, which rejects
/// anything the format does not allow (a missing `# EOF`, a counter sample
/// without `_total`, unordered buckets, bad escaping).
fn parse_openmetrics(text: &str) -> Vec<Sample> {
    // Debian's python3 (the package installs there), not a pyenv shim.
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("python3");
    let mut child = Command::new(python)
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("python3 is needed to parse /metrics ({e}): apt-get install python3-prometheus-client")
        });
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("write to the parser");
    let output = child.wait_with_output().expect("the parser's output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "Prometheus's OpenMetrics parser is needed: apt-get install python3-prometheus-client"
    );
    assert!(
        output.status.success(),
        "the OpenMetrics parser rejects /metrics: {stderr}\n--- /metrics ---\n{text}"
    );
    let samples: Vec<Value> =
        serde_json::from_slice(&output.stdout).expect("the parser prints JSON");
    samples
        .into_iter()
        .map(|s| Sample {
            family: s["family"].as_str().unwrap_or_default().to_owned(),
            kind: s["type"].as_str().unwrap_or_default().to_owned(),
            name: s["name"].as_str().unwrap_or_default().to_owned(),
            labels: s["labels"]
                .as_object()
                .map(|labels| {
                    labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            value: s["value"].as_f64().unwrap_or(f64::NAN),
        })
        .collect()
}

/// The value of the sample `name` whose labels include `labels`.
pub(crate) fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Every family of `samples`, with its type.
pub(crate) fn families(samples: &[Sample]) -> BTreeMap<String, String> {
    samples
        .iter()
        .map(|s| (s.family.clone(), s.kind.clone()))
        .collect()
}

fn kind_of<'a>(samples: &'a [Sample], family: &str) -> Option<&'a str> {
    samples
        .iter()
        .find(|s| s.family == family)
        .map(|s| s.kind.as_str())
}

pub(crate) fn wait_for_total(pgfleet: &Pgfleet, schema: &str, total: i64) {
    pgfleet.wait_for(&format!("{schema} folded to {total}"), |e| {
        e["event"] == "worker_tick" && e["schema"] == schema && e["total"] == total
    });
}

#[test]
fn metrics_parse_as_openmetrics_and_move_after_a_fold() {
    let db = cluster().create_database();
    let (pgfleet, address) = start(&db, "workers:\n  total: 2\n", &[]);
    ready(&pgfleet, &db, &schema_names(2));
    wait_for_total(&pgfleet, "schema1", 0);
    let before = scrape(address);
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('delta', 1), ('delta', 2)",
    );
    wait_for_total(&pgfleet, "schema1", 3);
    // The log line and the metrics are written one after the other on the
    // actor thread, the line read on another: the scrape may come between.
    let mut after = scrape(address);
    let rows = |samples: &[Sample]| {
        value(
            samples,
            "pgfleet_rows_folded_total",
            &[("schema", "schema1")],
        )
        .unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while rows(&after) - rows(&before) < 2.0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        after = scrape(address);
    }

    for (family, kind) in [
        ("pgfleet_workers", "gauge"),
        ("pgfleet_folds", "counter"),
        ("pgfleet_rows_folded", "counter"),
        ("pgfleet_worker_failures", "counter"),
        ("pgfleet_worker_restarts", "counter"),
        ("pgfleet_config_reloads", "counter"),
        ("pgfleet_fold_duration_seconds", "histogram"),
        ("pgfleet_tick_lateness_seconds", "histogram"),
        ("pgfleet_pool_size", "gauge"),
        ("pgfleet_database_up", "gauge"),
        ("pgfleet_log_lines_dropped", "counter"),
        ("pgfleet_build_info", "gauge"),
    ] {
        assert_eq!(kind_of(&after, family), Some(kind), "{family}: {after:#?}");
    }
    let at = |samples: &[Sample], name: &str, labels: &[(&str, &str)]| {
        value(samples, name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in {samples:#?}"))
    };
    let schema1 = [("schema", "schema1")];
    assert_eq!(at(&after, "pgfleet_workers", &[("state", "running")]), 2.0);
    assert_eq!(at(&after, "pgfleet_workers", &[("state", "given_up")]), 0.0);
    // Two delta rows, folded into a total of 3.
    assert_eq!(
        at(&after, "pgfleet_rows_folded_total", &schema1)
            - at(&before, "pgfleet_rows_folded_total", &schema1),
        2.0
    );
    assert!(
        at(&after, "pgfleet_folds_total", &schema1) > at(&before, "pgfleet_folds_total", &schema1)
    );
    assert!(
        at(&after, "pgfleet_fold_duration_seconds_count", &[])
            > at(&before, "pgfleet_fold_duration_seconds_count", &[])
    );
    assert!(at(&after, "pgfleet_tick_lateness_seconds_count", &[]) > 0.0);
    assert_eq!(at(&after, "pgfleet_database_up", &[]), 1.0);
    assert_eq!(at(&after, "pgfleet_pool_size", &[]), 8.0);
    assert_eq!(at(&after, "pgfleet_log_lines_dropped_total", &[]), 0.0);
    assert_eq!(
        at(
            &after,
            "pgfleet_config_reloads_total",
            &[("result", "rejected")]
        ),
        0.0
    );
    assert_eq!(
        at(
            &after,
            "pgfleet_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

#[test]
fn per_schema_series_only_up_to_per_schema_metrics_max() {
    let db = cluster().create_database();
    let yaml =
        |total: u32| format!("workers:\n  total: {total}\nhttp:\n  per_schema_metrics_max: 2\n");
    let (pgfleet, address) = start(&db, &yaml(2), &[]);
    ready(&pgfleet, &db, &schema_names(2));
    let small = scrape(address);
    for name in [
        "pgfleet_folds_total",
        "pgfleet_rows_folded_total",
        "pgfleet_worker_failures_total",
    ] {
        for schema in ["schema1", "schema2"] {
            assert!(
                value(&small, name, &[("schema", schema)]).is_some(),
                "{name} of {schema}: {small:#?}"
            );
        }
    }

    // One schema more than per_schema_metrics_max: fleet-wide series only.
    pgfleet.reload(&yaml(3));
    pgfleet.wait_schema_event("worker_started", "schema3");
    let large = scrape(address);
    assert!(
        large.iter().all(|s| !s.labels.contains_key("schema")),
        "{large:#?}"
    );
    for name in [
        "pgfleet_folds_total",
        "pgfleet_rows_folded_total",
        "pgfleet_worker_failures_total",
    ] {
        let series: Vec<&Sample> = large.iter().filter(|s| s.name == name).collect();
        assert_eq!(series.len(), 1, "{name}: {series:#?}");
    }
}

#[test]
fn readyz_follows_the_database_and_healthz_the_process() {
    let db = cluster().create_database();
    let proxy = Proxy::start(cluster().port(), Mode::Refuse);
    let url = proxy.url(&db.name);
    let (pgfleet, address) = start(
        &db,
        "workers:\n  total: 1\n",
        &[("PGFLEET__DATABASE__URL", &url)],
    );
    let not_ready = get(address, "/readyz");
    assert_eq!(not_ready.status, 503, "{}", not_ready.all());
    // Named as `--check` names it: where, never a password.
    let server = format!("127.0.0.1:{}/{}", proxy.port(), db.name);
    pgfleet.eventually("/readyz says which database is unreachable", || {
        let body = get(address, "/readyz").body;
        body.contains("the database at ")
            && body.contains(&server)
            && body.contains("is unreachable")
    });
    let lost = pgfleet.wait_event("database_lost");
    assert!(
        lost["server"].as_str().is_some_and(|s| s.contains(&server))
            && lost["msg"].as_str().is_some_and(|m| m.contains(&server)),
        "database_lost does not name {server}: {lost}"
    );
    let health = get(address, "/healthz");
    assert_eq!(health.status, 200, "{}", health.all());

    proxy.set_mode(Mode::Forward);
    pgfleet.eventually("/readyz is 200 once the database answers", || {
        get(address, "/readyz").status == 200
    });
    assert_eq!(get(address, "/readyz").body, "ready\n");
    assert_eq!(
        value(&scrape(address), "pgfleet_database_up", &[]),
        Some(1.0)
    );

    proxy.set_mode(Mode::Refuse);
    proxy.cut_all();
    pgfleet.eventually("/readyz is 503 again when the database goes away", || {
        get(address, "/readyz").status == 503
    });
    assert_eq!(
        value(&scrape(address), "pgfleet_database_up", &[]),
        Some(0.0)
    );
    assert_eq!(get(address, "/healthz").status, 200);
}

const FIELDS: [&str; 21] = [
    "schema",
    "worker",
    "generation",
    "state",
    "state_since",
    "last_fold_at",
    "last_fold_ms",
    "last_total",
    "backlog",
    "backlog_at_least",
    "waiting_for_total",
    "waiting_for_total_at_least",
    "folds",
    "rows_folded",
    "failures",
    "restarts",
    "ticks_skipped",
    "last_error",
    "last_error_at",
    "restart_at",
    "given_up_reason",
];

#[test]
fn workers_json_has_one_entry_per_worker_with_its_fields() {
    let db = cluster().create_database();
    let odd = "we<ird \"name\"/x%";
    let yaml = "workers:\n  schemas: ['broken', 'we<ird \"name\"/x%']\nrestart:\n  policy: never\n";
    let (pgfleet, address) = start(&db, yaml, &[("TEST_HOOK_PANIC_IN_FOLD_OF", "broken")]);
    ready(&pgfleet, &db, &[odd.to_owned()]);
    execute(
        &db,
        "INSERT INTO \"we<ird \"\"name\"\"/x%\".counted VALUES ('delta', 5)",
    );
    wait_for_total(&pgfleet, odd, 5);
    pgfleet.wait_schema_event("worker_given_up", "broken");

    let workers = json(address, "/workers");
    let workers = workers.as_array().expect("an array");
    assert_eq!(workers.len(), 2, "{workers:#?}");
    for worker in workers {
        for field in FIELDS {
            assert!(worker.get(field).is_some(), "no {field} in {worker}");
        }
    }
    let broken = workers
        .iter()
        .find(|w| w["schema"] == "broken")
        .expect("broken");
    assert_eq!(broken["state"], "given_up", "{broken}");
    assert_eq!(broken["failures"], 1, "{broken}");
    assert!(
        broken["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("panicked")),
        "{broken}"
    );
    assert!(broken["given_up_reason"].is_string(), "{broken}");

    // The fold's log line is written just before its report reaches the
    // status: wait for the report, not only the line.
    let path = format!(
        "/workers/{}",
        pgfleet_actors::conninfo::percent::encode(odd)
    );
    pgfleet.eventually("the fold in /workers", || {
        json(address, &path)["last_total"] == 5
    });
    let one = json(address, &path);
    assert_eq!(one["schema"], odd, "{one}");
    assert_eq!(one["worker"], odd, "{one}");
    assert_eq!(one["state"], "running", "{one}");
    assert_eq!(one["generation"], 1, "{one}");
    assert_eq!(one["last_total"], 5, "{one}");
    assert_eq!(one["rows_folded"], 1, "{one}");
    assert!(one["folds"].as_u64().is_some_and(|n| n >= 1), "{one}");
    assert!(one["last_fold_at"].is_string(), "{one}");
    assert!(one["last_fold_ms"].is_number(), "{one}");
    assert!(one["last_error"].is_null(), "{one}");

    let missing = get(address, "/workers/nope");
    assert_eq!(missing.status, 404, "{}", missing.all());
    assert!(missing.body.contains("nope"), "{}", missing.all());
}

#[test]
fn endpoints_are_read_only_and_never_show_a_password() {
    let db = cluster().create_database();
    let secret = "Wr0ng-hunter2-secret";
    let url = format!(
        "postgres://{PASSWORD_USER}:{secret}@127.0.0.1:{}/{}?sslmode=disable",
        db.port, db.name
    );
    let (pgfleet, address) = start(
        &db,
        "workers:\n  total: 1\n",
        &[("PGFLEET__DATABASE__URL", &url)],
    );
    pgfleet.wait_event("database_refused");
    let not_ready = get(address, "/readyz");
    assert_eq!(not_ready.status, 503, "{}", not_ready.all());
    assert!(
        not_ready.body.contains("the database"),
        "{}",
        not_ready.all()
    );

    let mut seen = Vec::new();
    let paths = [
        "/",
        "/metrics",
        "/healthz",
        "/readyz",
        "/workers",
        "/workers/schema1",
        "/workers/nope",
        "/nope",
        "/metrics/",
        "/workers/schema1/x",
    ];
    for path in paths {
        let response = get(address, path);
        let expected: &[u16] = match path {
            "/readyz" => &[503],
            "/workers/nope" | "/nope" | "/metrics/" | "/workers/schema1/x" => &[404],
            _ => &[200],
        };
        assert!(
            expected.contains(&response.status),
            "GET {path}: {}",
            response.all()
        );
        seen.push(response);
    }
    for path in [
        "/",
        "/metrics",
        "/healthz",
        "/readyz",
        "/workers",
        "/workers/schema1",
    ] {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let response = request(address, method, path);
            assert_eq!(response.status, 405, "{method} {path}: {}", response.all());
            assert_eq!(
                response.header("allow"),
                Some("GET, HEAD"),
                "{method} {path}"
            );
            seen.push(response);
        }
        let head = request(address, "HEAD", path);
        assert!(
            [200, 503].contains(&head.status) && head.body.is_empty(),
            "HEAD {path}: {}",
            head.all()
        );
    }
    let worker = json(address, "/workers/schema1");
    assert_eq!(worker["generation"], 1, "a POST changed nothing: {worker}");

    for response in &seen {
        let text = response.all();
        assert!(!text.contains(secret), "a password in a response:\n{text}");
        assert!(
            !text.contains("postgres://"),
            "a URL in a response:\n{text}"
        );
    }
}

#[test]
fn a_port_in_use_is_a_clear_error_and_exit_1() {
    let db = cluster().create_database();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let address = taken.local_addr().expect("address").to_string();
    let config = ConfigFile::new("workers:\n  total: 1\n");
    let path = config.path.to_str().expect("utf-8 path").to_owned();
    let (output, took) = run_until_exit(
        &["--config", &path],
        &[
            ("PGFLEET__DATABASE__URL", &db.url()),
            ("PGFLEET__HTTP__LISTEN", &address),
            ("PGFLEET__LOG__FORMAT", "json"),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let expected = format!("http.listen {address}: address already in use");
    assert!(stderr.contains(&expected), "{expected:?} in:\n{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The port is bound before anything says the service started: the
    // failure is the first event, and the last line says exit code 1.
    let events: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        names,
        ["service_failed", "service_stopped"],
        "the events of a start on a port in use:\n{stderr}"
    );
    assert!(
        events[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&expected)),
        "{}",
        events[0]
    );
    assert_eq!(events[1]["exit_code"], 1);
}

#[test]
fn silent_http_clients_do_not_delay_folds() {
    let db = cluster().create_database();
    let (pgfleet, address) = start(&db, "workers:\n  total: 1\nlog:\n  level: debug\n", &[]);
    ready(&pgfleet, &db, &schema_names(1));
    wait_for_total(&pgfleet, "schema1", 0);

    // Connections that never send a request, and one that stops halfway
    // through its headers.
    let mut silent: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(address).expect("connect"))
        .collect();
    let opened = Instant::now();
    let mut half = TcpStream::connect(address).expect("connect");
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .expect("half a request");
    silent.push(half);

    let mark = pgfleet.mark();
    let ticks_since_mark = || {
        pgfleet.all_events()[mark..]
            .iter()
            .filter(|e| e["event"] == "worker_tick" && e["schema"] == "schema1")
            .count()
    };
    // Meanwhile the probes still answer, on connections of their own.
    let probed = Instant::now();
    assert_eq!(get(address, "/healthz").status, 200);
    assert!(
        probed.elapsed() < Duration::from_secs(1),
        "{:?}",
        probed.elapsed()
    );
    thread::sleep(Duration::from_secs(2));
    // naptime is 200 ms: about 10 folds in 2 s.
    let ticks = ticks_since_mark();
    assert!(
        ticks >= 6,
        "{ticks} folds in 2 s while 51 clients sent nothing"
    );

    // The server does not keep them forever: a request must arrive within
    // 5 s (actix-web's client_request_timeout).
    let stream = &mut silent[0];
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(_) => continue, // a 408 before the close
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept a silent connection open: {e}"),
        }
    }
    let closed_after = opened.elapsed();
    assert!(
        closed_after < Duration::from_secs(8),
        "closed after {closed_after:?}"
    );
    eprintln!(
        "MEASURED silent HTTP clients: {ticks} folds in 2 s with 51 silent connections; \
         the server closed one after {} ms",
        closed_after.as_millis()
    );
}

/// The page as Chromium leaves its DOM once loaded.
fn headless_chromium(url: &str) -> String {
    let chromium = ["chromium", "/usr/bin/chromium", "chromium-browser"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .unwrap_or_else(|| panic!("a headless Chromium is needed: apt-get install chromium"));
    let profile = tempfile::tempdir().expect("a profile directory");
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &profile_arg,
            "--dump-dom",
            url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    // Both pipes are drained while Chromium runs: a DOM bigger than the
    // pipe's buffer (64 KiB) would otherwise block it writing, forever.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = std::io::Read::read_to_end(&mut pipe, &mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within {PATIENCE:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().expect("chromium's output");
    let stderr = stderr.join().expect("chromium's errors");
    assert!(
        status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&stderr)
    );
    String::from_utf8_lossy(&stdout).into_owned()
}

/// The text a person reads: the DOM without its tags, entities decoded.
fn rendered_text(dom: &str) -> String {
    let body = dom.split_once("<body>").map_or(dom, |(_, body)| body);
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' if in_tag => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

#[test]
fn the_status_page_renders_in_a_browser_with_given_up_workers_first() {
    let db = cluster().create_database();
    let broken = "z<b>\"broken\"</b>";
    let yaml = "workers:\n  schemas: ['a_fine', 'z<b>\"broken\"</b>']\nrestart:\n  policy: never\n";
    let (pgfleet, address) = start(&db, yaml, &[("TEST_HOOK_PANIC_IN_FOLD_OF", broken)]);
    ready(&pgfleet, &db, &["a_fine".to_owned()]);
    wait_for_total(&pgfleet, "a_fine", 0);
    pgfleet.wait_schema_event("worker_given_up", broken);
    // The summary's lateness needs ticks; it has some by now.
    within(|| {
        if get(address, "/").body.contains("p99") {
            Ok(())
        } else {
            Err(())
        }
    })
    .expect("the page shows tick lateness");

    let dom = headless_chromium(&format!("http://{address}/"));
    // The odd name is text, not markup: no <b> element came of it.
    assert!(!dom.contains("<b>"), "{dom}");
    let text = rendered_text(&dom);
    for expected in [
        "pgfleet",
        "1 of 2 schemas fold as they should; 1 needs attention (1 given up)",
        "given up",
        "tick lateness",
        "p50",
        "a_fine",
        broken,
        "panicked",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not on the page:\n{text}"
        );
    }
    let table = text
        .split_once("Needs attention")
        .map_or(text.as_str(), |(_, rest)| rest);
    let broken_at = table.find(broken).expect("the given-up worker");
    let fine_at = table.find("a_fine").expect("the running worker");
    assert!(
        broken_at < fine_at,
        "the given-up worker comes first, before a_fine:\n{table}"
    );
}

#[test]
fn a_changed_http_listen_applies_at_the_next_start() {
    let db = cluster().create_database();
    let yaml = |listen: &str| format!("workers:\n  total: 1\nhttp:\n  listen: \"{listen}\"\n");
    let pgfleet = Pgfleet::start(&db, &yaml("127.0.0.1:0"));
    let listening = pgfleet.wait_event("http_listening");
    let address: SocketAddr = listening["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {listening}"));
    pgfleet.reload(&yaml("127.0.0.1:1"));
    let warning = pgfleet.wait_event("config_needs_restart");
    assert_eq!(warning["key"], "http.listen", "{warning}");
    assert_eq!(warning["level"], "warn", "{warning}");
    assert_eq!(
        get(address, "/healthz").status,
        200,
        "still served where it was"
    );
}

#[test]
fn healthz_fails_when_the_actor_thread_stops_handling_messages() {
    let db = cluster().create_database();
    // Every heartbeat blocks the actor thread for 7 s, longer than the 5 s
    // after which a silent Supervisor counts as stuck.
    let (pgfleet, address) = start(
        &db,
        "workers:\n  total: 1\n",
        &[("TEST_HOOK_PAUSE_HEARTBEAT_MS", "7000")],
    );
    pgfleet.eventually("/healthz fails", || get(address, "/healthz").status == 503);
    let health = get(address, "/healthz");
    assert!(
        health.body.contains("has not handled a message"),
        "{}",
        health.all()
    );
    // The endpoints themselves run elsewhere, and still answer.
    assert_eq!(get(address, "/readyz").status, 503);
    assert!(!scrape(address).is_empty());
}

/// Polls GET `path` until its body contains `expected`, for up to
/// `patience`; returns the body.
fn page_until(address: SocketAddr, path: &str, expected: &str, patience: Duration) -> String {
    let deadline = Instant::now() + patience;
    loop {
        let response = get(address, path);
        assert_eq!(response.status, 200, "GET {path}: {}", response.all());
        if response.body.contains(expected) {
            return response.body;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} did not say {expected:?} within {patience:?}:\n{}",
            rendered_text(&response.body)
        );
        thread::sleep(Duration::from_millis(500));
    }
}

/// `path` in Chromium: the text a person reads (white space squashed to
/// single spaces, one at each end) and the DOM.
pub(crate) fn in_chromium(address: SocketAddr, path: &str) -> (String, String) {
    let dom = headless_chromium(&format!("http://{address}{path}"));
    let text = rendered_text(&dom)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (format!(" {text} "), dom)
}

/// SPEC §9, issue 17: at 10,000 schemas the page answers quickly and
/// small, a schema in trouble is on its first page (not after p1, p10,
/// p100, ...), the others are found by searching and paging, and the
/// charts are there. Seen as a person sees it, in Chromium.
#[test]
fn the_status_page_at_10_000_schemas_shows_trouble_first_and_finds_the_rest() {
    const N: usize = 10_000;
    let db = cluster().create_database();
    let created = create_counter_schemas(&db, "p", 1, N);
    let names: Vec<String> = (1..=N).map(|i| format!("p{i}")).collect();
    let yaml = |extra: &str, policy: &str| {
        format!(
            "naptime: 30s\nworkers:\n  create_schema: false\n  schemas: [{}{extra}]\nrestart:\n  policy: {policy}\nlog:\n  summary_every: 0s\n",
            names.join(", ")
        )
    };
    // Through a proxy, to cut the database off at the end.
    let proxy = Proxy::start(cluster().port(), Mode::Forward);
    let url = proxy.url(&db.name);
    let (pgfleet, address) = start(
        &db,
        &yaml("", "backoff"),
        &[("PGFLEET__DATABASE__URL", &url)],
    );
    let patience = Duration::from_secs(180);
    // Healthy: every schema folds, nothing needs attention.
    page_until(
        address,
        "/",
        "All 10,000 schemas fold as they should",
        patience,
    );
    // The charts need two samples, 5 s apart.
    page_until(address, "/", "<polyline", Duration::from_secs(30));

    let mut timings = Vec::new();
    let mut bytes = 0;
    for _ in 0..5 {
        let asked = Instant::now();
        let response = get(address, "/");
        timings.push(asked.elapsed());
        assert_eq!(response.status, 200);
        bytes = response.body.len();
    }
    timings.sort();
    assert!(bytes < 1 << 20, "{bytes} bytes");
    // 200 ms in a release build (SPEC §9); this one is a debug build on a
    // shared machine.
    assert!(timings[2] < Duration::from_secs(1), "{timings:?}");

    let (text, dom) = in_chromium(address, "/");
    assert!(dom.contains("<svg"), "the charts are SVG:\n{dom}");
    assert_eq!(dom.matches("<polyline").count(), 4, "four charts");
    for expected in [
        "All 10,000 schemas fold as they should",
        "folds per second",
        "rows folded per second",
        "tick lateness, p99",
        "ticks skipped per second",
        "15 min ago",
        "page 1 of 100",
        "Schemas 10,000, by name",
        "skipped ticks",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not on the page:\n{text}"
        );
    }
    assert!(!text.contains("Needs attention"), "{text}");
    assert!(
        !dom.contains("<th>worker</th>"),
        "worker names are schema names:\n{dom}"
    );
    assert!(
        !text.contains(" p7777 "),
        "name order, first page: p1, p10, p100, ..."
    );

    // Search: a form, no script.
    assert!(dom.contains("<form") && dom.contains("name=\"q\""), "{dom}");
    let (found, _) = in_chromium(address, "/?q=p7777");
    assert!(
        found.contains("1 of 10,000 schemas contain “p7777”"),
        "{found}"
    );
    assert!(found.contains(" p7777 "), "{found}");
    assert!(!found.contains(" p7776 "), "{found}");
    let (many, _) = in_chromium(address, "/?q=P77&page=2");
    assert!(
        many.contains("111 of 10,000 schemas contain “P77”"),
        "{many}"
    );
    assert!(many.contains("page 2 of 2"), "{many}");
    // Paging: p1, p10, p100, p1000, p10000, p1001 .. on page 1; page 2 goes on.
    let (second, second_dom) = in_chromium(address, "/?page=2");
    assert!(second.contains("page 2 of 100"), "{second}");
    assert!(second.contains(" p1090 "), "{second}");
    assert!(!second.contains(" p1000 "), "{second}");
    assert!(second_dom.contains("href=\"/?page=3\""), "{second_dom}");
    // A query that makes no sense is still the page.
    assert_eq!(get(address, "/?page=abc&q=%ZZ&x").status, 200);

    // Trouble: a schema given up (missing, workers.create_schema false,
    // restart policy never), deltas waiting for want of a total row, and a
    // tenant's table dropped.
    execute(
        &db,
        "DROP TABLE p7777.counted; DELETE FROM p5000.counted; \
         INSERT INTO p5000.counted SELECT 'delta', 1 FROM generate_series(1, 152)",
    );
    pgfleet.reload(&yaml(", missing_tenant", "never"));
    // The three, first; on a crowded machine the reload's folds of every
    // schema at once may make a few skip ticks too ("…, 35 skipping
    // ticks"), which are listed after them.
    let three = "need attention (1 given up, 1 waiting for a total row, 1 table dropped";
    let body = page_until(address, "/", three, patience);
    let (trouble, trouble_dom) = in_chromium(address, "/");
    assert!(
        trouble.contains(" of 10,001 schemas fold as they should; ") && trouble.contains(three),
        "{trouble}"
    );
    let listed = trouble
        .split_once("Needs attention")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no attention list:\n{trouble}"));
    let given_up = listed.find("missing_tenant").expect("the given-up schema");
    let waiting = listed.find(" p5000 ").expect("the schema without a total");
    let dropped = listed.find(" p7777 ").expect("the dropped table");
    let others = listed.find("Other schemas").expect("the others");
    assert!(
        given_up < waiting && waiting < dropped && dropped < others,
        "{listed}"
    );
    assert!(listed.contains("does not exist"), "{listed}");
    assert!(
        listed.contains("waiting for a total row: 152 deltas"),
        "{listed}"
    );
    assert!(trouble_dom.contains("<time"), "{trouble_dom}");
    assert!(body.len() < 1 << 20);

    // An outage: the headline says so, names the server, and no schema is
    // called running; the page stays small and quick with every schema
    // needing attention.
    proxy.set_mode(Mode::Refuse);
    proxy.cut_all();
    let server = format!("@127.0.0.1:{}/{}", proxy.port(), db.name);
    page_until(address, "/", "is unreachable", patience);
    let asked = Instant::now();
    let outage_body = get(address, "/").body;
    let outage_took = asked.elapsed();
    assert!(outage_body.len() < 1 << 20, "{} bytes", outage_body.len());
    let (outage, _) = in_chromium(address, "/");
    for expected in [
        "The database at ",
        &server,
        "is unreachable",
        "No fold has succeeded since",
        "wait for the database",
    ] {
        assert!(
            outage.contains(expected),
            "{expected:?} not on the page:\n{outage}"
        );
    }
    assert!(!outage.contains("fold as they should"), "{outage}");

    eprintln!(
        "MEASURED the status page at 10,000 schemas (debug build): {bytes} bytes, GET / in {:.1} ms \
         (median of 5; {:.1} to {:.1} ms); during an outage {} bytes in {:.1} ms; the schemas were \
         created in {:.1} s; Chromium's DOM with trouble {} bytes",
        timings[2].as_secs_f64() * 1e3,
        timings[0].as_secs_f64() * 1e3,
        timings[4].as_secs_f64() * 1e3,
        outage_body.len(),
        outage_took.as_secs_f64() * 1e3,
        created.as_secs_f64(),
        trouble_dom.len()
    );
}

/// Issue 17 §3: an outage is not "ready" with "21 running": the page says
/// the database does not answer, since when nothing folded, and that the
/// workers wait for it.
#[test]
fn the_status_page_during_an_outage_says_so() {
    let db = cluster().create_database();
    let proxy = Proxy::start(cluster().port(), Mode::Forward);
    let url = proxy.url(&db.name);
    let (pgfleet, address) = start(
        &db,
        "workers:\n  total: 21\n",
        &[("PGFLEET__DATABASE__URL", &url)],
    );
    ready(&pgfleet, &db, &schema_names(21));
    page_until(address, "/", "All 21 schemas fold as they should", PATIENCE);

    proxy.set_mode(Mode::Refuse);
    proxy.cut_all();
    // Named as `--check` names it: where, never a password.
    let server = format!("@127.0.0.1:{}/{}", proxy.port(), db.name);
    page_until(address, "/", "is unreachable", PATIENCE);
    let (text, dom) = in_chromium(address, "/");
    for expected in [
        "The database at ",
        &server,
        "is unreachable",
        "No fold has succeeded since",
        "21 workers wait for the database",
        "waiting for database 21",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not on the page:\n{text}"
        );
    }
    let fleet = text
        .split_once("Fleet")
        .and_then(|(_, rest)| rest.split_once("Last 15 minutes"))
        .map_or("", |(fleet, _)| fleet);
    assert!(!fleet.contains("running"), "nothing runs:\n{fleet}");
    assert!(!text.contains("fold as they should"), "{text}");
    // worker_spi's names: worker N, beside schemaN.
    assert!(
        dom.contains("<th>worker</th>") && text.contains("worker 21"),
        "{text}"
    );
    assert!(!dom.contains("postgres://"), "no connection string:\n{dom}");

    proxy.set_mode(Mode::Forward);
    page_until(address, "/", "All 21 schemas fold as they should", PATIENCE);
}

/// Issue 17 §3: a schema that failed and then folded says it recovered,
/// and when its error was.
#[test]
fn a_recovered_error_says_so_and_when() {
    let db = cluster().create_database();
    let create = |schema: &str| {
        execute(
            &db,
            &format!(
                "CREATE SCHEMA {schema} CREATE TABLE counted (type text, value integer); \
                 INSERT INTO {schema}.counted VALUES ('total', 0);"
            ),
        )
    };
    create("tenant_022");
    let (pgfleet, address) = start(
        &db,
        "workers:\n  schemas: [tenant_021, tenant_022]\n  create_schema: false\nrestart:\n  max_restarts: 1000\n",
        &[],
    );
    pgfleet.wait_schema_event("worker_failed", "tenant_021");
    create("tenant_021");
    page_until(address, "/", "recovered: last error", PATIENCE);
    let (text, dom) = in_chromium(address, "/");
    assert!(
        text.contains("recovered: last error") && text.contains("schema tenant_021 does not exist"),
        "{text}"
    );
    assert!(text.contains("All 2 schemas fold as they should"), "{text}");
    // The exact time is the relative one's title.
    let time = dom
        .split_once("recovered: last error <time datetime=\"")
        .map(|(_, rest)| &rest[..20])
        .unwrap_or_else(|| panic!("no time of the error:\n{dom}"));
    assert!(time.starts_with("20") && time.ends_with('Z'), "{time}");
}

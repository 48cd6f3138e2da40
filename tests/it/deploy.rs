//! The deployment files in `deploy/` (issue 8 §6): no container engine or
//! cluster runs here, so these tests check what can be checked without one.
//! Every YAML and JSON file parses; `promtool` checks and unit-tests the
//! alert rules and parses the dashboard's queries; `systemd-analyze` verifies
//! the unit and rates its sandbox; the pgfleet configurations of the
//! ConfigMap and of compose load in the real binary, and name files where
//! the manifests mount them; the manifests hold what deploy/README.md
//! promises; and every metric the alerts and the dashboard use is in the
//! metrics table of docs/operations.md, and every metric of that table is
//! used by one of them.
//!
//! `promtool` (Debian: `prometheus`) and `systemd-analyze` (Debian:
//! `systemd`) must be installed: a missing tool fails the test with the
//! package to install, never a silent skip.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_norway::Value;

use crate::docs::documented_metrics;
use crate::support::pgfleet::run;
use crate::support::tls::Pki;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The path of a tool, or a failure that says which package has it.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed, and the deploy/ checks need it: \
         install it (Debian/Ubuntu: apt-get install {package}). \
         These checks never skip."
    );
}

fn run_tool(program: &Path, args: &[&str], dir: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Every file under `dir` whose name ends with one of `suffixes`, sorted.
fn files_under(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| suffixes.iter().any(|s| n.ends_with(s)))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The documents of a (multi-document) YAML text, split at `---` lines;
/// documents with nothing but comments are left out.
fn yaml_documents(yaml: &str, origin: &Path) -> Vec<Value> {
    let mut documents = vec![String::new()];
    for line in yaml.lines() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            documents.push(String::new());
        } else {
            let current = documents.last_mut().expect("one document");
            current.push_str(line);
            current.push('\n');
        }
    }
    documents
        .iter()
        .filter(|doc| {
            doc.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .enumerate()
        .map(|(i, doc)| {
            serde_norway::from_str::<Value>(doc).unwrap_or_else(|e| {
                panic!(
                    "{} (document {}) is not valid YAML: {e}",
                    origin.display(),
                    i + 1
                )
            })
        })
        .collect()
}

fn yaml_file(path: &Path) -> Value {
    let mut documents = yaml_documents(&read(path), path);
    assert_eq!(
        documents.len(),
        1,
        "{} should hold one YAML document",
        path.display()
    );
    documents.remove(0)
}

/// The string value of `key` in the `[table]` of a small TOML file, read
/// by hand (`key = "value"` lines; no TOML crate for two lookups).
fn toml_string(path: &Path, table: &str, key: &str) -> Option<String> {
    let text = read(path);
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_owned();
        } else if current == table {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == key {
                    let v = v.split('#').next().unwrap_or_default().trim();
                    return v.strip_prefix('"')?.strip_suffix('"').map(str::to_owned);
                }
            }
        }
    }
    None
}

fn str_at<'a>(value: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .try_fold(value, |v, k| v.get(*k))
        .and_then(Value::as_str)
}

fn seq(value: &Value) -> &[Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

fn strings(value: &Value) -> Vec<&str> {
    seq(value).iter().filter_map(Value::as_str).collect()
}

#[test]
fn every_yaml_and_json_file_parses() {
    let yaml = files_under(&deploy(), &[".yaml", ".yml"]);
    assert!(
        yaml.len() >= 10,
        "expected the compose, Kubernetes and monitoring YAML files under deploy/, found {yaml:?}"
    );
    for path in &yaml {
        let documents = yaml_documents(&read(path), path);
        assert!(!documents.is_empty(), "{} is empty", path.display());
    }
    let json = files_under(&deploy(), &[".json"]);
    assert!(!json.is_empty(), "expected the Grafana dashboard JSON");
    for path in &json {
        serde_json::from_str::<serde_json::Value>(&read(path))
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    }
}

/// `promtool check rules` and `promtool test rules` on the alerts, run as
/// deploy/README.md and the files' own comments say, on the files as they
/// are: from the repository root, and `test rules` from deploy/monitoring
/// too. alerts.test.yaml holds each alert's rendered annotations, which
/// promtool compares verbatim; every alert has them, and fires in at least
/// one of its cases. Then the dashboard's queries parsed by promtool as
/// recording rules; `promtool check config` on the compose demo's
/// Prometheus configuration.
#[test]
fn alert_rules_and_dashboard_queries_pass_promtool() {
    let promtool = tool("promtool", "prometheus");
    let monitoring = deploy().join("monitoring");
    assert_success(
        "promtool check rules deploy/monitoring/alerts.yaml",
        &run_tool(
            &promtool,
            &["check", "rules", "deploy/monitoring/alerts.yaml"],
            &repo(),
        ),
    );
    assert_success(
        "promtool test rules deploy/monitoring/alerts.test.yaml (from the repository root)",
        &run_tool(
            &promtool,
            &["test", "rules", "deploy/monitoring/alerts.test.yaml"],
            &repo(),
        ),
    );
    assert_success(
        "promtool test rules alerts.test.yaml (from deploy/monitoring)",
        &run_tool(
            &promtool,
            &["test", "rules", "alerts.test.yaml"],
            &monitoring,
        ),
    );

    let rules = yaml_file(&monitoring.join("alerts.yaml"));
    let mut alerts = Vec::new();
    for group in seq(&rules["groups"]) {
        for rule in seq(&group["rules"]) {
            let name = str_at(rule, &["alert"]).expect("an alert rule names its alert");
            for key in ["summary", "description", "runbook"] {
                assert!(
                    str_at(rule, &["annotations", key]).is_some_and(|a| !a.trim().is_empty()),
                    "alert {name} lacks the annotation `{key}`"
                );
            }
            alerts.push(name);
        }
    }
    assert!(
        alerts.len() >= 8,
        "expected the alerts of issue 8, found {alerts:?}"
    );
    let cases = yaml_file(&monitoring.join("alerts.test.yaml"));
    let mut fired = BTreeSet::new();
    for test in seq(&cases["tests"]) {
        for case in seq(&test["alert_rule_test"]) {
            let name = str_at(case, &["alertname"]).expect("a case names its alert");
            for expected in seq(&case["exp_alerts"]) {
                assert!(
                    expected["exp_annotations"].is_mapping(),
                    "alerts.test.yaml: an expected {name} without exp_annotations"
                );
                fired.insert(name);
            }
        }
    }
    let never: Vec<&&str> = alerts.iter().filter(|a| !fired.contains(**a)).collect();
    assert!(
        never.is_empty(),
        "alerts.test.yaml never sees these alerts fire: {never:?}"
    );

    let work = tempfile::tempdir().expect("temp dir");
    // The dashboard's queries, with Grafana's variables filled in.
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&monitoring.join("grafana-dashboard.json")))
            .expect("dashboard JSON");
    let mut records = Vec::new();
    for panel in dashboard["panels"].as_array().expect("dashboard panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target's expr");
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$job", ".*")
                .replace("$instance", ".*");
            let name = format!(
                "dashboard:panel{}_{}",
                panel["id"],
                target["refId"].as_str().unwrap_or("A")
            );
            records.push(format!(
                "      - record: {name}\n        expr: {}\n",
                serde_json::to_string(&expr).expect("expr as a JSON string")
            ));
        }
    }
    assert!(
        records.len() >= 10,
        "expected the dashboard's queries, found {}",
        records.len()
    );
    fs::write(
        work.path().join("dashboard.yaml"),
        format!(
            "groups:\n  - name: dashboard\n    rules:\n{}",
            records.concat()
        ),
    )
    .expect("write dashboard rules");
    assert_success(
        "promtool check rules on the dashboard's queries",
        &run_tool(
            &promtool,
            &["check", "rules", "dashboard.yaml"],
            work.path(),
        ),
    );

    assert_success(
        "promtool check config deploy/compose/prometheus.yml",
        &run_tool(
            &promtool,
            &["check", "config", "prometheus.yml"],
            &deploy().join("compose"),
        ),
    );
}

/// `systemd-analyze verify` needs the commands of the unit to exist: a copy
/// of the unit, under the same name, runs the binary this build made. Any
/// complaint about the unit fails (verify exits 0 on unknown keys and
/// values it ignores). `systemd-analyze security --offline` rates the
/// sandbox: 2.0 at most ("OK"), so a dropped hardening line shows.
#[test]
fn systemd_unit_passes_systemd_analyze() {
    let systemd_analyze = tool("systemd-analyze", "systemd");
    let unit_path = deploy().join("systemd/pgfleet.service");
    let unit = read(&unit_path);
    let installed = "/usr/local/bin/pgfleet";

    let directives: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for expected in [
        "Type=notify",
        "ExecStartPre=/usr/local/bin/pgfleet --check --config /etc/pgfleet/pgfleet.yaml",
        "ExecStart=/usr/local/bin/pgfleet --config /etc/pgfleet/pgfleet.yaml",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(
            directives.contains(&expected),
            "the unit lacks `{expected}`"
        );
    }
    let reloads: Vec<&str> = directives
        .iter()
        .copied()
        .filter(|l| l.starts_with("ExecReload="))
        .collect();
    assert_eq!(
        reloads,
        [
            "ExecReload=/usr/local/bin/pgfleet --check --config /etc/pgfleet/pgfleet.yaml",
            "ExecReload=/bin/kill -HUP $MAINPID"
        ],
        "a reload validates, then signals"
    );
    assert!(
        directives.iter().any(|l| l.starts_with("WatchdogSec=")),
        "the unit lacks WatchdogSec="
    );

    let binary = env!("CARGO_BIN_EXE_pgfleet");
    assert!(
        !binary.contains(char::is_whitespace),
        "the test binary's path has a space, which a unit cannot hold: {binary}"
    );
    let work = tempfile::tempdir().expect("temp dir");
    let copy = work.path().join("pgfleet.service");
    fs::write(&copy, unit.replace(installed, binary)).expect("write the unit's copy");
    let copy_arg = copy.to_str().expect("utf-8 temp path");

    let verify = run_tool(&systemd_analyze, &["verify", copy_arg], work.path());
    let complaints: Vec<String> = text(&verify.stderr)
        .lines()
        .chain(text(&verify.stdout).lines())
        .filter(|l| l.contains("pgfleet.service"))
        .map(|l| l.replace(copy_arg, "deploy/systemd/pgfleet.service"))
        .collect();
    assert!(
        verify.status.success() && complaints.is_empty(),
        "systemd-analyze verify deploy/systemd/pgfleet.service ({}):\n{}",
        verify.status,
        if complaints.is_empty() {
            text(&verify.stderr)
        } else {
            complaints.join("\n")
        }
    );

    let security = run_tool(
        &systemd_analyze,
        &["security", "--offline=yes", "--threshold=20", copy_arg],
        work.path(),
    );
    let rating = text(&security.stdout);
    assert!(
        security.status.success(),
        "systemd-analyze security rates the unit's sandbox above 2.0 ({}):\n{}\n{}",
        security.status,
        rating
            .lines()
            .filter(|l| l.contains('✗') || l.contains("Overall"))
            .collect::<Vec<_>>()
            .join("\n"),
        text(&security.stderr)
    );
}

/// A pgfleet configuration file from deploy/, with the files it names
/// replaced by real ones in a temp dir.
struct ConfigUnderTest {
    origin: String,
    yaml: String,
    password_file: String,
    sslrootcert: String,
}

impl ConfigUnderTest {
    fn new(origin: &str, yaml: String) -> Self {
        let config: Value = serde_norway::from_str(&yaml)
            .unwrap_or_else(|e| panic!("{origin}: pgfleet.yaml is not YAML: {e}"));
        let url = str_at(&config, &["database", "url"])
            .unwrap_or_else(|| panic!("{origin}: no database.url"))
            .to_owned();
        assert!(
            url.contains("sslmode=verify-full"),
            "{origin}: the database URL should verify the server: {url}"
        );
        let sslrootcert = url
            .split(['?', '&', ' '])
            .find_map(|p| p.strip_prefix("sslrootcert="))
            .unwrap_or_else(|| panic!("{origin}: no sslrootcert in {url}"))
            .to_owned();
        let password_file = str_at(&config, &["database", "password_file"])
            .unwrap_or_else(|| panic!("{origin}: no database.password_file"))
            .to_owned();
        assert_eq!(
            str_at(&config, &["http", "listen"]),
            Some("0.0.0.0:8187"),
            "{origin}: in a container, http.listen must be on every interface"
        );
        ConfigUnderTest {
            origin: origin.into(),
            yaml,
            password_file,
            sslrootcert,
        }
    }

    /// `pgfleet --print-config` with this configuration: exit 0, the
    /// container's http.listen, the password masked.
    fn loads(&self) {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki::create(dir.path()).expect("a CA for sslrootcert");
        let password = dir.path().join("password");
        fs::write(&password, "not-a-real-password-4711\n").expect("write password");
        let yaml = self
            .yaml
            .replace(&self.sslrootcert, pki.ca_cert.to_str().expect("utf-8"))
            .replace(&self.password_file, password.to_str().expect("utf-8"));
        let path = dir.path().join("pgfleet.yaml");
        fs::write(&path, yaml).expect("write config");
        let output = run(
            &[
                "--print-config",
                "--config",
                path.to_str().expect("utf-8 temp path"),
            ],
            &[],
        );
        let printed = text(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}: pgfleet --print-config refuses it:\n{}{printed}",
            self.origin,
            text(&output.stderr)
        );
        assert!(
            printed.contains("0.0.0.0:8187"),
            "{}: {printed}",
            self.origin
        );
        assert!(
            !printed.contains("4711"),
            "{}: the password was printed:\n{printed}",
            self.origin
        );
    }
}

/// Every document of every YAML file under deploy/kubernetes.
fn kubernetes_objects() -> Vec<Value> {
    files_under(&deploy().join("kubernetes"), &[".yaml", ".yml"])
        .iter()
        .flat_map(|path| yaml_documents(&read(path), path))
        .filter(|doc| doc.get("kind").is_some() && doc.get("apiVersion").is_some())
        .collect()
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            str_at(o, &["kind"]) == Some(kind) && str_at(o, &["metadata", "name"]) == Some(name)
        })
        .unwrap_or_else(|| panic!("deploy/kubernetes has no {kind} {name}"))
}

fn deployment(objects: &[Value]) -> &Value {
    object(objects, "Deployment", "pgfleet")
}

fn pgfleet_container(deployment: &Value) -> &Value {
    seq(&deployment["spec"]["template"]["spec"]["containers"])
        .iter()
        .find(|c| str_at(c, &["name"]) == Some("pgfleet"))
        .expect("the Deployment's container named pgfleet")
}

/// Which ConfigMap or Secret key the Deployment mounts at `path`, checked
/// to exist; panics when nothing is mounted there.
fn mounted_key(objects: &[Value], path: &str) -> String {
    let deployment = deployment(objects);
    let (dir, file) = path.rsplit_once('/').expect("an absolute path");
    let mount = seq(&pgfleet_container(deployment)["volumeMounts"])
        .iter()
        .find(|m| str_at(m, &["mountPath"]) == Some(dir))
        .unwrap_or_else(|| panic!("the Deployment mounts nothing at {dir} (for {path})"));
    let volume_name = str_at(mount, &["name"]).expect("volumeMount name");
    let volume = seq(&deployment["spec"]["template"]["spec"]["volumes"])
        .iter()
        .find(|v| str_at(v, &["name"]) == Some(volume_name))
        .unwrap_or_else(|| panic!("no volume {volume_name}"));
    let mut sources: Vec<(&str, &str)> = Vec::new();
    if let Some(name) = str_at(volume, &["configMap", "name"]) {
        sources.push(("ConfigMap", name));
    }
    if let Some(name) = str_at(volume, &["secret", "secretName"]) {
        sources.push(("Secret", name));
    }
    for source in seq(&volume["projected"]["sources"]) {
        if let Some(name) = str_at(source, &["configMap", "name"]) {
            sources.push(("ConfigMap", name));
        }
        if let Some(name) = str_at(source, &["secret", "name"]) {
            sources.push(("Secret", name));
        }
    }
    for (kind, name) in &sources {
        let holder = object(objects, kind, name);
        if ["data", "stringData"]
            .iter()
            .any(|d| holder[*d].get(file).is_some())
        {
            return format!("{kind} {name}, key {file}");
        }
    }
    panic!("{path}: the volume {volume_name} at {dir} has no key {file} (from {sources:?})");
}

/// The configuration in the ConfigMap and in compose: valid for the real
/// binary, and the files they name are where the manifests mount them.
/// pgfleet reads `database.password_file` and the `sslrootcert` PEM when it
/// loads the configuration (a missing file is exit 2, even for
/// --print-config), so the test swaps those paths for real temp files.
#[test]
fn configs_in_configmap_and_compose_load_and_name_mounted_files() {
    let objects = kubernetes_objects();
    let configmap = object(&objects, "ConfigMap", "pgfleet-config");
    let yaml = str_at(configmap, &["data", "pgfleet.yaml"])
        .expect("ConfigMap pgfleet-config: data.pgfleet.yaml")
        .to_owned();
    let kubernetes = ConfigUnderTest::new("deploy/kubernetes/configmap.yaml", yaml);
    kubernetes.loads();

    let container = pgfleet_container(deployment(&objects));
    let args = strings(&container["args"]);
    let config_arg = args
        .iter()
        .position(|a| *a == "--config")
        .and_then(|i| args.get(i + 1))
        .expect("the Deployment passes --config FILE");
    assert_eq!(
        mounted_key(&objects, config_arg),
        "ConfigMap pgfleet-config, key pgfleet.yaml"
    );
    mounted_key(&objects, &kubernetes.password_file);
    mounted_key(&objects, &kubernetes.sslrootcert);

    let compose_config = deploy().join("compose/pgfleet/pgfleet.yaml");
    let compose =
        ConfigUnderTest::new("deploy/compose/pgfleet/pgfleet.yaml", read(&compose_config));
    compose.loads();
    let services = yaml_file(&deploy().join("compose.yaml"));
    let pgfleet = &services["services"]["pgfleet"];
    let volumes = strings(&pgfleet["volumes"]);
    let compose_args = strings(&pgfleet["command"]);
    assert!(
        compose_args
            .windows(2)
            .any(|w| w == ["--config", "/etc/pgfleet/pgfleet.yaml"]),
        "compose's pgfleet runs with --config /etc/pgfleet/pgfleet.yaml: {compose_args:?}"
    );
    assert!(
        volumes.contains(&"./compose/pgfleet:/etc/pgfleet:ro"),
        "compose mounts deploy/compose/pgfleet at /etc/pgfleet: {volumes:?}"
    );
    let make_pki = read(&deploy().join("compose/make-pki.sh"));
    for path in [&compose.password_file, &compose.sslrootcert] {
        let (dir, file) = path.rsplit_once('/').expect("an absolute path");
        let volume = volumes
            .iter()
            .find_map(|v| v.strip_suffix(&format!(":{dir}:ro")))
            .unwrap_or_else(|| panic!("compose's pgfleet mounts nothing at {dir} (for {path})"));
        assert!(
            strings(&services["services"]["pki"]["volumes"]).contains(&&*format!("{volume}:{dir}")),
            "the pki service does not write the volume {volume} that holds {path}"
        );
        assert!(make_pki.contains(file), "make-pki.sh does not make {file}");
    }
}

/// Every `pgfleet_…` word in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("pgfleet_") {
        let start = from + at;
        let word_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let mut end = start + "pgfleet_".len();
        while end < bytes.len() && word_char(bytes[end]) {
            end += 1;
        }
        if start == 0 || !word_char(bytes[start - 1]) {
            names.insert(text[start..end].trim_end_matches('_').to_owned());
        }
        from = end;
    }
    names
}

#[test]
fn metrics_in_alerts_and_dashboard_are_in_the_docs() {
    let documented = documented_metrics();
    let known = |name: &str| {
        documented.iter().any(|(n, _)| n == name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix).is_some_and(|stem| {
                    documented
                        .iter()
                        .any(|(n, kind)| n == stem && kind == "histogram")
                })
            })
    };
    let monitoring = deploy().join("monitoring");
    let mut used = BTreeSet::new();
    for file in ["alerts.yaml", "alerts.test.yaml", "grafana-dashboard.json"] {
        let names = metric_names(&read(&monitoring.join(file)));
        let unknown: Vec<&String> = names.iter().filter(|n| !known(n)).collect();
        assert!(
            unknown.is_empty(),
            "deploy/monitoring/{file} uses metrics that docs/operations.md's metrics table does not have: {unknown:?}"
        );
        used.extend(names);
    }
    for (name, _) in &documented {
        if name != "pgfleet_build_info" {
            assert!(
                used.iter().any(|u| u.starts_with(name.as_str())),
                "{name} is in docs/operations.md but neither alerted on nor on the dashboard"
            );
        }
    }
}

/// What the manifests, the Dockerfile and .dockerignore promise
/// (deploy/README.md), read as data.
/// deploy/README.md lists the alerts an operator gets: every one of
/// alerts.yaml, none that is not there.
#[test]
fn deploy_readme_names_every_alert() {
    let rules = yaml_file(&deploy().join("monitoring/alerts.yaml"));
    let alerts: BTreeSet<String> = seq(&rules["groups"])
        .iter()
        .flat_map(|group| seq(&group["rules"]))
        .filter_map(|rule| rule["alert"].as_str().map(str::to_owned))
        .collect();
    assert!(alerts.len() >= 12, "{alerts:?}");
    let readme = read(&deploy().join("README.md"));
    let named: BTreeSet<String> = readme
        .split('`')
        .filter(|word| word.starts_with("Pgfleet") && word.chars().all(char::is_alphanumeric))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        named, alerts,
        "deploy/README.md's alerts against alerts.yaml"
    );
}

#[test]
fn manifests_and_dockerfile_hold_what_they_promise() {
    let objects = kubernetes_objects();
    let deployment = deployment(&objects);
    let spec = &deployment["spec"];
    assert_eq!(
        spec["replicas"].as_u64(),
        Some(3),
        "three replicas sharing the schemas"
    );
    assert_eq!(str_at(spec, &["strategy", "type"]), Some("RollingUpdate"));
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxUnavailable"].as_u64(),
        Some(0),
        "a new pod is ready before an old one stops"
    );
    let budget = object(&objects, "PodDisruptionBudget", "pgfleet");
    assert_eq!(budget["spec"]["maxUnavailable"].as_u64(), Some(1));
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"], spec["selector"]["matchLabels"],
        "the budget covers the Deployment's pods"
    );
    let config: Value = serde_norway::from_str(
        str_at(
            object(&objects, "ConfigMap", "pgfleet-config"),
            &["data", "pgfleet.yaml"],
        )
        .expect("pgfleet.yaml in the ConfigMap"),
    )
    .expect("pgfleet.yaml parses");
    assert_eq!(
        config["coordination"]["enabled"].as_bool(),
        Some(true),
        "replicas share the schemas only with coordination on"
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(
        pod["enableServiceLinks"].as_bool(),
        Some(false),
        "no service-link variables in the pod"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let container = pgfleet_container(deployment);
    let args = strings(&container["args"]);
    assert!(args.contains(&"--watch-config"), "args: {args:?}");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert!(strings(&security["capabilities"]["drop"]).contains(&"ALL"));
    assert!(container["resources"]["requests"].is_mapping());
    assert!(
        seq(&container["volumeMounts"])
            .iter()
            .all(|m| m.get("subPath").is_none()),
        "a subPath mount is never updated, so --watch-config would see no change"
    );

    let port = seq(&container["ports"])
        .iter()
        .find(|p| p["containerPort"].as_u64() == Some(8187))
        .expect("container port 8187 (http.listen)");
    let port_name = str_at(port, &["name"]).expect("the port has a name");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(str_at(get, &["path"]), Some(path), "{probe}");
        assert!(
            get["port"].as_u64() == Some(8187) || get["port"].as_str() == Some(port_name),
            "{probe} is on the HTTP port"
        );
    }

    let services: Vec<&Value> = objects
        .iter()
        .filter(|o| str_at(o, &["kind"]) == Some("Service"))
        .collect();
    assert!(!services.is_empty(), "a Service for the metrics");
    for service in services {
        let name = str_at(service, &["metadata", "name"]).expect("Service name");
        assert_ne!(
            name, "pgfleet",
            "a Service named pgfleet injects PGFLEET_PORT and friends into every pod"
        );
    }

    let kustomization = yaml_file(&deploy().join("kubernetes/kustomization.yaml"));
    for resource in strings(&kustomization["resources"]) {
        assert!(
            deploy().join("kubernetes").join(resource).is_file(),
            "kustomization.yaml lists {resource}, which does not exist"
        );
    }

    let dockerfile = read(&deploy().join("Dockerfile"));
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let froms = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(froms >= 2, "a multi-stage build: {froms} FROM");
    let user = instructions
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the final stage sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("USER {user}: numeric, so runAsNonRoot can check it"));
    assert_ne!(uid, 0, "the image runs as root");
    for expected in [
        "EXPOSE 8187",
        r#"ENTRYPOINT ["pgfleet"]"#,
        r#"CMD ["--config", "/etc/pgfleet/pgfleet.yaml"]"#,
    ] {
        assert!(
            instructions.contains(&expected),
            "the Dockerfile lacks `{expected}`"
        );
    }
    assert!(
        dockerfile.contains("cargo build --release --locked"),
        "the image builds what Cargo.lock says"
    );
    // The build stage pins its toolchain by its full version (no floating
    // `rust:1`), one that builds the crate (at least Cargo.toml's
    // rust-version), and ships a binary without debug info.
    let build_from = instructions
        .iter()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .expect("a build stage FROM rust:…");
    let pinned = build_from
        .strip_suffix("-bookworm AS build")
        .unwrap_or_else(|| panic!("FROM rust:<version>-bookworm AS build, not {build_from:?}"));
    let version = |text: &str| -> Vec<u32> {
        text.split('.')
            .map(|n| {
                n.parse()
                    .unwrap_or_else(|_| panic!("not a version: {text:?}"))
            })
            .collect()
    };
    assert_eq!(
        version(pinned).len(),
        3,
        "the Dockerfile pins a full toolchain version (1.x.y), not {pinned:?}"
    );
    let minimum = toml_string(
        &repo().join("Cargo.toml"),
        "workspace.package",
        "rust-version",
    )
    .expect("Cargo.toml: workspace.package.rust-version");
    assert!(
        version(pinned) >= version(&minimum),
        "the Dockerfile's toolchain {pinned} is older than rust-version {minimum}"
    );
    assert_eq!(
        toml_string(&repo().join("Cargo.toml"), "profile.release", "strip").as_deref(),
        Some("debuginfo"),
        "Cargo.toml: the release binary without debug info"
    );
    let ignore = read(&repo().join(".dockerignore"));
    assert!(
        ignore
            .lines()
            .any(|l| matches!(l.trim(), "target" | "target/" | "/target" | "/target/")),
        ".dockerignore keeps target/ out of the build context"
    );
}

/// `bash deploy/try-it.sh` (with this build's binary, `PGFLEET_BIN`, so no
/// release build) beside another pgfleet: 127.0.0.1:8187, pgfleet's
/// default, is taken here, so the script must pick another port for HTTP
/// (as it does for PostgreSQL), print the status URL, and serve there; then
/// Ctrl-C (SIGINT) stops it all, exit 0.
#[test]
fn try_it_picks_a_free_http_port_and_prints_it() {
    use std::io::{BufRead, BufReader, Read, Seek, Write};
    use std::net::{TcpListener, TcpStream};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    // Another pgfleet on the machine. Already taken is as good.
    let _other = match TcpListener::bind("127.0.0.1:8187") {
        Ok(listener) => Some(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => None,
        Err(e) => panic!("binding 127.0.0.1:8187: {e}"),
    };
    // pgfleet's log goes to stderr: to a file, so that it never fills a pipe.
    let mut stderr = tempfile::tempfile().expect("a temp file for stderr");
    let mut command = Command::new("bash");
    command
        .arg("deploy/try-it.sh")
        .current_dir(repo())
        .env("PGFLEET_BIN", env!("CARGO_BIN_EXE_pgfleet"))
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr.try_clone().expect("the temp file again"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PGFLEET_") {
            command.env_remove(key);
        }
    }
    let child = command.spawn().expect("run deploy/try-it.sh");
    let mut script = Script { child };
    let stdout = script.child.stdout.take().expect("piped stdout");
    let (lines, printed) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    let url = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match printed.recv_timeout(left) {
            Ok(line) => {
                let url = line
                    .trim()
                    .strip_prefix("status:")
                    .map(|u| u.trim().to_owned());
                seen.push(line);
                if let Some(url) = url {
                    break url;
                }
            }
            Err(_) => {
                script.interrupt();
                let mut log = String::new();
                let _ = stderr
                    .rewind()
                    .and_then(|()| stderr.read_to_string(&mut log).map(drop));
                panic!(
                    "try-it.sh printed no status URL:\n{}\n--- stderr ---\n{log}",
                    seen.join("\n")
                );
            }
        }
    };
    let address = url
        .strip_prefix("http://")
        .and_then(|a| a.strip_suffix('/'))
        .unwrap_or_else(|| panic!("not a status URL: {url}"));
    assert_ne!(
        address, "127.0.0.1:8187",
        "try-it.sh printed the port another pgfleet holds"
    );
    let mut stream = TcpStream::connect(address)
        .unwrap_or_else(|e| panic!("connecting to the printed {url}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .expect("send a request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "GET {url}healthz: {answer}"
    );

    let code = script.interrupt();
    assert_eq!(code, Some(0), "try-it.sh after Ctrl-C");
}

/// try-it.sh, interrupted (as Ctrl-C does) however the test ends, so that
/// it stops pgfleet and removes its cluster.
struct Script {
    child: std::process::Child,
}

impl Script {
    /// SIGINT, then the exit code within 30 s (else SIGKILL).
    fn interrupt(&mut self) -> Option<i32> {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("poll try-it.sh") {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.interrupt();
        }
    }
}

//! The reference in `docs/` against what it describes: every key of
//! `config/default.yaml` in the keys table of `docs/configuration.md`, with
//! its default; every log event the code writes in the events table of
//! `docs/operations.md`; and every metric `/metrics` serves in its metrics
//! table, with its type. Each table is checked both ways, so a key, an
//! event or a metric added or removed on one side only fails here.
//! (`deploy::` checks the metrics table against the alerts and the
//! dashboard.)

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_norway::Value;

use crate::http::{families, scrape, start};
use crate::support::cluster::cluster;
use crate::support::pgfleet::{ready, schema_names};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The body rows of the tables under the heading `## {heading}` of
/// `docs/{file}`, as trimmed cells, for the rows whose first cell is code
/// (`` `name` ``), with the backticks of that cell removed.
fn table(file: &str, heading: &str) -> Vec<Vec<String>> {
    let text = read(&repo().join("docs").join(file));
    let section = text
        .split(&format!("\n## {heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("docs/{file} has no \"## {heading}\" section"));
    let lines: Vec<&str> = section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .collect();
    // A header row is the one above a `| --- |` line.
    let is_header = |i: usize| {
        lines
            .get(i + 1)
            .is_some_and(|next| next.starts_with("| ---"))
    };
    let rows: Vec<Vec<String>> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| !is_header(*i))
        .filter_map(|(_, l)| {
            let cells: Vec<String> = l
                .strip_prefix('|')?
                .strip_suffix('|')?
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            let name = cells
                .first()?
                .strip_prefix('`')?
                .strip_suffix('`')?
                .to_owned();
            Some(
                std::iter::once(name)
                    .chain(cells[1..].iter().cloned())
                    .collect(),
            )
        })
        .collect();
    assert!(
        rows.len() >= 10,
        "docs/{file}, \"## {heading}\": found only {rows:?}"
    );
    rows
}

/// The metric names of the table in `docs/operations.md` ("## Metrics"),
/// with their types.
pub(crate) fn documented_metrics() -> Vec<(String, String)> {
    table("operations.md", "Metrics")
        .into_iter()
        .filter(|row| row[0].starts_with("pgfleet_"))
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect()
}

/// Every leaf of a YAML mapping, as `section.key` => value.
fn leaves(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Mapping(map) => {
            for (key, value) in map {
                let key = key.as_str().expect("a string key");
                let path = if prefix.is_empty() {
                    key.to_owned()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(&path, value, out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), leaf.clone());
        }
    }
}

/// A default as the table writes it.
fn as_written(value: &Value) -> String {
    match value {
        Value::String(s) if s.is_empty() => "\"\"".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Sequence(s) if s.is_empty() => "[]".to_owned(),
        other => panic!("a default the table cannot show: {other:?}"),
    }
}

#[test]
fn every_key_of_default_yaml_is_in_the_configuration_reference() {
    let defaults: Value =
        serde_norway::from_str(&read(&repo().join("config/default.yaml"))).expect("default.yaml");
    let mut keys = BTreeMap::new();
    leaves("", &defaults, &mut keys);
    assert!(keys.len() >= 30, "config/default.yaml: {keys:?}");

    let documented: BTreeMap<String, String> = table("configuration.md", "Keys")
        .into_iter()
        .map(|row| {
            let default = row.get(1).cloned().unwrap_or_default();
            (row[0].clone(), default)
        })
        .collect();
    let missing: Vec<&String> = keys
        .keys()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "keys of config/default.yaml missing from docs/configuration.md's table: {missing:?}"
    );
    let unknown: Vec<&String> = documented
        .keys()
        .filter(|k| !keys.contains_key(*k))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md documents keys config/default.yaml does not have: {unknown:?}"
    );
    for (key, value) in &keys {
        let expected = format!("`{}`", as_written(value));
        assert_eq!(
            documented[key], expected,
            "the default of `{key}` in docs/configuration.md"
        );
    }
}

/// Every `"event" => "name"` in the Rust files under `dir`.
fn events_in(dir: &Path, out: &mut BTreeSet<String>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            events_in(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = read(&path);
            for (at, _) in text.match_indices("\"event\" =>") {
                let rest = text[at + "\"event\" =>".len()..].trim_start();
                let name = rest
                    .strip_prefix('"')
                    .and_then(|r| r.split_once('"'))
                    .map(|(name, _)| name)
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: an event that is not a literal, which this test cannot read: {}",
                            path.display(),
                            rest.lines().next().unwrap_or_default()
                        )
                    });
                out.insert(name.to_owned());
            }
        }
    }
}

#[test]
fn every_log_event_is_in_the_operations_reference() {
    let mut written = BTreeSet::new();
    events_in(&repo().join("src"), &mut written);
    events_in(&repo().join("actors/src"), &mut written);
    assert!(written.len() >= 30, "events in the code: {written:?}");
    let documented: BTreeSet<String> = table("operations.md", "Log events")
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    let missing: Vec<&String> = written.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "events the code logs that docs/operations.md's table does not have: {missing:?}"
    );
    let unknown: Vec<&String> = documented.difference(&written).collect();
    assert!(
        unknown.is_empty(),
        "docs/operations.md documents events the code never logs: {unknown:?}"
    );
}

/// `/metrics` of a running pgfleet, family by family, against the table:
/// the same names (a counter's with `_total`), the same types.
#[test]
fn every_metric_served_is_in_the_operations_reference() {
    let db = cluster().create_database();
    let (pgfleet, address) = start(&db, "workers:\n  total: 2\n", &[]);
    ready(&pgfleet, &db, &schema_names(2));
    let served: BTreeMap<String, String> = families(&scrape(address))
        .into_iter()
        .map(|(family, kind)| {
            let name = if kind == "counter" {
                format!("{family}_total")
            } else {
                family
            };
            (name, kind)
        })
        .collect();
    let documented: BTreeMap<String, String> = documented_metrics().into_iter().collect();
    for (name, kind) in &served {
        assert_eq!(
            documented.get(name),
            Some(kind),
            "/metrics serves the {kind} {name}: not so in docs/operations.md's metrics table"
        );
    }
    // A labelled family has no sample before its first label set (no tick
    // skipped yet): such a name must at least be registered in the code, by
    // whichever module owns it (status/metrics.rs, db/metrics.rs, ...).
    let mut code = String::new();
    rust_sources(&repo().join("actors/src"), &mut code);
    for name in documented.keys().filter(|n| !served.contains_key(*n)) {
        let family = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            code.contains(&format!("\"{family}\"")),
            "docs/operations.md documents {name}, which /metrics does not serve \
             and no file under actors/src registers"
        );
    }
}

/// The text of every Rust file under `dir`, one after the other.
fn rust_sources(dir: &Path, out: &mut String) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&read(&path));
        }
    }
}

/// The house has no import cycle (issue 18 §0): the script docs/design.md
/// names finds none in the library.
#[test]
fn the_module_graph_has_no_cycle() {
    let output = std::process::Command::new("python3")
        .arg(repo().join("scripts/module-cycles.py"))
        .arg(repo().join("actors/src"))
        .output()
        .expect("python3 scripts/module-cycles.py");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && said.contains("0 import cycle(s)"),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

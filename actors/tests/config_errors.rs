//! Every configuration error a user can hit, read back: each names the
//! key, the value and where it came from; and the loader never panics,
//! whatever YAML or environment it is given (property tests).

use std::io::Write;

use pgfleet_actors::config_actor::Loaded;
use pgfleet_actors::settings::{ConfigError, ConfigSources, UNKNOWN_KEY};
use proptest::prelude::*;

fn quiet() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

fn load(
    yaml: &str,
    env: &[(&str, &str)],
) -> (
    Result<pgfleet_actors::settings::Settings, ConfigError>,
    String,
) {
    let mut file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    file.write_all(yaml.as_bytes()).expect("write");
    let path = file
        .path()
        .canonicalize()
        .expect("path")
        .display()
        .to_string();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // As the service reads it: the connector built with the settings, and
    // a connection string it cannot use reported as a `database.url` problem.
    let result = Loaded::read_with_env(
        &ConfigSources::new(vec![file.path().to_path_buf()]),
        &env,
        &quiet(),
    )
    .map(|loaded| loaded.settings);
    (result, path)
}

/// (yaml, key named, words the reason must contain)
const FILE_ERRORS: &[(&str, &str, &str)] = &[
    ("database:\n  url: \"host=db port=notaport\"\n", "database.url", "invalid integer value \"notaport\" for connection option \"port\""),
    ("database:\n  url: \"postgres://db/app?sslmode=verify-fuller\"\n", "database.url", "invalid sslmode value \"verify-fuller\""),
    ("database:\n  url: \"host=db sslmode=verify-full sslrootcert=/nonexistent/ca.crt\"\n", "database.url", "root certificate file \"/nonexistent/ca.crt\" does not exist"),
    ("database:\n  url: \"host=db sslmode=require sslrootcert=system\"\n", "database.url", "weak sslmode"),
    ("database:\n  url: \"host=db servce=x\"\n", "database.url", "invalid connection option"),
    ("database:\n  url: \"service=billing\"\n", "database.url", "pg_service.conf"),
    ("database:\n  pooler: pgbouncer\n", "database.pooler", "auto, none, transaction"),
    ("database:\n  pool_size: 0\n", "database.pool_size", "at least 1"),
    ("database:\n  prepared: always\n", "database.prepared", "auto, on, off"),
    ("log:\n  fold_lines: loud\n", "log.fold_lines", "auto, info, debug"),
    ("log:\n  summary_every: often\n", "log.summary_every", "often"),
    ("database:\n  prepared_cache: 0\n", "database.prepared_cache", "at least 1"),
    ("database:\n  prepared_cache: many\n", "database.prepared_cache", "many"),
    ("database:\n  pool_size: -3\n", "database.pool_size", "-3"),
    ("database:\n  application_name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", "database.application_name", "63 bytes"),
    ("database:\n  connect_timeout: 0\n", "database.connect_timeout", "longer than 0"),
    ("database:\n  statement_timeout: 0s\n", "database.statement_timeout", "stalled server"),
    ("database:\n  lock_timeout: forever\n", "database.lock_timeout", "duration"),
    ("database:\n  fold_lock_timeout: 0s\n", "database.fold_lock_timeout", "at least 1ms"),
    ("database:\n  fold_lock_timeout: 500us\n", "database.fold_lock_timeout", "at least 1ms"),
    ("database:\n  password: a\n  password_file: /etc/hostname\n", "database.password_file", "set one of them"),
    ("database:\n  password_file: /nonexistent/pw\n", "database.password_file", "cannot read"),
    ("naptime: 0\n", "naptime", "at least 1ms"),
    ("naptime: -1\n", "naptime", "negative"),
    ("naptime: 10 parsecs\n", "naptime", "duration"),
    ("naptime: -5s\n", "naptime", "a duration cannot be negative"),
    ("shutdown:\n  grace: -0.5\n", "shutdown.grace", "a duration cannot be negative"),
    ("workers:\n  table: [a, b]\n", "workers.table", "= [a, b] ("),
    ("log:\n  format: {kind: json}\n", "log.format", "= {kind: json} ("),
    ("workers:\n  schemas: \"a, b]\"\n", "workers.schemas", "holds a bracket"),
    ("workers:\n  total: -1\n", "workers.total", "-1"),
    ("workers:\n  total: 1.5\n", "workers.total", "1.5"),
    ("workers:\n  table: \"\"\n", "workers.table", "is empty"),
    ("workers:\n  schemas: [a, a]\n", "workers.schemas", "listed twice"),
    ("workers:\n  schemas: [\"\"]\n", "workers.schemas", "is empty"),
    ("workers:\n  schemas: {a: 1}\n", "workers.schemas", "list of schema names"),
    ("workers:\n  create_schema: maybe\n", "workers.create_schema", "maybe"),
    ("workers:\n  vacuum_after: lots\n", "workers.vacuum_after", "lots"),
    ("workers:\n  fold_batch: 0\n", "workers.fold_batch", "at least 1"),
    ("workers:\n  fold_batch: 5000000000\n", "workers.fold_batch", "too large"),
    ("workers: 3\n", "workers", "is a section"),
    ("workers:\n  totl: 3\n", "workers.totl", "did you mean `workers.total`"),
    ("restart:\n  policy: always\n", "restart.policy", "backoff, never"),
    ("restart:\n  delay: 0\n", "restart.delay", "longer than 0"),
    ("restart:\n  delay: 10s\n  max_delay: 1s\n", "restart.max_delay", "shorter than restart.delay"),
    ("restart:\n  multiplier: 0.5\n", "restart.multiplier", "at least 1.0"),
    ("restart:\n  jitter: -0.1\n", "restart.jitter", "between 0.0 and 1.0"),
    ("restart:\n  window: 0\n", "restart.window", "longer than 0"),
    ("restart:\n  max_restarts: many\n", "restart.max_restarts", "many"),
    ("restart:\n  escalate: sure\n", "restart.escalate", "sure"),
    ("shutdown:\n  grace: later\n", "shutdown.grace", "duration"),
    ("log:\n  level: loud\n", "log.level", "error, warn, info, debug, trace"),
    ("log:\n  format: xml\n", "log.format", "text, json"),
    ("http:\n  listen: localhost\n", "http.listen", "127.0.0.1:8187"),
    ("http:\n  per_schema_metrics_max: some\n", "http.per_schema_metrics_max", "some"),
    ("colour: blue\n", "colour", "unknown key"),
];

#[test]
fn every_file_error_names_key_value_and_file() {
    for (yaml, key, reason) in FILE_ERRORS {
        let (result, path) = load(yaml, &[]);
        let text = match result {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{yaml:?} was accepted"),
        };
        assert!(
            text.contains(&format!("`{key}`")),
            "{yaml:?}: no key {key}: {text}"
        );
        assert!(text.contains(reason), "{yaml:?}: no {reason:?}: {text}");
        assert!(text.contains(&path), "{yaml:?}: no file: {text}");
    }
}

#[test]
fn environment_errors_name_the_variable() {
    let cases = [
        ("PGFLEET__WORKERS__TOTAL", "x", "PGFLEET__WORKERS__TOTAL"),
        ("PGFLEET__RESTART__JITTER", "2", "PGFLEET__RESTART__JITTER"),
        ("PGFLEET__LOG__LEVELS", "debug", "did you mean `log.level`"),
        ("PGFLEET_LOG__LEVEL", "debug", "double underscores"),
        ("PGFLEET__NAPTIME", "-5s", "a duration cannot be negative"),
        (
            "PGFLEET__WORKERS__SCHEMAS",
            "a, b]",
            "PGFLEET__WORKERS__SCHEMAS",
        ),
        (
            "PGFLEET__WORKERS__SCHEMAS",
            "[a, b",
            "PGFLEET__WORKERS__SCHEMAS",
        ),
    ];
    for (name, value, expected) in cases {
        let (result, _) = load("", &[(name, value)]);
        let text = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains(expected), "{name}={value}: {text}");
    }
}

/// Wrong types, unknown keys and values out of range, from a file and the
/// environment at once: one run names each, on a line of its own.
#[test]
fn every_problem_is_named_in_one_run() {
    let (result, path) = load(
        "naptime: soon\nworkers:\n  total: many\n  totl: 3\nrestart:\n  jitter: lots\n  multiplier: 0.5\n",
        &[("PGFLEET__LOG__LEVEL", "loud"), ("PGFLEET__SHUTDOWN__GRACE", "-1s")],
    );
    let problems = match result {
        Err(ConfigError::Invalid(problems)) => problems,
        other => panic!("{other:?}"),
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "log.level",
            "naptime",
            "restart.jitter",
            "restart.multiplier",
            "shutdown.grace",
            "workers.total",
            "workers.totl"
        ]
    );
    let text = ConfigError::Invalid(problems).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "invalid configuration, 7 problems:", "{text}");
    assert_eq!(lines.len(), 8, "{text}");
    for line in &lines[1..] {
        assert!(line.starts_with("  key `"), "{text}");
        assert!(
            line.contains(&path) || line.contains("environment variable PGFLEET__"),
            "{line}"
        );
    }
}

#[test]
fn yaml_syntax_errors_name_the_file() {
    let (result, path) = load("workers:\n  total: [\n", &[]);
    match result {
        Err(ConfigError::Unreadable(text)) => assert!(text.contains(&path), "{text}"),
        other => panic!("{other:?}"),
    }
}

/// Keys a generated document draws from: real ones, near misses, nonsense.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("database".to_owned()),
        Just("url".to_owned()),
        Just("pool_size".to_owned()),
        Just("naptime".to_owned()),
        Just("workers".to_owned()),
        Just("total".to_owned()),
        Just("schemas".to_owned()),
        Just("restart".to_owned()),
        Just("delay".to_owned()),
        Just("jitter".to_owned()),
        Just("log".to_owned()),
        Just("level".to_owned()),
        Just("password_file".to_owned()),
        "[a-z_]{1,12}",
        "\\PC{1,8}",
    ]
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("~".to_owned()),
        Just("\"\"".to_owned()),
        "[0-9]{1,4}(ms|s|m|h)",
        "\\PC{0,12}".prop_map(|s| format!("{s:?}")),
    ]
}

/// A YAML document of nested maps, lists and scalars.
fn document() -> impl Strategy<Value = String> {
    let leaf = scalar();
    let tree = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            prop::collection::vec((key(), inner), 1..5).prop_map(|pairs| {
                let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k:?}: {v}")).collect();
                format!("{{{}}}", body.join(", "))
            }),
        ]
    });
    prop::collection::vec((key(), tree), 0..6).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(k, v)| format!("{k:?}: {v}\n"))
            .collect::<String>()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever the file says, the loader answers (never panics), and a
    /// rejection names a key.
    #[test]
    fn the_loader_never_panics_and_names_a_key(yaml in document(), env_value in "\\PC{0,10}") {
        let (result, _) = load(&yaml, &[("PGFLEET__WORKERS__TOTAL", &env_value)]);
        match result {
            Ok(settings) => prop_assert!(!settings.targets().is_empty() || settings.workers.total == 0),
            Err(ConfigError::Invalid(problems)) => {
                prop_assert!(!problems.is_empty());
                for problem in problems {
                    prop_assert!(!problem.key.is_empty() && problem.key != UNKNOWN_KEY, "{problem}");
                    prop_assert!(problem.to_string().contains(&problem.key));
                }
            }
            Err(ConfigError::Unreadable(text)) => prop_assert!(!text.is_empty()),
        }
    }

    /// Arbitrary bytes as a config file: an answer, never a panic.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = load(&text, &[]);
    }
}

/// config/example.yaml holds only real keys with valid values; on a machine
/// without its secret and CA files, those two files are all it misses.
#[test]
fn the_example_config_is_valid_but_for_its_files() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/example.yaml");
    let result = Loaded::read_with_env(&ConfigSources::new(vec![example]), &[], &quiet());
    match result {
        Ok(_) => {}
        Err(ConfigError::Invalid(problems)) => {
            for problem in &problems {
                assert!(
                    (problem.key == "database.password_file"
                        && problem.reason.contains("cannot read"))
                        || (problem.key == "database.url"
                            && problem.reason.contains("does not exist")),
                    "{problem}"
                );
            }
        }
        Err(other) => panic!("{other}"),
    }
}

//! The command line and configuration as a user meets them (SPEC §3, §4):
//! exit codes, and errors that name the key, the value and the file.

use std::net::TcpListener;

use crate::support::cluster::cluster;
use crate::support::pgfleet::{run, scalar_i64, ConfigFile};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_and_version() {
    let help = run(&["--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
    let out = text(&help.stdout);
    for flag in [
        "--config",
        "--check",
        "--print-config",
        "SIGHUP",
        "PGFLEET__",
    ] {
        assert!(out.contains(flag), "--help lacks {flag}:\n{out}");
    }
    let version = run(&["--version"], &[]);
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        text(&version.stdout).trim(),
        format!("pgfleet {}", env!("CARGO_PKG_VERSION"))
    );
    let unknown = run(&["--frobnicate"], &[]);
    assert_eq!(unknown.status.code(), Some(2), "a usage error exits 2");
}

#[test]
fn print_config_merges_layers_in_order_and_masks_passwords() {
    let first = ConfigFile::new("naptime: 3\nworkers:\n  total: 7\n  table: first\n");
    let second = ConfigFile::new("workers:\n  table: second\n");
    let first_path = first.path.to_str().expect("utf-8 path");
    let second_path = second.path.to_str().expect("utf-8 path");
    let output = run(
        &[
            "--config",
            first_path,
            "--config",
            second_path,
            "--print-config",
        ],
        &[
            (
                "PGFLEET__DATABASE__URL",
                "postgres://app:hunter2@db.example:5432/app",
            ),
            ("PGFLEET__WORKERS__VACUUM_AFTER", "0"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let yaml = text(&output.stdout);
    assert!(!yaml.contains("hunter2"), "password printed:\n{yaml}");
    assert!(
        yaml.contains("postgres://app:********@db.example:5432/app"),
        "{yaml}"
    );
    assert!(
        yaml.contains("naptime: 3s"),
        "bare seconds read as seconds:\n{yaml}"
    );
    assert!(yaml.contains("total: 7"), "{yaml}");
    assert!(yaml.contains("table: second"), "later file wins:\n{yaml}");
    assert!(
        yaml.contains("vacuum_after: 0"),
        "environment wins:\n{yaml}"
    );
    for key in [
        "pool_size:",
        "application_name:",
        "max_restarts:",
        "grace:",
        "format:",
        "listen:",
    ] {
        assert!(yaml.contains(key), "{key} missing:\n{yaml}");
    }
}

/// A bad file: exit 2 before touching the database, the key, value and file
/// named.
#[test]
fn bad_config_exits_2_naming_key_value_and_file() {
    let db = cluster().create_database();
    let url = db.url();
    let cases = [
        ("workers:\n  totl: 3\n", "workers.totl", "did you mean `workers.total`"),
        ("workers:\n  total: many\n", "workers.total", "many"),
        ("naptime: soon\n", "naptime", "soon"),
        ("restart:\n  policy: sometimes\n", "restart.policy", "backoff, never"),
        ("restart:\n  jitter: 3\n", "restart.jitter", "between 0.0 and 1.0"),
        (
            "workers:\n  schemas: [a_schema_name_that_is_longer_than_sixty_three_bytes_which_postgres_truncates]\n",
            "workers.schemas",
            "63 bytes",
        ),
        ("database:\n  pool_size: 0\n", "database.pool_size", "at least 1"),
        ("log:\n  level: loud\n", "log.level", "loud"),
    ];
    for (yaml, key, detail) in cases {
        let file = ConfigFile::new(yaml);
        let output = run(
            &["--config", file.path.to_str().expect("utf-8")],
            &[("PGFLEET__DATABASE__URL", &url)],
        );
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{yaml:?}: {stderr}");
        assert!(
            stderr.contains(&format!("`{key}`")),
            "{yaml:?} does not name {key}: {stderr}"
        );
        assert!(
            stderr.contains(detail),
            "{yaml:?} lacks {detail:?}: {stderr}"
        );
        let file_name = file.path.canonicalize().expect("canonical path");
        assert!(
            stderr.contains(&file_name.display().to_string()),
            "{yaml:?} does not name the file: {stderr}"
        );
    }
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'schema%'"
        ),
        0,
        "a bad config touched the database"
    );
}

#[test]
fn bad_environment_exits_2_naming_the_variable() {
    let cases = [
        (
            "PGFLEET__WORKERS__TOTL",
            "3",
            "did you mean `workers.total`",
        ),
        ("PGFLEET__NAPTIME", "-", "PGFLEET__NAPTIME"),
        ("PGFLEET_NAPTIME", "5", "did you mean PGFLEET__NAPTIME"),
        (
            "PGFLEET__DATABASE__URL",
            "postgres://u:hunter2@h:notaport/d",
            "database.url",
        ),
    ];
    for (name, value, detail) in cases {
        let output = run(&["--print-config"], &[(name, value)]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}={value}: {stderr}");
        assert!(
            stderr.contains(detail),
            "{name}={value} lacks {detail:?}: {stderr}"
        );
        assert!(
            !stderr.contains("hunter2"),
            "password in an error: {stderr}"
        );
    }
}

#[test]
fn missing_config_file_exits_2() {
    let output = run(&["--config", "/nonexistent/pgfleet.yaml"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("/nonexistent/pgfleet.yaml"));
}

#[test]
fn check_says_whether_the_database_answers() {
    let db = cluster().create_database();
    let ok = run(&["--check"], &[("PGFLEET__DATABASE__URL", &db.url())]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stdout).contains("the role has every privilege the job needs"),
        "{}",
        text(&ok.stdout)
    );

    let closed_port = TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("postgres://app:hunter2@127.0.0.1:{closed_port}/postgres");
    let down = run(&["--check"], &[("PGFLEET__DATABASE__URL", &url)]);
    let stderr = text(&down.stderr);
    assert_eq!(down.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot be reached"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let bad = run(&["--check"], &[("PGFLEET__WORKERS__TOTAL", "x")]);
    assert_eq!(bad.status.code(), Some(2));
}

/// What Kubernetes injects into every pod for a Service named `pgfleet`
/// must not stop the service; a real misspelling still does.
#[test]
fn kubernetes_service_links_only_warn() {
    let db = cluster().create_database();
    let links = [
        ("PGFLEET_PORT", "tcp://10.96.0.12:9188"),
        ("PGFLEET_PORT_9188_TCP", "tcp://10.96.0.12:9188"),
        ("PGFLEET_PORT_9188_TCP_ADDR", "10.96.0.12"),
        ("PGFLEET_PORT_9188_TCP_PORT", "9188"),
        ("PGFLEET_PORT_9188_TCP_PROTO", "tcp"),
        ("PGFLEET_SERVICE_HOST", "10.96.0.12"),
        ("PGFLEET_SERVICE_PORT", "9188"),
    ];
    let mut env = links.to_vec();
    let url = db.url();
    env.push(("PGFLEET__DATABASE__URL", &url));
    let output = run(&["--check"], &env);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("PGFLEET_SERVICE_HOST"), "{stderr}");

    let pgfleet =
        crate::support::pgfleet::Pgfleet::start_with(&db, "workers:\n  total: 1\n", &links);
    let warning = pgfleet.wait_event("config_warning");
    assert!(
        warning["msg"]
            .as_str()
            .is_some_and(|m| m.contains("PGFLEET_PORT_9188_TCP_ADDR")),
        "{warning}"
    );
    pgfleet.wait_schema_event("worker_started", "schema1");

    let output = run(
        &["--check"],
        &[
            ("PGFLEET_WORKERS_TOTAL", "3"),
            ("PGFLEET__DATABASE__URL", &url),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("did you mean PGFLEET__WORKERS__TOTAL"));
}

/// Generated passwords hold `/ ? # @ :` and spaces; none may reach any
/// output, however the password is written.
#[test]
fn awkward_passwords_never_reach_any_output() {
    let db = cluster().create_database();
    let secret = "p/ss?w#rd:x y";
    let encoded_at = "s3%40cr3t";
    let urls = [
        format!("postgres://app:{secret}@127.0.0.1:{}/{}", db.port, db.name),
        format!(
            "postgres://app:{encoded_at}@127.0.0.1:{}/{}",
            db.port, db.name
        ),
        format!(
            "host=127.0.0.1 port={} password='{secret}' user=app",
            db.port
        ),
        format!(
            "postgres://127.0.0.1:{}/{}?user=app&password={encoded_at}",
            db.port, db.name
        ),
    ];
    for url in &urls {
        let printed = run(&["--print-config"], &[("PGFLEET__DATABASE__URL", url)]);
        let checked = run(&["--check"], &[("PGFLEET__DATABASE__URL", url)]);
        let rejected = run(
            &["--check"],
            &[
                ("PGFLEET__DATABASE__URL", url),
                ("PGFLEET__NAPTIME", "soon"),
            ],
        );
        let misspelt = run(&["--check"], &[("PGFLEET__DATABASE_URL", url)]);
        for (what, output) in [
            ("--print-config", &printed),
            ("--check", &checked),
            ("a config error", &rejected),
            ("a misspelt key", &misspelt),
        ] {
            let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
            for leaked in [secret, "p/ss", "s3%40cr3t", "s3@cr3t"] {
                assert!(
                    !all.contains(leaked),
                    "{what} of {url:?} shows {leaked:?}:\n{all}"
                );
            }
        }
        assert_eq!(printed.status.code(), Some(0), "{}", text(&printed.stderr));
        assert_eq!(
            checked.status.code(),
            Some(1),
            "app has no login: {}",
            text(&checked.stderr)
        );
    }
}

/// Three wrong values, an unknown key and a value out of range: one run
/// names them all, one line each, and exits 2 before touching the database.
#[test]
fn every_problem_of_a_file_in_one_run() {
    let file = ConfigFile::new(
        "naptime: -5s\nworkers:\n  total: many\n  table: [a, b]\n  totl: 3\nrestart:\n  jitter: 3\n",
    );
    let output = run(
        &[
            "--config",
            file.path.to_str().expect("utf-8"),
            "--print-config",
        ],
        &[],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let path = file
        .path
        .canonicalize()
        .expect("canonical path")
        .display()
        .to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[0], "pgfleet: invalid configuration, 5 problems:",
        "{stderr}"
    );
    for (key, detail) in [
        ("naptime", "a duration cannot be negative"),
        ("restart.jitter", "between 0.0 and 1.0"),
        ("workers.table", "= [a, b] ("),
        ("workers.total", "\"many\""),
        ("workers.totl", "did you mean `workers.total`"),
    ] {
        let line = lines
            .iter()
            .find(|line| line.starts_with(&format!("  key `{key}`")))
            .unwrap_or_else(|| panic!("no line for {key}: {stderr}"));
        assert!(line.contains(detail), "{key} lacks {detail:?}: {line}");
        assert!(line.contains(&path), "{key} does not name the file: {line}");
    }
    assert_eq!(lines.len(), 6, "{stderr}");
    assert!(output.stdout.is_empty(), "printed a config anyway");
}

#[test]
fn a_directory_given_as_config_is_named_as_one() {
    let dir = std::env::temp_dir().canonicalize().expect("temp dir");
    let output = run(
        &["--config", dir.to_str().expect("utf-8"), "--print-config"],
        &[],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} is a directory, not a YAML file",
            dir.display()
        )),
        "{stderr}"
    );
    let missing = run(
        &["--config", "/nonexistent/pgfleet.yaml", "--print-config"],
        &[],
    );
    assert!(
        text(&missing.stderr).contains("not found"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn schemas_from_the_environment_are_a_list_never_bracketed_names() {
    for value in ["[a, b]", "[\"a\",\"b\"]", "a,b"] {
        let output = run(&["--print-config"], &[("PGFLEET__WORKERS__SCHEMAS", value)]);
        let yaml = text(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{value}: {}",
            text(&output.stderr)
        );
        assert!(yaml.contains("schemas:\n  - a\n  - b\n"), "{value}: {yaml}");
    }
    let output = run(
        &["--print-config"],
        &[("PGFLEET__WORKERS__SCHEMAS", "a, b]")],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("PGFLEET__WORKERS__SCHEMAS"), "{stderr}");
}

/// A reload cannot see a changed environment; --help must not promise it.
#[test]
fn help_says_what_a_reload_rereads() {
    let help = text(&run(&["--help"], &[]).stdout);
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for words in [
        "every --config file",
        "database.password_file",
        "PGFLEET__ and libpq's PG* variables stay those it started with",
    ] {
        assert!(flat.contains(words), "--help lacks {words:?}:\n{help}");
    }
    assert!(!flat.contains("reloads them all"), "{help}");
}

//! Reaching PostgreSQL the way libpq users expect (SPEC §8), tried as a
//! new user would: `pgfleet --check` and the service against the test
//! cluster, which speaks TLS with certificates made by the test process
//! (`support::tls`) and has roles that `pg_hba.conf` treats specially;
//! Debian's PgBouncer stands in for a pooler and for a server without TLS.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use crate::support::cluster::{cluster, TestDb};
use crate::support::pgbouncer::PgBouncer;
use crate::support::pgfleet::{
    eventually, execute, ready, run, run_until_exit, schema_names, ConfigFile, Pgfleet,
};
use crate::support::proxy::{Mode, Proxy};
use crate::support::tls::{
    CERT_USER, PASSWORD_USER, PASSWORD_USER_SECRET, PLAIN_ONLY_USER, TLS_ONLY_USER,
};
use crate::support::writers::{ledger, Writers};

mod openssl_docs;

/// `pgfleet --check` with one worker, `url` as database.url and `env`;
/// returns (exit code, stdout, stderr).
fn check(url: &str, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let config = ConfigFile::new("workers:\n  total: 1\ndatabase:\n  connect_timeout: 2s\n");
    let path = config.path.to_str().expect("utf-8 path").to_owned();
    let mut all_env = vec![("PGFLEET__DATABASE__URL", url)];
    all_env.extend_from_slice(env);
    let output = run(&["--check", "--config", &path], &all_env);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn path_text(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

/// `postgres://user@host:port/db?query` for the test cluster.
fn url(user: &str, host: &str, db: &TestDb, query: &str) -> String {
    format!("postgres://{user}@{host}:{}/{}?{query}", db.port, db.name)
}

#[test]
fn verify_full_encrypts_every_connection_of_the_service() {
    let db = cluster().create_database();
    let ca = path_text(&cluster().pki().ca_cert).to_owned();
    let url = url(
        "postgres",
        "localhost",
        &db,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let pgfleet = Pgfleet::start_with(
        &db,
        "workers:\n  total: 2\n",
        &[("PGFLEET__DATABASE__URL", &url)],
    );
    ready(&pgfleet, &db, &schema_names(2));
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 5)");
    pgfleet.wait_for("the delta folded over TLS", |e| {
        e["event"] == "worker_tick" && e["total"] == 5
    });
    let row = db
        .client()
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = 'pgfleet' AND a.datname = current_database()",
            &[],
        )
        .expect("pg_stat_ssl");
    let (encrypted, all): (i64, i64) = (row.get(0), row.get(1));
    assert!(all >= 1, "no pgfleet connection in pg_stat_activity");
    assert_eq!(encrypted, all, "pgfleet connections without TLS");
}

#[test]
fn tls_verification_succeeds_or_says_why_not() {
    let db = cluster().create_database();
    let pki = cluster().pki();
    let (ca, other) = (path_text(&pki.ca_cert), path_text(&pki.other_ca_cert));
    let cases: &[(&str, String, Option<&str>)] = &[
        (
            "verify-full, right CA and host",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            None,
        ),
        (
            "verify-full, wrong host name",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            Some("not valid for host \"127.0.0.1\""),
        ),
        (
            "verify-full, unknown CA",
            format!("sslmode=verify-full&sslrootcert={other}"),
            Some("not signed by a CA in sslrootcert"),
        ),
        (
            "verify-ca, wrong host name",
            format!("sslmode=verify-ca&sslrootcert={ca}"),
            None,
        ),
        (
            "verify-ca, unknown CA",
            format!("sslmode=verify-ca&sslrootcert={other}"),
            Some("not signed by a CA in sslrootcert"),
        ),
        (
            "require with a root file verifies the chain, as libpq",
            format!("sslmode=require&sslrootcert={other}"),
            Some("not signed by a CA"),
        ),
    ];
    for (name, query, failure) in cases {
        let host = if name.contains("wrong host") {
            "127.0.0.1"
        } else {
            "localhost"
        };
        let (code, stdout, stderr) = check(&url("postgres", host, &db, query), &[]);
        match failure {
            None => assert_eq!(code, Some(0), "{name}: {stdout}{stderr}"),
            Some(why) => {
                assert_eq!(code, Some(1), "{name}: {stdout}{stderr}");
                assert!(stderr.contains(why), "{name}: no {why:?} in {stderr}");
                assert!(stderr.contains("[tls]"), "{name}: {stderr}");
            }
        }
    }
}

#[test]
fn client_certificate_where_pg_hba_says_cert() {
    let db = cluster().create_database();
    let pki = cluster().pki();
    let base = format!(
        "sslmode=verify-full&sslrootcert={}",
        path_text(&pki.ca_cert)
    );
    let with_cert = format!(
        "{base}&sslcert={}&sslkey={}",
        path_text(&pki.client_cert),
        path_text(&pki.client_key)
    );
    let (code, stdout, stderr) = check(&url(CERT_USER, "localhost", &db, &with_cert), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // The same as a libpq key=value string, as the Cloud SQL recipe has it.
    let key_value = format!(
        "host=localhost port={} dbname={} user={CERT_USER} sslmode=verify-ca sslrootcert='{}' \
         sslcert='{}' sslkey='{}'",
        db.port,
        db.name,
        path_text(&pki.ca_cert),
        path_text(&pki.client_cert),
        path_text(&pki.client_key)
    );
    let (code, stdout, stderr) = check(&key_value, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, _, stderr) = check(&url(CERT_USER, "localhost", &db, &base), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("[authentication]"), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
}

#[test]
fn libpq_ssl_variables_are_read() {
    let db = cluster().create_database();
    let pki = cluster().pki();
    let plain_url = url("postgres", "localhost", &db, "");
    let (code, _, stderr) = check(
        &plain_url,
        &[
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", path_text(&pki.other_ca_cert)),
        ],
    );
    assert_eq!(code, Some(1), "PGSSLMODE was ignored: {stderr}");
    assert!(stderr.contains("not signed by a CA"), "{stderr}");
    let (code, stdout, stderr) = check(
        &plain_url,
        &[
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", path_text(&pki.ca_cert)),
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("(sslmode=verify-full) over TLS"),
        "{stdout}"
    );
}

/// libpq 16's `sslrootcert=system`: the platform's trusted roots, which
/// honour `SSL_CERT_FILE` as OpenSSL's do; here that file holds the test
/// CA, standing in for a public one.
#[test]
fn system_roots_with_verify_full() {
    let db = cluster().create_database();
    let ca = path_text(&cluster().pki().ca_cert).to_owned();
    let target = url(
        "postgres",
        "localhost",
        &db,
        "sslmode=verify-full&sslrootcert=system",
    );
    let (code, stdout, stderr) = check(&target, &[("SSL_CERT_FILE", &ca)]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let other = path_text(&cluster().pki().other_ca_cert).to_owned();
    let (code, _, stderr) = check(&target, &[("SSL_CERT_FILE", &other)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("the system's trusted roots"), "{stderr}");
    let weak = url(
        "postgres",
        "localhost",
        &db,
        "sslmode=require&sslrootcert=system",
    );
    let (code, _, stderr) = check(&weak, &[("SSL_CERT_FILE", &ca)]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("weak sslmode \"require\""), "{stderr}");
}

#[test]
fn require_refuses_a_server_without_tls_and_prefer_falls_back() {
    let db = cluster().create_database();
    // PgBouncer without TLS settings answers "no TLS" to the SSLRequest.
    let bouncer = PgBouncer::start(cluster().port(), "session", "");
    let through = |query: &str| format!("{}?{query}", bouncer.url(&db.name));
    let (code, _, stderr) = check(&through("sslmode=require"), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the server does not support TLS, and sslmode=require requires it"),
        "{stderr}"
    );
    let (code, _, stderr) = check(&bouncer.url(&db.name), &[("PGSSLMODE", "require")]);
    assert_eq!(code, Some(1), "PGSSLMODE=require was ignored: {stderr}");
    let (code, stdout, stderr) = check(&through("sslmode=prefer"), &[]);
    assert_eq!(
        code,
        Some(0),
        "prefer must fall back to plain: {stdout}{stderr}"
    );
    assert!(stdout.contains("over plaintext"), "{stdout}");
}

#[test]
fn allow_and_prefer_fall_back_as_libpq_does() {
    let db = cluster().create_database();
    // tlsonly is refused without TLS: allow tries plain, then TLS.
    let (code, stdout, stderr) = check(&url(TLS_ONLY_USER, "127.0.0.1", &db, "sslmode=allow"), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, _, stderr) = check(
        &url(TLS_ONLY_USER, "127.0.0.1", &db, "sslmode=disable"),
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("[authentication]"), "{stderr}");
    // plainonly is refused over TLS: prefer tries TLS, then plain.
    let (code, stdout, stderr) = check(
        &url(PLAIN_ONLY_USER, "127.0.0.1", &db, "sslmode=prefer"),
        &[],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, _, stderr) = check(
        &url(PLAIN_ONLY_USER, "127.0.0.1", &db, "sslmode=require"),
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn a_stalled_tls_handshake_is_bounded_by_connect_timeout() {
    let proxy = Proxy::start(cluster().port(), Mode::Stall);
    let url = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=require&connect_timeout=1",
        proxy.port()
    );
    let config = ConfigFile::new("workers:\n  total: 1\n");
    let (output, took) = run_until_exit(
        &["--check", "--config", path_text(&config.path)],
        &[("PGFLEET__DATABASE__URL", &url)],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no answer"), "{stderr}");
    // libpq rounds connect_timeout=1 up to 2 s; twice for prefer's retry
    // would be 4 s: require makes one attempt.
    eprintln!(
        "MEASURED stalled TLS handshake: --check gave up after {} ms (connect_timeout=1, read as 2 s as libpq does)",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(4), "took {took:?}: {stderr}");
}

#[test]
fn pg_variables_stand_in_for_an_empty_url() {
    let db = cluster().create_database();
    let port = db.port.to_string();
    let socket_dir = path_text(cluster().socket_dir()).to_owned();
    let config = ConfigFile::new("workers:\n  total: 1\n");
    let path = path_text(&config.path).to_owned();
    // No database.url at all: PGHOST as a socket directory, as psql takes it.
    let output = run(
        &["--check", "--config", &path],
        &[
            ("PGHOST", &socket_dir),
            ("PGPORT", &port),
            ("PGUSER", "postgres"),
            ("PGDATABASE", &db.name),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("postgres@{socket_dir}:{port}/{}", db.name)),
        "{stdout}"
    );
    // A URL that leaves out the port and the user is completed from them.
    let (code, stdout, stderr) = check(
        &format!("postgres://127.0.0.1/{}", db.name),
        &[("PGPORT", &port), ("PGUSER", "postgres")],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // And the service folds with nothing but PG* variables.
    let pgfleet = Pgfleet::start_with(
        &db,
        "workers:\n  total: 1\n",
        &[
            ("PGFLEET__DATABASE__URL", ""),
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", &port),
            ("PGUSER", "postgres"),
            ("PGDATABASE", &db.name),
            ("PGAPPNAME", "pgfleet-from-env"),
        ],
    );
    ready(&pgfleet, &db, &schema_names(1));
    pgfleet.eventually("the session named by PGAPPNAME", || {
        db.client()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgfleet-from-env'",
                &[],
            )
            .is_ok_and(|row| row.get::<_, i64>(0) > 0)
    });
}

#[test]
fn pgpass_supplies_the_password_and_is_refused_when_others_can_read_it() {
    let db = cluster().create_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let passfile = dir.path().join("pgpass");
    fs::write(
        &passfile,
        format!(
            "# comment\nother:*:*:*:wrong\n127.0.0.1:{}:*:{PASSWORD_USER}:{}\n",
            db.port,
            PASSWORD_USER_SECRET
                .replace('\\', "\\\\")
                .replace(':', "\\:")
        ),
    )
    .expect("write pgpass");
    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o600)).expect("chmod");
    let target = url(PASSWORD_USER, "127.0.0.1", &db, "sslmode=disable");
    let env = [("PGPASSFILE", path_text(&passfile))];
    let (code, stdout, stderr) = check(&target, &env);
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, stdout, stderr) = check(&target, &env);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("group or world access"), "{stderr}");
    assert!(stderr.contains("[authentication]"), "{stderr}");
    assert!(!stderr.contains(PASSWORD_USER_SECRET), "{stderr}");
}

#[test]
fn refusals_are_named_errors_and_a_rotated_password_is_picked_up_on_reload() {
    let db = cluster().create_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("password");
    fs::write(&secret, "not-the-password\n").expect("write secret");
    let target = url(PASSWORD_USER, "127.0.0.1", &db, "");
    let yaml = format!(
        "workers:\n  total: 1\ndatabase:\n  password_file: {}\n",
        secret.display()
    );
    let pgfleet = Pgfleet::start_with(&db, &yaml, &[("PGFLEET__DATABASE__URL", &target)]);
    let refused = pgfleet.wait_event("database_refused");
    assert_eq!(refused["level"], "error", "{refused}");
    assert_eq!(refused["kind"], "authentication", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("28P01")),
        "{refused}"
    );
    assert!(
        pgfleet.events("database_lost").is_empty(),
        "a refusal is not an outage"
    );
    let text = pgfleet.lines().join("\n");
    assert!(!text.contains("not-the-password"), "{text}");

    let refusals_logged = pgfleet.events("database_refused").len();
    fs::write(&secret, format!("{PASSWORD_USER_SECRET}\n")).expect("rotate");
    let rotated = std::time::Instant::now();
    pgfleet.signal(libc::SIGHUP);
    pgfleet.wait_schema_event("worker_started", "schema1");
    eprintln!(
        "MEASURED wrong password: {refusals_logged} database_refused lines (ERROR, kind authentication) \
         before the rotation; worker started {} ms after SIGHUP with the rotated password_file",
        rotated.elapsed().as_millis()
    );
    let text = pgfleet.lines().join("\n");
    assert!(!text.contains(PASSWORD_USER_SECRET), "{text}");

    let (code, _, stderr) = check(
        &format!("postgres://postgres@127.0.0.1:{}/nope", db.port),
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("[missing_database]"), "{stderr}");
}

#[test]
fn several_hosts_find_the_one_that_fits() {
    let db = cluster().create_database();
    let down = closed_port();
    let hosts = format!(
        "postgres://postgres@127.0.0.1:{down},127.0.0.1:{}/{}",
        db.port, db.name
    );
    let (code, stdout, stderr) = check(&format!("{hosts}?target_session_attrs=read-write"), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, _, stderr) = check(&format!("{hosts}?target_session_attrs=standby"), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not a standby"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{down}")), "{stderr}");

    let pgfleet = Pgfleet::start_with(
        &db,
        "workers:\n  total: 1\n",
        &[(
            "PGFLEET__DATABASE__URL",
            &format!("{hosts}?target_session_attrs=read-write"),
        )],
    );
    ready(&pgfleet, &db, &schema_names(1));
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 2)");
    pgfleet.wait_for("a fold through the second host", |e| {
        e["event"] == "worker_tick" && e["total"] == 2
    });
}

#[test]
fn transaction_pooling_pgbouncer_keeps_the_invariant() {
    let db = cluster().create_database();
    let bouncer = PgBouncer::start(cluster().port(), "transaction", "");
    let schemas = schema_names(3);
    let pgfleet = Pgfleet::start_with(
        &db,
        "naptime: 50ms\nworkers:\n  total: 3\ndatabase:\n  pool_size: 2\n  fold_lock_timeout: 300ms\n",
        &[("PGFLEET__DATABASE__URL", &bouncer.url(&db.name))],
    );
    let detected = pgfleet.wait_event("pooler_detected");
    assert!(
        detected["msg"]
            .as_str()
            .is_some_and(|m| m.contains("08P01")),
        "{detected}"
    );
    ready(&pgfleet, &db, &schemas);
    let writers = Writers::start(&db, &schemas);
    std::thread::sleep(Duration::from_secs(2));
    let runs = writers.stop();
    assert!(runs > 0);
    let (counted, committed) = ledger(&db, &schemas);
    assert_eq!(counted, committed, "total + remaining deltas != committed");
    eventually("every delta folded through PgBouncer", || {
        let (_, committed) = ledger(&db, &schemas);
        let totals: i64 = schemas
            .iter()
            .map(|s| {
                db.client()
                    .query_one(&format!("SELECT coalesce(sum(value), 0)::int8 FROM {s}.counted WHERE type = 'total'"), &[])
                    .map_or(0, |row| row.get::<_, i64>(0))
            })
            .sum();
        totals == committed
    });
    assert!(committed > 0);
    pgfleet.assert_no_event("worker_failed");
    eprintln!(
        "MEASURED PgBouncer transaction mode: {committed} deltas committed by pgbench in 2 s, all \
         folded through PgBouncer by 3 workers on 2 pooled connections; 0 worker failures"
    );

    // The timeouts reach the server inside each transaction: a lock held
    // past fold_lock_timeout makes the fold give up with 55P03.
    let mut holder = db.client();
    let mut tx = holder.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE schema1.counted IN ACCESS EXCLUSIVE MODE")
        .expect("lock");
    let skipped = pgfleet.wait_for("a fold that gave up on the lock", |e| {
        e["event"] == "worker_waiting_for_lock"
            && e["error"].as_str().is_some_and(|m| m.contains("55P03"))
    });
    tx.rollback().expect("rollback");
    assert_eq!(skipped["schema"], "schema1", "{skipped}");
}

/// A pooler that drops the start-up options without a word (PgBouncer's
/// `ignore_startup_parameters = options`) is found out by asking the
/// server, and the timeouts go with each transaction instead.
#[test]
fn dropped_start_up_options_are_noticed() {
    let db = cluster().create_database();
    let bouncer = PgBouncer::start(
        cluster().port(),
        "session",
        "ignore_startup_parameters = options",
    );
    let pgfleet = Pgfleet::start_with(
        &db,
        "workers:\n  total: 1\n",
        &[("PGFLEET__DATABASE__URL", &bouncer.url(&db.name))],
    );
    let detected = pgfleet.wait_event("pooler_detected");
    assert!(
        detected["msg"]
            .as_str()
            .is_some_and(|m| m.contains("did not arrive")),
        "{detected}"
    );
    ready(&pgfleet, &db, &schema_names(1));
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 4)");
    pgfleet.wait_for("a fold through the session-mode pooler", |e| {
        e["event"] == "worker_tick" && e["total"] == 4
    });
}

#[test]
fn a_role_without_privileges_fails_check_with_the_grants() {
    let db = cluster().create_database();
    let role = format!("noprivs_{}", db.name);
    execute(
        &db,
        &format!(
            "CREATE ROLE {role} LOGIN;
             CREATE SCHEMA schema1 CREATE TABLE counted (type text CHECK (type IN ('total','delta')), value integer)
               CREATE UNIQUE INDEX counted_unique_total ON counted (type) WHERE type = 'total';"
        ),
    );
    let target = url(&role, "127.0.0.1", &db, "");
    let (code, stdout, stderr) = check(&target, &[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    for fix in [
        format!("GRANT USAGE ON SCHEMA \"schema1\" TO \"{role}\";"),
        format!("GRANT SELECT, UPDATE, DELETE ON \"schema1\".\"counted\" TO \"{role}\";"),
        format!("ALTER TABLE \"schema1\".\"counted\" OWNER TO \"{role}\";"),
    ] {
        assert!(stderr.contains(&fix), "no {fix:?} in {stderr}");
    }
    // The service: each worker fails with 42501, named as what it is, and
    // the restart policy keeps trying until the GRANT comes.
    let pgfleet = Pgfleet::start_with(
        &db,
        "workers:\n  total: 1\n  vacuum_after: 0\n",
        &[("PGFLEET__DATABASE__URL", &target)],
    );
    let failed = pgfleet.wait_event("worker_failed");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("42501") && error.contains("pgfleet --check"),
        "{failed}"
    );
    execute(
        &db,
        &format!(
            "GRANT USAGE ON SCHEMA schema1 TO {role};
             GRANT SELECT, UPDATE, DELETE ON schema1.counted TO {role};
             ALTER TABLE schema1.counted OWNER TO {role};"
        ),
    );
    let (code, stdout, stderr) = check(&target, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let mark = pgfleet.mark();
    execute(
        &db,
        "INSERT INTO schema1.counted VALUES ('total', 0), ('delta', 3)",
    );
    pgfleet.wait_for_from(mark, "a fold once the GRANTs are given", |e| {
        e["event"] == "worker_tick" && e["total"] == 3
    });
}

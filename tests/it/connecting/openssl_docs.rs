//! The certificates of PostgreSQL's own "Creating Certificates", made with
//! the docs' exact openssl commands (`support::openssl`) and presented by a
//! second cluster (`support::cluster::certificate_cluster`): pgfleet connects
//! where psql connects, and refuses where psql refuses, saying why
//! (issue 17 §1). The hosts are `localhost` (the certificates' Common Name)
//! and `127.0.0.1` (a wrong host name for them).

use std::path::Path;

use super::{check, path_text, url};
use crate::support::cluster::{certificate_cluster, Cluster, TestDb};
use crate::support::openssl::{self, Made};
use crate::support::pgfleet::{execute, ready, schema_names, Pgfleet};

/// A home without `~/.postgresql/root.crt`, so that only sslrootcert counts.
fn empty_home() -> tempfile::TempDir {
    tempfile::tempdir().expect("home")
}

/// `pgfleet --check` at `host` with this query string; (exit code, stdout,
/// stderr).
fn check_at(db: &TestDb, host: &str, query: &str) -> (Option<i32>, String, String) {
    let home = empty_home();
    check(
        &url("postgres", host, db, query),
        &[("HOME", path_text(home.path()))],
    )
}

fn assert_connects(db: &TestDb, host: &str, query: &str) {
    let (code, stdout, stderr) = check_at(db, host, query);
    assert_eq!(code, Some(0), "{host}?{query}: {stdout}{stderr}");
    assert!(stdout.contains("over TLS"), "{host}?{query}: {stdout}");
}

/// Refused in TLS, with `why` in the sentence.
fn assert_refused(db: &TestDb, host: &str, query: &str, why: &str) {
    let (code, stdout, stderr) = check_at(db, host, query);
    assert_eq!(code, Some(1), "{host}?{query}: {stdout}{stderr}");
    assert!(stderr.contains("[tls]"), "{host}?{query}: {stderr}");
    assert!(
        stderr.contains(why),
        "{host}?{query}: no {why:?} in {stderr}"
    );
}

/// The service, not just --check: it folds a delta over this connection.
fn assert_service_folds(db: &TestDb, query: &str) {
    let url = url("postgres", "localhost", db, query);
    let home = empty_home();
    let pgfleet = Pgfleet::start_with(
        db,
        "workers:\n  total: 1\n",
        &[
            ("PGFLEET__DATABASE__URL", &url),
            ("HOME", path_text(home.path())),
        ],
    );
    ready(&pgfleet, db, &schema_names(1));
    execute(db, "INSERT INTO schema1.counted VALUES ('delta', 7)");
    pgfleet.wait_for("the delta folded over TLS", |e| {
        e["event"] == "worker_tick" && e["total"] == 7
    });
}

fn serve(cluster: &Cluster, made: &Made) -> TestDb {
    cluster.serve_certificate(&made.cert, &made.key);
    cluster.create_database()
}

fn root_query(mode: &str, root: &Path) -> String {
    format!("sslmode={mode}&sslrootcert={}", path_text(root))
}

#[test]
fn the_docs_self_signed_certificate_is_trusted_as_psql_trusts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = openssl::self_signed(&dir.path().join("served"), "localhost");
    // The same command run again: same name, another key.
    let other = openssl::self_signed(&dir.path().join("other"), "localhost");
    let cluster = certificate_cluster();
    let db = serve(&cluster, &served);

    // verify-full with sslrootcert=server.crt, as psql: the CA flag of
    // `openssl req -x509` does not matter, the host comes from the CN.
    let full = root_query("verify-full", &served.root);
    assert_connects(&db, "localhost", &full);
    assert_service_folds(&db, &full);
    // verify-ca does not look at the name; verify-full does.
    assert_connects(&db, "127.0.0.1", &root_query("verify-ca", &served.root));
    assert_refused(
        &db,
        "127.0.0.1",
        &full,
        "the server's certificate is not valid for host \"127.0.0.1\" (sslmode=verify-full \
         checks the host name; verify-ca does not); it names CN=localhost",
    );
    // require with a root file is verify-ca, as libpq documents it.
    assert_connects(&db, "127.0.0.1", &root_query("require", &served.root));

    // Another self-signed certificate as sslrootcert: refused in every mode
    // that reads it.
    for mode in ["verify-full", "verify-ca", "require"] {
        assert_refused(
            &db,
            "localhost",
            &root_query(mode, &other.root),
            &format!(
                "the server's certificate (CN=localhost) is self-signed and is not itself in \
                 sslrootcert ({})",
                other.root.display()
            ),
        );
    }
    // Without a root file, require only encrypts.
    assert_connects(&db, "127.0.0.1", "sslmode=require");
}

#[test]
fn an_expired_pinned_certificate_is_refused_with_its_date() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expired = openssl::expired_self_signed(dir.path(), "localhost");
    let cluster = certificate_cluster();
    let db = serve(&cluster, &expired);
    for mode in ["verify-full", "verify-ca", "require"] {
        assert_refused(
            &db,
            "localhost",
            &root_query(mode, &expired.root),
            "the server's certificate expired at 2021-01-01 00:00:00 UTC",
        );
    }
}

#[test]
fn the_docs_x509_v1_server_certificate_is_verified_as_psql_verifies_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let made = openssl::signed_by_root(&dir.path().join("ca"), "localhost");
    // What OpenSSL 3.0's `x509 -req` makes; a newer one may make version 3
    // (then this test checks the ordinary path, which must pass as well).
    let version = openssl::version(&made.cert);
    let other = openssl::self_signed(&dir.path().join("other"), "localhost");
    let remade = openssl::root_ca(&dir.path().join("remade"));
    let cluster = certificate_cluster();
    let db = serve(&cluster, &made);

    let full = root_query("verify-full", &made.root);
    assert_connects(&db, "localhost", &full);
    assert_service_folds(&db, &full);
    assert_connects(&db, "127.0.0.1", &root_query("verify-ca", &made.root));
    assert_refused(
        &db,
        "127.0.0.1",
        &full,
        "not valid for host \"127.0.0.1\" (sslmode=verify-full checks the host name; verify-ca \
         does not); it names CN=localhost",
    );
    // Encryption only: the handshake is signed with the v1 certificate's
    // key (this failed, and prefer fell back to plaintext).
    assert_connects(&db, "localhost", "sslmode=require");
    assert_connects(&db, "localhost", "sslmode=prefer");
    // An unrelated root, in verify-full and in require (= verify-ca).
    for mode in ["verify-full", "require"] {
        assert_refused(
            &db,
            "localhost",
            &root_query(mode, &other.root),
            "the server's certificate is not signed by a CA in sslrootcert",
        );
    }
    // The root made again (same name, another key).
    assert_refused(
        &db,
        "localhost",
        &root_query("verify-full", &remade),
        "is not correctly signed by its issuer's key",
    );
    assert_eq!(
        version, 1,
        "openssl made an X.509 version {version} certificate"
    );
}

#[test]
fn the_docs_intermediate_chain_is_verified_as_psql_verifies_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let made = openssl::signed_through_intermediate(dir.path(), "localhost");
    let cluster = certificate_cluster();
    let db = serve(&cluster, &made);
    let full = root_query("verify-full", &made.root);
    assert_connects(&db, "localhost", &full);
    assert_refused(&db, "127.0.0.1", &full, "it names CN=localhost");
    assert_connects(&db, "127.0.0.1", &root_query("verify-ca", &made.root));
}

#[test]
fn a_servers_own_certificate_in_sslrootcert_signs_for_no_other_host() {
    // db1's own certificate (not a CA) is the root file; a certificate for
    // localhost signed with db1's key (db1 compromised) is served. OpenSSL
    // refuses it: "invalid CA certificate".
    let dir = tempfile::tempdir().expect("tempdir");
    let db1 = openssl::self_signed_not_a_ca(&dir.path().join("db1"), "db1.example.com");
    let forged = openssl::signed_by(&dir.path().join("forged"), &db1, "localhost");
    assert_eq!(openssl::version(&forged.cert), 1);
    let cluster = certificate_cluster();
    let db = serve(&cluster, &forged);
    for mode in ["verify-full", "verify-ca", "require"] {
        assert_refused(
            &db,
            "localhost",
            &root_query(mode, &db1.root),
            &format!(
                "the server's chain is signed by CN=db1.example.com, which is in sslrootcert \
                 ({}) but is not a CA certificate (its keyUsage lacks keyCertSign)",
                db1.root.display()
            ),
        );
    }
    // db1 itself, served, is pinned.
    let db = serve(&cluster, &db1);
    assert_connects(&db, "127.0.0.1", &root_query("verify-ca", &db1.root));
}

#[test]
fn a_self_signed_certificate_made_again_from_the_same_key_is_refused() {
    // OpenSSL: "self-signed certificate" unless that very certificate is in
    // the root file.
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second) = openssl::self_signed_v1_twice(dir.path(), "localhost");
    let cluster = certificate_cluster();
    let db = serve(&cluster, &second);
    assert_connects(&db, "localhost", &root_query("verify-full", &second.root));
    for mode in ["verify-full", "verify-ca", "require"] {
        assert_refused(
            &db,
            "localhost",
            &root_query(mode, &first.root),
            &format!(
                "the server's certificate (CN=localhost) is self-signed and is not itself in \
                 sslrootcert ({})",
                first.root.display()
            ),
        );
    }
}

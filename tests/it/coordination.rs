//! Several instances share one fleet (issue 19, `coordination.enabled`):
//! what needs no stopwatch (the takeovers are timed one at a time in
//! `tests/faults/coordination.rs`): discovered schemas, control messages
//! and the status shared; the fence itself; a transaction-mode pooler
//! refused; instances that disagree on the schemas say so.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use crate::support::cluster::{cluster, TestDb};
use crate::support::pgfleet::{execute, ready, schema_names, seconds_of, Pgfleet};
use crate::support::schemas::create_counter_schemas;

/// Two instances with HTTP: discovered schemas are shared like listed
/// ones (a new tenant folded by exactly one), `/coordination`, `/readyz`
/// and the metrics say who holds what, a NOTIFY pause is carried out by
/// the owner alone, and `--check` says coordination works here.
#[test]
fn discovered_schemas_control_messages_and_the_status_are_shared() {
    use crate::http::{get, json};
    let db = cluster().create_database();
    create_counter_schemas(&db, "tenant_", 1, 20);
    let yaml = "workers:\n  match: ['tenant\\_%']\n  rescan: 1s\ncoordination:\n  enabled: true\n";
    let ((a, a_http), (b, b_http)) = two_instances(&db, yaml);
    let shared = |n: usize| shared_by(a_http, b_http, n);
    a.eventually("20 tenants shared by two instances", || shared(20));
    for address in [a_http, b_http] {
        let view = json(address, "/coordination");
        assert_eq!(view["members"], 2, "{view}");
        assert_eq!(view["buckets"], 1024, "{view}");
        assert_eq!(view["buckets_awaited"], 0, "{view}");
        assert_eq!(view["trusted"], true, "{view}");
        a.eventually("ready", || get(address, "/readyz").status == 200);
        let metrics = get(address, "/metrics").body;
        assert!(
            metrics.contains("pgfleet_coordination_members 2"),
            "{metrics}"
        );
        assert!(
            metrics.contains("pgfleet_coordination_joined 1"),
            "{metrics}"
        );
    }
    let owned: u64 = [a_http, b_http]
        .iter()
        .map(|address| {
            json(*address, "/coordination")["buckets_owned"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(owned, 1024, "every bucket held once");

    // A new tenant: found by both rescans, folded by its owner alone.
    crate::support::schemas::counter_table(&db, "tenant_21");
    a.eventually("tenant_21 taken by one instance", || shared(21));

    // NOTIFY reaches both; the owner pauses, the other says nothing.
    let (owner, owner_http, other) = if schemas_of(a_http).contains("tenant_3") {
        (&a, a_http, &b)
    } else {
        (&b, b_http, &a)
    };
    let mark = other.mark();
    execute(&db, "NOTIFY pgfleet, 'pause tenant_3'");
    owner.eventually("tenant_3 paused by its owner", || {
        json(owner_http, "/workers/tenant_3")["state"] == "paused"
    });
    thread::sleep(Duration::from_millis(500));
    assert!(
        other.all_events()[mark..]
            .iter()
            .all(|e| e["event"] != "control_rejected"),
        "the instance that does not own tenant_3 warned about it"
    );

    // --check: coordination works on this connection, two live now.
    let config = crate::support::pgfleet::ConfigFile::new(yaml);
    let output = crate::support::pgfleet::run(
        &[
            "--config",
            config.path.to_str().unwrap_or_default(),
            "--check",
        ],
        &[("PGFLEET__DATABASE__URL", &db.url())],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("coordination: works at") && stdout.contains("2 instances of namespace"),
        "{stdout}"
    );
    // The check joined nothing: still two members.
    assert_eq!(json(a_http, "/coordination")["members"], 2);
}

/// Two instances with HTTP on `db`, `pgfleet-a` and `pgfleet-b` by their
/// `application_name`.
fn two_instances(db: &TestDb, yaml: &str) -> ((Pgfleet, SocketAddr), (Pgfleet, SocketAddr)) {
    let instance =
        |name: &str| crate::http::start(db, yaml, &[("PGFLEET__DATABASE__APPLICATION_NAME", name)]);
    (instance("pgfleet-a"), instance("pgfleet-b"))
}

/// The schemas the instance at `address` folds (running or paused), from
/// its `/workers`.
fn schemas_of(address: SocketAddr) -> BTreeSet<String> {
    crate::http::json(address, "/workers")
        .as_array()
        .map(|workers| {
            workers
                .iter()
                .filter(|w| w["state"] == "running" || w["state"] == "paused")
                .filter_map(|w| w["schema"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `n` schemas, each folded by one of the two instances, both folding some.
fn shared_by(a: SocketAddr, b: SocketAddr, n: usize) -> bool {
    let (on_a, on_b) = (schemas_of(a), schemas_of(b));
    on_a.len() + on_b.len() == n && on_a.is_disjoint(&on_b) && !on_a.is_empty() && !on_b.is_empty()
}

/// The fence itself: while another session holds a schema's fence lock
/// (as another instance's fold in its transaction would), the fold does
/// nothing and says so (`fenced`); once it is released, the fold runs.
/// With prepared folds and without.
#[test]
fn a_fold_whose_fence_is_held_elsewhere_does_nothing() {
    for prepared in ["on", "off"] {
        let db = cluster().create_database();
        create_counter_schemas(&db, "schema", 1, 2);
        let pgfleet = Pgfleet::start(
            &db,
            &format!(
                "workers:\n  total: 2\n  create_schema: false\ndatabase:\n  prepared: {prepared}\n\
                 coordination:\n  enabled: true\n"
            ),
        );
        pgfleet.wait_event("coordination_rebalanced");
        let (namespace, key) = pgfleet_actors::ownership::Keys {
            namespace: 1_885_759_092,
        }
        .fence("schema1");
        let mut holder = db.client();
        let mut fence = holder.transaction().expect("a transaction");
        fence
            .execute("SELECT pg_advisory_xact_lock($1, $2)", &[&namespace, &key])
            .expect("the fence lock");
        let mark = pgfleet.mark();
        execute(
            &db,
            "INSERT INTO schema1.counted VALUES ('delta', 5); INSERT INTO schema2.counted VALUES ('delta', 7)",
        );
        let total = |schema: &str| {
            crate::support::pgfleet::scalar_i64(
                &db,
                &format!("SELECT value::int8 FROM {schema}.counted WHERE type = 'total'"),
            )
        };
        pgfleet.eventually("schema2 folded", || total("schema2") == 7);
        let skipped = pgfleet.wait_for_from(mark, "a fenced tick", |e| {
            e["event"] == "worker_tick_skipped"
                && e["reason"] == "fenced"
                && e["schema"] == "schema1"
        });
        assert!(
            skipped.1["msg"]
                .as_str()
                .unwrap_or_default()
                .contains("another session is folding"),
            "{}",
            skipped.1
        );
        thread::sleep(Duration::from_millis(600));
        assert_eq!(
            total("schema1"),
            0,
            "folded through a held fence ({prepared})"
        );
        fence.commit().expect("release the fence");
        pgfleet.eventually("schema1 folded once the fence is free", || {
            total("schema1") == 5
        });
        pgfleet.assert_no_event("worker_failed");
    }
}

/// Through PgBouncer in transaction mode (with `pooler: auto`, so not
/// refused at load) session locks would stay on whatever server
/// connection the pooler hands round: `--check` says so and fails, the
/// service folds nothing and says why; with `control.url` direct, the
/// coordination works and the folds go through the pooler.
#[test]
fn coordination_through_a_transaction_pooler_is_refused_and_control_url_fixes_it() {
    use crate::support::pgbouncer::PgBouncer;
    let db = cluster().create_database();
    create_counter_schemas(&db, "schema", 1, 2);
    let bouncer = PgBouncer::start(cluster().port(), "transaction", "");
    let through = bouncer.url(&db.name);
    let yaml = "workers:\n  total: 2\n  create_schema: false\ncoordination:\n  enabled: true\n";
    let config = crate::support::pgfleet::ConfigFile::new(yaml);
    let output = crate::support::pgfleet::run(
        &[
            "--config",
            config.path.to_str().unwrap_or_default(),
            "--check",
        ],
        &[("PGFLEET__DATABASE__URL", &through)],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("coordination cannot work") && stderr.contains("transaction-mode pooler"),
        "{stderr}"
    );

    let pgfleet = Pgfleet::start_with(&db, yaml, &[("PGFLEET__DATABASE__URL", &through)]);
    let lost = pgfleet.wait_event("coordination_lost");
    assert!(
        lost["error"]
            .as_str()
            .unwrap_or_default()
            .contains("transaction-mode pooler"),
        "{lost}"
    );
    thread::sleep(Duration::from_secs(1));
    assert!(
        pgfleet.events("worker_started").is_empty(),
        "folded without coordination"
    );
    drop(pgfleet);

    let pgfleet = Pgfleet::start_with(
        &db,
        yaml,
        &[
            ("PGFLEET__DATABASE__URL", &through),
            ("PGFLEET__CONTROL__URL", &db.url()),
        ],
    );
    pgfleet.wait_event("coordination_joined");
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 4)");
    pgfleet.eventually("folded through the pooler", || {
        crate::support::pgfleet::scalar_i64(
            &db,
            "SELECT value::int8 FROM schema1.counted WHERE type = 'total'",
        ) == 4
    });
}

/// Instances that do not fold the same schemas (one reloaded with two
/// more, the other not yet): after the grace (10 s) both say so
/// (`coordination_schemas_differ`), and `/coordination` and the metrics
/// show it, while `/readyz` stays ready (a Kubernetes rollout of a changed
/// list must not stall on it); once the other has the same list, every
/// schema folds.
#[test]
fn instances_that_disagree_on_the_schemas_say_so_until_they_agree() {
    use crate::http::{get, json, start};
    let db = cluster().create_database();
    create_counter_schemas(&db, "schema", 1, 12);
    let yaml = |n: usize| {
        format!("workers:\n  total: {n}\n  create_schema: false\ncoordination:\n  enabled: true\n")
    };
    let (a, a_http) = start(&db, &yaml(12), &[]);
    let (b, b_http) = start(&db, &yaml(10), &[]);
    for (pgfleet, address) in [(&a, a_http), (&b, b_http)] {
        pgfleet.wait_for_within(
            "coordination_schemas_differ",
            |e| e["event"] == "coordination_schemas_differ",
            Duration::from_secs(30),
        );
        pgfleet.eventually("/coordination says they disagree", || {
            json(address, "/coordination")["schemas_agree"] == false
        });
        let metrics = get(address, "/metrics").body;
        assert!(
            metrics.contains("pgfleet_coordination_schemas_agree 0"),
            "{metrics}"
        );
        let ready = get(address, "/readyz");
        assert_eq!(ready.status, 200, "{}", ready.body);
    }
    let said = a.events("coordination_schemas_differ");
    assert_eq!(said[0]["schemas"], 12, "{}", said[0]);
    assert_eq!(said[0]["theirs"], 10, "{}", said[0]);

    b.reload(&yaml(12));
    for (pgfleet, address) in [(&a, a_http), (&b, b_http)] {
        pgfleet.eventually("the same schemas again", || {
            json(address, "/coordination")["schemas_agree"] == true
                && get(address, "/metrics")
                    .body
                    .contains("pgfleet_coordination_schemas_agree 1")
        });
    }
    execute(&db, "INSERT INTO schema11.counted VALUES ('delta', 3); INSERT INTO schema12.counted VALUES ('delta', 4)");
    a.eventually("schema11 and schema12 folded", || {
        crate::support::pgfleet::scalar_i64(
            &db,
            "SELECT sum(value)::int8 FROM (SELECT value FROM schema11.counted UNION ALL SELECT value FROM schema12.counted) v \
             WHERE true",
        ) == 7
            && crate::support::pgfleet::scalar_i64(
                &db,
                "SELECT count(*) FROM (SELECT FROM schema11.counted WHERE type = 'delta' UNION ALL \
                 SELECT FROM schema12.counted WHERE type = 'delta') d",
            ) == 0
    });
}

/// `coordination.*` is read at start: a reload that changes the namespace
/// says so (`config_needs_restart`), and the instance goes on in the one
/// it joined: a worker the same reload adds (schema2) fences its folds in
/// the old namespace, where its peers still are.
#[test]
fn a_reload_of_the_coordination_keys_waits_for_the_next_start() {
    let db = cluster().create_database();
    create_counter_schemas(&db, "schema", 1, 2);
    let yaml = |total: u32, namespace: u32| {
        format!(
            "workers:\n  total: {total}\n  create_schema: false\n\
             coordination:\n  enabled: true\n  namespace: {namespace}\n"
        )
    };
    let pgfleet = Pgfleet::start(&db, &yaml(1, 4242));
    pgfleet.wait_event("coordination_rebalanced");
    // The old namespace's fence of schema2, held as a peer's fold would.
    let (namespace, key) = pgfleet_actors::ownership::Keys { namespace: 4242 }.fence("schema2");
    let mut holder = db.client();
    let mut fence = holder.transaction().expect("a transaction");
    fence
        .execute("SELECT pg_advisory_xact_lock($1, $2)", &[&namespace, &key])
        .expect("the fence lock");
    execute(&db, "INSERT INTO schema2.counted VALUES ('delta', 2)");
    let mark = pgfleet.mark();
    pgfleet.reload(&yaml(2, 4343));
    let said = pgfleet.wait_for("config_needs_restart", |e| {
        e["event"] == "config_needs_restart" && e["key"] == "coordination"
    });
    assert!(
        said["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("next start"),
        "{said}"
    );
    pgfleet.wait_for_from(mark, "schema2's fold fenced in namespace 4242", |e| {
        e["event"] == "worker_tick_skipped" && e["reason"] == "fenced" && e["schema"] == "schema2"
    });
    fence.commit().expect("release the fence");
    pgfleet.eventually("folded once the fence is free", || {
        crate::support::pgfleet::scalar_i64(
            &db,
            "SELECT value::int8 FROM schema2.counted WHERE type = 'total'",
        ) == 2
    });
}

/// A reload that changes where the coordination session connects
/// (`control.url`) ends the session and opens one there at once; one that
/// changes only how (a timeout here, as TLS or a password would) keeps
/// the session open, and the new settings wait for the next join. Checked
/// in `pg_locks`: the session holding the buckets' locks, and its
/// `application_name` (which the new `control.url` sets).
#[test]
fn a_reload_that_moves_the_coordination_session_joins_again_there_and_only_then() {
    let db = cluster().create_database();
    let yaml = |control: &str| {
        format!(
            "workers:\n  total: 2\ncoordination:\n  enabled: true\n\
             control:\n  url: \"{control}\"\ndatabase:\n  connect_timeout: 5s\n"
        )
    };
    let pgfleet = Pgfleet::start(&db, &yaml(&db.url()));
    pgfleet.wait_event("coordination_joined");
    ready(&pgfleet, &db, &schema_names(2));
    // The sessions holding the buckets' locks (all 1024 of them, and the
    // membership's: this instance is alone), with their application_name.
    let holders = || -> Vec<(i32, String)> {
        db.client()
            .query(
                "SELECT l.pid, a.application_name FROM pg_locks l \
                 JOIN pg_stat_activity a USING (pid) \
                 WHERE l.locktype = 'advisory' AND l.granted \
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 GROUP BY 1, 2 HAVING count(*) > 1000",
                &[],
            )
            .expect("the lock holders")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    };
    let mut first = Vec::new();
    pgfleet.eventually("one session holding every bucket", || {
        first = holders();
        first.len() == 1
    });

    // How it connects, not where: the session stays.
    let mark = pgfleet.mark();
    pgfleet.reload(&yaml(&db.url()).replace("connect_timeout: 5s", "connect_timeout: 4s"));
    pgfleet.wait_for_from(mark, "the reload of a timeout", |e| {
        e["event"] == "config_reloaded"
    });
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 1)");
    pgfleet.wait_for_from(mark, "a fold after it", |e| {
        e["event"] == "worker_tick" && e["schema"] == "schema1" && e["total"] == 1
    });
    assert_eq!(
        holders(),
        first,
        "the session changed on a timeout's reload"
    );
    assert!(
        pgfleet.all_events()[mark..]
            .iter()
            .all(|e| e["event"] != "coordination_lost" && e["event"] != "coordination_joined"),
        "the session was reopened on a timeout's reload"
    );

    // Where: the session moves there at once, and the old one is gone.
    let moved = format!("{}?application_name=pgfleet-moved", db.url());
    let mark = pgfleet.mark();
    pgfleet.reload(&yaml(&moved));
    let (lost_at, lost) = pgfleet.wait_for_from(mark, "the session ended", |e| {
        e["event"] == "coordination_lost"
    });
    assert!(
        lost["error"].as_str().is_some_and(
            |why| why.contains("a reload changed where the coordination session connects")
        ),
        "{lost}"
    );
    let (_, joined) = pgfleet.wait_for_from(lost_at, "the join there", |e| {
        e["event"] == "coordination_joined"
    });
    let (_, started) = pgfleet.wait_for_from(lost_at, "the workers again", |e| {
        e["event"] == "worker_started"
    });
    eprintln!(
        "session moved: ended at {}, joined again at {}, a worker started at {}",
        lost["ts"], joined["ts"], started["ts"]
    );
    let mut now = Vec::new();
    pgfleet.eventually("the buckets held by the moved session alone", || {
        now = holders();
        now.len() == 1 && now[0].1 == "pgfleet-moved"
    });
    assert_ne!(now[0].0, first[0].0, "the same backend");
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 1)");
    execute(&db, "INSERT INTO schema2.counted VALUES ('delta', 2)");
    for (schema, total) in [("schema1", 2), ("schema2", 2)] {
        pgfleet.wait_for_from(lost_at, &format!("{schema} folded to {total}"), |e| {
            e["event"] == "worker_tick" && e["schema"] == schema && e["total"] == total
        });
    }
    pgfleet.assert_no_event("worker_failed");
}

/// A coordination session the server refuses (a role that does not
/// exist): said once at warn, tried again 1, 2, 4, then every 5 s, and
/// nothing folds meanwhile; a reload that fixes `control.url` joins at
/// once, without waiting out the pause.
#[test]
fn a_refused_coordination_session_is_retried_slowly_until_a_reload_fixes_it() {
    let db = cluster().create_database();
    let yaml = |control: &str| {
        format!(
            "workers:\n  total: 2\ncoordination:\n  enabled: true\n\
             control:\n  url: \"{control}\"\nlog:\n  level: debug\n"
        )
    };
    let pgfleet = Pgfleet::start(&db, &yaml(&db.url_as("no_such_role")));
    let first = pgfleet.wait_event("coordination_lost");
    assert!(
        first["error"]
            .as_str()
            .is_some_and(|why| why.contains("no_such_role")),
        "{first}"
    );
    assert_eq!(first["level"], "warn", "{first}");
    // Attempts at 0, 1, 3 and 7 s: four in 7.5 s (with a pause of 100 ms,
    // 68 were made).
    thread::sleep(Duration::from_millis(7500));
    let lost = pgfleet.events("coordination_lost");
    assert!(
        (3..=5).contains(&lost.len()),
        "{} attempts: {lost:?}",
        lost.len()
    );
    let warned = lost.iter().filter(|e| e["level"] == "warn").count();
    assert_eq!(warned, 1, "the same refusal warned again: {lost:?}");
    pgfleet.assert_no_event("worker_started");

    let mark = pgfleet.mark();
    pgfleet.reload(&yaml(&db.url()));
    let (_, reloaded) =
        pgfleet.wait_for_from(mark, "the reload", |e| e["event"] == "config_reloaded");
    let (_, joined) =
        pgfleet.wait_for_from(mark, "the join", |e| e["event"] == "coordination_joined");
    ready(&pgfleet, &db, &schema_names(2));
    let took = seconds_of(joined["ts"].as_str().unwrap_or_default())
        - seconds_of(reloaded["ts"].as_str().unwrap_or_default());
    // The fix is taken at once: the retry due next is 12 s after the
    // first attempt, at least 4 s after the reload (which came 7.5 s and
    // a little after the first attempt, past the one at 7 s). Joining
    // takes tens of milliseconds; 2 s leaves room for a loaded machine.
    eprintln!("joined {took:.3} s after the reload");
    assert!(took < 2.0, "joined {took:.3} s after the reload");
    execute(&db, "INSERT INTO schema2.counted VALUES ('delta', 3)");
    pgfleet.wait_for("schema2 folded", |e| {
        e["event"] == "worker_tick" && e["schema"] == "schema2" && e["total"] == 3
    });
}

/// PgBouncer in session mode with `server_reset_query` emptied hands a
/// killed instance's server connection, its locks still held, to the next
/// client (LIFO). When that client is the next instance's coordination
/// session, the dead member's membership and buckets would live as long
/// as that session (which never idles, so the server never ends it):
/// its schemas folded by nobody. The join lets such locks go, and says so.
#[test]
fn locks_handed_down_by_a_session_pooler_without_a_reset_are_released_at_the_join() {
    use crate::support::pgbouncer::PgBouncer;
    let db = cluster().create_database();
    let bouncer = PgBouncer::start(cluster().port(), "session", "server_reset_query =");
    let through = bouncer.url(&db.name);
    // Only the coordination session (and its check, a moment at the join)
    // goes through PgBouncer: no control listener, the pool direct. A
    // lease of 30 s: the killed session's backend, idle, is ended by the
    // server only after that, so the next instance surely gets it.
    let yaml = "workers:\n  total: 20\ncoordination:\n  enabled: true\n  lease: 30s\n\
                control:\n  channel: \"\"\n";
    let env = [("PGFLEET__CONTROL__URL", through.as_str())];
    let schemas = schema_names(20);
    let mut killed = Pgfleet::start_with(&db, yaml, &env);
    ready(&killed, &db, &schemas);
    killed.signal(libc::SIGKILL);
    let _ = killed.wait_exit(Duration::from_secs(10));
    let mut next = Pgfleet::start_with(&db, yaml, &env);
    for schema in &schemas {
        execute(
            &db,
            &format!("INSERT INTO {schema}.counted VALUES ('delta', 1)"),
        );
    }
    for schema in &schemas {
        next.wait_for(&format!("{schema} folded by the next instance"), |e| {
            e["event"] == "worker_tick" && e["schema"] == schema.as_str() && e["total"] == 1
        });
    }
    let handed = next.wait_event("coordination_locks_handed_down");
    assert!(
        handed["locks"].as_u64().is_some_and(|n| n > 1000),
        "{handed}"
    );
    assert_eq!(handed["level"], "warn", "{handed}");
    eprintln!("{} locks handed down", handed["locks"]);

    // `--check` right after another kill gets that session's connection
    // too, and says so.
    next.signal(libc::SIGKILL);
    let _ = next.wait_exit(Duration::from_secs(10));
    let config = crate::support::pgfleet::ConfigFile::new(yaml);
    let output = crate::support::pgfleet::run(
        &[
            "--config",
            config.path.to_str().unwrap_or_default(),
            "--check",
        ],
        &[
            ("PGFLEET__DATABASE__URL", &db.url()),
            ("PGFLEET__CONTROL__URL", &through),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("advisory locks of the client before it")
            && stderr.contains("server_reset_query"),
        "{stderr}"
    );
}

/// Pauses with coordination (docs/coordination.md, "Pauses are per
/// instance"): one sent with NOTIFY is noted by every instance and moves
/// with its schema; one sent over HTTP lives in the instance that got it,
/// and its schema folds again once it has moved.
#[test]
fn a_notify_pause_moves_with_its_schema_and_an_http_pause_stays_behind() {
    use crate::http::{json, request_with};
    let db = cluster().create_database();
    let yaml = "workers:\n  total: 20\ncoordination:\n  enabled: true\n";
    let ((mut a, a_http), (b, b_http)) = two_instances(&db, yaml);
    a.eventually("20 schemas shared by two instances", || {
        shared_by(a_http, b_http, 20)
    });
    for schema in schema_names(20) {
        execute(
            &db,
            &format!("INSERT INTO {schema}.counted VALUES ('total', 0)"),
        );
    }
    let on_a: Vec<String> = schemas_of(a_http).into_iter().collect();
    let (by_notify, by_http) = (&on_a[0], &on_a[1]);
    for pgfleet in [&a, &b] {
        pgfleet.wait_event("control_listening");
    }
    execute(&db, &format!("NOTIFY pgfleet, 'pause {by_notify}'"));
    let paused = request_with(
        a_http,
        "POST",
        &format!("/workers/{by_http}/pause"),
        &[],
        "",
    );
    assert_eq!(paused.status, 200, "{}", paused.body);
    for schema in [by_notify, by_http] {
        a.eventually(&format!("{schema} paused on a"), || {
            json(a_http, &format!("/workers/{schema}"))["state"] == "paused"
        });
    }

    // a stops: its schemas go to b, the NOTIFY pause with them.
    assert!(a.stop().success());
    b.eventually("b folds all 20", || schemas_of(b_http).len() == 20);
    let state = |schema: &str| json(b_http, &format!("/workers/{schema}"))["state"].clone();
    assert_eq!(state(by_notify), "paused", "the NOTIFY pause did not move");
    assert_eq!(state(by_http), "running", "the HTTP pause moved");
    for schema in [by_notify, by_http] {
        execute(
            &db,
            &format!("INSERT INTO {schema}.counted VALUES ('delta', 1)"),
        );
    }
    b.wait_for(&format!("{by_http} folded by b"), |e| {
        e["event"] == "worker_tick" && e["schema"] == by_http.as_str() && e["total"] == 1
    });
    // Four naptimes more: the paused one still has its delta.
    thread::sleep(Duration::from_millis(800));
    let waiting = crate::support::pgfleet::scalar_i64(
        &db,
        &format!("SELECT count(*) FROM {by_notify}.counted WHERE type = 'delta'"),
    );
    assert_eq!(waiting, 1, "{by_notify} was folded while paused");
}

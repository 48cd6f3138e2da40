//! Faults that leave the shared cluster running (the ones that restart or
//! stall it are in `tests/faults`): locks, panics, signal storms, two
//! instances, secrets.

use std::thread;
use std::time::{Duration, Instant};

use crate::support::cluster::cluster;
use crate::support::pgfleet::{
    eventually, execute, ready, run, scalar_i64, schema_names, ConfigFile, Pgfleet, PATIENCE,
};
use crate::support::writers::{ledger, Writers};

/// A table held by someone else for longer than naptime, with a fold that
/// may wait for it longer than a tick (`fold_lock_timeout`): ticks are
/// skipped and counted, the lock timeout ends each wait, the schema shows
/// as waiting for a lock, nothing fails, and folding resumes when the lock
/// goes.
#[test]
fn a_lock_longer_than_naptime_skips_ticks() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(
        &db,
        // Longer than the second after which a fold in flight is news.
        "workers:\n  total: 1\ndatabase:\n  fold_lock_timeout: 1500ms\n",
    );
    ready(&pgfleet, &db, &schema_names(1));
    let mut holder = db.client();
    holder
        .batch_execute("BEGIN; LOCK TABLE schema1.counted IN ACCESS EXCLUSIVE MODE")
        .expect("lock");
    let skipped = pgfleet.wait_for("a tick skipped while the fold waits", |e| {
        e["event"] == "worker_tick_skipped" && e["reason"] == "fold_in_flight"
    });
    assert!(skipped["skipped"].as_u64() >= Some(1));
    // Shown (at warn, the default level shows no debug) only once the
    // fold has waited a second: at 200 ms ticks, earlier ones are routine.
    assert!(skipped["running_ms"].as_u64() >= Some(1000), "{skipped}");
    let timed_out = pgfleet.wait_for("fold_lock_timeout", |e| {
        e["event"] == "worker_waiting_for_lock"
    });
    assert!(
        timed_out["error"]
            .as_str()
            .expect("error")
            .contains("55P03"),
        "{timed_out}"
    );
    holder.batch_execute("ROLLBACK").expect("release");
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 2)");
    pgfleet.wait_for("folding after the lock", |e| {
        e["event"] == "worker_tick" && e["total"] == 2
    });
    assert_eq!(pgfleet.events("worker_lock_released").len(), 1);
    pgfleet.assert_no_event("worker_failed");
}

/// A panic inside one worker (a test-only hook) fails that worker alone;
/// the policy restarts it, the others and the service go on.
#[test]
fn a_panic_in_a_worker_is_contained() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start_with(
        &db,
        "workers:\n  total: 2\nrestart:\n  max_restarts: 2\n",
        &[("TEST_HOOK_PANIC_IN_FOLD_OF", "schema2")],
    );
    ready(&pgfleet, &db, &schema_names(2));
    let failed = pgfleet.wait_schema_event("worker_failed", "schema2");
    assert!(
        failed["error"]
            .as_str()
            .expect("error")
            .contains("panicked"),
        "{failed}"
    );
    pgfleet.wait_schema_event("worker_restarted", "schema2");
    pgfleet.wait_schema_event("worker_given_up", "schema2");
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 6)");
    pgfleet.wait_for("schema1 folding on", |e| {
        e["event"] == "worker_tick" && e["schema"] == "schema1" && e["total"] == 6
    });
    assert!(pgfleet
        .all_events()
        .iter()
        .all(|e| e["schema"] != "schema1" || e["event"] != "worker_failed"));
}

/// A panic in the worker's own code, outside its database work (here in a
/// tick), is a failure under the restart policy too, not a silent death
/// that would leave a "running" slot forever.
#[test]
fn a_panic_outside_the_database_work_is_a_worker_failure() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start_with(
        &db,
        "workers:\n  total: 2\nrestart:\n  max_restarts: 2\n",
        &[("TEST_HOOK_PANIC_IN_TICK_OF", "schema2")],
    );
    ready(&pgfleet, &db, &schema_names(2));
    let failed = pgfleet.wait_schema_event("worker_failed", "schema2");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("panicked") && e.contains("a panic in a tick")),
        "{failed}"
    );
    let panic = pgfleet.wait_event("panic");
    assert_eq!(panic["level"], "error", "{panic}");
    pgfleet.wait_schema_event("worker_restarted", "schema2");
    pgfleet.wait_schema_event("worker_given_up", "schema2");
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 6)");
    pgfleet.wait_for("schema1 folding on", |e| {
        e["event"] == "worker_tick" && e["schema"] == "schema1" && e["total"] == 6
    });
}

/// A panic in the Supervisor or the ConfigActor leaves a service that can
/// no longer restart workers or apply a reload: the process ends with exit
/// 1 and a last line that says why, for the process manager to act on.
#[test]
fn a_panic_in_the_supervisor_or_config_actor_ends_the_process() {
    for (hook, name) in [
        ("TEST_HOOK_PANIC_IN_SUPERVISOR", "Supervisor"),
        ("TEST_HOOK_PANIC_IN_RELOAD", "ConfigActor"),
    ] {
        let db = cluster().create_database();
        let mut pgfleet = Pgfleet::start_with(&db, "workers:\n  total: 1\n", &[(hook, "1")]);
        pgfleet.wait_schema_event("worker_started", "schema1");
        pgfleet.signal(libc::SIGHUP);
        let status = pgfleet.wait_exit(PATIENCE);
        assert_eq!(status.code(), Some(1), "{name}: {status}");
        let failed = pgfleet.events("service_failed");
        assert!(
            failed.iter().any(|e| e["error"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("{name} panicked")))),
            "{name}: {failed:?}"
        );
        let last = pgfleet.all_events().last().cloned().expect("a last line");
        assert_eq!(last["event"], "service_stopped", "{name}: {last}");
        assert_eq!(last["exit_code"], 1, "{name}: {last}");
    }
}

/// Hundreds of SIGHUPs in a second while the config flips between schema
/// sets: no crash, no duplicated or leaked worker, the last config wins.
#[test]
fn a_storm_of_sighups_leaves_the_last_config() {
    let db = cluster().create_database();
    let mut pgfleet = Pgfleet::start(&db, "workers:\n  total: 2\n");
    ready(&pgfleet, &db, &schema_names(2));
    let started = Instant::now();
    for i in 0..300 {
        pgfleet
            .config
            .write(&format!("workers:\n  total: {}\n", 1 + i % 4));
        pgfleet.signal(libc::SIGHUP);
        thread::sleep(Duration::from_micros(2_000));
    }
    let storm = started.elapsed();
    pgfleet.reload("workers:\n  total: 3\n");
    let expected = ["schema1", "schema2", "schema3"];
    // Settled: exactly one live worker generation for each schema of the
    // last config, none for schema4 (started minus stopped or failed).
    let live = |schema: &str| -> usize {
        let events = pgfleet.all_events();
        let of = |kinds: &[&str]| -> std::collections::BTreeSet<u64> {
            events
                .iter()
                .filter(|e| e["schema"] == schema && kinds.iter().any(|k| e["event"] == *k))
                .filter_map(|e| e["generation"].as_u64())
                .collect()
        };
        of(&["worker_started"])
            .difference(&of(&["worker_stopped", "worker_failed"]))
            .count()
    };
    pgfleet.eventually("the last config is in force", || {
        expected.iter().all(|s| live(s) == 1) && live("schema4") == 0
    });
    let sessions = || {
        scalar_i64(
            &db,
            "SELECT count(DISTINCT nspname) FROM pg_namespace WHERE nspname LIKE 'schema%'",
        )
    };
    assert!(sessions() >= 3);
    execute(
        &db,
        "INSERT INTO schema3.counted VALUES ('total', 0), ('delta', 1)",
    );
    pgfleet.wait_for("schema3 folding", |e| {
        e["event"] == "worker_tick" && e["schema"] == "schema3" && e["total"] == 1
    });
    let reloads = pgfleet.events("config_reloaded").len();
    eprintln!(
        "MEASURED 300 SIGHUPs in {} ms: {reloads} reloads applied, no crash",
        storm.as_millis()
    );
    assert!(reloads >= 1);
    // SIGTERM in the middle of reloads, then SIGHUP during the shutdown.
    for _ in 0..20 {
        pgfleet.signal(libc::SIGHUP);
    }
    pgfleet.signal(libc::SIGTERM);
    for _ in 0..20 {
        pgfleet.signal(libc::SIGHUP);
    }
    assert_eq!(pgfleet.wait_exit(PATIENCE).code(), Some(0));
    let events = pgfleet.all_events();
    assert_eq!(
        events.last().expect("last line")["event"],
        "service_stopped"
    );
    assert!(
        events.iter().all(|e| e["event"] != "worker_failed"),
        "a worker failed in the storm"
    );
}

/// Two instances fold the same schemas under pgbench writers: no errors
/// from racing, and not a delta lost or counted twice.
#[test]
fn two_instances_under_write_load_lose_nothing() {
    let db = cluster().create_database();
    let schemas = schema_names(3);
    let config = "workers:\n  total: 3\n  vacuum_after: 500\nnaptime: 50ms\n";
    let first = Pgfleet::start(&db, config);
    ready(&first, &db, &schemas);
    let second = Pgfleet::start(&db, config);
    for schema in &schemas {
        second.wait_schema_event("worker_started", schema);
    }
    let writers = Writers::start(&db, &schemas);
    thread::sleep(Duration::from_secs(3));
    writers.stop();
    let (counted, committed) = ledger(&db, &schemas);
    assert_eq!(counted, committed);
    eventually("all deltas folded", || {
        scalar_i64(
            &db,
            "SELECT count(*) FROM schema1.counted WHERE type = 'delta'",
        ) == 0
    });
    for pgfleet in [&first, &second] {
        pgfleet.assert_no_event("worker_failed");
    }
    eprintln!("MEASURED two instances: {committed} deltas committed, {counted} counted");
}

/// The password, from database.password or database.password_file,
/// appears nowhere: not in a trace-level run, --print-config, or errors.
#[test]
fn passwords_from_keys_and_files_never_show() {
    const SECRET: &str = "pw-Zq81-never-print";
    let db = cluster().create_database();
    let secret_file = ConfigFile::new(&format!("{SECRET}\n"));
    let by_file = format!(
        "workers:\n  total: 1\nlog:\n  level: trace\ndatabase:\n  password_file: {}\n",
        secret_file.path.display()
    );
    let mut pgfleet = Pgfleet::start(&db, &by_file);
    ready(&pgfleet, &db, &schema_names(1));
    pgfleet.reload(&format!(
        "workers:\n  total: 1\nlog:\n  level: trace\ndatabase:\n  password: {SECRET}x\n"
    ));
    let reloaded = pgfleet.wait_event("config_reloaded");
    assert!(
        reloaded["changes"]
            .as_str()
            .expect("changes")
            .contains("database.password"),
        "{reloaded}"
    );
    pgfleet.reload(&format!(
        "database:\n  password: {SECRET}\n  password_file: /nonexistent\n"
    ));
    pgfleet.wait_event("config_rejected");
    thread::sleep(Duration::from_secs(1)); // a few trace-level ticks
    pgfleet.stop();
    let lines = pgfleet.lines();
    assert!(lines.len() > 10, "{lines:#?}");
    for line in &lines {
        assert!(!line.contains(SECRET), "password logged: {line}");
    }

    let env = [("PGFLEET__DATABASE__PASSWORD", SECRET)];
    let printed = run(&["--print-config"], &env);
    let out = String::from_utf8_lossy(&printed.stdout);
    assert!(
        !out.contains(SECRET) && out.contains("password: '********'"),
        "{out}"
    );
    let bad = run(
        &["--print-config"],
        &[
            ("PGFLEET__DATABASE__PASSWORD", SECRET),
            ("PGFLEET__DATABASE__PASSWORD_FILE", "/x"),
        ],
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        !err.contains(SECRET) && err.contains("database.password_file"),
        "{err}"
    );
}

/// A VACUUM that cannot get its lock (another session holds SHARE UPDATE
/// EXCLUSIVE, as autovacuum does, which does not block the fold) gives up
/// after `fold_lock_timeout` on its own: the fold before it is still
/// reported (`worker_tick`), the VACUUM is postponed and tried again after
/// later folds, and no outage is declared.
#[test]
fn a_vacuum_that_times_out_keeps_the_fold_before_it() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(&db, "workers:\n  total: 1\n  vacuum_after: 1\n");
    let (mut holder, mark, skipped) = crate::vacuum::vacuum_locked_out(&pgfleet, &db);
    assert!(
        skipped["error"]
            .as_str()
            .is_some_and(|e| e.contains("55P03")),
        "{skipped}"
    );
    holder.batch_execute("ROLLBACK").expect("release");
    execute(&db, "INSERT INTO schema1.counted VALUES ('delta', 1)");
    pgfleet.wait_for_from(mark, "the VACUUM once the lock is gone", |e| {
        e["event"] == "worker_vacuumed"
    });
    pgfleet.assert_no_event("database_lost");
    pgfleet.assert_no_event("worker_failed");
}

/// A pool too small for the fleet is its own warning, naming the pool size
/// and the wait, not "database unreachable" at debug.
#[test]
fn an_exhausted_pool_is_named() {
    let db = cluster().create_database();
    let pgfleet = Pgfleet::start(
        &db,
        "workers:\n  total: 2\ndatabase:\n  pool_size: 1\n  connect_timeout: 300ms\n  fold_lock_timeout: 10s\n",
    );
    ready(&pgfleet, &db, &schema_names(2));
    let mut holder = db.client();
    holder
        .batch_execute("BEGIN; LOCK TABLE schema1.counted IN ACCESS EXCLUSIVE MODE")
        .expect("lock");
    execute(&db, "INSERT INTO schema2.counted VALUES ('delta', 1)");
    let exhausted = pgfleet.wait_for("a tick skipped for want of a connection", |e| {
        e["event"] == "worker_tick_skipped" && e["reason"] == "pool_exhausted"
    });
    assert_eq!(exhausted["level"], "warn", "{exhausted}");
    assert!(
        exhausted["error"]
            .as_str()
            .is_some_and(|m| m.contains("database.pool_size (1)") && m.contains("300ms")),
        "{exhausted}"
    );
    assert_eq!(exhausted["fleet_skipped"], 1, "{exhausted}");
    // Every tick of schema2 waits 300 ms for the one connection and is
    // skipped; the warning comes once per 10 s for the whole pool.
    std::thread::sleep(Duration::from_secs(2));
    let warnings: Vec<_> = pgfleet
        .events("worker_tick_skipped")
        .into_iter()
        .filter(|e| e["reason"] == "pool_exhausted")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    holder.batch_execute("ROLLBACK").expect("release");
    pgfleet.wait_for("schema2 folds once the pool frees", |e| {
        e["event"] == "worker_tick" && e["schema"] == "schema2" && e["total"] == 1
    });
    pgfleet.assert_no_event("database_lost");
}

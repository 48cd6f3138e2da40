//! Several instances share one fleet (issue 19, `coordination.enabled`),
//! tried with real processes and signals, one test at a time (their
//! figures are times: a machine shared with the other tests would measure
//! its own load): three instances split 300
//! schemas; one killed (-9), frozen (SIGSTOP) or cut off from its
//! coordination session (a TCP proxy that stops relaying) has its schemas
//! taken over within 5 s; a rolling restart leaves no schema unfolded for
//! more than 2 s.
//!
//! What happened is read from the database, not from pgfleet's logs: a
//! trigger on every total row records each fold's `application_name` (one
//! per instance), transaction start and update time. From those records:
//! every schema has one owner at a time, no two folds of a schema overlap,
//! no schema goes back and forth, and nothing is lost (a writer adds one
//! delta to every schema every 100 ms, so every fold has deltas and a gap
//! between folds is a gap in folding).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crate::serial;
use crate::support::cluster::{cluster, TestDb};
use crate::support::pgfleet::{execute, Pgfleet};
use crate::support::proxy::{Mode, Proxy};
use crate::support::schemas::create_counter_schemas;

const SCHEMAS: usize = 300;
/// A frozen or cut-off instance's schemas are folded by the others within
/// this (the target).
const TAKEOVER: f64 = 5.0;

fn yaml() -> String {
    format!(
        "naptime: 500ms\nworkers:\n  total: {SCHEMAS}\n  create_schema: false\n\
         database:\n  pool_size: 3\ncoordination:\n  enabled: true\n  lease: 3s\n"
    )
}

fn schemas() -> Vec<String> {
    (1..=SCHEMAS).map(|n| format!("schema{n}")).collect()
}

/// The schemas, each with a trigger recording its folds in `public.folds`.
fn fleet_database() -> TestDb {
    let db = cluster().create_database();
    create_counter_schemas(&db, "schema", 1, SCHEMAS);
    let mut sql = String::from(
        "CREATE TABLE public.folds (schema text, app text, xact float8, at float8); \
         CREATE FUNCTION public.record_fold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           INSERT INTO public.folds VALUES (TG_TABLE_SCHEMA, current_setting('application_name'), \
             extract(epoch FROM now()), extract(epoch FROM clock_timestamp())); \
           RETURN NEW; END $$;",
    );
    for schema in schemas() {
        sql.push_str(&format!(
            "CREATE TRIGGER record_fold AFTER UPDATE ON {schema}.counted \
             FOR EACH ROW EXECUTE FUNCTION public.record_fold();"
        ));
    }
    execute(&db, &sql);
    db
}

fn instance(db: &TestDb, name: &str, env: &[(&str, &str)]) -> Pgfleet {
    let mut all = vec![("PGFLEET__DATABASE__APPLICATION_NAME", name)];
    all.extend_from_slice(env);
    Pgfleet::start_with(db, &yaml(), &all)
}

/// Seconds since the epoch: the test's and the server's clocks are the
/// same machine's.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One delta into every schema every 100 ms, in one transaction each
/// time, counted when committed.
struct Ticker {
    running: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(db: &TestDb) -> Self {
        let mut client = db.client();
        let (running, commits) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)));
        let (still, counted) = (Arc::clone(&running), Arc::clone(&commits));
        let mut sql = String::from("BEGIN;");
        for schema in schemas() {
            sql.push_str(&format!(
                "INSERT INTO {schema}.counted VALUES ('delta', 1);"
            ));
        }
        sql.push_str("COMMIT;");
        let thread = thread::spawn(move || {
            while still.load(Ordering::SeqCst) {
                let started = Instant::now();
                client.batch_execute(&sql).expect("the ticker's deltas");
                counted.fetch_add(1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(100).saturating_sub(started.elapsed()));
            }
        });
        Ticker {
            running,
            commits,
            thread: Some(thread),
        }
    }

    /// Stops it; how many deltas each schema was given.
    fn stop(mut self) -> i64 {
        self.running.store(false, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the ticker");
        }
        self.commits.load(Ordering::SeqCst) as i64
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone)]
struct Fold {
    app: String,
    xact: f64,
    at: f64,
}

/// Every recorded fold, by schema, in the order they happened.
fn folds(db: &TestDb) -> BTreeMap<String, Vec<Fold>> {
    let mut by_schema: BTreeMap<String, Vec<Fold>> = BTreeMap::new();
    for row in db
        .client()
        .query(
            "SELECT schema, app, xact, at FROM public.folds ORDER BY at",
            &[],
        )
        .expect("the folds")
    {
        by_schema.entry(row.get(0)).or_default().push(Fold {
            app: row.get(1),
            xact: row.get(2),
            at: row.get(3),
        });
    }
    by_schema
}

/// Who folded each schema from `since` on.
fn owners_since(db: &TestDb, since: f64) -> BTreeMap<String, BTreeSet<String>> {
    let mut owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (schema, folds) in folds(db) {
        for fold in folds.into_iter().filter(|f| f.at >= since) {
            owners.entry(schema.clone()).or_default().insert(fold.app);
        }
    }
    owners
}

/// Waits until, over the last two seconds, every schema was folded by
/// exactly one of `apps`; returns how many each folded.
fn settled(db: &TestDb, apps: &[&str]) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        thread::sleep(Duration::from_millis(500));
        let owners = owners_since(db, now() - 2.0);
        let single = owners.len() == SCHEMAS
            && owners
                .values()
                .all(|who| who.len() == 1 && who.iter().all(|app| apps.contains(&app.as_str())));
        if single {
            let mut counts: BTreeMap<String, usize> =
                apps.iter().map(|a| (a.to_string(), 0)).collect();
            for who in owners.values() {
                for app in who {
                    *counts.entry(app.clone()).or_default() += 1;
                }
            }
            if counts.values().all(|n| *n > 0) {
                return counts;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the fleet never settled on one owner per schema among {apps:?}: {} schemas folded, {} by several",
            owners.len(),
            owners.values().filter(|who| who.len() > 1).count()
        );
    }
}

/// The schemas `app` folded over the last two seconds.
fn share_of(db: &TestDb, app: &str) -> Vec<String> {
    owners_since(db, now() - 2.0)
        .into_iter()
        .filter(|(_, who)| who.contains(app))
        .map(|(schema, _)| schema)
        .collect()
}

/// How long after `from` the last of `schemas` was first folded by an
/// instance other than `gone`.
fn takeover(db: &TestDb, schemas: &[String], gone: &str, from: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let folds = folds(db);
        let firsts: Vec<Option<f64>> = schemas
            .iter()
            .map(|schema| {
                folds.get(schema).and_then(|folds| {
                    folds
                        .iter()
                        .find(|f| f.at > from && !f.app.starts_with(gone))
                        .map(|f| f.at - from)
                })
            })
            .collect();
        if firsts.iter().all(Option::is_some) {
            return firsts.into_iter().flatten().fold(0.0, f64::max);
        }
        assert!(
            Instant::now() < deadline,
            "{} of {gone}'s {} schemas were not taken over within 20 s",
            firsts.iter().filter(|f| f.is_none()).count(),
            schemas.len()
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// What the records must show whatever happened: no two folds of one
/// schema overlapping in time, and no schema folded by one instance, then
/// another for less than `flap` seconds, then the first again.
fn check_records(db: &TestDb, flap: f64) {
    for (schema, folds) in folds(db) {
        let mut by_start = folds.clone();
        by_start.sort_by(|a, b| a.xact.total_cmp(&b.xact));
        for pair in by_start.windows(2) {
            assert!(
                pair[1].xact >= pair[0].at,
                "two folds of {schema} overlapped: {:?} began before {:?} had updated the total",
                pair[1],
                pair[0]
            );
        }
        // Runs of one owner: (app, first, last).
        let mut runs: Vec<(String, f64, f64)> = Vec::new();
        for fold in &folds {
            match runs.last_mut() {
                Some((app, _, last)) if *app == fold.app => *last = fold.at,
                _ => runs.push((fold.app.clone(), fold.at, fold.at)),
            }
        }
        for three in runs.windows(3) {
            let (first, middle, third) = (&three[0], &three[1], &three[2]);
            assert!(
                !(first.0 == third.0 && third.1 - middle.1 < flap),
                "{schema} went back and forth: {} until {:.3}, {} from {:.3}, {} again from {:.3}; all its runs: {runs:?}",
                first.0,
                first.2,
                middle.0,
                middle.1,
                third.0,
                third.1
            );
        }
    }
}

/// total + remaining deltas == what the ticker committed, in every schema.
fn check_nothing_lost(db: &TestDb, committed: i64) {
    let mut client = db.client();
    for schema in schemas() {
        let row = client
            .query_one(
                &format!(
                    "SELECT coalesce(sum(value) FILTER (WHERE type = 'total'), 0)::int8, \
                            count(*) FILTER (WHERE type = 'delta') FROM {schema}.counted"
                ),
                &[],
            )
            .expect("the ledger");
        let (total, deltas): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(
            total + deltas,
            committed,
            "{schema}: total {total} + {deltas} deltas"
        );
    }
}

fn names(apps: &[String]) -> Vec<&str> {
    apps.iter().map(String::as_str).collect()
}

fn within_a_fifth_of_a_third(counts: &BTreeMap<String, usize>) {
    let share = SCHEMAS as f64 / counts.len() as f64;
    for (app, n) in counts {
        assert!(
            (*n as f64 - share).abs() <= share * 0.2,
            "{app} folds {n} schemas, not within 20% of {share}: {counts:?}"
        );
    }
}

/// `app` frozen (SIGSTOP) for 10 s: the server ends its session after the
/// lease, and the others take its schemas within [`TAKEOVER`]; continued,
/// it begins no fold before it has rejoined (checked in the records). (A
/// fold it sent just before the SIGSTOP still commits on the server: that
/// one is fenced.) `label` starts the line that says how long it took.
fn freeze_then_continue(db: &TestDb, pgfleet: &Pgfleet, app: &str, label: &str) {
    let frozen = share_of(db, app);
    let mark = pgfleet.mark();
    let stopped_at = now();
    pgfleet.signal(libc::SIGSTOP);
    let took = takeover(db, &frozen, app, stopped_at);
    println!(
        "{label}SIGSTOP: {} schemas taken over within {took:.2} s",
        frozen.len()
    );
    assert!(took <= TAKEOVER, "took {took:.2} s");
    thread::sleep(
        Duration::from_secs(10).saturating_sub(Duration::from_secs_f64(now() - stopped_at)),
    );
    let continued_at = now();
    pgfleet.signal(libc::SIGCONT);
    pgfleet.wait_for_from(mark, "rejoining after SIGCONT", |e| {
        e["event"] == "coordination_joined"
    });
    let rejoined = now();
    let early: Vec<Fold> = folds(db)
        .into_values()
        .flatten()
        .filter(|f| f.app == app && f.xact > continued_at && f.xact < rejoined)
        .collect();
    assert!(early.is_empty(), "folded before rejoining: {early:?}");
}

/// `app` killed (-9): the others take its schemas within [`TAKEOVER`].
fn kill(db: &TestDb, pgfleet: &mut Pgfleet, app: &str, label: &str) {
    let killed = share_of(db, app);
    let killed_at = now();
    pgfleet.signal(libc::SIGKILL);
    let _ = pgfleet.wait_exit(Duration::from_secs(10));
    let took = takeover(db, &killed, app, killed_at);
    println!(
        "{label}kill -9: {} schemas taken over within {took:.2} s",
        killed.len()
    );
    assert!(took <= TAKEOVER, "took {took:.2} s");
}

#[test]
fn three_instances_share_the_fleet_and_take_over_a_frozen_or_killed_one() {
    let _serial = serial();
    let db = fleet_database();
    let ticker = Ticker::start(&db);
    let a = instance(&db, "pgfleet-a", &[]);
    let mut b = instance(&db, "pgfleet-b", &[]);
    let c = instance(&db, "pgfleet-c", &[]);
    let counts = settled(&db, &["pgfleet-a", "pgfleet-b", "pgfleet-c"]);
    within_a_fifth_of_a_third(&counts);
    println!("three instances: {counts:?}");

    // Frozen, continued: it takes its share back.
    freeze_then_continue(&db, &c, "pgfleet-c", "");
    let counts = settled(&db, &["pgfleet-a", "pgfleet-b", "pgfleet-c"]);
    within_a_fifth_of_a_third(&counts);

    // Killed: its session ends with it, and the others take its schemas.
    kill(&db, &mut b, "pgfleet-b", "");
    let counts = settled(&db, &["pgfleet-a", "pgfleet-c"]);
    println!("two instances: {counts:?}");

    let committed = ticker.stop();
    thread::sleep(Duration::from_secs(2));
    check_nothing_lost(&db, committed);
    check_records(&db, 3.0);
    for pgfleet in [&a, &c] {
        pgfleet.assert_no_event("worker_failed");
    }
}

#[test]
fn a_cut_coordination_session_stops_the_instance_and_the_others_take_over() {
    let _serial = serial();
    let db = fleet_database();
    // c's coordination session (control.url) goes through a proxy; its
    // pool does not.
    let proxy = Proxy::start(db.port, Mode::Forward);
    let ticker = Ticker::start(&db);
    let _a = instance(&db, "pgfleet-a", &[]);
    let _b = instance(&db, "pgfleet-b", &[]);
    let c = instance(
        &db,
        "pgfleet-c",
        &[("PGFLEET__CONTROL__URL", &proxy.url(&db.name))],
    );
    settled(&db, &["pgfleet-a", "pgfleet-b", "pgfleet-c"]);

    let cut_off = share_of(&db, "pgfleet-c");
    let mark = c.mark();
    let cut_at = now();
    proxy.set_mode(Mode::Stall);
    let took = takeover(&db, &cut_off, "pgfleet-c", cut_at);
    // Trust ends two thirds of the lease (2 s) after the last answered
    // ping was sent: no fold of c's may begin later than that (plus the
    // moment between the worker's check and the server's transaction).
    let last_own_fold = folds(&db)
        .into_values()
        .flatten()
        .filter(|f| f.app == "pgfleet-c")
        .map(|f| f.xact - cut_at)
        .fold(f64::MIN, f64::max);
    println!(
        "cut: {} schemas taken over within {took:.2} s; its last fold began {last_own_fold:.2} s after the cut",
        cut_off.len()
    );
    assert!(took <= TAKEOVER, "took {took:.2} s");
    assert!(
        last_own_fold <= 2.25,
        "a fold began {last_own_fold:.2} s after the cut"
    );
    c.wait_for_from(mark, "coordination_lost", |e| {
        e["event"] == "coordination_lost"
    });

    // The network back: it rejoins and takes a share again.
    thread::sleep(Duration::from_secs(3));
    proxy.set_mode(Mode::Forward);
    proxy.cut_all();
    settled(&db, &["pgfleet-a", "pgfleet-b", "pgfleet-c"]);

    let committed = ticker.stop();
    thread::sleep(Duration::from_secs(2));
    check_nothing_lost(&db, committed);
    check_records(&db, 3.0);
}

#[test]
fn a_rolling_restart_leaves_no_schema_unfolded_for_two_seconds() {
    let _serial = serial();
    let db = fleet_database();
    let ticker = Ticker::start(&db);
    let mut running = vec![
        instance(&db, "pgfleet-a", &[]),
        instance(&db, "pgfleet-b", &[]),
        instance(&db, "pgfleet-c", &[]),
    ];
    let mut apps = vec![
        "pgfleet-a".to_owned(),
        "pgfleet-b".to_owned(),
        "pgfleet-c".to_owned(),
    ];
    settled(&db, &names(&apps));
    let began = now();
    // What each instance said of its coordination, for a failure's report.
    let mut said: Vec<String> = Vec::new();
    let coordination_lines = |pgfleet: &Pgfleet, name: &str| -> Vec<String> {
        pgfleet
            .all_events()
            .iter()
            .map(|e| {
                format!(
                    "{} {name}: {} {} {}",
                    e["ts"], e["event"], e["msg"], e["schema"]
                )
            })
            .collect()
    };
    for n in 0..3 {
        // As Kubernetes does it: SIGTERM, wait for the exit, start the
        // new one (a new name in the records, to tell them apart).
        let mut old = running.remove(0);
        old.signal(libc::SIGTERM);
        let status = old.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "{status:?}");
        assert!(
            !old.events("coordination_left").is_empty(),
            "it left the coordination"
        );
        said.extend(coordination_lines(&old, &apps[0]));
        let name = format!("{}-2", apps[0]);
        running.push(instance(&db, &name, &[]));
        apps.remove(0);
        apps.push(name);
        settled(&db, &names(&apps));
        println!("restarted instance {}", n + 1);
    }
    let ended = now();
    for (pgfleet, name) in running.iter().zip(&apps) {
        said.extend(coordination_lines(pgfleet, name));
    }
    said.sort();

    let committed = ticker.stop();
    thread::sleep(Duration::from_secs(2));
    let mut worst = (0.0, String::new());
    for (schema, folds) in folds(&db) {
        let times: Vec<f64> = folds
            .iter()
            .map(|f| f.at)
            .filter(|at| (began - 1.0..=ended).contains(at))
            .collect();
        for pair in times.windows(2) {
            if pair[1] - pair[0] > worst.0 {
                worst = (pair[1] - pair[0], schema.clone());
            }
        }
    }
    println!(
        "rolling restart: longest gap between two folds of a schema {:.2} s ({})",
        worst.0, worst.1
    );
    if worst.0 > 2.0 {
        let runs: Vec<(String, f64)> = folds(&db)
            .remove(&worst.1)
            .unwrap_or_default()
            .into_iter()
            .map(|f| (f.app, f.at))
            .collect();
        let dump = std::env::temp_dir().join("pgfleet-rolling-restart.log");
        let _ = std::fs::write(&dump, said.join("\n"));
        panic!(
            "{} went {:.2} s without a fold (every line the instances logged: {}); its folds: {runs:?}\nwhat the instances said:\n{}",
            worst.1,
            worst.0,
            dump.display(),
            said.iter()
                .filter(|line| {
                    line.contains(": coordination") || line.ends_with(&format!("\"{}\"", worst.1))
                })
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    check_nothing_lost(&db, committed);
    check_records(&db, 3.0);
}

/// Everything through PgBouncer in session mode (the pooler the
/// coordination session may go through): the session's locks live on the
/// server connection PgBouncer lends it for the client's lifetime. Killed,
/// the instance's client connections close and PgBouncer resets their
/// server connections (`DISCARD ALL`, which lets every advisory lock go);
/// frozen, the server ends the idle session (`idle_session_timeout`) and
/// PgBouncer closes the client's. Either way the others take over within
/// 5 s, and a second start through the same PgBouncer joins again and
/// takes a share back.
#[test]
fn through_a_session_pgbouncer_a_frozen_or_killed_instances_schemas_are_taken_over() {
    use crate::support::pgbouncer::PgBouncer;
    let _serial = serial();
    let db = fleet_database();
    let bouncer = PgBouncer::start(db.port, "session", "");
    let through = bouncer.url(&db.name);
    let env = [("PGFLEET__DATABASE__URL", through.as_str())];
    let ticker = Ticker::start(&db);
    let _a = instance(&db, "pgfleet-a", &env);
    let mut b = instance(&db, "pgfleet-b", &env);
    let c = instance(&db, "pgfleet-c", &env);
    let counts = settled(&db, &["pgfleet-a", "pgfleet-b", "pgfleet-c"]);
    within_a_fifth_of_a_third(&counts);
    println!("session PgBouncer, three instances: {counts:?}");

    freeze_then_continue(&db, &c, "pgfleet-c", "session PgBouncer, ");
    settled(&db, &["pgfleet-a", "pgfleet-b", "pgfleet-c"]);

    kill(&db, &mut b, "pgfleet-b", "session PgBouncer, ");
    settled(&db, &["pgfleet-a", "pgfleet-c"]);

    // A second start through the same PgBouncer, on server connections
    // the killed one used: nothing of its old session is left on them.
    let _b2 = instance(&db, "pgfleet-b-2", &env);
    let counts = settled(&db, &["pgfleet-a", "pgfleet-b-2", "pgfleet-c"]);
    within_a_fifth_of_a_third(&counts);
    println!("session PgBouncer, after a second start: {counts:?}");

    let committed = ticker.stop();
    thread::sleep(Duration::from_secs(2));
    check_nothing_lost(&db, committed);
    check_records(&db, 3.0);
}

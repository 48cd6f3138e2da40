//! The invariant (SPEC §2): total + remaining deltas == every committed
//! delta, with pgbench writers running while pgfleet folds, is reloaded
//! over and over, and is stopped and started again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::support::cluster::{cluster, TestDb};
use crate::support::pgfleet::{execute, Pgfleet};

const SCHEMAS: usize = 4;
const CLIENTS: usize = 4;
const TRANSACTIONS_PER_CLIENT: usize = 15_000;

/// (sum of totals, sum of remaining deltas) over every schema, read in one
/// statement: one snapshot, or a fold between two reads would move deltas
/// out of sight.
fn counted(db: &TestDb) -> (i64, i64) {
    let union: Vec<String> = (1..=SCHEMAS)
        .map(|n| format!("SELECT type, value FROM schema{n}.counted"))
        .collect();
    let sql = format!(
        "SELECT coalesce(sum(value) FILTER (WHERE type = 'total'), 0)::bigint, \
                coalesce(sum(value) FILTER (WHERE type = 'delta'), 0)::bigint FROM ({}) AS all_rows",
        union.join(" UNION ALL ")
    );
    let row = db.client().query_one(&sql, &[]).expect("count");
    (row.get(0), row.get(1))
}

/// Parses pgbench's "number of transactions actually processed: N/M".
fn committed(pgbench_output: &str) -> i64 {
    let line = pgbench_output
        .lines()
        .find(|l| l.starts_with("number of transactions actually processed"))
        .unwrap_or_else(|| panic!("no transaction count in:\n{pgbench_output}"));
    let count = line
        .rsplit(':')
        .next()
        .and_then(|n| n.trim().split('/').next())
        .expect("N/M");
    count.parse().unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[test]
fn nothing_is_lost_under_writers_reloads_and_restarts() {
    let db = cluster().create_database();
    let config = |naptime: &str, app: &str| {
        format!("naptime: {naptime}\nworkers:\n  total: {SCHEMAS}\n  vacuum_after: 2000\ndatabase:\n  application_name: {app}\n")
    };
    let first = Pgfleet::start(&db, &config("50ms", "pgfleet"));
    for n in 1..=SCHEMAS {
        first.wait_schema_event("worker_started", &format!("schema{n}"));
        execute(
            &db,
            &format!("INSERT INTO schema{n}.counted VALUES ('total', 0)"),
        );
    }

    let scripts = tempfile::tempdir().expect("script dir");
    let mut args: Vec<String> = Vec::new();
    for n in 1..=SCHEMAS {
        let path = scripts.path().join(format!("schema{n}.sql"));
        std::fs::write(
            &path,
            format!("INSERT INTO schema{n}.counted VALUES ('delta', 1);\n"),
        )
        .expect("script");
        args.push("-f".into());
        args.push(format!("{}@1", path.display()));
    }
    args.extend(
        [
            "-n",
            "-c",
            &CLIENTS.to_string(),
            "-j",
            "2",
            "-t",
            &TRANSACTIONS_PER_CLIENT.to_string(),
        ]
        .map(String::from),
    );

    // While the writers run: reload every 100 ms, alternating naptime and
    // the connection pool, and replace the whole service once midway.
    let writing = Arc::new(AtomicBool::new(true));
    let reloader = {
        let writing = Arc::clone(&writing);
        let db = db.clone();
        thread::spawn(move || {
            let mut current = first;
            let mut reloads = 0;
            while writing.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(100));
                reloads += 1;
                if reloads == 15 {
                    let status = current.stop();
                    assert_eq!(status.code(), Some(0), "stopped mid-write");
                    current = Pgfleet::start(&db, &config("50ms", "pgfleet"));
                    for n in 1..=SCHEMAS {
                        current.wait_schema_event("worker_started", &format!("schema{n}"));
                    }
                    continue;
                }
                let (naptime, app) = if reloads % 2 == 0 {
                    ("50ms", "pgfleet")
                } else {
                    ("120ms", "pgfleet-b")
                };
                current.reload(&config(naptime, app));
            }
            (current, reloads)
        })
    };
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = db.pgbench(&arg_refs);
    writing.store(false, Ordering::Relaxed);
    let (mut pgfleet, reloads) = reloader.join().expect("reloader thread");
    assert!(
        reloads > 15,
        "only {reloads} reloads while writing: the service was not replaced midway"
    );

    let committed = committed(&output);
    assert_eq!(
        committed,
        (CLIENTS * TRANSACTIONS_PER_CLIENT) as i64,
        "{output}"
    );
    let (total, remaining) = counted(&db);
    assert_eq!(
        total + remaining,
        committed,
        "right after the writers stopped"
    );
    if let Err(counts) = crate::support::pgfleet::within(|| {
        let counts = counted(&db);
        if counts == (committed, 0) {
            Ok(())
        } else {
            Err(counts)
        }
    }) {
        panic!(
            "not every delta folded: {counts:?}; log:\n{}",
            pgfleet.lines().join("\n")
        );
    }
    assert_eq!(pgfleet.stop().code(), Some(0));
    assert_eq!(counted(&db), (committed, 0));
    pgfleet.assert_no_event("worker_failed");
}

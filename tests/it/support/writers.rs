//! pgbench writers whose committed deltas can be counted exactly, even
//! across database crashes.
//!
//! pgbench's own count misses a transaction that committed while its
//! acknowledgement was lost in a crash. So each transaction also inserts a
//! row into `public.audit`, atomically with its delta: `count(audit)` is
//! exactly the number of committed deltas, and the invariant to check is
//! `total + remaining deltas == count(audit)` (deltas are all 1).

#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::cluster::TestDb;

pub struct Writers {
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
    _scripts: tempfile::TempDir,
}

impl Writers {
    /// Starts pgbench writing deltas of 1 into `schemas` (which must exist),
    /// over and over, until `stop`. A pgbench that dies with the database is
    /// started again.
    pub fn start(db: &TestDb, schemas: &[String]) -> Self {
        db.client()
            .batch_execute("CREATE TABLE IF NOT EXISTS public.audit (schema text)")
            .expect("audit table");
        let scripts = tempfile::tempdir().expect("script dir");
        let mut args: Vec<String> = Vec::new();
        for (n, schema) in schemas.iter().enumerate() {
            let path = scripts.path().join(format!("writer{n}.sql"));
            let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
            std::fs::write(
                &path,
                format!(
                    "BEGIN;\nINSERT INTO {quoted}.counted VALUES ('delta', 1);\n\
                     INSERT INTO public.audit VALUES ('{}');\nCOMMIT;\n",
                    schema.replace('\'', "''")
                ),
            )
            .expect("write script");
            args.extend(["-f".to_owned(), format!("{}@1", path.display())]);
        }
        let pgbench = db.pgbench_path();
        let (port, name) = (db.port.to_string(), db.name.clone());
        let running = Arc::new(AtomicBool::new(true));
        let still_running = Arc::clone(&running);
        let thread = thread::spawn(move || {
            let mut runs = 0;
            while still_running.load(Ordering::SeqCst) {
                runs += 1;
                // The load needs no TLS (the cluster offers it, and libpq's
                // default `prefer` would take it at half the rate).
                let status = Command::new(&pgbench)
                    .env("PGSSLMODE", "disable")
                    .args([
                        "-n",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port,
                        "-U",
                        "postgres",
                        "-c",
                        "2",
                        "-j",
                        "2",
                        "-T",
                        "1",
                    ])
                    .args(&args)
                    .arg(&name)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                if status.map_or(true, |s| !s.success()) {
                    thread::sleep(Duration::from_millis(50));
                }
            }
            runs
        });
        Writers {
            running,
            thread: Some(thread),
            _scripts: scripts,
        }
    }

    /// Stops the writers and returns how many pgbench runs there were.
    pub fn stop(mut self) -> usize {
        self.running.store(false, Ordering::SeqCst);
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("writer thread"))
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
    }
}

/// (sum of totals + remaining deltas, committed deltas), in one snapshot.
pub fn ledger(db: &TestDb, schemas: &[String]) -> (i64, i64) {
    let union: Vec<String> = schemas
        .iter()
        .map(|s| format!("SELECT value FROM \"{}\".counted", s.replace('"', "\"\"")))
        .collect();
    let sql = format!(
        "SELECT (SELECT coalesce(sum(value), 0)::bigint FROM ({}) AS rows), (SELECT count(*) FROM public.audit)",
        union.join(" UNION ALL ")
    );
    let row = db.client().query_one(&sql, &[]).expect("ledger");
    (row.get(0), row.get(1))
}

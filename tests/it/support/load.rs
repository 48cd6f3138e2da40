//! Load beside the database, for the isolation tests and benchmarks: busy
//! processes that take the CPU (a loaded machine), and pgbench writers
//! that insert deltas into many schemas at a steady rate.
//!
//! Both are killed when dropped, by the process id this code started.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::cluster::TestDb;

/// `n` processes that spin on the CPU (`sh -c 'while :; do :; done'`), as
/// other services of a busy machine would: the server, the pooler and
/// pgfleet get less of it, and each step takes longer.
pub struct CpuLoad {
    children: Vec<Child>,
}

impl CpuLoad {
    pub fn start(n: usize) -> Self {
        let children = (0..n)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start a busy loop")
            })
            .collect();
        CpuLoad { children }
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// pgbench inserting deltas of 1 into `schemas` (which must exist), each
/// transaction into one schema drawn at random, at `rate` transactions a
/// second in all (`-R`), on a direct connection to the server, until
/// dropped.
pub struct SpreadWriters {
    child: Child,
    _scripts: tempfile::TempDir,
}

impl SpreadWriters {
    pub fn start(db: &TestDb, schemas: &[String], clients: usize, rate: u32) -> Self {
        let scripts = tempfile::tempdir().expect("script dir");
        let mut args: Vec<String> = Vec::new();
        for (n, schema) in schemas.iter().enumerate() {
            let path = scripts.path().join(format!("insert{n}.sql"));
            let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
            std::fs::write(
                &path,
                format!("INSERT INTO {quoted}.counted VALUES ('delta', 1);\n"),
            )
            .expect("write script");
            args.extend(["-f".to_owned(), format!("{}@1", Path::new(&path).display())]);
        }
        // One pgbench thread per core of a 2-core machine at most.
        let threads = clients.clamp(1, 2).to_string();
        let clients = clients.to_string();
        let child = Command::new(db.pgbench_path())
            // The load needs no TLS (see `writers`).
            .env("PGSSLMODE", "disable")
            .args(["-n", "-h", "127.0.0.1", "-p", &db.port.to_string()])
            .args([
                "-U", "postgres", "-M", "prepared", "-c", &clients, "-j", &threads,
            ])
            .args(["-R", &rate.to_string(), "-T", "3600"])
            .args(&args)
            .arg(&db.name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgbench");
        SpreadWriters {
            child,
            _scripts: scripts,
        }
    }
}

impl Drop for SpreadWriters {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

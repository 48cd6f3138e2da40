//! Runs the real `pgfleet` binary for a test and reads its JSON log.
//!
//! Tests wait on conditions (an event in the log, a row in the table), never
//! on fixed sleeps: [`Pgfleet::wait_for`] and [`eventually`] poll until the
//! condition holds or a generous deadline passes, and a failure prints the
//! whole log of the run.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cluster::TestDb;

/// Long enough for a loaded CI machine; conditions usually hold in
/// milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pgfleet")
}

/// A config file in a temp directory that lives as long as the value.
pub struct ConfigFile {
    dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn new(yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for a config file");
        let path = dir.path().join("pgfleet.yaml");
        let file = ConfigFile { dir, path };
        file.write(yaml);
        file
    }

    pub fn write(&self, yaml: &str) {
        std::fs::write(&self.path, yaml).expect("write config file");
    }
}

/// Runs `pgfleet ARGS` to completion (for --check, --print-config, bad
/// configs), with `env` added and no inherited PGFLEET__ variables.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    run_until_exit(args, env).0
}

/// [`run`], and how long it took.
pub fn run_until_exit(args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let mut command = Command::new(binary());
    command.args(args);
    clear_pgfleet_env(&mut command);
    command.envs(env.iter().copied());
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgfleet");
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().expect("poll pgfleet").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pgfleet {args:?} did not exit within {PATIENCE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("pgfleet output");
    (output, started.elapsed())
}

/// pgfleet reads libpq's PG* variables too: a test sets the ones it means,
/// and none leak in from the machine running the tests.
fn clear_pgfleet_env(command: &mut Command) {
    for (name, _) in std::env::vars() {
        if name.starts_with("PGFLEET") || (name.starts_with("PG") && name != "PG_BINDIR") {
            command.env_remove(name);
        }
    }
}

#[derive(Default)]
struct Log {
    lines: Vec<String>,
    events: Vec<Value>,
    closed: bool,
}

/// A running pgfleet service, logging JSON to a pipe the test reads.
pub struct Pgfleet {
    child: Child,
    log: Arc<(Mutex<Log>, Condvar)>,
    /// The test's own config file, layered over [`BASE_YAML`].
    pub config: ConfigFile,
    _base: ConfigFile,
}

/// The first config layer of every test run: fast ticks and restarts, and
/// no HTTP (an empty `PGFLEET__HTTP__LISTEN` would be ignored, as every
/// empty variable is, and parallel runs would race for port 8187). A test
/// that wants HTTP sets `PGFLEET__HTTP__LISTEN=127.0.0.1:0`.
pub const BASE_YAML: &str = "naptime: 200ms\nrestart:\n  delay: 100ms\n  jitter: 0.0\nshutdown:\n  grace: 5s\nhttp:\n  listen: \"\"\n";

impl Pgfleet {
    /// Starts pgfleet on `db` with `yaml` as --config file over
    /// [`BASE_YAML`] (JSON logs, the database URL from the environment).
    pub fn start(db: &TestDb, yaml: &str) -> Self {
        Self::start_with(db, yaml, &[])
    }

    pub fn start_with(db: &TestDb, yaml: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with_args(db, yaml, env, &[])
    }

    /// [`Pgfleet::start_with`], with `args` after the `--config` files.
    pub fn start_with_args(db: &TestDb, yaml: &str, env: &[(&str, &str)], args: &[&str]) -> Self {
        let base = ConfigFile::new(BASE_YAML);
        let config = ConfigFile::new(yaml);
        let url = db.url();
        let mut command = Command::new(binary());
        command
            .arg("--config")
            .arg(&base.path)
            .arg("--config")
            .arg(&config.path)
            .args(args);
        clear_pgfleet_env(&mut command);
        command
            .env("PGFLEET__DATABASE__URL", &url)
            .env("PGFLEET__LOG__FORMAT", "json")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start pgfleet");
        let log = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let reader_log = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (lock, changed) = &*reader_log;
                let mut log = lock.lock().expect("log lock");
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    log.events.push(event);
                }
                log.lines.push(line);
                changed.notify_all();
            }
            let (lock, changed) = &*reader_log;
            lock.lock().expect("log lock").closed = true;
            changed.notify_all();
        });
        let stdout_log = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                stdout_log
                    .0
                    .lock()
                    .expect("log lock")
                    .lines
                    .push(format!("stdout: {line}"));
            }
        });
        Pgfleet {
            child,
            log,
            config,
            _base: base,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// Rewrites the config file and sends SIGHUP.
    pub fn reload(&self, yaml: &str) {
        self.config.write(yaml);
        self.signal(libc::SIGHUP);
    }

    /// Waits for the first event (from `skip` on) matching `matches`, and
    /// returns it with its index.
    pub fn wait_for_from(
        &self,
        skip: usize,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> (usize, Value) {
        self.wait_for_from_within(skip, what, matches, PATIENCE)
    }

    /// [`Pgfleet::wait_for`], for up to `patience`.
    pub fn wait_for_within(
        &self,
        what: &str,
        matches: impl Fn(&Value) -> bool,
        patience: Duration,
    ) -> Value {
        self.wait_for_from_within(0, what, matches, patience).1
    }

    fn wait_for_from_within(
        &self,
        skip: usize,
        what: &str,
        matches: impl Fn(&Value) -> bool,
        patience: Duration,
    ) -> (usize, Value) {
        let deadline = Instant::now() + patience;
        let (lock, changed) = &*self.log;
        let mut log = lock.lock().expect("log lock");
        loop {
            if let Some((index, event)) = log
                .events
                .iter()
                .enumerate()
                .skip(skip)
                .find(|(_, e)| matches(e))
            {
                return (index, event.clone());
            }
            let now = Instant::now();
            if log.closed || now > deadline {
                let why = if log.closed {
                    "pgfleet exited"
                } else {
                    "timed out"
                };
                panic!("{why} waiting for {what}; log:\n{}", log.lines.join("\n"));
            }
            log = changed
                .wait_timeout(log, deadline - now)
                .expect("log lock")
                .0;
        }
    }

    pub fn wait_for(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_from(0, what, matches).1
    }

    /// Waits for an event by name, optionally for one schema.
    pub fn wait_event(&self, event: &str) -> Value {
        self.wait_for(event, |e| e["event"] == event)
    }

    pub fn wait_schema_event(&self, event: &str, schema: &str) -> Value {
        self.wait_for(&format!("{event} of {schema}"), |e| {
            e["event"] == event && e["schema"] == schema
        })
    }

    /// Waits for a `config_reloaded` whose `changes` name `change`.
    pub fn wait_reloaded_with(&self, change: &str) -> Value {
        self.wait_for(&format!("a reload with {change:?}"), |e| {
            e["event"] == "config_reloaded"
                && e["changes"].as_str().is_some_and(|c| c.contains(change))
        })
    }

    /// How many events have been logged so far (a mark for `wait_for_from`).
    pub fn mark(&self) -> usize {
        self.log.0.lock().expect("log lock").events.len()
    }

    pub fn events(&self, event: &str) -> Vec<Value> {
        let log = self.log.0.lock().expect("log lock");
        log.events
            .iter()
            .filter(|e| e["event"] == event)
            .cloned()
            .collect()
    }

    /// Panics, listing them, if any `event` was logged.
    pub fn assert_no_event(&self, event: &str) {
        let logged = self.events(event);
        assert!(logged.is_empty(), "{event}: {logged:?}");
    }

    pub fn all_events(&self) -> Vec<Value> {
        self.log.0.lock().expect("log lock").events.clone()
    }

    pub fn lines(&self) -> Vec<String> {
        self.log.0.lock().expect("log lock").lines.clone()
    }

    /// Waits for the process to exit and for its log to be read to the end.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll pgfleet") {
                let (lock, changed) = &*self.log;
                let mut log = lock.lock().expect("log lock");
                while !log.closed {
                    log = changed
                        .wait_timeout(log, Duration::from_secs(5))
                        .expect("log lock")
                        .0;
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "pgfleet did not exit within {within:?}; log:\n{}",
                    self.lines().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Like [`eventually`], with this run's log in the panic message.
    pub fn eventually(&self, what: &str, mut condition: impl FnMut() -> bool) {
        if within(|| if condition() { Ok(()) } else { Err(()) }).is_err() {
            panic!(
                "timed out waiting until {what}; log:\n{}",
                self.lines().join("\n")
            );
        }
    }

    /// SIGTERM, then the exit status, then the log.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(PATIENCE)
    }
}

impl Drop for Pgfleet {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `schema1` .. `schemaN`, as `workers.total: N` names them.
pub fn schema_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("schema{i}")).collect()
}

/// Waits until every worker of `schemas` started, then gives each table a
/// total row of 0, so that deltas are folded.
pub fn ready(pgfleet: &Pgfleet, db: &TestDb, schemas: &[String]) {
    for schema in schemas {
        pgfleet.wait_schema_event("worker_started", schema);
        let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
        execute(
            db,
            &format!("INSERT INTO {quoted}.counted VALUES ('total', 0)"),
        );
    }
}

/// Polls `check` until it returns Ok, or returns its last Err after
/// PATIENCE, for a caller that wants to say more than `eventually` can.
pub fn within<E>(mut check: impl FnMut() -> Result<(), E>) -> Result<(), E> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => thread::sleep(Duration::from_millis(25)),
        }
    }
}

/// Polls `condition` until it holds; panics with `what` after PATIENCE.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(25));
    }
}

/// The one bigint the query returns.
pub fn scalar_i64(db: &TestDb, sql: &str) -> i64 {
    let mut client = db.client();
    let row = client
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.get::<_, i64>(0)
}

pub fn execute(db: &TestDb, sql: &str) {
    db.client()
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Seconds within the day of a log line's `ts` (`2026-11-26T21:59:04.454Z`).
pub fn seconds_of(ts: &str) -> f64 {
    let time = ts
        .split('T')
        .nth(1)
        .unwrap_or_default()
        .trim_end_matches('Z');
    time.split(':')
        .map(|part| part.parse::<f64>().unwrap_or(0.0))
        .fold(0.0, |total, part| total * 60.0 + part)
}

//! Operating it (SPEC §9): systemd's `Type=notify` protocol, spoken to a
//! real datagram socket given as `NOTIFY_SOCKET`, and `--watch-config`.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::support::cluster::cluster;
use crate::support::pgfleet::{ready, schema_names, Pgfleet, PATIENCE};

/// Collects what pgfleet tells "systemd".
pub(crate) struct FakeSystemd {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    pub(crate) path: String,
    seen: Vec<String>,
}

impl FakeSystemd {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        FakeSystemd {
            socket,
            path: path.to_str().expect("utf-8").to_owned(),
            _dir: dir,
            seen: Vec::new(),
        }
    }

    /// How many datagrams have come so far (a mark for `wait_for_from`).
    pub(crate) fn mark(&self) -> usize {
        self.seen.len()
    }

    /// Waits for a datagram, from the `from`th on, holding `line`.
    fn wait_for_from(&mut self, from: usize, line: &str) -> String {
        self.wait_for_line_from(from, line, |l| l == line)
    }

    /// Waits for a datagram, from the `from`th on, with a line that
    /// `wanted` (`what` says which, if none comes).
    pub(crate) fn wait_for_line_from(
        &mut self,
        from: usize,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut buffer = [0u8; 4096];
        loop {
            if let Some(found) = self.seen[from.min(self.seen.len())..]
                .iter()
                .find(|d| d.lines().any(&wanted))
            {
                return found.clone();
            }
            assert!(Instant::now() < deadline, "no {what:?} in {:?}", self.seen);
            if let Ok(n) = self.socket.recv(&mut buffer) {
                self.seen
                    .push(String::from_utf8_lossy(&buffer[..n]).into_owned());
            }
        }
    }

    fn wait_for(&mut self, line: &str) -> String {
        self.wait_for_from(0, line)
    }
}

#[test]
fn systemd_hears_ready_reloading_stopping_status_and_the_watchdog() {
    let db = cluster().create_database();
    let mut systemd = FakeSystemd::new();
    let path = systemd.path.clone();
    let mut pgfleet = Pgfleet::start_with(
        &db,
        "workers:\n  total: 2\n",
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "1000000")],
    );
    let ready_note = systemd.wait_for("READY=1");
    assert!(
        ready_note.contains("STATUS=folding 2 schemas, 0 failing"),
        "{ready_note:?}"
    );
    // Ready means the workers run: both had initialised their schemas
    // (their lines may still be on the way through the log).
    for schema in schema_names(2) {
        pgfleet.wait_schema_event("worker_started", &schema);
    }
    // WatchdogSec=1s: a WATCHDOG=1 every half second or so, from the
    // Supervisor's heartbeat (once a second here, its own interval).
    let watchdog_from = Instant::now();
    for _ in 0..3 {
        let mark = systemd.mark();
        systemd.wait_for_from(mark, "WATCHDOG=1");
    }
    assert!(watchdog_from.elapsed() < Duration::from_secs(5));

    pgfleet.reload("workers:\n  total: 1\n");
    let mark = systemd.mark();
    let reloading = systemd.wait_for_from(mark, "RELOADING=1");
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "systemd 253+ needs MONOTONIC_USEC with RELOADING=1: {reloading:?}"
    );
    let after = systemd.wait_for_from(mark, "READY=1");
    assert!(after.contains("STATUS=configuration reloaded"), "{after:?}");

    let mark = systemd.mark();
    pgfleet.signal(libc::SIGTERM);
    systemd.wait_for_from(mark, "STOPPING=1");
    assert!(pgfleet.wait_exit(PATIENCE).success());
}

#[test]
fn watch_config_reloads_when_a_file_changes() {
    let db = cluster().create_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("password");
    std::fs::write(&secret, "first\n").expect("write secret");
    let yaml = |total: u32| {
        format!(
            "workers:\n  total: {total}\ndatabase:\n  password_file: {}\n",
            secret.display()
        )
    };
    let pgfleet = Pgfleet::start_with_args(&db, &yaml(1), &[], &["--watch-config"]);
    ready(&pgfleet, &db, &schema_names(1));
    // An edit of the config file, no signal.
    pgfleet.config.write(&yaml(2));
    pgfleet.wait_schema_event("worker_started", "schema2");
    pgfleet.wait_reloaded_with("workers.total: 1 -> 2");
    // A rotated secret, as Kubernetes rotates one: a new file swapped in.
    let mark = pgfleet.mark();
    let rotated = dir.path().join("password.new");
    std::fs::write(&rotated, "second\n").expect("write");
    std::fs::rename(&rotated, &secret).expect("swap");
    let (_, again) = pgfleet.wait_for_from(mark, "a reload for the rotated secret", |e| {
        e["event"] == "config_reloaded"
    });
    assert!(
        again["changes"]
            .as_str()
            .is_some_and(|c| c.contains("password changed") && !c.contains("second")),
        "{again}"
    );
    // One change, one reload (the edit and the swap each made one).
    assert_eq!(pgfleet.events("config_reloaded").len(), 2);
}

//! A throwaway PostgreSQL cluster for the integration tests.
//!
//! All tests of this test binary run as threads of one process and share one
//! cluster, started on first use by [`cluster()`]. Each test isolates itself
//! by asking for its own database ([`Cluster::create_database`]), which is far
//! cheaper than an `initdb` per test.
//!
//! The cluster lives in a temporary directory (data directory, Unix socket,
//! server log) and is tuned for speed over durability (`fsync=off`, ...).
//!
//! Cleanup: a `static` is never dropped, and a killed test process runs no
//! destructors at all, so neither `Drop` nor `tempfile` can stop the server or
//! remove the directory. Instead, a small detached watchdog shell process is
//! started before anything else. It blocks reading a pipe whose only writer is
//! this test process; the kernel closes that pipe whenever this process ends
//! (normal exit, panic, `SIGKILL`), and then the watchdog runs
//! `pg_ctl stop -m immediate` and `rm -rf` on the temporary directory.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (as CI
//! does), every server-side program (`initdb`, `pg_ctl`, the watchdog) runs as
//! the `postgres` system user, and the temporary directory is owned by it.

// Tests use different subsets of this API; a test binary would otherwise warn
// about each helper that no test happens to call (and CI denies warnings).
#![allow(dead_code)]

use std::ffi::CString;
use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::openssl;
use super::tls::{self, Pki};

/// How many ports to try before giving up: a port found free can be taken by
/// another process before the server binds it.
const START_ATTEMPTS: u32 = 5;

/// Seconds `pg_ctl` waits for the server to start or stop.
const PG_CTL_TIMEOUT_SECS: &str = "60";

/// Name of the configuration file (inside the data directory) holding the
/// harness's settings; `postgresql.conf` includes it.
const HARNESS_CONF: &str = "pgfleet_test.conf";

/// The one cluster of this test process, started on first use.
///
/// Shared by all tests so the (slow) `initdb` and server start happen once per
/// test binary. If starting fails, every test calling this panics with the
/// same explanation instead of retrying the whole start.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(Cluster::start) {
        Ok(cluster) => cluster,
        Err(why) => panic!("the test PostgreSQL cluster could not be started:\n{why}"),
    }
}

/// A second cluster, for the tests that change which certificate the server
/// presents ([`Cluster::serve_certificate`]): one test at a time holds it,
/// so each sees its own certificate; the shared [`cluster()`] never changes
/// its own. Started on first use, like that one.
pub fn certificate_cluster() -> MutexGuard<'static, Cluster> {
    static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            Mutex::new(Cluster::start().unwrap_or_else(|why| {
                panic!("the second test PostgreSQL cluster could not be started:\n{why}")
            }))
        })
        .lock()
        // A test that failed while holding it left nothing half done that
        // the next one's serve_certificate does not redo.
        .unwrap_or_else(PoisonError::into_inner)
}

/// A running PostgreSQL server in a temporary directory, owned by this test
/// process and removed (by the watchdog) when the process ends. It speaks
/// TLS with certificates of its own (see `support::tls`).
pub struct Cluster {
    port: u16,
    pki: Pki,
    bindir: PathBuf,
    /// Inside the temporary directory, beside the Unix socket and the log.
    datadir: PathBuf,
    log_path: PathBuf,
    /// The user that server-side programs run as (`None`: the current user).
    run_as: Option<RunAs>,
    /// Write end of the watchdog's pipe. Never written to and never closed
    /// by us: the kernel closes it when this process ends, which is what
    /// wakes the watchdog up.
    _watchdog: ChildStdin,
}

/// A uid/gid pair to run server-side programs as.
#[derive(Clone, Copy, Debug)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl Cluster {
    /// TCP port the server listens on (on 127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Directory of the server binaries (`pg_ctl`, `pgbench`, ...), so tests
    /// can run other PostgreSQL tools of the same version.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The data directory, e.g. for fault tests that inspect or damage it.
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// The certificates the server and its clients use.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The Unix socket directory (also the temporary directory's root).
    pub fn socket_dir(&self) -> &Path {
        self.datadir.parent().unwrap_or(Path::new("/tmp"))
    }

    /// The server log, e.g. to show it when a test fails.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// A fresh, empty database with a unique name (test_1, test_2, ... plus
    /// the process id to be safe), so that parallel tests don't see each
    /// other's tables.
    ///
    /// Retries transient failures: `CREATE DATABASE` fails with "source
    /// database template1 is being accessed by other users" under
    /// concurrency, and the server may be briefly down while a fault test
    /// restarts it.
    pub fn create_database(&self) -> TestDb {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{n}_{}", std::process::id());
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let error = match self.try_create_database(&name) {
                Ok(()) => break,
                Err(error) => error,
            };
            let code = error.code();
            // A previous attempt may have succeeded with its reply lost to a
            // dropped connection; names are unique within this fresh cluster,
            // so "already exists" can only mean that.
            if attempt > 1 && code == Some(&postgres::error::SqlState::DUPLICATE_DATABASE) {
                break;
            }
            let transient = code.is_none() // connection-level: server down or restarting
                || code == Some(&postgres::error::SqlState::OBJECT_IN_USE)
                || code == Some(&postgres::error::SqlState::CANNOT_CONNECT_NOW)
                || code == Some(&postgres::error::SqlState::ADMIN_SHUTDOWN)
                || code == Some(&postgres::error::SqlState::TOO_MANY_CONNECTIONS);
            if !transient || Instant::now() >= deadline {
                panic!(
                    "CREATE DATABASE \"{name}\" on port {} failed (attempt {attempt}): {error:?}",
                    self.port
                );
            }
            sleep(Duration::from_millis(50 * u64::from(attempt.min(10))));
        }
        TestDb {
            name,
            port: self.port,
        }
    }

    fn try_create_database(&self, name: &str) -> Result<(), postgres::Error> {
        // A fresh admin connection per call: a cached one would be broken
        // after a fault test restarts the server.
        let mut admin = postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(10))
            .connect(postgres::NoTls)?;
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\""))
    }

    /// Runs `pg_ctl -D <datadir> -l <log> <args>` as the user owning the
    /// cluster, e.g. `&["stop", "-m", "immediate"]` or `&["restart"]` in
    /// fault tests. Returns its output whatever its exit status.
    ///
    /// `-l` is always passed so that a server (re)started through here logs
    /// to the log file: without it the server would inherit pg_ctl's stdout,
    /// and collecting the output would hang for as long as the server runs.
    pub fn pg_ctl(&self, args: &[&str]) -> Output {
        run_pg_ctl(
            &self.bindir,
            &self.datadir,
            &self.log_path,
            self.run_as,
            args,
        )
    }

    /// Makes the server present `cert` (a PEM file, the server's certificate
    /// then any intermediates) with `key`, and returns once a new connection
    /// gets it: copies both into the cluster's directory (owned by the
    /// server's user, the key 0600, as PostgreSQL demands), points
    /// `ssl_cert_file` and `ssl_key_file` at them and reloads (PostgreSQL
    /// reloads its TLS files on SIGHUP). Panics if the server keeps showing
    /// another certificate (it keeps the old files when the new ones do not
    /// load: see its log).
    pub fn serve_certificate(&self, cert: &Path, key: &Path) {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let served_cert = self.pki.dir.join(format!("served-{n}.crt"));
        let served_key = self.pki.dir.join(format!("served-{n}.key"));
        for (from, to, mode) in [(cert, &served_cert, 0o644), (key, &served_key, 0o600)] {
            fs::copy(from, to)
                .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
            fs::set_permissions(to, fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", to.display()));
            if let Some(user) = self.run_as {
                chown_recursive(to, user).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        write_harness_conf(
            &self.datadir,
            self.socket_dir(),
            (&served_cert, &served_key, &self.pki.ca_cert),
            self.port,
            self.run_as,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let reload = self.pg_ctl(&["reload"]);
        assert!(
            reload.status.success(),
            "pg_ctl reload: {}",
            String::from_utf8_lossy(&reload.stderr)
        );
        let wanted = fs::read_to_string(cert)
            .ok()
            .and_then(|text| openssl::first_pem(&text))
            .unwrap_or_else(|| panic!("no PEM certificate in {}", cert.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let presented = openssl::presented_certificate(self.port);
            if presented.as_deref() == Some(wanted.as_str()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server at port {} still presents another certificate than {} after a \
                 reload:\n{}",
                self.port,
                cert.display(),
                log_tail(&self.log_path, 0, 20)
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// Creates, configures and starts the cluster. Errors are explanations
    /// for a human, shown by [`cluster()`].
    fn start() -> Result<Cluster, String> {
        let bindir = find_bindir()?;
        let run_as = server_user()?;

        // As root, the directory must be reachable by `postgres`; TMPDIR might
        // be under /root, so use /tmp, which everyone can traverse.
        let parent = match run_as {
            Some(_) => PathBuf::from("/tmp"),
            None => std::env::temp_dir(),
        };
        let root = tempfile::Builder::new()
            .prefix("pgfleet-it-")
            .tempdir_in(&parent)
            .map_err(|e| {
                format!(
                    "creating a temporary directory in {}: {e}",
                    parent.display()
                )
            })?
            // From here on the watchdog removes the directory, not Drop
            // (which would not run for a static anyway).
            .keep();
        let datadir = root.join("data");
        let log_path = root.join("server.log");
        if let Some(user) = run_as {
            chown_recursive(&root, user)?;
        }

        // Started first, so that even a failed initdb or start is cleaned up.
        let watchdog = spawn_watchdog(&bindir, &datadir, &root, run_as)?;

        let initdb = server_command(&bindir.join("initdb"), &root, run_as)
            .arg("-D")
            .arg(&datadir)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .map_err(|e| format!("running {}/initdb: {e}", bindir.display()))?;
        if !initdb.status.success() {
            return Err(format!(
                "initdb failed ({}):\n{}{}",
                initdb.status,
                String::from_utf8_lossy(&initdb.stdout),
                String::from_utf8_lossy(&initdb.stderr)
            ));
        }
        append_include(&datadir)?;
        let tls_dir = root.join("tls");
        fs::create_dir(&tls_dir).map_err(|e| format!("creating {}: {e}", tls_dir.display()))?;
        let pki = Pki::create(&tls_dir)?;
        prepend_hba(&datadir)?;
        if let Some(user) = run_as {
            chown_recursive(&root, user)?;
        }

        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port()?;
            write_harness_conf(
                &datadir,
                &root,
                (&pki.server_cert, &pki.server_key, &pki.ca_cert),
                port,
                run_as,
            )?;
            // Only this attempt's part of the log goes into the error.
            let log_start = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
            let pg_ctl = |args: &[&str]| run_pg_ctl(&bindir, &datadir, &log_path, run_as, args);
            let start = pg_ctl(&["-w", "-t", PG_CTL_TIMEOUT_SECS, "start"]);
            let ready = if start.status.success() {
                wait_for_connection(port).and_then(|()| create_roles(port))
            } else {
                Err(format!(
                    "pg_ctl start failed ({}): {}{}",
                    start.status,
                    String::from_utf8_lossy(&start.stdout),
                    String::from_utf8_lossy(&start.stderr)
                ))
            };
            match ready {
                Ok(()) => {
                    return Ok(Cluster {
                        port,
                        pki,
                        bindir,
                        datadir,
                        log_path,
                        run_as,
                        _watchdog: watchdog,
                    })
                }
                Err(why) => {
                    // In case it is half up (e.g. timed out): make room for
                    // the next attempt.
                    pg_ctl(&["stop", "-m", "immediate"]);
                    failures.push(format!(
                        "attempt {attempt} (port {port}): {why}\n--- tail of {} ---\n{}",
                        log_path.display(),
                        log_tail(&log_path, log_start, 30)
                    ));
                }
            }
        }
        Err(format!(
            "the server did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        ))
    }
}

/// A database of the test cluster, owned by one test.
#[derive(Clone)]
pub struct TestDb {
    pub name: String,
    pub port: u16,
}

impl TestDb {
    /// "postgres://postgres@127.0.0.1:PORT/NAME": what the code under test is
    /// given to connect.
    pub fn url(&self) -> String {
        self.url_as("postgres")
    }

    /// The same database as `role` (which logs in without a password:
    /// the test cluster trusts local connections).
    pub fn url_as(&self, role: &str) -> String {
        format!("postgres://{role}@127.0.0.1:{}/{}", self.port, self.name)
    }

    /// A synchronous client (NoTls, user `postgres`) for the test's own
    /// setup and checks.
    pub fn client(&self) -> postgres::Client {
        let url = self.url();
        postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to {url}: {e:?}"))
    }

    /// The pgbench program: beside the server, or on PATH (some
    /// distributions ship it with the client packages only).
    pub fn pgbench_path(&self) -> PathBuf {
        let bundled = cluster().bindir().join("pgbench");
        if bundled.is_file() {
            bundled
        } else {
            PathBuf::from("pgbench")
        }
    }

    /// Runs pgbench against this database with the given extra args, returns
    /// stdout (panics with stderr on failure), to load the database the way
    /// a real workload would.
    ///
    /// pgbench is only a client, so it runs as the current user, even root.
    pub fn pgbench(&self, args: &[&str]) -> String {
        let program = self.pgbench_path();
        let port = self.port.to_string();
        let output = Command::new(&program)
            .env("PGSSLMODE", "disable")
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
            .args(args)
            .arg(&self.name)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            panic!(
                "pgbench {args:?} on {} failed ({}):\n--- stderr ---\n{}\n--- stdout ---\n{stdout}",
                self.name,
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        stdout
    }
}

/// Where the PostgreSQL server binaries are: `PG_BINDIR`, else
/// `pg_config --bindir` if it holds `initdb` (Debian's `pg_config` may come
/// from libpq-dev alone), else the newest `/usr/lib/postgresql/*/bin`.
fn find_bindir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").is_file() {
            Ok(dir)
        } else {
            Err(format!("PG_BINDIR={} holds no initdb", dir.display()))
        };
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("initdb").is_file() {
                return Ok(dir);
            }
        }
    }
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let bin = entry.path().join("bin");
            if !bin.join("initdb").is_file() {
                continue;
            }
            let version: Vec<u64> = entry
                .file_name()
                .to_string_lossy()
                .split('.')
                .map(|part| part.parse().unwrap_or(0))
                .collect();
            if best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    best.map(|(_, bin)| bin).ok_or_else(|| {
        "no PostgreSQL server binaries (initdb) found: install the PostgreSQL server \
         (Debian: `apt-get install postgresql postgresql-contrib`) or set PG_BINDIR \
         to the directory holding initdb, pg_ctl and postgres"
            .to_string()
    })
}

/// The user to run server-side programs as: PostgreSQL refuses to run as
/// root, so as root that is the `postgres` system user.
pub fn server_user() -> Result<Option<RunAs>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres").expect("a literal without NUL");
    // SAFETY: `name` is a valid C string; the returned record is read at once
    // (getpwnam is not reentrant, but this runs once, inside the OnceLock).
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(
            "running as root, but there is no `postgres` user to run the server as \
                    (PostgreSQL refuses to run as root): install the PostgreSQL server \
                    (Debian: `apt-get install postgresql`), create the user \
                    (`useradd --system postgres`) or run the tests as another user"
                .to_string(),
        );
    }
    // SAFETY: non-null, so it points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    if uid == 0 {
        return Err("the `postgres` user has uid 0; PostgreSQL refuses to run as root".to_string());
    }
    Ok(Some(RunAs { uid, gid }))
}

/// A command for a server-side program, run as `run_as` (if set), from a
/// directory that user can access, with no stdin.
fn server_command(program: &Path, cwd: &Path, run_as: Option<RunAs>) -> Command {
    let mut command = Command::new(program);
    command.current_dir(cwd).stdin(Stdio::null());
    if let Some(user) = run_as {
        // std drops root's supplementary groups too when the uid is set.
        command.uid(user.uid).gid(user.gid);
    }
    command
}

/// Gives `path` and everything below it to `user`.
fn chown_recursive(path: &Path, user: RunAs) -> Result<(), String> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))
        .map_err(|e| format!("chown {}: {e}", path.display()))?;
    let meta = fs::symlink_metadata(path).map_err(|e| format!("stat {}: {e}", path.display()))?;
    if meta.is_dir() {
        let entries = fs::read_dir(path).map_err(|e| format!("listing {}: {e}", path.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("listing {}: {e}", path.display()))?;
            chown_recursive(&entry.path(), user)?;
        }
    }
    Ok(())
}

/// Starts the detached watchdog that stops the server and removes `root`
/// once this process has ended, however it ends. Returns the write end of
/// its pipe, which must be kept open for the life of the process.
fn spawn_watchdog(
    bindir: &Path,
    datadir: &Path,
    root: &Path,
    run_as: Option<RunAs>,
) -> Result<ChildStdin, String> {
    // `cat` returns at end of file, i.e. when the last writer of the pipe is
    // gone. The write end is close-on-exec, so only this process holds it.
    // Paths are passed as arguments, not spliced into the script.
    const SCRIPT: &str = r#"cat >/dev/null
"$1" -D "$2" stop -m immediate -t 30 >/dev/null 2>&1
rm -rf "$3"
"#;
    let mut command = server_command(Path::new("/bin/sh"), Path::new("/"), run_as);
    command
        .arg("-c")
        .arg(SCRIPT)
        .arg("pgfleet-test-watchdog")
        .arg(bindir.join("pg_ctl"))
        .arg(datadir)
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a Ctrl-C to the test run must not kill the
        // watchdog before it has cleaned up.
        .process_group(0);
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting the cleanup watchdog (/bin/sh): {e}"))?;
    // The Child handle itself is dropped without waiting: the watchdog
    // outlives this process on purpose.
    child
        .stdin
        .take()
        .ok_or_else(|| "the watchdog has no stdin pipe".to_string())
}

/// Runs `pg_ctl -D <datadir> -l <log> <args>` as `run_as` (see
/// [`Cluster::pg_ctl`]).
fn run_pg_ctl(
    bindir: &Path,
    datadir: &Path,
    log_path: &Path,
    run_as: Option<RunAs>,
    args: &[&str],
) -> Output {
    // Run from the temporary directory: the user may not be able to access
    // the test's working directory.
    let cwd = datadir.parent().unwrap_or(Path::new("/"));
    server_command(&bindir.join("pg_ctl"), cwd, run_as)
        .arg("-D")
        .arg(datadir)
        .arg("-l")
        .arg(log_path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}/pg_ctl {args:?}: {e}", bindir.display()))
}

/// Makes `postgresql.conf` include the harness's own settings file, which is
/// rewritten for each start attempt (with a new port).
fn append_include(datadir: &Path) -> Result<(), String> {
    let conf = datadir.join("postgresql.conf");
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .map_err(|e| format!("opening {}: {e}", conf.display()))?;
    writeln!(
        file,
        "\n# Added by the pgfleet test harness (tests/it/support/cluster.rs).\ninclude = '{HARNESS_CONF}'"
    )
    .map_err(|e| format!("writing {}: {e}", conf.display()))
}

/// Writes the harness settings: local TCP only, on `port`; the socket in the
/// temporary directory; speed over durability; room for many parallel
/// tests; TLS with the server certificate, key and client CA given. Kept in the data directory so that a plain `pg_ctl restart` or
/// `start` by a fault test keeps them.
fn write_harness_conf(
    datadir: &Path,
    socket_dir: &Path,
    (cert, key, ca): (&Path, &Path, &Path),
    port: u16,
    run_as: Option<RunAs>,
) -> Result<(), String> {
    let path = datadir.join(HARNESS_CONF);
    let quoted = |path: &Path| path.to_string_lossy().replace('\'', "''");
    let socket_dir = quoted(socket_dir);
    let (cert, key, ca) = (quoted(cert), quoted(key), quoted(ca));
    let settings = format!(
        "listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         unix_socket_directories = '{socket_dir}'\n\
         fsync = off\n\
         full_page_writes = off\n\
         synchronous_commit = off\n\
         max_connections = 300\n\
         logging_collector = off\n\
         log_destination = 'stderr'\n\
         log_line_prefix = '%m [%p] %q%u@%d '\n\
         ssl = on\n\
         ssl_cert_file = '{cert}'\n\
         ssl_key_file = '{key}'\n\
         ssl_ca_file = '{ca}'\n"
    );
    fs::write(&path, settings).map_err(|e| format!("writing {}: {e}", path.display()))?;
    if let Some(user) = run_as {
        chown_recursive(&path, user)?;
    }
    Ok(())
}

/// Puts the test roles' lines (see `support::tls`) before initdb's own.
fn prepend_hba(datadir: &Path) -> Result<(), String> {
    let path = datadir.join("pg_hba.conf");
    let original =
        fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    fs::write(&path, format!("{}{original}", tls::HBA_LINES))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The roles `pg_hba.conf` names.
fn create_roles(port: u16) -> Result<(), String> {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .connect(postgres::NoTls)
        .and_then(|mut client| client.batch_execute(&tls::roles_sql()))
        .map_err(|e| format!("creating the test roles: {e:?}"))
}

/// A TCP port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding 127.0.0.1:0: {e}"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| format!("reading the bound port: {e}"))
}

/// Checks that the server really accepts connections on `port`: `pg_ctl -w`
/// only tells that *a* server with this data directory came up.
fn wait_for_connection(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let result = postgres::Config::new()
            .host("127.0.0.1")
            .port(port)
            .user("postgres")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(5))
            .connect(postgres::NoTls)
            .and_then(|mut client| client.simple_query("SELECT 1").map(drop));
        match result {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("the server does not accept connections: {e:?}"))
            }
            Err(_) => sleep(Duration::from_millis(100)),
        }
    }
}

/// The last `lines` lines of a log file from byte `start` on, for failure
/// messages.
fn log_tail(path: &Path, start: u64, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = usize::try_from(start).unwrap_or(0).min(bytes.len());
            let text = String::from_utf8_lossy(&bytes[start..]);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

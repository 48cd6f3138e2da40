//! Debian's real PgBouncer in front of the test cluster, so that pgfleet is
//! tested through the pooler operators put in front of managed PostgreSQL,
//! not through an imitation of it.
//!
//! It runs in a temporary directory of its own, on a free port, with trust
//! authentication for `postgres` and every database of the cluster; as
//! root it runs as the `postgres` user (PgBouncer refuses to run as root).
//! It is killed when the handle is dropped.

#![allow(dead_code)]

use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::cluster::server_user;

/// `default_pool_size`: at most this many server connections per database
/// (and user), which is what [`PgBouncer::statements_on_servers`] relies on.
pub const POOL_SIZE: usize = 20;

pub struct PgBouncer {
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

/// The pgbouncer program, or a panic saying what to install.
fn program() -> PathBuf {
    for candidate in ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"] {
        if std::path::Path::new(candidate).is_file() {
            return PathBuf::from(candidate);
        }
    }
    if let Ok(path) = which("pgbouncer") {
        return path;
    }
    panic!(
        "pgbouncer not found: these tests run pgfleet through a real PgBouncer; install it \
         (Debian/Ubuntu: `apt-get install pgbouncer`; macOS: `brew install pgbouncer`), \
         or run `bash .ci/run`, which installs it"
    );
}

fn which(name: &str) -> Result<PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or(())
}

impl PgBouncer {
    /// PgBouncer in `pool_mode` ("transaction" or "session") in front of
    /// the server on `server_port`, with `extra` lines in `[pgbouncer]`.
    pub fn start(server_port: u16, pool_mode: &str, extra: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pgfleet-pgbouncer-")
            .tempdir_in("/tmp")
            .expect("temporary directory for pgbouncer");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            listener.local_addr().expect("address").port()
        };
        let ini = dir.path().join("pgbouncer.ini");
        let users = dir.path().join("userlist.txt");
        fs::write(&users, "\"postgres\" \"\"\n").expect("write userlist");
        fs::write(
            &ini,
            format!(
                "[databases]\n* = host=127.0.0.1 port={server_port}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {users}\n\
                 pool_mode = {pool_mode}\n\
                 max_client_conn = 200\ndefault_pool_size = {POOL_SIZE}\n\
                 logfile = {log}\n\
                 {extra}\n",
                users = users.display(),
                log = dir.path().join("pgbouncer.log").display(),
            ),
        )
        .expect("write pgbouncer.ini");
        for file in [&ini, &users] {
            fs::set_permissions(file, fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        let child = spawn(&ini, dir.path());
        let bouncer = PgBouncer { port, child, dir };
        bouncer.wait_listening();
        bouncer
    }

    /// Kills PgBouncer (as a crash or an operator's restart would: every
    /// client and server connection gone) and starts it again, same
    /// configuration, same port.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let ini = self.dir.path().join("pgbouncer.ini");
        self.child = spawn(&ini, self.dir.path());
        self.wait_listening();
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not listen on port {}:\n{}",
                self.port,
                self.log()
            );
            sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for `database` through this PgBouncer.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Every prepared statement on this PgBouncer's server connections to
    /// `database`, as "pid name: statement". In transaction mode a named
    /// statement outlives the client that left it there (PgBouncer resets
    /// server connections only in session mode, by default), and the next
    /// client that prepares the same name meets 42P05: this finds them
    /// before that. [`POOL_SIZE`] clients each hold a transaction open, so
    /// each sits on a server connection of its own and together they see
    /// all of them; they ask with the simple protocol and roll back, so
    /// the look leaves nothing behind and closes no server connection.
    pub fn statements_on_servers(&self, database: &str) -> Vec<String> {
        let url = self.url(database);
        let mut clients: Vec<postgres::Client> = (0..POOL_SIZE)
            .map(|_| {
                let mut client = postgres::Client::connect(&url, postgres::NoTls)
                    .unwrap_or_else(|e| panic!("connecting to {url}: {e:?}"));
                client
                    .batch_execute("BEGIN")
                    .expect("BEGIN through pgbouncer");
                client
            })
            .collect();
        let mut found = Vec::new();
        let mut pids = Vec::new();
        for client in &mut clients {
            for message in client
                .simple_query(
                    "SELECT pg_backend_pid()::text, name, statement \
                     FROM pg_prepared_statements RIGHT JOIN (VALUES (1)) AS one ON true",
                )
                .expect("pg_prepared_statements through pgbouncer")
            {
                if let postgres::SimpleQueryMessage::Row(row) = message {
                    let pid = row.get(0).unwrap_or_default().to_owned();
                    if let (Some(name), Some(statement)) = (row.get(1), row.get(2)) {
                        found.push(format!("{pid} {name}: {statement}"));
                    }
                    pids.push(pid);
                }
            }
        }
        for client in &mut clients {
            client
                .batch_execute("ROLLBACK")
                .expect("ROLLBACK through pgbouncer");
        }
        pids.sort();
        pids.dedup();
        assert_eq!(
            pids.len(),
            POOL_SIZE,
            "the clients did not each get a server connection of their own"
        );
        found
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

/// PgBouncer on `ini`, in `dir`, as the harness's server user.
fn spawn(ini: &std::path::Path, dir: &std::path::Path) -> Child {
    let mut command = Command::new(program());
    command
        .arg(ini)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // PgBouncer, like PostgreSQL, refuses to run as root.
    if let Some(user) = server_user().unwrap_or_else(|why| panic!("{why}")) {
        command.uid(user.uid).gid(user.gid);
    }
    command.spawn().expect("start pgbouncer")
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
                 max_client_conn = 200\ndefault_pool_size = 20\n\
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
        let mut command = Command::new(program());
        command
            .arg(&ini)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // PgBouncer, like PostgreSQL, refuses to run as root.
        if let Some(user) = server_user().unwrap_or_else(|why| panic!("{why}")) {
            command.uid(user.uid).gid(user.gid);
        }
        let child = command.spawn().expect("start pgbouncer");
        let bouncer = PgBouncer { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not listen on port {port}:\n{}",
                bouncer.log()
            );
            sleep(Duration::from_millis(50));
        }
        bouncer
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for `database` through this PgBouncer.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

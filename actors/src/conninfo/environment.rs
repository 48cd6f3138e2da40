//! What libpq reads from the process around it: `PG*` variables, the
//! effective user's name and home directory, and the default socket
//! directory.
//!
//! Behind a trait so resolution can be tested with a fake environment
//! instead of mutating the process's (which is racy under parallel tests).

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The process state connection defaults come from.
pub trait Environment {
    /// The environment variable `name`; `None` when unset, empty or not
    /// UTF-8.
    fn var(&self, name: &str) -> Option<String>;
    /// The effective user's login name (libpq's default `user`).
    fn os_user(&self) -> Option<String>;
    /// The directory `.pgpass` is looked for in.
    fn home_dir(&self) -> Option<PathBuf>;
    /// Where the server's Unix socket lives when no host is given.
    fn default_socket_dir(&self) -> PathBuf;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnvironment;

/// Debian and Ubuntu build libpq with this socket directory.
const DEBIAN_SOCKET_DIR: &str = "/var/run/postgresql";
/// Upstream PostgreSQL's `DEFAULT_PGSOCKET_DIR`.
const UPSTREAM_SOCKET_DIR: &str = "/tmp";

impl Environment for ProcessEnvironment {
    /// Empty values count as unset. For `PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGDATABASE`, `PGPASSWORD` and `PGPASSFILE` that is what libpq ends up
    /// doing; for a word-valued variable such as `PGSSLMODE=""` libpq would
    /// report an invalid value where this uses the default.
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }

    /// libpq's `pg_fe_getauthname`: the password-database name of the
    /// effective user id.
    fn os_user(&self) -> Option<String> {
        effective_user().and_then(|user| user.name)
    }

    /// libpq's `pqGetHomeDirectory`: `$HOME` if set and not empty, else the
    /// effective user's password-database home.
    fn home_dir(&self) -> Option<PathBuf> {
        match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => Some(PathBuf::from(home)),
            _ => effective_user().map(|user| user.home),
        }
    }

    /// `/var/run/postgresql` when that directory exists (Debian's libpq, and
    /// where Debian-family servers put the socket), else upstream's `/tmp`.
    /// The choice is made per call, so a server installed later is found.
    fn default_socket_dir(&self) -> PathBuf {
        if Path::new(DEBIAN_SOCKET_DIR).is_dir() {
            PathBuf::from(DEBIAN_SOCKET_DIR)
        } else {
            PathBuf::from(UPSTREAM_SOCKET_DIR)
        }
    }
}

/// The parts of a password-database entry libpq uses.
struct PasswdEntry {
    /// `None` when the name is not UTF-8.
    name: Option<String>,
    home: PathBuf,
}

/// The password-database entry of the effective user id.
fn effective_user() -> Option<PasswdEntry> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    passwd_entry(uid)
}

/// `getpwuid_r(uid)`, growing the buffer while it is too small.
fn passwd_entry(uid: libc::uid_t) -> Option<PasswdEntry> {
    const MAX_BUFFER: usize = 1 << 20;
    // SAFETY: sysconf only reads a configuration value.
    let suggested = unsafe { libc::sysconf(libc::_SC_GETPW_R_SIZE_MAX) };
    let mut buffer_len = usize::try_from(suggested)
        .ok()
        .filter(|len| *len > 0)
        .unwrap_or(1024);
    loop {
        let mut buffer: Vec<libc::c_char> = vec![0; buffer_len];
        // SAFETY: passwd is plain old data; all-zero is a valid value that
        // getpwuid_r overwrites.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, and buffer_len is the
        // buffer's real length.
        let status = unsafe {
            libc::getpwuid_r(
                uid,
                &mut entry,
                buffer.as_mut_ptr(),
                buffer_len,
                &mut result,
            )
        };
        if status == libc::ERANGE && buffer_len < MAX_BUFFER {
            buffer_len *= 2;
            continue;
        }
        if status != 0 || result.is_null() || entry.pw_name.is_null() || entry.pw_dir.is_null() {
            return None;
        }
        // SAFETY: on success pw_name and pw_dir point to NUL-terminated
        // strings inside `buffer`, which is still alive.
        let (name, home) = unsafe { (CStr::from_ptr(entry.pw_name), CStr::from_ptr(entry.pw_dir)) };
        return Some(PasswdEntry {
            name: name.to_str().ok().map(str::to_owned),
            home: PathBuf::from(OsStr::from_bytes(home.to_bytes())),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_user_has_a_name_and_a_home() {
        let user = effective_user().expect("the test runs as a user in the password database");
        assert!(user.name.is_some_and(|name| !name.is_empty()));
        assert!(user.home.is_absolute());
    }

    #[test]
    fn os_user_matches_the_password_database() {
        assert_eq!(
            ProcessEnvironment.os_user(),
            effective_user().and_then(|user| user.name)
        );
    }

    #[test]
    fn the_default_socket_dir_is_one_of_the_two_known() {
        let dir = ProcessEnvironment.default_socket_dir();
        assert!(
            dir == Path::new(DEBIAN_SOCKET_DIR) || dir == Path::new(UPSTREAM_SOCKET_DIR),
            "{}",
            dir.display()
        );
    }

    #[test]
    fn unset_variables_are_none() {
        assert_eq!(
            ProcessEnvironment.var("CONNINFO_TEST_SURELY_UNSET_VARIABLE"),
            None
        );
    }

    #[test]
    fn a_home_directory_is_found() {
        assert!(ProcessEnvironment.home_dir().is_some());
    }
}

//! libpq's password file (`~/.pgpass`, or `passfile` / `PGPASSFILE`), read
//! as `passwordFromFile` and `pwdfMatchesString` read it.
//!
//! Each line is `hostname:port:database:username:password`. A field of just
//! `*` matches anything; `\:` and `\\` stand for `:` and `\`; lines starting
//! with `#` are comments; trailing `\r`/`\n` are stripped; the first
//! matching line wins. A connection with an empty host, or through a Unix
//! socket in the default socket directory, is matched as `localhost`; an
//! empty port as `5432`. With an empty database or user name libpq does
//! not look at all.
//!
//! The file is refused (with libpq's warning) when it is not a plain file
//! or when group or others have any access to it, and silently skipped when
//! it cannot be read at all.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The host name a password-file line must carry for a connection to
/// `host`: libpq's rule, comparing paths as text (it does not canonicalise).
pub fn host_to_match<'h>(host: &'h str, default_socket_dir: &Path) -> &'h str {
    if host.is_empty() || default_socket_dir.as_os_str() == OsStr::new(host) {
        "localhost"
    } else {
        host
    }
}

/// The password for the first line of `contents` that matches, if any.
/// `host` is matched as given, except that an empty host means `localhost`
/// and an empty port `5432`; use [`host_to_match`] for socket directories.
pub fn lookup(contents: &str, host: &str, port: &str, dbname: &str, user: &str) -> Option<String> {
    if dbname.is_empty() || user.is_empty() {
        return None;
    }
    let host = if host.is_empty() { "localhost" } else { host };
    let port = if port.is_empty() { "5432" } else { port };
    contents
        .split('\n')
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.trim_end_matches(['\r', '\n']))
        .filter(|line| !line.is_empty())
        .find_map(|line| {
            let rest = match_field(line.as_bytes(), host)?;
            let rest = match_field(rest, port)?;
            let rest = match_field(rest, dbname)?;
            let rest = match_field(rest, user)?;
            Some(unescape_password(rest))
        })
}

/// What reading a password file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgpassOutcome {
    Found(String),
    /// No matching line, or no readable file.
    NotFound,
    /// The file exists but libpq would not use it; `warning` is libpq's.
    Ignored {
        warning: String,
    },
}

/// Looks up the password for a connection in the file at `path`, libpq's
/// way: `host` is the connection's host name or socket directory (the
/// `localhost` rule is applied here), `port` its port as written.
pub fn read_password(
    path: &Path,
    host: &str,
    port: &str,
    dbname: &str,
    user: &str,
    default_socket_dir: &Path,
) -> PgpassOutcome {
    if dbname.is_empty() || user.is_empty() {
        return PgpassOutcome::NotFound;
    }
    let Ok(metadata) = fs::metadata(path) else {
        return PgpassOutcome::NotFound;
    };
    if !metadata.is_file() {
        return PgpassOutcome::Ignored {
            warning: format!("password file \"{}\" is not a plain file", path.display()),
        };
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        return PgpassOutcome::Ignored {
            warning: format!(
                "password file \"{}\" has group or world access; \
                 permissions should be u=rw (0600) or less",
                path.display()
            ),
        };
    }
    let Ok(bytes) = fs::read(path) else {
        return PgpassOutcome::NotFound;
    };
    // A line that is not UTF-8 cannot be matched exactly; lossy decoding
    // keeps the other lines usable.
    let contents = String::from_utf8_lossy(&bytes);
    let host = host_to_match(host, default_socket_dir);
    match lookup(&contents, host, port, dbname, user) {
        Some(password) => PgpassOutcome::Found(password),
        None => PgpassOutcome::NotFound,
    }
}

/// libpq's `pwdfMatchesString`: if the field at the start of `line` matches
/// `token`, the rest of the line after the field's `:`.
fn match_field<'l>(line: &'l [u8], token: &str) -> Option<&'l [u8]> {
    if line.starts_with(b"*:") {
        return Some(&line[2..]);
    }
    let token = token.as_bytes();
    let mut line_at = 0;
    let mut token_at = 0;
    while line_at < line.len() {
        let mut escaped = false;
        if line[line_at] == b'\\' {
            line_at += 1;
            escaped = true;
        }
        let current = line.get(line_at).copied();
        if current == Some(b':') && token_at == token.len() && !escaped {
            return Some(&line[line_at + 1..]);
        }
        if token_at == token.len() || current != token.get(token_at).copied() {
            return None;
        }
        line_at += 1;
        token_at += 1;
    }
    None
}

/// The password field: up to an unescaped `:` or the end, a backslash
/// taking the next character literally.
fn unescape_password(field: &[u8]) -> String {
    let mut password = Vec::with_capacity(field.len());
    let mut at = 0;
    while let Some(&byte) = field.get(at) {
        if byte == b':' {
            break;
        }
        match (byte, field.get(at + 1)) {
            (b'\\', Some(&next)) => {
                password.push(next);
                at += 2;
            }
            _ => {
                password.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&password).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conninfo::test_support::passfile;

    const SOCKET_DIR: &str = "/var/run/postgresql";

    #[test]
    fn the_first_matching_line_wins() {
        let contents = "h:5432:db:u:first\nh:5432:db:u:second\n";
        assert_eq!(
            lookup(contents, "h", "5432", "db", "u").as_deref(),
            Some("first")
        );
    }

    #[test]
    fn each_field_must_match_exactly() {
        let contents = "h:5432:db:u:pw\n";
        assert_eq!(
            lookup(contents, "h", "5432", "db", "u").as_deref(),
            Some("pw")
        );
        assert_eq!(lookup(contents, "H", "5432", "db", "u"), None);
        assert_eq!(lookup(contents, "h", "5433", "db", "u"), None);
        assert_eq!(lookup(contents, "h", "5432", "db2", "u"), None);
        assert_eq!(lookup(contents, "h", "5432", "db", "uu"), None);
        assert_eq!(lookup(contents, "hh", "5432", "db", "u"), None);
        assert_eq!(lookup(contents, "", "5432", "db", "u"), None);
    }

    #[test]
    fn a_star_matches_anything_but_only_as_a_whole_field() {
        let contents = "*:*:*:*:any\n";
        assert_eq!(lookup(contents, "x", "1", "d", "u").as_deref(), Some("any"));
        let contents = "h*:5432:db:u:pw\n*h:5432:db:u:pw2\n";
        assert_eq!(lookup(contents, "host", "5432", "db", "u"), None);
        let contents = "\\*:5432:db:u:literal\n";
        assert_eq!(
            lookup(contents, "*", "5432", "db", "u").as_deref(),
            Some("literal")
        );
        assert_eq!(lookup(contents, "h", "5432", "db", "u"), None);
    }

    #[test]
    fn escapes_in_fields_and_password() {
        let contents = "h\\:x:5432:d\\\\b:u:p\\:w\\\\d:ignored\n";
        assert_eq!(
            lookup(contents, "h:x", "5432", "d\\b", "u").as_deref(),
            Some("p:w\\d")
        );
        assert_eq!(lookup(contents, "h", "5432", "d\\b", "u"), None);
    }

    #[test]
    fn a_line_missing_the_password_field_does_not_match() {
        assert_eq!(lookup("h:5432:db:u\n", "h", "5432", "db", "u"), None);
        assert_eq!(
            lookup("h:5432:db:u:\n", "h", "5432", "db", "u").as_deref(),
            Some("")
        );
    }

    #[test]
    fn comments_blank_lines_and_crlf() {
        let contents = "# h:5432:db:u:commented\n\n\r\nh:5432:db:u:pw\r\n";
        assert_eq!(
            lookup(contents, "h", "5432", "db", "u").as_deref(),
            Some("pw")
        );
        let contents = " # h:5432:db:u:not-a-comment\n";
        assert_eq!(
            lookup(contents, " # h", "5432", "db", "u").as_deref(),
            Some("not-a-comment")
        );
    }

    #[test]
    fn a_last_line_without_newline_counts() {
        assert_eq!(
            lookup("h:1:d:u:pw", "h", "1", "d", "u").as_deref(),
            Some("pw")
        );
    }

    #[test]
    fn empty_host_means_localhost_and_empty_port_5432() {
        let contents = "localhost:5432:db:u:pw\n";
        assert_eq!(lookup(contents, "", "", "db", "u").as_deref(), Some("pw"));
    }

    #[test]
    fn no_lookup_without_database_or_user() {
        let contents = "*:*:*:*:pw\n";
        assert_eq!(lookup(contents, "h", "1", "", "u"), None);
        assert_eq!(lookup(contents, "h", "1", "d", ""), None);
    }

    #[test]
    fn the_default_socket_directory_is_localhost() {
        let default = Path::new(SOCKET_DIR);
        assert_eq!(host_to_match(SOCKET_DIR, default), "localhost");
        assert_eq!(host_to_match("", default), "localhost");
        assert_eq!(host_to_match("/tmp", default), "/tmp");
        assert_eq!(
            host_to_match("/var/run/postgresql/", default),
            "/var/run/postgresql/"
        );
        assert_eq!(host_to_match("db.example.com", default), "db.example.com");
    }

    fn read(path: &Path, host: &str) -> PgpassOutcome {
        read_password(path, host, "5432", "db", "u", Path::new(SOCKET_DIR))
    }

    #[test]
    fn reads_a_private_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = passfile(
            dir.path(),
            "localhost:5432:db:u:socketpw\nh:5432:db:u:tcppw\n",
            0o600,
        );
        assert_eq!(read(&path, "h"), PgpassOutcome::Found("tcppw".to_owned()));
        assert_eq!(
            read(&path, SOCKET_DIR),
            PgpassOutcome::Found("socketpw".to_owned())
        );
        assert_eq!(read(&path, "other"), PgpassOutcome::NotFound);
        let path = passfile(dir.path(), "h:5432:db:u:readonly\n", 0o400);
        assert_eq!(
            read(&path, "h"),
            PgpassOutcome::Found("readonly".to_owned())
        );
    }

    #[test]
    fn refuses_a_file_others_can_access() {
        let dir = tempfile::tempdir().expect("temp dir");
        for mode in [0o640, 0o604, 0o610, 0o601, 0o644] {
            let path = passfile(dir.path(), "h:5432:db:u:pw\n", mode);
            let PgpassOutcome::Ignored { warning } = read(&path, "h") else {
                panic!("mode {mode:o} was not refused");
            };
            assert_eq!(
                warning,
                format!(
                    "password file \"{}\" has group or world access; \
                     permissions should be u=rw (0600) or less",
                    path.display()
                )
            );
            assert!(!warning.contains("pw\""), "{warning}");
        }
    }

    #[test]
    fn refuses_a_directory_and_skips_a_missing_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let PgpassOutcome::Ignored { warning } = read(dir.path(), "h") else {
            panic!("a directory was not refused");
        };
        assert!(warning.contains("is not a plain file"), "{warning}");
        assert_eq!(
            read(&dir.path().join("absent"), "h"),
            PgpassOutcome::NotFound
        );
    }

    #[test]
    fn does_not_read_without_database_or_user() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = passfile(dir.path(), "*:*:*:*:pw\n", 0o644);
        assert_eq!(
            read_password(&path, "h", "5432", "db", "", Path::new(SOCKET_DIR)),
            PgpassOutcome::NotFound
        );
    }
}

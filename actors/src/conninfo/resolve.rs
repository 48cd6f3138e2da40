//! Filling in what a connection string leaves out, libpq's way, and
//! checking what it says: `conninfo_add_defaults`, `pqConnectOptions2` and
//! the connect-time parsing of ports and timeouts, in one place.
//!
//! Precedence per keyword: the connection string (even an empty value: libpq
//! does not consult `PGHOST` after `host=''`), then its `PG*` variable, then
//! libpq's built-in default. Empty values then mean the default, as in
//! libpq: an empty host is the default socket directory, an empty port 5432,
//! an empty user the operating-system user, an empty database the user.
//!
//! Every value is checked here, before any connection attempt, so a bad
//! port is reported at start-up and not as an unreachable server. Errors
//! name the keyword, the value and where the value came from; only
//! non-secret keywords are ever checked, so no password reaches a message.

use std::error::Error;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::environment::Environment;
use super::key_value::is_c_space;
use super::keywords::{self, KEYWORDS, MASK};
use super::options::Options;
use super::target::{
    ChannelBinding, Endpoint, Host, Keepalives, LibpqWord, LoadBalanceHosts, Origin, SslMode,
    SslNegotiation, Target, TargetSessionAttrs, UnhandledSetting,
};

/// libpq's `DEF_PGPORT`.
pub const DEFAULT_PORT: u16 = 5432;

/// The keywords [`Target`] carries; any other that is set is reported in
/// [`Target::unhandled`].
const HANDLED: &[&str] = &[
    "user",
    "password",
    "passfile",
    "channel_binding",
    "connect_timeout",
    "dbname",
    "host",
    "hostaddr",
    "port",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "sslmode",
    "sslnegotiation",
    "sslcert",
    "sslkey",
    "sslrootcert",
    "target_session_attrs",
    "load_balance_hosts",
];

/// Resolves `options` against `env` into a [`Target`], as libpq would
/// before connecting.
///
/// `connect_timeout` follows libpq: whole seconds, zero or negative means
/// none, and 1 means 2 (libpq's guard against rounding down to no wait).
pub fn resolve(options: &Options, env: &dyn Environment) -> Result<Target, ResolveError> {
    let sources = Sources { options, env };
    let default_socket_dir = env.default_socket_dir();

    let endpoints = resolve_endpoints(&sources, &default_socket_dir)?;
    let user = match sources.non_empty("user") {
        Some(setting) => setting.value,
        None => env.os_user().ok_or(ResolveError {
            keyword: "user",
            origin: Origin::Default,
            problem: Problem::NoUser,
        })?,
    };
    let dbname = sources
        .non_empty("dbname")
        .map_or_else(|| user.clone(), |setting| setting.value);
    let passfile = sources
        .non_empty("passfile")
        .map(|setting| PathBuf::from(setting.value))
        .or_else(|| env.home_dir().map(|home| home.join(".pgpass")));

    let sslrootcert = sources
        .non_empty("sslrootcert")
        .map(|setting| setting.value);
    let (sslmode, sslmode_origin) = resolve_sslmode(&sources, sslrootcert.as_deref())?;
    let sslnegotiation = word(&sources, "sslnegotiation", SslNegotiation::Postgres)?;
    if sslnegotiation == SslNegotiation::Direct
        && !matches!(
            sslmode,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    {
        return Err(ResolveError {
            keyword: "sslmode",
            origin: sslmode_origin,
            problem: Problem::WeakSslMode {
                sslmode,
                required_by: "sslnegotiation=direct",
                use_instead: "\"require\", \"verify-ca\", or \"verify-full\"",
            },
        });
    }

    Ok(Target {
        endpoints,
        user,
        dbname,
        password: sources.non_empty("password").map(|setting| setting.value),
        passfile,
        application_name: sources.non_empty("application_name").map(|s| s.value),
        fallback_application_name: sources
            .non_empty("fallback_application_name")
            .map(|setting| setting.value),
        connect_timeout: resolve_connect_timeout(&sources)?,
        options: sources.non_empty("options").map(|setting| setting.value),
        sslmode,
        sslnegotiation,
        sslrootcert,
        sslcert: sources.non_empty("sslcert").map(|setting| setting.value),
        sslkey: sources.non_empty("sslkey").map(|setting| setting.value),
        channel_binding: word(&sources, "channel_binding", ChannelBinding::Prefer)?,
        target_session_attrs: word(&sources, "target_session_attrs", TargetSessionAttrs::Any)?,
        load_balance_hosts: word(&sources, "load_balance_hosts", LoadBalanceHosts::Disable)?,
        keepalives: resolve_keepalives(&sources)?,
        tcp_user_timeout: non_negative(&sources, "tcp_user_timeout")?
            .map(|millis| Duration::from_millis(millis.into())),
        default_socket_dir,
        unhandled: unhandled(&sources),
    })
}

/// A value that cannot be used, with its keyword and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveError {
    pub keyword: &'static str,
    pub origin: Origin,
    pub problem: Problem,
}

/// What is wrong with a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Not one of the words libpq accepts for the keyword.
    InvalidWord {
        value: String,
        accepted: &'static [&'static str],
    },
    /// Not a whole number that fits in 32 bits.
    InvalidInteger { value: String },
    /// A number outside 1..=65535.
    InvalidPort { value: String },
    /// A `hostaddr` entry that is not a numeric IPv4 or IPv6 address.
    InvalidHostaddr { value: String },
    /// A `host` or `port` list whose length fits neither the number of
    /// hosts nor (for `port`) one for all.
    CountMismatch {
        count: usize,
        hosts: usize,
        hosts_origin: Origin,
    },
    /// No user name anywhere, and the operating-system user is unknown.
    NoUser,
    /// An `sslmode` too weak for another setting.
    WeakSslMode {
        sslmode: SslMode,
        required_by: &'static str,
        use_instead: &'static str,
    },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keyword = self.keyword;
        let origin = &self.origin;
        // Defence in depth: secret keywords are never checked, but should
        // one be, its value still stays out of the message.
        let shown = |value: &str| -> String {
            if keywords::is_secret(keyword) {
                MASK.to_owned()
            } else {
                value.to_owned()
            }
        };
        match &self.problem {
            Problem::InvalidWord { value, accepted } => write!(
                f,
                "invalid {keyword} value \"{}\" (from {origin}); expected one of: {}",
                shown(value),
                accepted.join(", ")
            ),
            Problem::InvalidInteger { value } => write!(
                f,
                "invalid integer value \"{}\" for connection option \"{keyword}\" (from {origin})",
                shown(value)
            ),
            Problem::InvalidPort { value } => write!(
                f,
                "invalid port number \"{}\" (from {origin}); expected 1 to 65535",
                shown(value)
            ),
            Problem::InvalidHostaddr { value } => write!(
                f,
                "invalid hostaddr \"{}\" (from {origin}): not a numeric IP address",
                shown(value)
            ),
            Problem::CountMismatch {
                count,
                hosts,
                hosts_origin,
            } => {
                let (items, against) = if keyword == "port" {
                    ("port numbers", "hosts")
                } else {
                    ("host names", "hostaddr values")
                };
                write!(
                    f,
                    "could not match {count} {items} (from {origin}) \
                     to {hosts} {against} (from {hosts_origin})"
                )
            }
            Problem::NoUser => f.write_str(
                "no user name given (\"user\" and PGUSER are unset) and the effective \
                 operating-system user could not be looked up",
            ),
            Problem::WeakSslMode {
                sslmode,
                required_by,
                use_instead,
            } => write!(
                f,
                "weak sslmode \"{sslmode}\" (from {origin}) may not be used with \
                 {required_by} (use {use_instead})"
            ),
        }
    }
}

impl Error for ResolveError {}

/// A value and where it came from.
struct Setting {
    value: String,
    origin: Origin,
}

/// The connection string, then the environment.
struct Sources<'a> {
    options: &'a Options,
    env: &'a dyn Environment,
}

impl Sources<'_> {
    /// The value for `keyword`, possibly empty if the connection string
    /// gave it so.
    fn get(&self, keyword: &'static str) -> Option<Setting> {
        if let Some(value) = self.options.get(keyword) {
            return Some(Setting {
                value: value.to_owned(),
                origin: Origin::ConnectionString,
            });
        }
        let variable = keywords::keyword(keyword)?.env_var?;
        self.env.var(variable).map(|value| Setting {
            value,
            origin: Origin::Environment(variable),
        })
    }

    /// The value for `keyword`, unless absent or empty.
    fn non_empty(&self, keyword: &'static str) -> Option<Setting> {
        self.get(keyword)
            .filter(|setting| !setting.value.is_empty())
    }
}

/// One endpoint per `hostaddr` entry, else per `host` entry, else one; as
/// `pqConnectOptions2`, with ports checked as `PQconnectPoll` does.
fn resolve_endpoints(
    sources: &Sources<'_>,
    default_socket_dir: &Path,
) -> Result<Vec<Endpoint>, ResolveError> {
    let host = sources.non_empty("host");
    let hostaddr = sources.non_empty("hostaddr");
    let port = sources.non_empty("port");
    let hosts: Vec<&str> = host
        .as_ref()
        .map_or_else(Vec::new, |s| s.value.split(',').collect());
    let addrs: Vec<&str> = hostaddr
        .as_ref()
        .map_or_else(Vec::new, |s| s.value.split(',').collect());
    let (count, count_origin) = match (&hostaddr, &host) {
        (Some(addr), _) => (addrs.len(), addr.origin.clone()),
        (None, Some(host)) => (hosts.len(), host.origin.clone()),
        (None, None) => (1, Origin::Default),
    };
    if let Some(host) = &host {
        if hosts.len() != count {
            return Err(ResolveError {
                keyword: "host",
                origin: host.origin.clone(),
                problem: Problem::CountMismatch {
                    count: hosts.len(),
                    hosts: count,
                    hosts_origin: count_origin,
                },
            });
        }
    }
    let ports: Vec<&str> = port
        .as_ref()
        .map_or_else(Vec::new, |s| s.value.split(',').collect());
    if let Some(port) = &port {
        if ports.len() != 1 && ports.len() != count {
            return Err(ResolveError {
                keyword: "port",
                origin: port.origin.clone(),
                problem: Problem::CountMismatch {
                    count: ports.len(),
                    hosts: count,
                    hosts_origin: count_origin,
                },
            });
        }
    }

    (0..count)
        .map(|index| {
            let addr_text = addrs.get(index).copied().filter(|text| !text.is_empty());
            let hostaddr_value = match (addr_text, &hostaddr) {
                (Some(text), Some(setting)) => Some(parse_hostaddr(text, &setting.origin)?),
                _ => None,
            };
            let host = match (
                hosts.get(index).copied().filter(|h| !h.is_empty()),
                addr_text,
            ) {
                (Some(name), _) if name.starts_with(['/', '@']) => {
                    Host::Socket(PathBuf::from(name))
                }
                (Some(name), _) => Host::Tcp(name.to_owned()),
                (None, Some(address)) => Host::Tcp(address.to_owned()),
                (None, None) => Host::Socket(default_socket_dir.to_path_buf()),
            };
            let port_text = ports.get(index).or(ports.first()).copied().unwrap_or("");
            let port_number = match (&port, port_text.is_empty()) {
                (Some(setting), false) => parse_port(port_text, &setting.origin)?,
                _ => DEFAULT_PORT,
            };
            Ok(Endpoint {
                host,
                hostaddr: hostaddr_value,
                port: port_number,
            })
        })
        .collect()
}

fn parse_hostaddr(text: &str, origin: &Origin) -> Result<IpAddr, ResolveError> {
    text.parse().map_err(|_| ResolveError {
        keyword: "hostaddr",
        origin: origin.clone(),
        problem: Problem::InvalidHostaddr {
            value: text.to_owned(),
        },
    })
}

fn parse_port(text: &str, origin: &Origin) -> Result<u16, ResolveError> {
    let number = parse_int(text).ok_or_else(|| ResolveError {
        keyword: "port",
        origin: origin.clone(),
        problem: Problem::InvalidInteger {
            value: text.to_owned(),
        },
    })?;
    u16::try_from(number)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| ResolveError {
            keyword: "port",
            origin: origin.clone(),
            problem: Problem::InvalidPort {
                value: text.to_owned(),
            },
        })
}

/// `sslmode`, from the string, `PGSSLMODE`, the old `PGREQUIRESSL=1`, or
/// the default: `prefer`, or `verify-full` with `sslrootcert=system`, which
/// refuses anything weaker.
fn resolve_sslmode(
    sources: &Sources<'_>,
    sslrootcert: Option<&str>,
) -> Result<(SslMode, Origin), ResolveError> {
    let system_roots = sslrootcert == Some("system");
    let given = sources.get("sslmode").or_else(|| {
        sources
            .env
            .var("PGREQUIRESSL")
            .filter(|value| value.starts_with('1'))
            .map(|_| Setting {
                value: "require".to_owned(),
                origin: Origin::Environment("PGREQUIRESSL"),
            })
    });
    let Some(setting) = given else {
        let default = if system_roots {
            SslMode::VerifyFull
        } else {
            SslMode::Prefer
        };
        return Ok((default, Origin::Default));
    };
    let mode: SslMode = parse_word("sslmode", &setting)?;
    if system_roots && mode != SslMode::VerifyFull {
        return Err(ResolveError {
            keyword: "sslmode",
            origin: setting.origin,
            problem: Problem::WeakSslMode {
                sslmode: mode,
                required_by: "sslrootcert=system",
                use_instead: "\"verify-full\"",
            },
        });
    }
    Ok((mode, setting.origin))
}

/// A libpq word-valued keyword, or `default` when not given.
fn word<T: LibpqWord>(
    sources: &Sources<'_>,
    keyword: &'static str,
    default: T,
) -> Result<T, ResolveError> {
    match sources.get(keyword) {
        Some(setting) => parse_word(keyword, &setting),
        None => Ok(default),
    }
}

fn parse_word<T: LibpqWord>(keyword: &'static str, setting: &Setting) -> Result<T, ResolveError> {
    T::from_word(&setting.value).ok_or_else(|| ResolveError {
        keyword,
        origin: setting.origin.clone(),
        problem: Problem::InvalidWord {
            value: setting.value.clone(),
            accepted: T::WORDS,
        },
    })
}

fn resolve_connect_timeout(sources: &Sources<'_>) -> Result<Option<Duration>, ResolveError> {
    let Some(seconds) = integer(sources, "connect_timeout")? else {
        return Ok(None);
    };
    Ok(u64::try_from(seconds)
        .ok()
        .filter(|seconds| *seconds > 0)
        .map(|seconds| Duration::from_secs(seconds.max(2))))
}

fn resolve_keepalives(sources: &Sources<'_>) -> Result<Keepalives, ResolveError> {
    let enabled = match sources.get("keepalives") {
        None => true,
        Some(setting) => keepalives_enabled(&setting.value).ok_or(ResolveError {
            keyword: "keepalives",
            origin: setting.origin,
            problem: Problem::InvalidInteger {
                value: setting.value.clone(),
            },
        })?,
    };
    let seconds = |keyword| {
        non_negative(sources, keyword)
            .map(|value| value.map(|seconds| Duration::from_secs(seconds.into())))
    };
    Ok(Keepalives {
        enabled,
        idle: seconds("keepalives_idle")?,
        interval: seconds("keepalives_interval")?,
        count: non_negative(sources, "keepalives_count")?,
    })
}

/// An integer keyword; negative values become 0, as libpq's socket options.
fn non_negative(sources: &Sources<'_>, keyword: &'static str) -> Result<Option<u32>, ResolveError> {
    Ok(integer(sources, keyword)?.map(|value| u32::try_from(value).unwrap_or(0)))
}

fn integer(sources: &Sources<'_>, keyword: &'static str) -> Result<Option<i32>, ResolveError> {
    let Some(setting) = sources.get(keyword) else {
        return Ok(None);
    };
    parse_int(&setting.value)
        .map(Some)
        .ok_or_else(|| ResolveError {
            keyword,
            origin: setting.origin,
            problem: Problem::InvalidInteger {
                value: setting.value.clone(),
            },
        })
}

/// libpq's `pqParseIntParam`: optional surrounding whitespace, an optional
/// sign, decimal digits, and a value that fits in a C `int`.
fn parse_int(text: &str) -> Option<i32> {
    let trimmed = text
        .trim_start_matches(is_c_space_char)
        .trim_end_matches(is_c_space_char);
    let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    trimmed.strip_prefix('+').unwrap_or(trimmed).parse().ok()
}

/// libpq's `useKeepalives`: `strtol` must consume the whole value (leading
/// whitespace allowed, trailing not); an empty value reads as 0, so off.
fn keepalives_enabled(text: &str) -> Option<bool> {
    if text.is_empty() {
        return Some(false);
    }
    let trimmed = text.trim_start_matches(is_c_space_char);
    let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(digits.bytes().any(|byte| byte != b'0'))
}

fn is_c_space_char(character: char) -> bool {
    u8::try_from(character).is_ok_and(is_c_space)
}

fn unhandled(sources: &Sources<'_>) -> Vec<UnhandledSetting> {
    KEYWORDS
        .iter()
        .filter(|keyword| !HANDLED.contains(&keyword.name))
        .filter_map(|keyword| {
            sources
                .non_empty(keyword.name)
                .map(|setting| UnhandledSetting {
                    keyword: keyword.name,
                    origin: setting.origin,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests;

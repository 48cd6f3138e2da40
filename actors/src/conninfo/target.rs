//! Where and how to connect, once every default is filled in: the result of
//! [`resolve()`](super::resolve()), in the terms a connector needs.
//!
//! The resolver depends on these types and never the other way round, so
//! [`Origin`], which a [`Target`] carries as well as the resolver's errors,
//! is declared here.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::keywords::MASK;
use super::pgpass::{self, PgpassOutcome};

/// Declares an enum of libpq words (`sslmode=verify-full`…) with the exact
/// word of each variant, so parsing and printing share one list.
macro_rules! libpq_words {
    ($(#[$meta:meta])* $name:ident { $($(#[$variant_meta:meta])* $variant:ident => $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            /// Every word libpq accepts, in libpq's order.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            /// The variant for a libpq word (case-sensitive, as libpq).
            pub fn from_word(word: &str) -> Option<Self> {
                match word {
                    $($word => Some(Self::$variant),)+
                    _ => None,
                }
            }

            /// The libpq word for this variant.
            pub fn as_word(self) -> &'static str {
                match self {
                    $(Self::$variant => $word,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_word())
            }
        }

        impl LibpqWord for $name {
            const WORDS: &'static [&'static str] = $name::WORDS;

            fn from_word(word: &str) -> Option<Self> {
                $name::from_word(word)
            }
        }
    };
}

/// The enums of libpq words, for code generic over them.
pub(super) trait LibpqWord: Sized {
    const WORDS: &'static [&'static str];
    fn from_word(word: &str) -> Option<Self>;
}

libpq_words! {
    /// `sslmode`; libpq's default is `prefer`.
    SslMode {
        Disable => "disable",
        Allow => "allow",
        Prefer => "prefer",
        Require => "require",
        VerifyCa => "verify-ca",
        VerifyFull => "verify-full",
    }
}

libpq_words! {
    /// `target_session_attrs`; libpq's default is `any`.
    TargetSessionAttrs {
        Any => "any",
        ReadWrite => "read-write",
        ReadOnly => "read-only",
        Primary => "primary",
        Standby => "standby",
        PreferStandby => "prefer-standby",
    }
}

libpq_words! {
    /// `channel_binding`; libpq's default (built with SSL) is `prefer`.
    ChannelBinding {
        Disable => "disable",
        Prefer => "prefer",
        Require => "require",
    }
}

libpq_words! {
    /// `load_balance_hosts`; libpq's default is `disable`.
    LoadBalanceHosts {
        Disable => "disable",
        Random => "random",
    }
}

libpq_words! {
    /// `sslnegotiation` (PostgreSQL 17); libpq's default is `postgres`.
    SslNegotiation {
        Postgres => "postgres",
        Direct => "direct",
    }
}

/// Where one server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A host name or IP address, for TCP.
    Tcp(String),
    /// The directory holding the server's socket (`.s.PGSQL.<port>`), or
    /// an abstract socket name starting with `@`, as libpq reads a host
    /// starting with `/` or `@`.
    Socket(PathBuf),
}

impl Host {
    /// The host as written, for the password file and messages.
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Host::Tcp(name) => name.as_str().into(),
            Host::Socket(path) => path.to_string_lossy(),
        }
    }
}

/// One server to try, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The server's name. When `hostaddr` is set, libpq connects to that
    /// address over TCP and uses `host` only to verify the certificate and
    /// to find the password; with `hostaddr` alone, `host` is `Tcp` of the
    /// address.
    pub host: Host,
    pub hostaddr: Option<IpAddr>,
    pub port: u16,
}

impl Endpoint {
    /// Whether the connection goes through a Unix socket (no `hostaddr`, and
    /// a host that is a socket directory).
    pub fn is_socket(&self) -> bool {
        self.hostaddr.is_none() && matches!(self.host, Host::Socket(_))
    }
}

/// TCP keepalive settings (ignored for Unix sockets, as by libpq).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalives {
    /// libpq's default is on.
    pub enabled: bool,
    /// `None` leaves the operating system's setting.
    pub idle: Option<Duration>,
    pub interval: Option<Duration>,
    pub count: Option<u32>,
}

impl Default for Keepalives {
    fn default() -> Self {
        Keepalives {
            enabled: true,
            idle: None,
            interval: None,
            count: None,
        }
    }
}

/// Where a value came from: the connection string, a `PG*` variable or
/// libpq's default. Part of what [`resolve()`](super::resolve()) produces
/// ([`UnhandledSetting`]) and of its errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    ConnectionString,
    /// The named environment variable.
    Environment(&'static str),
    /// libpq's built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::ConnectionString => f.write_str("the connection string"),
            Origin::Environment(variable) => f.write_str(variable),
            Origin::Default => f.write_str("libpq's default"),
        }
    }
}

/// A keyword that was set but that [`Target`] does not carry (such as
/// `service`, `gssencmode` or `sslcrl`): the caller decides whether to refuse
/// it or warn, since libpq would have acted on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnhandledSetting {
    pub keyword: &'static str,
    pub origin: Origin,
}

/// Everything needed to connect, defaults filled in libpq's way. `Debug`
/// masks the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// At least one; tried in order (or shuffled when `load_balance_hosts`
    /// is `random`, which is left to the connector).
    pub endpoints: Vec<Endpoint>,
    pub user: String,
    pub dbname: String,
    /// From the connection string or `PGPASSWORD` only; see
    /// [`Target::password_for`] for the password file.
    pub password: Option<String>,
    /// `passfile`, else `PGPASSFILE`, else `~/.pgpass`.
    pub passfile: Option<PathBuf>,
    pub application_name: Option<String>,
    pub fallback_application_name: Option<String>,
    /// Per endpoint; `None` waits indefinitely.
    pub connect_timeout: Option<Duration>,
    /// Command-line options for the server (`-c name=value …`).
    pub options: Option<String>,
    pub sslmode: SslMode,
    pub sslnegotiation: SslNegotiation,
    /// A file name, or libpq's special value `system`.
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
    pub channel_binding: ChannelBinding,
    pub target_session_attrs: TargetSessionAttrs,
    pub load_balance_hosts: LoadBalanceHosts,
    pub keepalives: Keepalives,
    /// `TCP_USER_TIMEOUT`; `None` leaves the operating system's setting.
    pub tcp_user_timeout: Option<Duration>,
    /// The socket directory used for an empty host, and matched as
    /// `localhost` in the password file.
    pub default_socket_dir: PathBuf,
    pub unhandled: Vec<UnhandledSetting>,
}

impl Target {
    /// The password for `endpoint`: the explicit one if any, else the first
    /// matching line of the password file (libpq looks it up per host and
    /// port). Password-file warnings go to `warn`.
    pub fn password_for(
        &self,
        endpoint: &Endpoint,
        warn: &mut dyn FnMut(String),
    ) -> Option<String> {
        if let Some(password) = &self.password {
            return Some(password.clone());
        }
        let passfile = self.passfile.as_deref()?;
        let outcome = pgpass::read_password(
            passfile,
            &endpoint.host.as_text(),
            &endpoint.port.to_string(),
            &self.dbname,
            &self.user,
            &self.default_socket_dir,
        );
        match outcome {
            PgpassOutcome::Found(password) => Some(password),
            PgpassOutcome::NotFound => None,
            PgpassOutcome::Ignored { warning } => {
                warn(warning);
                None
            }
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("endpoints", &self.endpoints)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("password", &self.password.as_ref().map(|_| MASK))
            .field("passfile", &self.passfile)
            .field("application_name", &self.application_name)
            .field("fallback_application_name", &self.fallback_application_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("options", &self.options)
            .field("sslmode", &self.sslmode)
            .field("sslnegotiation", &self.sslnegotiation)
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
            .field("channel_binding", &self.channel_binding)
            .field("target_session_attrs", &self.target_session_attrs)
            .field("load_balance_hosts", &self.load_balance_hosts)
            .field("keepalives", &self.keepalives)
            .field("tcp_user_timeout", &self.tcp_user_timeout)
            .field("default_socket_dir", &self.default_socket_dir)
            .field("unhandled", &self.unhandled)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for word in SslMode::WORDS {
            let mode = SslMode::from_word(word).expect("listed word parses");
            assert_eq!(mode.as_word(), *word);
            assert_eq!(mode.to_string(), *word);
        }
        assert_eq!(
            TargetSessionAttrs::from_word("prefer-standby"),
            Some(TargetSessionAttrs::PreferStandby)
        );
        assert_eq!(SslMode::from_word("VERIFY-FULL"), None);
        assert_eq!(SslMode::from_word("verify_full"), None);
    }

    #[test]
    fn host_text() {
        assert_eq!(Host::Tcp("h".to_owned()).as_text(), "h");
        assert_eq!(Host::Socket(PathBuf::from("/tmp")).as_text(), "/tmp");
    }
}

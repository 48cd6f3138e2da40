//! Making one connection the way libpq makes it, so that a connection
//! string that works with psql works here, and means the same.
//!
//! tokio-postgres connects to one host list with one password and knows
//! three `sslmode`s; libpq tries each host in turn, finds a password per
//! host in `~/.pgpass`, knows six `sslmode`s (`allow` tries plaintext
//! first, `prefer` falls back to plaintext when TLS fails), and checks
//! `target_session_attrs` itself. So the host loop is here: each endpoint
//! gets a single-host driver configuration (bb8-postgres makes the
//! connection and spawns its I/O task), bounded by `connect_timeout`.
//!
//! Per-session settings (`statement_timeout`, and `lock_timeout` at
//! `database.fold_lock_timeout`: a fold, the statement run most, waits
//! only briefly for a lock; initialisation sets its own) go as
//! start-up options to a plain PostgreSQL, but poolers refuse those
//! (PgBouncer: `08P01 unsupported startup parameter: options`) or drop
//! them, and in transaction pooling a `SET` lands on a server connection
//! another client gets next. With `database.pooler: transaction`, or when
//! `auto` sees a refusal or finds the settings missing, each transaction
//! sets them with `SET LOCAL` instead ([`Session::set_local`]).
//!
//! Precedence, highest first: `database.password_file`, then
//! `database.password`, then the URL's (or `PGPASSWORD`), then the password
//! file of libpq. The URL's `application_name` and `connect_timeout` (or
//! `PGAPPNAME`, `PGCONNECT_TIMEOUT`) win over pgfleet's keys.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use slog::{info, warn, Logger};
use tokio_postgres::config::{ChannelBinding as WireChannelBinding, SslMode as WireSslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::error::{DbError, Refusal};
use super::tls::{self, TlsOptions};
use crate::conninfo::{
    self, ChannelBinding, Endpoint, Environment, Host, SslMode, Target, TargetSessionAttrs,
};
use crate::settings::{DatabaseSettings, PoolerMode};

/// pgfleet's TCP keepalive defaults where the connection string sets none:
/// a dead peer (pulled cable, failed-over host) is noticed within about a
/// minute instead of the kernel's two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// Everything needed to make connections, read once per configuration.
pub struct Connector {
    target: Target,
    tls: MakeRustlsConnect,
    tls_files: TlsFiles,
    password: Option<String>,
    application_name: String,
    connect_timeout: Duration,
    statement_timeout: Duration,
    /// The session's `lock_timeout`: `database.fold_lock_timeout`.
    fold_lock_timeout: Duration,
    pooler: PoolerMode,
    /// Set once `auto` found that start-up options do not arrive.
    options_refused: AtomicBool,
    /// The password file's warning is logged once, not per connection.
    passfile_warned: AtomicBool,
    log: Logger,
}

/// What `describe_tls_failure` names in its sentences.
struct TlsFiles {
    mode: SslMode,
    rootcert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    home: Option<PathBuf>,
}

impl TlsFiles {
    fn options(&self) -> TlsOptions<'_> {
        TlsOptions {
            mode: self.mode,
            rootcert: self.rootcert.as_deref(),
            cert: self.cert.as_deref(),
            key: self.key.as_deref(),
            home: self.home.as_deref(),
        }
    }
}

/// A new connection, and how its transactions get their timeouts.
pub struct Session {
    pub client: Client,
    /// Lock warnings the server sent on this connection (see [`drive`]).
    pub lock_skips: Arc<AtomicU64>,
    /// `SET LOCAL …;` to put at the start of every transaction, when the
    /// timeouts could not be set for the whole session.
    pub set_local: Option<Arc<str>>,
    /// Whether the connection is encrypted (with `prefer` or `allow`, the
    /// attempt that succeeded decides).
    pub tls: bool,
    /// What the server sends after a LISTEN (see `control`); ends when the
    /// connection does. Nobody reads it on a pooled connection, which
    /// never listens.
    pub notifications: tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
}

impl Connector {
    /// Reads the connection string, the PG* variables, the TLS files.
    /// Errors are for the operator: they name the keyword, the variable or
    /// the file, and never a password.
    pub fn new(
        settings: &DatabaseSettings,
        env: &dyn Environment,
        log: &Logger,
    ) -> Result<Self, String> {
        let options = conninfo::parse(settings.url.expose()).map_err(|e| e.to_string())?;
        let target = conninfo::resolve(&options, env).map_err(|e| e.to_string())?;
        if let Some(setting) = target.unhandled.first() {
            return Err(format!(
                "{} (from {}) is not supported by pgfleet{}",
                setting.keyword,
                setting.origin,
                match setting.keyword {
                    "service" => ": it does not read pg_service.conf; write the parameters out",
                    "sslcrl" | "sslcrldir" => ": certificate revocation lists are not checked",
                    "sslpassword" => ": decrypt the key (openssl pkey -in KEY -out KEY.plain)",
                    _ => "",
                }
            ));
        }
        let tls_files = TlsFiles {
            mode: target.sslmode,
            rootcert: target.sslrootcert.clone(),
            cert: target.sslcert.clone(),
            key: target.sslkey.clone(),
            home: env.home_dir(),
        };
        // Built for every mode: `allow` and `prefer` may need it, and
        // `disable` never hands it a connection.
        let tls_options = TlsOptions {
            mode: match target.sslmode {
                SslMode::Disable => SslMode::Require,
                mode => mode,
            },
            ..tls_files.options()
        };
        let tls = tls::connector(&tls_options)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no TLS connector for a TLS mode".to_owned())?;
        let password = if !settings.password_from_file.is_empty() {
            Some(settings.password_from_file.expose().to_owned())
        } else if !settings.password.is_empty() {
            Some(settings.password.expose().to_owned())
        } else {
            None
        };
        Ok(Connector {
            application_name: target
                .application_name
                .clone()
                .unwrap_or_else(|| settings.application_name.clone()),
            connect_timeout: target.connect_timeout.unwrap_or(settings.connect_timeout),
            target,
            tls,
            tls_files,
            password,
            statement_timeout: settings.statement_timeout,
            fold_lock_timeout: settings.fold_lock_timeout,
            pooler: settings.pooler,
            options_refused: AtomicBool::new(false),
            passfile_warned: AtomicBool::new(false),
            log: log.clone(),
        })
    }

    /// The same connector, logging to `log`: for one built while the
    /// configuration was read, before the service had its logger.
    pub fn with_log(mut self, log: &Logger) -> Self {
        self.log = log.clone();
        self
    }

    /// Asks the server to cancel the statement running on the connection
    /// `token` came from, over the same TLS as the connection (a server
    /// whose `pg_hba.conf` says `hostssl` refuses a plaintext cancel).
    pub async fn cancel(&self, token: tokio_postgres::CancelToken) -> Result<(), DbError> {
        tokio::time::timeout(self.connect_timeout, token.cancel_query(self.tls.clone()))
            .await
            .map_err(|_| DbError::Unreachable("the cancel request got no answer".into()))?
            .map_err(|e| DbError::from_connect(&e))
    }

    /// How long one connection attempt to one host may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Where this connects, for messages: `user@host:port/db`, no password.
    pub fn describe_target(&self) -> String {
        let hosts: Vec<String> = self
            .target
            .endpoints
            .iter()
            .map(|e| format!("{}:{}", e.host.as_text(), e.port))
            .collect();
        format!(
            "{}@{}/{} (sslmode={})",
            self.target.user,
            hosts.join(","),
            self.target.dbname,
            self.target.sslmode
        )
    }

    /// One connection to the first host that takes it and has the
    /// `target_session_attrs` asked for. When every host fails, the error
    /// names each host's failure; it is a refusal if any host refused us,
    /// else the database is unreachable.
    pub async fn connect(&self) -> Result<Session, DbError> {
        let wanted = self.target.target_session_attrs;
        let passes: &[TargetSessionAttrs] = match wanted {
            // libpq: standbys first, then any server.
            TargetSessionAttrs::PreferStandby => {
                &[TargetSessionAttrs::Standby, TargetSessionAttrs::Any]
            }
            _ => std::slice::from_ref(&self.target.target_session_attrs),
        };
        let mut failures: Vec<(String, DbError)> = Vec::new();
        for &attrs in passes {
            for endpoint in &self.target.endpoints {
                let name = format!("{}:{}", endpoint.host.as_text(), endpoint.port);
                match self.connect_endpoint(endpoint).await {
                    Ok(session) => match suits(&session.client, attrs).await {
                        Ok(None) => return Ok(session),
                        Ok(Some(why)) => failures.push((
                            name,
                            DbError::Refused {
                                kind: Refusal::NoSuitableHost,
                                code: None,
                                reason: format!("{why} (target_session_attrs={wanted})"),
                            },
                        )),
                        Err(error) => failures.push((name, error)),
                    },
                    Err(error) => failures.push((name, error)),
                }
            }
        }
        Err(combine(failures))
    }

    /// One host, with libpq's `sslmode` fallbacks.
    async fn connect_endpoint(&self, endpoint: &Endpoint) -> Result<Session, DbError> {
        match self.target.sslmode {
            SslMode::Disable => self.attempt(endpoint, WireSslMode::Disable).await,
            // Plaintext first; TLS when the server refuses that.
            SslMode::Allow => match self.attempt(endpoint, WireSslMode::Disable).await {
                Err(DbError::Refused { .. }) => self.attempt(endpoint, WireSslMode::Require).await,
                other => other,
            },
            // TLS first; plaintext when the server has no TLS, the
            // handshake fails, or the server refuses us over TLS.
            SslMode::Prefer => match self.attempt(endpoint, WireSslMode::Require).await {
                Err(DbError::Refused { .. }) => self.attempt(endpoint, WireSslMode::Disable).await,
                other => other,
            },
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                self.attempt(endpoint, WireSslMode::Require).await
            }
        }
    }

    /// One connection attempt, bounded by `connect_timeout` as a whole
    /// (TCP connect, TLS handshake, authentication).
    async fn attempt(&self, endpoint: &Endpoint, ssl: WireSslMode) -> Result<Session, DbError> {
        let with_options = match self.pooler {
            PoolerMode::None => true,
            PoolerMode::Transaction => false,
            PoolerMode::Auto => !self.options_refused.load(Ordering::Relaxed),
        };
        match self.attempt_once(endpoint, ssl, with_options).await {
            Err(AttemptError::Protocol(_)) if with_options && self.pooler == PoolerMode::Auto => {
                self.note_options_refused(
                    "the server refused start-up options (08P01; a pooler such as PgBouncer?)",
                );
                self.attempt_once(endpoint, ssl, false)
                    .await
                    .map_err(AttemptError::into_db)
            }
            Err(error) => Err(error.into_db()),
            Ok(session) if with_options && self.pooler == PoolerMode::Auto => {
                self.verify_options_arrived(session).await
            }
            Ok(session) => Ok(session),
        }
    }

    async fn attempt_once(
        &self,
        endpoint: &Endpoint,
        ssl: WireSslMode,
        with_options: bool,
    ) -> Result<Session, AttemptError> {
        let config = self.driver_config(endpoint, ssl, with_options);
        let connecting = async {
            let (client, connection) = config.connect(self.tls.clone()).await?;
            let lock_skips = Arc::new(AtomicU64::new(0));
            let (notify, notifications) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(drive(connection, Arc::clone(&lock_skips), notify));
            Ok::<_, tokio_postgres::Error>((client, (lock_skips, notifications)))
        };
        let (client, (lock_skips, notifications)) =
            match tokio::time::timeout(self.connect_timeout, connecting).await {
                Ok(Ok(connected)) => connected,
                Ok(Err(error)) => {
                    if error.code() == Some(&SqlState::PROTOCOL_VIOLATION) {
                        return Err(AttemptError::Protocol(error));
                    }
                    return Err(AttemptError::Db(self.classify(&error)));
                }
                Err(_) => {
                    return Err(AttemptError::Db(DbError::Unreachable(format!(
                        "no answer from the server within {:?} (connect_timeout)",
                        self.connect_timeout
                    ))))
                }
            };
        let per_transaction = !with_options || self.options_refused.load(Ordering::Relaxed);
        Ok(Session {
            client,
            lock_skips,
            notifications,
            set_local: per_transaction.then(|| self.set_local_text()),
            tls: ssl != WireSslMode::Disable,
        })
    }

    /// A failed attempt, sorted; TLS failures get libpq-like sentences.
    fn classify(&self, error: &tokio_postgres::Error) -> DbError {
        match DbError::from_connect(error) {
            DbError::Refused {
                kind: Refusal::Tls,
                code,
                reason,
            } => DbError::Refused {
                kind: Refusal::Tls,
                code,
                reason: match tls::describe_tls_failure(error, &self.tls_files.options()) {
                    Some(sentence) => format!("{sentence} (sslmode={})", self.tls_files.mode),
                    // tokio-postgres's own words for a server that answered
                    // the SSLRequest with "no".
                    None if reason.contains("does not support TLS") => format!(
                        "the server does not support TLS, and sslmode={} requires it (the \
                         server needs ssl = on; sslmode=prefer would allow plaintext)",
                        self.tls_files.mode
                    ),
                    None => reason,
                },
            },
            other => other,
        }
    }

    /// With `pooler: auto`, a pooler may drop the start-up options without
    /// a word (PgBouncer's `ignore_startup_parameters = options`): ask the
    /// server what it got, once per new connection. Asked as the unnamed
    /// statement: the pooler is not known yet, and a named one's parse and
    /// execute may reach different server connections (26000).
    async fn verify_options_arrived(&self, mut session: Session) -> Result<Session, DbError> {
        let row = session
            .client
            .query_typed_one(
                "SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'",
                &[],
            )
            .await
            .map_err(|e| DbError::from_statement(&e))?;
        let got: i64 = row.get(0);
        if u128::try_from(got).ok() != Some(self.statement_timeout.as_millis()) {
            self.note_options_refused(
                "the start-up options did not arrive (statement_timeout is not pgfleet's; a pooler?)",
            );
            session.set_local = Some(self.set_local_text());
        }
        Ok(session)
    }

    fn note_options_refused(&self, why: &str) {
        if !self.options_refused.swap(true, Ordering::Relaxed) {
            info!(self.log, "{why}: statement_timeout and lock_timeout are now set with SET LOCAL in each transaction (database.pooler: transaction)";
                "event" => "pooler_detected");
        }
    }

    fn set_local_text(&self) -> Arc<str> {
        format!(
            "SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}; ",
            self.statement_timeout.as_millis(),
            self.fold_lock_timeout.as_millis()
        )
        .into()
    }

    /// The driver's configuration for one host.
    fn driver_config(
        &self,
        endpoint: &Endpoint,
        ssl: WireSslMode,
        with_options: bool,
    ) -> tokio_postgres::Config {
        let target = &self.target;
        let mut config = tokio_postgres::Config::new();
        match &endpoint.host {
            Host::Tcp(name) => config.host(name),
            Host::Socket(dir) => config.host_path(dir),
        };
        if let Some(address) = endpoint.hostaddr {
            config.hostaddr(address);
        }
        config
            .port(endpoint.port)
            .user(&target.user)
            .dbname(&target.dbname)
            .application_name(&self.application_name)
            .connect_timeout(self.connect_timeout)
            .ssl_mode(ssl)
            .channel_binding(match target.channel_binding {
                ChannelBinding::Disable => WireChannelBinding::Disable,
                ChannelBinding::Prefer => WireChannelBinding::Prefer,
                ChannelBinding::Require => WireChannelBinding::Require,
            });
        let mut warn_once = |warning: String| {
            if !self.passfile_warned.swap(true, Ordering::Relaxed) {
                warn!(self.log, "{warning}"; "event" => "pgpass_ignored");
            }
        };
        if let Some(password) = self
            .password
            .clone()
            .or_else(|| target.password_for(endpoint, &mut warn_once))
        {
            config.password(password);
        }
        let keepalives = target.keepalives;
        config.keepalives(keepalives.enabled);
        config.keepalives_idle(keepalives.idle.unwrap_or(KEEPALIVE_IDLE));
        config.keepalives_interval(keepalives.interval.unwrap_or(KEEPALIVE_INTERVAL));
        config.keepalives_retries(keepalives.count.unwrap_or(KEEPALIVE_RETRIES));
        if let Some(timeout) = target.tcp_user_timeout {
            config.tcp_user_timeout(timeout);
        }
        let mut options = target.options.clone().unwrap_or_default();
        if with_options {
            options.push_str(&format!(
                " -c statement_timeout={} -c lock_timeout={}",
                self.statement_timeout.as_millis(),
                self.fold_lock_timeout.as_millis()
            ));
        }
        if !options.trim().is_empty() {
            config.options(options.trim());
        }
        config
    }
}

/// Runs a connection's I/O until it ends, as the driver's own future does
/// (and as bb8-postgres spawns it), and counts in `lock_skips` the
/// warnings with SQLSTATE 55P03 that the server sends on it: what
/// `VACUUM (SKIP_LOCKED)` says when it skipped a locked table (the
/// statement itself succeeds). A notice is read before the answer it
/// precedes, so the count is up to date when that statement's future
/// completes. Other notices are logged as the driver logs them; these
/// are not, the worker says what they mean. Notifications go to `notify`.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    lock_skips: Arc<AtomicU64>,
    notify: tokio::sync::mpsc::UnboundedSender<tokio_postgres::Notification>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    // `None` or an error ends the connection; the client sees it closed.
    while let Some(Ok(message)) = messages.next().await {
        match message {
            tokio_postgres::AsyncMessage::Notice(notice) => {
                if notice.code() == &SqlState::LOCK_NOT_AVAILABLE {
                    // Reported by the worker (`worker_vacuum_postponed`).
                    lock_skips.fetch_add(1, Ordering::Relaxed);
                } else {
                    log::info!(target: "tokio_postgres::connection", "{}: {}", notice.severity(), notice.message());
                }
            }
            tokio_postgres::AsyncMessage::Notification(notification) => {
                let _ = notify.send(notification);
            }
            _ => {}
        }
    }
}

/// A failed attempt, with the one case `attempt` retries kept apart.
enum AttemptError {
    /// 08P01 at start-up: what PgBouncer answers to start-up options.
    Protocol(tokio_postgres::Error),
    Db(DbError),
}

impl AttemptError {
    fn into_db(self) -> DbError {
        match self {
            AttemptError::Protocol(error) => DbError::from_connect(&error),
            AttemptError::Db(error) => error,
        }
    }
}

/// `None` when the server has the session attributes asked for, else why
/// not. Asked as libpq asks it, as the unnamed statement (a pooler may
/// stand in front; see `verify_options_arrived`).
async fn suits(client: &Client, attrs: TargetSessionAttrs) -> Result<Option<String>, DbError> {
    let (query, wanted, why_not) = match attrs {
        TargetSessionAttrs::Any => return Ok(None),
        TargetSessionAttrs::ReadWrite => (
            "SELECT current_setting('transaction_read_only') = 'off'",
            true,
            "the server is read-only",
        ),
        TargetSessionAttrs::ReadOnly => (
            "SELECT current_setting('transaction_read_only') = 'off'",
            false,
            "the server is not read-only",
        ),
        TargetSessionAttrs::Primary => (
            "SELECT pg_is_in_recovery()",
            false,
            "the server is a standby",
        ),
        TargetSessionAttrs::Standby | TargetSessionAttrs::PreferStandby => (
            "SELECT pg_is_in_recovery()",
            true,
            "the server is not a standby",
        ),
    };
    let row = client
        .query_typed_one(query, &[])
        .await
        .map_err(|e| DbError::from_statement(&e))?;
    let answer: bool = row.get(0);
    Ok((answer != wanted).then(|| why_not.to_owned()))
}

/// One error for every host's failure.
fn combine(mut failures: Vec<(String, DbError)>) -> DbError {
    if failures.len() == 1 {
        if let Some((_, error)) = failures.pop() {
            return error;
        }
    }
    let text = failures
        .iter()
        .map(|(host, error)| format!("{host}: {error}"))
        .collect::<Vec<_>>()
        .join("; ");
    let refusal = failures.iter().find_map(|(_, error)| match error {
        DbError::Refused { kind, code, .. } => Some((*kind, code.clone())),
        _ => None,
    });
    match refusal {
        Some((kind, code)) => DbError::Refused {
            kind,
            code,
            reason: text,
        },
        None if failures.is_empty() => DbError::Unreachable("no host to connect to".into()),
        None => DbError::Unreachable(text),
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

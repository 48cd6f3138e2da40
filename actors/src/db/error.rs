//! Database errors named for what they are, because each calls for a
//! different answer:
//!
//! - **unreachable** (refused, reset, no answer, server starting or shutting
//!   down, too many connections): nobody's fault here; the tick is skipped
//!   and the outage gate spaces the connection attempts;
//! - **connection lost** (one established connection terminated, e.g. by
//!   `pg_terminate_backend`, while the server may be fine): that connection's
//!   problem; it is discarded and the work retried on a fresh one;
//! - **refused** (authentication, TLS, a missing database, a pooler that
//!   refuses us): an operator must act; logged at ERROR as what it is and
//!   retried with the capped backoff, so a rotated secret or a fixed
//!   `pg_hba.conf` is picked up without a restart;
//! - **lock not available** (`lock_timeout`: someone holds the table, a
//!   migration): the schema waits, retried at its next tick; never a
//!   failure, never an outage;
//! - **timed out** (`statement_timeout`): retried next tick;
//! - a **job's own finding** ([`JobFault`]: the fold's overflow, a missing
//!   or dropped table, a `value` column of a type it does not fold) says
//!   what it means itself: a table that is gone is waited for, anything
//!   else is the worker's failure; the job defines these (see
//!   `job::fold::error`), this module only carries them;
//! - anything else (a missing privilege, another SQLSTATE) is the
//!   worker's own failure, for the Supervisor and its restart policy.
//!
//! Sorting looks at the SQLSTATE, never at the server's message text, which
//! depends on `lc_messages`.

use std::time::Duration;

use tokio_postgres::error::SqlState;

/// Why the server would not let pgfleet in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Password, authentication method, or `pg_hba.conf` (28P01, 28000);
    /// a role that does not exist is reported as 28000 too.
    Authentication,
    /// The database does not exist (3D000).
    MissingDatabase,
    /// The TLS handshake failed: certificate not trusted or not for this
    /// host, a server without TLS where `sslmode` requires it, a client
    /// certificate refused.
    Tls,
    /// No host of a multi-host list has the `target_session_attrs` asked
    /// for (e.g. every one is a standby).
    NoSuitableHost,
    /// Anything else the server says at start-up (a pooler's refusal, a
    /// protocol error).
    Other,
}

impl Refusal {
    /// The `kind` field of log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Authentication => "authentication",
            Refusal::MissingDatabase => "missing_database",
            Refusal::Tls => "tls",
            Refusal::NoSuitableHost => "no_suitable_host",
            Refusal::Other => "refused",
        }
    }
}

/// What a job found wrong with its schema, in the terms the worker acts
/// on: its `kind` for the logs, its SQLSTATE when there was one, whether
/// the schema or table is absent, and the sentence for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFault {
    pub kind: &'static str,
    pub code: Option<SqlState>,
    pub absence: Option<Absence>,
    pub message: String,
}

/// A schema or table that is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absence {
    /// Missing when the worker started, and not to be created.
    Missing,
    /// There while pgfleet ran it, and gone now (dropped, renamed).
    Gone,
}

/// Why a statement did not do its job.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached; not this worker's fault.
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// This one connection ended; the server may be fine.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The server (or a pooler, or TLS) refused the connection; `code` is
    /// the server's SQLSTATE when it sent one.
    #[error("{}: {reason}", refusal_title(*.kind))]
    Refused {
        kind: Refusal,
        code: Option<SqlState>,
        reason: String,
    },
    /// lock_timeout (55P03): the statement gave up waiting for a lock that
    /// another session holds (a migration, ALTER TABLE, CREATE INDEX, a
    /// transaction holding the total row); retried later.
    #[error("{0}")]
    LockNotAvailable(String),
    /// statement_timeout (57014), or a statement cancelled by pgfleet
    /// after no answer: retried at the next tick.
    #[error("{reason}")]
    TimedOut { code: SqlState, reason: String },
    /// Every pooled connection stayed busy for connect_timeout: the pool is
    /// too small for the fleet (or folds are slow), not the database down.
    #[error("no pooled connection came free within {waited:?}; database.pool_size ({size}) may be too small")]
    PoolExhausted { waited: Duration, size: u32 },
    /// A maintenance step (VACUUM) found no connection it may take
    /// without making folds wait (see `db::maintenance`): postponed, not
    /// queued, and tried again after the schema's next fold.
    #[error("no connection for maintenance: {0}")]
    MaintenancePostponed(String),
    /// 42501: the role lacks a privilege; `pgfleet --check` names the GRANT.
    #[error("permission denied ({0}); `pgfleet --check` lists the GRANTs the role needs")]
    Permission(String),
    /// The job's own finding (see [`JobFault`]).
    #[error("{}", .0.message)]
    Job(JobFault),
    /// Any other error the server reported, with its SQLSTATE.
    #[error("{text}")]
    Statement {
        code: Option<SqlState>,
        text: String,
    },
    /// A prepared fold went missing on the server with
    /// `database.prepared: on`: a pooler that does not keep prepared
    /// statements; the text says what to change.
    #[error("{0}")]
    PreparedStatementLost(String),
    #[error("unexpected reply to the fold: {0}")]
    UnexpectedReply(String),
    /// With `coordination.enabled`: the fold found its schema's fence
    /// lock held by another session, and did nothing.
    #[error("{0}")]
    Fenced(String),
    /// With `coordination.enabled`: the instance's lease was not confirmed
    /// when the fold was about to be sent; it was not sent.
    #[error("{0}")]
    LeaseExpired(String),
}

fn refusal_title(kind: Refusal) -> &'static str {
    match kind {
        Refusal::Authentication => "the server refused the login",
        Refusal::MissingDatabase => "the database does not exist",
        Refusal::Tls => "TLS failed",
        Refusal::NoSuitableHost => "no host is suitable",
        Refusal::Other => "the server refused the connection",
    }
}

impl DbError {
    /// Sorts an error of a statement on an established connection.
    pub fn from_statement(error: &tokio_postgres::Error) -> Self {
        let text = describe(error);
        let Some(code) = error.code() else {
            // Not from the server: the socket closed or broke under us.
            return DbError::ConnectionLost(text);
        };
        if error.is_closed()
            || code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::IDLE_SESSION_TIMEOUT
            || *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
        {
            // 57P01 is also what a server shutting down sends to every
            // session; retrying on a fresh connection tells the two apart.
            DbError::ConnectionLost(text)
        } else if *code == SqlState::CANNOT_CONNECT_NOW {
            DbError::Unreachable(text)
        } else if *code == SqlState::LOCK_NOT_AVAILABLE {
            DbError::LockNotAvailable(text)
        } else if *code == SqlState::QUERY_CANCELED {
            DbError::TimedOut {
                code: code.clone(),
                reason: text,
            }
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            DbError::Permission(text)
        } else {
            DbError::Statement {
                code: Some(code.clone()),
                text,
            }
        }
    }

    /// Sorts an error of a connection attempt.
    pub fn from_connect(error: &tokio_postgres::Error) -> Self {
        let text = describe(error);
        let Some(code) = error.code() else {
            // The driver's own words when the server asked for a password
            // and none was configured (libpq: "no password supplied").
            if text.contains("password missing") {
                return DbError::Refused {
                    kind: Refusal::Authentication,
                    code: None,
                    reason: "the server asks for a password and none was given (in the URL, \
                             database.password, database.password_file, PGPASSWORD, or a \
                             matching line of the password file)"
                        .into(),
                };
            }
            if is_tls_failure(error) {
                return DbError::Refused {
                    kind: Refusal::Tls,
                    code: None,
                    reason: text,
                };
            }
            return DbError::Unreachable(text);
        };
        let refused = |kind| DbError::Refused {
            kind,
            code: Some(code.clone()),
            reason: text.clone(),
        };
        match code {
            c if c.code().starts_with("28") => refused(Refusal::Authentication),
            c if *c == SqlState::INVALID_CATALOG_NAME => refused(Refusal::MissingDatabase),
            c if *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || (c.code().starts_with("08") && *c != SqlState::PROTOCOL_VIOLATION) =>
            {
                DbError::Unreachable(text)
            }
            _ => refused(Refusal::Other),
        }
    }

    /// The schema or its table is not there: missing at initialisation,
    /// dropped under a fold.
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            DbError::Job(JobFault {
                absence: Some(_),
                ..
            })
        ) || self.is_missing_relation()
    }

    /// undefined_table (42P01) or invalid_schema_name (3F000): a relation
    /// the statement names does not exist (the table, or one a trigger on
    /// it uses: see `db::confirm_table_gone`).
    pub fn is_missing_relation(&self) -> bool {
        matches!(self, DbError::Statement { code: Some(code), .. }
            if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME)
    }

    /// The SQLSTATE the server sent, when it sent one.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            DbError::Statement { code, .. } | DbError::Refused { code, .. } => code.as_ref(),
            DbError::TimedOut { code, .. } => Some(code),
            DbError::LockNotAvailable(_) => Some(&SqlState::LOCK_NOT_AVAILABLE),
            DbError::Permission(_) => Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            DbError::Job(fault) => fault.code.as_ref(),
            _ => None,
        }
    }

    /// The `kind` field of log lines: what sort of failure this is.
    pub fn kind(&self) -> &'static str {
        match self {
            DbError::Unreachable(_) => "unreachable",
            DbError::ConnectionLost(_) => "connection_lost",
            DbError::Refused { kind, .. } => kind.as_str(),
            DbError::TimedOut { .. } => "timed_out",
            DbError::LockNotAvailable(_) => "waiting_for_lock",
            DbError::PoolExhausted { .. } => "pool_exhausted",
            DbError::MaintenancePostponed(_) => "maintenance_postponed",
            DbError::Permission(_) => "permission",
            DbError::Job(fault) => fault.kind,
            DbError::Statement { .. } => "statement",
            DbError::PreparedStatementLost(_) => "prepared_statement_lost",
            DbError::UnexpectedReply(_) => "unexpected_reply",
            DbError::Fenced(_) => "fenced",
            DbError::LeaseExpired(_) => "lease_expired",
        }
    }
}

/// tokio-postgres reports TLS failures with no SQLSTATE and a fixed text of
/// its own ("error performing TLS handshake"), and rustls's certificate
/// errors as the source of the I/O error.
fn is_tls_failure(error: &tokio_postgres::Error) -> bool {
    if error.to_string().contains("TLS") {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

/// tokio-postgres displays server errors as just "db error"; the operator
/// needs the SQLSTATE and the server's words.
pub fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!(" hint: {hint}"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(&format!(": {cause_text}"));
        }
        source = cause.source();
    }
    text
}

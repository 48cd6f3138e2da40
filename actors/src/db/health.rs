//! The database's health as the last connection attempt or statement
//! found it: what `/readyz`, `/metrics` and the status page show of it.
//! The status reads it through a probe (`Status::set_database_probe`), so
//! db knows nothing of the status.

use std::sync::Arc;

/// What the workers last learnt about the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbHealth {
    /// No worker has tried yet.
    Unknown,
    /// The last attempt got an answer.
    Up,
    /// The last attempt could not reach the server (`server`: where it
    /// tried, `user@host:port/dbname`, never a password).
    Unreachable { server: Arc<str>, reason: String },
    /// The server refused us (`kind` as in `database_refused`).
    Refused {
        server: Arc<str>,
        kind: &'static str,
        reason: String,
    },
}

impl DbHealth {
    /// Neither up nor unknown: nothing can fold.
    pub fn is_down(&self) -> bool {
        matches!(
            self,
            DbHealth::Unreachable { .. } | DbHealth::Refused { .. }
        )
    }

    /// What is wrong, naming the server, for `/readyz` and the status
    /// page: None while it is up (or unknown).
    pub fn problem(&self) -> Option<String> {
        match self {
            DbHealth::Up | DbHealth::Unknown => None,
            DbHealth::Unreachable { server, reason } => {
                Some(format!("the database at {server} is unreachable: {reason}"))
            }
            DbHealth::Refused { server, reason, .. } => Some(format!(
                "the database at {server} refuses pgfleet: {reason}"
            )),
        }
    }
}

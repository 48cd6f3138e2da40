//! bb8-postgres's connection manager, with two things it lacks.
//!
//! - A bound on the whole connection start-up: tokio-postgres's
//!   `connect_timeout` covers the TCP connect only, and a server that
//!   accepts but never answers (stopped with SIGSTOP, or a proxy in front of
//!   a dead host) would otherwise hold a pool slot forever.
//! - A way to throw a connection away: after pgfleet gave up waiting for an
//!   answer on it, the connection is marked, and bb8 drops it on return
//!   instead of handing it to the next worker.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bb8::ManageConnection;
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::{Client, NoTls};

pub struct Manager {
    inner: PostgresConnectionManager<NoTls>,
    connect_timeout: Duration,
}

impl Manager {
    pub fn new(config: tokio_postgres::Config, connect_timeout: Duration) -> Self {
        Manager {
            inner: PostgresConnectionManager::new(config, NoTls),
            connect_timeout,
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no answer from the server within {0:?} (database.connect_timeout)")]
    TimedOut(Duration),
}

/// A pooled client that can be marked unusable.
pub struct PgClient {
    client: Client,
    discarded: bool,
}

impl PgClient {
    /// Do not reuse this connection: it may still wait for an answer.
    pub fn discard(&mut self) {
        self.discarded = true;
    }
}

impl Deref for PgClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for PgClient {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl ManageConnection for Manager {
    type Connection = PgClient;
    type Error = ConnectError;

    async fn connect(&self) -> Result<PgClient, ConnectError> {
        match tokio::time::timeout(self.connect_timeout, self.inner.connect()).await {
            Ok(Ok(client)) => Ok(PgClient {
                client,
                discarded: false,
            }),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(ConnectError::TimedOut(self.connect_timeout)),
        }
    }

    async fn is_valid(&self, conn: &mut PgClient) -> Result<(), ConnectError> {
        Ok(self.inner.is_valid(&mut conn.client).await?)
    }

    fn has_broken(&self, conn: &mut PgClient) -> bool {
        conn.discarded || self.inner.has_broken(&mut conn.client)
    }
}

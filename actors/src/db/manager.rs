//! The bb8 connection manager: connections made by the [`Connector`]
//! (libpq's host list, TLS modes and password file), and a way to throw one
//! away.
//!
//! After pgfleet gave up waiting for an answer on a connection (a stalled
//! server, a proxy in front of a dead host), or the connection was lost, it
//! is marked, and bb8 drops it on return instead of handing it to the next
//! worker.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use bb8::ManageConnection;
use tokio_postgres::Client;

use super::connect::Connector;
use super::DbError;

pub struct Manager {
    connector: Arc<Connector>,
}

impl Manager {
    pub fn new(connector: Arc<Connector>) -> Self {
        Manager { connector }
    }
}

/// A pooled client that can be marked unusable.
pub struct PgClient {
    client: Client,
    discarded: bool,
    set_local: Option<Arc<str>>,
}

impl PgClient {
    /// Do not reuse this connection: it may still wait for an answer.
    pub fn discard(&mut self) {
        self.discarded = true;
    }

    /// `SET LOCAL …; ` to start each transaction with, when the session's
    /// timeouts could not be set at start-up (a pooler; see `connect`).
    pub fn set_local(&self) -> Option<&str> {
        self.set_local.as_deref()
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
    type Error = DbError;

    async fn connect(&self) -> Result<PgClient, DbError> {
        let session = self.connector.connect().await?;
        Ok(PgClient {
            client: session.client,
            discarded: false,
            set_local: session.set_local,
        })
    }

    async fn is_valid(&self, conn: &mut PgClient) -> Result<(), DbError> {
        conn.client
            .simple_query("")
            .await
            .map(drop)
            .map_err(|e| DbError::from_statement(&e))
    }

    fn has_broken(&self, conn: &mut PgClient) -> bool {
        conn.discarded || conn.client.is_closed()
    }
}

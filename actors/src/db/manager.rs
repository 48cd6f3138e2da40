//! The bb8 connection manager: connections made by the [`Connector`]
//! (libpq's host list, TLS modes and password file), and a way to throw one
//! away.
//!
//! After pgfleet gave up waiting for an answer on a connection (a stalled
//! server, a proxy in front of a dead host), or the connection was lost, it
//! is marked, and bb8 drops it on return instead of handing it to the next
//! worker.

use std::cell::{Cell, RefCell};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bb8::ManageConnection;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

use super::connect::Connector;
use super::prepared::{Lookup, PreparedPolicy, StatementCache};
use super::DbError;
use crate::sql::{FoldBatch, TableSql};

pub struct Manager {
    connector: Arc<Connector>,
    prepared: Arc<PreparedPolicy>,
}

impl Manager {
    pub fn new(connector: Arc<Connector>, prepared: Arc<PreparedPolicy>) -> Self {
        Manager {
            connector,
            prepared,
        }
    }
}

/// A pooled client that can be marked unusable, with its prepared folds.
/// Both can change through a shared reference: folds pipelined on one
/// connection share it (see `lanes`), on the one actor thread.
pub struct PgClient {
    client: Client,
    discarded: Cell<bool>,
    /// Lock warnings (55P03) the server sent on this connection.
    lock_skips: Arc<AtomicU64>,
    set_local: Option<Arc<str>>,
    statements: RefCell<Option<StatementCache<Statement>>>,
    prepared: Arc<PreparedPolicy>,
}

impl PgClient {
    /// Do not reuse this connection: it may still wait for an answer.
    pub fn discard(&self) {
        self.discarded.set(true);
    }

    pub fn is_discarded(&self) -> bool {
        self.discarded.get()
    }

    /// How many warnings with SQLSTATE 55P03 the server sent on this
    /// connection so far: `VACUUM (SKIP_LOCKED)` skipped a locked table.
    pub fn lock_skips(&self) -> u64 {
        self.lock_skips.load(Ordering::Relaxed)
    }

    /// `SET LOCAL …; ` to start each transaction with, when the session's
    /// timeouts could not be set at start-up (a pooler; see `connect`).
    pub fn set_local(&self) -> Option<&str> {
        self.set_local.as_deref()
    }

    /// `sql`'s fold prepared on this connection (prepared now when there
    /// is room in the cache); None when it runs unprepared here. The cache
    /// is never borrowed across an await: other folds may use it meanwhile.
    ///
    /// pgfleet's one named statement (clippy.toml forbids the others): the
    /// cache exists only where no pooler is known, and a statement lost to
    /// one anyway is caught by `prepared_fold_failed`.
    #[expect(
        clippy::disallowed_methods,
        reason = "the prepared fold is named on purpose; see db::prepared"
    )]
    pub async fn prepared_fold(&self, sql: &TableSql) -> Result<Option<Statement>, DbError> {
        if self.prepared.is_lost() {
            // Another connection of the pool found that statements do not
            // survive: close ours too.
            self.statements.replace(None);
        }
        let now = Instant::now();
        let lookup = match self.statements.borrow_mut().as_mut() {
            None => return Ok(None),
            Some(cache) => cache.lookup(sql.id, now),
        };
        match lookup {
            Lookup::Hit(statement) => Ok(Some(statement)),
            Lookup::Full => Ok(None),
            Lookup::Room => {
                let statement = self
                    .client
                    .prepare_typed(&sql.fold(FoldBatch::Parameters), &[Type::INT8, Type::INT8])
                    .await
                    .map_err(|e| DbError::from_statement(&e))?;
                if let Some(cache) = self.statements.borrow_mut().as_mut() {
                    cache.insert(sql.id, statement.clone(), now);
                }
                Ok(Some(statement))
            }
        }
    }

    /// `sql`'s prepared fold is of no use any more (its plan's result type
    /// changed): closed, and prepared again at its next fold.
    pub fn forget_prepared_fold(&self, sql: &TableSql) {
        if let Some(cache) = self.statements.borrow_mut().as_mut() {
            cache.remove(sql.id);
        }
    }

    /// A prepared fold failed with `error`: Ok when the fold should run
    /// again unprepared (see `prepared`), else the error to report.
    pub fn prepared_fold_failed(&self, error: DbError) -> Result<(), DbError> {
        self.prepared.after_failure(error)?;
        self.statements.replace(None);
        Ok(())
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
            discarded: Cell::new(false),
            lock_skips: session.lock_skips,
            statements: RefCell::new(self.prepared.cache_for(session.set_local.is_some())),
            set_local: session.set_local,
            prepared: Arc::clone(&self.prepared),
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
        conn.discarded.get() || conn.client.is_closed()
    }
}

//! Prepared folds: each connection keeps a bounded set of fold statements
//! prepared, so the server parses and plans a schema's fold once per
//! connection instead of at every tick. The fold is a five-CTE statement
//! whose planning costs more than running it on an idle table: pgbench
//! measures it about 5x faster prepared than sent as text.
//!
//! Why bounded, and why a full cache does not evict: one prepared fold
//! costs the backend that holds it about 98 KB (PostgreSQL 15, measured
//! with `pg_backend_memory_contexts`: CachedPlan, CachedPlanQuery and
//! CachedPlanSource), so 10,000 schemas prepared on each of 16
//! connections would take 15 GB of server memory. A connection keeps at
//! most `database.prepared_cache` statements (default 128, 12.5 MB). When
//! it is full, a schema it has not prepared folds unprepared, in one round
//! trip as before: a cache that evicted would, in a fleet larger than the
//! cache, prepare and close a statement at nearly every fold (two round
//! trips and a plan thrown away each time). Only an entry unused for
//! [`STALE_AFTER`] (a schema removed by a reload, a restarted worker's old
//! statement) makes room for a new one.
//!
//! Poolers: PgBouncer in transaction mode before 1.21 hands each
//! transaction whichever server connection is free, so a statement
//! prepared on one is missing on the next (SQLSTATE 26000), or another
//! client's statement of the same name is there (42P05). With
//! `database.prepared: auto`, folds are unprepared behind a pooler
//! (`database.pooler` is, or was detected as, `transaction`), and any
//! connection that meets one of those two errors turns prepared folds off
//! for the whole pool, logs `prepared_statements_off` once, and folds
//! again unprepared: the failed statement never ran, so nothing is folded
//! twice. With `on`, the error is the worker's, and says what to change.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;
use slog::{warn, Logger};
use tokio_postgres::error::SqlState;
use tokio_postgres::Statement;

use super::DbError;
use crate::settings::{DatabaseSettings, PreparedMode};

/// An entry unused this long may be replaced when the cache is full.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// What one pool does about prepared statements; shared by its connections.
pub struct PreparedPolicy {
    mode: PreparedMode,
    capacity: NonZeroUsize,
    /// `auto` found that prepared statements do not survive here.
    lost: AtomicBool,
    /// Statements held by the pool's connections, for the metrics.
    held: Arc<AtomicUsize>,
    log: Logger,
}

impl PreparedPolicy {
    pub fn new(settings: &DatabaseSettings, log: &Logger) -> Self {
        let capacity = usize::try_from(settings.prepared_cache)
            .ok()
            .and_then(NonZeroUsize::new)
            .unwrap_or(NonZeroUsize::MIN);
        PreparedPolicy {
            mode: settings.prepared,
            capacity,
            lost: AtomicBool::new(false),
            held: Arc::default(),
            log: log.clone(),
        }
    }

    /// The cache a new connection starts with; None when its folds run
    /// unprepared. `pooled`: its timeouts go in `SET LOCAL`s, the sign of
    /// a pooler.
    pub fn cache_for(&self, pooled: bool) -> Option<StatementCache<Statement>> {
        let prepare = match self.mode {
            PreparedMode::Off => false,
            PreparedMode::On => true,
            PreparedMode::Auto => !pooled && !self.is_lost(),
        };
        prepare.then(|| StatementCache::new(self.capacity, Arc::clone(&self.held)))
    }

    /// Fold statements the pool's connections hold prepared now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// `auto` turned prepared folds off for this pool.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// A prepared fold (or its preparation) failed with `error`. When the
    /// error says the statement went missing and the mode is `auto`,
    /// prepared folds are turned off for the pool, and the caller folds
    /// again unprepared (true). With `on` it becomes an error that says
    /// what to change; any other error is returned as it is.
    pub fn after_failure(&self, error: DbError) -> Result<(), DbError> {
        if !is_missing_statement(&error) {
            return Err(error);
        }
        match self.mode {
            PreparedMode::Auto => {
                if !self.lost.swap(true, Ordering::Relaxed) {
                    warn!(self.log, "the server lost a prepared statement ({error}): a pooler moves pgfleet's session between server connections, so folds are unprepared from now on (database.prepared: auto)";
                        "event" => "prepared_statements_off", "error" => error.to_string());
                }
                Ok(())
            }
            PreparedMode::On | PreparedMode::Off => Err(DbError::PreparedStatementLost(format!(
                "{error}: a pooler that does not keep prepared statements (PgBouncer before 1.21 \
                 in transaction mode) stands between pgfleet and PostgreSQL; set \
                 database.prepared: auto or off"
            ))),
        }
    }
}

/// 26000 (no such prepared statement) or 42P05 (one of that name exists).
fn is_missing_statement(error: &DbError) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::INVALID_SQL_STATEMENT_NAME || *code == SqlState::DUPLICATE_PSTATEMENT
    })
}

/// One connection's prepared folds (`S`: tokio-postgres's `Statement`),
/// by [`crate::sql::TableSql::id`].
pub struct StatementCache<S> {
    entries: LruCache<u64, Entry<S>>,
    /// The pool's count of prepared statements, which this cache's add to.
    held: Arc<AtomicUsize>,
}

struct Entry<S> {
    statement: S,
    last_used: Instant,
}

/// What the cache has for a fold.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<S> {
    Hit(S),
    /// Not prepared yet, and there is room: prepare it and [`StatementCache::insert`].
    Room,
    /// Not prepared, and every entry is in use: fold unprepared.
    Full,
}

impl<S: Clone> StatementCache<S> {
    pub fn new(capacity: NonZeroUsize, held: Arc<AtomicUsize>) -> Self {
        StatementCache {
            entries: LruCache::new(capacity),
            held,
        }
    }

    pub fn lookup(&mut self, id: u64, now: Instant) -> Lookup<S> {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.last_used = now;
            return Lookup::Hit(entry.statement.clone());
        }
        if self.entries.len() < self.entries.cap().get() {
            return Lookup::Room;
        }
        let stale = self.entries.peek_lru().is_some_and(|(_, entry)| {
            now.saturating_duration_since(entry.last_used) >= STALE_AFTER
        });
        if stale {
            // Dropping the statement closes it on the server.
            self.entries.pop_lru();
            self.held.fetch_sub(1, Ordering::Relaxed);
            Lookup::Room
        } else {
            Lookup::Full
        }
    }

    /// Keeps `statement` for `id`, unless the cache filled up meanwhile
    /// (folds of other schemas prepared on the same connection while this
    /// one was: see `lanes`); then it is used once and closed.
    pub fn insert(&mut self, id: u64, statement: S, now: Instant) {
        let entry = Entry {
            statement,
            last_used: now,
        };
        if self.entries.contains(&id) {
            self.entries.put(id, entry);
        } else if self.entries.len() < self.entries.cap().get() {
            self.entries.put(id, entry);
            self.held.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops `id`'s statement (which closes it on the server), if kept.
    pub fn remove(&mut self, id: u64) {
        if self.entries.pop(&id).is_some() {
            self.held.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<S> Drop for StatementCache<S> {
    fn drop(&mut self) {
        self.held.fetch_sub(self.entries.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: usize) -> StatementCache<&'static str> {
        StatementCache::new(
            NonZeroUsize::new(capacity).expect("capacity"),
            Arc::default(),
        )
    }

    #[test]
    fn prepares_while_there_is_room_then_reuses() {
        let mut cache = cache(2);
        let now = Instant::now();
        assert_eq!(cache.lookup(1, now), Lookup::Room);
        cache.insert(1, "s1", now);
        assert_eq!(cache.lookup(1, now), Lookup::Hit("s1"));
        assert_eq!(cache.lookup(2, now), Lookup::Room);
        cache.insert(2, "s2", now);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_full_cache_keeps_its_statements_in_use() {
        let mut cache = cache(2);
        let now = Instant::now();
        cache.insert(1, "s1", now);
        cache.insert(2, "s2", now);
        // A third schema folds unprepared rather than evict one in use.
        let soon = now + Duration::from_secs(5);
        assert_eq!(cache.lookup(3, soon), Lookup::Full);
        assert_eq!(cache.lookup(1, soon), Lookup::Hit("s1"));
        assert_eq!(cache.lookup(2, soon), Lookup::Hit("s2"));
    }

    #[test]
    fn a_stale_statement_makes_room() {
        let mut cache = cache(2);
        let now = Instant::now();
        cache.insert(1, "s1", now);
        cache.insert(2, "s2", now);
        // Schema 2 keeps folding; schema 1's worker was restarted (its
        // statement is never asked for again).
        let later = now + STALE_AFTER;
        assert_eq!(cache.lookup(2, later), Lookup::Hit("s2"));
        assert_eq!(cache.lookup(3, later), Lookup::Room);
        cache.insert(3, "s3", later);
        assert_eq!(cache.lookup(1, later), Lookup::Full);
        assert_eq!(cache.lookup(3, later), Lookup::Hit("s3"));
    }

    /// Two folds of different schemas prepared at once on one connection
    /// (pipelined), with room for one: the second is not kept, and the
    /// count stays true.
    #[test]
    fn a_cache_filled_meanwhile_keeps_what_it_has() {
        let held = Arc::new(AtomicUsize::new(0));
        let mut cache = StatementCache::new(NonZeroUsize::MIN, Arc::clone(&held));
        let now = Instant::now();
        assert_eq!(cache.lookup(1, now), Lookup::Room);
        assert_eq!(cache.lookup(2, now), Lookup::Room);
        cache.insert(1, "s1", now);
        cache.insert(2, "s2", now);
        assert_eq!(held.load(Ordering::Relaxed), 1);
        assert_eq!(cache.lookup(1, now), Lookup::Hit("s1"));
        assert_eq!(cache.lookup(2, now), Lookup::Full);
    }

    /// A statement whose plan changed shape is dropped, and the next fold
    /// prepares it again.
    #[test]
    fn a_removed_statement_is_prepared_again() {
        let held = Arc::new(AtomicUsize::new(0));
        let mut cache = StatementCache::new(NonZeroUsize::MIN, Arc::clone(&held));
        let now = Instant::now();
        cache.insert(1, "s1", now);
        cache.remove(1);
        cache.remove(1);
        assert_eq!(held.load(Ordering::Relaxed), 0);
        assert_eq!(cache.lookup(1, now), Lookup::Room);
        cache.insert(1, "s1 again", now);
        assert_eq!(cache.lookup(1, now), Lookup::Hit("s1 again"));
        assert_eq!(held.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_pool_counts_what_its_connections_hold() {
        let held = Arc::new(AtomicUsize::new(0));
        let capacity = NonZeroUsize::new(2).expect("capacity");
        let mut first = StatementCache::new(capacity, Arc::clone(&held));
        let mut second = StatementCache::new(capacity, Arc::clone(&held));
        let now = Instant::now();
        first.insert(1, "a", now);
        first.insert(2, "b", now);
        second.insert(1, "c", now);
        assert_eq!(held.load(Ordering::Relaxed), 3);
        // A stale entry replaced: one closed, one prepared.
        let later = now + STALE_AFTER;
        assert_eq!(first.lookup(3, later), Lookup::Room);
        assert_eq!(held.load(Ordering::Relaxed), 2);
        first.insert(3, "d", later);
        assert_eq!(held.load(Ordering::Relaxed), 3);
        // A connection closed.
        drop(first);
        assert_eq!(held.load(Ordering::Relaxed), 1);
    }
}

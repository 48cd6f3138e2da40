//! Lanes: folds pipelined on shared connections.
//!
//! A fold is one short statement, and on an exclusive connection each
//! costs a full round trip during which the connection does nothing else:
//! the server waits for pgfleet, pgfleet for the server, and both pay a
//! wake-up per fold. tokio-postgres pipelines the queries of concurrent
//! futures on one client, so folds that are due together are sent on a
//! connection that already has folds in flight, without waiting for their
//! answers, up to [`MAX_DEPTH`] at a time; the server runs them back to
//! back, and one read brings several answers.
//!
//! A lane is a pooled connection checked out for as long as folds are in
//! flight on it, and given back to the pool when the last one answers: at
//! a low fold rate every fold checks out and returns, as before. A new fold
//! goes to a new lane while the pool has a connection to spare, else to the
//! least busy lane, so load spreads over the server's backends before it
//! queues on one. A lane takes new folds only for [`OPEN_FOR`] after it
//! was checked out; then it drains and goes back to the pool, where
//! initialisation and VACUUM, which need a connection of their own (a
//! transaction, a long statement), wait their turn in the pool's queue
//! with the folds: under a steady stream of folds a lane would otherwise
//! never drain, and a thousand workers starting would wait forever. It
//! also bounds what a fold stuck on a lock holds up: the folds that joined
//! its lane within those milliseconds wait with it (at most until
//! `lock_timeout`); later ones go elsewhere.
//!
//! Not shared: a connection whose timeouts go in `SET LOCAL`s (a pooler),
//! where one fold's transaction must not take in another's statements, and
//! a connection marked discarded (no answer in time, lost, or a cancel
//! sent for one of its statements, which may have reached another fold's:
//! that fold fails with 57014 and its tick is skipped, nothing is lost).
//!
//! The lanes live on the actor thread that runs the workers (a
//! thread-local, per pool): they hold `Rc`s, never crossing threads.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{PgClient, PgConnection};

/// The most folds in flight on one connection.
pub const MAX_DEPTH: usize = 16;

/// Folds sent on a connection that already had one in flight, since the
/// process started (`pgfleet_folds_pipelined_total`).
pub static PIPELINED_FOLDS: AtomicU64 = AtomicU64::new(0);

/// How long a lane takes new folds after it was checked out.
pub const OPEN_FOR: Duration = Duration::from_millis(50);

thread_local! {
    /// One set per pool (by [`super::Database`]'s id). A reload that
    /// builds a new pool leaves an empty set behind: a few bytes.
    static LANE_SETS: RefCell<HashMap<u64, Rc<LaneSet>>> = RefCell::default();
}

/// The lanes of one pool on this thread.
#[derive(Default)]
pub struct LaneSet {
    lanes: RefCell<Vec<Rc<Lane>>>,
    /// Steps waiting for a connection of their own (initialisation,
    /// VACUUM). They come first: while there are any, no fold takes a
    /// connection from the pool (folds join the lanes already open, which
    /// soon drain), so the pool serves them.
    own_waiting: Cell<usize>,
    /// Woken when the last of them has its connection.
    own_served: Notify,
}

/// Counts a step waiting for a connection of its own, until dropped.
pub struct OwnWaiting(Rc<LaneSet>);

impl Drop for OwnWaiting {
    fn drop(&mut self) {
        let left = self.0.own_waiting.get().saturating_sub(1);
        self.0.own_waiting.set(left);
        if left == 0 {
            self.0.own_served.notify_waiters();
        }
    }
}

struct Lane {
    conn: PgConnection,
    in_flight: Cell<usize>,
    opened: Instant,
}

impl Lane {
    /// Takes new folds: young enough, and the connection still good.
    fn open(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.opened) < OPEN_FOR
            && !self.conn.is_discarded()
            && !self.conn.is_closed()
    }

    fn depth(&self) -> usize {
        if self.conn.set_local().is_some() {
            1
        } else {
            MAX_DEPTH
        }
    }
}

/// One fold's share of a lane; the connection goes back to the pool when
/// the last share of it is dropped.
pub struct LaneLease {
    lane: Rc<Lane>,
    set: Rc<LaneSet>,
}

impl LaneLease {
    pub fn client(&self) -> &PgClient {
        &self.lane.conn
    }
}

impl Drop for LaneLease {
    fn drop(&mut self) {
        let left = self.lane.in_flight.get().saturating_sub(1);
        self.lane.in_flight.set(left);
        if left == 0 {
            self.set
                .lanes
                .borrow_mut()
                .retain(|lane| !Rc::ptr_eq(lane, &self.lane));
        }
    }
}

impl LaneSet {
    /// This thread's lanes of pool `id`.
    pub fn of(id: u64) -> Rc<LaneSet> {
        LANE_SETS.with(|sets| Rc::clone(sets.borrow_mut().entry(id).or_default()))
    }

    /// A share of a lane that has room, unless a new lane is the better
    /// place (`pool_has_room`: the pool can hand out a connection now).
    pub fn join(self: &Rc<Self>, pool_has_room: bool, now: Instant) -> Option<LaneLease> {
        let pool_has_room = pool_has_room && !self.own_first();
        let lane = {
            let lanes = self.lanes.borrow();
            let least_busy = lanes
                .iter()
                .filter(|lane| lane.open(now) && lane.in_flight.get() < lane.depth())
                .min_by_key(|lane| lane.in_flight.get())?;
            if pool_has_room && least_busy.in_flight.get() > 0 {
                return None;
            }
            Rc::clone(least_busy)
        };
        Some(self.lease(lane))
    }

    /// A new lane on `conn`, with this fold's share of it.
    pub fn add(self: &Rc<Self>, conn: PgConnection, now: Instant) -> LaneLease {
        let lane = Rc::new(Lane {
            conn,
            in_flight: Cell::new(0),
            opened: now,
        });
        self.lanes.borrow_mut().push(Rc::clone(&lane));
        self.lease(lane)
    }

    /// A step starts waiting for a connection of its own.
    pub fn own_waiting(self: &Rc<Self>) -> OwnWaiting {
        self.own_waiting.set(self.own_waiting.get() + 1);
        OwnWaiting(Rc::clone(self))
    }

    /// Whether steps wait for a connection of their own, and so go first.
    pub fn own_first(&self) -> bool {
        self.own_waiting.get() > 0
    }

    /// Until no step waits for a connection of its own.
    pub async fn own_served(&self) {
        while self.own_first() {
            self.own_served.notified().await;
        }
    }

    fn lease(self: &Rc<Self>, lane: Rc<Lane>) -> LaneLease {
        if lane.in_flight.get() > 0 {
            PIPELINED_FOLDS.fetch_add(1, Ordering::Relaxed);
        }
        lane.in_flight.set(lane.in_flight.get() + 1);
        LaneLease {
            lane,
            set: Rc::clone(self),
        }
    }
}

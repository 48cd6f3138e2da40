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
//! A lane is a pooled connection checked out while folds are in flight on
//! it. It takes new folds while it answers: for [`OPEN_FOR`] after it took
//! its first fold or last gave an answer. That bounds what a fold stuck on
//! a lock holds up: the folds that joined its lane within those
//! milliseconds wait with it (at most `database.fold_lock_timeout`, a few
//! milliseconds); later ones go elsewhere. A schema's initialisation,
//! which needs a connection of its own (a transaction), goes first: each
//! that waits gives the pool one lane back (an idle one at once, else the
//! least busy one once it drains), and while any waits, folds take no new
//! connection (a start of 100,000 schemas depends on it). VACUUM, which
//! needs one too, is maintenance and does not go first: it takes a lane
//! only when that lane has nothing in flight, within a bulkhead of its
//! own, and is postponed otherwise (see `db::maintenance`).
//!
//! # Homes
//!
//! Each schema has a home lane, one of `pool_size` (by a hash of its
//! name). Its folds go there while that lane is open, waiting for room in
//! it when it is full; only when the home has no open lane do they go to a
//! new connection, if the pool has one to spare, else to the least busy
//! open lane. A home lane that drains stays checked out, parked, for
//! [`PARK_FOR`], so that the home keeps its server backend. This
//! matters to the server, not to pgfleet: a backend caches the catalog
//! entries of each table it touches (about 11 KB each, kept for the
//! backend's life), and with folds spread at random every backend would in
//! the end touch every table. At 100,000 schemas that is 1.1 GB a backend,
//! and until the caches are warm each fold costs the server four times its
//! warm cost (measured: 16 backends at 100% of both cores kept up with 71%
//! of 1,667 folds a second). With homes, each backend caches its share.
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
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{PgClient, PgConnection};

/// The most folds in flight on one connection.
pub const MAX_DEPTH: usize = 16;

/// Folds sent on a connection that already had one in flight, since the
/// process started (`pgfleet_folds_pipelined_total`).
pub static PIPELINED_FOLDS: AtomicU64 = AtomicU64::new(0);

/// A lane takes new folds for this long after it took its first one or
/// last answered one.
pub const OPEN_FOR: Duration = Duration::from_millis(50);

/// How long a home lane with nothing in flight keeps its connection before
/// giving it back to the pool.
pub const PARK_FOR: Duration = Duration::from_secs(1);

thread_local! {
    /// One set per pool (by [`super::Database`]'s id), removed when the
    /// pool's `Database` is gone (see [`LaneSet::of`]).
    static LANE_SETS: RefCell<HashMap<u64, Rc<LaneSet>>> = RefCell::default();
}

/// The lanes of one pool on this thread.
#[derive(Default)]
pub struct LaneSet {
    lanes: RefCell<Vec<Rc<Lane>>>,
    /// Steps waiting for a connection of their own (initialisation).
    /// They come first: while there are any, no lane takes new folds and
    /// no fold takes a connection from the pool, so the lanes drain and
    /// the pool serves them.
    own_waiting: Cell<usize>,
    /// Woken when the last of them has its connection.
    own_served: Notify,
    /// Maintenance steps (VACUUM) waiting for or holding a connection:
    /// they do not go first, and have a bulkhead of their own (see
    /// `db::maintenance`).
    in_maintenance: Cell<usize>,
    /// The pool is gone: lanes that drain park no more.
    retired: Cell<bool>,
    /// Woken at each answer on any lane: a fold that found every lane full
    /// and the pool empty.
    room_anywhere: Notify,
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

/// A maintenance step's place in the bulkhead, until dropped.
pub struct MaintenanceSlot(Rc<LaneSet>);

impl Drop for MaintenanceSlot {
    fn drop(&mut self) {
        let left = self.0.in_maintenance.get().saturating_sub(1);
        self.0.in_maintenance.set(left);
    }
}

pub struct Lane {
    conn: PgConnection,
    /// Given back to the pool once drained, for a step that needs a
    /// connection of its own.
    closing: Cell<bool>,
    /// Woken at each answer: a fold waiting for room in its home lane.
    /// Shared with those waiters rather than the lane itself, so that a
    /// waiter never keeps the lane's connection out of the pool; woken
    /// all at once when the lane leaves the set ([`Lane::leave`]).
    room: Rc<Notify>,
    /// The home this lane serves; `None` for a lane opened while the
    /// home had one (it goes back to the pool once drained).
    home: Option<usize>,
    in_flight: Cell<usize>,
    /// When it took its first fold or last answered one.
    last_answer: Cell<Instant>,
    /// When its last fold answered, while nothing is in flight.
    idle_since: Cell<Instant>,
}

impl Lane {
    fn good(&self) -> bool {
        !self.conn.is_discarded() && !self.conn.is_closed()
    }

    /// Takes new folds: it answers (or has nothing in flight), and the
    /// connection is still good.
    fn open(&self, now: Instant) -> bool {
        self.good()
            && !self.closing.get()
            && (self.in_flight.get() == 0
                || now.saturating_duration_since(self.last_answer.get()) < OPEN_FOR)
    }

    fn has_room(&self) -> bool {
        let depth = if self.conn.set_local().is_some() {
            1
        } else {
            MAX_DEPTH
        };
        self.in_flight.get() < depth
    }

    /// In flight, and no answer for [`OPEN_FOR`]: stuck, for now.
    fn stuck(&self, now: Instant) -> bool {
        self.in_flight.get() > 0
            && now.saturating_duration_since(self.last_answer.get()) >= OPEN_FOR
    }

    /// The lane is out of the set (drained and not parked, given back to
    /// the pool, or taken for a step of its own): whoever waited for room
    /// in it looks again at once, elsewhere.
    fn leave(&self) {
        self.room.notify_waiters();
    }

    /// Parked: nothing in flight for at least `for_at_least`.
    fn idle_for(&self, now: Instant, for_at_least: Duration) -> bool {
        self.in_flight.get() == 0
            && now.saturating_duration_since(self.idle_since.get()) >= for_at_least
    }
}

/// One fold's share of a lane; the connection goes back to the pool when
/// the last share of it is dropped, unless it stays parked for its home.
pub struct LaneLease {
    lane: Rc<Lane>,
    set: Rc<LaneSet>,
}

/// Room in a full home lane, waited for without holding the lane, so a
/// lane that leaves the set while folds wait for it gives its connection
/// back to the pool at once, and wakes them to look elsewhere.
///
/// Holding the lane itself here (as before) kept its connection checked
/// out until each waiter's deadline (`connect_timeout`) once the lane had
/// drained and left the set, since nothing woke them: a lane leaves when
/// a step waits for a connection of its own, so frequent VACUUMs behind a
/// pooler (one fold per lane, many folds waiting for room) took the
/// pool's connections out of use for seconds at a time, while those
/// VACUUMs waited for them and no fold could open a lane. Measured
/// through PgBouncer on a loaded machine (50 schemas, `naptime: 100ms`):
/// 1 to 24% of the folds of the same run without VACUUM; 93 to 101%
/// once waiters no longer held the lane.
pub struct Room(Rc<Notify>);

impl Room {
    /// Until the lane answers a fold, stops answering (the sweep wakes
    /// its waiters then, and they go elsewhere), or leaves the set.
    /// Waiters keep their turn: each answer wakes one.
    pub async fn wait(&self) {
        self.0.notified().await;
    }
}

/// What a fold does next (see [`LaneSet::join`]).
pub enum Joined {
    Lease(LaneLease),
    /// Its home lane is full: wait for an answer on it ([`Room::wait`]).
    HomeFull(Room),
    /// Take a connection from the pool, for a new lane.
    NewLane,
    /// Steps that need a connection of their own go first.
    OwnFirst,
}

impl LaneLease {
    pub fn client(&self) -> &PgClient {
        &self.lane.conn
    }

    /// When the lane last answered a fold (or took its first one): a fold
    /// queued behind others can start on the server from then on. A fold
    /// that gave up on its answer discards the connection, and its share's
    /// release does not count as an answer.
    pub fn last_answer(&self) -> Instant {
        self.lane.last_answer.get()
    }
}

impl Drop for LaneLease {
    fn drop(&mut self) {
        let lane = &self.lane;
        let now = Instant::now();
        if !lane.conn.is_discarded() {
            lane.last_answer.set(now);
        }
        let left = lane.in_flight.get().saturating_sub(1);
        lane.in_flight.set(left);
        lane.room.notify_one();
        self.set.room_anywhere.notify_one();
        if left == 0 {
            lane.idle_since.set(now);
            let park = lane.home.is_some()
                && lane.good()
                && !lane.closing.get()
                && !self.set.own_first()
                && !self.set.retired.get();
            if !park {
                self.set
                    .lanes
                    .borrow_mut()
                    .retain(|other| !Rc::ptr_eq(other, lane));
                lane.leave();
            }
        }
    }
}

impl LaneSet {
    /// This thread's lanes of pool `id`. The first call for a pool starts
    /// a task that gives parked connections back after [`PARK_FOR`], and
    /// all of them once `alive` (made by `watch`, on that first call only)
    /// says the pool's `Database` is gone.
    pub fn of<A: Fn() -> bool + 'static>(id: u64, watch: impl FnOnce() -> A) -> Rc<LaneSet> {
        LANE_SETS.with(|sets| {
            let mut sets = sets.borrow_mut();
            if let Some(set) = sets.get(&id) {
                return Rc::clone(set);
            }
            let set = Rc::new(LaneSet::default());
            sets.insert(id, Rc::clone(&set));
            tokio::task::spawn_local(sweep(id, Rc::downgrade(&set), watch()));
            set
        })
    }

    /// Where a fold of `home` goes: its home's lane while that is open
    /// (or waits for room in it); else a new lane while the pool has a
    /// connection to spare (`pool_has_room`) and no step needs one of its
    /// own; else the least busy open lane; else the pool's queue.
    pub fn join(self: &Rc<Self>, home: usize, pool_has_room: bool, now: Instant) -> Joined {
        let own_first = self.own_first();
        let lane = {
            let lanes = self.lanes.borrow();
            let home_lane = lanes
                .iter()
                .find(|lane| lane.home == Some(home) && lane.open(now));
            match home_lane {
                Some(lane) if lane.has_room() => Rc::clone(lane),
                Some(lane) => return Joined::HomeFull(Room(Rc::clone(&lane.room))),
                None if pool_has_room && !own_first => return Joined::NewLane,
                None => match lanes
                    .iter()
                    .filter(|lane| lane.open(now) && lane.has_room())
                    .min_by_key(|lane| lane.in_flight.get())
                {
                    Some(lane) => Rc::clone(lane),
                    None if own_first => return Joined::OwnFirst,
                    None => return Joined::NewLane,
                },
            }
        };
        Joined::Lease(self.lease(lane, now))
    }

    /// A new lane on `conn` (for `home`, if that home has none), with this
    /// fold's share of it.
    pub fn add(self: &Rc<Self>, conn: PgConnection, home: usize, now: Instant) -> LaneLease {
        let vacant = !self
            .lanes
            .borrow()
            .iter()
            .any(|lane| lane.home == Some(home));
        let lane = Rc::new(Lane {
            conn,
            closing: Cell::new(false),
            room: Rc::default(),
            home: vacant.then_some(home),
            in_flight: Cell::new(0),
            last_answer: Cell::new(now),
            idle_since: Cell::new(now),
        });
        self.lanes.borrow_mut().push(Rc::clone(&lane));
        self.lease(lane, now)
    }

    /// A step starts waiting for a connection of its own: one lane goes
    /// back to the pool for it, the longest idle one at once, else the
    /// least busy once it drains.
    pub fn own_waiting(self: &Rc<Self>) -> OwnWaiting {
        self.own_waiting.set(self.own_waiting.get() + 1);
        let idle = {
            let mut lanes = self.lanes.borrow_mut();
            let longest_idle = lanes
                .iter()
                .enumerate()
                .filter(|(_, lane)| lane.in_flight.get() == 0)
                .min_by_key(|(_, lane)| lane.idle_since.get())
                .map(|(at, _)| at);
            match longest_idle {
                Some(at) => Some(lanes.swap_remove(at)),
                None => {
                    if let Some(lane) = lanes
                        .iter()
                        .filter(|lane| !lane.closing.get())
                        .min_by_key(|lane| lane.in_flight.get())
                    {
                        lane.closing.set(true);
                    }
                    None
                }
            }
        };
        // Dropped outside the borrow: back to the pool.
        if let Some(lane) = idle {
            lane.leave();
        }
        OwnWaiting(Rc::clone(self))
    }

    /// Maintenance steps waiting for or holding a connection.
    pub fn in_maintenance(&self) -> usize {
        self.in_maintenance.get()
    }

    /// Lanes with nothing in flight (parked for their home).
    pub fn idle_lanes(&self) -> usize {
        self.lanes
            .borrow()
            .iter()
            .filter(|lane| lane.in_flight.get() == 0 && lane.good())
            .count()
    }

    /// A place in the maintenance bulkhead, counted until dropped.
    pub fn maintenance_slot(self: &Rc<Self>) -> MaintenanceSlot {
        self.in_maintenance.set(self.in_maintenance.get() + 1);
        MaintenanceSlot(Rc::clone(self))
    }

    /// The connection of the lane idle the longest, taken out of the set
    /// for a step of its own; `None` when every lane has folds in flight.
    /// Nothing else holds a lane with nothing in flight (no lease, and
    /// waiters hold only its [`Room`]), so its connection comes out of it
    /// whole; were it held, it would go back to the pool instead.
    pub fn take_idle(&self) -> Option<PgConnection> {
        let lane = {
            let mut lanes = self.lanes.borrow_mut();
            let longest_idle = lanes
                .iter()
                .enumerate()
                .filter(|(_, lane)| lane.in_flight.get() == 0 && lane.good())
                .min_by_key(|(_, lane)| lane.idle_since.get())
                .map(|(at, _)| at)?;
            lanes.swap_remove(longest_idle)
        };
        lane.leave();
        Rc::try_unwrap(lane).ok().map(|lane| lane.conn)
    }

    /// Whether steps wait for a connection of their own, and so go first.
    pub fn own_first(&self) -> bool {
        self.own_waiting.get() > 0
    }

    /// Until a lane answers a fold (see `room_anywhere`).
    pub async fn room_anywhere(&self) {
        self.room_anywhere.notified().await;
    }

    /// Until no step waits for a connection of its own.
    pub async fn own_served(&self) {
        while self.own_first() {
            self.own_served.notified().await;
        }
    }

    /// Gives the lanes idle for `for_at_least` back to the pool.
    fn give_back_idle(&self, now: Instant, for_at_least: Duration) {
        let idle: Vec<Rc<Lane>> = {
            let mut lanes = self.lanes.borrow_mut();
            let (idle, busy) = lanes
                .drain(..)
                .partition(|lane| lane.idle_for(now, for_at_least));
            *lanes = busy;
            idle
        };
        // Dropped here, outside the borrow: each goes back to the pool.
        for lane in idle {
            lane.leave();
        }
    }

    fn lease(self: &Rc<Self>, lane: Rc<Lane>, now: Instant) -> LaneLease {
        if lane.in_flight.get() > 0 {
            PIPELINED_FOLDS.fetch_add(1, Ordering::Relaxed);
        } else {
            lane.last_answer.set(now);
        }
        lane.in_flight.set(lane.in_flight.get() + 1);
        LaneLease {
            lane,
            set: Rc::clone(self),
        }
    }
}

/// Every [`OPEN_FOR`]: wakes the folds waiting for room in a lane that
/// stopped answering (they go elsewhere), and gives back what stays parked
/// past [`PARK_FOR`]; once the pool is gone, gives back the rest and
/// forgets the set.
async fn sweep(id: u64, set: Weak<LaneSet>, alive: impl Fn() -> bool) {
    loop {
        tokio::time::sleep(OPEN_FOR).await;
        let Some(set) = set.upgrade() else {
            return;
        };
        if !alive() {
            set.retired.set(true);
            set.give_back_idle(Instant::now(), Duration::ZERO);
            LANE_SETS.with(|sets| sets.borrow_mut().remove(&id));
            return;
        }
        let now = Instant::now();
        for lane in set.lanes.borrow().iter().filter(|lane| lane.stuck(now)) {
            lane.room.notify_waiters();
        }
        set.give_back_idle(now, PARK_FOR);
    }
}

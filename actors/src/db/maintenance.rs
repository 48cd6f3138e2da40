//! Maintenance (a worker's VACUUM) beside the folds, in a bulkhead of its
//! own.
//!
//! A VACUUM is maintenance: worth doing soon, never worth a fold. It needs
//! a connection of its own (it cannot run in a transaction, nor pipelined
//! with folds), but unlike a schema's initialisation it does not go first:
//!
//! - at most [`at_once`] VACUUMs of a pool wait for or hold a connection
//!   at a time, so however many are due, and however long one takes (a big
//!   table), the folds keep the rest of the pool;
//! - a VACUUM takes only a connection nobody is using: an idle pooled one,
//!   room in the pool to open one, or a lane with no fold in flight. When
//!   there is none it is postponed, not queued (tried again after its
//!   schema's next fold), and nothing waits for it.
//!
//! Before, a VACUUM waited for a connection the way initialisation does:
//! first, with a lane given back to the pool for it, and no fold taking a
//! new connection while any VACUUM waited. With frequent VACUUMs there was
//! nearly always one waiting, so the folds lived on whatever lanes were
//! open; and every stuck VACUUM held a connection: behind PgBouncer, with 8
//! of 50 tables locked against VACUUM (`SHARE UPDATE EXCLUSIVE`, as
//! autovacuum or `CREATE INDEX CONCURRENTLY` hold), their VACUUMs took all
//! 8 connections and no schema folded at all (0 folds in 10 s, against
//! 5,000 without VACUUM). (Nor does a VACUUM wait for a lock any more, see
//! the fold's `vacuum`, `job/fold/statements.rs`.) The figures that chose this are in BENCHMARKS.md
//! ("How the VACUUM fix was chosen").

/// What a maintenance step finds when it asks for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Available {
    /// Maintenance steps of this pool that wait for or hold a connection.
    pub in_maintenance: usize,
    /// The bulkhead's size ([`at_once`]).
    pub at_once: usize,
    /// Connections idle in the pool itself (not in a lane).
    pub pool_idle: u32,
    /// Connections the pool holds open, and the most it may.
    pub pool_open: u32,
    pub pool_size: u32,
    /// Lanes with no fold in flight (parked for their home).
    pub idle_lanes: usize,
}

/// Where a maintenance step gets its connection, or why it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An idle pooled connection, or a new one: the pool has room.
    Pool,
    /// The connection of the lane idle the longest: its home takes
    /// another when its next fold comes.
    IdleLane,
    /// Not now; tried again after the schema's next fold.
    Postpone(Why),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// [`at_once`] maintenance steps already wait for or hold one.
    Bulkhead,
    /// Every connection carries folds.
    NoFreeConnection,
}

impl Why {
    /// For the log line.
    pub fn describe(self) -> &'static str {
        match self {
            Why::Bulkhead => "other VACUUMs hold the connections maintenance may use",
            Why::NoFreeConnection => "every connection is busy with folds",
        }
    }
}

/// How many maintenance steps of a pool may wait for or hold a
/// connection at once: a quarter of the pool, at least one. One alone
/// would let a single stuck VACUUM (a lock behind a pooler, up to
/// `statement_timeout + connect_timeout`) hold up every other table's;
/// more than a quarter would let VACUUMs crowd the folds' connections.
pub fn at_once(pool_size: u32) -> usize {
    usize::try_from(pool_size / 4).unwrap_or(usize::MAX).max(1)
}

/// Where a maintenance step gets its connection: from the pool while it
/// has one idle or room to open one, else from a lane with nothing in
/// flight; never by waiting, and never beyond the bulkhead.
pub fn source(available: Available) -> Source {
    if available.in_maintenance >= available.at_once {
        Source::Postpone(Why::Bulkhead)
    } else if available.pool_idle > 0 || available.pool_open < available.pool_size {
        Source::Pool
    } else if available.idle_lanes > 0 {
        Source::IdleLane
    } else {
        Source::Postpone(Why::NoFreeConnection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> Available {
        Available {
            in_maintenance: 0,
            at_once: 2,
            pool_idle: 0,
            pool_open: 8,
            pool_size: 8,
            idle_lanes: 0,
        }
    }

    #[test]
    fn the_bulkhead_is_a_quarter_of_the_pool_and_at_least_one() {
        assert_eq!(at_once(1), 1);
        assert_eq!(at_once(4), 1);
        assert_eq!(at_once(8), 2);
        assert_eq!(at_once(16), 4);
        assert_eq!(at_once(0), 1);
    }

    #[test]
    fn a_free_connection_is_taken_from_the_pool_first() {
        let idle = Available {
            pool_idle: 1,
            idle_lanes: 3,
            ..busy()
        };
        assert_eq!(source(idle), Source::Pool);
        let not_all_open = Available {
            pool_open: 5,
            idle_lanes: 3,
            ..busy()
        };
        assert_eq!(source(not_all_open), Source::Pool);
    }

    #[test]
    fn else_a_lane_with_nothing_in_flight() {
        let parked = Available {
            idle_lanes: 1,
            ..busy()
        };
        assert_eq!(source(parked), Source::IdleLane);
    }

    #[test]
    fn never_waits_behind_folds() {
        assert_eq!(source(busy()), Source::Postpone(Why::NoFreeConnection));
    }

    #[test]
    fn never_beyond_the_bulkhead_even_with_connections_free() {
        let full = Available {
            in_maintenance: 2,
            pool_idle: 8,
            idle_lanes: 8,
            ..busy()
        };
        assert_eq!(source(full), Source::Postpone(Why::Bulkhead));
        let one_left = Available {
            in_maintenance: 1,
            pool_idle: 8,
            ..busy()
        };
        assert_eq!(source(one_left), Source::Pool);
    }
}

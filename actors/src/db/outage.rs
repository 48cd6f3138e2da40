//! The outage gate: when the database is unreachable, one probe at a time.
//!
//! Without it, every worker whose tick comes up asks the pool for a
//! connection, and a database that is down for a minute sees thousands of
//! connection attempts (measured: 31,378 restarts in 15 s with "restart on
//! every error"). With it, the first failure closes the gate; while closed,
//! ticks are skipped without touching the pool, and one tick at a time is
//! let through as a probe, at intervals that double up to `restart.delay`.
//! The first success opens the gate again, so folding resumes at most
//! `restart.delay + naptime` after the database is back.
//!
//! A refused connection (a wrong password, TLS, a missing database) goes
//! through the same gate: every attempt would be refused alike, so the same
//! capped backoff spaces them, but it is logged as what it is
//! (`database_refused`), not as an outage. A statement that fails on one
//! established connection never touches the gate: that connection is
//! discarded and the work retried on a fresh one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The first probe interval after an outage begins.
const FIRST_PROBE: Duration = Duration::from_millis(250);

/// A long outage is reported when it begins, when it ends, and in between
/// at a slowing rate: 1 s after it began, then 2 s later, 4 s, … up to one
/// line every `MAX_REPORT_INTERVAL` (an hour at the defaults is about a
/// dozen lines, not one per probe).
const FIRST_REPORT: Duration = Duration::from_secs(1);
const MAX_REPORT_INTERVAL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug)]
pub struct OutageGate {
    state: Mutex<State>,
    /// Wakes callers waiting for a pooled connection when an attempt
    /// fails: bb8 would keep them waiting for the whole connect_timeout.
    failed: Notify,
}

#[derive(Debug, Default)]
struct State {
    max_interval: Duration,
    down_since: Option<Instant>,
    next_probe: Option<Instant>,
    interval: Duration,
    /// Failed attempts since the outage began.
    attempts: u64,
    next_report: Option<Instant>,
    report_interval: Duration,
}

/// What a repeated report says about the outage so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutageSoFar {
    pub attempts: u64,
    pub down_for: Duration,
}

impl OutageGate {
    pub fn new(max_interval: Duration) -> Self {
        OutageGate {
            state: Mutex::new(State {
                max_interval: max_interval.max(Duration::from_millis(1)),
                ..State::default()
            }),
            failed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// May a worker talk to the database now? Always while the database is
    /// up; during an outage, only the one probe that is due.
    pub fn admit(&self, now: Instant) -> bool {
        let mut state = self.state();
        match state.next_probe {
            None => true,
            Some(due) if now >= due => {
                state.next_probe = Some(now + state.interval);
                true
            }
            Some(_) => false,
        }
    }

    /// A connection attempt or statement failed for want of a database.
    /// Returns true when this failure begins an outage.
    pub fn unreachable(&self, now: Instant) -> bool {
        self.failed.notify_waiters();
        let mut state = self.state();
        let begins = state.down_since.is_none();
        state.interval = if begins {
            FIRST_PROBE.min(state.max_interval)
        } else {
            (state.interval * 2).min(state.max_interval)
        };
        state.down_since.get_or_insert(now);
        state.next_probe = Some(now + state.interval);
        if begins {
            state.attempts = 0;
            state.report_interval = FIRST_REPORT;
            state.next_report = Some(now + FIRST_REPORT);
        }
        state.attempts += 1;
        begins
    }

    /// Whether a failure during an outage is due to be reported again, at
    /// the slowing rate; and what to say.
    pub fn repeat_report_due(&self, now: Instant) -> Option<OutageSoFar> {
        let mut state = self.state();
        let down_since = state.down_since?;
        match state.next_report {
            Some(due) if now >= due => {
                state.report_interval = (state.report_interval * 2).min(MAX_REPORT_INTERVAL);
                state.next_report = Some(now + state.report_interval);
                Some(OutageSoFar {
                    attempts: state.attempts,
                    down_for: now.saturating_duration_since(down_since),
                })
            }
            _ => None,
        }
    }

    /// The database answered. Returns how long it had been unreachable,
    /// when this ends an outage.
    pub fn reachable(&self, now: Instant) -> Option<Duration> {
        let mut state = self.state();
        let outage = state
            .down_since
            .take()
            .map(|since| now.saturating_duration_since(since));
        state.next_probe = None;
        state.interval = Duration::ZERO;
        state.next_report = None;
        outage
    }

    /// A reload changed `restart.delay`.
    pub fn set_max_interval(&self, max_interval: Duration) {
        self.state().max_interval = max_interval.max(Duration::from_millis(1));
    }

    /// Resolves at the next failed connection attempt.
    pub async fn next_failure(&self) {
        self.failed.notified().await;
    }

    #[cfg(test)]
    fn is_down(&self) -> bool {
        self.state().down_since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_until_a_failure() {
        let gate = OutageGate::new(Duration::from_secs(5));
        let now = Instant::now();
        assert!(gate.admit(now));
        assert!(gate.admit(now));
        assert_eq!(gate.reachable(now), None);
    }

    #[test]
    fn one_probe_at_doubling_intervals_up_to_the_cap() {
        let gate = OutageGate::new(Duration::from_secs(1));
        let start = Instant::now();
        assert!(gate.unreachable(start));
        assert!(!gate.admit(start + Duration::from_millis(100)));
        let mut now = start + Duration::from_millis(250);
        assert!(gate.admit(now), "the probe is due");
        assert!(!gate.admit(now), "only one probe");
        let mut intervals = Vec::new();
        for _ in 0..4 {
            assert!(!gate.unreachable(now), "still the same outage");
            let mut waited = Duration::ZERO;
            while !gate.admit(now + waited) {
                waited += Duration::from_millis(50);
            }
            intervals.push(waited.as_millis());
            now += waited;
        }
        assert_eq!(intervals, [500, 1000, 1000, 1000]);
    }

    #[test]
    fn a_long_outage_is_reported_at_a_slowing_rate() {
        let gate = OutageGate::new(Duration::from_secs(5));
        let start = Instant::now();
        assert!(gate.unreachable(start));
        let mut reported_at = Vec::new();
        // A probe every 5 s for an hour.
        for second in (0..3600).step_by(5) {
            let now = start + Duration::from_secs(second);
            gate.unreachable(now);
            if let Some(so_far) = gate.repeat_report_due(now) {
                assert_eq!(so_far.down_for, Duration::from_secs(second));
                reported_at.push(second);
            }
        }
        assert_eq!(
            reported_at,
            [5, 10, 15, 25, 45, 80, 145, 275, 535, 1050, 1950, 2850],
            "{reported_at:?}"
        );
        gate.reachable(start + Duration::from_secs(3600));
        assert_eq!(
            gate.repeat_report_due(start + Duration::from_secs(3601)),
            None
        );
    }

    #[test]
    fn success_reopens_and_reports_the_outage() {
        let gate = OutageGate::new(Duration::from_secs(1));
        let start = Instant::now();
        gate.unreachable(start);
        assert!(gate.is_down());
        assert_eq!(
            gate.reachable(start + Duration::from_secs(3)),
            Some(Duration::from_secs(3))
        );
        assert!(!gate.is_down());
        assert!(gate.admit(start + Duration::from_secs(3)));
    }
}

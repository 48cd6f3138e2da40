//! Whether this instance may start a fold now, when several instances
//! share the fleet (`coordination.enabled`): the local half of the lease
//! whose other half the server enforces.
//!
//! The coordination session's `idle_session_timeout` (`coordination.lease`)
//! makes the server end a session that went quiet, and with it every
//! bucket lock it held, so a frozen or cut-off instance's schemas go to
//! the others. An instance must stop starting folds *before* the server
//! can have let its locks go: each answered ping extends the trust to
//! when the ping was *sent* plus the trust window (shorter than the
//! lease). The clock is `CLOCK_BOOTTIME`, which, unlike the monotonic
//! clock, also counts time the host spent suspended or the VM frozen: a
//! process stopped (`SIGSTOP`), a VM paused, a laptop asleep, each finds
//! its trust expired when it runs again, and folds nothing before it has
//! rejoined. A fold that starts just inside the window and runs past the
//! lease is still fenced in the database (see `ownership::Keys::fence`).
//!
//! One [`Lease`] is shared by the coordination actor (which extends it)
//! and every worker (which reads it before each fold, and again once it
//! has a connection), through an atomic: no message, no lock. Without
//! coordination it always trusts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A moment on the boot clock, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

impl Stamp {
    /// Now, on `CLOCK_BOOTTIME` (Linux), else the monotonic clock.
    pub fn now() -> Self {
        Stamp(boot_nanos())
    }

    pub fn after(self, duration: Duration) -> Self {
        Stamp(
            self.0
                .saturating_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

#[cfg(target_os = "linux")]
fn boot_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given, nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) };
    if rc != 0 {
        return monotonic_nanos();
    }
    u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
fn boot_nanos() -> u64 {
    monotonic_nanos()
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn monotonic_nanos() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(std::time::Instant::now);
    u64::try_from(base.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[derive(Clone)]
pub struct Lease {
    /// Until when folds may start; 0 = not now. None: always.
    until: Option<Arc<AtomicU64>>,
}

impl Lease {
    /// Always trusts: one instance, or coordination off.
    pub fn always() -> Self {
        Lease { until: None }
    }

    /// Trusts nothing until [`Lease::extend`] says so.
    pub fn coordinated() -> Self {
        Lease {
            until: Some(Arc::new(AtomicU64::new(0))),
        }
    }

    /// Whether a fold may start at `now`.
    pub fn trusted_at(&self, now: Stamp) -> bool {
        match &self.until {
            None => true,
            Some(until) => now.0 < until.load(Ordering::Acquire),
        }
    }

    /// Read before every fold: without coordination, no clock is read.
    pub fn trusted(&self) -> bool {
        self.until.is_none() || self.trusted_at(Stamp::now())
    }

    /// Trust until `from + window`: `from` is when the ping that proved
    /// the session alive was sent. Never moves the deadline back.
    pub fn extend(&self, from: Stamp, window: Duration) {
        if let Some(until) = &self.until {
            until.fetch_max(from.after(window).0, Ordering::AcqRel);
        }
    }

    /// Trust nothing from now on (the session was lost, or left).
    pub fn revoke(&self) {
        if let Some(until) = &self.until {
            until.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_coordination_always_trusted() {
        let lease = Lease::always();
        assert!(lease.trusted());
        lease.revoke();
        assert!(lease.trusted());
    }

    #[test]
    fn trust_runs_from_the_ping_sent_and_ends_with_the_window() {
        let lease = Lease::coordinated();
        let sent = Stamp::now();
        assert!(!lease.trusted_at(sent), "nothing before the first ping");
        lease.extend(sent, Duration::from_secs(2));
        assert!(lease.trusted_at(sent.after(Duration::from_millis(1999))));
        assert!(!lease.trusted_at(sent.after(Duration::from_secs(2))));
        // A process continued after SIGSTOP: its clock has moved on.
        assert!(!lease.trusted_at(sent.after(Duration::from_secs(10))));
    }

    #[test]
    fn an_older_ping_never_shortens_trust_and_a_revoke_ends_it() {
        let lease = Lease::coordinated();
        let early = Stamp::now();
        let late = early.after(Duration::from_secs(1));
        lease.extend(late, Duration::from_secs(2));
        lease.extend(early, Duration::from_secs(2));
        assert!(lease.trusted_at(late.after(Duration::from_millis(1500))));
        lease.revoke();
        assert!(!lease.trusted_at(late));
    }

    #[test]
    fn the_boot_clock_moves_forward() {
        let first = Stamp::now();
        std::thread::sleep(Duration::from_millis(5));
        let second = Stamp::now();
        assert!(second > first);
        assert!(second.0 - first.0 >= 5_000_000);
    }
}

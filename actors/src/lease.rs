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
//! lease), on the monotonic clock, so a process stopped (`SIGSTOP`) and
//! continued finds its trust long expired and folds nothing before it has
//! rejoined. A fold that starts just inside the window and runs past the
//! lease is still fenced in the database (see `ownership::Keys::fence`).
//!
//! One [`Lease`] is shared by the coordination actor (which extends it)
//! and every worker (which reads it before each fold), through an atomic:
//! no message, no lock. Without coordination it always trusts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Lease {
    inner: Option<Arc<Shared>>,
}

struct Shared {
    /// What the deadlines count from.
    base: Instant,
    /// Nanoseconds after `base` until which folds may start; 0 = none.
    until: AtomicU64,
}

impl Lease {
    /// Always trusts: one instance, or coordination off.
    pub fn always() -> Self {
        Lease { inner: None }
    }

    /// Trusts nothing until [`Lease::extend`] says so.
    pub fn coordinated() -> Self {
        Lease {
            inner: Some(Arc::new(Shared {
                base: Instant::now(),
                until: AtomicU64::new(0),
            })),
        }
    }

    pub fn is_coordinated(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether a fold may start at `now`.
    pub fn trusted_at(&self, now: Instant) -> bool {
        match &self.inner {
            None => true,
            Some(shared) => {
                let until = shared.until.load(Ordering::Acquire);
                until != 0 && Self::nanos(shared.base, now) < until
            }
        }
    }

    pub fn trusted(&self) -> bool {
        self.trusted_at(Instant::now())
    }

    /// Trust until `from + window`: `from` is when the ping that proved
    /// the session alive was sent. Never moves the deadline back.
    pub fn extend(&self, from: Instant, window: Duration) {
        if let Some(shared) = &self.inner {
            let until = Self::nanos(shared.base, from + window).max(1);
            shared.until.fetch_max(until, Ordering::AcqRel);
        }
    }

    /// Trust nothing from now on (the session was lost, or left).
    pub fn revoke(&self) {
        if let Some(shared) = &self.inner {
            shared.until.store(0, Ordering::Release);
        }
    }

    /// How long trust lasts from `now`, if it does.
    pub fn remaining_at(&self, now: Instant) -> Option<Duration> {
        let shared = self.inner.as_ref()?;
        let until = shared.until.load(Ordering::Acquire);
        let now = Self::nanos(shared.base, now);
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    fn nanos(base: Instant, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
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
        assert_eq!(lease.remaining_at(Instant::now()), None);
    }

    #[test]
    fn trust_runs_from_the_ping_sent_and_ends_with_the_window() {
        let lease = Lease::coordinated();
        let sent = Instant::now();
        assert!(!lease.trusted_at(sent), "nothing before the first ping");
        lease.extend(sent, Duration::from_secs(2));
        assert!(lease.trusted_at(sent + Duration::from_millis(1999)));
        assert!(!lease.trusted_at(sent + Duration::from_secs(2)));
        // A process continued after SIGSTOP: its clock has moved on.
        assert!(!lease.trusted_at(sent + Duration::from_secs(10)));
    }

    #[test]
    fn an_older_ping_never_shortens_trust_and_a_revoke_ends_it() {
        let lease = Lease::coordinated();
        let early = Instant::now();
        let late = early + Duration::from_secs(1);
        lease.extend(late, Duration::from_secs(2));
        lease.extend(early, Duration::from_secs(2));
        assert!(lease.trusted_at(late + Duration::from_millis(1500)));
        lease.revoke();
        assert!(!lease.trusted_at(late));
        assert_eq!(lease.remaining_at(late), None);
    }
}

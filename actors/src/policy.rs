//! The restart policy: when a failed worker starts again, when it is
//! given up, and what giving up means for the service.
//!
//! actix's own `Supervisor` restarts an actor at once, forever, with no
//! delay; a database that is down for a minute would see thousands of
//! reconnects a second. This is the policy an operator configures instead:
//! exponential backoff with a cap and jitter, a reset after a healthy run,
//! and a limit of restarts within a sliding window. It is plain logic over
//! instants, so it is tested without waiting.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::settings::{duration, Origin, RestartPolicyKind, RestartSettings};

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start the worker again after `delay`; `attempt` counts restarts since
    /// the worker last ran healthy for `reset_after`.
    Restart {
        attempt: u32,
        delay: Duration,
    },
    GiveUp {
        reason: String,
    },
}

/// One worker's failure history.
#[derive(Debug, Default, Clone)]
pub struct RestartHistory {
    failures: VecDeque<Instant>,
    consecutive: u32,
}

impl RestartHistory {
    /// Records a failure at `now` of a worker that had run for `ran_for`,
    /// and decides. `random` in [0, 1) draws the jitter.
    pub fn on_failure(
        &mut self,
        policy: &RestartSettings,
        now: Instant,
        ran_for: Duration,
        random: f64,
    ) -> Decision {
        if policy.policy == RestartPolicyKind::Never {
            return Decision::GiveUp {
                reason: "restart.policy is never".into(),
            };
        }
        if ran_for >= policy.reset_after {
            self.consecutive = 0;
        }
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|first| now.duration_since(*first) > policy.window)
        {
            self.failures.pop_front();
        }
        if self.failures.len() > policy.max_restarts as usize {
            return Decision::GiveUp {
                reason: format!(
                    "{} failures within restart.window ({}), more than restart.max_restarts ({})",
                    self.failures.len(),
                    duration::format(&policy.window),
                    policy.max_restarts
                ),
            };
        }
        self.consecutive += 1;
        Decision::Restart {
            attempt: self.consecutive,
            delay: backoff(policy, self.consecutive, random),
        }
    }
}

/// Exit code of a shutdown caused by giving up on a worker with
/// `restart.escalate`.
pub const EXIT_ESCALATED: i32 = 1;

/// What giving up on a worker does to the rest of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    /// The other workers go on; this one waits for a reload.
    None,
    /// `restart.escalate`: the whole service stops with `exit_code`, for
    /// whatever runs it (systemd, Kubernetes) to see and act on.
    StopService { exit_code: i32 },
}

/// Decides what giving up on a worker of `origin` escalates to, under
/// `policy`. A discovered schema never stops the service: one tenant's
/// odd table must not take every other tenant's folds down with it; it
/// is given up alone, and said so.
pub fn escalation(policy: &RestartSettings, origin: Origin) -> Escalation {
    if policy.escalate && origin == Origin::Listed {
        Escalation::StopService {
            exit_code: EXIT_ESCALATED,
        }
    } else {
        Escalation::None
    }
}

/// How long a discovered schema whose worker departed (its table gone, a
/// privilege refused) stays out of the fleet before a rescan may take it
/// again, after `departures` departures in a row: none after the first (a
/// table dropped and created again, a rename undone), then the restart
/// policy's backoff without jitter, so a table a rescan finds foldable
/// but a fold cannot fold (row-level security, a trigger) is not started
/// and stopped at every rescan.
pub fn departure_delay(policy: &RestartSettings, departures: u32) -> Duration {
    if departures <= 1 {
        Duration::ZERO
    } else {
        backoff(policy, departures - 1, 0.0)
    }
}

/// `delay * multiplier^(attempt-1)`, capped at `max_delay`, then shortened
/// by a random fraction of up to `jitter`, so it never exceeds the cap and
/// workers that failed together spread out.
pub fn backoff(policy: &RestartSettings, attempt: u32, random: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(1_000) as i32;
    let base = policy.delay.as_secs_f64() * policy.multiplier.powi(exponent);
    let capped = base.min(policy.max_delay.as_secs_f64());
    let jittered = capped * (1.0 - policy.jitter * random.clamp(0.0, 1.0));
    Duration::try_from_secs_f64(jittered).unwrap_or(policy.max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ConfigSources;

    fn policy() -> RestartSettings {
        let mut restart = ConfigSources::default()
            .load_without_env()
            .expect("defaults")
            .restart;
        restart.delay = Duration::from_secs(1);
        restart.max_delay = Duration::from_secs(10);
        restart.multiplier = 2.0;
        restart.jitter = 0.0;
        restart.max_restarts = 3;
        restart.window = Duration::from_secs(60);
        restart.reset_after = Duration::from_secs(30);
        restart
    }

    fn delays(
        history: &mut RestartHistory,
        policy: &RestartSettings,
        start: Instant,
        n: u64,
    ) -> Vec<Decision> {
        (0..n)
            .map(|i| {
                history.on_failure(
                    policy,
                    start + Duration::from_secs(i),
                    Duration::from_secs(1),
                    0.0,
                )
            })
            .collect()
    }

    #[test]
    fn giving_up_stops_the_service_only_with_escalate() {
        let mut policy = policy();
        policy.escalate = false;
        assert_eq!(escalation(&policy, Origin::Listed), Escalation::None);
        policy.escalate = true;
        assert_eq!(
            escalation(&policy, Origin::Listed),
            Escalation::StopService { exit_code: 1 }
        );
        // A discovered tenant is given up alone.
        assert_eq!(escalation(&policy, Origin::Discovered), Escalation::None);
        // With either restart policy: `never` gives up at the first
        // failure, and escalates then.
        policy.policy = RestartPolicyKind::Never;
        assert_eq!(
            escalation(&policy, Origin::Listed),
            Escalation::StopService {
                exit_code: EXIT_ESCALATED
            }
        );
    }

    #[test]
    fn a_departed_schema_comes_back_at_once_then_after_a_growing_pause() {
        let mut policy = policy();
        policy.delay = Duration::from_secs(5);
        policy.multiplier = 2.0;
        policy.max_delay = Duration::from_secs(60);
        policy.jitter = 0.5;
        let delays: Vec<Duration> = (1..=6).map(|n| departure_delay(&policy, n)).collect();
        assert_eq!(
            delays,
            [0, 5, 10, 20, 40, 60].map(Duration::from_secs),
            "no jitter: a rescan decides when"
        );
    }

    #[test]
    fn never_gives_up_at_once() {
        let mut policy = policy();
        policy.policy = RestartPolicyKind::Never;
        let decision =
            RestartHistory::default().on_failure(&policy, Instant::now(), Duration::ZERO, 0.5);
        assert!(matches!(decision, Decision::GiveUp { reason } if reason.contains("never")));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut policy = policy();
        policy.max_restarts = 100;
        let got: Vec<u64> = (1..=6)
            .map(|a| backoff(&policy, a, 0.0).as_secs())
            .collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
        policy.multiplier = 1.0;
        assert_eq!(backoff(&policy, 9, 0.0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_only_shortens_within_the_fraction() {
        let mut policy = policy();
        policy.jitter = 0.1;
        assert_eq!(backoff(&policy, 1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(&policy, 1, 1.0), Duration::from_millis(900));
        assert_eq!(backoff(&policy, 10, 0.5), Duration::from_millis(9_500));
    }

    #[test]
    fn too_many_failures_within_the_window_give_up() {
        let policy = policy();
        let mut history = RestartHistory::default();
        let decisions = delays(&mut history, &policy, Instant::now(), 4);
        assert!(matches!(decisions[2], Decision::Restart { attempt: 3, .. }));
        assert!(
            matches!(&decisions[3], Decision::GiveUp { reason } if reason.contains("4 failures")),
            "{decisions:?}"
        );
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let policy = policy();
        let mut history = RestartHistory::default();
        let start = Instant::now();
        delays(&mut history, &policy, start, 3);
        let later = start + Duration::from_secs(120);
        let decision = history.on_failure(&policy, later, Duration::from_secs(1), 0.0);
        assert!(matches!(decision, Decision::Restart { .. }), "{decision:?}");
    }

    #[test]
    fn a_healthy_run_resets_the_delay() {
        let policy = policy();
        let mut history = RestartHistory::default();
        let start = Instant::now();
        delays(&mut history, &policy, start, 2);
        let decision = history.on_failure(
            &policy,
            start + Duration::from_secs(40),
            Duration::from_secs(35),
            0.0,
        );
        assert_eq!(
            decision,
            Decision::Restart {
                attempt: 1,
                delay: Duration::from_secs(1)
            }
        );
    }
}

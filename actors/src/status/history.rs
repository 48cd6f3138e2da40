//! The fleet over the last minutes, for the status page's charts: folds,
//! rows folded and skipped ticks a second, and how late the ticks ran.
//!
//! A bounded ring of [`Sample`]s of the fleet-wide counters the workers
//! already keep (atomics in [`Status`](super::Status)), taken every
//! [`SAMPLE_EVERY`] by a thread of the HTTP side (see `http::start`): the
//! workers do nothing more for it, and nobody needs to watch the page for
//! it to fill. [`POINTS`] samples are 15 minutes, a few kilobytes whatever
//! the fleet's size. Rates are the differences between neighbours, so a
//! sample late by a second (a busy machine) skews nothing.

use std::collections::VecDeque;
use std::time::Duration;

/// How often the HTTP side samples the counters ...
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// ... and how many intervals the ring keeps: 15 minutes.
pub const POINTS: usize = 180;

/// The fleet's counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When, on the status's monotonic clock.
    pub at: Duration,
    pub folds: u64,
    pub rows_folded: u64,
    pub ticks_skipped: u64,
    /// Ticks whose lateness was recorded so far.
    pub ticks: u64,
    /// How late the ticks since the previous sample ran; None when none ran.
    pub lateness: Option<Lateness>,
}

/// Tick lateness over one interval, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lateness {
    pub p99: f64,
    pub max: f64,
}

/// What happened between two neighbouring samples, as rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// When it ended, on the status's monotonic clock.
    pub end: Duration,
    pub seconds: f64,
    pub folds_per_second: f64,
    pub rows_per_second: f64,
    pub skipped_per_second: f64,
    pub lateness: Option<Lateness>,
}

/// The last [`POINTS`] intervals (one sample more than that).
#[derive(Debug, Clone)]
pub struct History {
    samples: VecDeque<Sample>,
    intervals: usize,
}

impl Default for History {
    fn default() -> Self {
        History::new(POINTS)
    }
}

impl History {
    /// A ring of `intervals` intervals (at least one).
    pub fn new(intervals: usize) -> Self {
        let intervals = intervals.max(1);
        History {
            samples: VecDeque::with_capacity(intervals + 1),
            intervals,
        }
    }

    /// Adds `sample`, dropping the oldest beyond the ring's size. A sample
    /// not later than the last one is ignored (two samplers, or a clock
    /// read twice).
    pub fn record(&mut self, sample: Sample) {
        if self.samples.back().is_some_and(|last| sample.at <= last.at) {
            return;
        }
        if self.samples.len() > self.intervals {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The ticks counted at the last sample (0 before any): the sampler
    /// takes the lateness of the ticks since then.
    pub fn last_ticks(&self) -> u64 {
        self.samples.back().map_or(0, |last| last.ticks)
    }

    /// Every interval between neighbouring samples, oldest first.
    pub fn intervals(&self) -> Vec<Interval> {
        let mut intervals = Vec::with_capacity(self.samples.len().saturating_sub(1));
        for (before, after) in self.samples.iter().zip(self.samples.iter().skip(1)) {
            let seconds = after.at.saturating_sub(before.at).as_secs_f64();
            // Counters only grow; a difference below 0 would be a bug
            // elsewhere, not a negative rate to draw.
            let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / seconds;
            intervals.push(Interval {
                end: after.at,
                seconds,
                folds_per_second: rate(after.folds, before.folds),
                rows_per_second: rate(after.rows_folded, before.rows_folded),
                skipped_per_second: rate(after.ticks_skipped, before.ticks_skipped),
                lateness: after.lateness,
            });
        }
        intervals
    }
}

/// The p99 and maximum of `seconds` (tick lateness, in any order); None
/// when empty. Sorts its argument.
pub fn lateness_of(seconds: &mut [f64]) -> Option<Lateness> {
    if seconds.is_empty() {
        return None;
    }
    seconds.sort_unstable_by(f64::total_cmp);
    let last = seconds.len() - 1;
    // The nearest rank: the smallest value at or above 99% of the others.
    let rank = ((seconds.len() as f64 * 0.99).ceil() as usize).clamp(1, seconds.len()) - 1;
    Some(Lateness {
        p99: seconds[rank].max(0.0),
        max: seconds[last].max(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_s: u64, folds: u64, rows: u64, skipped: u64) -> Sample {
        Sample {
            at: Duration::from_secs(at_s),
            folds,
            rows_folded: rows,
            ticks_skipped: skipped,
            ticks: folds + skipped,
            lateness: None,
        }
    }

    #[test]
    fn rates_are_differences_between_neighbours_over_their_time() {
        let mut history = History::new(10);
        history.record(sample(0, 0, 0, 0));
        history.record(sample(5, 50, 500, 5));
        // A late sample: 10 s after the last one, not 5.
        history.record(sample(15, 150, 600, 5));
        let intervals = history.intervals();
        assert_eq!(intervals.len(), 2);
        assert_eq!(intervals[0].folds_per_second, 10.0);
        assert_eq!(intervals[0].rows_per_second, 100.0);
        assert_eq!(intervals[0].skipped_per_second, 1.0);
        assert_eq!(intervals[1].seconds, 10.0);
        assert_eq!(intervals[1].folds_per_second, 10.0);
        assert_eq!(intervals[1].rows_per_second, 10.0);
        assert_eq!(intervals[1].skipped_per_second, 0.0);
        assert_eq!(intervals[1].end, Duration::from_secs(15));
    }

    #[test]
    fn the_ring_keeps_its_size_and_drops_the_oldest() {
        let mut history = History::new(3);
        for n in 0..10 {
            history.record(sample(n * 5, n, n, 0));
        }
        let intervals = history.intervals();
        assert_eq!(intervals.len(), 3);
        assert_eq!(intervals[0].end, Duration::from_secs(35));
        assert_eq!(intervals[2].end, Duration::from_secs(45));
        assert_eq!(history.last_ticks(), 9);
        // The default ring: 15 minutes of 5 s samples, whatever the fleet.
        let mut full = History::default();
        for n in 0..1000 {
            full.record(sample(n * 5, n, n, 0));
        }
        assert_eq!(full.intervals().len(), POINTS);
        assert_eq!(POINTS as u64 * SAMPLE_EVERY.as_secs(), 15 * 60);
    }

    #[test]
    fn a_sample_not_after_the_last_is_ignored() {
        let mut history = History::new(5);
        history.record(sample(10, 5, 5, 0));
        history.record(sample(10, 6, 6, 0));
        history.record(sample(9, 7, 7, 0));
        assert!(history.intervals().is_empty());
        assert_eq!(history.last_ticks(), 5);
    }

    /// The sampler takes the ticks since its last sample, not the whole
    /// recent ring: a slow minute shows where it was.
    #[test]
    fn the_status_samples_each_interval_s_own_ticks() {
        let status = crate::status::Status::new();
        status.sample_history();
        for _ in 0..100 {
            status.tick_late(Duration::from_millis(500));
        }
        status.sample_history();
        for ms in 1..=100 {
            status.tick_late(Duration::from_millis(ms));
        }
        status.sample_history();
        status.sample_history();
        let (intervals, now) = status.history();
        assert_eq!(intervals.len(), 3, "{intervals:?}");
        assert!(intervals.iter().all(|i| i.end <= now));
        assert_eq!(intervals[0].lateness.map(|l| l.max), Some(0.5));
        let second = intervals[1].lateness.expect("ticks in the second");
        assert!((second.p99 - 0.099).abs() < 1e-9, "{second:?}");
        assert!((second.max - 0.1).abs() < 1e-9, "{second:?}");
        assert_eq!(intervals[2].lateness, None, "no tick in the third");
    }

    #[test]
    fn lateness_is_p99_and_max_of_the_interval() {
        assert_eq!(lateness_of(&mut []), None);
        let mut one = [0.25];
        assert_eq!(
            lateness_of(&mut one),
            Some(Lateness {
                p99: 0.25,
                max: 0.25
            })
        );
        // 1 .. 1000 ms, shuffled: p99 is 990 ms, max 1 s.
        let mut ms: Vec<f64> = (1..=1000)
            .map(|n| f64::from((n * 7919) % 1000 + 1) / 1000.0)
            .collect();
        let lateness = lateness_of(&mut ms).expect("samples");
        assert_eq!(lateness.p99, 0.990);
        assert_eq!(lateness.max, 1.0);
        // A clock step may give a tick a negative lateness: drawn as 0.
        let mut early = [-0.5, -0.1];
        assert_eq!(lateness_of(&mut early).map(|l| l.max), Some(0.0));
    }
}

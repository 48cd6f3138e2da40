//! How many deltas the next fold may delete: `workers.fold_batch` at
//! most, fewer while full batches take longer than their time budget.
//!
//! A backlog is folded batch after batch on a connection other schemas
//! share (their folds queue behind each batch, pipelined or pooled). A
//! batch of a fixed number of rows takes 0.2 s on a calm machine and 0.8 s
//! on a busy one: longer than a short `naptime`, and the schemas behind it
//! skip ticks. So the size is steered by time: a full batch that took
//! longer than the budget makes the next one smaller in proportion; a
//! fold that took less than half of it lets the size grow back, doubling,
//! to `workers.fold_batch`. The budget is half of `naptime` (a schema
//! waiting behind one batch still folds at its tick) and at most a
//! quarter of `statement_timeout` (a batch never comes near it).

use std::time::Duration;

/// The smallest batch the size shrinks to (or `fold_batch`, if smaller):
/// below it, a statement's own cost would be most of its time.
pub const SMALLEST: i64 = 1_000;

/// The batch size of one schema's folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSize {
    /// The size of the next fold.
    now: i64,
    /// `workers.fold_batch`.
    most: i64,
    budget: Duration,
}

impl BatchSize {
    pub fn new(most: i64, naptime: Duration, statement_timeout: Duration) -> Self {
        BatchSize {
            now: most,
            most,
            budget: Self::budget(naptime, statement_timeout),
        }
    }

    /// Half of `naptime`, at most a quarter of `statement_timeout` (0: no
    /// statement timeout, no limit from it).
    pub fn budget(naptime: Duration, statement_timeout: Duration) -> Duration {
        let half_naptime = naptime / 2;
        if statement_timeout.is_zero() {
            half_naptime
        } else {
            half_naptime.min(statement_timeout / 4)
        }
    }

    /// The next fold's batch.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// The most: `workers.fold_batch`.
    pub fn most(&self) -> i64 {
        self.most
    }

    /// New settings: the most and the budget change, the size starts again
    /// from the most.
    pub fn reconfigure(&mut self, most: i64, naptime: Duration, statement_timeout: Duration) {
        *self = Self::new(most, naptime, statement_timeout);
    }

    /// A fold of `now()` rows at most took `took`; `full`: it took as many
    /// as it could (a backlog is left).
    pub fn after(&mut self, full: bool, took: Duration) {
        let floor = SMALLEST.min(self.most);
        if full && took > self.budget {
            let share = self.budget.as_secs_f64() / took.as_secs_f64();
            let smaller = (self.now as f64 * share) as i64;
            self.now = smaller.clamp(floor, self.most);
        } else if took < self.budget / 2 {
            self.now = self.now.saturating_mul(2).clamp(floor, self.most);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn size() -> BatchSize {
        // naptime 500 ms, statement_timeout 2 s: a budget of 250 ms.
        BatchSize::new(50_000, 500 * MS, 2_000 * MS)
    }

    #[test]
    fn the_budget_is_half_the_naptime_and_at_most_a_quarter_of_the_statement_timeout() {
        assert_eq!(BatchSize::budget(500 * MS, 2_000 * MS), 250 * MS);
        assert_eq!(BatchSize::budget(60_000 * MS, 30_000 * MS), 7_500 * MS);
        assert_eq!(BatchSize::budget(60_000 * MS, Duration::ZERO), 30_000 * MS);
    }

    #[test]
    fn it_starts_at_fold_batch() {
        assert_eq!(size().now(), 50_000);
        assert_eq!(size().most(), 50_000);
    }

    #[test]
    fn a_full_batch_over_budget_shrinks_the_next_in_proportion() {
        let mut size = size();
        size.after(true, 1_000 * MS);
        assert_eq!(size.now(), 12_500);
        size.after(true, 500 * MS);
        assert_eq!(size.now(), 6_250);
    }

    #[test]
    fn it_never_shrinks_below_the_smallest_or_grows_beyond_fold_batch() {
        let mut size = size();
        size.after(true, 3_600_000 * MS);
        assert_eq!(size.now(), SMALLEST);
        for _ in 0..20 {
            size.after(false, MS);
        }
        assert_eq!(size.now(), 50_000);
        let mut tiny = BatchSize::new(10, 500 * MS, 2_000 * MS);
        tiny.after(true, 3_600_000 * MS);
        assert_eq!(tiny.now(), 10, "a fold_batch below the smallest stays");
    }

    #[test]
    fn a_fast_fold_doubles_it_back_and_one_within_budget_keeps_it() {
        let mut size = size();
        size.after(true, 2_000 * MS);
        assert_eq!(size.now(), 6_250);
        size.after(true, 200 * MS);
        assert_eq!(size.now(), 6_250, "within budget, not fast: kept");
        size.after(true, 100 * MS);
        assert_eq!(size.now(), 12_500);
    }

    #[test]
    fn a_slow_fold_that_was_not_full_does_not_shrink_it() {
        // A lock or a loaded server made it slow, not its size.
        let mut size = size();
        size.after(false, 5_000 * MS);
        assert_eq!(size.now(), 50_000);
    }

    #[test]
    fn new_settings_start_again_from_the_most() {
        let mut size = size();
        size.after(true, 1_000 * MS);
        size.reconfigure(20_000, 500 * MS, 2_000 * MS);
        assert_eq!(size.now(), 20_000);
    }
}

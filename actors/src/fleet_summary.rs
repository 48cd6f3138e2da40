//! The periodic `fleet_summary` line: what a big fleet logs instead of a
//! line per fold (see `log.fold_lines`). 10,000 busy schemas at naptime
//! 10 s are 1,000 `worker_tick` lines a second; one line a minute that says
//! how many workers run, what they folded, what failed and how late the
//! ticks ran tells an operator more. Counts are since the previous line.

use std::time::{Duration, Instant};

use slog::{info, Logger};

use crate::status::{Status, Summary, WorkerState};

/// Counters at the previous line.
#[derive(Default, Clone, Copy)]
struct Counts {
    folds: u64,
    rows: u64,
    failures: u64,
    restarts: u64,
    skipped: u64,
}

impl Counts {
    fn of(summary: &Summary) -> Self {
        Counts {
            folds: summary.folds,
            rows: summary.rows_folded,
            failures: summary.failures,
            restarts: summary.restarts,
            skipped: summary.ticks_skipped,
        }
    }
}

pub struct FleetSummary {
    last_at: Instant,
    last: Counts,
}

impl FleetSummary {
    pub fn new(now: Instant) -> Self {
        FleetSummary {
            last_at: now,
            last: Counts::default(),
        }
    }

    /// Logs the line when `every` (zero: never) has passed since the last.
    /// Called from the Supervisor's heartbeat, once a second.
    pub fn tick(&mut self, status: &Status, every: Duration, now: Instant, log: &Logger) {
        // The heartbeat comes every second, give or take a millisecond.
        if every.is_zero() || now.duration_since(self.last_at) < every.mul_f64(0.99) {
            return;
        }
        let summary = status.summary();
        let counts = Counts::of(&summary);
        let since = |now: u64, then: u64| now.saturating_sub(then);
        let (folds, rows) = (
            since(counts.folds, self.last.folds),
            since(counts.rows, self.last.rows),
        );
        let (failures, restarts, skipped) = (
            since(counts.failures, self.last.failures),
            since(counts.restarts, self.last.restarts),
            since(counts.skipped, self.last.skipped),
        );
        let seconds = now.duration_since(self.last_at).as_secs();
        self.last_at = now;
        self.last = counts;
        let running = summary
            .by_state
            .get(&WorkerState::Running)
            .copied()
            .unwrap_or(0);
        let (p50_ms, p99_ms) = summary.lateness.map_or((0, 0), |(p50, p99, _)| {
            (p50.as_millis() as u64, p99.as_millis() as u64)
        });
        info!(log, "{} workers, {running} running; in the last {seconds} s: {folds} folds of {rows} rows, \
                    {failures} failures, {restarts} restarts, {skipped} ticks skipped; tick lateness \
                    p50 {p50_ms} ms, p99 {p99_ms} ms", summary.workers;
            "event" => "fleet_summary", "workers" => summary.workers, "running" => running,
            "seconds" => seconds, "folds" => folds, "rows" => rows, "failures" => failures,
            "restarts" => restarts, "skipped" => skipped,
            "lateness_p50_ms" => p50_ms, "lateness_p99_ms" => p99_ms);
    }
}

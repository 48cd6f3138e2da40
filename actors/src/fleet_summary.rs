//! The periodic `fleet_summary` line: what a big fleet logs instead of a
//! line per fold (see `log.fold_lines`). 10,000 busy schemas at naptime
//! 10 s are 1,000 `worker_tick` lines a second; one line a minute that says
//! how many workers run, what they folded, what failed and how late the
//! ticks ran tells an operator more. Counts are since the previous line.

use std::time::{Duration, Instant};

use slog::{info, Logger};

use crate::status::{DbHealth, Status, Summary, WorkerState};

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
        let seconds = now.duration_since(self.last_at).as_secs_f64().round() as u64;
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
        let states = states(&summary);
        let database = summary.database.unwrap_or(DbHealth::Unknown);
        let headline = match database.problem() {
            Some(problem) => format!("{problem}; {} workers: {states}", summary.workers),
            None => format!("{} workers: {states}", summary.workers),
        };
        info!(log, "{headline}; in the last {seconds} s: {folds} folds of {rows} rows, \
                    {failures} failures, {restarts} restarts, {skipped} ticks skipped; tick lateness \
                    p50 {p50_ms} ms, p99 {p99_ms} ms";
            "event" => "fleet_summary", "workers" => summary.workers, "running" => running,
            "states" => &states, "database" => database_word(&database),
            "seconds" => seconds, "folds" => folds, "rows" => rows, "failures" => failures,
            "restarts" => restarts, "skipped" => skipped,
            "lateness_p50_ms" => p50_ms, "lateness_p99_ms" => p99_ms);
    }
}

/// The states that have workers, most urgent first: `20 running, 1
/// waiting_for_total`; during an outage `21 waiting_for_database`, never
/// "21 running" while nothing can fold.
fn states(summary: &Summary) -> String {
    let mut states: Vec<(WorkerState, usize)> = summary
        .by_state
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(state, n)| (*state, *n))
        .collect();
    states.sort_by_key(|(state, _)| state.urgency());
    if states.is_empty() {
        return "none".into();
    }
    states
        .iter()
        .map(|(state, n)| format!("{n} {}", state.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn database_word(health: &DbHealth) -> &'static str {
    match health {
        DbHealth::Up => "up",
        DbHealth::Unknown => "unknown",
        DbHealth::Unreachable { .. } => "unreachable",
        DbHealth::Refused { .. } => "refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(states: &[(WorkerState, usize)]) -> Summary {
        Summary {
            workers: states.iter().map(|(_, n)| n).sum(),
            by_state: states.iter().copied().collect(),
            ..Summary::default()
        }
    }

    #[test]
    fn states_name_what_has_workers_most_urgent_first() {
        let mixed = summary(&[
            (WorkerState::Running, 20),
            (WorkerState::WaitingForTotal, 1),
            (WorkerState::GivenUp, 2),
            (WorkerState::Restarting, 0),
        ]);
        assert_eq!(
            states(&mixed),
            "2 given_up, 1 waiting_for_total, 20 running"
        );
        let outage = summary(&[(WorkerState::WaitingForDatabase, 21)]);
        assert_eq!(states(&outage), "21 waiting_for_database");
        assert_eq!(states(&summary(&[])), "none");
    }
}

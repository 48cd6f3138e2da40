//! `/metrics`: the status as Prometheus series (SPEC §6), encoded by
//! prometheus-client in the OpenMetrics text format.
//!
//! Histograms and labelled counters that only grow are registered as
//! prometheus-client metrics and updated in place. Everything that is a
//! view of the fleet (worker states, per-schema counters, the database)
//! is read at scrape time by one collector, so it can never
//! drift from what `/workers` shows. Per-schema series (label `schema`)
//! exist only while the fleet has at most `http.per_schema_metrics_max`
//! schemas; above that the same names carry one fleet-wide series, so
//! `sum(rate(pgfleet_folds_total[5m]))` reads the same either way and
//! 10,000 schemas never make 30,000 series.
//!
//! Only the status's own series are here: other owners add theirs to the
//! same registry with [`super::Status::register`] (the pool's are in
//! `db::metrics`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{lock, DbHealth, Inner, WorkerState, WorkerStatus};
use crate::scrape::{counter, gauge};

/// A fold is one statement, usually under a millisecond; a slow one is
/// bounded by `database.statement_timeout` (30 s by default).
pub(super) const FOLD_DURATION_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Measured at 10,000 schemas: p50 1 ms, p99 2 to 4 ms. Seconds of
/// lateness mean the actor thread is starved.
pub(super) const TICK_LATENESS_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

pub(super) fn registry(inner: &Arc<Inner>) -> Registry {
    // The registry ends each help text with a full stop; the collector's
    // texts below carry their own.
    let mut registry = Registry::default();
    registry.register(
        "pgfleet_ticks_skipped",
        "Ticks that did not fold, by reason (see the worker_tick_skipped log event)",
        inner.ticks_skipped.clone(),
    );
    for result in ["done", "locked", "postponed", "failed"] {
        let _ = inner.vacuums.get_or_create(&[("result", result)]);
    }
    registry.register(
        "pgfleet_vacuums",
        "Workers' VACUUMs (workers.vacuum_after), by result: done, locked (gave up waiting for the table's lock), postponed (no connection free for maintenance), failed",
        inner.vacuums.clone(),
    );
    // Both results exist from the start, so a rate() has a series to read.
    for result in ["applied", "rejected"] {
        let _ = inner.config_reloads.get_or_create(&[("result", result)]);
    }
    registry.register(
        "pgfleet_config_reloads",
        "Configuration reloads (SIGHUP), by result: applied or rejected",
        inner.config_reloads.clone(),
    );
    registry.register_with_unit(
        "pgfleet_fold_duration",
        "Time one fold statement took on the database",
        Unit::Seconds,
        inner.fold_duration.clone(),
    );
    registry.register_with_unit(
        "pgfleet_tick_lateness",
        "How late a tick ran against its scheduled slot",
        Unit::Seconds,
        inner.tick_lateness.clone(),
    );
    registry.register_collector(Box::new(FleetCollector {
        inner: Arc::downgrade(inner),
    }));
    registry
}

/// Reads the fleet at scrape time. Holds a weak reference: the registry
/// belongs to the status, not the other way round.
#[derive(Debug)]
struct FleetCollector {
    inner: Weak<Inner>,
}

impl Collector for FleetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(inner) = self.inner.upgrade() else {
            return Ok(());
        };
        // Copy what is needed, then encode without holding the lock.
        let (by_state, per_schema, backlog, waiting) = {
            let fleet = lock(&inner.fleet);
            let mut by_state = [0i64; WorkerState::ALL.len()];
            let (mut backlog, mut waiting) = (0u64, 0u64);
            for worker in fleet.workers.values() {
                by_state[worker.state as usize] += 1;
                backlog = backlog.saturating_add(worker.backlog().left);
                if let Some(kept) = worker.waiting() {
                    waiting = waiting.saturating_add(kept.left);
                }
            }
            let max = inner.per_schema_max.load(Ordering::Relaxed) as usize;
            let small = !fleet.workers.is_empty() && fleet.workers.len() <= max;
            let per_schema: Option<Vec<SchemaCounters>> =
                small.then(|| fleet.workers.values().map(SchemaCounters::from).collect());
            (by_state, per_schema, backlog, waiting)
        };

        let mut workers = encoder.encode_descriptor(
            "pgfleet_workers",
            "Workers by state: starting, running, waiting_for_lock, table_dropped, waiting_for_total, waiting_for_database, restarting, given_up.",
            None,
            MetricType::Gauge,
        )?;
        for state in WorkerState::ALL {
            let labels = [("state", state.as_str())];
            ConstGauge::new(by_state[state as usize]).encode(workers.encode_family(&labels)?)?;
        }

        let fleet_wide = [
            (
                "pgfleet_folds",
                "Folds that ran (per schema while the fleet is at most http.per_schema_metrics_max).",
                inner.folds.load(Ordering::Relaxed),
                (|c: &SchemaCounters| c.folds) as fn(&SchemaCounters) -> u64,
            ),
            (
                "pgfleet_rows_folded",
                "Delta rows folded into totals (per schema while the fleet is small).",
                inner.rows_folded.load(Ordering::Relaxed),
                |c: &SchemaCounters| c.rows_folded,
            ),
            (
                "pgfleet_worker_failures",
                "Workers that ended with an error (per schema while the fleet is small).",
                inner.failures.load(Ordering::Relaxed),
                |c: &SchemaCounters| c.failures,
            ),
        ];
        for (name, help, total, of_schema) in fleet_wide {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            match &per_schema {
                Some(schemas) => {
                    for counters in schemas {
                        let labels = [("schema", &*counters.schema)];
                        ConstCounter::new(of_schema(counters))
                            .encode(metric.encode_family(&labels)?)?;
                    }
                }
                None => ConstCounter::new(total).encode(metric)?,
            }
        }

        counter(
            &mut encoder,
            "pgfleet_worker_restarts",
            "Workers started again by the restart policy.",
            inner.restarts.load(Ordering::Relaxed),
        )?;
        let dropped = lock(&inner.log_lines_dropped)
            .as_ref()
            .map_or(0, |counter| counter.load(Ordering::Relaxed));
        counter(
            &mut encoder,
            "pgfleet_log_lines_dropped",
            "Log lines dropped because the log output stalled or failed.",
            dropped,
        )?;

        gauge(
            &mut encoder,
            "pgfleet_backlog_deltas",
            "Deltas the schemas' last folds left because their batches (workers.fold_batch) were full, each counted up to ten batches' worth; 0 once every schema has caught up.",
            i64::try_from(backlog).unwrap_or(i64::MAX),
        )?;

        gauge(
            &mut encoder,
            "pgfleet_deltas_waiting_for_total",
            "Deltas kept, not folded, because their table has no total row (schemas in state waiting_for_total), each schema's counted up to ten batches' worth; they are folded once someone inserts the total row.",
            i64::try_from(waiting).unwrap_or(i64::MAX),
        )?;

        let up = i64::from(super::database(&inner) == DbHealth::Up);
        gauge(
            &mut encoder,
            "pgfleet_database_up",
            "1 when the last connection attempt reached the database and was not refused.",
            up,
        )?;
        let mut build = encoder.encode_descriptor(
            "pgfleet_build_info",
            "Always 1; the version is a label.",
            None,
            MetricType::Gauge,
        )?;
        let labels = [("version", inner.version)];
        ConstGauge::new(1i64).encode(build.encode_family(&labels)?)?;
        Ok(())
    }
}

struct SchemaCounters {
    schema: Arc<str>,
    folds: u64,
    rows_folded: u64,
    failures: u64,
}

impl From<&WorkerStatus> for SchemaCounters {
    fn from(worker: &WorkerStatus) -> Self {
        SchemaCounters {
            schema: Arc::clone(&worker.schema),
            folds: worker.folds,
            rows_folded: worker.rows_folded,
            failures: worker.failures(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use crate::settings::SchemaTarget;

    fn spawn(status: &Status, schema: &str) {
        let target = SchemaTarget::listed(schema.into(), schema.into());
        status.worker_spawned(&target, 1, false);
        status.worker_initialised(schema, 1);
    }

    #[test]
    fn small_fleets_get_per_schema_series_with_escaped_labels() {
        let status = Status::new();
        status
            .inner
            .per_schema_max
            .store(10, std::sync::atomic::Ordering::Relaxed);
        spawn(&status, "plain");
        spawn(&status, "we\"ird\\");
        let three = crate::counter::Total::from(3);
        status.fold_done("plain", 1, super::super::tests::report(3, Some(&three)));
        let text = status.encode_metrics().expect("encode");
        assert!(
            text.contains("pgfleet_folds_total{schema=\"plain\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("pgfleet_rows_folded_total{schema=\"plain\"} 3"),
            "{text}"
        );
        assert!(text.contains("schema=\"we\\\"ird\\\\\""), "{text}");
        assert!(
            text.contains("pgfleet_workers{state=\"running\"} 2"),
            "{text}"
        );
        assert!(text.contains("pgfleet_build_info{version=\""), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn large_fleets_get_one_series_per_name() {
        let status = Status::new();
        status
            .inner
            .per_schema_max
            .store(1, std::sync::atomic::Ordering::Relaxed);
        spawn(&status, "a");
        spawn(&status, "b");
        let (three, four) = (
            crate::counter::Total::from(3),
            crate::counter::Total::from(4),
        );
        status.fold_done("a", 1, super::super::tests::report(3, Some(&three)));
        status.fold_done("b", 1, super::super::tests::report(4, Some(&four)));
        let text = status.encode_metrics().expect("encode");
        assert!(!text.contains("schema="), "{text}");
        assert!(text.contains("pgfleet_folds_total 2"), "{text}");
        assert!(text.contains("pgfleet_rows_folded_total 7"), "{text}");
    }
}

//! The pool's series on `/metrics` (SPEC §6), owned here with the pool:
//! its size and connections as bb8 reports them, the statements its
//! connections keep prepared (`prepared`) and the folds pipelined on
//! them (`lanes`). Read at scrape time from the [`Database`] in force,
//! which a reload replaces ([`PoolMetrics::watch`]); none until the first
//! is watched.
//!
//! Whoever owns the registry hands it in ([`PoolMetrics::register`]), so
//! this module knows nothing of the status.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{lanes, Database};
use crate::scrape::gauge;

/// The pool the series describe. Cheap to clone; every clone watches the
/// same pool.
#[derive(Clone, Default)]
pub struct PoolMetrics {
    current: Arc<Mutex<Option<Database>>>,
}

impl std::fmt::Debug for PoolMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolMetrics").finish_non_exhaustive()
    }
}

impl PoolMetrics {
    /// Adds the pool's series to `registry`; once per registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.clone()));
    }

    /// The series describe `db` from now on (at start, and when a reload
    /// builds a new pool; the old one closes once nothing else holds it).
    pub fn watch(&self, db: &Database) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(db.clone());
    }
}

impl Collector for PoolMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let db = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(db) = db else {
            return Ok(());
        };
        let shared = &db.inner;
        let state = shared.pool.state();
        gauge(
            &mut encoder,
            "pgfleet_pool_size",
            "The most connections the pool opens (database.pool_size).",
            i64::from(shared.pool_size),
        )?;
        gauge(
            &mut encoder,
            "pgfleet_pool_connections",
            "Connections the pool holds open, in use or idle.",
            i64::from(state.connections),
        )?;
        gauge(
            &mut encoder,
            "pgfleet_pool_idle_connections",
            "Open connections no fold is using.",
            i64::from(state.idle_connections),
        )?;
        let pipelined = encoder.encode_descriptor(
            "pgfleet_folds_pipelined",
            "Folds sent on a connection that already had folds in flight, without waiting for their answers.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(lanes::PIPELINED_FOLDS.load(Ordering::Relaxed)).encode(pipelined)?;
        gauge(
            &mut encoder,
            "pgfleet_prepared_statements",
            "Fold statements the pool's connections keep prepared on the server (each about 100 KB of server memory; database.prepared_cache per connection at most).",
            i64::try_from(shared.prepared.held()).unwrap_or(i64::MAX),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use prometheus_client::registry::Registry;

    use super::super::{Connector, Database};
    use super::PoolMetrics;
    use crate::conninfo::ProcessEnvironment;

    fn encode(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
        text
    }

    #[tokio::test]
    async fn the_pool_in_force_once_watched() {
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let settings = crate::settings::ConfigSources::new(Vec::new())
            .load()
            .expect("the built-in defaults load");
        let metrics = PoolMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        assert_eq!(encode(&registry), "# EOF\n", "nothing before a pool");

        let connector = Connector::new(&settings.database, &ProcessEnvironment, &log)
            .expect("the default connector");
        let db = Database::new(
            Arc::new(connector),
            &settings.database,
            Duration::from_secs(1),
            &log,
        );
        metrics.watch(&db);
        let text = encode(&registry);
        let size = settings.database.pool_size;
        for line in [
            "# TYPE pgfleet_pool_size gauge".to_owned(),
            format!("pgfleet_pool_size {size}"),
            "pgfleet_pool_connections 0".to_owned(),
            "pgfleet_pool_idle_connections 0".to_owned(),
            "# TYPE pgfleet_folds_pipelined counter".to_owned(),
            "pgfleet_prepared_statements 0".to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}

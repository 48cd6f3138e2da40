//! Discovery: the schemas `workers.match` finds, as tenants come and go.
//!
//! Schema-per-tenant applications create a schema when a customer signs up
//! and drop it when one leaves. Every `workers.rescan` (and when asked,
//! [`RescanNow`]) this actor asks the catalogs ([`scan`]: one query for
//! the whole fleet, and one more for the schemas it has not seen) and hands
//! the schemas it found to whoever started it ([`Discovered`]): the
//! Supervisor, which reconciles its workers with them the same way it does
//! with the settings. So a new schema gets a worker within one rescan, and
//! a schema that no longer matches or no longer holds the table (dropped,
//! renamed, its table dropped) has its worker stopped, not failed.
//!
//! What it never does:
//! - hand over a partial answer: a rescan that fails (the database down)
//!   sends nothing, and the workers stay as they are; the failure is said
//!   once, and its end too;
//! - run two scans at once: a rescan asked for while one runs makes one
//!   more after it;
//! - hand over a schema the role cannot fold: its table matches, but a
//!   fold would fail with 42501 at every tick. It is said once per schema
//!   (`schema_not_foldable`, with the GRANT that fixes it), and taken as
//!   soon as a rescan finds the privilege granted ([`known`]). A worker
//!   refused a privilege later (a REVOKE) stops, and its schema is vetted
//!   again at once ([`RescanNow::recheck`]).
//!
//! It depends on `settings` and `db` only; the receiver of its findings is
//! a [`Recipient`], so nothing here knows the Supervisor.

mod known;
pub mod scan;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use slog::{debug, info, warn, Logger};

use crate::db::Database;
use crate::settings::Settings;
use crate::sql::quote_ident;
use known::Known;
use scan::Patterns;

/// What a rescan found: every schema that matches, holds the table, and
/// can be folded, in byte order. `epoch` says which [`Discovery`] sent it,
/// so that a scan of one replaced by a reload is not taken for the new
/// one's.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Discovered {
    pub epoch: u64,
    pub schemas: Vec<Arc<str>>,
}

/// Rescan now (a control message, a worker that found its table gone or
/// was refused a privilege).
#[derive(Message, Debug, Clone, Default)]
#[rtype(result = "()")]
pub struct RescanNow {
    /// Schemas to vet again though they were foldable (a REVOKE).
    pub recheck: Vec<Arc<str>>,
}

/// Stop rescanning (a reload replaces this actor, or the service stops).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopDiscovery;

/// The series of `/metrics` that discovery feeds; registered once, shared
/// by every [`Discovery`] a reload starts.
#[derive(Debug, Clone)]
pub struct DiscoveryMetrics {
    schemas: Gauge,
    rescans: Family<[(&'static str, &'static str); 1], Counter>,
    duration: Histogram,
}

impl Default for DiscoveryMetrics {
    fn default() -> Self {
        DiscoveryMetrics {
            schemas: Gauge::default(),
            rescans: Family::default(),
            // One catalog query: milliseconds, up to a few seconds at
            // 100,000 schemas on a loaded server.
            duration: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        }
    }
}

impl DiscoveryMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "pgfleet_discovered_schemas",
            "Schemas the last rescan found that workers.match matches, that hold workers.table and that pgfleet can fold",
            self.schemas.clone(),
        );
        for result in ["ok", "failed"] {
            let _ = self.rescans.get_or_create(&[("result", result)]);
        }
        registry.register(
            "pgfleet_rescans",
            "Rescans for the schemas workers.match finds, by result: ok or failed",
            self.rescans.clone(),
        );
        registry.register_with_unit(
            "pgfleet_rescan_duration",
            "Time one rescan's catalog query took",
            Unit::Seconds,
            self.duration.clone(),
        );
    }
}

pub struct Discovery {
    epoch: u64,
    patterns: Patterns,
    rescan: Duration,
    db: Database,
    to: Recipient<Discovered>,
    log: Logger,
    metrics: DiscoveryMetrics,
    known: Known,
    /// Since when rescans fail, while they do.
    failing_since: Option<Instant>,
    scanning: bool,
    /// A rescan was asked for while one ran.
    again: bool,
}

impl Discovery {
    pub fn new(
        epoch: u64,
        settings: &Settings,
        db: Database,
        to: Recipient<Discovered>,
        log: &Logger,
        metrics: DiscoveryMetrics,
    ) -> Self {
        Discovery {
            epoch,
            patterns: Patterns {
                matching: settings.workers.matching.clone(),
                exclude: settings.workers.exclude.clone(),
                table: Arc::clone(&settings.workers.table),
            },
            rescan: settings.workers.rescan,
            db,
            to,
            log: log.new(slog::o!()),
            metrics,
            known: Known::default(),
            failing_since: None,
            scanning: false,
            again: false,
        }
    }

    fn rescan(&mut self, ctx: &mut Context<Self>) {
        if self.scanning {
            self.again = true;
            return;
        }
        self.scanning = true;
        let (db, patterns) = (self.db.clone(), self.patterns.clone());
        let deadline = db.answer_deadline();
        // A query with no answer in time may still run on its connection:
        // the connection is discarded, never handed back to the pool. A
        // slow catalog is not the database down: it is the rescan's own
        // failure, not an outage of the fleet.
        let no_answer = move |conn: &crate::db::PgConnection| {
            conn.discard();
            crate::db::DbError::TimedOut {
                code: tokio_postgres::error::SqlState::QUERY_CANCELED,
                reason: format!("the rescan had no answer within {deadline:?}"),
            }
        };
        let list = async move {
            let started = Instant::now();
            let conn = db.own_connection().await?;
            let listed = tokio::time::timeout(deadline, scan::list(&conn, &patterns))
                .await
                .map_err(|_| no_answer(&conn))??;
            Ok::<_, crate::db::DbError>((conn, listed, started, db, patterns))
        };
        ctx.spawn(
            list.into_actor(self)
                .then(move |listed, discovery, _ctx| {
                    // Vets what is new, on the same connection.
                    let to_vet = match &listed {
                        Ok((_, listed, ..)) => discovery.known.to_vet(listed),
                        Err(_) => Vec::new(),
                    };
                    async move {
                        let (conn, listed, started, db, patterns) = listed?;
                        let vetted = tokio::time::timeout(
                            deadline,
                            scan::vet(&conn, &to_vet, &patterns.table),
                        )
                        .await
                        .map_err(|_| no_answer(&conn))??;
                        db.reachable();
                        Ok::<_, crate::db::DbError>((listed, vetted, started.elapsed()))
                    }
                    .into_actor(discovery)
                })
                .map(|result, discovery, ctx| {
                    discovery.scanning = false;
                    match result {
                        Ok((listed, vetted, took)) => discovery.found(&listed, vetted, took),
                        Err(error) => discovery.failed(&error.to_string()),
                    }
                    if std::mem::take(&mut discovery.again) {
                        discovery.rescan(ctx);
                    }
                }),
        );
    }

    fn found(&mut self, listed: &[Arc<str>], vetted: scan::Vetted, took: Duration) {
        self.metrics.duration.observe(took.as_secs_f64());
        self.metrics
            .rescans
            .get_or_create(&[("result", "ok")])
            .inc();
        if let Some(since) = self.failing_since.take() {
            info!(self.log, "rescans work again after {} ms", since.elapsed().as_millis();
                "event" => "rescan_recovered");
        }
        let update = self.known.update(listed, &vetted.found);
        let table = &self.patterns.table;
        let role = vetted
            .role
            .as_deref()
            .map_or_else(|| "CURRENT_USER".into(), quote_ident);
        for schema in &update.newly_unfoldable {
            let qualified = format!("{}.{}", quote_ident(schema), quote_ident(table));
            warn!(self.log, "schema {schema} matches workers.match and holds {table}, but pgfleet's role cannot fold it \
                             (or {table} is not a table): it is left alone until a rescan finds it foldable \
                             (GRANT USAGE ON SCHEMA {} TO {role}; GRANT SELECT, UPDATE, DELETE ON {qualified} TO {role})",
                quote_ident(schema);
                "event" => "schema_not_foldable", "schema" => schema.to_string());
        }
        let schemas = update.foldable;
        debug!(self.log, "rescan found {} schemas in {} ms", schemas.len(), took.as_millis();
            "event" => "rescan_done", "schemas" => schemas.len(), "elapsed_ms" => took.as_millis() as u64);
        self.metrics
            .schemas
            .set(i64::try_from(schemas.len()).unwrap_or(i64::MAX));
        self.to.do_send(Discovered {
            epoch: self.epoch,
            schemas,
        });
    }

    fn failed(&mut self, error: &str) {
        self.metrics
            .rescans
            .get_or_create(&[("result", "failed")])
            .inc();
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            warn!(self.log, "rescan failed, the workers stay as they are: {error}";
                "event" => "rescan_failed", "error" => error.to_owned());
        } else {
            debug!(self.log, "rescan failed again: {error}";
                "event" => "rescan_failed", "error" => error.to_owned());
        }
    }
}

impl Actor for Discovery {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.rescan(ctx);
        ctx.run_interval(self.rescan, |discovery, ctx| discovery.rescan(ctx));
    }
}

impl Handler<RescanNow> for Discovery {
    type Result = ();

    fn handle(&mut self, msg: RescanNow, ctx: &mut Self::Context) {
        for schema in &msg.recheck {
            self.known.forget(schema);
        }
        self.rescan(ctx);
    }
}

impl Handler<StopDiscovery> for Discovery {
    type Result = ();

    fn handle(&mut self, _msg: StopDiscovery, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

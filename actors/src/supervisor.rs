//! Supervisor: owns one WorkerActor per schema and decides their fate.
//!
//! actix's own `Supervisor` restarts the same actor at once, forever, and
//! tells no one; here each worker reports its end with [`WorkerExited`], and
//! the restart policy (see `policy`) decides whether a fresh worker starts,
//! after which delay, or whether the worker is given up. Workers are keyed
//! by schema and tagged with a generation, so the report of a worker that
//! was already replaced or retired is never mistaken for the current one.
//!
//! Shutdown is the same mechanism run to the end: every worker is asked to
//! stop, those still folding after `shutdown.grace` have their statement
//! cancelled, and when the last one has reported, the Supervisor stops and
//! with it the actor system, with the exit code the shutdown asked for.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{error, info, o, warn, Logger};

use crate::config_actor::SettingsChanged;
use crate::db::Database;
use crate::policy::{Decision, RestartHistory};
use crate::settings::{SchemaTarget, Settings};
use crate::worker::{Reconfigure, Stop, WorkerActor, WorkerError, WorkerSpec};

/// A worker's last word: `failure` is None when it stopped because it was
/// asked to.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerExited {
    pub schema: String,
    pub generation: u64,
    pub failure: Option<WorkerError>,
}

/// SIGTERM or SIGINT: stop every worker, then the system.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub signal: &'static str,
}

/// Exit code of a shutdown caused by giving up on a worker with
/// `restart.escalate`.
pub const EXIT_ESCALATED: i32 = 1;

/// How long after the cancel requests sent at the end of `shutdown.grace`
/// the Supervisor stops regardless.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

pub struct Supervisor {
    settings: Arc<Settings>,
    db: Database,
    epoch: Instant,
    log: Logger,
    slots: BTreeMap<String, Slot>,
    /// Workers asked to stop because a reload removed or replaced them.
    retiring: HashMap<u64, (SchemaTarget, Addr<WorkerActor>)>,
    next_generation: u64,
    shutting_down: bool,
    exit_code: i32,
}

struct Slot {
    target: SchemaTarget,
    history: RestartHistory,
    state: SlotState,
}

enum SlotState {
    Running {
        addr: Addr<WorkerActor>,
        generation: u64,
        since: Instant,
    },
    /// `generation` of the worker that failed.
    Restarting {
        handle: SpawnHandle,
        generation: u64,
    },
    GivenUp {
        generation: u64,
    },
}

impl Supervisor {
    pub fn new(settings: Arc<Settings>, log: Logger) -> Result<Self, String> {
        let db = Database::new(&settings.database, settings.restart.delay, &log)?;
        Ok(Supervisor {
            settings,
            db,
            epoch: Instant::now(),
            log,
            slots: BTreeMap::new(),
            retiring: HashMap::new(),
            next_generation: 0,
            shutting_down: false,
            exit_code: 0,
        })
    }

    /// A worker's logger. `generation` tells apart the workers a schema
    /// had over time: a retired one may report its stop after its
    /// replacement started.
    fn worker_log(&self, target: &SchemaTarget, generation: u64) -> Logger {
        self.log.new(o!(
            "worker" => target.worker.clone(),
            "schema" => target.schema.clone(),
            "generation" => generation,
        ))
    }

    fn spawn_worker(&mut self, target: &SchemaTarget, ctx: &mut Context<Self>) -> SlotState {
        self.next_generation += 1;
        let workers = &self.settings.workers;
        let spec = WorkerSpec {
            target: target.clone(),
            generation: self.next_generation,
            table: workers.table.clone(),
            create_schema: workers.create_schema,
            naptime: self.settings.naptime,
            vacuum_after: workers.vacuum_after,
            db: self.db.clone(),
            epoch: self.epoch,
            supervisor: ctx.address().recipient(),
            log: self.worker_log(target, self.next_generation),
        };
        SlotState::Running {
            addr: WorkerActor::new(spec).start(),
            generation: self.next_generation,
            since: Instant::now(),
        }
    }

    fn add_worker(&mut self, target: SchemaTarget, ctx: &mut Context<Self>) {
        let state = self.spawn_worker(&target, ctx);
        self.slots.insert(
            target.schema.clone(),
            Slot {
                target,
                history: RestartHistory::default(),
                state,
            },
        );
    }

    fn restart_worker(&mut self, schema: &str, attempt: u32, ctx: &mut Context<Self>) {
        let Some(target) = self
            .slots
            .get(schema)
            .filter(|slot| matches!(slot.state, SlotState::Restarting { .. }))
            .map(|slot| slot.target.clone())
        else {
            return;
        };
        let state = self.spawn_worker(&target, ctx);
        if let Some(slot) = self.slots.get_mut(schema) {
            slot.state = state;
        }
        info!(self.worker_log(&target, self.next_generation), "{} restarted (attempt {attempt})", target.worker;
            "event" => "worker_restarted", "attempt" => attempt);
    }

    /// Stops a worker on purpose (its schema left the configuration, or its
    /// table settings changed).
    fn retire(&mut self, schema: &str, ctx: &mut Context<Self>) {
        let Some(slot) = self.slots.remove(schema) else {
            return;
        };
        match slot.state {
            SlotState::Running {
                addr, generation, ..
            } => {
                addr.do_send(Stop {
                    cancel_in_flight: false,
                });
                self.retiring.insert(generation, (slot.target, addr));
            }
            SlotState::Restarting { handle, generation } => {
                ctx.cancel_future(handle);
                self.log_stopped(&slot.target, generation);
            }
            SlotState::GivenUp { generation } => self.log_stopped(&slot.target, generation),
        }
    }

    fn log_stopped(&self, target: &SchemaTarget, generation: u64) {
        info!(self.worker_log(target, generation), "{} stopped", target.worker; "event" => "worker_stopped");
    }

    fn on_failure(
        &mut self,
        schema: &str,
        generation: u64,
        since: Instant,
        error: WorkerError,
        ctx: &mut Context<Self>,
    ) {
        let Some(target) = self.slots.get(schema).map(|slot| slot.target.clone()) else {
            return;
        };
        let log = self.worker_log(&target, generation);
        let Some(slot) = self.slots.get_mut(schema) else {
            return;
        };
        let worker = slot.target.worker.clone();
        error!(log, "{worker} failed: {error}"; "event" => "worker_failed", "error" => error.to_string());
        let decision = slot.history.on_failure(
            &self.settings.restart,
            Instant::now(),
            since.elapsed(),
            rand::random(),
        );
        match decision {
            Decision::Restart { attempt, delay } => {
                let delay_ms = delay.as_millis() as u64;
                info!(log, "{worker} will restart in {delay_ms} ms (attempt {attempt})";
                    "event" => "worker_restart_scheduled", "attempt" => attempt, "delay_ms" => delay_ms);
                let schema = schema.to_owned();
                let handle = ctx.run_later(delay, move |supervisor, ctx| {
                    supervisor.restart_worker(&schema, attempt, ctx);
                });
                slot.state = SlotState::Restarting { handle, generation };
            }
            Decision::GiveUp { reason } => {
                error!(log, "{worker} given up: {reason}"; "event" => "worker_given_up", "reason" => reason.clone());
                slot.state = SlotState::GivenUp { generation };
                if self.settings.restart.escalate {
                    error!(self.log, "restart.escalate is true: stopping the service because {worker} was given up";
                        "event" => "shutdown_started", "signal" => "escalation");
                    self.begin_shutdown(EXIT_ESCALATED, ctx);
                }
            }
        }
    }

    fn apply(&mut self, settings: Arc<Settings>, ctx: &mut Context<Self>) {
        let old = std::mem::replace(&mut self.settings, settings);
        let new = Arc::clone(&self.settings);
        if old.database != new.database {
            match Database::new(&new.database, new.restart.delay, &self.log) {
                // Workers move to the new pool with the Reconfigure below;
                // the old pool closes when its last connection is returned.
                Ok(db) => self.db = db,
                Err(e) => {
                    warn!(self.log, "keeping the old connection pool: {e}"; "event" => "pool_rebuild_failed")
                }
            }
        } else if old.restart.delay != new.restart.delay {
            self.db.set_probe_interval(new.restart.delay);
        }
        let table_changed = old.workers.table != new.workers.table
            || old.workers.create_schema != new.workers.create_schema;
        let desired: BTreeMap<String, SchemaTarget> = new
            .targets()
            .into_iter()
            .map(|target| (target.schema.clone(), target))
            .collect();
        let obsolete: Vec<String> = self
            .slots
            .iter()
            .filter(|(schema, slot)| table_changed || desired.get(*schema) != Some(&slot.target))
            .map(|(schema, _)| schema.clone())
            .collect();
        for schema in obsolete {
            self.retire(&schema, ctx);
        }
        for (schema, target) in desired {
            match self.slots.get_mut(&schema) {
                None => self.add_worker(target, ctx),
                Some(slot) => match &slot.state {
                    SlotState::Running { addr, .. } => addr.do_send(Reconfigure {
                        naptime: new.naptime,
                        vacuum_after: new.workers.vacuum_after,
                        db: self.db.clone(),
                    }),
                    // A reload is the operator's "try again": given-up
                    // workers start afresh.
                    SlotState::GivenUp { .. } => {
                        slot.history = RestartHistory::default();
                        let target = slot.target.clone();
                        let state = self.spawn_worker(&target, ctx);
                        if let Some(slot) = self.slots.get_mut(&schema) {
                            slot.state = state;
                        }
                    }
                    SlotState::Restarting { .. } => {}
                },
            }
        }
    }

    fn begin_shutdown(&mut self, exit_code: i32, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.exit_code = exit_code;
        let schemas: Vec<String> = self.slots.keys().cloned().collect();
        for schema in schemas {
            let Some(slot) = self.slots.get(&schema) else {
                continue;
            };
            match &slot.state {
                SlotState::Running { addr, .. } => addr.do_send(Stop {
                    cancel_in_flight: false,
                }),
                SlotState::Restarting { handle, .. } => {
                    ctx.cancel_future(*handle);
                    self.slots.remove(&schema);
                }
                SlotState::GivenUp { .. } => {
                    self.slots.remove(&schema);
                }
            }
        }
        let grace = self.settings.shutdown.grace;
        ctx.run_later(grace, |supervisor, ctx| {
            let still_folding = supervisor.slots.len() + supervisor.retiring.len();
            warn!(supervisor.log, "shutdown.grace elapsed: cancelling {still_folding} statements in flight";
                "event" => "shutdown_cancelling", "workers" => still_folding);
            for slot in supervisor.slots.values() {
                if let SlotState::Running { addr, .. } = &slot.state {
                    addr.do_send(Stop { cancel_in_flight: true });
                }
            }
            for (_, addr) in supervisor.retiring.values() {
                addr.do_send(Stop { cancel_in_flight: true });
            }
            ctx.run_later(CANCEL_WAIT, |_, ctx| ctx.stop());
        });
        self.finish_shutdown_if_done(ctx);
    }

    fn finish_shutdown_if_done(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down && self.slots.is_empty() && self.retiring.is_empty() {
            ctx.stop();
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if !self.settings.workers.schemas.is_empty() {
            info!(self.log, "workers.schemas names {} schemas; workers.total is not used",
                self.settings.workers.schemas.len(); "event" => "schemas_listed");
        }
        for target in self.settings.targets() {
            self.add_worker(target, ctx);
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        System::current().stop_with_code(self.exit_code);
    }
}

impl Handler<WorkerExited> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: WorkerExited, ctx: &mut Self::Context) {
        if let Some((target, _)) = self.retiring.remove(&msg.generation) {
            self.log_stopped(&target, msg.generation);
            return self.finish_shutdown_if_done(ctx);
        }
        let since = match self.slots.get(&msg.schema).map(|slot| &slot.state) {
            Some(SlotState::Running {
                generation, since, ..
            }) if *generation == msg.generation => *since,
            _ => return, // a worker already replaced
        };
        match msg.failure {
            Some(error) if !self.shutting_down => {
                self.on_failure(&msg.schema, msg.generation, since, error, ctx)
            }
            _ => {
                if let Some(slot) = self.slots.remove(&msg.schema) {
                    self.log_stopped(&slot.target, msg.generation);
                }
                self.finish_shutdown_if_done(ctx);
            }
        }
    }
}

impl Handler<SettingsChanged> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: SettingsChanged, ctx: &mut Self::Context) {
        if !self.shutting_down {
            self.apply(msg.settings, ctx);
        }
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Self::Context) {
        info!(self.log, "{} received: stopping {} workers", msg.signal, self.slots.len();
            "event" => "shutdown_started", "signal" => msg.signal);
        self.begin_shutdown(0, ctx);
    }
}

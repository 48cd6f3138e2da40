//! pgfleet's actors: worker_spi's job, done from outside PostgreSQL by a
//! supervised actor system.
//!
//! How a message flows:
//!
//! ```text
//!  SIGHUP ──► ConfigActor ──SettingsChanged──► LevelSwitch (log.level)
//!                 │                       └──► Supervisor ──Reconfigure──► WorkerActor ×N
//!                 └ re-reads default.yaml, --config files,                   │ run_interval(naptime)
//!                   PGFLEET__*; builds the connector                         ▼
//!  SIGTERM ─────────────────────────Shutdown──► Supervisor ──Stop──────► fold: one statement
//!                                                   ▲                     via the bb8 pool
//!                                                   └──WorkerExited────── (PostgreSQL)
//!
//!  Supervisor, WorkerActor ──write──► Status ◄──read── HTTP (/metrics, /healthz,
//!                                                      /readyz, /workers, /)
//! ```
//!
//! - [`settings`]: the configuration's shape, layers and validation.
//! - [`config_actor`]: reload on SIGHUP, broadcast to subscribers; the
//!   settings and the database connector built from them are read
//!   together ([`config_actor::Loaded`]), at start and off the actor thread
//!   on a reload, and handed to the Supervisor.
//! - [`supervisor`]: one worker per schema, the restart policy applied,
//!   shutdown carried out; [`supervisor::reconcile`]: which workers to
//!   start, retire, revive or tell of a reload, as plain logic.
//! - [`worker`]: the ticks of one schema; [`job`]: what runs at a tick
//!   (worker_spi's fold, its initialisation and VACUUM, their state, the
//!   statements they send, and the privileges they need), built for the
//!   Supervisor by one constructor, [`job::build`].
//! - [`policy`]: backoff, limits, give-up and escalation, as plain logic.
//! - [`conninfo`]: connection strings, `PG*` variables and `~/.pgpass`,
//!   read as libpq reads them, and passwords masked.
//! - [`db`]: connections (hosts, TLS modes, poolers), the pool, the outage
//!   gate, errors sorted by whose problem they are, and each connection's
//!   prepared folds; [`sql`]: the statements' text, identifiers quoted;
//!   [`counter`]: the `value` column's types, and totals of any of them.
//! - [`log_level`]: the log level, live.
//! - [`fleet_summary`]: the periodic `fleet_summary` log line.
//! - [`status`]: the fleet's state, written by the actors as things
//!   happen and read by [`http`]: metrics, probes, `/workers` and the
//!   status page, served on threads of their own.

pub mod config_actor;
pub mod config_watch;
pub mod conninfo;
pub mod control;
pub mod coordination;
pub mod counter;
pub mod db;
pub mod discovery;
pub mod fleet_summary;
pub mod http;
pub mod job;
pub mod lease;
pub mod log_level;
pub mod notify;
pub mod ownership;
pub mod panics;
pub mod policy;
pub mod scrape;
pub mod settings;
pub mod sql;
pub mod status;
pub mod supervisor;
pub mod test_hooks;
pub mod worker;

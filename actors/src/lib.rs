//! pgfleet's actors: worker_spi's job, done from outside PostgreSQL by a
//! supervised actor system.
//!
//! How a message flows:
//!
//! ```text
//!  SIGHUP ──► ConfigActor ──SettingsChanged──► LevelSwitch (log.level)
//!                 │                       └──► Supervisor ──Reconfigure──► WorkerActor ×N
//!                 └ re-reads default.yaml,                                   │ run_interval(naptime)
//!                   --config files, PGFLEET__*                               ▼
//!  SIGTERM ─────────────────────────Shutdown──► Supervisor ──Stop──────► fold: one statement
//!                                                   ▲                     via the bb8 pool
//!                                                   └──WorkerExited────── (PostgreSQL)
//! ```
//!
//! - [`settings`]: the configuration's shape, layers and validation.
//! - [`config_actor`]: reload on SIGHUP, broadcast to subscribers.
//! - [`supervisor`]: one worker per schema, the restart policy applied,
//!   shutdown carried out.
//! - [`worker`]: the ticks and the fold of one schema.
//! - [`policy`]: backoff, limits and give-up, as plain logic.
//! - [`conninfo`]: connection strings, `PG*` variables and `~/.pgpass`,
//!   read as libpq reads them, and passwords masked.
//! - [`db`]: connections (hosts, TLS modes, poolers), the pool, the outage
//!   gate, errors sorted by whose problem they are, the privilege check, and
//!   the statements run; [`sql`]: their text, identifiers quoted.
//! - [`log_level`]: the log level, live.

pub mod config_actor;
pub mod conninfo;
pub mod db;
pub mod log_level;
pub mod policy;
pub mod settings;
pub mod sql;
pub mod supervisor;
pub mod worker;

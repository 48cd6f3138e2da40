//! The shape of pgfleet's configuration, and the checks a value must pass
//! beyond its type.
//!
//! Every key lives in `config/default.yaml`, which is compiled in as the
//! lowest layer, so the structs here have no defaults of their own: the file
//! is the single place a default is written. `load` merges the layers and
//! says where each bad value came from.

pub mod duration;
mod load;
pub mod secret;
mod whole;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use load::{ConfigError, ConfigSources, KeyProblem, Problem, UNKNOWN_KEY};
pub use secret::{DatabaseUrl, Secret};

/// PostgreSQL's identifier limit (NAMEDATALEN - 1): longer names would be
/// truncated by the server, and two schemas could silently become one.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    #[serde(with = "duration")]
    pub naptime: Duration,
    pub workers: WorkersSettings,
    pub restart: RestartSettings,
    pub shutdown: ShutdownSettings,
    pub log: LogSettings,
    pub http: HttpSettings,
    pub control: ControlSettings,
    pub coordination: CoordinationSettings,
    /// What the loader noticed but let pass (environment variables that
    /// match no key), for the service to log once it has a logger.
    #[serde(skip)]
    pub load_warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: DatabaseUrl,
    #[serde(deserialize_with = "whole::deserialize")]
    pub pool_size: u32,
    pub application_name: String,
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    #[serde(with = "duration")]
    pub statement_timeout: Duration,
    /// How long initialisation waits for a lock (schema creation).
    #[serde(with = "duration")]
    pub lock_timeout: Duration,
    /// How long a fold or VACUUM waits for its table's locks before it
    /// gives up: short, so that a locked table never holds a connection
    /// the other schemas need (see `worker`, "waiting for a lock").
    #[serde(with = "duration")]
    pub fold_lock_timeout: Duration,
    pub password: Secret,
    pub password_file: String,
    pub pooler: PoolerMode,
    pub prepared: PreparedMode,
    /// The most fold statements one connection keeps prepared.
    #[serde(deserialize_with = "whole::deserialize")]
    pub prepared_cache: u32,
    /// The content of `password_file`, read by the loader at start and on
    /// every reload.
    #[serde(skip)]
    pub password_from_file: Secret,
}

/// How the per-session settings (statement_timeout, lock_timeout) reach
/// the server; see `database.pooler` in `config/default.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum PoolerMode {
    /// Start-up options, unless the server refuses or ignores them.
    Auto,
    /// Start-up options; a direct connection to PostgreSQL.
    None,
    /// `SET LOCAL` in every transaction: PgBouncer's transaction or
    /// session mode, RDS Proxy and other poolers.
    Transaction,
}

/// Whether folds run as prepared statements; see `database.prepared` in
/// `config/default.yaml` and `db::prepared`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum PreparedMode {
    /// Prepared on a direct connection; unprepared behind a pooler, or
    /// once the server says a prepared statement went missing.
    Auto,
    /// Always prepared (PgBouncer 1.21 or later with
    /// `max_prepared_statements`, a session-mode pooler).
    On,
    /// Never: every fold is parsed and planned by the server.
    Off,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersSettings {
    #[serde(deserialize_with = "whole::deserialize")]
    pub total: u32,
    #[serde(deserialize_with = "schema_list")]
    pub schemas: Vec<String>,
    /// LIKE patterns: every schema matching one (and none of `exclude`)
    /// that holds `table` is folded, found by `discovery`.
    #[serde(rename = "match", deserialize_with = "schema_list")]
    pub matching: Vec<String>,
    #[serde(deserialize_with = "schema_list")]
    pub exclude: Vec<String>,
    /// How often discovery looks for schemas that came or went.
    #[serde(with = "duration")]
    pub rescan: Duration,
    /// Shared by every worker's [`TableSql`](crate::sql::TableSql).
    pub table: Arc<str>,
    pub create_schema: bool,
    #[serde(deserialize_with = "whole::deserialize")]
    pub vacuum_after: u64,
    /// The most deltas one fold deletes (see `sql`, "Batches").
    #[serde(deserialize_with = "whole::deserialize")]
    pub fold_batch: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartSettings {
    pub policy: RestartPolicyKind,
    #[serde(with = "duration")]
    pub delay: Duration,
    #[serde(with = "duration")]
    pub max_delay: Duration,
    pub multiplier: f64,
    #[serde(with = "duration")]
    pub reset_after: Duration,
    #[serde(deserialize_with = "whole::deserialize")]
    pub max_restarts: u32,
    #[serde(with = "duration")]
    pub window: Duration,
    pub jitter: f64,
    pub escalate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum RestartPolicyKind {
    Backoff,
    Never,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSettings {
    #[serde(with = "duration")]
    pub grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: LogLevel,
    pub format: LogFormat,
    pub fold_lines: FoldLines,
    /// Time between two `fleet_summary` lines; zero: none.
    #[serde(with = "duration")]
    pub summary_every: Duration,
}

/// At which level worker_spi's per-fold line (`worker_tick`) is logged;
/// see `log.fold_lines` in `config/default.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum FoldLines {
    /// `info` for fleets of up to [`FOLD_LINES_AT_INFO_MAX`] schemas,
    /// `debug` for bigger ones.
    Auto,
    Info,
    Debug,
}

/// worker_spi's own cap on workers: up to this many, a line per fold is
/// what worker_spi users read; beyond it the lines are a flood.
pub const FOLD_LINES_AT_INFO_MAX: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum LogFormat {
    Text,
    Json,
}

/// Control from SQL (see `control`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSettings {
    /// The channel pgfleet LISTENs on; empty: no control from SQL.
    pub channel: String,
    /// The listener's own session; empty: `database.url`.
    pub url: DatabaseUrl,
}

/// Several instances sharing one fleet (see `coordination`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinationSettings {
    pub enabled: bool,
    /// The first key of every advisory lock the fleet takes.
    pub namespace: i32,
    /// How many buckets the schemas are spread over.
    #[serde(deserialize_with = "whole::deserialize")]
    pub buckets: u32,
    /// The coordination session's `idle_session_timeout`: how long a
    /// frozen or cut-off instance keeps its buckets.
    #[serde(with = "duration")]
    pub lease: Duration,
}

impl CoordinationSettings {
    /// How often the coordination session is pinged (and the members
    /// read): a sixth of the lease.
    pub fn ping_every(&self) -> Duration {
        self.lease / 6
    }

    /// How long after a ping was sent its answer lets folds start: two
    /// thirds of the lease, so an instance stops folding at least a third
    /// of the lease before the server can let its locks go for want of
    /// pings. (A pooler between them may let them go sooner, when it sees
    /// its client gone: there the fence alone keeps two folds apart.)
    pub fn trust_window(&self) -> Duration {
        self.lease * 2 / 3
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: String,
    #[serde(deserialize_with = "whole::deserialize")]
    pub per_schema_metrics_max: u32,
    /// A file holding the token the HTTP actions (POST) need; read at
    /// load to check it, and again at every action, so that a rotated
    /// token is taken without a reload.
    pub token_file: String,
}

/// Enums read from text, with an error that lists the accepted words
/// instead of serde's "does not have variant constructor".
macro_rules! words {
    ($type:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        impl TryFrom<String> for $type {
            type Error = String;
            fn try_from(word: String) -> Result<Self, String> {
                match word.as_str() {
                    $($word => Ok($type::$variant),)+
                    _ => Err(format!("expected one of: {}", [$($word),+].join(", "))),
                }
            }
        }
    };
}

words!(PoolerMode { Auto = "auto", None = "none", Transaction = "transaction" });
words!(PreparedMode { Auto = "auto", On = "on", Off = "off" });
words!(RestartPolicyKind { Backoff = "backoff", Never = "never" });
words!(LogLevel { Error = "error", Warn = "warn", Info = "info", Debug = "debug", Trace = "trace" });
words!(LogFormat { Text = "text", Json = "json" });
words!(FoldLines { Auto = "auto", Info = "info", Debug = "debug" });

/// One schema to fold, and the name its worker goes by in the logs.
///
/// The names are shared, not copied: the Supervisor's slot, the worker,
/// its job and its [`Status`](crate::status::Status) entry all hold these
/// two allocations (with a `workers.schemas` list, one: the worker goes by
/// the schema's name), which at 100,000 schemas is tens of megabytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaTarget {
    pub schema: Arc<str>,
    pub worker: Arc<str>,
    pub origin: Origin,
}

/// Where a schema to fold comes from. Only a listed schema (or a
/// numbered one) is ever created when missing; a discovered one is folded
/// while it holds the table, and its worker retires when it no longer
/// does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// Named by `workers.schemas`, or `schema1 .. schemaN` of
    /// `workers.total`.
    Listed,
    /// Found by `workers.match`.
    Discovered,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Listed => "listed",
            Origin::Discovered => "discovered",
        }
    }
}

impl SchemaTarget {
    pub fn listed(schema: Arc<str>, worker: Arc<str>) -> Self {
        SchemaTarget {
            schema,
            worker,
            origin: Origin::Listed,
        }
    }

    /// A schema `workers.match` found: its worker goes by its name.
    pub fn discovered(schema: Arc<str>) -> Self {
        SchemaTarget {
            worker: Arc::clone(&schema),
            schema,
            origin: Origin::Discovered,
        }
    }
}

impl Settings {
    /// The schemas the settings name: `workers.schemas` when non-empty,
    /// none when only `workers.match` is set (discovery finds them), else
    /// `schema1` .. `schemaN` named `worker 1` .. `worker N` as in worker_spi.
    pub fn targets(&self) -> Vec<SchemaTarget> {
        if self.workers.schemas.is_empty() {
            (1..=self.numbered())
                .map(|n| {
                    SchemaTarget::listed(format!("schema{n}").into(), format!("worker {n}").into())
                })
                .collect()
        } else {
            self.workers
                .schemas
                .iter()
                .map(|schema| {
                    let schema: Arc<str> = schema.as_str().into();
                    SchemaTarget::listed(Arc::clone(&schema), schema)
                })
                .collect()
        }
    }

    /// `workers.total`, unless `workers.schemas` or `workers.match` takes
    /// its place.
    fn numbered(&self) -> u32 {
        if self.workers.schemas.is_empty() && !self.discovers() {
            self.workers.total
        } else {
            0
        }
    }

    /// Whether `workers.match` asks for discovery.
    pub fn discovers(&self) -> bool {
        !self.workers.matching.is_empty()
    }

    /// How many schemas the settings name, without listing them (those
    /// discovery finds not counted).
    pub fn fleet_size(&self) -> usize {
        if self.workers.schemas.is_empty() {
            usize::try_from(self.numbered()).unwrap_or(usize::MAX)
        } else {
            self.workers.schemas.len()
        }
    }

    /// Whether a fold that changed the total is logged at info (else debug).
    pub fn fold_lines_at_info(&self) -> bool {
        match self.log.fold_lines {
            FoldLines::Info => true,
            FoldLines::Debug => false,
            // A discovered fleet can grow to any size: debug.
            FoldLines::Auto => !self.discovers() && self.fleet_size() <= FOLD_LINES_AT_INFO_MAX,
        }
    }

    /// Checks that types alone cannot express. Every problem is returned,
    /// not just the first, so one edit fixes a file. Whether
    /// `database.url` can be connected with is not checked here: the
    /// loader that builds the connector says (see `config_actor::Loaded`).
    pub fn problems(&self) -> Vec<KeyProblem> {
        let mut problems = Vec::new();
        let mut bad = |key: &'static str, value: String, reason: &str| {
            problems.push((key, value, reason.to_owned()));
        };
        let db = &self.database;
        if db.pool_size == 0 {
            bad("database.pool_size", "0".into(), "must be at least 1");
        }
        if db.prepared_cache == 0 {
            bad(
                "database.prepared_cache",
                "0".into(),
                "must be at least 1 (database.prepared: off prepares nothing)",
            );
        }
        if db.application_name.len() > MAX_IDENTIFIER_BYTES {
            bad(
                "database.application_name",
                db.application_name.clone(),
                "is longer than 63 bytes; PostgreSQL would truncate it",
            );
        }
        if db.connect_timeout.is_zero() {
            bad(
                "database.connect_timeout",
                "0s".into(),
                "must be longer than 0",
            );
        }
        if db.statement_timeout.is_zero() {
            bad(
                "database.statement_timeout",
                "0s".into(),
                "must be longer than 0: pgfleet also uses it to notice a stalled server",
            );
        }
        if db.fold_lock_timeout < Duration::from_millis(1) {
            bad(
                "database.fold_lock_timeout",
                duration::format(&db.fold_lock_timeout),
                "must be at least 1ms: a fold waiting for a lock holds a connection the other \
                 schemas share (PostgreSQL counts lock_timeout in milliseconds, and 0 would wait \
                 forever)",
            );
        }
        if !db.password.is_empty() && !db.password_file.is_empty() {
            bad(
                "database.password_file",
                db.password_file.clone(),
                "is set together with database.password; set one of them",
            );
        }
        if self.naptime < Duration::from_millis(1) {
            bad(
                "naptime",
                duration::format(&self.naptime),
                "must be at least 1ms",
            );
        }
        let workers = &self.workers;
        if let Err(reason) = check_identifier(&workers.table) {
            bad("workers.table", workers.table.to_string(), &reason);
        }
        if workers.fold_batch == 0 {
            bad(
                "workers.fold_batch",
                "0".into(),
                "must be at least 1: it is the most deltas one fold deletes",
            );
        }
        let mut seen = std::collections::HashSet::new();
        for schema in &workers.schemas {
            if let Err(reason) = check_identifier(schema) {
                bad("workers.schemas", schema.clone(), &reason);
            } else if !seen.insert(schema) {
                bad("workers.schemas", schema.clone(), "is listed twice");
            }
        }
        for (key, patterns) in [
            ("workers.match", &workers.matching),
            ("workers.exclude", &workers.exclude),
        ] {
            for pattern in patterns {
                if pattern.is_empty() {
                    bad(key, String::new(), "an empty pattern matches no schema");
                } else if pattern.contains('\u{a0}') {
                    bad(
                        key,
                        pattern.clone(),
                        "holds a non-breaking space: in a double-quoted YAML string `\\_` is one; \
                         write the pattern unquoted or in single quotes ('tenant\\_%')",
                    );
                }
            }
        }
        if !workers.exclude.is_empty() && workers.matching.is_empty() {
            bad(
                "workers.exclude",
                workers.exclude.join(", "),
                "excludes from what workers.match finds, and workers.match is empty",
            );
        }
        if workers.rescan < Duration::from_secs(1) {
            bad(
                "workers.rescan",
                humantime::format_duration(workers.rescan).to_string(),
                "must be at least 1s: each rescan is one catalog query",
            );
        }
        if self.control.channel.len() > MAX_IDENTIFIER_BYTES {
            bad(
                "control.channel",
                self.control.channel.clone(),
                "is longer than 63 bytes, PostgreSQL's limit for a channel name",
            );
        }
        let coordination = &self.coordination;
        if !(1..=crate::ownership::MAX_BUCKETS).contains(&coordination.buckets) {
            bad(
                "coordination.buckets",
                coordination.buckets.to_string(),
                &format!(
                    "must be between 1 and {}: each bucket is one advisory lock in the server's shared lock table",
                    crate::ownership::MAX_BUCKETS
                ),
            );
        }
        if coordination.lease < Duration::from_secs(1)
            || coordination.lease > Duration::from_secs(3600)
        {
            bad(
                "coordination.lease",
                duration::format(&coordination.lease),
                "must be between 1s and 1h: a frozen instance's schemas wait this long for another",
            );
        }
        if coordination.enabled
            && self.control.url.expose().is_empty()
            && self.database.pooler == PoolerMode::Transaction
        {
            bad(
                "coordination.enabled",
                "true".into(),
                "needs a session of its own, and database.url goes through a transaction-mode pooler \
                 (database.pooler: transaction), where session advisory locks do not stay with pgfleet; \
                 set control.url to a direct (or session-mode) URL",
            );
        }
        let restart = &self.restart;
        if restart.delay.is_zero() {
            bad("restart.delay", "0s".into(), "must be longer than 0");
        }
        if restart.max_delay < restart.delay {
            bad(
                "restart.max_delay",
                duration::format(&restart.max_delay),
                &format!(
                    "is shorter than restart.delay ({})",
                    duration::format(&restart.delay)
                ),
            );
        }
        if !(restart.multiplier.is_finite() && restart.multiplier >= 1.0) {
            bad(
                "restart.multiplier",
                restart.multiplier.to_string(),
                "must be a number of at least 1.0 (1.0 = fixed delay)",
            );
        }
        if !(0.0..=1.0).contains(&restart.jitter) {
            bad(
                "restart.jitter",
                restart.jitter.to_string(),
                "must be between 0.0 and 1.0",
            );
        }
        if restart.window.is_zero() {
            bad("restart.window", "0s".into(), "must be longer than 0");
        }
        if !self.http.listen.is_empty() && self.http.listen.parse::<SocketAddr>().is_err() {
            bad(
                "http.listen",
                self.http.listen.clone(),
                "must be an address such as \"127.0.0.1:8187\" or \"[::]:8187\", or \"\" for none",
            );
        }
        problems
    }

    /// What differs between two configurations, one "key: old -> new" per
    /// leaf, with secrets masked: the `changes` of `config_reloaded`.
    pub fn changes_from(&self, old: &Settings) -> Vec<String> {
        let (Ok(old_value), Ok(new_value)) =
            (serde_json::to_value(old), serde_json::to_value(self))
        else {
            return vec!["(cannot compare)".into()];
        };
        let mut changes = Vec::new();
        diff_values("", &old_value, &new_value, &mut changes);
        // Masked, two secrets look equal: two URLs that differ only in their
        // password, two passwords, or a password file rotated in place (the
        // path is the same, the password read from it is not; a reload is
        // how a rotation is applied, so it must not say "none"). The value
        // itself never appears.
        let (db, old_db) = (&self.database, &old.database);
        let mut unseen = |key: &str, differs: bool, change: &str| {
            let prefix = format!("{key}:");
            if differs && !changes.iter().any(|c| c.starts_with(&prefix)) {
                changes.push(format!("{key}: {change}"));
            }
        };
        unseen("database.url", db.url != old_db.url, "password changed");
        unseen(
            "database.password",
            db.password != old_db.password,
            "changed",
        );
        unseen(
            "database.password_file",
            db.password_from_file != old_db.password_from_file,
            "password changed",
        );
        changes
    }
}

fn diff_values(
    path: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            for (key, new_value) in new {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match old.get(key) {
                    Some(old_value) => diff_values(&path, old_value, new_value, out),
                    None => out.push(format!("{path}: (none) -> {new_value}")),
                }
            }
        }
        (Value::Array(old), Value::Array(new)) if old != new => {
            out.push(format!("{path}: {}", list_change(old, new)))
        }
        _ if old != new => out.push(format!("{path}: {old} -> {new}")),
        _ => {}
    }
}

/// Items of a list named one by one up to this many a side; beyond it, a
/// count and the first few.
const LIST_CHANGE_NAMED: usize = 5;

/// What changed in a list (a schema list of thousands), not both whole
/// lists: `+tenant_021 -tenant_002`, or `+1200 (tenant_1, tenant_2,
/// tenant_3, tenant_4, tenant_5, ...) -3 (...)`, or `reordered`.
fn list_change(old: &[serde_json::Value], new: &[serde_json::Value]) -> String {
    use std::collections::HashSet;
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let (old_set, new_set): (HashSet<_>, HashSet<_>) = (old.iter().collect(), new.iter().collect());
    let added: Vec<String> = new
        .iter()
        .filter(|v| !old_set.contains(v))
        .map(text)
        .collect();
    let removed: Vec<String> = old
        .iter()
        .filter(|v| !new_set.contains(v))
        .map(text)
        .collect();
    let side = |sign: char, items: &[String]| -> Option<String> {
        match items.len() {
            0 => None,
            n if n <= LIST_CHANGE_NAMED => Some(
                items
                    .iter()
                    .map(|item| format!("{sign}{item}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            n => Some(format!(
                "{sign}{n} ({}, ...)",
                items[..LIST_CHANGE_NAMED].join(", ")
            )),
        }
    };
    let parts: Vec<String> = [side('+', &added), side('-', &removed)]
        .into_iter()
        .flatten()
        .collect();
    if parts.is_empty() {
        "reordered".into()
    } else {
        parts.join(" ")
    }
}

/// Schema and table names: anything PostgreSQL accepts as a quoted
/// identifier, which is everything but the empty string, NUL, and more than
/// 63 bytes.
pub fn check_identifier(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("is empty; a PostgreSQL name needs 1 to 63 bytes".into())
    } else if name.len() > MAX_IDENTIFIER_BYTES {
        Err(format!(
            "is {} bytes long; PostgreSQL names are at most 63 bytes and a longer one would be truncated",
            name.len()
        ))
    } else if name.contains('\0') {
        Err("contains a NUL character, which PostgreSQL names cannot".into())
    } else {
        Ok(())
    }
}

/// `workers.schemas` from YAML is a list; from an environment variable it is
/// one string: either a YAML flow list (`[a, b]`, `["a","b"]`), which is
/// what people write after seeing the YAML form, or comma-separated names
/// (`a,b,c`, spaces around names trimmed). A comma-form name with a bracket
/// is refused: `[a, b]` must never become schemas named `[a` and `b]`.
fn schema_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct SchemaList;
    impl<'de> serde::de::Visitor<'de> for SchemaList {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of schema names, or one comma-separated string of them")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Vec<String>, E> {
            if text.trim_start().starts_with('[') {
                return serde_norway::from_str::<Vec<String>>(text).map_err(|e| {
                    E::custom(format!(
                        "starts with \"[\" but is not a YAML list of names ({e}); \
                         write [a, b] or a,b"
                    ))
                });
            }
            let names: Vec<String> = text
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect();
            match names.iter().find(|name| name.contains(['[', ']'])) {
                Some(name) => Err(E::custom(format!(
                    "the name {name:?} holds a bracket: write the list as [a, b] (a YAML list) \
                     or a,b (comma-separated); a name that really holds one must come from a \
                     YAML file"
                ))),
                None => Ok(names),
            }
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut names = Vec::new();
            while let Some(name) = seq.next_element::<String>()? {
                names.push(name);
            }
            Ok(names)
        }
    }
    deserializer.deserialize_any(SchemaList)
}

impl LogLevel {
    pub fn as_slog(self) -> slog::Level {
        match self {
            LogLevel::Error => slog::Level::Error,
            LogLevel::Warn => slog::Level::Warning,
            LogLevel::Info => slog::Level::Info,
            LogLevel::Debug => slog::Level::Debug,
            LogLevel::Trace => slog::Level::Trace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Settings {
        ConfigSources::default()
            .load_without_env()
            .expect("defaults are valid")
    }

    #[test]
    fn fold_lines_follow_the_fleet_size_in_auto() {
        let mut settings = defaults();
        settings.workers.total = FOLD_LINES_AT_INFO_MAX as u32;
        assert!(settings.fold_lines_at_info());
        settings.workers.total += 1;
        assert!(!settings.fold_lines_at_info());
        settings.log.fold_lines = FoldLines::Info;
        assert!(settings.fold_lines_at_info());
        settings.log.fold_lines = FoldLines::Auto;
        settings.workers.schemas = vec!["a".into(), "b".into()];
        assert!(settings.fold_lines_at_info(), "two listed schemas");
        settings.log.fold_lines = FoldLines::Debug;
        assert!(!settings.fold_lines_at_info());
    }

    #[test]
    fn default_targets_are_worker_spi_schemas() {
        let targets = defaults().targets();
        assert_eq!(targets.len(), 2);
        assert_eq!(&*targets[1].schema, "schema2");
        assert_eq!(&*targets[1].worker, "worker 2");
    }

    /// YAML's double-quoted `"tenant\_%"` is `tenant`, a non-breaking
    /// space and `%`: refused, saying how to write it.
    #[test]
    fn a_pattern_with_a_non_breaking_space_is_refused() {
        let mut settings = defaults();
        settings.workers.matching = vec!["tenant\u{a0}%".into()];
        let problems = settings.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "workers.match");
        assert!(problems[0].2.contains("single quotes"), "{problems:?}");
    }

    #[test]
    fn explicit_schemas_replace_total() {
        let mut settings = defaults();
        settings.workers.schemas = vec!["Sales".into(), "a\"b".into()];
        let targets = settings.targets();
        assert_eq!(targets.len(), 2);
        assert_eq!(&*targets[0].worker, "Sales");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut settings = defaults();
        settings.database.pool_size = 0;
        settings.restart.jitter = 2.0;
        settings.workers.schemas = vec!["x".repeat(64), "ok".into(), "ok".into()];
        let keys: Vec<_> = settings
            .problems()
            .into_iter()
            .map(|(key, _, _)| key)
            .collect();
        assert_eq!(
            keys,
            [
                "database.pool_size",
                "workers.schemas",
                "workers.schemas",
                "restart.jitter"
            ]
        );
    }

    /// One tenant added and one removed among 20: what changed, not both
    /// lists (654 characters); a big change is counted.
    #[test]
    fn a_list_change_names_what_was_added_and_removed() {
        let tenants = |range: std::ops::RangeInclusive<u32>| -> Vec<String> {
            range.map(|n| format!("tenant_{n:03}")).collect()
        };
        let mut old = defaults();
        old.workers.schemas = tenants(1..=20);
        let mut new = old.clone();
        new.workers.schemas.retain(|s| s != "tenant_002");
        new.workers.schemas.push("tenant_021".into());
        assert_eq!(
            new.changes_from(&old),
            ["workers.schemas: +tenant_021 -tenant_002"]
        );

        let mut many = old.clone();
        many.workers.schemas = tenants(11..=1200);
        assert_eq!(
            many.changes_from(&old),
            ["workers.schemas: +1180 (tenant_021, tenant_022, tenant_023, tenant_024, tenant_025, ...) \
              -10 (tenant_001, tenant_002, tenant_003, tenant_004, tenant_005, ...)"]
        );

        let mut reordered = old.clone();
        reordered.workers.schemas.reverse();
        assert_eq!(reordered.changes_from(&old), ["workers.schemas: reordered"]);
    }

    #[test]
    fn changes_name_the_keys_and_mask_secrets() {
        let old = defaults();
        let mut new = old.clone();
        new.naptime = Duration::from_secs(1);
        new.database.url = DatabaseUrl::new("postgres://u:hunter2@h/d");
        let changes = new.changes_from(&old).join("; ");
        assert!(changes.contains("naptime: \"10s\" -> \"1s\""), "{changes}");
        assert!(changes.contains("database.url"), "{changes}");
        assert!(!changes.contains("hunter2"), "{changes}");
        let mut newer = new.clone();
        newer.database.url = DatabaseUrl::new("postgres://u:other@h/d");
        assert_eq!(newer.changes_from(&new), ["database.url: password changed"]);
    }

    #[test]
    fn a_rotated_password_is_a_change_that_hides_the_password() {
        let mut old = defaults();
        old.database.password_file = "/run/secrets/pw".into();
        old.database.password_from_file = Secret::new("hunter2");
        let mut new = old.clone();
        new.database.password_from_file = Secret::new("swordfish");
        assert_eq!(
            new.changes_from(&old),
            ["database.password_file: password changed"]
        );
        assert!(old.changes_from(&old).is_empty());

        // A new path says so itself, once.
        let mut moved = new.clone();
        moved.database.password_file = "/run/secrets/pw2".into();
        moved.database.password_from_file = Secret::new("other");
        let changes = moved.changes_from(&new);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(changes[0].contains("/run/secrets/pw2"), "{changes:?}");

        let mut old = defaults();
        old.database.password = Secret::new("hunter2");
        let mut new = old.clone();
        new.database.password = Secret::new("swordfish");
        assert_eq!(new.changes_from(&old), ["database.password: changed"]);
        for change in new.changes_from(&old).iter().chain(&changes) {
            assert!(
                !change.contains("hunter2") && !change.contains("swordfish"),
                "{change}"
            );
        }
    }

    #[test]
    fn schemas_from_one_string() {
        let read = |text: &str| -> Result<Vec<String>, String> {
            schema_list(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(text))
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            read("a, b ,c"),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(read("[a, b]"), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(read(" [\"a\",\"b\"]"), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(
            read("['x, y', Sales]"),
            Ok(vec!["x, y".into(), "Sales".into()])
        );
        assert_eq!(read("[]"), Ok(vec![]));
        for bad in ["a, b]", "x[1]", "[a, b", "[a, [b]]"] {
            let error = read(bad).expect_err(bad);
            assert!(error.contains("[a, b]"), "{bad}: {error}");
        }
    }
}

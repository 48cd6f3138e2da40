//! ConfigActor: re-reads every configuration layer on SIGHUP and tells its
//! subscribers.
//!
//! A reload is all or nothing: the new layers are merged and validated as
//! at start, and only a configuration that passes replaces the running one.
//! A bad edit is logged as `config_rejected`, naming the key, and the
//! service keeps running on what it had.
//!
//! Validating includes building the database [`Connector`] (the connection
//! string, the `PG*` variables, the TLS files and, with
//! `sslrootcert=system`, the OS trust store): [`Loaded`] builds it once,
//! with the settings, and it is handed to the Supervisor with them, which
//! builds its pool on it; nothing on the actor thread reads those files.
//!
//! Reading the files is blocking I/O, and a configuration on a hung mount
//! (NFS, a stuck FUSE secret store) would block forever: it runs on a
//! thread of its own, and a read that has not finished within
//! [`READ_WITHIN`] is rejected while the actors go on. Reloads asked for
//! while one is being read coalesce into one more read after it.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use slog::{error, info, warn, Logger};

use crate::config_watch::WatchedFiles;
use crate::conninfo::ProcessEnvironment;
use crate::db::Connector;
use crate::settings::{ConfigError, ConfigSources, Settings};
use crate::status::Status;

/// How long reading every layer may take before the reload is given up.
pub const READ_WITHIN: Duration = Duration::from_secs(5);

/// Broadcast after a reload was accepted.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct SettingsChanged {
    pub settings: Arc<Settings>,
    /// Built from `settings.database` by the reading thread; the
    /// Supervisor builds its new pool on it when `database.*` changed.
    pub connector: Arc<Connector>,
    /// Built from `control.url` when it is set (see `control`).
    pub control: Option<Arc<Connector>>,
}

/// A configuration that passed every check, and the connector built from
/// it: what the service starts with, and what a reload hands over.
pub struct Loaded {
    pub settings: Settings,
    pub connector: Connector,
    /// The control listener's, from `control.url` when it is set.
    pub control: Option<Connector>,
}

impl Loaded {
    /// Every layer, the process environment included (see
    /// [`ConfigSources::load`]); the connector logs to `log`.
    pub fn read(sources: &ConfigSources, log: &Logger) -> Result<Self, ConfigError> {
        let environment: Vec<(String, String)> = std::env::vars().collect();
        Self::read_with_env(sources, &environment, log)
    }

    /// Every layer, with `environment` standing in for the process's in the
    /// `PGFLEET__` layer (the connection string's `PG*` variables are still
    /// read from the process). A connection string the connector cannot
    /// use is a problem of `database.url`, reported with the others.
    pub fn read_with_env(
        sources: &ConfigSources,
        environment: &[(String, String)],
        log: &Logger,
    ) -> Result<Self, ConfigError> {
        let (settings, (connector, control)) = sources.load_and_build(environment, |settings| {
            let db = &settings.database;
            let usable = |key: &'static str, url: &crate::settings::DatabaseUrl, e: String| {
                vec![(
                    key,
                    url.masked(),
                    format!("not a usable PostgreSQL connection URL or key=value string: {e}"),
                )]
            };
            let connector = Connector::new(db, &ProcessEnvironment, log)
                .map_err(|e| usable("database.url", &db.url, e))?;
            let control_url = &settings.control.url;
            let control = if control_url.expose().is_empty() {
                None
            } else {
                let own = crate::settings::DatabaseSettings {
                    url: control_url.clone(),
                    ..db.clone()
                };
                Some(
                    Connector::new(&own, &ProcessEnvironment, log)
                        .map_err(|e| usable("control.url", control_url, e))?,
                )
            };
            Ok((connector, control))
        })?;
        Ok(Loaded {
            settings,
            connector,
            control,
        })
    }
}

/// SIGHUP.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reload;

pub struct ConfigActor {
    sources: ConfigSources,
    current: Arc<Settings>,
    subscribers: Vec<Recipient<SettingsChanged>>,
    status: Status,
    watched: Option<WatchedFiles>,
    log: Logger,
    reading: bool,
    read_again: bool,
}

impl ConfigActor {
    /// `subscribers` are told in order: the log level first, so that what
    /// the others log under the new configuration uses its level.
    pub fn new(
        sources: ConfigSources,
        current: Arc<Settings>,
        subscribers: Vec<Recipient<SettingsChanged>>,
        status: Status,
        log: Logger,
    ) -> Self {
        ConfigActor {
            sources,
            current,
            subscribers,
            status,
            watched: None,
            log,
            reading: false,
            read_again: false,
        }
    }

    /// With `--watch-config`: the files to watch, kept up to date.
    pub fn watching(mut self, watched: WatchedFiles) -> Self {
        watched.set(watched_files(&self.sources, &self.current));
        self.watched = Some(watched);
        self
    }

    fn apply(
        &mut self,
        Loaded {
            settings,
            connector,
            control,
        }: Loaded,
    ) {
        if let Some(watched) = &self.watched {
            watched.set(watched_files(&self.sources, &settings));
        }
        let settings = Arc::new(settings);
        let connector = Arc::new(connector);
        let control = control.map(Arc::new);
        for warning in &settings.load_warnings {
            warn!(self.log, "{warning}"; "event" => "config_warning");
        }
        let changes = settings.changes_from(&self.current);
        let summary = if changes.is_empty() {
            "none".to_owned()
        } else {
            changes.join("; ")
        };
        info!(self.log, "configuration reloaded; changes: {summary}";
            "event" => "config_reloaded", "changes" => summary.clone());
        self.current = Arc::clone(&settings);
        for subscriber in &self.subscribers {
            subscriber.do_send(SettingsChanged {
                settings: Arc::clone(&settings),
                connector: Arc::clone(&connector),
                control: control.clone(),
            });
        }
        self.status.config_reloaded(true);
    }

    fn reject(&self, why: &str) {
        self.status.config_reloaded(false);
        error!(self.log, "configuration rejected, the running one stays: {why}";
            "event" => "config_rejected", "error" => why.to_owned());
    }
}

/// The `--config` files, and `database.password_file` when set.
fn watched_files(sources: &ConfigSources, settings: &Settings) -> Vec<std::path::PathBuf> {
    let mut files = sources.files.clone();
    if !settings.database.password_file.is_empty() {
        files.push(settings.database.password_file.clone().into());
    }
    files
}

/// Reads every layer and builds the connector on a thread of its own; the
/// answer comes back on a channel. A thread stuck in a read is left behind
/// (it ends with the process), never waited for.
async fn read_off_thread(
    sources: ConfigSources,
    log: Logger,
) -> Result<Result<Loaded, ConfigError>, String> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pgfleet-config-read".into())
        .spawn(move || {
            let _ = answer.send(Loaded::read(&sources, &log));
        })
        .map_err(|e| format!("cannot start a thread to read the configuration: {e}"))?;
    match tokio::time::timeout(READ_WITHIN, answered).await {
        Ok(Ok(loaded)) => Ok(loaded),
        Ok(Err(_)) => Err("reading the configuration failed (the reading thread ended)".into()),
        Err(_) => Err(format!(
            "reading the configuration did not finish within {READ_WITHIN:?} (a hung mount?)"
        )),
    }
}

impl Actor for ConfigActor {
    type Context = Context<Self>;

    /// The ConfigActor only stops with the actor system; any other stop
    /// is a panic in it, and without it no reload would ever apply: the
    /// service ends with exit 1 (see `panics`).
    fn stopped(&mut self, _ctx: &mut Self::Context) {
        crate::panics::essential_actor_stopped("ConfigActor", false, &self.log);
    }
}

impl Handler<Reload> for ConfigActor {
    type Result = ();

    fn handle(&mut self, _: Reload, ctx: &mut Self::Context) {
        #[cfg(feature = "test-hooks")]
        if std::env::var_os("TEST_HOOK_PANIC_IN_RELOAD").is_some() {
            panic!("test hook: a panic in the ConfigActor");
        }
        if self.reading {
            self.read_again = true;
            return;
        }
        self.reading = true;
        crate::notify::tell(crate::notify::Note::Reloading);
        ctx.spawn(
            read_off_thread(self.sources.clone(), self.log.clone())
                .into_actor(self)
                .map(|read, actor, ctx| {
                    actor.reading = false;
                    let told = match read {
                        Ok(Ok(loaded)) => {
                            actor.apply(loaded);
                            "configuration reloaded"
                        }
                        Ok(Err(e)) => {
                            actor.reject(&e.one_line());
                            "configuration rejected; the running one stays"
                        }
                        Err(why) => {
                            actor.reject(&why);
                            "configuration rejected; the running one stays"
                        }
                    };
                    crate::notify::tell(crate::notify::Note::Ready(told.into()));
                    if std::mem::take(&mut actor.read_again) {
                        ctx.notify(Reload);
                    }
                }),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn quiet() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    fn read(yaml: &str) -> Result<Loaded, ConfigError> {
        let mut file = tempfile::Builder::new()
            .suffix(".yaml")
            .tempfile()
            .expect("temp file");
        file.write_all(yaml.as_bytes()).expect("write");
        Loaded::read_with_env(
            &ConfigSources::new(vec![file.path().to_path_buf()]),
            &[],
            &quiet(),
        )
    }

    #[test]
    fn the_connector_is_built_from_the_settings_read() {
        let loaded =
            read("database:\n  url: \"postgres://u@db.example:6543/app\"\n").expect("valid");
        assert_eq!(
            loaded.settings.database.url.expose(),
            "postgres://u@db.example:6543/app"
        );
        let target = loaded.connector.describe_target();
        assert!(target.starts_with("u@db.example:6543/app "), "{target}");
    }

    #[test]
    fn an_unusable_url_is_a_problem_of_database_url_among_the_others() {
        let error =
            read("database:\n  url: \"postgres://u:hunter2@h:notaport/d\"\n  pool_size: 0\n")
                .err()
                .expect("rejected");
        let ConfigError::Invalid(problems) = &error else {
            panic!("{error}");
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["database.pool_size", "database.url"]);
        let text = error.to_string();
        assert!(
            text.contains("not a usable PostgreSQL connection URL or key=value string"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }
}

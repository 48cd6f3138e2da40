//! ConfigActor: re-reads every configuration layer on SIGHUP and tells its
//! subscribers.
//!
//! A reload is all or nothing: the new layers are merged and validated as
//! at start, and only a configuration that passes replaces the running one.
//! A bad edit is logged as `config_rejected`, naming the key, and the
//! service keeps running on what it had.
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
use crate::settings::{ConfigError, ConfigSources, Settings};
use crate::status::Status;

/// How long reading every layer may take before the reload is given up.
pub const READ_WITHIN: Duration = Duration::from_secs(5);

/// Broadcast after a reload was accepted.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct SettingsChanged {
    pub settings: Arc<Settings>,
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

    fn apply(&mut self, settings: Settings) {
        if let Some(watched) = &self.watched {
            watched.set(watched_files(&self.sources, &settings));
        }
        let settings = Arc::new(settings);
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

/// Reads every layer on a thread of its own; the answer comes back on a
/// channel. A thread stuck in a read is left behind (it ends with the
/// process), never waited for.
async fn read_off_thread(sources: ConfigSources) -> Result<Result<Settings, ConfigError>, String> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pgfleet-config-read".into())
        .spawn(move || {
            let _ = answer.send(sources.load());
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
        ctx.spawn(read_off_thread(self.sources.clone()).into_actor(self).map(
            |read, actor, ctx| {
                actor.reading = false;
                let told = match read {
                    Ok(Ok(settings)) => {
                        actor.apply(settings);
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
            },
        ));
    }
}

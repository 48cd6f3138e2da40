//! ConfigActor: re-reads every configuration layer on SIGHUP and tells its
//! subscribers.
//!
//! A reload is all or nothing: the new layers are merged and validated as
//! at start, and only a configuration that passes replaces the running one.
//! A bad edit is logged as `config_rejected`, naming the key, and the
//! service keeps running on what it had.

use std::sync::Arc;

use actix::prelude::*;
use slog::{error, info, warn, Logger};

use crate::settings::{ConfigSources, Settings};

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
    log: Logger,
}

impl ConfigActor {
    /// `subscribers` are told in order: the log level first, so that what
    /// the others log under the new configuration uses its level.
    pub fn new(
        sources: ConfigSources,
        current: Arc<Settings>,
        subscribers: Vec<Recipient<SettingsChanged>>,
        log: Logger,
    ) -> Self {
        ConfigActor {
            sources,
            current,
            subscribers,
            log,
        }
    }
}

impl Actor for ConfigActor {
    type Context = Context<Self>;
}

impl Handler<Reload> for ConfigActor {
    type Result = ();

    fn handle(&mut self, _: Reload, _ctx: &mut Self::Context) {
        let settings = match self.sources.load() {
            Ok(settings) => Arc::new(settings),
            Err(e) => {
                error!(self.log, "configuration rejected, the running one stays: {e}";
                    "event" => "config_rejected", "error" => e.to_string());
                return;
            }
        };
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
    }
}

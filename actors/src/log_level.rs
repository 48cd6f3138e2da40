//! The log level, changeable while the service runs.
//!
//! slog fixes filters when the logger is built; this drain reads the level
//! from an atomic instead, and the switch is itself a subscriber of the
//! ConfigActor, so `log.level` takes effect on SIGHUP like every other key.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use slog::{Drain, Level, OwnedKVList, Record};

use crate::config_actor::SettingsChanged;

#[derive(Clone, Debug)]
pub struct LevelSwitch(Arc<AtomicUsize>);

impl LevelSwitch {
    pub fn new(level: Level) -> Self {
        LevelSwitch(Arc::new(AtomicUsize::new(level.as_usize())))
    }

    pub fn set(&self, level: Level) {
        self.0.store(level.as_usize(), Ordering::Relaxed);
        // The `log` crate's records (tokio-postgres, bb8) are shown at debug
        // and trace only: below that, they are not even formatted.
        log::set_max_level(match level {
            Level::Trace => log::LevelFilter::Trace,
            Level::Debug => log::LevelFilter::Debug,
            _ => log::LevelFilter::Off,
        });
    }

    pub fn get(&self) -> Level {
        Level::from_usize(self.0.load(Ordering::Relaxed)).unwrap_or(Level::Info)
    }

    /// Wraps `drain` so that it only sees records at the current level.
    pub fn filter<D: Drain>(&self, drain: D) -> LevelFilter<D> {
        LevelFilter {
            drain,
            switch: self.clone(),
        }
    }
}

pub struct LevelFilter<D> {
    drain: D,
    switch: LevelSwitch,
}

impl<D: Drain> Drain for LevelFilter<D> {
    type Ok = Option<D::Ok>;
    type Err = D::Err;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<Self::Ok, Self::Err> {
        if record.level().is_at_least(self.switch.get()) {
            self.drain.log(record, values).map(Some)
        } else {
            Ok(None)
        }
    }

    fn is_enabled(&self, level: Level) -> bool {
        level.is_at_least(self.switch.get()) && self.drain.is_enabled(level)
    }
}

impl Actor for LevelSwitch {
    type Context = Context<Self>;
}

impl Handler<SettingsChanged> for LevelSwitch {
    type Result = ();

    fn handle(&mut self, msg: SettingsChanged, _ctx: &mut Self::Context) {
        self.set(msg.settings.log.level.as_slog());
    }
}

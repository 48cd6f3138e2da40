//! Log set-up: one line per event, as text for people or JSON for machines.
//!
//! Both formats carry the same fields (`event`, `worker`, `schema`, ...).
//! Records go through an async drain sized for thousands of workers starting
//! at once; it blocks rather than drop a line, and its guard is kept until
//! exit so the last lines (`service_stopped`) are written.

use std::io;

use pgfleet_actors::log_level::LevelSwitch;
use pgfleet_actors::settings::{LogFormat, LogSettings};
use slog::{o, Drain, FnValue, Logger, PushFnValue};

const CHANNEL_SIZE: usize = 65_536;

pub struct Logging {
    pub log: Logger,
    pub level: LevelSwitch,
    pub guard: slog_async::AsyncGuard,
}

impl Logging {
    /// Writes out every queued line; call last, after the final record.
    pub fn finish(self) {
        drop(self.log);
        drop(self.guard);
    }
}

pub fn start(settings: &LogSettings) -> Logging {
    let level = LevelSwitch::new(settings.level.as_slog());
    let drain = match settings.format {
        LogFormat::Json => {
            let json = slog_json::Json::new(io::stderr())
                .add_key_value(o!(
                    "ts" => PushFnValue(|_, ser| ser.emit(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string())),
                    "level" => FnValue(|record| level_name(record.level())),
                    "msg" => PushFnValue(|record, ser| ser.emit(record.msg())),
                ))
                .build()
                .fuse();
            level.filter(json).fuse().map(boxed)
        }
        LogFormat::Text => {
            let decorator = slog_term::PlainDecorator::new(io::stderr());
            let text = slog_term::FullFormat::new(decorator)
                .use_original_order()
                .build()
                .fuse();
            level.filter(text).fuse().map(boxed)
        }
    };
    let (drain, guard) = slog_async::Async::new(drain)
        .chan_size(CHANNEL_SIZE)
        .overflow_strategy(slog_async::OverflowStrategy::Block)
        .thread_name("pgfleet-log".into())
        .build_with_guard();
    Logging {
        log: Logger::root(drain.fuse(), o!()),
        level,
        guard,
    }
}

type BoxedDrain = Box<dyn Drain<Ok = (), Err = slog::Never> + Send>;

fn boxed<D: Drain<Ok = (), Err = slog::Never> + Send + 'static>(drain: D) -> BoxedDrain {
    Box::new(drain)
}

/// The words `log.level` uses, so a grep for `"level":"warn"` matches.
fn level_name(level: slog::Level) -> &'static str {
    match level {
        slog::Level::Critical | slog::Level::Error => "error",
        slog::Level::Warning => "warn",
        slog::Level::Info => "info",
        slog::Level::Debug => "debug",
        slog::Level::Trace => "trace",
    }
}

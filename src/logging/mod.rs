//! Log set-up: one line per event, as text for people or JSON for machines.
//!
//! Both formats carry the same fields (`event`, `worker`, `schema`, ...).
//! Actors never wait for the log: records cross to a logging thread through
//! a bounded channel sized for thousands of workers starting at once, and
//! a full channel or a failed write drops the line and counts it (see
//! `output`). At exit the queued lines get a bounded time to be written, so
//! a stalled reader cannot hold the process.
//!
//! Records of the `log` crate (tokio-postgres, bb8) are bridged in through
//! slog-stdlog, shown at debug and below.

mod output;
mod text;

use std::io;
use std::sync::mpsc;
use std::time::Duration;

use pgfleet_actors::log_level::LevelSwitch;
use pgfleet_actors::settings::{LogFormat, LogSettings};
use slog::{o, Drain, FnValue, Logger, PushFnValue};
use slog_async::{AsyncCore, AsyncGuard};

pub use output::DroppedLines;
use output::{Counted, Downgraded, NonBlocking};

/// Room for every worker of a big fleet to log its start at once.
const CHANNEL_SIZE: usize = 65_536;

pub struct Logging {
    pub log: Logger,
    pub level: LevelSwitch,
    /// Lines lost to a slow or failed output, for the metrics.
    pub dropped: DroppedLines,
    guard: AsyncGuard,
    bridge: slog_scope::GlobalLoggerGuard,
}

impl Logging {
    /// Writes out the queued lines, waiting at most `within` for the
    /// output: call last, after the final record.
    pub fn finish(self, within: Duration) {
        let Logging {
            log, guard, bridge, ..
        } = self;
        drop(bridge);
        drop(log);
        let (done, finished) = mpsc::channel();
        let flushed = std::thread::Builder::new()
            .name("pgfleet-log-flush".into())
            .spawn(move || {
                // Joins the logging thread once it has written everything.
                drop(guard);
                let _ = done.send(());
            });
        if flushed.is_ok() {
            let _ = finished.recv_timeout(within);
        }
    }
}

pub fn start(settings: &LogSettings) -> Logging {
    let level = LevelSwitch::new(settings.level.as_slog());
    let dropped = DroppedLines::default();
    let format: BoxedDrain = match settings.format {
        LogFormat::Json => {
            let json = slog_json::Json::new(io::stderr())
                .add_key_value(o!(
                    "ts" => PushFnValue(|_, ser| ser.emit(text::timestamp())),
                    "level" => FnValue(|record| level_name(record.level())),
                    "msg" => PushFnValue(|record, ser| ser.emit(record.msg())),
                ))
                .build();
            Box::new(Counted::new(json, DroppedLines::clone(&dropped)))
        }
        LogFormat::Text => Box::new(Counted::new(
            text::TextFormat::new(io::stderr()),
            DroppedLines::clone(&dropped),
        )),
    };
    let (channel, guard) = AsyncCore::custom(format)
        .chan_size(CHANNEL_SIZE)
        .blocking(false)
        .thread_name("pgfleet-log".into())
        .build_with_guard();
    let drain = level
        .filter(NonBlocking::new(channel, DroppedLines::clone(&dropped)))
        .ignore_res();
    let log = Logger::root(drain, o!());
    let bridge =
        slog_scope::set_global_logger(Logger::root(Downgraded { inner: log.clone() }, o!()));
    // Fails only if a `log` logger is already installed; then that one
    // keeps the records, and nothing else changes.
    let _ = slog_stdlog::init_with_level(log::Level::Trace);
    level.set(settings.level.as_slog());
    Logging {
        log,
        level,
        dropped,
        guard,
        bridge,
    }
}

type BoxedDrain = Box<dyn Drain<Ok = (), Err = slog::Never> + Send>;

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

//! Logging never panics and never blocks an actor.
//!
//! Two things go wrong with a log output in production: the reader goes
//! away (a log shipper dies, `| tee` is closed: every write fails with
//! EPIPE), or it stalls (writes block). slog's usual answers are the wrong
//! ones here: a `fuse()`d drain panics on the first failed write, on the
//! logging thread and then in every actor that logs; a blocking channel
//! freezes every actor on the thread, signal handling included.
//!
//! So: actors hand records to the logging thread through a bounded channel
//! without waiting ([`NonBlocking`]); a full channel drops the record. The
//! logging thread writes, and a failed write drops the line
//! ([`Counted`]). Both count into one number (exported as
//! `pgfleet_log_lines_dropped_total`), and once lines flow again one line
//! says how many were lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use slog::{b, record, Drain, Level, OwnedKVList, Record, RecordStatic};
use slog_async::{AsyncCore, AsyncError};

/// Lines lost so far, shared with the metrics.
pub type DroppedLines = Arc<AtomicU64>;

/// The actors' side: hands each record to the logging thread, never waits.
pub struct NonBlocking {
    channel: AsyncCore,
    dropped: DroppedLines,
    /// Dropped here and not reported yet.
    unreported: AtomicU64,
}

impl NonBlocking {
    pub fn new(channel: AsyncCore, dropped: DroppedLines) -> Self {
        NonBlocking {
            channel,
            dropped,
            unreported: AtomicU64::new(0),
        }
    }

    fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.unreported.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drain for NonBlocking {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let lost = self.unreported.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let report = self.channel.log(
                &record!(
                    Level::Warning,
                    "",
                    &format_args!(
                        "{lost} log lines were dropped: the log output could not keep up"
                    ),
                    b!("event" => "log_lines_dropped", "dropped" => lost)
                ),
                values,
            );
            if report.is_err() {
                self.unreported.fetch_add(lost, Ordering::Relaxed);
            }
        }
        match self.channel.log(record, values) {
            Ok(()) => {}
            // Full: the writer is slow or stalled. Disconnected: the
            // logging thread is gone. Either way the line is lost, counted.
            Err(AsyncError::Full) | Err(_) => self.drop_one(),
        }
        Ok(())
    }
}

/// The logging thread's side: writes with `format`, and counts a line that
/// could not be written instead of failing.
pub struct Counted<D> {
    format: D,
    dropped: DroppedLines,
    unreported: AtomicU64,
}

impl<D> Counted<D> {
    pub fn new(format: D, dropped: DroppedLines) -> Self {
        Counted {
            format,
            dropped,
            unreported: AtomicU64::new(0),
        }
    }
}

impl<D: Drain> Drain for Counted<D> {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        match self.format.log(record, values) {
            Ok(_) => {
                let lost = self.unreported.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let _ = self.format.log(
                        &record!(
                            Level::Warning,
                            "",
                            &format_args!("{lost} log lines were dropped: writing the log failed"),
                            b!("event" => "log_lines_dropped", "dropped" => lost)
                        ),
                        values,
                    );
                }
            }
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.unreported.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// Records of the `log` crate (tokio-postgres, bb8, actix) come in through
/// slog-stdlog. They are the libraries' own chatter, so they are shown at
/// debug (trace stays trace), whatever level the library gave them, with
/// the library as `target`.
pub struct Downgraded<D> {
    pub inner: D,
}

impl<D: Drain> Drain for Downgraded<D> {
    type Ok = D::Ok;
    type Err = D::Err;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<D::Ok, D::Err> {
        let level = match record.level() {
            Level::Trace => Level::Trace,
            _ => Level::Debug,
        };
        let target = record.tag();
        let statics = RecordStatic {
            location: record.location(),
            tag: target,
            level,
        };
        self.inner.log(
            &Record::new(&statics, record.msg(), b!("target" => target)),
            values,
        )
    }

    fn is_enabled(&self, level: Level) -> bool {
        self.inner.is_enabled(if level == Level::Trace {
            Level::Trace
        } else {
            Level::Debug
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// A drain whose writes fail while `broken` is set.
    struct Flaky {
        broken: std::cell::Cell<bool>,
        written: std::cell::RefCell<Vec<String>>,
    }

    impl Drain for Flaky {
        type Ok = ();
        type Err = io::Error;
        fn log(&self, record: &Record, _: &OwnedKVList) -> io::Result<()> {
            if self.broken.get() {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            self.written.borrow_mut().push(record.msg().to_string());
            Ok(())
        }
    }

    #[test]
    fn failed_writes_are_counted_and_reported_once_writing_works() {
        let dropped = DroppedLines::default();
        let flaky = Flaky {
            broken: std::cell::Cell::new(true),
            written: std::cell::RefCell::new(Vec::new()),
        };
        let counted = Counted::new(flaky, Arc::clone(&dropped));
        let values = OwnedKVList::from(slog::o!());
        for _ in 0..3 {
            let _ = counted.log(
                &record!(Level::Info, "", &format_args!("lost"), b!()),
                &values,
            );
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
        counted.format.broken.set(false);
        let _ = counted.log(
            &record!(Level::Info, "", &format_args!("back"), b!()),
            &values,
        );
        assert_eq!(
            *counted.format.written.borrow(),
            ["back", "3 log lines were dropped: writing the log failed"]
        );
    }
}

//! The `text` log format, for people and for grep:
//!
//! ```text
//! 2026-11-26T19:39:44.766Z ERROR cannot connect to the database: … | event=database_refused kind=authentication
//! ```
//!
//! An ISO 8601 time in UTC, the full level name (`ERROR`, not slog-term's
//! `ERRO`, which a grep for ERROR misses), the message once, then only the
//! fields the message does not already say. A value with a space, a comma,
//! a quote, `=` or `|` is quoted, so a line splits unambiguously.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::{self, Write};

use slog::{Drain, Key, OwnedKVList, Record, Serializer, KV};

/// Writes one line per record to `out`; a failed write is the caller's to
/// count (see `output`).
pub struct TextFormat<W: Write> {
    out: RefCell<W>,
}

impl<W: Write> TextFormat<W> {
    pub fn new(out: W) -> Self {
        TextFormat {
            out: RefCell::new(out),
        }
    }
}

impl<W: Write> Drain for TextFormat<W> {
    type Ok = ();
    type Err = io::Error;

    fn log(&self, record: &Record, values: &OwnedKVList) -> io::Result<()> {
        let line = format_line(record, values, &timestamp());
        let mut out = self.out.borrow_mut();
        out.write_all(line.as_bytes())?;
        out.flush()
    }
}

pub fn timestamp() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// The words `ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE`.
pub fn level_word(level: slog::Level) -> &'static str {
    match level {
        slog::Level::Critical | slog::Level::Error => "ERROR",
        slog::Level::Warning => "WARN",
        slog::Level::Info => "INFO",
        slog::Level::Debug => "DEBUG",
        slog::Level::Trace => "TRACE",
    }
}

fn format_line(record: &Record, values: &OwnedKVList, ts: &str) -> String {
    let message = record.msg().to_string();
    let mut fields = Fields::default();
    // slog hands key-values over last first; each group is put back in the
    // order it was written. The record's own fields come after the
    // logger's context (worker, schema, generation).
    let _ = values.serialize(record, &mut fields);
    fields.pairs.reverse();
    let context = std::mem::take(&mut fields.pairs);
    let _ = record.kv().serialize(record, &mut fields);
    fields.pairs.reverse();
    let own = std::mem::take(&mut fields.pairs);

    let mut line = format!(
        "{ts} {:<5} {}",
        level_word(record.level()),
        one_line(&message)
    );
    let mut shown = Vec::new();
    let event = own
        .iter()
        .chain(context.iter())
        .find(|(key, _)| key == "event");
    if let Some((key, value)) = event {
        shown.push(format!("{key}={}", quoted(value)));
    }
    for (key, value) in context.iter().chain(own.iter()) {
        if key == "event"
            || (!ALWAYS_SHOWN.contains(&key.as_str()) && already_said(&message, value))
        {
            continue;
        }
        shown.push(format!("{key}={}", quoted(value)));
    }
    if !shown.is_empty() {
        line.push_str(" | ");
        line.push_str(&shown.join(" "));
    }
    line.push('\n');
    line
}

/// Fields a reader greps for (`reason=gone`, `kind=pause`), shown even
/// when the message happens to hold their value ("… is gone …").
const ALWAYS_SHOWN: [&str; 6] = ["reason", "kind", "result", "state", "via", "database"];

/// A text field whose value the message already carries (the worker's
/// name, the schema, an error quoted in full) is not repeated. Numbers are
/// always shown, so `total=` is on every `worker_tick` line whatever its
/// value, and short values, which say nothing on their own, too.
fn already_said(message: &str, value: &str) -> bool {
    value.len() >= 3 && value.parse::<f64>().is_err() && message.contains(value)
}

fn one_line(text: &str) -> String {
    text.replace('\n', "\\n").replace('\r', "\\r")
}

fn quoted(value: &str) -> String {
    let needs = value.is_empty()
        || value.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '|' | ',' | '\\')
        });
    if !needs {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Default)]
struct Fields {
    pairs: Vec<(String, String)>,
}

impl Serializer for Fields {
    fn emit_arguments(&mut self, key: Key, value: &fmt::Arguments) -> slog::Result {
        self.pairs.push((key.to_string(), value.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slog::{o, Logger};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn logged(log: impl FnOnce(&Logger)) -> String {
        let buffer = Buffer::default();
        let drain = TextFormat::new(buffer.clone()).fuse();
        let logger = Logger::root(
            std::sync::Mutex::new(drain).fuse(),
            o!("worker" => "worker 1", "schema" => "schema1"),
        );
        log(&logger);
        let bytes = buffer.0.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn full_level_names_an_iso_time_and_the_message_once() {
        let line = logged(|log| {
            slog::error!(log, "worker 1: count in schema1.counted is now 600";
                "event" => "worker_tick", "total" => 600, "folded" => 6)
        });
        let (ts, rest) = line.split_once(' ').expect("a timestamp");
        assert!(
            ts.starts_with("20") && ts.ends_with('Z') && ts.contains('T'),
            "{line}"
        );
        assert!(
            rest.starts_with(
                "ERROR worker 1: count in schema1.counted is now 600 | event=worker_tick"
            ),
            "{line}"
        );
        assert!(
            !rest.contains("worker=") && !rest.contains("schema="),
            "said already: {line}"
        );
        assert!(
            rest.contains("total=6") && rest.contains("folded=6"),
            "{line}"
        );
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line}"
        );
    }

    /// `reason=gone` is on the line even when the message says "is gone".
    #[test]
    fn fields_people_grep_for_are_always_shown() {
        let line = logged(|log| {
            slog::info!(log, "worker 1 stopped: schema1.counted is gone";
                "event" => "worker_stopped", "reason" => "gone")
        });
        assert!(line.contains("reason=gone"), "{line}");
        // Other fields the message carries are still not repeated.
        assert!(!line.contains("schema="), "{line}");
    }

    #[test]
    fn values_that_need_it_are_quoted() {
        let line = logged(|log| {
            slog::warn!(log, "tick skipped";
                "event" => "worker_tick_skipped", "error" => "a, b = \"c\"\nd", "empty" => "",
                "list" => "a,b")
        });
        assert!(line.contains("WARN  tick skipped"), "{line}");
        assert!(line.contains(r#"error="a, b = \"c\"\nd""#), "{line}");
        assert!(line.contains(r#"empty="""#), "{line}");
        assert!(line.contains(r#"list="a,b""#), "{line}");
        assert!(line.contains(r#"worker="worker 1""#), "{line}");
    }
}

//! Durations as people write them in YAML and in environment variables.
//!
//! `humantime` reads "250ms", "10s", "1m", but a bare number is the natural
//! way to say "seconds" (worker_spi's `naptime = 10`), and in an environment
//! variable every value is a string, so "10" must mean ten seconds too.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Serializer;

/// Parses "250ms", "10s", "1m 30s", or a bare integer of seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    // humantime would say "expected number at 0", which reads as if the
    // sign were a typo rather than the point.
    if text.starts_with('-') {
        return Err(NEGATIVE.into());
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| format!("{e}"));
    }
    humantime::parse_duration(text).map_err(|e| {
        format!("{e}; expected a duration such as \"250ms\", \"10s\", \"1m\" or a bare number of seconds")
    })
}

/// What a negative duration is told, whichever way it was written.
const NEGATIVE: &str = "a duration cannot be negative";

/// Formats the way `parse` reads it back: "10s", "1m", "250ms".
pub fn format(duration: &Duration) -> String {
    humantime::format_duration(*duration).to_string()
}

pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(duration))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration such as \"250ms\", \"10s\", \"1m\" or a bare number of seconds")
    }

    fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(seconds))
    }

    fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<Duration, E> {
        u64::try_from(seconds)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(NEGATIVE))
    }

    fn visit_f64<E: de::Error>(self, seconds: f64) -> Result<Duration, E> {
        if seconds < 0.0 {
            return Err(E::custom(NEGATIVE));
        }
        Duration::try_from_secs_f64(seconds).map_err(|e| E::custom(format!("{seconds}: {e}")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse(text).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_units_and_bare_seconds() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse(" 7 "), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in ["", "ten", "10 parsecs", "-5", "5x"] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_negative_duration_says_so() {
        for bad in ["-5s", "-5", " -1m", "-250ms"] {
            assert_eq!(parse(bad), Err(NEGATIVE.to_owned()), "{bad:?}");
        }
        let from_yaml = |yaml: &str| {
            deserialize(serde_norway::Deserializer::from_str(yaml))
                .map_err(|e| e.to_string())
                .expect_err("negative")
        };
        assert!(from_yaml("-5").contains(NEGATIVE), "{}", from_yaml("-5"));
        assert!(
            from_yaml("-0.5").contains(NEGATIVE),
            "{}",
            from_yaml("-0.5")
        );
    }

    #[test]
    fn formats_what_it_parses() {
        for text in ["250ms", "10s", "1m", "5m", "1h"] {
            let duration = parse(text).expect("valid");
            assert_eq!(format(&duration), text);
        }
    }
}

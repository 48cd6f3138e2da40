//! The counter table's numbers as pgfleet reads them back: the type of its
//! `value` column, a total of any such type, and the backlog of deltas a
//! fold left behind.
//!
//! worker_spi's column is `integer`. A counter of page views outgrows it,
//! and the first thing a user does is `ALTER TABLE … ALTER value TYPE
//! bigint`, under the running worker. So pgfleet never reads a total in its
//! column's type: the fold returns it as text, with the column's type by
//! name beside it (see `sql`). That answer has the same shape whatever the
//! column is, which is what lets a prepared fold survive the change
//! (PostgreSQL plans it again, and since its result type is unchanged there
//! is no "cached plan must not change result type"), and what makes reading
//! the answer of a fold that committed unable to fail: any text is a
//! [`Total`].
//!
//! The types folded are the exact ones: `smallint`, `integer`, `bigint` and
//! `numeric`. Their overflow needs no code: PostgreSQL refuses to assign a
//! sum beyond the column's range (SQLSTATE 22003) and rolls the whole fold
//! back; the error names the type ([`ValueType::max`]) and the wider one
//! ([`ValueType::wider`]). `numeric` holds 131,072 digits before the point:
//! it does not overflow in practice. Floating point would fold but not
//! exactly, and `money` or `interval` are not counts, so any other type is
//! refused with an error that says which types are folded.

use std::fmt;

use serde::{Serialize, Serializer};

/// The types of `value` pgfleet folds, as PostgreSQL names them.
pub const FOLDED_TYPES: &str = "smallint, integer, bigint or numeric";

/// A `value` column type pgfleet folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    SmallInt,
    Integer,
    BigInt,
    Numeric,
}

impl ValueType {
    /// The type PostgreSQL calls `name` (the text of a `regtype`, as the
    /// catalog and `pg_typeof` give it: `numeric(20,2)` is `numeric`); None
    /// for a type pgfleet does not fold.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "smallint" => Some(ValueType::SmallInt),
            "integer" => Some(ValueType::Integer),
            "bigint" => Some(ValueType::BigInt),
            "numeric" => Some(ValueType::Numeric),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ValueType::SmallInt => "smallint",
            ValueType::Integer => "integer",
            ValueType::BigInt => "bigint",
            ValueType::Numeric => "numeric",
        }
    }

    /// The largest total the type holds, for the overflow error.
    pub fn max(self) -> Option<&'static str> {
        match self {
            ValueType::SmallInt => Some("32767"),
            ValueType::Integer => Some("2147483647"),
            ValueType::BigInt => Some("9223372036854775807"),
            ValueType::Numeric => None,
        }
    }

    /// The type an overflowing column can be altered to, keeping every
    /// value: `bigint` for the small integers, then `numeric`.
    pub fn wider(self) -> Option<ValueType> {
        match self {
            ValueType::SmallInt | ValueType::Integer => Some(ValueType::BigInt),
            ValueType::BigInt => Some(ValueType::Numeric),
            ValueType::Numeric => None,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A total exactly as PostgreSQL printed it: a whole number within
/// `bigint`'s range (every `smallint`, `integer` and `bigint` total) as a
/// number, anything else a `numeric` can hold (beyond that range, with a
/// fraction, `NaN`) as its text.
///
/// In JSON (`/workers`, the `total` of log lines) the first is a number
/// and the second a string: a number any JSON reader keeps exactly in a
/// 64-bit integer, and no number JSON cannot carry exactly (or at all, as
/// `NaN`). The text is boxed twice so that an `Option<Total>` stays 16
/// bytes: a fleet keeps one in each worker's status entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Total {
    Int(i64),
    Text(Box<Box<str>>),
}

impl Total {
    /// A total from PostgreSQL's text for it. Never fails: whatever the
    /// server printed is kept.
    pub fn parse(text: &str) -> Self {
        // PostgreSQL prints an integer without a `+` and without leading
        // zeros (nor `-0`), so an Int prints back exactly the text that came.
        let digits = text.strip_prefix('-').unwrap_or(text);
        let canonical = !text.starts_with('+') && (!digits.starts_with('0') || text == "0");
        match text.parse::<i64>() {
            Ok(n) if canonical => Total::Int(n),
            _ => Total::Text(Box::new(text.into())),
        }
    }
}

impl From<i64> for Total {
    fn from(n: i64) -> Self {
        Total::Int(n)
    }
}

impl fmt::Display for Total {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Total::Int(n) => write!(f, "{n}"),
            Total::Text(text) => f.write_str(text),
        }
    }
}

impl Serialize for Total {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Total::Int(n) => serializer.serialize_i64(*n),
            Total::Text(text) => serializer.serialize_str(text),
        }
    }
}

impl slog::Value for Total {
    fn serialize(
        &self,
        _record: &slog::Record<'_>,
        key: slog::Key,
        serializer: &mut dyn slog::Serializer,
    ) -> slog::Result {
        match self {
            Total::Int(n) => serializer.emit_i64(key, *n),
            Total::Text(text) => serializer.emit_str(key, text),
        }
    }
}

/// Deltas a fold left in its table because it took a full batch
/// (`workers.fold_batch`), counted in the fold's own snapshot. Counting
/// stops at [`Backlog::COUNT_BATCHES`] batches, so that the count never
/// costs more than those batches would: beyond it, `at_least` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub left: u64,
    /// Counting stopped: there are at least `left`.
    pub at_least: bool,
}

impl Backlog {
    /// How many batches' worth of deltas a full fold counts, at most.
    pub const COUNT_BATCHES: i64 = 10;

    /// From what a full batch's fold saw: `seen` deltas (its deleted ones
    /// included: a statement does not see its own deletions) counted up to
    /// `cap`, of which it folded `folded`.
    pub fn from_count(seen: i64, cap: i64, folded: i64) -> Self {
        Backlog {
            left: u64::try_from(seen.saturating_sub(folded)).unwrap_or(0),
            at_least: seen >= cap,
        }
    }
}

impl fmt::Display for Backlog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at_least {
            write!(f, "at least {}", self.left)
        } else {
            write!(f, "{}", self.left)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_types_folded_are_known_by_postgresqls_names() {
        for value_type in [
            ValueType::SmallInt,
            ValueType::Integer,
            ValueType::BigInt,
            ValueType::Numeric,
        ] {
            assert_eq!(ValueType::from_name(value_type.name()), Some(value_type));
        }
        for refused in [
            "double precision",
            "real",
            "money",
            "text",
            "interval",
            "int4",
        ] {
            assert_eq!(ValueType::from_name(refused), None, "{refused}");
        }
        assert_eq!(ValueType::Integer.wider(), Some(ValueType::BigInt));
        assert_eq!(ValueType::BigInt.wider(), Some(ValueType::Numeric));
        assert_eq!(ValueType::Numeric.max(), None);
    }

    #[test]
    fn totals_within_bigint_are_numbers_and_others_their_exact_text() {
        assert_eq!(Total::parse("0"), Total::Int(0));
        assert_eq!(Total::parse("-42"), Total::Int(-42));
        assert_eq!(Total::parse("9223372036854775807"), Total::Int(i64::MAX));
        assert_eq!(Total::parse("-9223372036854775808"), Total::Int(i64::MIN));
        for text in [
            "9223372036854775808",
            "1000000000000000000000000000003",
            "1.00",
            "-0.5",
            "NaN",
            "Infinity",
            "",
            "+5",
            "007",
            "-0",
        ] {
            let total = Total::parse(text);
            assert!(matches!(total, Total::Text(_)), "{text}: {total:?}");
            assert_eq!(total.to_string(), text);
        }
    }

    #[test]
    fn a_total_is_valid_json_either_way() {
        let json = |total: Total| serde_json::to_string(&total).expect("JSON");
        assert_eq!(json(Total::parse("5000000000")), "5000000000");
        assert_eq!(
            json(Total::parse("1000000000000000000000000000003")),
            "\"1000000000000000000000000000003\""
        );
        assert_eq!(json(Total::parse("NaN")), "\"NaN\"");
    }

    #[test]
    fn an_optional_total_stays_small() {
        assert_eq!(std::mem::size_of::<Option<Total>>(), 16);
    }

    #[test]
    fn a_backlog_is_what_the_fold_saw_less_what_it_folded() {
        let exact = Backlog::from_count(250, 1000, 100);
        assert_eq!(
            exact,
            Backlog {
                left: 150,
                at_least: false
            }
        );
        assert_eq!(exact.to_string(), "150");
        let capped = Backlog::from_count(1000, 1000, 100);
        assert_eq!(capped.to_string(), "at least 900");
        assert_eq!(Backlog::from_count(100, 1000, 100).left, 0);
    }
}

//! What the fold itself finds wrong with a table, as opposed to what the
//! database reports about the connection or the statement (`db::DbError`):
//! a schema or table that is missing or was dropped, a total that would
//! overflow its column, a `value` column pgfleet does not fold. Each says,
//! through the [`JobFault`] it becomes, what it means for the worker: a
//! table that is gone is waited for (or, discovered, departs), anything
//! else is the worker's failure.

use tokio_postgres::error::SqlState;

use crate::counter::{ValueType, FOLDED_TYPES};
use crate::db::{Absence, DbError, JobFault};

#[derive(Debug, Clone, thiserror::Error)]
pub enum FoldError {
    #[error("schema {schema} does not exist, and workers.create_schema is false")]
    MissingSchema { schema: String },
    #[error("table {table} does not exist, and workers.create_schema is false")]
    MissingTable { table: String },
    /// The table (or its schema) was there and is gone: dropped while
    /// pgfleet folded it (a tenant leaving). Never created again behind the
    /// operator's back (SPEC §2, §11): the worker waits for it to return.
    #[error("{table} no longer exists (dropped while pgfleet folded it): it is not created again, and is folded again if it comes back")]
    TableGone { table: String },
    /// 22003: the sum does not fit the `value` column. `table` as the log
    /// shows it, `qualified` quoted for the statement that widens it.
    #[error("{}", overflow_text(table, qualified, *value_type, detail))]
    Overflow {
        table: String,
        qualified: String,
        value_type: ValueType,
        detail: String,
    },
    /// The `value` column is missing, or of a type pgfleet does not fold.
    #[error("{}", value_type_text(table, qualified, found.as_deref()))]
    ValueType {
        table: String,
        qualified: String,
        /// The column's type; None when there is no `value` column.
        found: Option<String>,
    },
}

impl FoldError {
    /// The `kind` field of log lines.
    pub fn kind(&self) -> &'static str {
        match self {
            FoldError::MissingSchema { .. } => "missing_schema",
            FoldError::MissingTable { .. } => "missing_table",
            FoldError::TableGone { .. } => "table_dropped",
            FoldError::Overflow { .. } => "overflow",
            FoldError::ValueType { .. } => "value_type",
        }
    }
}

impl From<FoldError> for DbError {
    fn from(error: FoldError) -> Self {
        let absence = match error {
            FoldError::MissingSchema { .. } | FoldError::MissingTable { .. } => {
                Some(Absence::Missing)
            }
            FoldError::TableGone { .. } => Some(Absence::Gone),
            FoldError::Overflow { .. } | FoldError::ValueType { .. } => None,
        };
        let code = match error {
            FoldError::Overflow { .. } => Some(SqlState::NUMERIC_VALUE_OUT_OF_RANGE),
            _ => None,
        };
        DbError::Job(JobFault {
            kind: error.kind(),
            code,
            absence,
            message: error.to_string(),
        })
    }
}

/// For a table that existed while pgfleet folded it: "it is missing"
/// (undefined_table 42P01 or invalid_schema_name 3F000 from a fold, or
/// what initialisation found) means it was dropped.
pub fn vanished(error: DbError, table: impl std::fmt::Display) -> DbError {
    let missing = matches!(
        &error,
        DbError::Job(JobFault {
            absence: Some(Absence::Missing),
            ..
        })
    ) || error.is_missing_relation();
    if missing {
        FoldError::TableGone {
            table: table.to_string(),
        }
        .into()
    } else {
        error
    }
}

fn overflow_text(table: &str, qualified: &str, value_type: ValueType, detail: &str) -> String {
    let max = value_type
        .max()
        .map(|max| format!(" (at most {max})"))
        .unwrap_or_default();
    let widen = value_type
        .wider()
        .map(|wider| {
            format!(
                "; widen the column, and pgfleet picks the change up: \
                 ALTER TABLE {qualified} ALTER value TYPE {wider}"
            )
        })
        .unwrap_or_default();
    format!(
        "the total of {table} would overflow {value_type}{max}, so nothing was folded ({detail}){widen}"
    )
}

fn value_type_text(table: &str, qualified: &str, found: Option<&str>) -> String {
    match found {
        None => format!("{table} has no value column, so it is not a worker_spi counter table"),
        Some(found) => format!(
            "the value column of {table} is {found}: pgfleet folds {FOLDED_TYPES} counters, \
             exactly (ALTER TABLE {qualified} ALTER value TYPE numeric keeps fractions)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_existed_and_is_missing_was_dropped() {
        let missing: [DbError; 4] = [
            FoldError::MissingSchema { schema: "s".into() }.into(),
            FoldError::MissingTable {
                table: "s.counted".into(),
            }
            .into(),
            DbError::Statement {
                code: Some(SqlState::UNDEFINED_TABLE),
                text: "relation does not exist".into(),
            },
            DbError::Statement {
                code: Some(SqlState::INVALID_SCHEMA_NAME),
                text: "schema does not exist".into(),
            },
        ];
        for error in missing {
            let gone = vanished(error, "s.counted");
            assert_eq!(gone.kind(), "table_dropped", "{gone}");
            assert!(gone.is_gone(), "{gone}");
            assert!(gone.to_string().contains("not created again"), "{gone}");
        }
        // Anything else stays what it is.
        let denied = vanished(DbError::Permission("permission denied".into()), "s.counted");
        assert_eq!(denied.kind(), "permission");
        let other = vanished(
            DbError::Statement {
                code: Some(SqlState::NUMERIC_VALUE_OUT_OF_RANGE),
                text: "overflow".into(),
            },
            "s.counted",
        );
        assert_eq!(other.kind(), "statement");
    }

    #[test]
    fn an_overflow_keeps_its_sqlstate_and_says_how_to_widen() {
        let error: DbError = FoldError::Overflow {
            table: "s.counted".into(),
            qualified: "\"s\".\"counted\"".into(),
            value_type: ValueType::Integer,
            detail: "integer out of range".into(),
        }
        .into();
        assert_eq!(error.kind(), "overflow");
        assert_eq!(error.code(), Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE));
        assert!(!error.is_gone());
        assert!(
            error
                .to_string()
                .contains("ALTER TABLE \"s\".\"counted\" ALTER value TYPE bigint"),
            "{error}"
        );
    }
}

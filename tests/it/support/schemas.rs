//! worker_spi's counter tables, made by the tests and benchmarks
//! themselves: one at a time, or thousands at once; and what a rescan's
//! list query costs the server over them.
//! (Every test binary and bench includes `support`; each uses a part.)
#![allow(dead_code)]

use std::fmt::Write as _;
use std::time::Duration;
use std::time::Instant;

use super::cluster::TestDb;
use super::pgfleet::execute;

/// Schemas created per transaction: each takes locks on its schema, table
/// and index until its transaction ends, and the server's shared lock
/// table holds a few thousand (STACK-NOTES pitfall 11).
pub const SCHEMAS_PER_TRANSACTION: usize = 250;

/// What worker_spi makes for `schema` (quoted as given), with a total of 0.
fn counter_schema_sql(schema: &str) -> String {
    format!(
        "CREATE SCHEMA {schema} CREATE TABLE counted (type text CHECK (type IN ('total', 'delta')), \
         value integer) CREATE UNIQUE INDEX counted_unique_total ON counted (type) WHERE type = 'total'; \
         INSERT INTO {schema}.counted VALUES ('total', 0);"
    )
}

/// `schema` as worker_spi makes it, with a total row of 0.
pub fn counter_table(db: &TestDb, schema: &str) {
    execute(db, &counter_schema_sql(schema));
}

/// `{prefix}{from}` .. `{prefix}{to}` as worker_spi makes them, each with
/// its total row, in transactions of [`SCHEMAS_PER_TRANSACTION`] on two
/// connections at once: much quicker than thousands of workers creating
/// one each. Returns how long it took.
pub fn create_counter_schemas(db: &TestDb, prefix: &str, from: usize, to: usize) -> Duration {
    let started = Instant::now();
    let batches: Vec<(usize, usize)> = (from..=to)
        .step_by(SCHEMAS_PER_TRANSACTION)
        .map(|first| (first, (first + SCHEMAS_PER_TRANSACTION - 1).min(to)))
        .collect();
    std::thread::scope(|scope| {
        for part in batches.chunks(batches.len().div_ceil(2).max(1)) {
            scope.spawn(move || {
                let mut client = db.client();
                for &(first, last) in part {
                    let mut sql = String::from("BEGIN;");
                    for n in first..=last {
                        let _ = write!(sql, "{}", counter_schema_sql(&format!("{prefix}{n}")));
                    }
                    sql.push_str("COMMIT;");
                    client.batch_execute(&sql).unwrap_or_else(|e| {
                        panic!("creating {prefix}{first}..{prefix}{last}: {e}")
                    });
                }
            });
        }
    });
    started.elapsed()
}

/// One rescan's list query (`discovery::scan::LIST`) for `matching`, with
/// its parameters typed as pgfleet sends them (`$1` text, not inferred as
/// `name`): the server's execution time (EXPLAIN ANALYZE), the fewer of
/// its two scans' rows, and the plan.
pub fn list_query_cost(db: &TestDb, matching: &[&str]) -> (Duration, u64, String) {
    let matching: Vec<String> = matching.iter().map(|&p| p.to_owned()).collect();
    let exclude: Vec<String> = Vec::new();
    let lines: Vec<String> = db
        .client()
        .query_typed(
            &format!(
                "EXPLAIN (ANALYZE, TIMING OFF) {}",
                pgfleet_actors::discovery::scan::LIST
            ),
            &[
                (&"counted", postgres::types::Type::TEXT),
                (&matching, postgres::types::Type::TEXT_ARRAY),
                (&exclude, postgres::types::Type::TEXT_ARRAY),
            ],
        )
        .expect("explain the list query")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let number_after = |line: &str, key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    let ms = lines
        .iter()
        .find_map(|line| number_after(line, "Execution Time: "))
        .unwrap_or_else(|| panic!("no execution time in {lines:?}"));
    // Two scans: the matching schemas, and those holding the table.
    let found = lines
        .iter()
        .filter(|line| line.contains("->"))
        .filter_map(|line| number_after(line, "actual rows="))
        .fold(f64::MAX, f64::min) as u64;
    (Duration::from_secs_f64(ms / 1e3), found, lines.join("\n"))
}

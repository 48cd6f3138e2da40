//! worker_spi's job: create the schema and table as worker_spi does, fold
//! the deltas into the total at each tick, log worker_spi's line, and
//! VACUUM after `workers.vacuum_after` folded rows.
//!
//! The `value` column's type is read at initialisation, and again from
//! every fold's answer: a column altered under the worker (`integer` to
//! `bigint`, the usual way out of an overflow) is taken up by the next
//! fold, said once (`worker_table_changed`), and folds on. Nothing needs
//! preparing again: the fold's answer has the same shape for every type
//! (see `counter`).

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use slog::{debug, info, warn, Logger};

use super::{Job, RunReport, SharedStep, Step};
use crate::counter::{Total, ValueType};
use crate::db::{self, DbError, FoldOutcome, InitOutcome};
use crate::settings::{SchemaTarget, Settings};
use crate::sql::TableSql;

pub struct FoldJob {
    sql: Arc<TableSql>,
    /// The `worker` of worker_spi's log line: `worker 4` or the schema.
    worker: Arc<str>,
    create_schema: bool,
    /// `database.lock_timeout`: how long initialisation waits for a lock.
    init_lock_timeout: std::time::Duration,
    vacuum_after: u64,
    rows_since_vacuum: u64,
    told_no_total: bool,
    /// The `value` column's type: from initialisation, then from each
    /// fold's answer.
    value_type: ValueType,
    last_total: Option<Total>,
    /// `log.fold_lines` for this fleet: worker_tick at info, else debug.
    fold_lines_at_info: bool,
}

impl FoldJob {
    pub fn new(target: &SchemaTarget, settings: &Settings) -> Self {
        FoldJob {
            sql: Arc::new(TableSql::new(
                Arc::clone(&target.schema),
                Arc::clone(&settings.workers.table),
            )),
            worker: Arc::clone(&target.worker),
            create_schema: settings.workers.create_schema,
            init_lock_timeout: settings.database.lock_timeout,
            vacuum_after: settings.workers.vacuum_after,
            rows_since_vacuum: 0,
            told_no_total: false,
            // worker_spi's, until initialisation reads the table's.
            value_type: ValueType::Integer,
            last_total: None,
            fold_lines_at_info: settings.fold_lines_at_info(),
        }
    }

    /// Takes up the `value` column's type as a fold found it. A change is
    /// said once; a type pgfleet does not fold is the worker's failure,
    /// after the fold that found it (which committed) has been reported.
    fn check_value_type(
        &mut self,
        found: Result<ValueType, String>,
        log: &Logger,
    ) -> Option<DbError> {
        let table = self.sql.display_name();
        let was = self.value_type;
        match found {
            Ok(found) if found == was => None,
            Ok(found) => {
                self.value_type = found;
                let limit = found.max().map_or_else(
                    || "no practical limit".to_owned(),
                    |max| format!("up to {max}"),
                );
                info!(log, "the value column of {table} is now {found} (was {was}): folding goes on, totals {limit}";
                    "event" => "worker_table_changed", "value_type" => found.name(), "was" => was.name());
                None
            }
            Err(found) => {
                warn!(log, "the value column of {table} is now {found} (was {was}), which pgfleet does not fold";
                    "event" => "worker_table_changed", "value_type" => found.clone(), "was" => was.name());
                Some(DbError::ValueType {
                    table: table.to_string(),
                    qualified: self.sql.qualified(),
                    found: Some(found),
                })
            }
        }
    }

    fn vacuum(&self) -> Step<()> {
        let sql = Arc::clone(&self.sql);
        Box::new(move |conn| {
            let sql = Arc::clone(&sql);
            async move { db::vacuum(conn, &sql).await }.boxed_local()
        })
    }
}

impl Job for FoldJob {
    type Initialised = InitOutcome;
    type Ran = (FoldOutcome, std::time::Duration);

    fn display_name(&self) -> String {
        self.sql.display_name().to_string()
    }

    fn initialise(&self) -> Step<InitOutcome> {
        let sql = Arc::clone(&self.sql);
        let (create, lock_timeout) = (self.create_schema, self.init_lock_timeout);
        Box::new(move |conn| {
            let sql = Arc::clone(&sql);
            async move { db::initialise(conn, &sql, create, lock_timeout).await }.boxed_local()
        })
    }

    fn initialised(&mut self, found: InitOutcome, log: &Logger) {
        self.value_type = found.value_type;
        if let Some(existing) = found.case_twin {
            let schema = &self.sql.schema;
            warn!(log, "schema {schema:?} did not exist but {existing:?} does: PostgreSQL names are case-sensitive when quoted, as worker_spi quotes them, so {schema:?} was created as a new schema beside {existing:?}";
                "event" => "schema_case_mismatch", "existing" => existing.clone());
        }
    }

    fn run(&self) -> SharedStep<Self::Ran> {
        let sql = Arc::clone(&self.sql);
        let value_type = self.value_type;
        #[cfg(feature = "test-hooks")]
        let panic_here =
            crate::test_hooks::panic_wanted(crate::test_hooks::PanicPoint::Fold, &self.sql.schema);
        Box::new(move |conn| {
            let sql = Arc::clone(&sql);
            async move {
                #[cfg(feature = "test-hooks")]
                if panic_here {
                    panic!("test hook: a panic in the fold of {}", sql.schema);
                }
                let started = Instant::now();
                let outcome = db::fold(conn, &sql, value_type).await?;
                Ok((outcome, started.elapsed()))
            }
            .boxed_local()
        })
    }

    fn ran(&mut self, (outcome, took): Self::Ran, log: &Logger) -> (RunReport, Option<Step<()>>) {
        self.rows_since_vacuum += outcome.folded as u64;
        let fault = self.check_value_type(outcome.value_type, log);
        match &outcome.total {
            Some(total) => {
                self.told_no_total = false;
                // Formatted only if a drain writes it.
                let (worker, table) = (&self.worker, self.sql.display_name());
                if self.fold_lines_at_info
                    && (outcome.folded > 0 || self.last_total.as_ref() != Some(total))
                {
                    info!(log, "{worker}: count in {table} is now {total}";
                        "event" => "worker_tick", "total" => total, "folded" => outcome.folded);
                } else {
                    debug!(log, "{worker}: count in {table} is now {total}";
                        "event" => "worker_tick", "total" => total, "folded" => 0);
                }
            }
            None if outcome.waiting > 0 && !self.told_no_total => {
                self.told_no_total = true;
                warn!(log, "{} has no total row (or its value is NULL): its {} delta rows are kept, \
                            and folded once a total row exists", self.sql.display_name(), outcome.waiting;
                    "event" => "worker_no_total", "waiting" => outcome.waiting);
            }
            None => {}
        }
        self.last_total.clone_from(&outcome.total);
        let report = RunReport {
            took,
            rows: outcome.folded as u64,
            total: outcome.total,
            fault,
        };
        let vacuum_due = self.vacuum_after > 0 && self.rows_since_vacuum >= self.vacuum_after;
        (report, vacuum_due.then(|| self.vacuum()))
    }

    fn maintained(&mut self, log: &Logger) {
        info!(log, "vacuumed {} after folding {} rows since its last vacuum",
            self.sql.display_name(), self.rows_since_vacuum;
            "event" => "worker_vacuumed", "rows" => self.rows_since_vacuum);
        self.rows_since_vacuum = 0;
    }

    fn reconfigure(&mut self, settings: &Settings) {
        self.init_lock_timeout = settings.database.lock_timeout;
        self.vacuum_after = settings.workers.vacuum_after;
        self.fold_lines_at_info = settings.fold_lines_at_info();
    }
}

//! worker_spi's job: create the schema and table as worker_spi does, fold
//! the deltas into the total at each tick, log worker_spi's line, and
//! VACUUM after `workers.vacuum_after` folded rows.

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use slog::{debug, info, warn, Logger};

use super::{Job, RunReport, SharedStep, Step};
use crate::db::{self, FoldOutcome, InitOutcome};
use crate::settings::{SchemaTarget, Settings};
use crate::sql::TableSql;

pub struct FoldJob {
    sql: Arc<TableSql>,
    /// The `worker` of worker_spi's log line: `worker 4` or the schema.
    worker: Arc<str>,
    create_schema: bool,
    /// The table existed while this pgfleet ran the schema (an earlier
    /// worker of it initialised): if it is missing now, it was dropped,
    /// and is waited for, never created again.
    existed: bool,
    /// `database.lock_timeout`: how long initialisation waits for a lock.
    init_lock_timeout: std::time::Duration,
    vacuum_after: u64,
    rows_since_vacuum: u64,
    told_no_total: bool,
    last_total: Option<i32>,
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
            existed: false,
            init_lock_timeout: settings.database.lock_timeout,
            vacuum_after: settings.workers.vacuum_after,
            rows_since_vacuum: 0,
            told_no_total: false,
            last_total: None,
            fold_lines_at_info: settings.fold_lines_at_info(),
        }
    }

    /// The schema's table existed under an earlier worker of this pgfleet
    /// (see [`FoldJob::existed`]).
    pub fn after_it_existed(mut self, existed: bool) -> Self {
        self.existed = existed;
        self
    }

    fn vacuum(&self) -> Step<()> {
        let sql = Arc::clone(&self.sql);
        Box::new(move |conn| {
            let sql = Arc::clone(&sql);
            // VACUUM names the table alone: 42P01 means it was dropped
            // since the fold before.
            async move {
                db::vacuum(conn, &sql)
                    .await
                    .map_err(|error| error.vanished(sql.display_name()))
            }
            .boxed_local()
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
        let (existed, lock_timeout) = (self.existed, self.init_lock_timeout);
        // worker_spi creates a missing schema when its worker starts, never
        // one that was there and went away.
        let create = self.create_schema && !existed;
        Box::new(move |conn| {
            let sql = Arc::clone(&sql);
            async move {
                let found = db::initialise(conn, &sql, create, lock_timeout).await;
                match found {
                    Err(error) if existed => Err(error.vanished(sql.display_name())),
                    found => found,
                }
            }
            .boxed_local()
        })
    }

    fn initialised(&mut self, found: InitOutcome, log: &Logger) {
        self.existed = true;
        if let Some(existing) = found.case_twin {
            let schema = &self.sql.schema;
            warn!(log, "schema {schema:?} did not exist but {existing:?} does: PostgreSQL names are case-sensitive when quoted, as worker_spi quotes them, so {schema:?} was created as a new schema beside {existing:?}";
                "event" => "schema_case_mismatch", "existing" => existing.clone());
        }
    }

    fn run(&self) -> SharedStep<Self::Ran> {
        let sql = Arc::clone(&self.sql);
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
                let outcome = match db::fold(conn, &sql).await {
                    Err(error) if error.is_missing_relation() => {
                        return Err(db::confirm_table_gone(conn, &sql, error).await)
                    }
                    outcome => outcome?,
                };
                Ok((outcome, started.elapsed()))
            }
            .boxed_local()
        })
    }

    fn ran(&mut self, (outcome, took): Self::Ran, log: &Logger) -> (RunReport, Option<Step<()>>) {
        self.rows_since_vacuum += outcome.folded as u64;
        match outcome.total {
            Some(total) => {
                self.told_no_total = false;
                // Formatted only if a drain writes it.
                let (worker, table) = (&self.worker, self.sql.display_name());
                if self.fold_lines_at_info && (outcome.folded > 0 || self.last_total != Some(total))
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
        self.last_total = outcome.total;
        let report = RunReport {
            took,
            rows: outcome.folded as u64,
            total: outcome.total,
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

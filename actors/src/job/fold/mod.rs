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
//!
//! A fold deletes at most `workers.fold_batch` deltas, fewer while full
//! batches take longer than half of `naptime` ([`batch`]). One that took a
//! full batch asks to run again after a pause as long as the batch took
//! (see [`RunReport::again_after`]), batch after batch, until one is not
//! full: a backlog of millions of deltas is folded in statements that each
//! end well within `statement_timeout`, at most half of the time of the
//! connection it shares with other schemas, and said at its start
//! (`worker_backlog`) and end (`worker_caught_up`).
//!
//! Beside it: `statements` (what it sends, what it finds, its own errors)
//! and [`privileges`] (what the role needs for it, for `pgfleet --check`).

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use slog::{debug, info, warn, Logger};

mod batch;
pub mod error;
pub mod privileges;
mod statements;

pub use statements::{FoldOutcome, InitOutcome};

use super::{Job, Postponed, RunReport, SharedStep, Step};
use crate::counter::{Backlog, Total, ValueType};
use crate::db::DbError;
use crate::settings::{SchemaTarget, Settings};
use crate::sql::TableSql;
use crate::status::FoldDone;
use error::{vanished, FoldError};

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
    /// When its VACUUM last found the table locked, while that lasts (its
    /// last try, for [`vacuum_due`]; logged once, not at every try).
    vacuum_locked: Option<Instant>,
    told_no_total: bool,
    /// The `value` column's type: from initialisation, then from each
    /// fold's answer.
    value_type: ValueType,
    last_total: Option<Total>,
    /// How many deltas the next fold may delete: `workers.fold_batch` at
    /// most.
    batch: batch::BatchSize,
    /// While a backlog is folded batch after batch (boxed: rare).
    catching_up: Option<Box<CatchUp>>,
    /// `log.fold_lines` for this fleet: worker_tick at info, else debug.
    fold_lines_at_info: bool,
}

/// A backlog being folded: since when, and how much so far.
struct CatchUp {
    since: Instant,
    rows: u64,
    batches: u64,
}

/// The `backlog` fields of a worker_tick line: only a fold that took a
/// full batch has them.
struct BacklogFields(Option<Backlog>);

impl slog::KV for BacklogFields {
    fn serialize(
        &self,
        _record: &slog::Record<'_>,
        serializer: &mut dyn slog::Serializer,
    ) -> slog::Result {
        if let Some(backlog) = self.0 {
            serializer.emit_u64("backlog", backlog.left)?;
            serializer.emit_bool("backlog_at_least", backlog.at_least)?;
        }
        Ok(())
    }
}

/// Whether a VACUUM is due after a fold: `vacuum_after` rows folded since
/// the last one (0 = never), and, while the table was found locked
/// (`locked_at`, the last try), at most once per
/// [`LOCK_RETRY_EVERY`](super::LOCK_RETRY_EVERY), as a locked
/// fold retries: a table locked for minutes does not take a maintenance
/// connection after every fold.
pub fn vacuum_due(
    rows_since_vacuum: u64,
    vacuum_after: u64,
    locked_at: Option<Instant>,
    now: Instant,
) -> bool {
    let retry_due =
        locked_at.is_none_or(|at| now.saturating_duration_since(at) >= super::LOCK_RETRY_EVERY);
    vacuum_after > 0 && rows_since_vacuum >= vacuum_after && retry_due
}

impl FoldJob {
    pub fn new(target: &SchemaTarget, settings: &Settings) -> Self {
        FoldJob {
            sql: Arc::new(
                TableSql::new(
                    Arc::clone(&target.schema),
                    Arc::clone(&settings.workers.table),
                )
                .fenced_by(settings.coordination.enabled.then(|| {
                    crate::ownership::Keys {
                        namespace: settings.coordination.namespace,
                    }
                    .fence(&target.schema)
                })),
            ),
            worker: Arc::clone(&target.worker),
            // worker_spi's create-if-missing is for listed schemas only: a
            // discovered one is folded while it holds the table.
            create_schema: settings.workers.create_schema
                && target.origin == crate::settings::Origin::Listed,
            existed: false,
            init_lock_timeout: settings.database.lock_timeout,
            vacuum_after: settings.workers.vacuum_after,
            rows_since_vacuum: 0,
            vacuum_locked: None,
            told_no_total: false,
            // worker_spi's, until initialisation reads the table's.
            value_type: ValueType::Integer,
            last_total: None,
            batch: batch::BatchSize::new(
                i64::from(settings.workers.fold_batch),
                settings.naptime,
                settings.database.statement_timeout,
            ),
            catching_up: None,
            fold_lines_at_info: settings.fold_lines_at_info(),
        }
    }

    /// The schema's table existed under an earlier worker of this pgfleet
    /// (see [`FoldJob::existed`]).
    pub fn after_it_existed(mut self, existed: bool) -> Self {
        self.existed = existed;
        self
    }

    /// Follows a backlog from its first full batch to the first fold that
    /// is not full, and says so at both ends.
    fn follow_backlog(&mut self, outcome: &FoldOutcome, took: std::time::Duration, log: &Logger) {
        let rows = outcome.folded as u64;
        let (worker, table) = (&self.worker, self.sql.display_name());
        match (outcome.backlog, &mut self.catching_up) {
            (Some(backlog), None) => {
                self.catching_up = Some(Box::new(CatchUp {
                    since: Instant::now()
                        .checked_sub(took)
                        .unwrap_or_else(Instant::now),
                    rows,
                    batches: 1,
                }));
                info!(log, "{worker}: {table} has a backlog: {backlog} deltas left after a batch of {rows}; \
                            folding batch after batch until it has caught up";
                    "event" => "worker_backlog", "backlog" => backlog.left,
                    "backlog_at_least" => backlog.at_least, "fold_batch" => self.batch.most());
            }
            (_, Some(catch_up)) => {
                catch_up.rows += rows;
                catch_up.batches += 1;
                if outcome.backlog.is_none() {
                    let elapsed_ms = catch_up.since.elapsed().as_millis() as u64;
                    info!(log, "{worker}: {table} caught up: {} deltas folded in {} batches in {elapsed_ms} ms",
                        catch_up.rows, catch_up.batches;
                        "event" => "worker_caught_up", "rows" => catch_up.rows,
                        "batches" => catch_up.batches, "elapsed_ms" => elapsed_ms);
                    self.catching_up = None;
                }
            }
            (None, None) => {}
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
                Some(
                    FoldError::ValueType {
                        table: table.to_string(),
                        qualified: self.sql.qualified(),
                        found: Some(found),
                    }
                    .into(),
                )
            }
        }
    }

    fn vacuum(&self) -> Step<()> {
        let sql = Arc::clone(&self.sql);
        Box::new(move |conn| {
            let sql = Arc::clone(&sql);
            // VACUUM names the table alone: 42P01 means it was dropped
            // since the fold before.
            async move {
                statements::vacuum(conn, &sql)
                    .await
                    .map_err(|error| vanished(error, sql.display_name()))
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
                let found = statements::initialise(conn, &sql, create, lock_timeout).await;
                match found {
                    Err(error) if existed => Err(vanished(error, sql.display_name())),
                    found => found,
                }
            }
            .boxed_local()
        })
    }

    fn initialised(&mut self, found: InitOutcome, log: &Logger) {
        self.existed = true;
        self.value_type = found.value_type;
        if let Some(existing) = found.case_twin {
            let schema = &self.sql.schema;
            warn!(log, "schema {schema:?} did not exist but {existing:?} does: PostgreSQL names are case-sensitive when quoted, as worker_spi quotes them, so {schema:?} was created as a new schema beside {existing:?}";
                "event" => "schema_case_mismatch", "existing" => existing.clone());
        }
    }

    fn run(&self) -> SharedStep<Self::Ran> {
        let sql = Arc::clone(&self.sql);
        let (batch, value_type) = (self.batch.now(), self.value_type);
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
                let outcome = match statements::fold(conn, &sql, batch, value_type).await {
                    Err(error) if error.is_missing_relation() => {
                        return Err(statements::confirm_table_gone(conn, &sql, error).await)
                    }
                    outcome => outcome?,
                };
                Ok((outcome, started.elapsed()))
            }
            .boxed_local()
        })
    }

    fn tally((outcome, took): &Self::Ran) -> FoldDone<'_> {
        FoldDone {
            took: *took,
            rows: outcome.folded as u64,
            total: outcome.total.as_ref(),
            backlog: outcome.backlog,
            waiting: outcome.waiting,
        }
    }

    fn ran(&mut self, (outcome, took): Self::Ran, log: &Logger) -> (RunReport, Option<Step<()>>) {
        self.rows_since_vacuum += outcome.folded as u64;
        let fault = self.check_value_type(outcome.value_type.clone(), log);
        let backlog = BacklogFields(outcome.backlog);
        match &outcome.total {
            Some(total) => {
                if std::mem::take(&mut self.told_no_total) {
                    info!(log, "{} has a total row now: {} deltas folded, those that waited for it among them", self.sql.display_name(), outcome.folded;
                        "event" => "worker_total_found", "folded" => outcome.folded, "total" => total);
                }
                // Formatted only if a drain writes it.
                let (worker, table) = (&self.worker, self.sql.display_name());
                if self.fold_lines_at_info
                    && (outcome.folded > 0 || self.last_total.as_ref() != Some(total))
                {
                    info!(log, "{worker}: count in {table} is now {total}";
                        "event" => "worker_tick", "total" => total, "folded" => outcome.folded, backlog);
                } else {
                    debug!(log, "{worker}: count in {table} is now {total}";
                        "event" => "worker_tick", "total" => total, "folded" => outcome.folded, backlog);
                }
            }
            None => match outcome.waiting {
                Some(waiting) if waiting.left > 0 && !self.told_no_total => {
                    self.told_no_total = true;
                    warn!(log, "{} has no total row (or its value is NULL): {waiting} delta rows are kept, \
                                and folded once a total row exists", self.sql.display_name();
                        "event" => "worker_no_total", "waiting" => waiting.left,
                        "waiting_at_least" => waiting.at_least);
                }
                _ => {}
            },
        }
        self.last_total.clone_from(&outcome.total);
        self.follow_backlog(&outcome, took, log);
        self.batch.after(outcome.backlog.is_some(), took);
        let report = RunReport {
            // As long as the batch took: the connection it shares is the
            // other schemas' at least half the time.
            again_after: outcome.backlog.map(|_| took),
            fault,
        };
        // Not while a backlog is folded: a VACUUM between two batches would
        // take a connection of its own each time (the batches prune the
        // pages they empty as they go), and the one after the last batch
        // cleans the lot.
        let due = vacuum_due(
            self.rows_since_vacuum,
            self.vacuum_after,
            self.vacuum_locked,
            Instant::now(),
        ) && self.catching_up.is_none();
        (report, due.then(|| self.vacuum()))
    }

    fn maintained(&mut self, log: &Logger) {
        info!(log, "vacuumed {} after folding {} rows since its last vacuum",
            self.sql.display_name(), self.rows_since_vacuum;
            "event" => "worker_vacuumed", "rows" => self.rows_since_vacuum);
        self.rows_since_vacuum = 0;
        self.vacuum_locked = None;
    }

    fn maintenance_postponed(&mut self, why: Postponed, now: Instant, log: &Logger) {
        let table = self.sql.display_name();
        match why {
            // Once per episode at info: a table locked for minutes would
            // otherwise say so at every try.
            Postponed::Locked(reason) => {
                if self.vacuum_locked.replace(now).is_none() {
                    info!(log, "VACUUM of {table} postponed, the table is locked: {reason}; tried again after later folds, at most once a second";
                        "event" => "worker_vacuum_postponed", "reason" => "locked", "error" => reason.clone());
                } else {
                    debug!(log, "VACUUM of {table} postponed again, the table is still locked: {reason}";
                        "event" => "worker_vacuum_postponed", "reason" => "locked", "error" => reason.clone());
                }
            }
            Postponed::NoConnection(reason) => {
                debug!(log, "VACUUM of {table} postponed: {reason}; tried again after the next fold";
                    "event" => "worker_vacuum_postponed", "reason" => "no_connection", "error" => reason.clone());
            }
        }
    }

    fn reconfigure(&mut self, settings: &Settings) {
        self.init_lock_timeout = settings.database.lock_timeout;
        self.vacuum_after = settings.workers.vacuum_after;
        self.batch.reconfigure(
            i64::from(settings.workers.fold_batch),
            settings.naptime,
            settings.database.statement_timeout,
        );
        self.fold_lines_at_info = settings.fold_lines_at_info();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::job::{build, JobKind};

    fn settings() -> Settings {
        crate::settings::ConfigSources::default()
            .load_without_env()
            .expect("the built-in defaults load")
    }

    fn target(schema: &str, worker: &str) -> SchemaTarget {
        SchemaTarget::listed(schema.into(), worker.into())
    }

    /// The Supervisor's constructor builds the fold for the target, with
    /// the settings' table, batch, VACUUM threshold and `create_schema`.
    #[test]
    fn the_constructor_builds_the_fold_of_the_target_from_the_settings() {
        let mut settings = settings();
        settings.workers.table = "tally".into();
        settings.workers.fold_batch = 250;
        settings.workers.vacuum_after = 42;
        settings.workers.create_schema = false;
        assert_eq!(JobKind::of(&settings), JobKind::Fold);
        let job = build(JobKind::Fold, &target("Orders", "worker 7"), &settings);
        assert_eq!(&*job.sql.schema, "Orders");
        assert_eq!(&*job.sql.table, "tally");
        assert_eq!(&*job.worker, "worker 7");
        assert_eq!(job.batch.now(), 250);
        assert_eq!(job.vacuum_after, 42);
        assert!(!job.create_schema);
        assert_eq!(job.init_lock_timeout, settings.database.lock_timeout);
        assert_eq!(job.fold_lines_at_info, settings.fold_lines_at_info());
        // A new worker's job knows nothing yet: worker_spi's column type,
        // no table seen, nothing folded.
        assert!(!job.existed);
        assert_eq!(job.value_type, ValueType::Integer);
        assert_eq!(job.rows_since_vacuum, 0);
        assert_eq!(job.display_name(), "\"Orders\".tally");
    }

    #[test]
    fn the_constructor_follows_create_schema_and_an_earlier_table() {
        let mut settings = settings();
        settings.workers.create_schema = true;
        let job = build(
            JobKind::of(&settings),
            &target("schema1", "worker 1"),
            &settings,
        );
        assert!(job.create_schema);
        assert_eq!(&*job.sql.table, &*settings.workers.table);
        assert_eq!(job.batch.most(), i64::from(settings.workers.fold_batch));
        assert!(job.after_it_existed(true).existed);
    }

    #[test]
    fn vacuum_comes_due_after_vacuum_after_rows() {
        let now = Instant::now();
        assert!(!vacuum_due(299, 300, None, now));
        assert!(vacuum_due(300, 300, None, now));
        assert!(vacuum_due(5_000, 300, None, now));
    }

    #[test]
    fn vacuum_after_0_never_vacuums() {
        assert!(!vacuum_due(u64::MAX, 0, None, Instant::now()));
    }

    #[test]
    fn a_locked_table_is_tried_again_at_most_once_a_second() {
        let locked = Instant::now();
        let ms = Duration::from_millis;
        assert!(!vacuum_due(300, 300, Some(locked), locked + ms(100)));
        assert!(!vacuum_due(300, 300, Some(locked), locked + ms(999)));
        assert!(vacuum_due(300, 300, Some(locked), locked + ms(1_000)));
        // Not before vacuum_after rows, locked or not.
        assert!(!vacuum_due(10, 300, Some(locked), locked + ms(5_000)));
    }
}

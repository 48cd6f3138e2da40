//! A worker's job, behind one small interface.
//!
//! `worker.rs` owns the schedule: ticks at the schema's phase, the busy
//! flag that keeps them from overlapping, the connection, its deadline and
//! retries, `Stop` and the cancel. A [`Job`] owns the work and the state it
//! keeps: what to run to make the schema ready, what to run at each tick,
//! what a run means (its log lines, what it reports), and maintenance that
//! comes due (a VACUUM). So the fold can be rewritten for speed without
//! touching the schedule, and a custom per-schema job is a second
//! implementation of the same trait.
//!
//! [`FoldJob`] is worker_spi's fold.
//!
//! The Supervisor builds every worker's job through [`build`], with the
//! [`JobKind`] the settings choose ([`JobKind::of`]): a new kind of job is
//! one new file here, its arm in [`build`], and its configuration key.

mod fold;

use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use slog::Logger;

pub use fold::{privileges, FoldJob};

use crate::db::{DbError, PgClient, PgConnection};
use crate::settings::{SchemaTarget, Settings};
use crate::status::FoldDone;

/// Which job a fleet's workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// worker_spi's fold ([`FoldJob`]).
    Fold,
}

impl JobKind {
    /// The kind of job `settings` choose. There is one today, so no key
    /// chooses it: this is where a `jobs:` key will.
    pub fn of(_settings: &Settings) -> Self {
        JobKind::Fold
    }
}

/// The one constructor of a worker's job: the job of `kind` for
/// `target`, from `settings` (its table, batch, VACUUM threshold, whether
/// it may create the schema). A second kind makes this return an enum of
/// jobs, or the worker a factory of its own; the Supervisor does not
/// change.
pub fn build(kind: JobKind, target: &SchemaTarget, settings: &Settings) -> FoldJob {
    match kind {
        JobKind::Fold => FoldJob::new(target, settings),
    }
}

/// Work for a pooled connection of its own (a transaction, a long
/// statement); it may run again on another connection when the first is
/// lost, so it is `Fn`, not `FnOnce`.
pub type Step<T> =
    Box<dyn for<'c> Fn(&'c mut PgConnection) -> LocalBoxFuture<'c, Result<T, DbError>>>;

/// Work of one statement (one message), which may share its connection
/// with other workers' folds, pipelined (see `db::lanes`).
pub type SharedStep<T> =
    Box<dyn for<'c> Fn(&'c PgClient) -> LocalBoxFuture<'c, Result<T, DbError>>>;

/// Why a maintenance step (VACUUM) did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Postponed {
    /// Another session holds a lock on the table (autovacuum on it, a
    /// migration, `CREATE INDEX CONCURRENTLY`): it gave up at once
    /// rather than wait.
    Locked(String),
    /// No connection was free for maintenance, or the maintenance
    /// bulkhead was full (see `db::maintenance`): routine under load.
    NoConnection(String),
}

/// While it waits, a schema tries again at most this often (or at each
/// tick, when the naptime is longer): a short naptime times hundreds of
/// locked tables would otherwise spend the shared connections on folds
/// that wait `database.fold_lock_timeout` each and give up.
pub const LOCK_RETRY_EVERY: Duration = Duration::from_secs(1);

/// What the worker does after a run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The job has more to do now (a backlog): run again after this pause
    /// rather than at the next tick (the worker waits at most a naptime).
    pub again_after: Option<Duration>,
    /// What the run found that the job cannot go on with, after its work
    /// was done (a table changed into one it does not handle): the run is
    /// reported as done, since it committed, then the worker ends with
    /// this error, as if the next run had met it.
    pub fault: Option<DbError>,
}

pub trait Job: Unpin + 'static {
    /// What initialising found, for [`Job::initialised`].
    type Initialised: 'static;
    /// What one run found, for [`Job::ran`].
    type Ran: 'static;

    /// What the job works on, for "worker 1 initialized with schema1.counted".
    fn display_name(&self) -> String;

    /// Makes the schema ready; the worker runs nothing else until it has
    /// succeeded once.
    fn initialise(&self) -> Step<Self::Initialised>;

    /// Takes note of the initialisation (and logs what it found).
    fn initialised(&mut self, found: Self::Initialised, log: &Logger);

    /// The work of one tick: one statement, pipelined with other
    /// workers' on a shared connection.
    fn run(&self) -> SharedStep<Self::Ran>;

    /// What a run did, for the status and the metrics: read before the
    /// run is logged ([`Job::ran`]), so that whoever reads its log line
    /// finds the status up to date.
    fn tally(found: &Self::Ran) -> FoldDone<'_>;

    /// Takes note of a run and logs it; says what to do next, and returns
    /// maintenance that is due now, which the worker runs as a step of its
    /// own, with its own deadline, after this run has been reported.
    fn ran(&mut self, found: Self::Ran, log: &Logger) -> (RunReport, Option<Step<()>>);

    /// The maintenance step succeeded.
    fn maintained(&mut self, log: &Logger);

    /// The maintenance step did not run, and nothing is wrong: it is
    /// tried again after a later run (see [`Postponed`]).
    fn maintenance_postponed(&mut self, why: Postponed, now: Instant, log: &Logger);

    /// A reload changed the settings (the job keeps what it uses).
    fn reconfigure(&mut self, settings: &Settings);
}

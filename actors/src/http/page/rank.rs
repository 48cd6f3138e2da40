//! Which schemas the status page shows, and in what order.
//!
//! A fleet of 100,000 schemas cannot be one table, and a table in name
//! order hides the one schema in trouble among the healthy ones. So each
//! schema is sorted into one of two lists: those that need a person
//! ([`attention`] gives a [`Reason`]), ranked by how badly, and the others,
//! by name. Each page shows a fixed number of each ([`PER_PAGE`]); a
//! search (`?q=`) narrows both lists to the names that contain it.
//!
//! [`select`] runs while the status's lock is held (the workers wait to
//! report meanwhile): one pass that classifies every entry and keeps a
//! reference to it, a partial selection (`select_nth_unstable`) of the
//! attention rows of the page asked for, and a copy of only the rows
//! shown, never of the 100,000.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::status::{WorkerState, WorkerStatus};

/// Rows of each list on one page: at most 200 rows, whatever the fleet.
pub const PER_PAGE: usize = 100;

/// Why a schema needs attention, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Failed, and the restart policy gave up: only a person (or a reload)
    /// starts it again.
    GivenUp,
    /// Failing: waiting for its restart, or started again after an error
    /// and not initialised yet.
    Failing,
    /// Its table has no total row, and deltas wait to be folded into one.
    WaitingForTotal,
    /// Its table was dropped; it folds again if the table comes back.
    TableDropped,
    /// Its fold waits for a lock on its table (a migration).
    WaitingForLock,
    /// Skipped its last ticks, two or more in a row (a fold still running
    /// at its next tick, no connection free, a statement timed out): one
    /// skip is a moment's congestion, the next tick folds.
    SkippingTicks,
    /// Its last fold left a backlog, or it has not folded for several
    /// naptimes.
    Behind,
    /// Started long ago and still not initialised.
    NotStarted,
    /// The database does not answer: the schema waits, like all others.
    WaitingForDatabase,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::GivenUp => "given up",
            Reason::Failing => "failing",
            Reason::WaitingForTotal => "waiting for a total row",
            Reason::TableDropped => "table dropped",
            Reason::WaitingForLock => "waiting for a lock",
            Reason::SkippingTicks => "skipping ticks",
            Reason::Behind => "behind",
            Reason::NotStarted => "not started",
            Reason::WaitingForDatabase => "waiting for the database",
        }
    }
}

/// What the classification needs besides the entry: one clock reading
/// for the whole page.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    pub now: SystemTime,
    pub naptime: Duration,
    /// The database is unreachable or refuses pgfleet (not: no answer
    /// yet).
    pub database_down: bool,
}

impl Facts {
    /// A schema that has not folded for this long is behind: three ticks
    /// missed, and never less than 10 s (a short naptime on a busy machine
    /// is late by a second now and then).
    pub fn behind_after(&self) -> Duration {
        (self.naptime * 3).max(Duration::from_secs(10))
    }

    fn age(&self, at: SystemTime) -> Duration {
        self.now.duration_since(at).unwrap_or_default()
    }
}

/// Ticks skipped in a row that make a schema "skipping ticks".
pub const SKIPPING_IN_A_ROW: u16 = 2;

/// How badly, within a reason: bigger first, then by name.
pub type Weight = (u64, u64);

/// Why `w` needs attention and how badly; None when it is fine.
pub fn attention(w: &WorkerStatus, facts: &Facts) -> Option<(Reason, Weight)> {
    let in_state = facts.age(w.state_since).as_secs();
    let failures = w.failures();
    match w.state {
        WorkerState::GivenUp => return Some((Reason::GivenUp, (failures, in_state))),
        WorkerState::Restarting => return Some((Reason::Failing, (failures, in_state))),
        WorkerState::WaitingForTotal => {
            let waiting = w.waiting().map_or(0, |waiting| waiting.left);
            return Some((Reason::WaitingForTotal, (waiting, in_state)));
        }
        WorkerState::TableDropped => return Some((Reason::TableDropped, (in_state, 0))),
        // On purpose: not behind, not trouble.
        WorkerState::Paused => return None,
        WorkerState::WaitingForLock => {
            return Some((Reason::WaitingForLock, (in_state, w.ticks_skipped)))
        }
        WorkerState::Starting if failed_since_last_fold(w) => {
            return Some((Reason::Failing, (failures, in_state)))
        }
        WorkerState::Starting | WorkerState::Running | WorkerState::WaitingForDatabase => {}
    }
    let since_fold = facts.age(w.last_fold_at.unwrap_or(w.state_since));
    // Its last tick found the database gone, or everyone's will.
    if w.state == WorkerState::WaitingForDatabase || facts.database_down {
        return Some((Reason::WaitingForDatabase, (since_fold.as_secs(), 0)));
    }
    if w.state == WorkerState::Starting {
        return (in_state >= facts.behind_after().as_secs())
            .then_some((Reason::NotStarted, (in_state, 0)));
    }
    if w.skipped_in_a_row() >= SKIPPING_IN_A_ROW {
        return Some((
            Reason::SkippingTicks,
            (u64::from(w.skipped_in_a_row()), w.ticks_skipped),
        ));
    }
    let backlog = w.backlog().left;
    if backlog > 0 || since_fold >= facts.behind_after() {
        return Some((Reason::Behind, (backlog, since_fold.as_secs())));
    }
    None
}

/// Started again after an error, and no fold since: the error is its
/// present, not its past.
fn failed_since_last_fold(w: &WorkerStatus) -> bool {
    match (w.last_error_at(), w.last_fold_at) {
        (Some(error), Some(fold)) => error >= fold,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// A worker's error is its past: it folded since.
pub fn recovered(w: &WorkerStatus) -> bool {
    w.last_error().is_some() && !failed_since_last_fold(w)
}

/// What the page was asked for: `?q=` and `?page=` (from 1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// A part of the name, any case; empty: every schema.
    pub q: String,
    pub page: usize,
}

impl Query {
    /// `q` trimmed; a `page` that is not a number is the first.
    pub fn new(q: Option<&str>, page: Option<&str>) -> Self {
        Query {
            q: q.unwrap_or("").trim().to_owned(),
            page: page
                .and_then(|p| p.trim().parse::<usize>().ok())
                .unwrap_or(1)
                .max(1),
        }
    }

    /// Whether `w` is among the schemas searched for: its schema or worker
    /// name contains `q` (ASCII letters in any case).
    pub fn matches(&self, w: &WorkerStatus) -> bool {
        self.q.is_empty()
            || contains_ignoring_case(&w.schema, &self.q)
            || (w.worker != w.schema && contains_ignoring_case(&w.worker, &self.q))
    }
}

fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.len() <= haystack.len()
        && haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

/// One row of the attention list.
#[derive(Debug, Clone)]
pub struct Flagged {
    pub reason: Reason,
    pub worker: WorkerStatus,
}

/// The page's rows and the counts around them.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Every worker, searched for or not.
    pub workers: usize,
    /// The workers the query matched (all of them without one).
    pub matched: usize,
    /// Every worker that needs attention, by reason, searched for or not:
    /// the fleet's, for the headline.
    pub by_reason: BTreeMap<Reason, usize>,
    /// Workers starting, not long enough to need attention (searched for
    /// or not).
    pub starting: usize,
    /// The matched ones: those needing attention, and the others.
    pub attention_total: usize,
    pub others_total: usize,
    /// This page's attention rows, most urgent first.
    pub attention: Vec<Flagged>,
    /// This page's other rows, by name.
    pub others: Vec<WorkerStatus>,
    /// The page shown (from 1; the last when the one asked for is beyond
    /// it) and how many there are (at least 1).
    pub page: usize,
    pub pages: usize,
    /// The latest fold of any worker, searched for or not.
    pub last_fold_at: Option<SystemTime>,
}

/// Picks the rows of `query`'s page out of `workers` (by name, as the
/// status keeps them); copies only those.
pub fn select<'a>(
    workers: impl Iterator<Item = &'a WorkerStatus>,
    query: &Query,
    facts: &Facts,
) -> Selection {
    let mut selection = Selection::default();
    let mut flagged: Vec<(Reason, Weight, &WorkerStatus)> = Vec::new();
    let mut others: Vec<&WorkerStatus> = Vec::new();
    for w in workers {
        selection.workers += 1;
        selection.last_fold_at = selection.last_fold_at.max(w.last_fold_at);
        let flag = attention(w, facts);
        match flag {
            Some((reason, _)) => *selection.by_reason.entry(reason).or_insert(0) += 1,
            None if w.state == WorkerState::Starting => selection.starting += 1,
            None => {}
        }
        if !query.matches(w) {
            continue;
        }
        selection.matched += 1;
        match flag {
            Some((reason, weight)) => flagged.push((reason, weight, w)),
            None => others.push(w),
        }
    }
    selection.attention_total = flagged.len();
    selection.others_total = others.len();
    selection.pages = flagged
        .len()
        .div_ceil(PER_PAGE)
        .max(others.len().div_ceil(PER_PAGE))
        .max(1);
    selection.page = query.page.clamp(1, selection.pages);
    let start = (selection.page - 1) * PER_PAGE;

    let range = |len: usize| start.min(len)..(start + PER_PAGE).min(len);
    let key = |&(reason, weight, w): &(Reason, Weight, &'a WorkerStatus)| {
        (reason, Reverse(weight), &w.schema)
    };
    let shown = range(flagged.len());
    // Only the page's ranks in order: the ones before it are only known
    // to come first, the ones after it only to come after.
    if shown.end < flagged.len() {
        flagged.select_nth_unstable_by(shown.end, |a, b| key(a).cmp(&key(b)));
    }
    if shown.start > 0 && shown.start < shown.end {
        flagged[..shown.end].select_nth_unstable_by(shown.start, |a, b| key(a).cmp(&key(b)));
    }
    let page = &mut flagged[shown];
    page.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
    selection.attention = page
        .iter()
        .map(|&(reason, _, w)| Flagged {
            reason,
            worker: w.clone(),
        })
        .collect();
    selection.others = others[range(others.len())]
        .iter()
        .map(|&w| w.clone())
        .collect();
    selection
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::Backlog;
    use crate::counter::Total;
    use crate::settings::SchemaTarget;
    use crate::status::{FoldDone, Status};

    const NAPTIME: Duration = Duration::from_secs(10);

    fn facts(now: SystemTime) -> Facts {
        Facts {
            now,
            naptime: NAPTIME,
            database_down: false,
        }
    }

    fn target(schema: &str) -> SchemaTarget {
        SchemaTarget::listed(schema.into(), schema.into())
    }

    fn fold(status: &Status, schema: &str, backlog: u64) {
        fold_of(status, schema, 1, backlog);
    }

    fn fold_of(status: &Status, schema: &str, generation: u64, backlog: u64) {
        let total = Total::from(1);
        status.fold_done(
            schema,
            generation,
            FoldDone {
                took: Duration::from_millis(1),
                rows: 1,
                total: Some(&total),
                backlog: (backlog > 0).then_some(Backlog {
                    left: backlog,
                    at_least: false,
                }),
                waiting: None,
            },
        );
    }

    /// A fleet of healthy schemas `p1` .. `pN`, each folded once, and
    /// `trouble` made to happen to some of them.
    fn fleet(n: usize, trouble: impl FnOnce(&Status)) -> Status {
        let status = Status::new();
        for i in 1..=n {
            let schema = format!("p{i}");
            status.worker_spawned(&target(&schema), 1, false);
            status.worker_initialised(&schema, 1);
            fold(&status, &schema, 0);
        }
        trouble(&status);
        status
    }

    fn pick(status: &Status, query: &Query, facts: &Facts) -> Selection {
        status.read_workers(|workers| select(workers, query, facts))
    }

    fn names(selection: &Selection) -> Vec<String> {
        selection
            .attention
            .iter()
            .map(|f| format!("{} {}", f.reason.label(), f.worker.schema))
            .collect()
    }

    #[test]
    fn a_healthy_fleet_needs_no_attention_and_pages_by_name() {
        let status = fleet(250, |_| {});
        let first = pick(&status, &Query::new(None, None), &facts(SystemTime::now()));
        assert_eq!(first.workers, 250);
        assert_eq!(first.attention_total, 0);
        assert_eq!(first.starting, 0);
        assert!(first.by_reason.is_empty());
        assert_eq!((first.page, first.pages), (1, 3));
        assert_eq!(first.others.len(), PER_PAGE);
        assert_eq!(&*first.others[0].schema, "p1");
        assert_eq!(&*first.others[1].schema, "p10");
        let last = pick(
            &status,
            &Query::new(None, Some("3")),
            &facts(SystemTime::now()),
        );
        assert_eq!(last.others.len(), 50);
        // Beyond the last page, or not a number: the last, the first.
        let beyond = pick(
            &status,
            &Query::new(None, Some("99")),
            &facts(SystemTime::now()),
        );
        assert_eq!(beyond.page, 3);
        let junk = pick(
            &status,
            &Query::new(None, Some("x")),
            &facts(SystemTime::now()),
        );
        assert_eq!(junk.page, 1);
    }

    #[test]
    fn trouble_comes_first_most_urgent_first() {
        let status = fleet(1000, |status| {
            status.worker_failed("p500", 1, "boom");
            status.worker_given_up("p500", 1, "policy never");
            status.worker_failed("p7", 1, "boom");
            status.worker_failed("p7", 1, "boom again");
            status.worker_restarting("p7", 1, Duration::from_secs(5));
            status.worker_failed("p8", 1, "boom");
            status.worker_restarting("p8", 1, Duration::from_secs(5));
            status.worker_waiting("p900", 1, WorkerState::WaitingForLock);
            status.worker_waiting("p901", 1, WorkerState::TableDropped);
            let waiting = Backlog {
                left: 152,
                at_least: false,
            };
            status.fold_done(
                "p902",
                1,
                FoldDone {
                    took: Duration::from_millis(1),
                    rows: 0,
                    total: None,
                    backlog: None,
                    waiting: Some(waiting),
                },
            );
            status.tick_skipped("p777", 1, "fold_in_flight");
            status.tick_skipped("p777", 1, "fold_in_flight");
            status.tick_skipped("p778", 1, "fold_in_flight");
            fold(status, "p333", 50_000);
            fold(status, "p334", 70_000);
        });
        let selection = pick(&status, &Query::default(), &facts(SystemTime::now()));
        assert_eq!(
            names(&selection),
            [
                "given up p500",
                "failing p7",
                "failing p8",
                "waiting for a total row p902",
                "table dropped p901",
                "waiting for a lock p900",
                "skipping ticks p777",
                "behind p334",
                "behind p333",
            ]
        );
        assert_eq!(selection.others_total, 991);
        assert_eq!(selection.by_reason[&Reason::Failing], 2);
        assert!(selection.others.iter().all(|w| &*w.schema != "p7"));
    }

    #[test]
    fn skips_in_a_row_and_time_without_a_fold_are_trouble() {
        let status = fleet(4, |status| {
            status.tick_skipped("p1", 1, "pool_exhausted");
            status.tick_skipped("p2", 1, "pool_exhausted");
            status.tick_skipped("p2", 1, "fold_in_flight");
            status.tick_skipped("p3", 1, "fold_in_flight");
            status.tick_skipped("p3", 1, "fold_in_flight");
            fold(status, "p3", 0);
        });
        let now = SystemTime::now();
        // One skip is a moment's congestion; two in a row without a fold
        // between them is trouble; skips followed by a fold are over.
        let soon = pick(
            &status,
            &Query::default(),
            &facts(now + Duration::from_secs(5)),
        );
        assert_eq!(names(&soon), ["skipping ticks p2"]);
        // Nobody folded for 40 s, three naptimes and more: all behind, but
        // p2, still skipping, comes first.
        let later = pick(
            &status,
            &Query::default(),
            &facts(now + Duration::from_secs(40)),
        );
        assert_eq!(
            names(&later),
            ["skipping ticks p2", "behind p1", "behind p3", "behind p4"]
        );
        assert_eq!(later.others_total, 0);
        fold(&status, "p2", 0);
        assert_eq!(status.worker("p2").map(|w| w.skipped_in_a_row()), Some(0));
    }

    #[test]
    fn during_an_outage_the_folding_schemas_wait_for_the_database() {
        let status = fleet(5, |status| {
            status.worker_failed("p3", 1, "boom");
            status.worker_given_up("p3", 1, "policy never");
        });
        let mut outage = facts(SystemTime::now());
        outage.database_down = true;
        let selection = pick(&status, &Query::default(), &outage);
        assert_eq!(selection.by_reason[&Reason::GivenUp], 1);
        assert_eq!(selection.by_reason[&Reason::WaitingForDatabase], 4);
        // A worker whose tick found the database gone waits for it, even
        // before the fleet's probe says so.
        status.database_blocks("p1", 1);
        let selection = pick(&status, &Query::default(), &facts(SystemTime::now()));
        assert_eq!(
            names(&selection),
            ["given up p3", "waiting for the database p1"]
        );
        assert_eq!(selection.attention[0].reason, Reason::GivenUp);
    }

    #[test]
    fn a_failure_followed_by_folds_is_recovered() {
        let status = fleet(2, |status| {
            status.worker_failed("p1", 1, "schema p1 does not exist");
            status.worker_spawned(&target("p1"), 2, true);
        });
        let now = SystemTime::now();
        let p1 = status.worker("p1").expect("p1");
        assert_eq!(
            attention(&p1, &facts(now)).map(|a| a.0),
            Some(Reason::Failing)
        );
        assert!(!recovered(&p1));
        status.worker_initialised("p1", 2);
        std::thread::sleep(Duration::from_millis(2));
        fold_of(&status, "p1", 2, 0);
        let p1 = status.worker("p1").expect("p1");
        assert_eq!(attention(&p1, &facts(SystemTime::now())), None);
        assert!(recovered(&p1));
        assert!(!recovered(&status.worker("p2").expect("p2")));
    }

    #[test]
    fn search_narrows_both_lists_in_any_case() {
        let status = fleet(10_000, |status| {
            status.worker_failed("p7777", 1, "boom");
            status.worker_given_up("p7777", 1, "policy never");
        });
        let found = pick(
            &status,
            &Query::new(Some(" P777 "), None),
            &facts(SystemTime::now()),
        );
        assert_eq!(found.matched, 11, "p777, p7770 .. p7779");
        assert_eq!(found.workers, 10_000);
        assert_eq!(names(&found), ["given up p7777"]);
        assert_eq!((found.attention_total, found.others_total), (1, 10));
        assert_eq!(found.others.len(), 10);
        let none = pick(
            &status,
            &Query::new(Some("nope"), None),
            &facts(SystemTime::now()),
        );
        assert_eq!((none.matched, none.pages, none.page), (0, 1, 1));
        assert!(contains_ignoring_case("Tenant_21", "t_2"));
        assert!(!contains_ignoring_case("t", "tt"));
    }

    /// Each page of a long attention list holds exactly its ranks: the
    /// partial selection agrees with a full sort.
    #[test]
    fn attention_pages_agree_with_a_full_sort() {
        let status = fleet(1000, |status| {
            for i in (1..=1000).step_by(3) {
                fold(status, &format!("p{i}"), (i as u64 * 7919) % 5000 + 1);
            }
        });
        let facts = facts(SystemTime::now());
        let mut expected: Vec<(u64, String)> = status
            .workers()
            .iter()
            .filter(|w| w.backlog().left > 0)
            .map(|w| (w.backlog().left, w.schema.to_string()))
            .collect();
        expected.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut seen = Vec::new();
        for page in 1..=4 {
            let selection = pick(&status, &Query::new(None, Some(&page.to_string())), &facts);
            assert_eq!(selection.pages, 7, "334 behind, 666 others");
            seen.extend(
                selection
                    .attention
                    .iter()
                    .map(|f| (f.worker.backlog().left, f.worker.schema.to_string())),
            );
        }
        assert_eq!(seen, expected);
    }
}

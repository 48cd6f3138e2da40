//! Reconcile: what the Supervisor does to bring its workers to a desired
//! set of schemas, decided as plain data.
//!
//! Every source of the schemas to fold (the settings at start and at each
//! reload, discovery at each rescan; the instances' ownership later) hands the
//! Supervisor a [`Desired`] set and a [`Reason`]. [`plan`] compares it
//! with the workers as they are (each slot's target and [`SlotKind`]) and
//! returns the [`Action`]s to take, in order; the Supervisor only carries
//! them out. Like `policy`, it is tested without an actor, a database or a
//! clock.
//!
//! The rules:
//!
//! - a worker whose schema left the set, whose name changed, or whose
//!   table settings changed ([`TableKey`]) is retired; one for the new
//!   target starts afresh (a new generation, its schema not known to have
//!   existed, counted in a new start batch);
//! - a schema without a worker gets one;
//! - a reload is the operator's "try again" and "fold now": a worker
//!   waiting out its backoff restarts at once, a given-up one starts
//!   afresh with its restart history forgotten, and every running worker,
//!   those two included, is told of the new settings (each then folds
//!   once, SPEC §2). Workers started by the same step are not told: they
//!   start with the new settings.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::settings::{SchemaTarget, Settings};

/// The schemas a source wants folded, and the table settings their
/// workers are built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// In the order the source gives them: the order in which new workers
    /// start and running ones are told of a reload. A schema listed twice
    /// counts once, with its first target.
    pub targets: Vec<SchemaTarget>,
    pub table: TableKey,
}

impl Desired {
    /// The set the settings name (`workers.total` or `workers.schemas`).
    pub fn from_settings(settings: &Settings) -> Self {
        Self::with_discovered(settings, &[])
    }

    /// The schemas the settings name, then those discovery found that they
    /// do not name (a schema both listed and found stays listed: it is the
    /// one the operator named, and may be created when missing).
    pub fn with_discovered(settings: &Settings, discovered: &[Arc<str>]) -> Self {
        let mut targets = settings.targets();
        if !discovered.is_empty() {
            let listed: std::collections::HashSet<Arc<str>> = targets
                .iter()
                .map(|target| Arc::clone(&target.schema))
                .collect();
            targets.extend(
                discovered
                    .iter()
                    .filter(|schema| !listed.contains(*schema))
                    .map(|schema| SchemaTarget::discovered(Arc::clone(schema))),
            );
        }
        Desired {
            targets,
            table: TableKey::from_settings(settings),
        }
    }
}

/// What a worker's table statements and initialisation are built from
/// when it starts (`workers.table`, `workers.create_schema`): a worker
/// cannot take a change of these on the fly, so a change replaces every
/// worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableKey {
    pub table: Arc<str>,
    pub create_schema: bool,
}

impl TableKey {
    pub fn from_settings(settings: &Settings) -> Self {
        TableKey {
            table: Arc::clone(&settings.workers.table),
            create_schema: settings.workers.create_schema,
        }
    }
}

/// Why a desired set is applied now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The service starts: the first set, no worker yet.
    Start,
    /// The settings were reloaded (SIGHUP, `--watch-config`): failing
    /// workers are tried again at once, and running ones told.
    Reload,
    /// Discovery rescanned: schemas that came get workers, those that went
    /// lose theirs; the others are left as they are (a failing one keeps
    /// its backoff).
    Rescan,
    /// With coordination, this instance's share changed: as a rescan,
    /// for the buckets taken and given.
    Handover,
    /// With coordination, the session failed: every worker stops.
    CoordinationLost,
}

/// A slot's state, as much of it as the plan needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    Running,
    /// Failed, and waiting out its backoff before restart `attempt`.
    Restarting {
        attempt: u32,
    },
    GivenUp,
}

/// One step towards the desired set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop this schema's worker on purpose (cancelling a scheduled
    /// restart), and forget its slot.
    Retire { schema: Arc<str> },
    /// Start a worker for a schema that has none.
    Start { target: SchemaTarget },
    /// Start a given-up worker afresh, its restart history forgotten.
    Revive { schema: Arc<str> },
    /// Restart now a worker waiting out its backoff, as restart `attempt`
    /// (a reload may have fixed the cause).
    RestartNow { schema: Arc<str>, attempt: u32 },
    /// Tell these running workers of the new settings (they then fold
    /// once). Every running worker is named, so the list replaces any an
    /// earlier reload left still to tell.
    Reconfigure { schemas: Vec<Arc<str>> },
}

/// The actions that bring `slots` (each worker's target and state), built
/// with `table`, to `desired`: every retirement first, then what each
/// desired schema needs in the desired order, then, on a reload, the
/// workers to tell.
pub fn plan<'a>(
    table: &TableKey,
    slots: impl IntoIterator<Item = (&'a SchemaTarget, SlotKind)>,
    desired: &Desired,
    why: Reason,
) -> Vec<Action> {
    let table_changed = *table != desired.table;
    let mut wanted: HashMap<&str, &SchemaTarget> = HashMap::with_capacity(desired.targets.len());
    for target in &desired.targets {
        wanted.entry(&target.schema).or_insert(target);
    }
    let mut actions = Vec::new();
    let mut kept: BTreeMap<&str, SlotKind> = BTreeMap::new();
    for (target, kind) in slots {
        if table_changed || wanted.get(&*target.schema) != Some(&target) {
            actions.push(Action::Retire {
                schema: Arc::clone(&target.schema),
            });
        } else {
            kept.insert(&target.schema, kind);
        }
    }
    let reload = why == Reason::Reload;
    let mut told = Vec::new();
    for target in &desired.targets {
        // Removed as it is met, so a schema listed twice is met once.
        if wanted.remove(&*target.schema).is_none() {
            continue;
        }
        let schema = || Arc::clone(&target.schema);
        match kept.get(&*target.schema) {
            None => actions.push(Action::Start {
                target: target.clone(),
            }),
            Some(_) if !reload => {}
            Some(SlotKind::Running) => told.push(schema()),
            Some(SlotKind::GivenUp) => {
                actions.push(Action::Revive { schema: schema() });
                told.push(schema());
            }
            Some(SlotKind::Restarting { attempt }) => {
                actions.push(Action::RestartNow {
                    schema: schema(),
                    attempt: *attempt,
                });
                told.push(schema());
            }
        }
    }
    if reload {
        actions.push(Action::Reconfigure { schemas: told });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ConfigSources;

    fn target(schema: &str, worker: &str) -> SchemaTarget {
        SchemaTarget::listed(schema.into(), worker.into())
    }

    /// `schemaN` named `worker N`, as `workers.total` makes them.
    fn numbered(n: u32) -> SchemaTarget {
        target(&format!("schema{n}"), &format!("worker {n}"))
    }

    fn table() -> TableKey {
        TableKey {
            table: "counted".into(),
            create_schema: true,
        }
    }

    fn desired(targets: &[SchemaTarget]) -> Desired {
        Desired {
            targets: targets.to_vec(),
            table: table(),
        }
    }

    fn schemas(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|&name| name.into()).collect()
    }

    fn retire(schema: &str) -> Action {
        Action::Retire {
            schema: schema.into(),
        }
    }

    fn start(target: &SchemaTarget) -> Action {
        Action::Start {
            target: target.clone(),
        }
    }

    fn reconfigure(names: &[&str]) -> Action {
        Action::Reconfigure {
            schemas: schemas(names),
        }
    }

    fn plan_of(slots: &[(SchemaTarget, SlotKind)], desired: &Desired, why: Reason) -> Vec<Action> {
        plan(
            &table(),
            slots.iter().map(|(target, kind)| (target, *kind)),
            desired,
            why,
        )
    }

    fn running(targets: &[SchemaTarget]) -> Vec<(SchemaTarget, SlotKind)> {
        targets
            .iter()
            .map(|target| (target.clone(), SlotKind::Running))
            .collect()
    }

    #[test]
    fn a_start_starts_every_target_in_the_given_order_and_tells_none() {
        let targets = [numbered(2), numbered(10), numbered(1)];
        let actions = plan_of(&[], &desired(&targets), Reason::Start);
        assert_eq!(
            actions,
            [start(&targets[0]), start(&targets[1]), start(&targets[2])]
        );
    }

    #[test]
    fn a_reload_that_changes_nothing_tells_every_running_worker() {
        let targets = [numbered(1), numbered(2), numbered(3)];
        let actions = plan_of(&running(&targets), &desired(&targets), Reason::Reload);
        assert_eq!(actions, [reconfigure(&["schema1", "schema2", "schema3"])]);
    }

    #[test]
    fn a_reload_retires_first_then_starts_and_tells_the_ones_that_stay() {
        let slots = running(&[numbered(1), numbered(2), numbered(3)]);
        let wanted = [numbered(1), numbered(4), numbered(3)];
        let actions = plan_of(&slots, &desired(&wanted), Reason::Reload);
        assert_eq!(
            actions,
            [
                retire("schema2"),
                start(&numbered(4)),
                reconfigure(&["schema1", "schema3"]),
            ]
        );
    }

    #[test]
    fn a_reload_to_no_schema_retires_every_worker_and_tells_none() {
        let slots = [
            (numbered(1), SlotKind::Running),
            (numbered(2), SlotKind::GivenUp),
            (numbered(3), SlotKind::Restarting { attempt: 2 }),
        ];
        let actions = plan_of(&slots, &desired(&[]), Reason::Reload);
        assert_eq!(
            actions,
            [
                retire("schema1"),
                retire("schema2"),
                retire("schema3"),
                reconfigure(&[]),
            ]
        );
    }

    /// `workers.total: 1` then `workers.schemas: [schema1]`: the same
    /// schema under another worker name is a new worker.
    #[test]
    fn a_renamed_worker_is_replaced_not_told() {
        let slots = running(&[numbered(1), numbered(2)]);
        let renamed = target("schema1", "schema1");
        let actions = plan_of(
            &slots,
            &desired(&[renamed.clone(), numbered(2)]),
            Reason::Reload,
        );
        assert_eq!(
            actions,
            [
                retire("schema1"),
                start(&renamed),
                reconfigure(&["schema2"])
            ]
        );
    }

    #[test]
    fn a_changed_table_replaces_every_worker_whatever_its_state() {
        let targets = [numbered(1), numbered(2), numbered(3)];
        let slots = [
            (numbered(1), SlotKind::Running),
            (numbered(2), SlotKind::GivenUp),
            (numbered(3), SlotKind::Restarting { attempt: 1 }),
        ];
        let replaced = vec![
            retire("schema1"),
            retire("schema2"),
            retire("schema3"),
            start(&targets[0]),
            start(&targets[1]),
            start(&targets[2]),
            reconfigure(&[]),
        ];
        let mut other_table = desired(&targets);
        other_table.table.table = "tally".into();
        assert_eq!(plan_of(&slots, &other_table, Reason::Reload), replaced);
        let mut no_create = desired(&targets);
        no_create.table.create_schema = false;
        assert_eq!(plan_of(&slots, &no_create, Reason::Reload), replaced);
    }

    /// SPEC §11: a reload is the operator's "I fixed it".
    #[test]
    fn a_reload_revives_the_given_up_and_restarts_the_backing_off_at_once() {
        let targets = [numbered(1), numbered(2), numbered(3)];
        let slots = [
            (numbered(1), SlotKind::GivenUp),
            (numbered(2), SlotKind::Running),
            (numbered(3), SlotKind::Restarting { attempt: 4 }),
        ];
        let actions = plan_of(&slots, &desired(&targets), Reason::Reload);
        assert_eq!(
            actions,
            [
                Action::Revive {
                    schema: "schema1".into()
                },
                Action::RestartNow {
                    schema: "schema3".into(),
                    attempt: 4
                },
                // Told like the others: each folds once it has
                // initialised, not at its slot of the naptime.
                reconfigure(&["schema1", "schema2", "schema3"]),
            ]
        );
    }

    /// Only a reload tries failing workers again or tells running ones;
    /// any other step leaves them as they are.
    #[test]
    fn a_step_that_is_no_reload_leaves_existing_workers_alone() {
        let slots = [
            (numbered(1), SlotKind::GivenUp),
            (numbered(2), SlotKind::Running),
            (numbered(3), SlotKind::Restarting { attempt: 1 }),
        ];
        let wanted = [numbered(1), numbered(2), numbered(3), numbered(4)];
        let actions = plan_of(&slots, &desired(&wanted), Reason::Start);
        assert_eq!(actions, [start(&numbered(4))]);
    }

    /// Issue 18: a rescan starts workers for the schemas that came and
    /// retires those of the schemas that went, and touches nothing else:
    /// a failing discovered worker keeps its backoff.
    #[test]
    fn a_rescan_follows_the_tenants_that_came_and_went_and_leaves_the_rest() {
        let found = |name: &str| SchemaTarget::discovered(name.into());
        let slots = [
            (found("tenant_1"), SlotKind::Running),
            (found("tenant_2"), SlotKind::Restarting { attempt: 2 }),
            (found("tenant_3"), SlotKind::Running),
        ];
        let now = desired(&[found("tenant_1"), found("tenant_2"), found("tenant_4")]);
        assert_eq!(
            plan_of(&slots, &now, Reason::Rescan),
            [retire("tenant_3"), start(&found("tenant_4"))]
        );
        // Found again, unchanged: nothing to do.
        let same = desired(&[found("tenant_1"), found("tenant_2"), found("tenant_3")]);
        assert_eq!(plan_of(&slots, &same, Reason::Rescan), []);
    }

    /// A schema that goes from discovered to listed (or back) changes how
    /// its worker initialises (only a listed one is created when
    /// missing): its worker is replaced.
    #[test]
    fn a_schema_that_becomes_listed_gets_a_new_worker() {
        let discovered = SchemaTarget::discovered("tenant_1".into());
        let listed = target("tenant_1", "tenant_1");
        assert_eq!(
            plan_of(
                &running(&[discovered]),
                &desired(std::slice::from_ref(&listed)),
                Reason::Reload
            ),
            [retire("tenant_1"), start(&listed), reconfigure(&[])]
        );
    }

    /// Listed schemas come first and stay listed when discovery also finds
    /// them; the others found follow, as discovered.
    #[test]
    fn discovered_schemas_follow_the_listed_ones_and_never_replace_them() {
        let mut settings = ConfigSources::default()
            .load_without_env()
            .expect("defaults");
        settings.workers.schemas = vec!["billing".into(), "tenant_2".into()];
        settings.workers.matching = vec!["tenant_%".into()];
        let found: Vec<Arc<str>> = vec!["tenant_1".into(), "tenant_2".into()];
        let desired = Desired::with_discovered(&settings, &found);
        assert_eq!(
            desired.targets,
            [
                target("billing", "billing"),
                target("tenant_2", "tenant_2"),
                SchemaTarget::discovered("tenant_1".into()),
            ]
        );
        // Only workers.match: workers.total is not used.
        settings.workers.schemas.clear();
        assert_eq!(
            Desired::with_discovered(&settings, &found).targets,
            [
                SchemaTarget::discovered("tenant_1".into()),
                SchemaTarget::discovered("tenant_2".into()),
            ]
        );
        assert_eq!(Desired::from_settings(&settings).targets, []);
    }

    #[test]
    fn a_schema_listed_twice_is_acted_on_once_with_its_first_target() {
        let first = target("tenant", "tenant");
        let second = target("tenant", "other name");
        let twice = desired(&[first.clone(), second.clone()]);
        assert_eq!(plan_of(&[], &twice, Reason::Start), [start(&first)]);
        // A running worker with the first target stays and is told once.
        assert_eq!(
            plan_of(&running(&[first]), &twice, Reason::Reload),
            [reconfigure(&["tenant"])]
        );
        // One with the second is replaced by the first.
        let first = target("tenant", "tenant");
        assert_eq!(
            plan_of(&running(&[second]), &twice, Reason::Reload),
            [retire("tenant"), start(&first), reconfigure(&[])]
        );
    }

    #[test]
    fn the_settings_name_the_schemas_in_their_order_and_the_table() {
        let mut settings = ConfigSources::default()
            .load_without_env()
            .expect("defaults");
        settings.workers.total = 3;
        settings.workers.table = "tally".into();
        settings.workers.create_schema = false;
        let from = Desired::from_settings(&settings);
        assert_eq!(from.targets, [numbered(1), numbered(2), numbered(3)]);
        assert_eq!(
            from.table,
            TableKey {
                table: "tally".into(),
                create_schema: false
            }
        );
        settings.workers.schemas = vec!["b".into(), "a".into()];
        let listed = Desired::from_settings(&settings);
        assert_eq!(listed.targets, [target("b", "b"), target("a", "a")]);
    }
}

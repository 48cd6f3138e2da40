//! Members coordinating in simulated time, as the coordination actor
//! drives them: each reads the locks every 500 ms and at once on a NOTIFY,
//! plans with [`Moves::plan`], and carries the moves out a few
//! milliseconds later (a release only once its workers have stopped, up to
//! a second), while the others read, join and leave in between. The unit
//! tests of [`assign`] see one view at a time; this sees how the views of
//! members reading at different moments of one handover combine, over
//! hundreds of random timings.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use super::{assign, weights, MemberId, Moves, Snapshot, DEFAULT_BUCKETS};

/// Simulated time, in microseconds.
type Micros = u64;
const MS: Micros = 1_000;
const SECOND: Micros = 1_000 * MS;
/// `coordination.lease` / 6, the read's period.
const PING_EVERY: Micros = 500 * MS;

/// splitmix64: a seed gives the same run every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn between(&mut self, low: Micros, high: Micros) -> Micros {
        low + self.next() % (high - low + 1)
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }

    fn member(&mut self) -> MemberId {
        MemberId::new(self.next() as u32)
    }
}

#[derive(Debug, Clone)]
enum Event {
    /// The periodic read, and the next one scheduled.
    Tick(MemberId),
    /// A read asked for (a tick, a NOTIFY, a step that ended with another
    /// asked for meanwhile).
    Step(MemberId),
    /// The read's answer: the locks as they are at this moment.
    Seen(MemberId),
    /// The workers of what is given up have stopped: unlock, NOTIFY.
    Release(MemberId, Moves),
    /// Then take, ask, stop asking (and NOTIFY the asks).
    Take(MemberId, Moves),
    Join(MemberId),
    /// A graceful stop: every lock goes, and a NOTIFY says so.
    Leave(MemberId),
    /// Killed: every lock goes with the session, and nothing is said.
    Killed(MemberId),
}

#[derive(Default)]
struct Member {
    held: Vec<u32>,
    wanting: Vec<u32>,
    free_before: BTreeSet<u32>,
    stepping: bool,
    step_again: bool,
}

struct World {
    now: Micros,
    rng: Rng,
    queue: BinaryHeap<Reverse<(Micros, u64)>>,
    events: HashMap<u64, Event>,
    next_event: u64,
    weights: Vec<u32>,
    members: BTreeMap<MemberId, Member>,
    holders: HashMap<u32, MemberId>,
    /// Each bucket's holders in turn, with when each took it.
    taken: Vec<Vec<(Micros, MemberId)>>,
    /// When each member left, if it did.
    left: HashMap<MemberId, Micros>,
}

impl World {
    fn new(seed: u64, weights: Vec<u32>) -> Self {
        let buckets = weights.len();
        World {
            now: 0,
            rng: Rng(seed),
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            next_event: 0,
            weights,
            members: BTreeMap::new(),
            holders: HashMap::new(),
            taken: vec![Vec::new(); buckets],
            left: HashMap::new(),
        }
    }

    fn at(&mut self, delay: Micros, event: Event) {
        let id = self.next_event;
        self.next_event += 1;
        self.events.insert(id, event);
        self.queue.push(Reverse((self.now + delay, id)));
    }

    fn run_until(&mut self, end: Micros) {
        while let Some(Reverse((when, id))) = self.queue.peek().copied() {
            if when > end {
                break;
            }
            self.queue.pop();
            self.now = when;
            if let Some(event) = self.events.remove(&id) {
                self.handle(event);
            }
        }
        self.now = end;
    }

    /// A NOTIFY on the namespace's channel: every member (the sender too,
    /// as it listens) reads again.
    fn notify_all(&mut self) {
        let members: Vec<MemberId> = self.members.keys().copied().collect();
        for member in members {
            let delay = self.rng.between(MS / 2, 3 * MS);
            self.at(delay, Event::Step(member));
        }
    }

    fn snapshot(&self) -> Snapshot {
        let mut wanted_by: HashMap<u32, Vec<MemberId>> = HashMap::new();
        for (member, state) in &self.members {
            for bucket in &state.wanting {
                wanted_by.entry(*bucket).or_default().push(*member);
            }
        }
        Snapshot {
            members: self.members.keys().copied().collect(),
            holders: self.holders.clone(),
            wanted_by,
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Join(me) => {
                self.members.insert(me, Member::default());
                self.notify_all();
                self.at(0, Event::Tick(me));
            }
            Event::Leave(me) | Event::Killed(me) => {
                self.members.remove(&me);
                self.holders.retain(|_, holder| *holder != me);
                self.left.insert(me, self.now);
                if matches!(event, Event::Leave(_)) {
                    self.notify_all();
                }
            }
            Event::Tick(me) if self.members.contains_key(&me) => {
                self.at(0, Event::Step(me));
                self.at(PING_EVERY, Event::Tick(me));
            }
            Event::Step(me) => {
                let Some(member) = self.members.get_mut(&me) else {
                    return;
                };
                if member.stepping {
                    member.step_again = true;
                    return;
                }
                member.stepping = true;
                member.step_again = false;
                let delay = self.rng.between(MS, 5 * MS);
                self.at(delay, Event::Seen(me));
            }
            Event::Seen(me) => {
                let now = self.snapshot();
                let Some(member) = self.members.get_mut(&me) else {
                    return;
                };
                let moves = Moves::plan(
                    me,
                    &now,
                    &self.weights,
                    &member.held,
                    &member.wanting,
                    &member.free_before,
                );
                member.free_before = (0..self.weights.len() as u32)
                    .filter(|bucket| !now.holders.contains_key(bucket))
                    .collect();
                if moves.is_empty() {
                    self.step_done(me);
                } else if moves.release.is_empty() {
                    let delay = self.rng.between(MS, 3 * MS);
                    self.at(delay, Event::Take(me, moves));
                } else {
                    // The Supervisor stops the workers first: usually at
                    // once, up to HANDOVER_WAIT when a fold is under way.
                    let delay = if self.rng.one_in(4) {
                        self.rng.between(100 * MS, SECOND)
                    } else {
                        self.rng.between(2 * MS, 50 * MS)
                    };
                    self.at(delay, Event::Release(me, moves));
                }
            }
            Event::Release(me, moves) => {
                let Some(member) = self.members.get_mut(&me) else {
                    return;
                };
                member
                    .held
                    .retain(|bucket| moves.release.binary_search(bucket).is_err());
                for bucket in &moves.release {
                    if self.holders.get(bucket) == Some(&me) {
                        self.holders.remove(bucket);
                    }
                }
                self.notify_all();
                let delay = self.rng.between(MS, 3 * MS);
                self.at(delay, Event::Take(me, moves));
            }
            Event::Take(me, moves) => {
                if !self.members.contains_key(&me) {
                    return;
                }
                let mut taken = Vec::new();
                for &bucket in &moves.acquire {
                    if let std::collections::hash_map::Entry::Vacant(free) =
                        self.holders.entry(bucket)
                    {
                        free.insert(me);
                        taken.push(bucket);
                        self.taken[bucket as usize].push((self.now, me));
                    }
                }
                let Some(member) = self.members.get_mut(&me) else {
                    return;
                };
                member.held.extend(taken);
                member.held.sort_unstable();
                member.wanting.extend(&moves.want);
                member
                    .wanting
                    .retain(|bucket| !moves.unwant.contains(bucket));
                member.wanting.sort_unstable();
                member.wanting.dedup();
                if !moves.want.is_empty() {
                    self.notify_all();
                }
                self.step_done(me);
            }
            Event::Tick(_) => {}
        }
    }

    fn step_done(&mut self, me: MemberId) {
        if let Some(member) = self.members.get_mut(&me) {
            member.stepping = false;
            if member.step_again {
                self.at(0, Event::Step(me));
            }
        }
    }

    /// A bucket with schemas that went from a member to another and back,
    /// while the other was still a member: (bucket, first, other, when
    /// the first took it back, in ms).
    fn back_and_forth(&self) -> Vec<(u32, MemberId, MemberId, Micros)> {
        let mut found = Vec::new();
        for (bucket, turns) in self.taken.iter().enumerate() {
            if self.weights[bucket] == 0 {
                continue;
            }
            for three in turns.windows(3) {
                let ((_, first), (_, other), (back_at, again)) = (three[0], three[1], three[2]);
                let other_still_there = self.left.get(&other).is_none_or(|left| *left > back_at);
                if first == again && first != other && other_still_there {
                    found.push((bucket as u32, first, other, back_at / MS));
                }
            }
        }
        found
    }

    /// Schemas held by each live member, and how many are held by nobody.
    fn loads(&self) -> (Vec<u64>, u64) {
        let mut loads: BTreeMap<MemberId, u64> =
            self.members.keys().map(|member| (*member, 0)).collect();
        let mut nobody = 0;
        for (bucket, weight) in self.weights.iter().enumerate() {
            match self.holders.get(&(bucket as u32)) {
                Some(holder) => *loads.entry(*holder).or_default() += u64::from(*weight),
                None => nobody += u64::from(*weight),
            }
        }
        (loads.into_values().collect(), nobody)
    }
}

fn fleet_weights() -> Vec<u32> {
    let schemas: Vec<String> = (1..=300).map(|n| format!("schema{n}")).collect();
    weights(schemas.iter().map(String::as_str), DEFAULT_BUCKETS)
}

/// The seeds run: the first hundred, and those that found a schema going
/// back and forth before the assignment was changed (shed what the holder
/// ranks lowest, raise towards the member that outranks, a want honoured
/// for a bucket being shed): 7 of the first 3,000 did then. Other seeds
/// follow other timings once the assignment differs, so those seven fail
/// the old assignment, not every flawed one. A debug build runs a seed in
/// about a fifth of a second; for more,
/// `PGFLEET_SIMULATION_SEEDS=5000 cargo test --release -p pgfleet-actors simulation`.
fn seeds() -> Vec<u64> {
    const FOUND_BACK_AND_FORTH: [u64; 7] = [599, 955, 1049, 1055, 1214, 1789, 2457];
    match std::env::var("PGFLEET_SIMULATION_SEEDS")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
    {
        Some(n) => (0..n).collect(),
        None => (0..100).chain(FOUND_BACK_AND_FORTH).collect(),
    }
}

/// The faults test's rolling restart, in simulated time and random
/// timings: three members; each in turn stops (gracefully, or now and
/// then killed) and a new one starts 50 to 300 ms later, 2 to 4 s apart.
/// No schema goes from one member to another and back while both are
/// members, every schema is held once all is quiet, and each member holds
/// its share.
#[test]
fn a_rolling_restart_moves_no_schema_back_and_forth() {
    let weights = fleet_weights();
    let mut failures = Vec::new();
    let runs = seeds();
    for &seed in &runs {
        let mut world = World::new(seed, weights.clone());
        let mut running: Vec<MemberId> = (0..3).map(|_| world.rng.member()).collect();
        for (n, member) in running.clone().into_iter().enumerate() {
            world.at(n as Micros * 5 * MS, Event::Join(member));
        }
        world.run_until(3 * SECOND);
        for _ in 0..3 {
            let old = running.remove(0);
            // Mostly a graceful stop; now and then a kill -9, whose
            // session ends with no NOTIFY: the others see it at their
            // next read.
            if world.rng.one_in(4) {
                world.at(0, Event::Killed(old));
            } else {
                world.at(0, Event::Leave(old));
            }
            let new = world.rng.member();
            let gap = world.rng.between(50 * MS, 300 * MS);
            world.at(gap, Event::Join(new));
            running.push(new);
            let next = world.now + world.rng.between(2 * SECOND, 4 * SECOND);
            world.run_until(next);
        }
        let end = world.now + 5 * SECOND;
        world.run_until(end);
        let flaps = world.back_and_forth();
        let (loads, nobody) = world.loads();
        let even = 300 / 3;
        let balanced = loads.iter().all(|load| load.abs_diff(even) <= even / 5);
        if !flaps.is_empty() || nobody > 0 || !balanced {
            failures.push(format!(
                "seed {seed}: {} back and forth (first {:?}), {nobody} schemas held by nobody, loads {loads:?}",
                flaps.len(),
                flaps.first()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} runs:\n{}",
        failures.len(),
        runs.len(),
        failures.join("\n")
    );
}

/// A check of the simulation itself: three members joining at once end
/// holding every bucket, each within a fifth of an even share, where
/// `assign` leaves them as they are (its fixed point).
#[test]
fn the_simulation_settles_where_assign_says() {
    let weights = fleet_weights();
    let mut world = World::new(7, weights.clone());
    let members: Vec<MemberId> = (0..3).map(|_| world.rng.member()).collect();
    for member in &members {
        world.at(0, Event::Join(*member));
    }
    world.run_until(5 * SECOND);
    let (loads, nobody) = world.loads();
    assert_eq!(nobody, 0, "every schema held");
    assert!(
        loads.iter().all(|load| load.abs_diff(100) <= 20),
        "{loads:?}"
    );
    let settled = assign(&members, &weights, &world.holders, &HashMap::new());
    for (bucket, owner) in settled.iter().enumerate() {
        assert_eq!(
            world.holders.get(&(bucket as u32)),
            owner.as_ref(),
            "bucket {bucket}"
        );
    }
}

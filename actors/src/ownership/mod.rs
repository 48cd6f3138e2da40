//! Which instance folds which schema when several share a fleet
//! (`coordination`), decided as plain data: the coordination actor reads
//! the locks from `pg_locks` and takes or releases what [`Moves::plan`]
//! says; it decides nothing itself.
//!
//! - **Buckets, not schemas**: a schema belongs to one of `buckets` by a
//!   hash of its name that never changes between versions, builds or
//!   hosts ([`bucket_of`], FNV-1a): thousands of per-schema session locks
//!   would fill the server's shared lock table, a few hundred bucket
//!   locks do not.
//! - **Sticky rendezvous hashing with bounded loads** ([`assign`]): each
//!   bucket stays with its holder while the holder has room, else goes to
//!   a member that asks for it, or to the member whose score for it
//!   ([`owner`]) is highest among those short of a share; moves go towards
//!   the member that ranks a bucket higher wherever they can, so the next
//!   membership change does not bring it back (`simulation`). Every
//!   instance computes the same answer from the same locks and schemas,
//!   with no coordinator.
//! - **Handed over only on request** ([`Moves::plan`]): a holder lets a
//!   bucket go only to a member that asks for it (a want lock), so views
//!   that differ for a while never leave a bucket to nobody.
//! - **Keys of pgfleet's own** ([`Keys`], [`Key`]): every advisory lock is
//!   the two-`int4` form, the first `int4` being `coordination.namespace`:
//!   buckets, then want locks, from 2^30 members, negative fences. Two
//!   fleets on one database with different namespaces never collide, nor
//!   does an application using the one-`bigint` form (a separate key
//!   space in PostgreSQL) or two `int4`s with another first key. An
//!   application taking two-`int4` locks with the same first key would:
//!   pick a namespace it does not use.

/// How many buckets the schemas are spread over, unless configured.
pub const DEFAULT_BUCKETS: u32 = 1024;

/// The most buckets: bucket keys stay below the members' key range.
pub const MAX_BUCKETS: u32 = 1 << 16;

/// An instance, as the others see it: the number its membership lock
/// carries (random at each start, so a restarted instance is a new
/// member). 30 bits, so that it fits its lock key and reads back the
/// same from `pg_locks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(u32);

impl MemberId {
    const BITS: u32 = 30;

    /// The member `raw` names: its low 30 bits.
    pub fn new(raw: u32) -> Self {
        MemberId(raw & ((1 << Self::BITS) - 1))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// FNV-1a, 64 bits: stable by definition, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A 64-bit mix (splitmix64's finaliser): spreads the scores of one
/// bucket over the members evenly, where FNV alone would not.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The bucket of `schema`, of `buckets` (1 to [`MAX_BUCKETS`]).
pub fn bucket_of(schema: &str, buckets: u32) -> u32 {
    let buckets = u64::from(buckets.clamp(1, MAX_BUCKETS));
    u32::try_from(mix(fnv1a(schema.as_bytes())) % buckets).unwrap_or(0)
}

/// Who owns `bucket` among `members`: the highest score, ties (which need
/// equal ids) to the smaller id. None without members.
pub fn owner(bucket: u32, members: &[MemberId]) -> Option<MemberId> {
    members
        .iter()
        .copied()
        .max_by_key(|member| rank(*member, bucket))
}

fn score(member: MemberId, bucket: u32) -> u64 {
    mix((u64::from(member.0) << 32) | u64::from(bucket))
}

/// How `member` ranks for `bucket`, higher first: its score, ties (which
/// need equal ids) to the smaller id.
fn rank(member: MemberId, bucket: u32) -> (u64, std::cmp::Reverse<MemberId>) {
    (score(member, bucket), std::cmp::Reverse(member))
}

/// The buckets `me` owns among `members` (which holds `me`), in order.
pub fn owned(me: MemberId, members: &[MemberId], buckets: u32) -> Vec<u32> {
    (0..buckets.clamp(1, MAX_BUCKETS))
        .filter(|&bucket| owner(bucket, members) == Some(me))
        .collect()
}

/// The advisory lock keys of one fleet (`coordination.namespace`): the
/// first `int4` of each two-key lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    pub namespace: i32,
}

impl Keys {
    /// Second keys below this are buckets; from it up, members.
    const MEMBERS_FROM: i64 = 1 << 30;

    /// `pg_advisory_lock(namespace, key)` for `bucket` (below
    /// [`MAX_BUCKETS`], so never in the members' range).
    pub fn bucket(&self, bucket: u32) -> (i32, i32) {
        (self.namespace, (bucket % MAX_BUCKETS) as i32)
    }

    /// `pg_advisory_lock(namespace, key)` that says its holder wants
    /// `bucket` from the member that holds it (see [`Moves::plan`]): just
    /// above the buckets' range.
    pub fn want(&self, bucket: u32) -> (i32, i32) {
        (self.namespace, (MAX_BUCKETS + bucket % MAX_BUCKETS) as i32)
    }

    /// What a lock's second key is in this namespace.
    pub fn classify(&self, key: i32) -> Key {
        let wide = i64::from(key);
        let buckets = i64::from(MAX_BUCKETS);
        if let Some(member) = self.member_of(key) {
            Key::Member(member)
        } else if (0..buckets).contains(&wide) {
            Key::Bucket(key as u32)
        } else if (buckets..2 * buckets).contains(&wide) {
            Key::Want((wide - buckets) as u32)
        } else {
            Key::Other
        }
    }

    /// `pg_advisory_lock(namespace, key)` that says `member` is alive:
    /// 2^30 plus its 30 bits, a positive `int4`.
    pub fn member(&self, member: MemberId) -> (i32, i32) {
        (
            self.namespace,
            (Self::MEMBERS_FROM + i64::from(member.0)) as i32,
        )
    }

    /// `pg_try_advisory_xact_lock(namespace, key)` that fences `schema`'s
    /// folds: a negative `int4` from the schema's name (31 bits of its
    /// hash), so never a bucket's or a member's key. Two schemas may share
    /// one (one in two billion): they then only never fold at the same
    /// instant.
    pub fn fence(&self, schema: &str) -> (i32, i32) {
        let hash = (mix(fnv1a(schema.as_bytes())) >> 33) as i32;
        (self.namespace, -1 - hash)
    }

    /// The member a lock's second key names, if it is a membership lock.
    pub fn member_of(&self, key: i32) -> Option<MemberId> {
        let key = i64::from(key);
        (key >= Self::MEMBERS_FROM).then(|| MemberId::new((key - Self::MEMBERS_FROM) as u32))
    }
}

/// A lock of the namespace, by its second key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Bucket(u32),
    Want(u32),
    Member(MemberId),
    /// A fence (negative) or anything else.
    Other,
}

/// How far above an even share of the schemas a member's buckets may go
/// (plus the heaviest bucket, so there is always room): 5%.
const SLACK: f64 = 1.05;

/// Who owns each bucket among `members`, given how many schemas each
/// bucket holds (`weights`), who holds each now (`holders`) and who asks
/// for which (`wanted_by`): sticky rendezvous hashing with bounded loads.
///
/// - Each member's schemas are bounded by a cap: an even share plus 5%,
///   plus the heaviest bucket; a floor is an even share less the
///   heaviest bucket.
/// - First, a bucket stays with its holder while the holder is a member
///   under the cap; a holder over it keeps the buckets it ranks highest
///   (by [`owner`]'s score) and sheds those it ranks lowest.
/// - A bucket left (nobody holds it, or its holder sheds it) goes to the
///   highest-ranked member that asks for it with room (it is on its way
///   there: asked for by a member whose view gave it that one), else to
///   the highest-ranked member below an even share, else to the
///   highest-ranked with room. Below an even share, not merely with room:
///   a read between two handovers of one rebalance (one holder has let
///   go, the other not yet) then sends what is shed where the whole
///   rebalance sends it, to the members short of a share, rather than to
///   one that has just given its own away.
/// - Last, a member still below the floor (a newcomer: the others shed
///   only down to the cap) takes buckets from the member holding the most
///   (`raise_the_least`), those it outranks the holder on first.
///
/// So a leave moves only the leaver's buckets, a join moves buckets to
/// the newcomer (and, while an ask from an older view is still out, a
/// bucket being shed may go to its asker instead), and a bucket let go on
/// request goes where it was asked to. A bucket that moves between two
/// members moves, wherever it can, towards the one of the two that ranks
/// it higher, so the next membership change does not bring it back: in a
/// simulation of rolling restarts (`simulation`), 7 runs of 3,000 sent a
/// schema back to where it had been before these three rules, none of
/// 5,000 since. The answer is a fixed point: computed again with its own
/// result as the holders, it is unchanged. Three members on 300 schemas
/// each hold 90 to 110 whatever the ids and the order they came in
/// (hashing alone misses 80 to 120 in a few runs of a hundred). Everyone
/// who reads the same locks and knows the same schemas computes the same
/// answer; views that differ for a while (a rescan not yet run
/// everywhere, a read between a release and a take) are made safe by
/// [`Moves::plan`].
pub fn assign(
    members: &[MemberId],
    weights: &[u32],
    holders: &std::collections::HashMap<u32, MemberId>,
    wanted_by: &std::collections::HashMap<u32, Vec<MemberId>>,
) -> Vec<Option<MemberId>> {
    let mut members = members.to_vec();
    members.sort_unstable();
    members.dedup();
    if members.is_empty() {
        return vec![None; weights.len()];
    }
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    let heaviest = weights.iter().copied().max().map_or(0, u64::from);
    let cap = (total as f64 * SLACK / members.len() as f64).ceil() as u64 + heaviest.max(1);
    let even = total / members.len() as u64;
    let floor = even.saturating_sub(heaviest);
    let index_of = |member: &MemberId| members.binary_search(member).ok();
    let mut load = vec![0u64; members.len()];
    let mut assigned: Vec<Option<MemberId>> = vec![None; weights.len()];
    // A holder over the cap keeps the buckets it ranks highest, and sheds
    // those it ranks lowest: where another member is likelier to outrank
    // it, so that the bucket does not come back (see `raise_the_least`).
    let mut kept: Vec<(std::cmp::Reverse<u64>, u32, usize)> = holders
        .iter()
        .filter(|(bucket, _)| (**bucket as usize) < weights.len())
        .filter_map(|(&bucket, holder)| {
            index_of(holder).map(|index| {
                (
                    std::cmp::Reverse(score(members[index], bucket)),
                    bucket,
                    index,
                )
            })
        })
        .collect();
    kept.sort_unstable();
    for (_, bucket, index) in kept {
        let weight = u64::from(weights[bucket as usize]);
        if load[index] + weight <= cap {
            load[index] += weight;
            assigned[bucket as usize] = Some(members[index]);
        }
    }
    let mut ranked: Vec<usize> = (0..members.len()).collect();
    for (bucket, &weight) in weights.iter().enumerate() {
        if assigned[bucket].is_some() {
            continue;
        }
        let weight = u64::from(weight);
        let wanter = wanted_by.get(&(bucket as u32)).and_then(|who| {
            who.iter()
                .filter_map(index_of)
                .filter(|&i| load[i] + weight <= cap)
                .max_by_key(|&i| rank(members[i], bucket as u32))
        });
        ranked.sort_by_key(|&i| std::cmp::Reverse(rank(members[i], bucket as u32)));
        let chosen = wanter
            .or_else(|| ranked.iter().copied().find(|&i| load[i] < even))
            .or_else(|| ranked.iter().copied().find(|&i| load[i] + weight <= cap))
            .or_else(|| ranked.iter().copied().min_by_key(|&i| load[i]))
            .unwrap_or(0);
        load[chosen] += weight;
        assigned[bucket] = Some(members[chosen]);
    }
    raise_the_least(&members, weights, &mut assigned, &mut load, floor);
    assigned
}

/// The last pass of [`assign`]: while a member holds fewer schemas than an
/// even share less the heaviest bucket (a newcomer, after the others shed
/// only down to the cap), it takes, from the member holding the most, the
/// bucket it ranks highest among those whose move narrows the gap between
/// the two, one it outranks the holder on if there is any: a bucket taken
/// from a member that outranks the taker is the one that member takes
/// back when a later leave makes it the least (a simulated rolling restart
/// found that). Each move lowers the spread, so the pass ends; its result
/// passes unchanged through [`assign`] again (nobody is that far below).
fn raise_the_least(
    members: &[MemberId],
    weights: &[u32],
    assigned: &mut [Option<MemberId>],
    load: &mut [u64],
    floor: u64,
) {
    for _ in 0..weights.len() {
        let Some(least) = (0..members.len()).min_by_key(|&i| (load[i], members[i])) else {
            return;
        };
        let Some(most) =
            (0..members.len()).max_by_key(|&i| (load[i], std::cmp::Reverse(members[i])))
        else {
            return;
        };
        if load[least] >= floor || least == most {
            return;
        }
        let gap = load[most] - load[least];
        let candidate = weights
            .iter()
            .enumerate()
            .filter(|(bucket, weight)| {
                assigned[*bucket] == Some(members[most])
                    && **weight > 0
                    && u64::from(**weight) < gap
            })
            .max_by_key(|(bucket, _)| {
                let bucket = *bucket as u32;
                let (theirs, mine) = (score(members[most], bucket), score(members[least], bucket));
                (mine > theirs, mine, std::cmp::Reverse(bucket))
            })
            .map(|(bucket, weight)| (bucket, u64::from(*weight)));
        let Some((bucket, weight)) = candidate else {
            return;
        };
        assigned[bucket] = Some(members[least]);
        load[most] -= weight;
        load[least] += weight;
    }
}

/// How many schemas of `schemas` fall in each of `buckets`.
pub fn weights<'a>(schemas: impl IntoIterator<Item = &'a str>, buckets: u32) -> Vec<u32> {
    let buckets = buckets.clamp(1, MAX_BUCKETS);
    let mut weights = vec![0u32; buckets as usize];
    for schema in schemas {
        if let Some(weight) = weights.get_mut(bucket_of(schema, buckets) as usize) {
            *weight = weight.saturating_add(1);
        }
    }
    weights
}

/// Which schemas an instance folds, as it tells the others: how many, and
/// a hash of their names that does not depend on their order (a sum of
/// each name's mixed FNV-1a hash), so two instances that know the same
/// schemas say the same, and a swap of one name for another shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaSet {
    pub count: u64,
    pub hash: u64,
}

impl SchemaSet {
    pub fn of<'a>(schemas: impl IntoIterator<Item = &'a str>) -> Self {
        let mut set = SchemaSet { count: 0, hash: 0 };
        for schema in schemas {
            set.count += 1;
            set.hash = set.hash.wrapping_add(mix(fnv1a(schema.as_bytes())));
        }
        set
    }
}

/// The namespace's locks as one read of `pg_locks` found them: the live
/// members, who holds each bucket, and who wants which.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub members: Vec<MemberId>,
    pub holders: std::collections::HashMap<u32, MemberId>,
    pub wanted_by: std::collections::HashMap<u32, Vec<MemberId>>,
}

/// Which buckets an instance holds, as the Supervisor sees it: a schema is
/// its to fold when its bucket is one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    buckets: u32,
    held: Vec<bool>,
}

impl Owned {
    /// None of `buckets`: before joining, or after losing the session.
    pub fn nothing(buckets: u32) -> Self {
        let buckets = buckets.clamp(1, MAX_BUCKETS);
        Owned {
            buckets,
            held: vec![false; buckets as usize],
        }
    }

    /// `held` of `buckets` (others ignored).
    pub fn of(buckets: u32, held: impl IntoIterator<Item = u32>) -> Self {
        let mut owned = Self::nothing(buckets);
        for bucket in held {
            if let Some(slot) = owned.held.get_mut(bucket as usize) {
                *slot = true;
            }
        }
        owned
    }

    pub fn owns(&self, schema: &str) -> bool {
        self.held
            .get(bucket_of(schema, self.buckets) as usize)
            .copied()
            .unwrap_or(false)
    }

    /// How many buckets are held.
    pub fn count(&self) -> usize {
        self.held.iter().filter(|held| **held).count()
    }
}

/// What an instance does to its locks (each list in bucket order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moves {
    /// Held, another's by [`assign`], and wanted by another member: given
    /// up (once their workers have stopped).
    pub release: Vec<u32>,
    /// Free, and this instance's by [`assign`] (or orphaned, see below):
    /// taken if still free.
    pub acquire: Vec<u32>,
    /// This instance's by [`assign`], and held by another: asked for.
    pub want: Vec<u32>,
    /// Asked for, and no longer (taken, or no longer this instance's).
    pub unwant: Vec<u32>,
}

impl Moves {
    /// The moves of `me`, holding `held` and wanting `wanting`, towards
    /// what [`assign`] gives it over `weights`, as `now` shows the locks.
    ///
    /// A bucket is let go only to a member that asks for it (a want
    /// lock), never because this instance's arithmetic says so: two
    /// instances whose views differ (one has rescanned, the other not
    /// yet) may each believe a bucket is the other's, and without the ask
    /// neither would fold it. They keep folding what they hold until the
    /// one it belongs to asks. A bucket nobody holds and nobody asks for
    /// (its holder died while views differ) goes, once it was already
    /// free at the last read (`free_before`), to its plain rendezvous
    /// owner ([`owner`]), on which every member agrees.
    pub fn plan(
        me: MemberId,
        now: &Snapshot,
        weights: &[u32],
        held: &[u32],
        wanting: &[u32],
        free_before: &std::collections::BTreeSet<u32>,
    ) -> Self {
        let assigned = assign(&now.members, weights, &now.holders, &now.wanted_by);
        let mine = |bucket: u32| assigned.get(bucket as usize).copied().flatten() == Some(me);
        let asked_by_another = |bucket: u32| {
            now.wanted_by
                .get(&bucket)
                .is_some_and(|who| who.iter().any(|m| *m != me))
        };
        let mut moves = Moves::default();
        for &bucket in held {
            if !mine(bucket) && asked_by_another(bucket) {
                moves.release.push(bucket);
            }
        }
        for bucket in 0..weights.len() as u32 {
            match now.holders.get(&bucket) {
                Some(holder) if *holder == me => {}
                Some(_) if mine(bucket) => moves.want.push(bucket),
                Some(_) => {}
                None if mine(bucket) => moves.acquire.push(bucket),
                None => {
                    let orphan = !now.wanted_by.contains_key(&bucket)
                        && free_before.contains(&bucket)
                        && owner(bucket, &now.members) == Some(me);
                    if orphan {
                        moves.acquire.push(bucket);
                    }
                }
            }
        }
        let wanted: std::collections::BTreeSet<u32> = moves.want.iter().copied().collect();
        moves
            .want
            .retain(|bucket| wanting.binary_search(bucket).is_err());
        moves.unwant = wanting
            .iter()
            .copied()
            .filter(|bucket| !wanted.contains(bucket))
            .collect();
        moves
    }

    pub fn is_empty(&self) -> bool {
        self.release.is_empty()
            && self.acquire.is_empty()
            && self.want.is_empty()
            && self.unwant.is_empty()
    }
}

#[cfg(test)]
mod simulation;

#[cfg(test)]
mod tests {
    use super::*;

    /// How many schemas `member` holds in `assigned`.
    fn schemas_of(weights: &[u32], assigned: &[Option<MemberId>], member: MemberId) -> i64 {
        weights
            .iter()
            .zip(assigned)
            .filter(|(_, owner)| **owner == Some(member))
            .map(|(w, _)| i64::from(*w))
            .sum()
    }

    fn no_wants() -> std::collections::HashMap<u32, Vec<MemberId>> {
        std::collections::HashMap::new()
    }

    fn members(ids: &[u32]) -> Vec<MemberId> {
        ids.iter().map(|&id| MemberId::new(id)).collect()
    }

    #[test]
    fn a_schema_always_lands_in_the_same_bucket() {
        // Fixed forever: a change would move every schema at an upgrade.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let first = bucket_of("tenant_1", DEFAULT_BUCKETS);
        assert_eq!(bucket_of("tenant_1", DEFAULT_BUCKETS), first);
        assert!(first < DEFAULT_BUCKETS);
        assert_eq!(bucket_of("anything", 1), 0);
        assert_eq!(bucket_of("anything", 0), 0, "no buckets is one");
    }

    /// The target: 300 schemas, 3 instances, each within 20% of 100.
    #[test]
    fn three_instances_share_three_hundred_schemas_evenly() {
        let fleet = members(&[0x1234_5678, 0x9abc_def0, 0x0fed_cba9]);
        let mut counts = [0usize; 3];
        for n in 1..=300 {
            let bucket = bucket_of(&format!("tenant_{n}"), DEFAULT_BUCKETS);
            let owner = owner(bucket, &fleet).expect("an owner");
            let index = fleet.iter().position(|m| *m == owner).expect("a member");
            counts[index] += 1;
        }
        assert!(
            counts.iter().all(|&n| (80..=120).contains(&n)),
            "{counts:?}"
        );
        assert_eq!(counts.iter().sum::<usize>(), 300);
    }

    #[test]
    fn buckets_spread_over_the_members_and_each_has_one_owner() {
        let fleet = members(&[7, 8, 9]);
        let shares: Vec<Vec<u32>> = fleet
            .iter()
            .map(|&me| owned(me, &fleet, DEFAULT_BUCKETS))
            .collect();
        let total: usize = shares.iter().map(Vec::len).sum();
        assert_eq!(total, DEFAULT_BUCKETS as usize, "every bucket exactly once");
        for share in &shares {
            let expected = DEFAULT_BUCKETS as f64 / 3.0;
            assert!(
                (share.len() as f64 - expected).abs() < expected * 0.1,
                "{} of {}",
                share.len(),
                DEFAULT_BUCKETS
            );
        }
    }

    #[test]
    fn a_join_or_a_leave_moves_about_one_kth() {
        let three = members(&[11, 22, 33]);
        let four = members(&[11, 22, 33, 44]);
        let moved = (0..DEFAULT_BUCKETS)
            .filter(|&b| owner(b, &three) != owner(b, &four))
            .count();
        // The newcomer takes about a quarter, and only it gains.
        assert!((200..=320).contains(&moved), "{moved} moved");
        for bucket in 0..DEFAULT_BUCKETS {
            let (before, after) = (owner(bucket, &three), owner(bucket, &four));
            assert!(before == after || after == Some(MemberId::new(44)));
        }
        // A leave moves only the leaver's buckets.
        let two = members(&[11, 33]);
        for bucket in 0..DEFAULT_BUCKETS {
            let before = owner(bucket, &three);
            if before != Some(MemberId::new(22)) {
                assert_eq!(owner(bucket, &two), before);
            }
        }
    }

    #[test]
    fn no_members_no_owner() {
        assert_eq!(owner(3, &[]), None);
        assert!(owned(MemberId::new(1), &[], 8).is_empty());
    }

    #[test]
    fn keys_keep_buckets_and_members_apart_in_the_namespace() {
        let keys = Keys { namespace: 4242 };
        assert_eq!(keys.bucket(17), (4242, 17));
        let (namespace, key) = keys.member(MemberId::new(99));
        assert_eq!(namespace, 4242);
        assert_eq!(keys.member_of(key), Some(MemberId::new(99)));
        assert_eq!(keys.member_of(17), None, "a bucket is no member");
        // Any random id: what pg_locks shows is the member itself.
        for raw in [0, 1 << 30, u32::MAX, 0xdead_beef] {
            let member = MemberId::new(raw);
            let (_, key) = keys.member(member);
            assert!(key > 0);
            assert_eq!(keys.member_of(key), Some(member), "{raw:#x}");
        }
        // The largest bucket stays out of the members' range.
        let (_, key) = keys.bucket(u32::MAX);
        assert_eq!(keys.member_of(key), None);
    }

    #[test]
    fn fence_keys_are_negative_stable_and_spread() {
        let keys = Keys { namespace: 7 };
        let (namespace, key) = keys.fence("tenant_1");
        assert_eq!(namespace, 7);
        assert!(key < 0);
        assert_eq!(keys.fence("tenant_1"), (7, key));
        let distinct: std::collections::HashSet<i32> = (0..10_000)
            .map(|n| keys.fence(&format!("tenant_{n}")).1)
            .collect();
        // 31 bits: the birthday bound expects 0.02 shared keys here; one
        // is harmless (those two schemas never fold at the same instant).
        assert!(distinct.len() >= 9_998, "{} distinct", distinct.len());
        assert!(distinct
            .iter()
            .all(|key| *key < 0 && keys.member_of(*key).is_none()));
    }

    #[test]
    fn owned_says_which_schemas_are_mine() {
        let fleet = members(&[1, 2]);
        let mine = owned(MemberId::new(1), &fleet, 64);
        let owned_set = Owned::of(64, mine.iter().copied());
        assert_eq!(owned_set.count(), mine.len());
        for n in 0..200 {
            let schema = format!("s{n}");
            let bucket = bucket_of(&schema, 64);
            assert_eq!(owned_set.owns(&schema), mine.contains(&bucket));
        }
        assert!(!Owned::nothing(64).owns("s1"));
        assert_eq!(Owned::of(4, [9]).count(), 0, "out of range ignored");
    }

    fn snapshot(
        members: &[MemberId],
        holders: &[(u32, MemberId)],
        wants: &[(u32, MemberId)],
    ) -> Snapshot {
        let mut now = Snapshot {
            members: members.to_vec(),
            holders: holders.iter().copied().collect(),
            ..Snapshot::default()
        };
        for (bucket, member) in wants {
            now.wanted_by.entry(*bucket).or_default().push(*member);
        }
        now
    }

    /// 300 schemas over 3 members: within 20% of 100 whatever the ids,
    /// which hashing alone misses in a few runs of a hundred.
    #[test]
    fn assign_keeps_every_member_within_a_fifth_of_an_even_share() {
        let schemas: Vec<String> = (1..=300).map(|n| format!("schema{n}")).collect();
        let weights = weights(schemas.iter().map(String::as_str), DEFAULT_BUCKETS);
        assert_eq!(weights.iter().sum::<u32>(), 300);
        let mut worst = 0i64;
        let nobody = std::collections::HashMap::new();
        for seed in 0..200u32 {
            let fleet = members(&[
                seed.wrapping_mul(0x9e37_79b9),
                seed ^ 0x5555_5555,
                seed.wrapping_add(77) << 7,
            ]);
            let assigned = assign(&fleet, &weights, &nobody, &no_wants());
            for member in &fleet {
                let count = schemas_of(&weights, &assigned, *member);
                worst = worst.max((count - 100).abs());
            }
        }
        assert!(worst <= 20, "a member {worst} schemas from 100");
    }

    #[test]
    fn assign_is_rendezvous_where_the_bound_does_not_bind() {
        let fleet = members(&[11, 22, 33]);
        let even = vec![100u32; 64];
        let assigned = assign(
            &fleet,
            &even,
            &std::collections::HashMap::new(),
            &no_wants(),
        );
        let plain = (0..64)
            .filter(|b| assigned[*b as usize] == owner(*b, &fleet))
            .count();
        assert!(plain >= 50, "{plain} of 64 by plain rendezvous");
        assert_eq!(
            assign(&[], &even, &std::collections::HashMap::new(), &no_wants()),
            vec![None; 64]
        );
    }

    #[test]
    fn a_bucket_goes_only_to_a_member_that_asks_for_it() {
        let (a, b) = (MemberId::new(10), MemberId::new(20));
        let weights = vec![1u32; 16];
        let none = std::collections::BTreeSet::new();
        // Alone, a takes everything free.
        let alone = Moves::plan(a, &snapshot(&[a], &[], &[]), &weights, &[], &[], &none);
        assert_eq!(alone.acquire, (0..16).collect::<Vec<_>>());
        let all: Vec<(u32, MemberId)> = (0..16).map(|bucket| (bucket, a)).collect();
        // b joins: b asks for its share, a does not let go before it asks.
        let holders: std::collections::HashMap<u32, MemberId> =
            (0..16).map(|bucket| (bucket, a)).collect();
        let b_share: Vec<u32> = assign(&[a, b], &weights, &holders, &no_wants())
            .iter()
            .enumerate()
            .filter(|(_, owner)| **owner == Some(b))
            .map(|(bucket, _)| bucket as u32)
            .collect();
        let joined = snapshot(&[a, b], &all, &[]);
        let held: Vec<u32> = (0..16).collect();
        assert!(Moves::plan(a, &joined, &weights, &held, &[], &none).is_empty());
        let asks = Moves::plan(b, &joined, &weights, &[], &[], &none);
        assert_eq!(asks.want, b_share);
        assert!(asks.acquire.is_empty());
        // Asked: a lets go of exactly those.
        let wants: Vec<(u32, MemberId)> = b_share.iter().map(|bucket| (*bucket, b)).collect();
        let asked = snapshot(&[a, b], &all, &wants);
        assert_eq!(
            Moves::plan(a, &asked, &weights, &held, &[], &none).release,
            b_share
        );
        // Released: b takes them and stops asking.
        let a_keeps: Vec<(u32, MemberId)> = all
            .iter()
            .copied()
            .filter(|(bucket, _)| !b_share.contains(bucket))
            .collect();
        let released = snapshot(&[a, b], &a_keeps, &wants);
        let takes = Moves::plan(b, &released, &weights, &[], &b_share, &none);
        assert_eq!(takes.acquire, b_share);
        assert_eq!(takes.unwant, b_share);
    }

    #[test]
    fn views_that_differ_never_leave_a_bucket_unfolded() {
        let (a, b) = (MemberId::new(10), MemberId::new(20));
        let none = std::collections::BTreeSet::new();
        // a has found a schema b has not: their arithmetic differs, and a
        // keeps what it holds until b asks for it.
        let mut a_view = vec![1u32; 16];
        a_view[3] = 5;
        let b_view = vec![1u32; 16];
        let all: Vec<(u32, MemberId)> = (0..16).map(|bucket| (bucket, a)).collect();
        let now = snapshot(&[a, b], &all, &[]);
        let held: Vec<u32> = (0..16).collect();
        assert!(Moves::plan(a, &now, &a_view, &held, &[], &none)
            .release
            .is_empty());
        let _ = Moves::plan(b, &now, &b_view, &[], &[], &none);
        // A bucket nobody holds or asks for, free at two reads in a row,
        // goes to its rendezvous owner.
        let free = 7u32;
        let rest: Vec<(u32, MemberId)> = all
            .iter()
            .copied()
            .filter(|(bucket, _)| *bucket != free)
            .collect();
        let orphaned = snapshot(&[a, b], &rest, &[]);
        let heir = owner(free, &[a, b]).expect("an owner");
        let weights_nobody: Vec<u32> = b_view.clone();
        let before: std::collections::BTreeSet<u32> = [free].into_iter().collect();
        for me in [a, b] {
            let moves = Moves::plan(me, &orphaned, &weights_nobody, &[], &[], &before);
            let by_assign = assign(&[a, b], &weights_nobody, &orphaned.holders, &no_wants())
                [free as usize]
                == Some(me);
            assert_eq!(
                moves.acquire.contains(&free),
                by_assign || me == heir,
                "{me:?}"
            );
        }
    }

    fn holders_of(assigned: &[Option<MemberId>]) -> std::collections::HashMap<u32, MemberId> {
        assigned
            .iter()
            .enumerate()
            .filter_map(|(bucket, owner)| owner.map(|owner| (bucket as u32, owner)))
            .collect()
    }

    /// What the members hold stays theirs: computed again from its own
    /// result, the assignment does not change; a leave moves only the
    /// leaver's buckets, a join moves buckets only to the newcomer.
    #[test]
    fn assign_is_sticky_so_nothing_goes_back_and_forth() {
        let schemas: Vec<String> = (1..=300).map(|n| format!("schema{n}")).collect();
        let weights = weights(schemas.iter().map(String::as_str), DEFAULT_BUCKETS);
        let (a, b, c) = (MemberId::new(5), MemberId::new(6), MemberId::new(7));
        let start = assign(
            &[a, b, c],
            &weights,
            &std::collections::HashMap::new(),
            &no_wants(),
        );
        let again = assign(&[a, b, c], &weights, &holders_of(&start), &no_wants());
        assert_eq!(again, start, "a fixed point");
        // c leaves: only c's buckets move.
        let held: std::collections::HashMap<u32, MemberId> = holders_of(&start)
            .into_iter()
            .filter(|(_, owner)| *owner != c)
            .collect();
        let two = assign(&[a, b], &weights, &held, &no_wants());
        for (bucket, owner) in start.iter().enumerate() {
            if *owner != Some(c) {
                assert_eq!(two[bucket], *owner, "bucket {bucket} moved between a and b");
            }
        }
        // d joins: buckets move only to d; everyone within 20% of 100.
        let d = MemberId::new(8);
        let three = assign(&[a, b, d], &weights, &holders_of(&two), &no_wants());
        for (bucket, owner) in three.iter().enumerate() {
            assert!(
                *owner == two[bucket] || *owner == Some(d),
                "bucket {bucket}"
            );
        }
        for member in [a, b, d] {
            let count = schemas_of(&weights, &three, member);
            assert!((90..=110).contains(&count), "{member:?}: {count}");
        }
        assert_eq!(
            assign(&[a, b, d], &weights, &holders_of(&three), &no_wants()),
            three
        );
    }

    /// The newcomer's finding: 30 schemas, three instances joining one
    /// after the other, then a fourth: nobody far below an even share.
    #[test]
    fn a_late_joiner_is_not_left_with_the_leftovers() {
        let schemas: Vec<String> = (1..=30).map(|n| format!("schema{n}")).collect();
        let weights = weights(schemas.iter().map(String::as_str), DEFAULT_BUCKETS);
        let heaviest = i64::from(weights.iter().copied().max().unwrap_or(0));
        let mut fleet: Vec<MemberId> = Vec::new();
        let mut holders = std::collections::HashMap::new();
        for id in [101, 202, 303, 404] {
            fleet.push(MemberId::new(id));
            let assigned = assign(&fleet, &weights, &holders, &no_wants());
            holders = holders_of(&assigned);
            let even = 30 / fleet.len() as i64;
            for member in &fleet {
                let count = schemas_of(&weights, &assigned, *member);
                assert!(
                    count >= even - heaviest,
                    "{} members: {member:?} holds {count}",
                    fleet.len()
                );
            }
            assert_eq!(
                assign(&fleet, &weights, &holders, &no_wants()),
                assigned,
                "a fixed point"
            );
        }
    }

    #[test]
    fn a_schema_set_is_the_names_whatever_their_order() {
        let a = SchemaSet::of(["s1", "s2", "s3"]);
        assert_eq!(a, SchemaSet::of(["s3", "s1", "s2"]));
        assert_eq!(a.count, 3);
        assert_ne!(a, SchemaSet::of(["s1", "s2", "s4"]), "a swap shows");
        assert_ne!(a, SchemaSet::of(["s1", "s2"]));
    }
}

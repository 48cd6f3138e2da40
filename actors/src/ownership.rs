//! Which instance folds which schema when several share a fleet (issue
//! 19), decided as plain data: the coordination actor that will read the
//! members from `pg_locks` and hold the bucket locks only carries this
//! out. Not wired into the service yet: nothing calls it but its tests.
//!
//! - **Buckets, not schemas**: a schema belongs to one of `buckets` by a
//!   hash of its name that never changes between versions, builds or
//!   hosts ([`bucket_of`], FNV-1a): thousands of per-schema session locks
//!   would fill the server's shared lock table, a few hundred bucket
//!   locks do not.
//! - **Rendezvous hashing** ([`owner`]): each bucket goes to the member
//!   whose score for it is highest. Every instance computes the same
//!   answer from the same member list, with no coordinator; K members
//!   each get about B/K buckets, and a member joining or leaving moves
//!   only the buckets it takes or held (about 1/K of them).
//! - **Keys of pgfleet's own**: every advisory lock is the two-`int4` form,
//!   the first `int4` being `coordination.namespace` ([`Keys`]), so two
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
        .max_by_key(|member| (score(*member, bucket), std::cmp::Reverse(*member)))
}

fn score(member: MemberId, bucket: u32) -> u64 {
    mix((u64::from(member.0) << 32) | u64::from(bucket))
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

    /// `pg_advisory_lock(namespace, key)` that says `member` is alive:
    /// 2^30 plus its 30 bits, a positive `int4`.
    pub fn member(&self, member: MemberId) -> (i32, i32) {
        (
            self.namespace,
            (Self::MEMBERS_FROM + i64::from(member.0)) as i32,
        )
    }

    /// The member a lock's second key names, if it is a membership lock.
    pub fn member_of(&self, key: i32) -> Option<MemberId> {
        let key = i64::from(key);
        (key >= Self::MEMBERS_FROM).then(|| MemberId::new((key - Self::MEMBERS_FROM) as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

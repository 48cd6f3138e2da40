//! What the coordination session says to PostgreSQL: one function per
//! statement, each one round trip, as the unnamed statement (safe through
//! a session-mode pooler, and never left behind).

use std::time::Duration;

use crate::lease::Stamp;

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::ownership::{Key, Keys, MemberId, Snapshot};
use crate::sql::quote_ident;

/// The channel the instances of one namespace tell each other on (a join,
/// buckets released, a leave), so nobody waits for the next ping.
pub fn channel(keys: Keys) -> String {
    format!("pgfleet.coordination.{}", keys.namespace)
}

/// Why a new coordination session may come with advisory locks held
/// (see [`release_handed_down`]), said.
pub const HANDED_DOWN: &str = "a pooler that does not reset server connections between clients \
     (PgBouncer in session mode: keep server_reset_query = DISCARD ALL) hands a killed instance's \
     connection, its locks still held, to whoever connects next";

/// How many session advisory locks this session holds: none in a new
/// server session, unless a pooler handed one on ([`HANDED_DOWN`]).
const HELD: &str = "SELECT count(*) AS held FROM pg_catalog.pg_locks \
     WHERE locktype = 'advisory' AND granted AND pid = pg_catalog.pg_backend_pid()";

/// Lets go of every session advisory lock this session holds before it
/// has taken one, and says how many there were. A new server session
/// holds none; but a pooler that hands a server connection to the next
/// client without resetting it hands on the locks of the client before
/// it: a killed instance's membership and buckets, which would then live
/// as long as this session (it never idles, so the server never ends
/// it), and that instance's schemas would be folded by nobody.
///
/// Only once [`shares_backends`] has found no transaction-mode pooler:
/// on a session of its own (direct, or a session-mode pooler's), what is
/// held at the start belongs to a client that has gone. One statement,
/// so the count and the release reach the same backend whatever is in
/// between.
pub async fn release_handed_down(client: &Client) -> Result<u64, String> {
    let held: i64 = client
        .query_typed_one(
            &format!(
                "SELECT held, CASE WHEN held > 0 THEN pg_catalog.pg_advisory_unlock_all() END \
                 FROM ({HELD}) AS before"
            ),
            &[],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| crate::db::describe(&e))?;
    Ok(u64::try_from(held).unwrap_or(0))
}

/// How many advisory locks this session came with, left held (for
/// `pgfleet --check`, which changes nothing).
pub async fn handed_down(client: &Client) -> Result<u64, String> {
    let held: i64 = client
        .query_typed_one(HELD, &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| crate::db::describe(&e))?;
    Ok(u64::try_from(held).unwrap_or(0))
}

/// Makes the session a lease the server enforces: an instance that goes
/// quiet (frozen, cut off) is ended after `lease`, and its locks with it;
/// keepalives find a dead peer of a busy session too. Then LISTENs.
pub async fn set_up(client: &Client, keys: Keys, lease: Duration) -> Result<(), String> {
    let lease_ms = lease.as_millis();
    let keepalive_s = lease.as_secs().clamp(1, 60);
    client
        .batch_execute(&format!(
            "SET idle_session_timeout = {lease_ms}; \
             SET tcp_keepalives_idle = {keepalive_s}; SET tcp_keepalives_interval = 1; \
             SET tcp_keepalives_count = 3; SET tcp_user_timeout = {lease_ms}; \
             LISTEN {}",
            quote_ident(&channel(keys))
        ))
        .await
        .map_err(|e| {
            let text = crate::db::describe(&e);
            if text.contains("idle_session_timeout") {
                format!(
                    "{text}: coordination needs PostgreSQL 14 or later, whose idle_session_timeout lets the \
                     server release a frozen instance's locks"
                )
            } else {
                text
            }
        })
}

/// Takes `member`'s membership lock: false when another session holds it
/// (the same random id drawn twice).
pub async fn join(client: &Client, keys: Keys, member: MemberId) -> Result<bool, String> {
    let (namespace, key) = keys.member(member);
    let row = client
        .query_typed_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[(&namespace, Type::INT4), (&key, Type::INT4)],
        )
        .await
        .map_err(|e| crate::db::describe(&e))?;
    row.try_get(0).map_err(|e| e.to_string())
}

/// The namespace's locks, from one read of `pg_locks`, and when the
/// question was sent; an error when `me`'s membership lock is not this
/// session's (a pooler moved it, or the server ended the session and
/// another one answers).
pub struct Seen {
    pub sent: Stamp,
    pub now: Snapshot,
}

const LOCKS: &str = "SELECT objid::int8, pid, pid = pg_catalog.pg_backend_pid() \
       FROM pg_catalog.pg_locks \
      WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = $1 \
        AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())";

pub async fn snapshot(client: &Client, keys: Keys, me: MemberId) -> Result<Seen, String> {
    let sent = Stamp::now();
    // pg_locks shows each int4 key as an oid: the same 32 bits, unsigned.
    let namespace = keys.namespace as u32;
    let rows = client
        .query_typed(LOCKS, &[(&namespace, Type::OID)])
        .await
        .map_err(|e| crate::db::describe(&e))?;
    let mut locks = Vec::with_capacity(rows.len());
    for row in rows {
        let key: i64 = row.try_get(0).map_err(|e| e.to_string())?;
        let pid: i32 = row.try_get(1).map_err(|e| e.to_string())?;
        let ours: bool = row.try_get(2).map_err(|e| e.to_string())?;
        // An oid above i32::MAX is a negative int4 key: a fence.
        locks.push((keys.classify(key as u32 as i32), pid, ours));
    }
    let mut by_pid = std::collections::HashMap::new();
    let mut now = Snapshot::default();
    let mut mine = false;
    for (key, pid, ours) in &locks {
        if let Key::Member(member) = key {
            mine |= *member == me && *ours;
            by_pid.insert(*pid, *member);
            now.members.push(*member);
        }
    }
    if !mine {
        return Err(NOT_OURS.to_owned());
    }
    for (key, pid, _) in locks {
        let Some(member) = by_pid.get(&pid).copied() else {
            continue;
        };
        match key {
            Key::Bucket(bucket) => {
                now.holders.insert(bucket, member);
            }
            Key::Want(bucket) => now.wanted_by.entry(bucket).or_default().push(member),
            Key::Member(_) | Key::Other => {}
        }
    }
    now.members.sort_unstable();
    now.members.dedup();
    Ok(Seen { sent, now })
}

/// What [`snapshot`] says when this session does not hold its membership.
pub const NOT_OURS: &str =
    "this instance's membership lock is not held by the session it talks to \
     (the server ended the session, or a transaction-mode pooler hands server connections round)";

/// Takes what it can of `buckets`: those another instance still holds are
/// left for a later try.
pub async fn acquire(client: &Client, keys: Keys, buckets: &[u32]) -> Result<Vec<u32>, String> {
    let keys_of: Vec<i32> = buckets.iter().map(|b| keys.bucket(*b).1).collect();
    let rows = client
        .query_typed(
            "SELECT b FROM pg_catalog.unnest($2::int4[]) AS b WHERE pg_catalog.pg_try_advisory_lock($1, b)",
            &[(&keys.namespace, Type::INT4), (&keys_of, Type::INT4_ARRAY)],
        )
        .await
        .map_err(|e| crate::db::describe(&e))?;
    rows.iter()
        .map(|row| {
            row.try_get::<_, i32>(0)
                .map(|b| b as u32)
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Lets `buckets` go, and tells the others so they take them at once.
pub async fn release(client: &Client, keys: Keys, buckets: &[u32]) -> Result<(), String> {
    let keys_of: Vec<i32> = buckets.iter().map(|b| keys.bucket(*b).1).collect();
    client
        .query_typed(
            "SELECT pg_catalog.pg_advisory_unlock($1, b) FROM pg_catalog.unnest($2::int4[]) AS b",
            &[(&keys.namespace, Type::INT4), (&keys_of, Type::INT4_ARRAY)],
        )
        .await
        .map_err(|e| crate::db::describe(&e))?;
    tell(client, keys, "released").await
}

/// Asks for `buckets` (shared locks: several members may ask for one),
/// and tells their holders so they let go at once.
pub async fn want(client: &Client, keys: Keys, buckets: &[u32]) -> Result<(), String> {
    let keys_of: Vec<i32> = buckets.iter().map(|b| keys.want(*b).1).collect();
    client
        .query_typed(
            "SELECT pg_catalog.pg_advisory_lock_shared($1, b) FROM pg_catalog.unnest($2::int4[]) AS b",
            &[(&keys.namespace, Type::INT4), (&keys_of, Type::INT4_ARRAY)],
        )
        .await
        .map_err(|e| crate::db::describe(&e))?;
    tell(client, keys, "wanted").await
}

/// No longer asks for `buckets`.
pub async fn unwant(client: &Client, keys: Keys, buckets: &[u32]) -> Result<(), String> {
    let keys_of: Vec<i32> = buckets.iter().map(|b| keys.want(*b).1).collect();
    client
        .query_typed(
            "SELECT pg_catalog.pg_advisory_unlock_shared($1, b) FROM pg_catalog.unnest($2::int4[]) AS b",
            &[(&keys.namespace, Type::INT4), (&keys_of, Type::INT4_ARRAY)],
        )
        .await
        .map(|_| ())
        .map_err(|e| crate::db::describe(&e))
}

/// NOTIFY the namespace's channel.
pub async fn tell(client: &Client, keys: Keys, what: &str) -> Result<(), String> {
    client
        .query_typed(
            "SELECT pg_catalog.pg_notify($1, $2)",
            &[(&channel(keys), Type::TEXT), (&what, Type::TEXT)],
        )
        .await
        .map(|_| ())
        .map_err(|e| crate::db::describe(&e))
}

/// A graceful stop: every lock of the session goes at once, and the
/// others hear of it.
pub async fn leave(client: &Client, keys: Keys, me: MemberId) -> Result<(), String> {
    client
        .batch_execute("SELECT pg_catalog.pg_advisory_unlock_all()")
        .await
        .map_err(|e| crate::db::describe(&e))?;
    tell(client, keys, &format!("left {}", me.get())).await
}

/// Whether `first` and `second`, two client connections, reach the same
/// server backend: a transaction-mode pooler hands a server connection to
/// whichever client comes next (PgBouncer reuses the one last released),
/// where a direct connection or a session-mode pooler gives each client a
/// backend of its own. Asked three times, alternating.
pub async fn shares_backends(first: &Client, second: &Client) -> Result<bool, String> {
    for _ in 0..3 {
        if backend_pid(first).await? == backend_pid(second).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn backend_pid(client: &Client) -> Result<i32, String> {
    client
        .query_typed_one("SELECT pg_catalog.pg_backend_pid()", &[])
        .await
        .map_err(|e| crate::db::describe(&e))?
        .try_get::<_, i32>(0)
        .map_err(|e| e.to_string())
}

/// What [`shares_backends`] means, said.
pub const SHARED_BACKENDS: &str = "two connections reached the same server backend: a transaction-mode pooler, \
     where session advisory locks stay with whichever client the pooler hands the server connection to; \
     coordination needs a session of its own (set control.url to a direct or session-mode URL)";

/// What `pgfleet --check` found of the coordination on a connection.
pub struct Probe {
    /// Instances of the namespace live now.
    pub members: usize,
    /// Advisory locks the session came with, left held ([`HANDED_DOWN`]).
    pub handed_down: u64,
}

/// `pgfleet --check`: whether coordination can work where `client` is
/// connected: the lease settings are accepted and stay on the session,
/// and a session advisory lock taken by one statement is seen by the next
/// as this session's (through a transaction-mode pooler it is not, or not
/// reliably). Takes no membership, so a running fleet does not count it.
pub async fn probe(client: &Client, keys: Keys, lease: Duration) -> Result<Probe, String> {
    let handed_down = handed_down(client).await?;
    set_up(client, keys, lease).await?;
    let row = client
        .query_typed_one("SELECT current_setting('idle_session_timeout')", &[])
        .await
        .map_err(|e| crate::db::describe(&e))?;
    let timeout: String = row.try_get(0).map_err(|e| e.to_string())?;
    if timeout == "0" {
        return Err(format!(
            "idle_session_timeout did not stay on the session (it reads {timeout:?}): a pooler hands \
             server connections round"
        ));
    }
    // A key in the namespace that is neither a bucket, a want nor a member.
    let probe_key: i32 = 1 << 29;
    let taken: bool = client
        .query_typed_one(
            "SELECT pg_catalog.pg_try_advisory_lock($1, $2)",
            &[(&keys.namespace, Type::INT4), (&probe_key, Type::INT4)],
        )
        .await
        .map_err(|e| crate::db::describe(&e))?
        .get(0);
    let ours: bool = client
        .query_typed_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted \
               AND objsubid = 2 AND classid = $1 AND objid = $2 AND pid = pg_catalog.pg_backend_pid())",
            &[
                (&(keys.namespace as u32), Type::OID),
                (&(probe_key as u32), Type::OID),
            ],
        )
        .await
        .map_err(|e| crate::db::describe(&e))?
        .get(0);
    let _ = client
        .query_typed(
            "SELECT pg_catalog.pg_advisory_unlock($1, $2)",
            &[(&keys.namespace, Type::INT4), (&probe_key, Type::INT4)],
        )
        .await;
    if !(taken && ours) {
        return Err(
            "a session advisory lock taken by one statement is not held by the session the next one reaches: \
             a transaction-mode pooler; coordination needs a session of its own (set control.url to a direct \
             or session-mode URL)"
                .to_owned(),
        );
    }
    let namespace = keys.namespace as u32;
    let members = client
        .query_typed(LOCKS, &[(&namespace, Type::OID)])
        .await
        .map_err(|e| crate::db::describe(&e))?
        .iter()
        .filter(|row| {
            row.try_get::<_, i64>(0)
                .is_ok_and(|key| matches!(keys.classify(key as u32 as i32), Key::Member(_)))
        })
        .count();
    Ok(Probe {
        members,
        handed_down,
    })
}

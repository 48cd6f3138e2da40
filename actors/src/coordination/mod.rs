//! Several instances sharing one fleet (`coordination.enabled`), with
//! PostgreSQL as the only coordinator: no consensus, no heartbeat rows, no
//! clocks compared across hosts.
//!
//! Each instance holds a session of its own (`control.url`, else
//! `database.url`), on which it takes a membership lock and one session
//! advisory lock per bucket it owns (see `ownership`). Every
//! [`ping_every`](crate::settings::CoordinationSettings::ping_every) it
//! reads the live members from `pg_locks` (the read is the ping), works
//! out with rendezvous hashing which buckets are its own, lets go of those
//! that are not (after the Supervisor has stopped their workers) and takes
//! those that are and are free. A join, a release and a graceful leave are
//! also NOTIFYed on the namespace's channel, so the others move at once
//! rather than at their next ping.
//!
//! The lease: the session's `idle_session_timeout` is `coordination.lease`,
//! so the server ends the session of an instance that went quiet, and its
//! locks with it. The instance stops starting folds before that can
//! happen (see `lease`), and on any error of the session it owns nothing
//! (its workers are stopped, `worker_stopped reason=coordination_lost`)
//! until it has rejoined with a new session and a new member id.
//!
//! This actor decides nothing itself: which buckets are whose is
//! `ownership`'s, what to do with the schemas is the Supervisor's
//! (told through [`Ownership`]).

pub mod session;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use slog::{debug, info, warn, Logger};
use tokio::sync::oneshot;

use crate::db::Connector;
use crate::lease::Lease;
use crate::ownership::{Keys, MemberId, Moves, Owned, SchemaSet};
use crate::settings::CoordinationSettings;
use crate::status::Status;
use std::collections::BTreeSet;

/// Pauses between attempts to join again: from the first to the last,
/// doubling.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_LAST: Duration = Duration::from_secs(5);
/// A failure to join said at warn at most this often (the same one again
/// sooner at debug): retries every few seconds must not flood the log.
const LOST_WARN_EVERY: Duration = Duration::from_secs(60);
/// The longest a release waits for the Supervisor to stop the workers of
/// the buckets it gives up: a fold in flight ends within this, and one
/// that does not is fenced anyway.
const HANDOVER_WAIT: Duration = Duration::from_secs(1);

/// Why the Supervisor's share changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Buckets taken or given up as members came and went.
    Rebalanced,
    /// The coordination session failed: nothing is this instance's until
    /// it has rejoined.
    Lost(String),
}

/// The schemas this instance may fold: those of `owned` buckets. With
/// `stopped`, the Supervisor answers once the workers of the schemas no
/// longer owned have stopped (their buckets are then released).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ownership {
    pub owned: Arc<Owned>,
    pub change: Change,
    pub stopped: Option<oneshot::Sender<()>>,
    /// This instance is a member (for systemd's READY).
    pub joined: bool,
}

pub use crate::status::CoordinationView as View;

/// A graceful stop: let every lock go and tell the others. Answered when
/// done (or failed: the session ends with the process anyway).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave;

/// How many schemas fall in each bucket, as the Supervisor knows them (the
/// listed and the discovered): what the shares are balanced by (see
/// `ownership::assign`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Weights {
    pub weights: Arc<Vec<u32>>,
    /// What this instance tells the others it folds.
    pub set: SchemaSet,
}

/// A reload built a new connector for the coordination session; `moved`
/// when it connects elsewhere (`control.url`, or `database.url` without
/// it): the session is then opened again there at once (the instance
/// folds nothing meanwhile); else (TLS, password, timeouts) the new one is
/// used from the next join on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UseConnector {
    pub connector: Arc<Connector>,
    pub moved: bool,
}

#[derive(Clone, Default)]
pub struct CoordinationMetrics {
    members: Gauge,
    owned: Gauge,
    joined: Gauge,
    agree: Gauge,
    handovers: Family<[(&'static str, &'static str); 1], Counter>,
}

impl CoordinationMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "pgfleet_coordination_members",
            "Live pgfleet instances of this coordination namespace, as this one last read them from pg_locks",
            self.members.clone(),
        );
        registry.register(
            "pgfleet_coordination_buckets_owned",
            "Buckets this instance holds (coordination.buckets in all)",
            self.owned.clone(),
        );
        registry.register(
            "pgfleet_coordination_joined",
            "1 while this instance is a member with a confirmed session, else 0",
            self.joined.clone(),
        );
        registry.register(
            "pgfleet_coordination_schemas_agree",
            "1 unless a live member has said it folds another set of schemas for longer than the grace (coordination_schemas_differ)",
            self.agree.clone(),
        );
        registry.register(
            "pgfleet_coordination_handovers",
            "Buckets taken from or given to other instances, by direction (taken, given, lost)",
            self.handovers.clone(),
        );
        for direction in ["taken", "given", "lost"] {
            let _ = self.handovers.get_or_create(&[("direction", direction)]);
        }
    }

    fn moved(&self, direction: &'static str, buckets: usize) {
        self.handovers
            .get_or_create(&[("direction", direction)])
            .inc_by(buckets as u64);
    }
}

/// A session that joined.
struct Joined {
    client: Arc<tokio_postgres::Client>,
    me: MemberId,
    /// Sorted.
    held: Vec<u32>,
    /// Buckets asked for (want locks held), sorted.
    wanting: Vec<u32>,
    /// Buckets nobody held at the last read.
    free_before: BTreeSet<u32>,
    members: Vec<MemberId>,
    /// Owned and not held (another still holds them).
    awaited: usize,
}

pub struct Coordinator {
    settings: CoordinationSettings,
    keys: Keys,
    connector: Arc<Connector>,
    supervisor: Recipient<Ownership>,
    lease: Lease,
    metrics: CoordinationMetrics,
    status: Status,
    log: Logger,
    weights: Arc<Vec<u32>>,
    /// What the Supervisor says this instance folds (see [`SchemaSet`]).
    set: SchemaSet,
    /// Numbers the sessions, so that what an old one says is ignored.
    session: u64,
    joined: Option<Joined>,
    stepping: bool,
    step_again: bool,
    /// The moves in flight, cancelled by a [`Leave`] so that none reaches
    /// the session after its locks were let go.
    rebalancing: Option<SpawnHandle>,
    retry: Duration,
    leaving: bool,
    /// The id of the last session: tried first when rejoining, so an
    /// instance back from a freeze or a cut takes its own share back
    /// rather than moving everyone's.
    last_member: Option<MemberId>,
    /// The last `coordination_lost` said at warn, and when.
    last_lost: Option<(Instant, String)>,
    /// What the other members said they fold (see [`SchemaSet`]).
    peers: std::collections::HashMap<MemberId, SchemaSet>,
    /// Since when a live member has said another schema set than this
    /// instance's, and when that was last said at warn.
    differs_since: Option<Instant>,
    differs_warned: Option<Instant>,
    /// How long a disagreement may last before it is news: discovery's
    /// instances rescan at different moments.
    differ_grace: Duration,
}

impl Coordinator {
    pub fn new(
        settings: &CoordinationSettings,
        differ_grace: Duration,
        connector: Arc<Connector>,
        supervisor: Recipient<Ownership>,
        lease: Lease,
        status: &Status,
        log: &Logger,
    ) -> Self {
        let metrics = CoordinationMetrics::default();
        status.register(|registry| metrics.register(registry));
        Coordinator {
            settings: settings.clone(),
            keys: Keys {
                namespace: settings.namespace,
            },
            connector,
            supervisor,
            lease,
            metrics,
            status: status.clone(),
            log: log.new(slog::o!()),
            weights: Arc::new(vec![0; settings.buckets as usize]),
            set: SchemaSet::of([]),
            session: 0,
            joined: None,
            stepping: false,
            step_again: false,
            rebalancing: None,
            retry: RETRY_FIRST,
            leaving: false,
            last_member: None,
            last_lost: None,
            peers: std::collections::HashMap::new(),
            differs_since: None,
            differs_warned: None,
            differ_grace,
        }
    }

    /// What `/coordination` and `/readyz` read, brought up to date.
    fn show(&self) {
        let view = self.view();
        self.metrics.agree.set(i64::from(view.schemas_agree));
        self.status.coordination(view);
    }

    fn view(&self) -> View {
        let moved = |direction| {
            self.metrics
                .handovers
                .get_or_create(&[("direction", direction)])
                .get()
        };
        let mut view = View {
            buckets: self.settings.buckets,
            taken: moved("taken"),
            given: moved("given"),
            lost: moved("lost"),
            trusted: self.lease.trusted(),
            schemas: self.set.count,
            schemas_agree: !self.schemas_differ(),
            ..View::default()
        };
        if let Some(joined) = &self.joined {
            view.member = Some(joined.me.get());
            view.members = joined.members.len();
            view.buckets_owned = joined.held.len();
            view.buckets_awaited = joined.awaited;
        }
        view
    }

    fn tell_supervisor(&self, held: &[u32], change: Change, stopped: Option<oneshot::Sender<()>>) {
        let owned = Arc::new(Owned::of(self.settings.buckets, held.iter().copied()));
        self.metrics.owned.set(held.len() as i64);
        self.show();
        // Never dropped, whatever the Supervisor's mailbox holds: a lost
        // handover would release buckets whose workers still run.
        self.supervisor.do_send(Ownership {
            owned,
            change,
            stopped,
            joined: self.joined.is_some(),
        });
    }

    /// Opens a session, makes it a lease, and takes a membership lock.
    fn join(&mut self, ctx: &mut Context<Self>) {
        if self.leaving {
            return;
        }
        self.session += 1;
        let session = self.session;
        let (connector, keys, lease) =
            (Arc::clone(&self.connector), self.keys, self.settings.lease);
        let last = self.last_member;
        let log = self.log.clone();
        let open = async move {
            let opened = connector.connect().await.map_err(|e| e.to_string())?;
            // A second connection for a moment: through a transaction-mode
            // pooler both reach the same backend, and no lock would be
            // this instance's alone.
            let other = connector.connect().await.map_err(|e| e.to_string())?;
            let shared = session::shares_backends(&opened.client, &other.client).await?;
            drop(other);
            if shared {
                return Err(session::SHARED_BACKENDS.to_owned());
            }
            let handed_down = session::release_handed_down(&opened.client).await?;
            if handed_down > 0 {
                warn!(log, "the coordination session's server connection came with {handed_down} advisory locks of \
                            the client before it, released now: {}", session::HANDED_DOWN;
                    "event" => "coordination_locks_handed_down", "locks" => handed_down);
            }
            session::set_up(&opened.client, keys, lease).await?;
            // The last id again, unless its lock is still held (the old
            // session not ended yet: then this is a new member, never
            // confused with what the old session holds); else a random one.
            let candidates = last
                .into_iter()
                .chain(std::iter::repeat_with(|| MemberId::new(rand::random())).take(3));
            for me in candidates {
                if session::join(&opened.client, keys, me).await? {
                    session::tell(&opened.client, keys, &format!("joined {}", me.get())).await?;
                    return Ok((opened, me));
                }
            }
            Err("every member id tried was taken".to_owned())
        };
        // Two connections, each within connect_timeout, then a few
        // statements.
        let within = self.settings.lease + self.connector.connect_timeout() * 2;
        ctx.spawn(
            async move {
                tokio::time::timeout(within, open)
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {within:?}")))
            }
            .into_actor(self)
            .map(move |opened, coordinator, ctx| {
                if session != coordinator.session {
                    return;
                }
                match opened {
                    Ok((opened, me)) => {
                        coordinator.retry = RETRY_FIRST;
                        coordinator.last_member = Some(me);
                        info!(coordinator.log, "joined the coordination of namespace {} as member {} at {}",
                            coordinator.keys.namespace, me.get(), coordinator.connector.describe_target();
                            "event" => "coordination_joined", "member" => me.get(),
                            "namespace" => coordinator.keys.namespace);
                        coordinator.joined = Some(Joined {
                            client: Arc::new(opened.client),
                            me,
                            held: Vec::new(),
                            wanting: Vec::new(),
                            free_before: BTreeSet::new(),
                            members: vec![me],
                            awaited: 0,
                        });
                        let mut notifications = opened.notifications;
                        let me_addr = ctx.address();
                        ctx.spawn(
                            async move {
                                while let Some(note) = notifications.recv().await {
                                    me_addr.do_send(Poke {
                                        session,
                                        payload: note.payload().to_owned(),
                                    });
                                }
                            }
                            .into_actor(coordinator)
                            .map(move |(), coordinator, ctx| {
                                let why = coordinator.quiet("the coordination session ended");
                                coordinator.lost(session, why, ctx)
                            }),
                        );
                        coordinator.announce(ctx);
                        coordinator.step(ctx);
                    }
                    Err(why) => coordinator.lost(session, why, ctx),
                }
            }),
        );
    }

    /// The session `session` failed (or never opened): nothing is this
    /// instance's until it has rejoined.
    fn lost(&mut self, session: u64, why: String, ctx: &mut Context<Self>) {
        if session != self.session {
            return;
        }
        self.session += 1;
        self.lease.revoke();
        self.metrics.joined.set(0);
        // Its moves in flight hold the old session's client: cancelled, so
        // the session closes (and its locks go) now.
        if let Some(moves) = self.rebalancing.take() {
            ctx.cancel_future(moves);
        }
        let had = self.joined.take().map_or(0, |joined| joined.held.len());
        self.stepping = false;
        self.step_again = false;
        if had > 0 {
            self.metrics.moved("lost", had);
        }
        self.tell_supervisor(&[], Change::Lost(why.clone()), None);
        if self.leaving {
            return;
        }
        let pause = self.retry;
        self.retry = (self.retry * 2).min(RETRY_LAST);
        let now = Instant::now();
        let said = self.last_lost.as_ref().is_some_and(|(at, said)| {
            *said == why && had == 0 && now.duration_since(*at) < LOST_WARN_EVERY
        });
        if said {
            debug!(self.log, "coordination lost again: {why}; trying again in {}", humantime::format_duration(pause);
                "event" => "coordination_lost", "error" => why.clone(), "buckets" => had);
        } else {
            self.last_lost = Some((now, why.clone()));
            warn!(self.log, "coordination lost: {why}; this instance folds nothing ({had} buckets let go) and tries \
                             to join again in {} (again every {} while it fails)", humantime::format_duration(pause),
                humantime::format_duration(RETRY_LAST);
                "event" => "coordination_lost", "error" => why.clone(), "buckets" => had);
        }
        let waiting = self.session;
        ctx.run_later(pause, move |coordinator, ctx| {
            if coordinator.session == waiting {
                coordinator.join(ctx);
            }
        });
    }

    /// Reads the members (the ping), then moves the locks to what this
    /// instance owns among them.
    fn step(&mut self, ctx: &mut Context<Self>) {
        if self.leaving {
            return;
        }
        let Some(joined) = &self.joined else {
            return;
        };
        if self.stepping {
            self.step_again = true;
            return;
        }
        self.stepping = true;
        self.step_again = false;
        let session = self.session;
        let (client, keys, me) = (Arc::clone(&joined.client), self.keys, joined.me);
        let within = self.settings.lease;
        ctx.spawn(
            async move {
                tokio::time::timeout(within, session::snapshot(&client, keys, me))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer to a ping within {within:?}")))
            }
            .into_actor(self)
            .map(move |seen, coordinator, ctx| {
                if session != coordinator.session {
                    return;
                }
                match seen {
                    Ok(seen) => coordinator.seen(seen, ctx),
                    Err(why) => {
                        let why = coordinator.quiet(&why);
                        coordinator.lost(session, why, ctx)
                    }
                }
            }),
        );
    }

    fn seen(&mut self, seen: session::Seen, ctx: &mut Context<Self>) {
        let Some(joined) = &mut self.joined else {
            return;
        };
        let first = self.metrics.joined.get() == 0;
        self.lease.extend(seen.sent, self.settings.trust_window());
        self.metrics.joined.set(1);
        self.metrics.members.set(seen.now.members.len() as i64);
        if joined.members != seen.now.members {
            debug!(self.log, "coordination members: {}", seen.now.members.len();
                "event" => "coordination_members", "members" => seen.now.members.len());
        }
        joined.members.clone_from(&seen.now.members);
        self.compare_schema_sets(&seen.now.members);
        self.show();
        let Some(joined) = &mut self.joined else {
            return;
        };
        let moves = Moves::plan(
            joined.me,
            &seen.now,
            &self.weights,
            &joined.held,
            &joined.wanting,
            &joined.free_before,
        );
        joined.free_before = (0..self.weights.len() as u32)
            .filter(|bucket| !seen.now.holders.contains_key(bucket))
            .collect();
        // The first answered read makes this instance a member, whatever
        // it holds yet (a fleet whose buckets are all held: it asks).
        if first {
            let held = joined.held.clone();
            self.tell_supervisor(&held, Change::Rebalanced, None);
        }
        if moves.is_empty() {
            return self.step_done(ctx);
        }
        self.rebalance(moves, ctx);
    }

    /// Gives up what is no longer this instance's (once its workers have
    /// stopped), then takes what is and is free.
    fn rebalance(&mut self, moves: Moves, ctx: &mut Context<Self>) {
        let Some(joined) = &self.joined else {
            return;
        };
        let session = self.session;
        let (client, keys) = (Arc::clone(&joined.client), self.keys);
        let keep: Vec<u32> = joined
            .held
            .iter()
            .copied()
            .filter(|bucket| moves.release.binary_search(bucket).is_err())
            .collect();
        let stopped = if moves.release.is_empty() {
            None
        } else {
            let (done, stopped) = oneshot::channel();
            self.tell_supervisor(&keep, Change::Rebalanced, Some(done));
            Some(stopped)
        };
        let within = self.settings.lease;
        let work = async move {
            if let Some(stopped) = stopped {
                let _ = tokio::time::timeout(HANDOVER_WAIT, stopped).await;
                session::release(&client, keys, &moves.release).await?;
            }
            let taken = if moves.acquire.is_empty() {
                Vec::new()
            } else {
                session::acquire(&client, keys, &moves.acquire).await?
            };
            if !moves.want.is_empty() {
                session::want(&client, keys, &moves.want).await?;
            }
            if !moves.unwant.is_empty() {
                session::unwant(&client, keys, &moves.unwant).await?;
            }
            Ok::<_, String>((moves, taken))
        };
        self.rebalancing = Some(ctx.spawn(
            async move {
                tokio::time::timeout(within + HANDOVER_WAIT, work)
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {within:?}")))
            }
            .into_actor(self)
            .map(move |moved, coordinator, ctx| {
                if session != coordinator.session {
                    return;
                }
                let (moves, taken) = match moved {
                    Ok(moved) => moved,
                    // Which locks are held is unknown now: the session
                    // goes, and every lock with it.
                    Err(why) => return coordinator.lost(session, why, ctx),
                };
                let Some(joined) = &mut coordinator.joined else {
                    return;
                };
                joined.held.retain(|bucket| moves.release.binary_search(bucket).is_err());
                joined.held.extend(&taken);
                joined.held.sort_unstable();
                joined.wanting.extend(&moves.want);
                joined.wanting.retain(|bucket| !moves.unwant.contains(bucket));
                joined.wanting.sort_unstable();
                joined.wanting.dedup();
                joined.awaited = joined.wanting.len();
                let (given, awaited, members) = (moves.release.len(), joined.awaited, joined.members.len());
                let held = joined.held.clone();
                coordinator.metrics.moved("given", given);
                coordinator.metrics.moved("taken", taken.len());
                if !taken.is_empty() || given > 0 {
                    coordinator.tell_supervisor(&held, Change::Rebalanced, None);
                    let buckets = |n: usize| if n == 1 { "1 bucket".to_owned() } else { format!("{n} buckets") };
                    info!(coordinator.log, "coordination: {} taken, {} given to other instances; {} of {} held \
                                            among {members} instances{}", buckets(taken.len()), buckets(given),
                        held.len(), coordinator.settings.buckets,
                        if awaited > 0 { format!(", {} awaited from their last holder", buckets(awaited)) } else { String::new() };
                        "event" => "coordination_rebalanced", "taken" => taken.len(), "given" => given,
                        "held" => held.len(), "members" => members, "awaited" => awaited);
                }
                coordinator.rebalancing = None;
                coordinator.step_done(ctx);
            }),
        ));
    }

    /// `why` a read of the session failed, with what usually causes it.
    fn quiet(&self, why: &str) -> String {
        format!(
            "{why} (the server ends a coordination session quiet for coordination.lease, {}: was this \
             process stopped or frozen, or cut off from the database?)",
            humantime::format_duration(self.settings.lease)
        )
    }

    /// Tells the others which schemas this instance folds.
    fn announce(&mut self, ctx: &mut Context<Self>) {
        let Some(joined) = &self.joined else {
            return;
        };
        let set = self.set;
        let payload = format!(
            "schemas {} {} {:016x}",
            joined.me.get(),
            set.count,
            set.hash
        );
        let (client, keys) = (Arc::clone(&joined.client), self.keys);
        // A failed NOTIFY is the session's failure: the next read says so.
        ctx.spawn(
            async move {
                let _ = session::tell(&client, keys, &payload).await;
            }
            .into_actor(self),
        );
    }

    /// Whether the live members agree on the schemas to fold; a
    /// disagreement that outlasts the grace is said (a warning at most once
    /// a minute) and fails readiness: schemas in a bucket held by an
    /// instance that does not know them are folded by nobody.
    fn compare_schema_sets(&mut self, members: &[MemberId]) {
        self.peers.retain(|member, _| members.contains(member));
        let mine = self.set;
        let other = self
            .peers
            .iter()
            .find(|(_, set)| **set != mine)
            .map(|(m, set)| (*m, *set));
        let Some((member, theirs)) = other else {
            self.differs_since = None;
            return;
        };
        let now = Instant::now();
        let since = *self.differs_since.get_or_insert(now);
        if now.duration_since(since) < self.differ_grace
            || self
                .differs_warned
                .is_some_and(|at| now.duration_since(at) < LOST_WARN_EVERY)
        {
            return;
        }
        self.differs_warned = Some(now);
        warn!(self.log, "the instances do not fold the same schemas: this one knows {} and member {} knows {}, \
                         for {} s now; a schema in a bucket held by an instance that does not know it is folded by \
                         nobody. Give every instance the same workers.* (a rolling reload ends this once all have it)",
            mine.count, member.get(), theirs.count, now.duration_since(since).as_secs();
            "event" => "coordination_schemas_differ", "schemas" => mine.count,
            "member" => member.get(), "theirs" => theirs.count);
    }

    /// Whether the schema sets have disagreed for longer than the grace.
    fn schemas_differ(&self) -> bool {
        self.differs_since
            .is_some_and(|since| since.elapsed() >= self.differ_grace)
    }

    fn step_done(&mut self, ctx: &mut Context<Self>) {
        self.stepping = false;
        if let Some(joined) = &mut self.joined {
            joined.awaited = joined.wanting.len();
        }
        self.show();
        if self.step_again {
            self.step(ctx);
        }
    }
}

/// Something was NOTIFYed on the namespace's channel: a join, a release
/// or a leave. Read the members now.
#[derive(Message)]
#[rtype(result = "()")]
struct Poke {
    session: u64,
    payload: String,
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        info!(self.log, "coordination on: sharing the schemas in {} buckets with the other instances of namespace {} \
                         (lease {})", self.settings.buckets, self.keys.namespace,
            humantime::format_duration(self.settings.lease);
            "event" => "coordination_started", "buckets" => self.settings.buckets,
            "namespace" => self.keys.namespace);
        self.tell_supervisor(&[], Change::Rebalanced, None);
        self.join(ctx);
        ctx.run_interval(self.settings.ping_every(), |coordinator, ctx| {
            coordinator.step(ctx)
        });
    }
}

impl Handler<Poke> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: Poke, ctx: &mut Self::Context) {
        if msg.session != self.session {
            return;
        }
        let me = self.joined.as_ref().map(|joined| joined.me);
        let mut words = msg.payload.split(' ');
        match (
            words.next(),
            words.next().and_then(|m| m.parse::<u32>().ok()),
        ) {
            // A newcomer: it learns what the others fold from their
            // answers.
            (Some("joined"), Some(member)) if Some(MemberId::new(member)) != me => {
                self.announce(ctx)
            }
            (Some("schemas"), Some(member)) if Some(MemberId::new(member)) != me => {
                let count = words.next().and_then(|c| c.parse::<u64>().ok());
                let hash = words.next().and_then(|h| u64::from_str_radix(h, 16).ok());
                if let (Some(count), Some(hash)) = (count, hash) {
                    self.peers
                        .insert(MemberId::new(member), SchemaSet { count, hash });
                }
            }
            _ => {}
        }
        self.step(ctx);
    }
}

impl Handler<Weights> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: Weights, ctx: &mut Self::Context) {
        if msg.weights.len() != self.weights.len() {
            return;
        }
        let changed = msg.weights != self.weights;
        self.weights = msg.weights;
        if msg.set != self.set {
            self.set = msg.set;
            self.announce(ctx);
        }
        if changed {
            self.step(ctx);
        }
    }
}

impl Handler<UseConnector> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: UseConnector, ctx: &mut Self::Context) {
        self.connector = msg.connector;
        if !msg.moved || self.leaving {
            return;
        }
        if self.joined.is_some() {
            let session = self.session;
            self.retry = Duration::ZERO;
            self.lost(
                session,
                "a reload changed where the coordination session connects; joining again there"
                    .into(),
                ctx,
            );
            self.retry = RETRY_FIRST;
        } else {
            // A join in flight (or waiting to retry) with the old
            // connector: its answer is ignored, and this one goes there.
            self.session += 1;
            self.join(ctx);
        }
    }
}

impl Handler<Leave> for Coordinator {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Leave, ctx: &mut Self::Context) -> Self::Result {
        self.leaving = true;
        self.lease.revoke();
        self.session += 1;
        if let Some(moves) = self.rebalancing.take() {
            ctx.cancel_future(moves);
        }
        let Some(joined) = self.joined.take() else {
            return Box::pin(actix::fut::ready(()));
        };
        let (keys, held) = (self.keys, joined.held.len());
        Box::pin(
            async move {
                let started = Instant::now();
                let left = session::leave(&joined.client, keys, joined.me).await;
                (left, started.elapsed())
            }
            .into_actor(self)
            .map(move |(left, took), coordinator, _ctx| match left {
                Ok(()) => {
                    coordinator.metrics.moved("given", held);
                    info!(coordinator.log, "left the coordination: {held} buckets released in {} ms",
                        took.as_millis(); "event" => "coordination_left", "buckets" => held);
                }
                Err(why) => {
                    warn!(coordinator.log, "leaving the coordination failed: {why}; the server releases the locks \
                                            when the session ends"; "event" => "coordination_left", "error" => why.clone());
                }
            }),
        )
    }
}

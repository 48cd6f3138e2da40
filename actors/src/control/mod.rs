//! Control from SQL: pgfleet LISTENs on `control.channel`, so an operator
//! steers it from where they already are (`NOTIFY pgfleet, 'pause
//! tenant_7'`), in Kubernetes too, where sending a container a signal is
//! awkward and SQL is not.
//!
//! The listener holds a session of its own (`control.url`, else
//! `database.url`): LISTEN belongs to a session, and a pooled connection
//! is shared. Behind a transaction-mode pooler (`database.pooler:
//! transaction`) without a `control.url`, notifications would reach
//! whichever client the pooler hands the server connection to next: the
//! listener says so at start and does not listen.
//!
//! A session lost (a database restart, a network cut, noticed by a ping
//! every [`PING_EVERY`]) is opened again, with a growing pause between
//! attempts; once listening again it asks for a rescan, since what was
//! notified meanwhile is lost (PostgreSQL keeps no notification for a
//! session that is not there).
//!
//! What a payload says is read by [`command`]; the Supervisor carries it
//! out ([`ControlCommand`]), `reload` goes where SIGHUP goes. A payload
//! not understood, or naming a schema pgfleet does not run, gets a warning
//! (at most one per [`WARN_EVERY`], the others counted into it), never an
//! action on another schema.

pub mod command;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use slog::{debug, info, warn, Logger};

use crate::config_actor::{Reload, SettingsChanged};
use crate::db::Connector;
use crate::settings::{PoolerMode, Settings};
use crate::sql::quote_ident;
use crate::status::Status;
pub use command::{Command, Target};

/// How often the listener's session is pinged, so that one cut off
/// without a word (a network partition) is noticed.
pub const PING_EVERY: Duration = Duration::from_secs(10);
/// At most one warning for rejected control messages this often.
pub const WARN_EVERY: Duration = Duration::from_secs(10);
/// At most this many control messages a second are carried out; the rest
/// are rejected: whoever can connect can NOTIFY, and a flood must not
/// fill the Supervisor's mailbox.
pub const MOST_PER_SECOND: u32 = 50;
/// Pauses between attempts to open the session again: from the first to
/// the last, doubling.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_LAST: Duration = Duration::from_secs(30);

/// A command for the Supervisor; the answer says what was done, or why
/// nothing was.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<String, Refused>")]
pub struct ControlCommand(pub Command);

/// Why a command did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// It names a schema pgfleet does not run.
    #[error("pgfleet runs no schema named {0:?}")]
    UnknownSchema(String),
    /// Not now: the worker failed, every schema is paused, there is no
    /// discovery to rescan.
    #[error("{0}")]
    NotNow(String),
    #[error("the service is stopping")]
    Stopping,
    /// Several instances share the fleet, and another one folds this
    /// schema (a pause or resume is remembered here all the same, for
    /// when it comes to this one).
    #[error("{0} is folded by another pgfleet instance (coordination): it acts on the command")]
    Elsewhere(String),
}

/// A notification's payload, from the session's reader.
#[derive(Message)]
#[rtype(result = "()")]
struct Notified {
    session: u64,
    payload: String,
    pid: i32,
}

type Series = Family<[(&'static str, &'static str); 2], Counter>;

/// What opening a session says when its LISTEN is not its own.
const NOT_A_SESSION: &str = "the LISTEN did not stay on the session";

/// Whether `client`'s session LISTENs on `channel`: a ping that also
/// tells whether the session is still the one that listens.
async fn still_listening(client: &tokio_postgres::Client, channel: &str) -> Result<bool, String> {
    let row = client
        .query_typed_one(
            "SELECT $1::text IN (SELECT pg_listening_channels())",
            &[(&channel, tokio_postgres::types::Type::TEXT)],
        )
        .await
        .map_err(|e| e.to_string())?;
    row.try_get(0).map_err(|e| e.to_string())
}

/// Carries out control commands, from SQL or HTTP alike: the Supervisor
/// decides, and every command is counted by kind and result. Cheap to
/// clone; usable from any thread.
#[derive(Clone)]
pub struct Actions {
    supervisor: Recipient<ControlCommand>,
    messages: Series,
}

impl Actions {
    /// Registers `pgfleet_control_messages_total` in `status`: once.
    pub fn new(supervisor: Recipient<ControlCommand>, status: &Status) -> Self {
        let messages = Series::default();
        status.register(|registry| {
            registry.register(
                "pgfleet_control_messages",
                "Control messages (NOTIFY on control.channel, POSTs on the HTTP port), by kind (rescan, reload, fold, pause, resume, unknown) and result (done, rejected)",
                messages.clone(),
            )
        });
        // Every series from the start, so a rate() has one to read.
        for kind in ["rescan", "reload", "fold", "pause", "resume", "unknown"] {
            for result in ["done", "rejected", "elsewhere"] {
                let _ = messages.get_or_create(&[("kind", kind), ("result", result)]);
            }
        }
        Actions {
            supervisor,
            messages,
        }
    }

    /// Counts one message of `kind` with `result` (`done`, `rejected`).
    pub fn count(&self, kind: &'static str, result: &'static str) {
        self.messages
            .get_or_create(&[("kind", kind), ("result", result)])
            .inc();
    }

    /// Has the Supervisor carry out `command` (not `reload`, which goes
    /// where SIGHUP goes), and counts it.
    pub async fn run(&self, command: Command) -> Result<String, Refused> {
        let kind = command.kind();
        let answer = match self.supervisor.send(ControlCommand(command)).await {
            Ok(answer) => answer,
            Err(_) => Err(Refused::Stopping),
        };
        let result = match &answer {
            Ok(_) => "done",
            Err(Refused::Elsewhere(_)) => "elsewhere",
            Err(_) => "rejected",
        };
        self.count(kind, result);
        answer
    }
}

pub struct ControlListener {
    channel: String,
    /// `control.url`'s, when set; else the database's.
    connector: Arc<Connector>,
    /// `database.pooler: transaction` with no `control.url`.
    through_transaction_pooler: bool,
    actions: Actions,
    config: Recipient<Reload>,
    log: Logger,
    /// Numbers the sessions, so that a reader of an old one is ignored.
    session: u64,
    client: Option<Arc<tokio_postgres::Client>>,
    listened_before: bool,
    /// See [`session_key`].
    key: SessionKey,
    retry: Duration,
    last_warning: Option<Instant>,
    unwarned: u64,
    /// The current second of messages, and how many it had.
    second: Option<Instant>,
    in_second: u32,
}

impl ControlListener {
    pub fn new(
        settings: &Settings,
        database: Arc<Connector>,
        control: Option<Arc<Connector>>,
        actions: Actions,
        config: Recipient<Reload>,
        log: &Logger,
    ) -> Self {
        let mut listener = ControlListener {
            channel: String::new(),
            connector: Arc::clone(&database),
            through_transaction_pooler: false,
            actions,
            config,
            log: log.new(slog::o!()),
            session: 0,
            client: None,
            listened_before: false,
            key: session_key(settings),
            retry: RETRY_FIRST,
            last_warning: None,
            unwarned: 0,
            second: None,
            in_second: 0,
        };
        listener.configure(settings, database, control);
        listener
    }

    fn configure(
        &mut self,
        settings: &Settings,
        database: Arc<Connector>,
        control: Option<Arc<Connector>>,
    ) {
        self.channel.clone_from(&settings.control.channel);
        self.through_transaction_pooler =
            control.is_none() && settings.database.pooler == PoolerMode::Transaction;
        self.connector = control.unwrap_or(database);
    }

    /// Opens the session and LISTENs, unless there is nothing to listen on.
    fn listen(&mut self, ctx: &mut Context<Self>) {
        self.session += 1;
        self.client = None;
        if self.channel.is_empty() {
            info!(self.log, "control.channel is empty: no control from SQL";
                "event" => "control_off");
            return;
        }
        if self.through_transaction_pooler {
            warn!(self.log, "control from SQL is off: LISTEN needs a session of its own, and database.url goes through \
                             a transaction-mode pooler (database.pooler: transaction), which hands the server connection \
                             to other clients between transactions; set control.url to a direct (or session-mode) URL";
                "event" => "control_unavailable");
            return;
        }
        let session = self.session;
        let (connector, channel) = (Arc::clone(&self.connector), self.channel.clone());
        let open = async move {
            let opened = connector.connect().await.map_err(|e| e.to_string())?;
            opened
                .client
                .batch_execute(&format!("LISTEN {}", quote_ident(&channel)))
                .await
                .map_err(|e| format!("LISTEN failed: {e}"))?;
            // Through a pooler that hands server connections round, the
            // LISTEN took one and the next query another: found now, or
            // by a later ping.
            if !still_listening(&opened.client, &channel).await? {
                return Err(NOT_A_SESSION.to_owned());
            }
            let server = connector.describe_target();
            Ok::<_, String>((opened, server))
        };
        ctx.spawn(open.into_actor(self).map(move |opened, listener, ctx| {
            if session != listener.session {
                return;
            }
            match opened {
                Ok((opened, server)) => {
                    listener.retry = RETRY_FIRST;
                    let again = std::mem::replace(&mut listener.listened_before, true);
                    info!(listener.log, "listening for control messages on channel {:?} at {server}{}", listener.channel,
                        if again { "; rescanning, as what was sent meanwhile is lost" } else { "" };
                        "event" => "control_listening", "channel" => listener.channel.clone(), "again" => again);
                    if again {
                        let actions = listener.actions.clone();
                        ctx.spawn(
                            async move {
                                let _ = actions.run(Command::Rescan).await;
                            }
                            .into_actor(listener),
                        );
                    }
                    listener.client = Some(Arc::new(opened.client));
                    let mut notifications = opened.notifications;
                    let me = ctx.address();
                    ctx.spawn(
                        async move {
                            while let Some(note) = notifications.recv().await {
                                me.do_send(Notified {
                                    session,
                                    payload: note.payload().to_owned(),
                                    pid: note.process_id(),
                                });
                            }
                        }
                        .into_actor(listener)
                        .map(move |(), listener, ctx| listener.lost(session, "the session ended", ctx)),
                    );
                }
                Err(error) if error == NOT_A_SESSION => listener.not_a_session(session),
                Err(error) => listener.lost(session, &error, ctx),
            }
        }));
    }

    /// The session `session` is gone (or never opened): try again later.
    fn lost(&mut self, session: u64, why: &str, ctx: &mut Context<Self>) {
        if session != self.session {
            return;
        }
        // The session is over: whichever of the ping and the reader says
        // so second is not heard.
        self.session += 1;
        let waiting = self.session;
        self.client = None;
        let pause = self.retry;
        self.retry = (self.retry * 2).min(RETRY_LAST);
        warn!(self.log, "control messages are not received: {why}; trying again in {}", humantime::format_duration(pause);
            "event" => "control_lost", "error" => why.to_owned());
        ctx.run_later(pause, move |listener, ctx| {
            if listener.session == waiting {
                listener.listen(ctx);
            }
        });
    }

    fn ping(&mut self, ctx: &mut Context<Self>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let (session, channel) = (self.session, self.channel.clone());
        ctx.spawn(
            async move { tokio::time::timeout(PING_EVERY, still_listening(&client, &channel)).await }
                .into_actor(self)
                .map(move |pinged, listener, ctx| match pinged {
                    Ok(Ok(true)) => {}
                    // The server answers, but the session that LISTENed is
                    // not the one pgfleet talks to: a pooler hands server
                    // connections round (PgBouncer in transaction mode
                    // with database.pooler: auto).
                    Ok(Ok(false)) => listener.not_a_session(session),
                    Ok(Err(why)) => listener.lost(session, &why, ctx),
                    Err(_) => listener.lost(
                        session,
                        &format!("no answer to a ping within {PING_EVERY:?}"),
                        ctx,
                    ),
                }),
        );
    }

    /// Listening does not work where pgfleet connects: said once, and
    /// control from SQL is off until a reload changes where it connects.
    fn not_a_session(&mut self, session: u64) {
        if session != self.session {
            return;
        }
        self.session += 1;
        self.client = None;
        warn!(self.log, "control from SQL is off: the session that LISTENs on {:?} is not the one pgfleet's queries reach, \
                         so notifications would be lost (a transaction-mode pooler?); set control.url to a direct \
                         (or session-mode) URL", self.channel;
            "event" => "control_unavailable");
    }

    fn rejected(&mut self, kind: &'static str, why: &str) {
        self.actions.count(kind, "rejected");
        self.warn_rejected(why);
    }

    /// At most one warning per [`WARN_EVERY`], the others counted into it.
    fn warn_rejected(&mut self, why: &str) {
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            self.unwarned += 1;
            debug!(self.log, "control message rejected: {why}"; "event" => "control_rejected");
            return;
        }
        self.last_warning = Some(now);
        let more = std::mem::take(&mut self.unwarned);
        let also = if more > 0 {
            format!(" ({more} more rejected since the last such warning)")
        } else {
            String::new()
        };
        warn!(self.log, "control message rejected: {why}{also}";
            "event" => "control_rejected", "suppressed" => more);
    }
}

impl Actor for ControlListener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.listen(ctx);
        ctx.run_interval(PING_EVERY, |listener, ctx| listener.ping(ctx));
    }
}

impl Handler<Notified> for ControlListener {
    type Result = ();

    fn handle(&mut self, msg: Notified, ctx: &mut Self::Context) {
        if msg.session != self.session {
            return;
        }
        let command = match Command::parse(&msg.payload) {
            Ok(command) => command,
            Err(why) => {
                return self.rejected(
                    "unknown",
                    &format!("{:?} (from backend pid {}): {why}", msg.payload, msg.pid),
                )
            }
        };
        let kind = command.kind();
        let now = Instant::now();
        if self
            .second
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1))
        {
            self.second = Some(now);
            self.in_second = 0;
        }
        self.in_second += 1;
        if self.in_second > MOST_PER_SECOND {
            return self.rejected(
                kind,
                &format!(
                    "{:?} (from backend pid {}): more than {MOST_PER_SECOND} control messages in a second",
                    msg.payload, msg.pid
                ),
            );
        }
        if command == Command::Reload {
            info!(self.log, "control message \"reload\" (from backend pid {}): reloading as on SIGHUP", msg.pid;
                "event" => "control_received", "kind" => kind);
            self.actions.count(kind, "done");
            self.config.do_send(Reload);
            return;
        }
        let (payload, pid) = (msg.payload, msg.pid);
        let actions = self.actions.clone();
        ctx.spawn(
            async move { actions.run(command).await }
                .into_actor(self)
                .map(move |answer, listener, _ctx| match answer {
                    Ok(done) => {
                        info!(listener.log, "control message {payload:?} (from backend pid {pid}): {done}";
                            "event" => "control_received", "kind" => kind);
                    }
                    // Every instance hears every NOTIFY; the owner acts.
                    Err(why @ Refused::Elsewhere(_)) => {
                        debug!(listener.log, "control message {payload:?} (from backend pid {pid}): {why}";
                            "event" => "control_received", "kind" => kind);
                    }
                    // Counted by `run`; only said here.
                    Err(why) => listener.warn_rejected(&format!(
                        "{payload:?} (from backend pid {pid}): {why}"
                    )),
                }),
        );
    }
}

impl Handler<SettingsChanged> for ControlListener {
    type Result = ();

    /// A reload reconnects only when what the session is made of changed:
    /// the channel, the URL it connects with, the pooler.
    fn handle(&mut self, msg: SettingsChanged, ctx: &mut Self::Context) {
        let key = session_key(&msg.settings);
        self.configure(&msg.settings, msg.connector, msg.control);
        let old = std::mem::replace(&mut self.key, key);
        if old != self.key {
            self.listened_before = false;
            self.listen(ctx);
        }
    }
}

/// What a listening session is made of: the channel, `control.url`, and
/// every `database.*` setting (its URL when `control.url` is empty, and
/// the TLS files, timeouts and `application_name` either way).
type SessionKey = (String, String, crate::settings::DatabaseSettings);

fn session_key(settings: &Settings) -> SessionKey {
    (
        settings.control.channel.clone(),
        settings.control.url.expose().to_owned(),
        settings.database.clone(),
    )
}

//! systemd's `Type=notify`: the service says when it is ready, reloading
//! or stopping, what it is doing (`STATUS=`), and that it is alive
//! (`WATCHDOG=1`, from the Supervisor's heartbeat, so a hung actor thread
//! stops the watchdog and systemd restarts the service).
//!
//! Nothing happens unless systemd set `NOTIFY_SOCKET`. The datagrams are
//! sent by a thread of their own: a send to a socket nobody reads can
//! block, and the actors must never wait on systemd. Notes that cannot be
//! queued (64 waiting) are dropped; a later one says the same again.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::OnceLock;
use std::time::Duration;

use sd_notify::NotifyState;

/// What the service tells systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Start-up is done (`READY=1`), with a status line.
    Ready(String),
    /// A reload begins (`RELOADING=1` and `MONOTONIC_USEC`, which systemd
    /// 253 and later require).
    Reloading,
    /// Shutdown begins (`STOPPING=1`).
    Stopping,
    /// A one-line summary (`STATUS=`).
    Status(String),
    /// Still alive (`WATCHDOG=1`).
    Watchdog,
}

struct Notifier {
    queue: SyncSender<Note>,
}

fn notifier() -> Option<&'static Notifier> {
    static NOTIFIER: OnceLock<Option<Notifier>> = OnceLock::new();
    NOTIFIER
        .get_or_init(|| {
            std::env::var_os("NOTIFY_SOCKET")?;
            let (queue, notes) = sync_channel::<Note>(64);
            std::thread::Builder::new()
                .name("pgfleet-sd-notify".into())
                .spawn(move || {
                    for note in notes {
                        let _ = send(&note);
                    }
                })
                .ok()?;
            Some(Notifier { queue })
        })
        .as_ref()
}

fn send(note: &Note) -> std::io::Result<()> {
    match note {
        Note::Ready(status) => {
            sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)])
        }
        Note::Reloading => sd_notify::notify(&[
            NotifyState::Reloading,
            NotifyState::monotonic_usec_now()?,
            NotifyState::Status("reloading the configuration"),
        ]),
        Note::Stopping => sd_notify::notify(&[
            NotifyState::Stopping,
            NotifyState::Status("stopping: folds in flight finish or are cancelled"),
        ]),
        Note::Status(status) => sd_notify::notify(&[NotifyState::Status(status)]),
        Note::Watchdog => sd_notify::notify(&[NotifyState::Watchdog]),
    }
}

/// Whether systemd listens (`NOTIFY_SOCKET` is set).
pub fn active() -> bool {
    notifier().is_some()
}

/// Tells systemd `note`, if it listens; never waits.
pub fn tell(note: Note) {
    if let Some(notifier) = notifier() {
        let _ = notifier.queue.try_send(note);
    }
}

/// How often to send `WATCHDOG=1`: half of systemd's `WatchdogSec`, as
/// sd_watchdog_enabled(3) advises; `None` when there is no watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    static INTERVAL: OnceLock<Option<Duration>> = OnceLock::new();
    *INTERVAL.get_or_init(|| sd_notify::watchdog_enabled().map(|usec| usec / 2))
}

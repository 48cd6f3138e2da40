//! Turns Unix signals into messages for the actors.
//!
//! SIGHUP asks the ConfigActor to reload. The first SIGTERM or SIGINT asks
//! the Supervisor to shut down gracefully; a second one means "now": the
//! actor system is stopped at once, dropping statements in flight (each fold
//! is one atomic statement, so nothing is lost, only left for next time).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use pgfleet_actors::config_actor::{ConfigActor, Reload};
use pgfleet_actors::supervisor::{Shutdown, Supervisor};
use signal_hook::SigId;
use slog::{warn, Logger};
use tokio::signal::unix::{signal, SignalKind};

/// A SIGHUP that came before the service could handle it.
pub struct EarlyReloads {
    pending: Arc<AtomicBool>,
    id: Option<SigId>,
}

/// SIGHUP's default action kills the process, and a reload can be sent
/// before the service has its handler (systemd and tests both do). From the
/// first instruction on, a SIGHUP only sets a flag; `forward` installs the
/// real handler and then, if the flag is set, reloads once: the file may
/// have changed after it was read at start, so the reload is not lost.
pub fn catch_early_reloads() -> EarlyReloads {
    let pending = Arc::new(AtomicBool::new(false));
    let id = signal_hook::flag::register(libc::SIGHUP, Arc::clone(&pending)).ok();
    if id.is_none() {
        // Without the flag, at least do not die of an early SIGHUP.
        // SAFETY: setting a disposition to SIG_IGN touches no memory.
        unsafe {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
        }
    }
    EarlyReloads { pending, id }
}

/// Exit code when a second signal cuts the graceful shutdown short.
pub const EXIT_FORCED: i32 = 1;

/// Must run inside the actix system, which owns the signal streams.
pub fn forward(
    early: EarlyReloads,
    config: Addr<ConfigActor>,
    supervisor: Addr<Supervisor>,
    log: Logger,
) -> std::io::Result<()> {
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    // From here on `hangup` sees every SIGHUP; one that came before is
    // applied now (a SIGHUP in between may reload twice, which is harmless).
    if let Some(id) = early.id {
        signal_hook::low_level::unregister(id);
    }
    if early.pending.swap(false, Ordering::SeqCst) {
        config.do_send(Reload);
    }
    actix::spawn(async move {
        let mut shutting_down = false;
        loop {
            let name = tokio::select! {
                Some(()) = hangup.recv() => {
                    config.do_send(Reload);
                    continue;
                }
                Some(()) = terminate.recv() => "SIGTERM",
                Some(()) = interrupt.recv() => "SIGINT",
                else => return,
            };
            if shutting_down {
                warn!(log, "second {name}: stopping at once"; "event" => "shutdown_forced", "signal" => name);
                pgfleet_actors::panics::system_stopping();
                System::current().stop_with_code(EXIT_FORCED);
                return;
            }
            shutting_down = true;
            supervisor.do_send(Shutdown { signal: name });
        }
    });
    Ok(())
}

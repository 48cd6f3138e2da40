//! Turns Unix signals into messages for the actors.
//!
//! SIGHUP asks the ConfigActor to reload. The first SIGTERM or SIGINT asks
//! the Supervisor to shut down gracefully; a second one means "now": the
//! actor system is stopped at once, dropping statements in flight (each fold
//! is one atomic statement, so nothing is lost, only left for next time).

use actix::prelude::*;
use pgfleet_actors::config_actor::{ConfigActor, Reload};
use pgfleet_actors::supervisor::{Shutdown, Supervisor};
use slog::{warn, Logger};
use tokio::signal::unix::{signal, SignalKind};

/// SIGHUP's default action kills the process, and a reload can be sent
/// before the service has its handler (systemd and tests both do): until
/// `forward` installs it, a SIGHUP is ignored, which loses nothing, as the
/// configuration is being read afresh anyway.
pub fn ignore_reloads_until_ready() {
    // SAFETY: setting a signal's disposition to SIG_IGN, before any other
    // thread exists, touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

/// Exit code when a second signal cuts the graceful shutdown short.
pub const EXIT_FORCED: i32 = 1;

/// Must run inside the actix system, which owns the signal streams.
pub fn forward(
    config: Addr<ConfigActor>,
    supervisor: Addr<Supervisor>,
    log: Logger,
) -> std::io::Result<()> {
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
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
                System::current().stop_with_code(EXIT_FORCED);
                return;
            }
            shutting_down = true;
            supervisor.do_send(Shutdown { signal: name });
        }
    });
    Ok(())
}

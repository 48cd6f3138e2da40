//! A panic is a failure with a name, never a silent death.
//!
//! actix runs every actor as a task on one thread; a panic in a handler
//! ends that task, and actix stops the actor (its `stopped()` runs) as if
//! it had been asked to. Taken at face value, a worker's panic would read
//! as a deliberate stop, and a Supervisor or ConfigActor would be gone
//! while the process lives on. So a panic hook logs every panic (`event:
//! panic`, with where it happened) and keeps its message, and an actor
//! whose `stopped()` finds no reason to have stopped reports the panic: a
//! worker as a failure under the restart policy, the Supervisor or
//! ConfigActor by ending the process with exit 1.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use slog::{error, Logger};

static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Exit code when an actor the service cannot do without panicked.
pub const EXIT_PANIC: i32 = 1;

/// Logs every panic through `log` and remembers its message; replaces the
/// default hook, whose raw lines would break a JSON log.
pub fn install_hook(log: Logger) {
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let place = info
            .location()
            .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        error!(log, "panic in thread {thread}: {message}{place}";
            "event" => "panic", "thread" => thread.to_owned());
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(message);
        }
    }));
}

/// The message of the latest panic, for the failure it caused.
pub fn last_message() -> String {
    LAST_PANIC
        .lock()
        .ok()
        .and_then(|last| last.clone())
        .unwrap_or_else(|| "(no message)".into())
}

/// Called before the actor system is stopped on purpose: from then on an
/// actor dropped without `stopped()` is part of the teardown, not a panic.
pub fn system_stopping() {
    STOPPING.store(true, Ordering::SeqCst);
}

pub fn is_system_stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// For an actor the service cannot run without, from its `stopped()`: a
/// stop that was not `deliberate`, outside the teardown of the system,
/// means it panicked; the process then ends with [`EXIT_PANIC`] after a
/// line that says so. Returns whether it did.
pub fn essential_actor_stopped(name: &str, deliberate: bool, log: &Logger) -> bool {
    if deliberate || is_system_stopping() {
        return false;
    }
    let message = last_message();
    error!(log, "the {name} panicked ({message}); stopping the service with exit code {EXIT_PANIC}";
        "event" => "service_failed", "error" => format!("{name} panicked: {message}"));
    system_stopping();
    if let Some(system) = actix::System::try_current() {
        system.stop_with_code(EXIT_PANIC);
    }
    true
}

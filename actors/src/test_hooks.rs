//! Fault injection for the integration tests, compiled in only with the
//! `test-hooks` feature (the tests' dev-dependency turns it on; `cargo
//! build` never has it, and then every hook is an empty inline function).

/// Sleeps for `TEST_HOOK_PAUSE_<POINT>_MS` milliseconds, to widen a race
/// window a test wants to hit (e.g. a SIGHUP between reading the
/// configuration and installing the signal handler).
#[cfg(feature = "test-hooks")]
pub fn pause(point: &str) {
    let variable = format!("TEST_HOOK_PAUSE_{}_MS", point.to_uppercase());
    if let Some(ms) = std::env::var(variable)
        .ok()
        .and_then(|value| value.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn pause(_point: &str) {}

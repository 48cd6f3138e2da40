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

/// Whether the test asked for a panic at `point` in `schema`'s worker
/// (`TEST_HOOK_PANIC_IN_<POINT>_OF=<schema>`). Read once per process: it
/// is asked at every tick and fold, and the benchmarks run this build.
#[cfg(feature = "test-hooks")]
pub fn panic_wanted(point: PanicPoint, schema: &str) -> bool {
    use std::sync::OnceLock;
    static FOLD: OnceLock<Option<String>> = OnceLock::new();
    static TICK: OnceLock<Option<String>> = OnceLock::new();
    let (cell, variable) = match point {
        PanicPoint::Fold => (&FOLD, "TEST_HOOK_PANIC_IN_FOLD_OF"),
        PanicPoint::Tick => (&TICK, "TEST_HOOK_PANIC_IN_TICK_OF"),
    };
    cell.get_or_init(|| std::env::var(variable).ok()).as_deref() == Some(schema)
}

#[cfg(feature = "test-hooks")]
#[derive(Clone, Copy)]
pub enum PanicPoint {
    Fold,
    Tick,
}

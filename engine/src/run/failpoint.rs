//! Crash injection for tests: with `ANBIQ_KILL_AT=<point>` in its environment the process kills itself with
//! SIGKILL when it reaches that point, as `kill -9` would at a moment a test could not otherwise hit reliably.
//!
//! Points: `committed:<step>` (the step's outputs are in the store; its dependants and the lockfile not yet) and
//! `shard:<step>:<i>` (shard `i` of a sharded step is in the store; the others may not be).

/// Dies here if `ANBIQ_KILL_AT` names this point. `point` is built only when the variable is set. Debug builds
/// only (what the test suite runs): a release binary ignores the variable.
#[cfg(not(debug_assertions))]
pub(crate) fn reach(_point: impl FnOnce() -> String) {}

/// Dies here if `ANBIQ_KILL_AT` names this point. `point` is built only when the variable is set.
#[cfg(debug_assertions)]
pub(crate) fn reach(point: impl FnOnce() -> String) {
    static TARGET: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let Some(target) = TARGET.get_or_init(|| std::env::var("ANBIQ_KILL_AT").ok()) else { return };
    if *target == point() {
        // SAFETY: signalling our own process; SIGKILL does not return.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

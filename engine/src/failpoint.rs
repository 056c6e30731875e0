//! Crash injection for tests: with `ANBIQ_KILL_AT=<point>` in its environment the process kills itself with
//! SIGKILL when it reaches that point, as `kill -9` would at a moment a test could not otherwise hit reliably; with
//! `ANBIQ_STOP_AT=<point>` it stops itself (SIGSTOP), as a hung process would.
//!
//! Points: `committed:<step>` (the step's outputs are in the store; its dependants and the lockfile not yet),
//! `shard:<step>:<i>` (shard `i` of a sharded step is in the store; the others may not be) and, in a training loop,
//! `epoch:<e>` (epoch `e` is done and, before the last, checkpointed) — `rank:<r>:epoch:<e>` in rank `r` of a
//! data-parallel step.

/// Dies (or stops) here if `ANBIQ_KILL_AT` (`ANBIQ_STOP_AT`) names this point. `point` is built only when a variable
/// is set. Debug builds only (what the test suite runs): a release binary ignores the variables.
#[cfg(not(debug_assertions))]
pub(crate) fn reach(_point: impl FnOnce() -> String) {}

/// Dies (or stops) here if `ANBIQ_KILL_AT` (`ANBIQ_STOP_AT`) names this point. `point` is built only when a variable
/// is set.
#[cfg(debug_assertions)]
pub(crate) fn reach(point: impl FnOnce() -> String) {
    static TARGETS: std::sync::OnceLock<[Option<String>; 2]> = std::sync::OnceLock::new();
    let [kill, stop] =
        TARGETS.get_or_init(|| [std::env::var("ANBIQ_KILL_AT").ok(), std::env::var("ANBIQ_STOP_AT").ok()]);
    if kill.is_none() && stop.is_none() {
        return;
    }
    let here = point();
    for (target, signal) in [(kill, libc::SIGKILL), (stop, libc::SIGSTOP)] {
        if target.as_deref() == Some(here.as_str()) {
            // SAFETY: signalling our own process; SIGKILL does not return, SIGSTOP returns if continued.
            unsafe { libc::kill(libc::getpid(), signal) };
        }
    }
}

//! Ctrl-C: the first one asks running steps to stop at the next batch, after saving a checkpoint; a second one
//! exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The error a step returns when it stopped because of an interrupt.
#[derive(Debug, thiserror::Error)]
#[error("interrupted (progress was checkpointed: `anbiq run` resumes)")]
pub struct Interrupted;

pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Asks for a stop (what the signal handler does; also for tests and embedders).
pub fn request() {
    REQUESTED.store(true, Ordering::Relaxed);
}

/// Installs the SIGINT handler.
pub fn install_handler() {
    extern "C" fn on_sigint(_: libc::c_int) {
        if REQUESTED.swap(true, Ordering::Relaxed) {
            // Second Ctrl-C: the user wants out now. Only async-signal-safe calls here.
            unsafe { libc::_exit(130) };
        }
    }
    // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
}

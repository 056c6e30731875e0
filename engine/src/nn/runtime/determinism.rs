//! Switching libtorch to deterministic algorithms (`torch.use_deterministic_algorithms`).
//!
//! CPU kernels are already deterministic for a fixed thread count; on CUDA several kernels (scatter-add, some
//! convolution backward passes) are not unless this is on. tch has no wrapper, so `libtorch_shim.cpp` (compiled by
//! build.rs) calls `at::globalContext()` directly. The setting is process-global.

extern "C" {
    fn anbiq_set_deterministic(on: bool, warn_only: bool) -> i32;
    fn anbiq_deterministic() -> bool;
}

/// Turns deterministic algorithms on or off; ops without a deterministic implementation then raise an error.
pub fn set_deterministic(on: bool) {
    // SAFETY: plain C ABI functions; the C++ side catches every exception.
    let rc = unsafe { anbiq_set_deterministic(on, false) };
    if rc != 0 {
        tracing::warn!("could not set deterministic algorithms to {on}");
    }
}

/// Whether deterministic algorithms are on.
pub fn is_deterministic() -> bool {
    // SAFETY: as above.
    unsafe { anbiq_deterministic() }
}

#[cfg(test)]
mod tests {
    #[test]
    fn toggles() {
        let before = super::is_deterministic();
        super::set_deterministic(true);
        assert!(super::is_deterministic());
        super::set_deterministic(before);
        assert_eq!(super::is_deterministic(), before);
    }
}

//! Tuning the C allocator that libtorch's CPU tensors come from.
//!
//! glibc's `malloc` serves a request at or above its mmap threshold (128 KiB, adapting up to 32 MiB) with fresh pages
//! from `mmap`, and hands them back on `free`; it also returns free heap memory above the trim threshold to the
//! system. A training or inference batch allocates and frees the same tens of megabytes of activations every
//! iteration, so by default each batch page-faults all of them in again: on the CNN teacher's inference that was
//! ≈40% of the time in the kernel (BENCHMARKS.md). Raising both thresholds to 1 GiB keeps those pages in the process
//! for reuse. The cost: memory freed by one step stays mapped for the next (the peak, not the sum).
//!
//! The setting is process-wide and numerically invisible. A user's own `GLIBC_TUNABLES` or `MALLOC_*_` variables win.

/// Applies the thresholds once; later calls do nothing. Called first thing by the `anbiq` binary.
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let user_set = std::env::vars_os().any(|(k, v)| {
            let k = k.to_string_lossy();
            k.starts_with("MALLOC_") || (k == "GLIBC_TUNABLES" && v.to_string_lossy().contains("malloc"))
        });
        if !user_set {
            set_thresholds(1 << 30);
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds(bytes: i32) {
    // SAFETY: mallopt only adjusts allocator parameters; it is safe to call at any time.
    let ok = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, bytes) == 1
    };
    if !ok {
        tracing::debug!("mallopt refused the allocator thresholds");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds(_bytes: i32) {}

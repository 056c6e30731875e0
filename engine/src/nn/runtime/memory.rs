//! Tuning the C allocator that libtorch's CPU tensors come from.
//!
//! glibc's `malloc` serves a request at or above its mmap threshold (128 KiB, adapting up to 32 MiB) with fresh pages
//! from `mmap`, and hands them back on `free`; it also returns free heap memory above the trim threshold to the
//! system. A training or inference batch allocates and frees the same tens of megabytes of activations every
//! iteration, so by default each batch page-faults all of them in again: on the CNN teacher's inference that was
//! ≈40% of the time in the kernel (BENCHMARKS.md). Raising both thresholds to 1 GiB keeps those pages in the process
//! for reuse. The cost: memory freed by one step stays mapped for the next (the peak, not the sum).
//!
//! libtorch also backs each CPU buffer of 2 MiB or more with transparent huge pages when `THP_MEM_ALLOC_ENABLE=1`
//! (c10's `alloc_cpu`, read at its first allocation), which anbiq sets: with the thresholds, a language model's
//! distillation step with recomputed activations peaked at 2461 MB instead of 3159 MB, at the same speed
//! (BENCHMARKS.md, "LLM distillation step").
//!
//! The settings are process-wide and numerically invisible. A user's own `GLIBC_TUNABLES` or `MALLOC_*_` variables,
//! and `THP_MEM_ALLOC_ENABLE`, win.

/// The variable c10 reads once, at its first CPU allocation.
const HUGE_PAGES_VAR: &str = "THP_MEM_ALLOC_ENABLE";

/// Applies the settings once, before any tensor exists; later calls do nothing. Called first thing by the `anbiq`
/// binary.
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os(HUGE_PAGES_VAR).is_none() {
            // Before any other thread starts (first thing in main) and before libtorch's first allocation reads it.
            std::env::set_var(HUGE_PAGES_VAR, "1");
        }
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

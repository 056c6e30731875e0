//! Which CPU code paths libtorch computes with: the same bits on every x86_64 machine, or this machine's fastest.
//!
//! Measured on this project's reference machine (AVX-512): MKL's GEMMs and ATen's own vectorised kernels both take
//! an AVX-512 path where the CPU has one and an AVX2 path elsewhere, and the two give different bits (the quickstart's
//! model hashes differ). Pinning them, and oneDNN (convolutions, bf16 matmuls), to AVX2 (`MKL_CBWR=AVX2`, MKL's
//! conditional numerical reproducibility; `ATEN_CPU_CAPABILITY=avx2`; `ONEDNN_MAX_CPU_ISA=AVX2`) gives one result on
//! every CPU with AVX2: with them set, a run that also restricts MKL to AVX2 instructions — what an AVX2-only CPU
//! does — gives the same lockfile (tests/golden). That is the default; `ANBIQ_CPU=native` keeps libtorch's own
//! choice (faster where AVX-512 or AVX512-BF16 help; bits then depend on the CPU model).
//!
//! The libraries read their variables once, when first used, so [`pin_portable`] must run before libtorch computes
//! anything: first thing in `main` (the test and example processes get the variables from `.cargo/config.toml`).
//! The mode is part of every cache key ([`mode`]): outputs computed on other code paths never share a key.

const MKL: &str = "MKL_CBWR";
const ATEN: &str = "ATEN_CPU_CAPABILITY";
/// oneDNN (convolutions, bf16 matmuls) dispatches on its own.
const ONEDNN: &str = "ONEDNN_MAX_CPU_ISA";

/// Sets the three variables to AVX2 unless `ANBIQ_CPU=native` or the user set them. Call before any other thread runs
/// and before libtorch computes anything.
pub fn pin_portable() {
    if std::env::var_os("ANBIQ_CPU").is_some_and(|v| v == "native") {
        return;
    }
    for (name, value) in [(MKL, "AVX2"), (ATEN, "avx2"), (ONEDNN, "AVX2")] {
        if std::env::var_os(name).is_none() {
            // SAFETY (of a process-global write): called at the start of main, before any thread is spawned.
            std::env::set_var(name, value);
        }
    }
}

/// `avx2` when the three libraries are pinned to their AVX2 paths on an x86_64 CPU that has AVX2 (the same bits on
/// any such CPU), else `native-<arch>` (this CPU's choice, or the user's own settings: bits specific to the CPU).
pub fn mode() -> String {
    let is = |name: &str, value: &str| std::env::var(name).is_ok_and(|v| v.eq_ignore_ascii_case(value));
    if has_avx2() && is(MKL, "AVX2") && is(ATEN, "avx2") && is(ONEDNN, "AVX2") {
        "avx2".into()
    } else {
        format!("native-{}", std::env::consts::ARCH)
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

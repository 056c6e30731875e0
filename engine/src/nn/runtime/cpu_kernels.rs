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
//! Not on AMD: on an AMD EPYC (Zen, AVX2 without AVX-512) MKL ignores `MKL_CBWR=AVX2` — `AVX2`, `AVX512` and `SSE4_2`
//! all gave the same bits there, and only `COMPATIBLE` others — so its GEMMs take AMD's path and the quickstart's
//! models differ from an Intel CPU's. The mode therefore names the vendor (`avx2` on Intel, `avx2-amd` on AMD): keys
//! computed on the two never mix, and each vendor has its own golden lockfiles (tests/golden/avx2-amd/).
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

/// When the three libraries are pinned to their AVX2 paths on an x86_64 CPU that has AVX2: `avx2` on Intel (the same
/// bits on any Intel CPU with AVX2), `avx2-<vendor>` elsewhere (`avx2-amd`: the same pins, but MKL's GEMMs follow the
/// vendor's own path). Else `native-<arch>` (this CPU's choice, or the user's own settings: bits specific to the CPU).
pub fn mode() -> String {
    let is = |name: &str, value: &str| std::env::var(name).is_ok_and(|v| v.eq_ignore_ascii_case(value));
    if !(has_avx2() && is(MKL, "AVX2") && is(ATEN, "avx2") && is(ONEDNN, "AVX2")) {
        return format!("native-{}", std::env::consts::ARCH);
    }
    match vendor().as_str() {
        "GenuineIntel" => "avx2".into(),
        "AuthenticAMD" => "avx2-amd".into(),
        other => format!("avx2-{}", other.to_ascii_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "")),
    }
}

/// The CPU's vendor string (`GenuineIntel`, `AuthenticAMD`), from CPUID leaf 0.
fn vendor() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        // CPUID leaf 0 exists on every x86_64 CPU (the intrinsic is safe there).
        let id = std::arch::x86_64::__cpuid(0);
        let bytes: Vec<u8> = [id.ebx, id.edx, id.ecx].iter().flat_map(|r| r.to_le_bytes()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        String::new()
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

//! Mixed precision for forward passes: `precision: bf16` in a `train`, `distill` or `infer` step runs the model
//! under libtorch's autocast with bfloat16 — matrix multiplies, convolutions and attention in bf16, numerically
//! sensitive ops in f32 — on the CPU (where the CPU has bf16 instructions, e.g. AVX512-BF16 or AMX) and on CUDA
//! GPUs. Weights, gradients, optimiser state and losses stay f32: the logits come back as f32 before any loss or
//! softmax sees them.
//!
//! ```
//! use anbiq::nn::runtime::precision::Precision;
//! use tch::{Device, Kind, Tensor};
//!
//! let w = Tensor::randn([64, 32], (Kind::Float, Device::Cpu));
//! let x = Tensor::randn([8, 64], (Kind::Float, Device::Cpu));
//! let full = Precision::F32.run(Device::Cpu, || x.matmul(&w));
//! let half = Precision::Bf16.run(Device::Cpu, || x.matmul(&w));
//! assert_eq!(half.kind(), Kind::BFloat16); // autocast ran the matmul in bf16
//! let err = (half.to_kind(Kind::Float) - &full).abs().max().double_value(&[]);
//! assert!(err > 0.0 && err < 0.1 * full.abs().max().double_value(&[]));
//! ```
//!
//! The region is thread-local (libtorch keeps autocast state per thread), so concurrent steps do not affect each
//! other. tch's own `autocast` is CUDA-only and fp16; this calls libtorch through `libtorch_shim.cpp`.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::nn::{Mode, Model};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32 (the default).
    #[default]
    F32,
    /// Forward passes under bf16 autocast.
    Bf16,
}

extern "C" {
    fn anbiq_autocast_enter(device: i32) -> i32;
    fn anbiq_autocast_exit(device: i32, previous: i32) -> i32;
}

impl Precision {
    /// For `skip_serializing_if`: an f32 step's canonical config (and so its cache key) is what it was before this
    /// field existed.
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// Warns when bf16 would be slow: on the CPU under the portable kernel mode ([`super::cpu_kernels`]), oneDNN is
    /// held to AVX2 and bf16 matmuls take libtorch's reference GEMM (several times slower than f32; measured in
    /// BENCHMARKS.md). `ANBIQ_CPU=native` gives them AVX512-BF16 / AMX where the CPU has it.
    pub fn warn_if_slow(self, device: Device, step: &str) {
        if self == Precision::Bf16 && device == Device::Cpu && super::cpu_kernels::mode().starts_with("avx2") {
            tracing::warn!(
                step,
                "precision: bf16 on the CPU under the portable kernel mode is slower than f32 (bf16 matmuls without \
                 AVX512-BF16); set ANBIQ_CPU=native for native kernels"
            );
        }
    }

    /// Runs `f` at this precision on `device`.
    pub fn run<T>(self, device: Device, f: impl FnOnce() -> T) -> T {
        match self {
            Precision::F32 => f(),
            Precision::Bf16 => {
                let _region = AutocastRegion::enter(device);
                f()
            }
        }
    }

    /// `model.forward(x, mode)` at this precision, with f32 logits.
    pub fn forward(self, model: &dyn Model, x: &Tensor, mode: Mode<'_>) -> Tensor {
        match self {
            Precision::F32 => model.forward(x, mode),
            Precision::Bf16 => self.run(x.device(), || model.forward(x, mode)).to_kind(Kind::Float),
        }
    }
}

/// An open autocast region, closed (and the previous state restored) on drop, also when `f` panics.
#[must_use]
struct AutocastRegion {
    device: i32,
    previous: i32,
}

impl AutocastRegion {
    fn enter(device: Device) -> AutocastRegion {
        let code = match device {
            Device::Cpu => 0,
            Device::Cuda(_) => 1,
            // Autocast for other backends is not wired up; running them in f32 under a bf16 cache key would lie.
            other => panic!("precision: bf16 is supported on the CPU and CUDA, not on {other:?}"),
        };
        // SAFETY: plain C ABI; the C++ side catches every exception and leaves the previous state on failure.
        let previous = unsafe { anbiq_autocast_enter(code) };
        // A step whose config says bf16 must not silently produce f32 results (its cache key says bf16); the executor
        // turns the panic into a failure of this step only.
        assert!(previous >= 0, "libtorch refused to enter a bf16 autocast region on {device:?}");
        AutocastRegion { device: code, previous }
    }
}

impl Drop for AutocastRegion {
    fn drop(&mut self) {
        // SAFETY: as above; `previous` is what `enter` returned.
        if unsafe { anbiq_autocast_exit(self.device, self.previous) } != 0 {
            tracing::warn!("could not leave a bf16 autocast region");
        }
    }
}

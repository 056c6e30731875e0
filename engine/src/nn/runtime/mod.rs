//! How computation runs, apart from what it computes: the device (CPU or a CUDA GPU, found at start-up), libtorch's
//! deterministic mode and the pinned CPU kernels that make CPU results bit-identical everywhere, bf16 autocast
//! (through `libtorch_shim.cpp`), the C allocator's tuning, seeded random tensors, and progress bars.

pub mod cpu_kernels;
pub mod determinism;
pub mod device;
pub mod memory;
pub mod precision;
pub mod progress;
pub mod random;

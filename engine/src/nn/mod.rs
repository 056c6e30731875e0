//! Neural-network building blocks on libtorch: layers, architectures, optimisers, schedules, the training loop.
//!
//! Everything random (weight init, dropout masks, shuffling) draws from [`crate::rng::Rng`], never from libtorch's
//! process-global generator, so concurrent steps with the same seed give bit-identical results on CPU.

pub mod arch;
pub mod checkpoint;
pub mod cpu_kernels;
pub mod determinism;
pub mod device;
pub mod layers;
pub mod learner;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod optimizer;
pub mod precision;
pub mod progress;
pub mod random;
pub mod sample;
pub mod schedule;
pub mod tokens;
pub mod torchscript;
pub mod weights;

pub use arch::{build, ArchConfig};
pub use model::{Decoder, KvCache, Mode, Model};

#[cfg(test)]
mod tests;

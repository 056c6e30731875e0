//! Neural networks on libtorch, in four rooms: models ([`model`], [`layers`], [`arch`], with sampling and the
//! TorchScript wrapper), [`training`] (the learner, optimisers, schedules, checkpoints, metrics), [`weights`] (the
//! ecosystem's formats in and out) and [`runtime`] (device, determinism, precision, memory, progress), with
//! [`distributed`] (data-parallel training over c10d) beside them.
//!
//! Everything random (weight init, dropout masks, shuffling) draws from [`crate::rng::Rng`], never from libtorch's
//! process-global generator, so concurrent steps with the same seed give bit-identical results on CPU.

pub mod arch;
pub mod distributed;
pub mod encode;
pub mod layers;
pub mod model;
pub mod prune;
pub mod runtime;
pub mod sample;
pub mod tokens;
pub mod torchscript;
pub mod training;
pub mod weights;

pub use arch::{build, ArchConfig};
pub use model::{Blocks, Decoder, Encoder, EncoderStates, KvCache, LanguageModel, Mode, Model};

#[cfg(test)]
mod tests;

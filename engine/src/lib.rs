//! anbiq — a reproducible workflow engine for knowledge distillation.

pub mod nn;
pub mod rng;

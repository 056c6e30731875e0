//! anbiq — a reproducible workflow engine for knowledge distillation.

pub mod data;
pub mod rng;

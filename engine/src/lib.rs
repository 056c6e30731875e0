//! anbiq — a reproducible workflow engine for knowledge distillation.
pub mod config;

//! Datasets: loading (digits, MNIST IDX, CSV, safetensors), splitting, normalisation, batching and augmentation.
//!
//! Every loader produces the same in-memory [`Dataset`]: `x` is a contiguous CPU f32 tensor `[N, ..sample_shape]`
//! and `y` an i64 tensor `[N]` of class indices, so the rest of the engine never cares where data came from.

pub mod artifact;
pub mod augment;
pub mod batches;
pub mod csv;
mod dataset;
pub mod digits;
mod error;
pub mod idx;
pub mod mnist;
pub mod normalize;
pub mod split;
pub mod tensors;

pub use dataset::{Dataset, DatasetMeta};
pub use error::{DataError, Result};

//! Datasets: loading (digits, MNIST IDX, CSV, safetensors, text), splitting, normalisation, batching and augmentation.
//!
//! Every loader produces the same in-memory [`Dataset`]: `x` is a contiguous CPU f32 tensor `[N, ..sample_shape]`
//! and `y` an i64 tensor `[N]` of class indices, so the rest of the engine never cares where data came from. Text
//! datasets (`meta.vocab` set) are the one variation: `x` holds i64 token ids `[N, T]` and `y` the next token at
//! every position `[N, T]`; their tokens come from the corpus' characters or bytes, or from a pretrained model's
//! tokenizer ([`tokenizer`]).

pub mod augment;
pub mod batches;
pub mod classes;
pub mod csv;
mod dataset;
pub mod digits;
mod error;
pub mod idx;
pub mod mnist;
pub mod normalize;
pub mod split;
pub mod tensors;
pub mod text;
pub mod tokenizer;
mod vocab;

pub use classes::DeclaredClasses;
pub use dataset::{Dataset, DatasetMeta};
pub use error::{DataError, Result};
pub use vocab::{TextSize, Vocab};

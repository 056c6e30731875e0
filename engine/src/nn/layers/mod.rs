//! Layers, one per file. Each draws its initial values from an [`crate::rng::Rng`] and registers them in a `VarStore`.

pub mod conv2d;
pub mod dropout;
pub mod embedding;
pub mod init;
pub mod layer_norm;
pub mod linear;

pub use conv2d::Conv2d;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use layer_norm::LayerNorm;
pub use linear::Linear;

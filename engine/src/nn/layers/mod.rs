//! Layers, one per file. Each draws its initial values from an [`crate::rng::Rng`] and registers them in a `VarStore`.

pub mod conv2d;
pub mod dropout;
pub mod init;
pub mod linear;

pub use conv2d::Conv2d;
pub use dropout::Dropout;
pub use linear::Linear;

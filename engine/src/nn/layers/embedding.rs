//! A lookup table of learned vectors: token ids `[..]` → `[.., dim]`, initialised `N(0, 0.02²)` like GPT-2.
//!
//! ```
//! use anbiq::nn::layers::Embedding;
//! use anbiq::rng::Rng;
//! use tch::{nn::VarStore, Device, Tensor};
//!
//! let vs = VarStore::new(Device::Cpu);
//! let emb = Embedding::new(&vs.root().sub("wte"), 10, 4, &mut Rng::derive(0, "init"));
//! assert_eq!(emb.forward(&Tensor::from_slice(&[1i64, 2, 3]).view([1, 3])).size(), [1, 3, 4]);
//! ```

use super::init::normal;
use crate::rng::Rng;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct Embedding {
    /// `[count, dim]`.
    pub weight: Tensor,
}

impl Embedding {
    pub fn new(vs: &nn::Path, count: i64, dim: i64, rng: &mut Rng) -> Self {
        Embedding { weight: vs.var_copy("weight", &normal(&[count, dim], 0.02, rng)) }
    }

    /// Rows of the table at `ids` (any integer dtype).
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.weight, &ids.to_kind(tch::Kind::Int64), -1, false, false)
    }
}

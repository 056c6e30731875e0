//! Fully connected layer `y = x Wᵀ + b`, initialised like PyTorch's `nn.Linear`.
//!
//! ```
//! use anbiq::nn::layers::Linear;
//! use anbiq::rng::Rng;
//! use tch::{nn::VarStore, Device, Kind, Tensor};
//!
//! let vs = VarStore::new(Device::Cpu);
//! let layer = Linear::new(&vs.root().sub("fc"), 4, 3, &mut Rng::derive(0, "init"));
//! let y = layer.forward(&Tensor::ones([2, 4], (Kind::Float, Device::Cpu)));
//! assert_eq!(y.size(), [2, 3]);
//! assert!(vs.variables().contains_key("fc.weight"));
//! ```

use super::init::{default_bound, normal, uniform_var};
use crate::rng::Rng;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Linear {
    /// Registers `weight` `[out, in]` and `bias` `[out]` under `vs`, both `U(±1/√in)`.
    pub fn new(vs: &nn::Path, in_features: i64, out_features: i64, rng: &mut Rng) -> Self {
        let bound = default_bound(in_features);
        let weight = uniform_var(vs, "weight", &[out_features, in_features], bound, rng);
        let bias = uniform_var(vs, "bias", &[out_features], bound, rng);
        Linear { weight, bias }
    }

    /// GPT-2's initialisation: weight `N(0, std²)`, bias zero.
    pub fn normal(vs: &nn::Path, in_features: i64, out_features: i64, std: f64, rng: &mut Rng) -> Self {
        let weight = vs.var_copy("weight", &normal(&[out_features, in_features], std, rng));
        let bias = vs.var_copy("bias", &Tensor::zeros([out_features], (tch::Kind::Float, tch::Device::Cpu)));
        Linear { weight, bias }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}

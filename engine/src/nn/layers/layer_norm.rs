//! Layer normalisation over the last dimension, with a learned scale (ones) and shift (zeros).

use tch::{nn, Kind, Tensor};

#[derive(Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    dim: i64,
}

impl LayerNorm {
    pub fn new(vs: &nn::Path, dim: i64) -> Self {
        let weight = vs.var_copy("weight", &Tensor::ones([dim], (Kind::Float, tch::Device::Cpu)));
        let bias = vs.var_copy("bias", &Tensor::zeros([dim], (Kind::Float, tch::Device::Cpu)));
        LayerNorm { weight, bias, dim }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.dim], Some(&self.weight), Some(&self.bias), 1e-5, false)
    }
}

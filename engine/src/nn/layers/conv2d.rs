//! 2-D convolution with stride 1 and "same" padding, initialised like PyTorch's `nn.Conv2d`.
//!
//! ```
//! use anbiq::nn::layers::Conv2d;
//! use anbiq::rng::Rng;
//! use tch::{nn::VarStore, Device, Kind, Tensor};
//!
//! let vs = VarStore::new(Device::Cpu);
//! let conv = Conv2d::new(&vs.root().sub("conv"), 1, 8, 5, &mut Rng::derive(0, "init"));
//! let y = conv.forward(&Tensor::ones([2, 1, 28, 28], (Kind::Float, Device::Cpu)));
//! assert_eq!(y.size(), [2, 8, 28, 28]);
//! ```

use super::init::{default_bound, uniform_var};
use crate::rng::Rng;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Conv2d {
    /// Registers `weight` `[out, in, k, k]` and `bias` `[out]`, both `U(±1/√(in·k·k))`.
    pub fn new(vs: &nn::Path, in_channels: i64, out_channels: i64, kernel: i64, rng: &mut Rng) -> Self {
        let bound = default_bound(in_channels * kernel * kernel);
        let weight = uniform_var(vs, "weight", &[out_channels, in_channels, kernel, kernel], bound, rng);
        let bias = uniform_var(vs, "bias", &[out_channels], bound, rng);
        Conv2d { weight, bias }
    }

    /// `[B, in, H, W]` → `[B, out, H, W]`. libtorch's "same" padding also handles even kernels (asymmetrically).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d_padding(&self.weight, Some(&self.bias), [1, 1], "same", [1, 1], 1)
    }
}

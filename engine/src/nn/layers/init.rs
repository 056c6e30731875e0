//! Parameter initialisation from anbiq's own generator.
//!
//! PyTorch's default for `Linear`/`Conv2d` is kaiming-uniform with a = √5 for the weight, which works out to
//! U(−1/√fan_in, 1/√fan_in), and the same bound for the bias. We reproduce the distribution (not libtorch's stream):
//! values are drawn in Rust and copied in, so the same seed gives the same bytes on every thread and device.

use crate::rng::Rng;
use tch::{nn, Tensor};

/// The PyTorch default bound 1/√fan_in.
pub fn default_bound(fan_in: i64) -> f64 {
    1.0 / (fan_in.max(1) as f64).sqrt()
}

/// A `U(-bound, bound)` tensor of `shape`, drawn from `rng` (on the CPU; the caller's VarStore moves it).
pub fn uniform(shape: &[i64], bound: f64, rng: &mut Rng) -> Tensor {
    let n: i64 = shape.iter().product();
    let b = bound as f32;
    Tensor::from_slice(&rng.uniform_vec(n as usize, -b, b)).reshape(shape)
}

/// Registers a trainable variable `name` under `vs`, initialised `U(-bound, bound)` from `rng`.
pub fn uniform_var(vs: &nn::Path, name: &str, shape: &[i64], bound: f64, rng: &mut Rng) -> Tensor {
    vs.var_copy(name, &uniform(shape, bound, rng))
}

/// A `N(0, std²)` tensor of `shape`, drawn from `rng` (GPT-2's initialisation uses std 0.02).
pub fn normal(shape: &[i64], std: f64, rng: &mut Rng) -> Tensor {
    let n: i64 = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| (rng.normal_f64() * std) as f32).collect();
    Tensor::from_slice(&values).reshape(shape)
}

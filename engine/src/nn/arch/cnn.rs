//! LeNet-style convnet: per entry of `channels`, conv(k, same padding) → relu → maxpool(pool); then flatten → MLP head
//! (linear → relu → dropout)* → linear.

use super::{check_dropout, check_sizes, Architecture};
use crate::nn::layers::{Conv2d, Dropout, Linear};
use crate::nn::{Mode, Model};
use crate::rng::Rng;
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CnnConfig {
    /// Output channels of each conv block, e.g. `[32, 64]`.
    pub channels: Vec<i64>,
    /// Convolution kernel size.
    #[serde(default = "default_kernel")]
    pub kernel: i64,
    /// Max-pooling size after each conv block.
    #[serde(default = "default_pool")]
    pub pool: i64,
    /// Widths of the fully connected layers of the head.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<i64>,
    /// Dropout after each hidden layer of the head.
    #[serde(default)]
    pub dropout: f64,
}

fn default_kernel() -> i64 {
    5
}
fn default_pool() -> i64 {
    2
}
fn default_hidden() -> Vec<i64> {
    vec![128]
}

impl Architecture for CnnConfig {
    fn name(&self) -> &'static str {
        "cnn"
    }

    fn validate(&self) -> Result<(), String> {
        if self.channels.is_empty() {
            return Err("model.channels: must list at least one conv block".into());
        }
        check_sizes("model.channels", &self.channels)?;
        if self.kernel <= 0 {
            return Err(format!("model.kernel: must be positive, got {}", self.kernel));
        }
        if self.pool <= 0 {
            return Err(format!("model.pool: must be positive, got {}", self.pool));
        }
        check_sizes("model.hidden", &self.hidden)?;
        check_dropout("model.dropout", self.dropout)
    }

    fn build(&self, vs: &nn::Path, input_shape: &[i64], classes: i64, rng: &mut Rng) -> Result<Box<dyn Model>> {
        Ok(Box::new(Cnn::new(self, vs, input_shape, classes, rng)?))
    }
}

/// Parameters are named `conv.{i}.*`, `hidden.{i}.*`, `out.*`.
pub struct Cnn {
    convs: Vec<Conv2d>,
    hidden: Vec<Linear>,
    out: Linear,
    pool: i64,
    dropout: Dropout,
    /// `[C, H, W]` the input is viewed as (a `[H, W]` input shape means one channel).
    image: [i64; 3],
}

impl Cnn {
    pub fn new(config: &CnnConfig, vs: &nn::Path, input_shape: &[i64], classes: i64, rng: &mut Rng) -> Result<Self> {
        let image = match *input_shape {
            [h, w] => [1, h, w],
            [c, h, w] => [c, h, w],
            _ => anyhow::bail!("cnn: input shape must be [C, H, W] or [H, W], got {input_shape:?}"),
        };
        let [mut c, mut h, mut w] = image;
        let mut convs = Vec::with_capacity(config.channels.len());
        for (i, &out) in config.channels.iter().enumerate() {
            convs.push(Conv2d::new(&(vs / "conv" / i), c, out, config.kernel, rng));
            (c, h, w) = (out, h / config.pool, w / config.pool);
            ensure!(
                h > 0 && w > 0,
                "cnn: input {input_shape:?} is too small for {} pooling stages of {}",
                i + 1,
                config.pool
            );
        }
        let mut width = c * h * w;
        let mut hidden = Vec::with_capacity(config.hidden.len());
        for (i, &units) in config.hidden.iter().enumerate() {
            hidden.push(Linear::new(&(vs / "hidden" / i), width, units, rng));
            width = units;
        }
        Ok(Cnn {
            convs,
            hidden,
            out: Linear::new(&(vs / "out"), width, classes, rng),
            pool: config.pool,
            dropout: Dropout::new(config.dropout),
            image,
        })
    }
}

impl Model for Cnn {
    fn forward(&self, x: &Tensor, mut mode: Mode<'_>) -> Tensor {
        let [c, h, w] = self.image;
        let mut t = x.reshape([-1, c, h, w]);
        for conv in &self.convs {
            let p = [self.pool, self.pool];
            t = conv.forward(&t).relu().max_pool2d(p, p, [0, 0], [1, 1], false);
        }
        let mut t = t.flatten(1, -1);
        for layer in &self.hidden {
            t = self.dropout.forward(&layer.forward(&t).relu(), &mut mode);
        }
        self.out.forward(&t)
    }
}

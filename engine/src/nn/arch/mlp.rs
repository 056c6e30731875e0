//! Multi-layer perceptron: flatten → [dropout] → (linear → activation → dropout)* → linear.

use super::{check_dropout, check_sizes, Activation, Architecture};
use crate::nn::layers::{Dropout, Linear};
use crate::nn::{Mode, Model};
use crate::rng::Rng;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Hidden layer widths; empty gives a linear classifier.
    pub hidden: Vec<i64>,
    /// `relu` (default), `gelu`, `tanh`, …
    #[serde(default)]
    pub activation: Activation,
    /// Dropout after each hidden activation.
    #[serde(default)]
    pub dropout: f64,
    /// Dropout on the flattened input (Hinton et al. used 0.2 on MNIST).
    #[serde(default)]
    pub input_dropout: f64,
}

impl Architecture for MlpConfig {
    fn name(&self) -> &'static str {
        "mlp"
    }

    fn validate(&self) -> Result<(), String> {
        check_sizes("model.hidden", &self.hidden)?;
        check_dropout("model.dropout", self.dropout)?;
        check_dropout("model.input_dropout", self.input_dropout)
    }

    fn build(&self, vs: &nn::Path, input_shape: &[i64], classes: i64, rng: &mut Rng) -> Result<Box<dyn Model>> {
        Ok(Box::new(Mlp::new(self, vs, input_shape.iter().product(), classes, rng)))
    }
}

/// Parameters are named `hidden.{i}.weight|bias` and `out.weight|bias`.
pub struct Mlp {
    hidden: Vec<Linear>,
    out: Linear,
    activation: Activation,
    dropout: Dropout,
    input_dropout: Dropout,
    input_features: i64,
}

impl Mlp {
    pub fn new(config: &MlpConfig, vs: &nn::Path, input_features: i64, classes: i64, rng: &mut Rng) -> Self {
        let mut width = input_features;
        let mut hidden = Vec::with_capacity(config.hidden.len());
        for (i, &h) in config.hidden.iter().enumerate() {
            hidden.push(Linear::new(&(vs / "hidden" / i), width, h, rng));
            width = h;
        }
        Mlp {
            hidden,
            out: Linear::new(&(vs / "out"), width, classes, rng),
            activation: config.activation,
            dropout: Dropout::new(config.dropout),
            input_dropout: Dropout::new(config.input_dropout),
            input_features,
        }
    }
}

impl Model for Mlp {
    fn forward(&self, x: &Tensor, mut mode: Mode<'_>) -> Tensor {
        let mut h = self.input_dropout.forward(&x.reshape([-1, self.input_features]), &mut mode);
        for layer in &self.hidden {
            h = self.dropout.forward(&self.activation.apply(&layer.forward(&h)), &mut mode);
        }
        self.out.forward(&h)
    }
}

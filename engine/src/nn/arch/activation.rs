//! Element-wise nonlinearities selectable in configs.

use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Relu,
    Gelu,
    Tanh,
}

impl Activation {
    pub fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Relu => x.relu(),
            // Exact (erf) GELU, as PyTorch's default.
            Activation::Gelu => x.gelu("none"),
            Activation::Tanh => x.tanh(),
        }
    }
}

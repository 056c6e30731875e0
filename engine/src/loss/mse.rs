//! Mean squared error between student and teacher logits (Ba & Caruana 2014), after removing each row's mean:
//! stored logits are known only up to a per-row constant.

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

use super::{DistillLoss, LossInput};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MseLogits {}

fn centred(x: &Tensor) -> Tensor {
    x - x.mean_dim(-1, true, Kind::Float)
}

impl DistillLoss for MseLogits {
    fn loss(&self, input: &LossInput) -> anyhow::Result<Tensor> {
        Ok(centred(input.student).mse_loss(&centred(input.teacher_dense()), Reduction::Mean))
    }

    fn mean_over_rows(&self) -> bool {
        true
    }
}

//! Cross-entropy against the teacher's hard predictions (pseudo-labels), ignoring the true labels.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{DistillLoss, LossInput};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CeTeacherLabels {}

impl DistillLoss for CeTeacherLabels {
    fn loss(&self, input: &LossInput) -> anyhow::Result<Tensor> {
        let pseudo: Tensor = input.teacher_dense().argmax(-1, false);
        Ok(input.student.cross_entropy_for_logits(&pseudo))
    }

    fn mean_over_rows(&self) -> bool {
        true
    }
}

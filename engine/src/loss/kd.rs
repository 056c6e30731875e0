//! Hinton et al. (2015) knowledge distillation:
//! `α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, y)`.
//!
//! The T² factor keeps the soft term's gradient magnitude independent of T. KL is averaged over the batch
//! (`batchmean`), matching `torch.nn.functional.kl_div(..., reduction="batchmean")`.

use serde::{Deserialize, Serialize};
use tch::{Reduction, Tensor};

use super::{DistillLoss, LossInput, Target, Temperature};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KdLoss {
    /// Softens both distributions (Hinton et al.); a number, or `{from, to}` changing linearly over training.
    #[serde(default = "default_temperature")]
    pub temperature: Temperature,
    /// Weight of the soft (teacher) term; 1 − alpha goes to the hard-label cross-entropy.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
}

fn default_temperature() -> Temperature {
    Temperature::Constant(4.0)
}

fn default_alpha() -> f64 {
    0.9
}

impl KdLoss {
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.temperature.validate().map_err(|e| ("temperature".to_string(), e))?;
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(("alpha".into(), format!("must be in [0, 1], got {}", self.alpha)));
        }
        Ok(())
    }
}

/// `T²·KL(softmax(t/T) ‖ softmax(s/T))`, batch-mean.
pub fn soft_kl(student: &Tensor, teacher: &Tensor, t: f64) -> Tensor {
    let log_q = (student / t).log_softmax(-1, student.kind());
    let log_p = (teacher / t).log_softmax(-1, student.kind());
    // kl_div(input = log q, target = log p, log_target) = Σ p (log p − log q), summed then divided by the batch.
    let batch = student.size()[0] as f64;
    log_q.kl_div(&log_p, Reduction::Sum, true) * (t * t / batch)
}

impl DistillLoss for KdLoss {
    fn loss(&self, input: &LossInput) -> anyhow::Result<Tensor> {
        let t = self.temperature.at(input.progress);
        // A top-k teacher gives forward KL without rebuilding its dense distribution.
        let sparse = match &input.teacher {
            Target::TopK(top) => top.forward_kl(input.student, t),
            Target::Dense(_) => None,
        };
        let soft = sparse.unwrap_or_else(|| soft_kl(input.student, input.teacher_dense(), t));
        if self.alpha >= 1.0 {
            return Ok(soft);
        }
        let hard = input.student.cross_entropy_for_logits(input.labels);
        Ok(soft * self.alpha + hard * (1.0 - self.alpha))
    }

    fn mean_over_rows(&self) -> bool {
        true
    }
}

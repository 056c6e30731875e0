//! Reverse KL, `α·T²·KL(softmax(s/T) ‖ softmax(t/T)) + (1−α)·CE(s, y)`: mode-seeking where forward KL (`kd`) is
//! mass-covering — the student concentrates on what the teacher finds likely instead of spreading over everything
//! the teacher allows (the objective behind MiniLLM-style LM distillation, here per token).
//!
//! ```yaml
//! loss: {reverse_kl: {temperature: 1, alpha: 1}}
//! ```

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{DistillLoss, LossInput, Temperature};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReverseKl {
    /// Softens both distributions; a number, or `{from, to}`.
    #[serde(default)]
    pub temperature: Temperature,
    /// Weight of the KL term; 1 − alpha goes to the hard-label cross-entropy.
    #[serde(default = "one")]
    pub alpha: f64,
}

fn one() -> f64 {
    1.0
}

impl ReverseKl {
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.temperature.validate().map_err(|e| ("temperature".to_string(), e))?;
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(("alpha".into(), format!("must be in [0, 1], got {}", self.alpha)));
        }
        Ok(())
    }
}

/// `T²·KL(softmax(s/T) ‖ softmax(t/T))`, batch-mean; differentiable in `student`.
pub fn reverse_kl(student: &Tensor, teacher: &Tensor, t: f64) -> Tensor {
    let log_q = (student / t).log_softmax(-1, student.kind());
    let log_p = (teacher / t).log_softmax(-1, student.kind());
    let batch = student.size()[0] as f64;
    (log_q.exp() * (&log_q - log_p)).sum(student.kind()) * (t * t / batch)
}

impl DistillLoss for ReverseKl {
    fn loss(&self, input: &LossInput) -> anyhow::Result<Tensor> {
        let t = self.temperature.at(input.progress);
        let kl = reverse_kl(input.student, input.teacher_dense(), t);
        if self.alpha >= 1.0 {
            return Ok(kl);
        }
        Ok(kl * self.alpha + input.student.cross_entropy_for_logits(input.labels) * (1.0 - self.alpha))
    }

    fn mean_over_rows(&self) -> bool {
        true
    }
}

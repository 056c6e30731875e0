//! Training options as written in a step (`epochs`, `batch_size`, `optimizer`, …) and their checks.

use serde::{Deserialize, Serialize};

use crate::nn::learner::LearnerConfig;
use crate::nn::optim::OptimizerConfig;
use crate::nn::schedule::LrSchedule;

/// The fields every training step accepts. Steps embed these fields in their own config struct (serde cannot combine
/// `flatten` with `deny_unknown_fields`) and gather them here with [`TrainingOptions`] to validate and run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainingOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub schedule: LrSchedule,
    pub clip_grad_norm: Option<f64>,
    /// Random translation of image inputs by up to this many pixels (Hinton et al. used ±2 on MNIST).
    pub jitter: i64,
}

pub fn default_batch_size() -> usize {
    64
}

pub fn default_optimizer() -> OptimizerConfig {
    OptimizerConfig::Adam { lr: 1e-3, betas: [0.9, 0.999], weight_decay: 0.0, eps: 1e-8 }
}

impl TrainingOptions {
    /// Problems as `field: message`.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Err(e) = self.learner().validate() {
            let (field, message) =
                e.split_once(": ").map(|(f, m)| (f.to_string(), m.to_string())).unwrap_or(("".into(), e));
            problems.push((field, message));
        }
        if self.jitter < 0 {
            problems.push(("jitter".into(), format!("must be 0 or more pixels, got {}", self.jitter)));
        }
        problems
    }

    pub fn learner(&self) -> LearnerConfig {
        LearnerConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer: self.optimizer.clone(),
            schedule: self.schedule.clone(),
            clip_grad_norm: self.clip_grad_norm,
        }
    }
}

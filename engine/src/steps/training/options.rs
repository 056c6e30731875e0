//! Training options as written in a step (`epochs`, `batch_size`, `optimizer`, …) and their checks.

use serde::{Deserialize, Serialize};

use crate::nn::distributed::DistributedConfig;
use crate::nn::training::chunked;
use crate::nn::training::learner::LearnerConfig;
use crate::nn::training::optimizer_config::OptimizerConfig;
use crate::nn::training::schedule::LrSchedule;
use crate::nn::training::selection::{EarlyStopping, Keep};

/// The fields every training step accepts, gathered from a step's config (declared with [`training_config!`]) to
/// validate and run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainingOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub schedule: LrSchedule,
    pub clip_grad_norm: Option<f64>,
    /// Random translation of image inputs by up to this many pixels (Hinton et al. used ±2 on MNIST).
    pub jitter: i64,
    /// Positions per chunk of a language model's loss; `None`: [`chunked::chunk_positions`] of the vocabulary.
    pub loss_chunk: Option<i64>,
    pub keep: Keep,
    pub early_stopping: Option<EarlyStopping>,
    pub distributed: Option<DistributedConfig>,
    /// Whether the step has a `val` set to score after each epoch.
    pub has_val: bool,
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
        if let Some(field) = self.learner().needs_val().filter(|_| !self.has_val) {
            problems.push((field.into(), "scores `val_accuracy`, which needs a `val` set".into()));
        }
        if let Some(n) = self.loss_chunk.filter(|n| *n < 1) {
            problems.push(("loss_chunk".into(), format!("must be 1 position or more, got {n}")));
        }
        if self.jitter < 0 {
            problems.push(("jitter".into(), format!("must be 0 or more pixels, got {}", self.jitter)));
        }
        if let Some(d) = &self.distributed {
            problems.extend(d.check());
        }
        problems
    }

    /// Positions per chunk of a language model's loss over a vocabulary of `vocab` tokens.
    pub fn loss_chunk(&self, vocab: i64) -> i64 {
        self.loss_chunk.unwrap_or_else(|| chunked::chunk_positions(vocab))
    }

    pub fn learner(&self) -> LearnerConfig {
        LearnerConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer: self.optimizer.clone(),
            schedule: self.schedule.clone(),
            clip_grad_norm: self.clip_grad_norm,
            keep: self.keep,
            early_stopping: self.early_stopping.clone(),
        }
    }
}

/// Declares a training step's config struct: the step's own leading fields, then the training fields every
/// training step accepts (`epochs`, `batch_size`, `optimizer`, `schedule`, `clip_grad_norm`, `jitter`), then the
/// step's trailing fields (`after { … }`), then `precision`, `loss_chunk`, `keep`, `early_stopping` and
/// `distributed`; plus `training()`, which gathers them into
/// [`TrainingOptions`]. One definition, so a new training field reaches `train` and `distill` alike. (serde's
/// `flatten` would share a struct instead, but it does not combine with `deny_unknown_fields`.)
///
/// Field order is serialisation order, and so part of every step's cache key: add new fields at the end, with a
/// `skip_serializing_if` for their default, so existing keys do not change.
macro_rules! training_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($lead:tt)* }
        after { $($trail:tt)* }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($lead)*
            /// Passes over the training data.
            pub epochs: usize,
            /// Samples per optimiser step.
            #[serde(default = "crate::steps::training::default_batch_size")]
            pub batch_size: usize,
            /// `{name: adam | adamw | sgd, lr, …}`.
            #[serde(default = "crate::steps::training::default_optimizer")]
            pub optimizer: $crate::nn::training::optimizer_config::OptimizerConfig,
            /// The learning rate over training: `{kind: constant | cosine | step, …}`.
            #[serde(default)]
            pub schedule: $crate::nn::training::schedule::LrSchedule,
            /// Clip the global L2 norm of all gradients to this value before each step.
            #[serde(default)]
            pub clip_grad_norm: Option<f64>,
            /// Random translation of image inputs by up to this many pixels.
            #[serde(default)]
            pub jitter: i64,
            $($trail)*
            /// `bf16`: forward passes under bf16 autocast (see [`crate::nn::runtime::precision`]); `f32` by default.
            #[serde(default, skip_serializing_if = "crate::nn::runtime::precision::Precision::is_f32")]
            pub precision: $crate::nn::runtime::precision::Precision,
            /// Language models: positions per chunk when the loss is computed a chunk at a time (default: about
            /// 2^24 logits per chunk; see [`crate::nn::training::chunked`]). Memory against per-chunk overhead.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub loss_chunk: Option<i64>,
            /// Which epoch's weights the step writes: `last` (default) or `best val_accuracy` / `best train_loss`.
            #[serde(default, skip_serializing_if = "crate::nn::training::selection::Keep::is_last")]
            pub keep: $crate::nn::training::selection::Keep,
            /// Stop when the watched metric has not improved for `patience` epochs.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub early_stopping: Option<$crate::nn::training::selection::EarlyStopping>,
            /// Data-parallel: run the step as `ranks` processes, each on its part of every batch, gradients averaged
            /// over them (see [`crate::nn::distributed`]).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub distributed: Option<$crate::nn::distributed::DistributedConfig>,
        }

        impl $name {
            fn training(&self) -> $crate::steps::training::TrainingOptions {
                $crate::steps::training::TrainingOptions {
                    epochs: self.epochs,
                    batch_size: self.batch_size,
                    optimizer: self.optimizer.clone(),
                    schedule: self.schedule.clone(),
                    clip_grad_norm: self.clip_grad_norm,
                    jitter: self.jitter,
                    loss_chunk: self.loss_chunk,
                    keep: self.keep,
                    early_stopping: self.early_stopping.clone(),
                    distributed: self.distributed.clone(),
                    has_val: self.val.is_some(),
                }
            }
        }
    };
}
pub(crate) use training_config;

//! Training options as written in a step (`epochs`, `batch_size`, `optimizer`, …) and their checks.

use serde::{Deserialize, Serialize};

use crate::nn::distributed::DistributedConfig;
use crate::nn::training::chunked;
use crate::nn::training::learner::LearnerConfig;
use crate::nn::training::optimizer_config::OptimizerConfig;
use crate::nn::training::recompute::RecomputeActivations;
use crate::nn::training::schedule::LrSchedule;
use crate::nn::training::selection::{EarlyStopping, Keep};
use crate::nn::Model;

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
    /// Recompute a language model's activations in the backward pass instead of keeping them (all or some blocks).
    pub recompute_activations: RecomputeActivations,
    /// Batches of sentences of similar length ([`LearnerConfig::group_by_length`]).
    pub group_by_length: bool,
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
            group_by_length: self.group_by_length,
        }
    }
}

/// Training fields that change how a step computes but not what it writes: left out of its cache key, so switching
/// one reuses what was trained without it. A field belongs here only when outputs are proven byte-identical either
/// way (`recompute_activations`: `tests/llm_distill.rs` compares whole lockfiles and weights).
const KEYLESS_FIELDS: [&str; 1] = ["recompute_activations"];

/// A training step's config for [`crate::steps::Step::canonical_config`]: [`crate::steps::canonical`] without the
/// [`KEYLESS_FIELDS`].
pub fn canonical_training<T: Serialize>(config: &T) -> serde_json::Value {
    let mut value = crate::steps::canonical(config);
    if let Some(fields) = value.as_object_mut() {
        for field in KEYLESS_FIELDS {
            fields.remove(field);
        }
    }
    value
}

/// `recompute_activations` needs a language model that offers its blocks (`model`, of architecture `arch`), a block
/// left to recompute, and a loss that goes a chunk of positions at a time (`chunked`).
pub fn check_recompute(options: &TrainingOptions, arch: &str, model: &dyn Model, chunked: bool) -> anyhow::Result<()> {
    if options.recompute_activations.is_off() {
        return Ok(());
    }
    let Some(blocks) = model.language_model().and_then(|lm| lm.blocks()) else {
        anyhow::bail!(
            "field `recompute_activations`: recomputes the blocks of a language model (`llama`, `gpt`); `{arch}` has none"
        );
    };
    if let Err(message) = options.recompute_activations.check(blocks.count()) {
        anyhow::bail!("field `recompute_activations`: {message}");
    }
    if !chunked {
        anyhow::bail!(
            "field `recompute_activations`: needs a loss computed a chunk of positions at a time, and a loss with a \
             plugin term sees whole batches"
        );
    }
    Ok(())
}

/// Declares a training step's config struct: the step's own leading fields, then the training fields every
/// training step accepts (`epochs`, `batch_size`, `optimizer`, `schedule`, `clip_grad_norm`, `jitter`), then the
/// step's trailing fields (`after { … }`), then `precision`, `loss_chunk`, `keep`, `early_stopping`,
/// `distributed`, `recompute_activations` and `group_by_length`; plus `training()`, which gathers them into
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
            /// Language models (`llama`, `gpt`): `true` keeps only each block's input in the forward pass and
            /// recomputes the rest in the backward pass — about one more forward pass of compute for most of the
            /// activations' memory, with bit-identical results; `{keep: N}` recomputes all but the last N blocks
            /// (see [`crate::nn::training::recompute`]).
            #[serde(default, skip_serializing_if = "crate::nn::training::recompute::RecomputeActivations::is_off")]
            pub recompute_activations: $crate::nn::training::recompute::RecomputeActivations,
            /// Sentences: fill each batch with sentences of similar length (drawn at random in runs of 50 batches,
            /// sorted within a run, the batches shuffled), so less of each batch is padding — `transformers`'
            /// `group_by_length`. Changes the batches, so it is part of the cache key.
            #[serde(default, skip_serializing_if = "std::ops::Not::not")]
            pub group_by_length: bool,
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
                    recompute_activations: self.recompute_activations,
                    group_by_length: self.group_by_length,
                    has_val: self.val.is_some(),
                }
            }
        }
    };
}
pub(crate) use training_config;

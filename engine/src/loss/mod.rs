//! Distillation losses: what a student pays for disagreeing with its teacher (and with the labels).
//!
//! A loss sees one batch — the student's logits, the teacher's logits (dense, f32, up to a per-row constant), the
//! labels — and the fraction of training done (for temperature schedules). YAML names terms in a weighted sum:
//! ```yaml
//! loss: {kd: {temperature: 4, alpha: 0.9}}
//! loss: [{kd: {temperature: 4}, weight: 1.0}, {mse_logits: {}, weight: 0.1}]
//! ```
//! Adding a loss: one file implementing [`DistillLoss`], one variant in [`LossTerm`], one arm in
//! [`LossTerm::build`]. WebAssembly loss plugins (`{plugin: {path: x.wasm, params: {...}}}`, see [`PluginTerm`]) are
//! one more term implementing the same trait.

mod ce_teacher;
mod config;
pub mod embedding;
pub mod hidden;
mod kd;
mod mse;
mod plugin;
mod reverse_kl;
mod temperature;
pub mod top_k;

pub use ce_teacher::CeTeacherLabels;
pub use config::{Compares, LossConfig, LossTerm, WeightedTerm};
pub use embedding::{one_minus_cosine, CosineEmbedding, MseEmbedding, SimilarityEmbedding};
pub use hidden::{FeatureDistance, Features, HiddenLoss};
pub use kd::{soft_kl, KdLoss};
pub use mse::MseLogits;
pub use plugin::{PluginLoss, PluginTerm};
pub use reverse_kl::ReverseKl;
pub use temperature::Temperature;
pub use top_k::{TopKTail, TopKTeacher};

use tch::Tensor;

/// One batch's inputs to a loss: one row per sample, or per token for a language model.
pub struct LossInput<'a> {
    /// [N, C], requires grad.
    pub student: &'a Tensor,
    /// What the student is compared with: logits `[N, C]` or embeddings, or a top-k teacher.
    pub teacher: Target<'a>,
    /// [N] i64.
    pub labels: &'a Tensor,
    /// Fraction of training done, in [0, 1].
    pub progress: f64,
    /// `Some(T)` when the rows are the tokens of `[B, T]` sequences in (batch, time) order (N = B·T); `None` for
    /// classifiers. Built-in losses average over rows; plugins get the sequences back as `[B, T, V]`.
    pub sequence_len: Option<i64>,
    /// A sentence encoder's hidden states, for the feature losses ([`HiddenLoss`]); `None` when no term asks.
    pub features: Option<&'a Features>,
}

/// The teacher side of a [`LossInput`].
pub enum Target<'a> {
    /// Logits `[N, C]` f32 (up to a per-row constant), or a sentence encoder's embeddings `[N, D]`; no grad.
    Dense(&'a Tensor),
    /// A language model's stored top k for these rows, rebuilt densely only for a loss that needs it.
    TopK(&'a TopKTeacher),
}

impl<'a> LossInput<'a> {
    /// One batch of rows against a dense teacher, at the start of training, with no sequences and no features.
    pub fn new(student: &'a Tensor, teacher: &'a Tensor, labels: &'a Tensor) -> Self {
        LossInput {
            student,
            teacher: Target::Dense(teacher),
            labels,
            progress: 0.0,
            sequence_len: None,
            features: None,
        }
    }

    /// The teacher as a dense tensor (a top-k teacher rebuilt, once, for the rows' student logits).
    pub fn teacher_dense(&self) -> &Tensor {
        match &self.teacher {
            Target::Dense(t) => t,
            Target::TopK(top) => top.dense(self.student),
        }
    }
}

/// A distillation loss: returns a scalar to minimise, differentiable with respect to `input.student`.
pub trait DistillLoss: Send {
    fn loss(&self, input: &LossInput) -> anyhow::Result<Tensor>;

    /// Whether the loss is the mean over rows of a per-row term, so a batch may be scored a chunk of rows at a time
    /// (a language model's positions, [`crate::nn::training::chunked`]). Built-in losses are; a plugin sees whole
    /// sequences and may do anything with them, so it is not.
    fn mean_over_rows(&self) -> bool;

    /// The loss, and for a weighted sum of several terms each term's share of it (weight × term, detached, in the
    /// order of [`DistillLoss::term_names`]) so training can record them apart. One term: no shares.
    fn loss_and_terms(&self, input: &LossInput) -> anyhow::Result<(Tensor, Vec<Tensor>)> {
        Ok((self.loss(input)?, Vec::new()))
    }

    /// The names of the shares [`DistillLoss::loss_and_terms`] returns; none for one term.
    fn term_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// The (student, teacher) hidden-state pairs the loss compares ([`HiddenLoss`]); none by default.
    fn hidden_pairs(&self) -> Vec<(usize, usize)> {
        Vec::new()
    }
}

/// A weighted sum of losses.
pub struct WeightedSum {
    pub terms: Vec<(f64, Box<dyn DistillLoss>)>,
    /// The terms' names when there are several ([`LossConfig::term_names`]).
    pub names: Vec<String>,
}

impl DistillLoss for WeightedSum {
    fn loss(&self, input: &LossInput) -> anyhow::Result<Tensor> {
        Ok(self.loss_and_terms(input)?.0)
    }

    fn loss_and_terms(&self, input: &LossInput) -> anyhow::Result<(Tensor, Vec<Tensor>)> {
        let mut total: Option<Tensor> = None;
        let mut shares = Vec::new();
        for (weight, term) in &self.terms {
            let value = term.loss(input)? * *weight;
            if self.terms.len() > 1 {
                shares.push(value.detach());
            }
            total = Some(match total {
                Some(t) => t + value,
                None => value,
            });
        }
        let total = total.ok_or_else(|| anyhow::anyhow!("a loss needs at least one term"))?;
        Ok((total, shares))
    }

    fn mean_over_rows(&self) -> bool {
        self.terms.iter().all(|(_, term)| term.mean_over_rows())
    }

    fn term_names(&self) -> Vec<String> {
        self.names.clone()
    }

    fn hidden_pairs(&self) -> Vec<(usize, usize)> {
        let mut pairs: Vec<_> = self.terms.iter().flat_map(|(_, term)| term.hidden_pairs()).collect();
        pairs.sort_unstable();
        pairs.dedup();
        pairs
    }
}

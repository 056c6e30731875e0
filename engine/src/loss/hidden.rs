//! Feature losses on a sentence encoder's intermediate layers (TinyBERT's hidden-state distillation):
//! student hidden states against the teacher's, token by token over the real tokens of each sentence.
//!
//! ```yaml
//! loss:
//!   - {mse_embedding: {}}
//!   - {hidden: {map: {1: 2, 2: 4, 3: 6}, loss: mse}, weight: 0.5}
//! ```
//! `map` pairs a student hidden state with a teacher's, numbered as `transformers`' `output_hidden_states` (0: the
//! embedding layer's output, `i`: the output of layer `i − 1`; see [`crate::nn::Encoder`]). A student cut from its
//! teacher by `prune … layers: {keep: [0, 2, 4]}` maps its states 1, 2, 3 to the teacher's 2, 4, 6 (each kept layer
//! to where the next dropped one would have ended). When the widths differ the student's states pass through a
//! learned linear projection per pair (trained with the student, never part of the saved model).
//!
//! - `loss: mse` — mean over real tokens and dimensions of the squared difference.
//! - `loss: cosine` — mean over real tokens of 1 − cos.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::embedding::one_minus_cosine;
use super::{DistillLoss, LossInput};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HiddenLoss {
    /// Student hidden state → teacher hidden state, both numbered 0 (embedding output) to the layer count.
    pub map: BTreeMap<usize, usize>,
    /// How a pair of states is compared.
    #[serde(default)]
    pub loss: FeatureDistance,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeatureDistance {
    /// Mean squared difference over real tokens and dimensions.
    #[default]
    Mse,
    /// Mean over real tokens of 1 − cos.
    Cosine,
}

/// A batch's hidden states for the feature losses: for each (student, teacher) pair of state numbers, the student's
/// states (projected to the teacher's width when they differ) and the teacher's, `[B, t, d]` each, with the mask of
/// real tokens `[B, t]`.
pub struct Features {
    pub pairs: BTreeMap<(usize, usize), (Tensor, Tensor)>,
    pub mask: Tensor,
}

impl HiddenLoss {
    /// Problems as (field path under `hidden`, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.map.is_empty() {
            return Err(("map".into(), "pair at least one student hidden state with a teacher's".into()));
        }
        Ok(())
    }

    /// The (student, teacher) state pairs it compares.
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        self.map.iter().map(|(&s, &t)| (s, t)).collect()
    }
}

impl DistillLoss for HiddenLoss {
    /// The mean over the pairs of the pair's distance.
    fn loss(&self, input: &LossInput) -> anyhow::Result<Tensor> {
        let features =
            input.features.ok_or_else(|| anyhow::anyhow!("`hidden` needs the hidden states of student and teacher"))?;
        let mut total: Option<Tensor> = None;
        for pair in self.pairs() {
            let (student, teacher) =
                features.pairs.get(&pair).ok_or_else(|| anyhow::anyhow!("no hidden states for the pair {pair:?}"))?;
            if student.size() != teacher.size() {
                anyhow::bail!(
                    "hidden states {pair:?}: the student's {:?} and the teacher's {:?} differ in shape",
                    student.size(),
                    teacher.size()
                );
            }
            // In the states' own precision (f64 in the gradient check).
            let kind = student.kind();
            let real = features.mask.to_kind(kind);
            let per_token = match self.loss {
                FeatureDistance::Mse => (student - teacher).square().mean_dim(-1, false, kind),
                FeatureDistance::Cosine => one_minus_cosine(student, teacher),
            };
            let distance = (per_token * &real).sum(kind) / real.sum(kind).clamp_min(1.0);
            total = Some(match total {
                Some(t) => t + distance,
                None => distance,
            });
        }
        let total = total.ok_or_else(|| anyhow::anyhow!("`hidden.map` is empty"))?;
        Ok(total / self.map.len() as f64)
    }

    fn mean_over_rows(&self) -> bool {
        false
    }

    fn hidden_pairs(&self) -> Vec<(usize, usize)> {
        self.pairs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::Target;
    use tch::{Device, Kind};

    fn states(values: &[f64], shape: [i64; 3]) -> Tensor {
        Tensor::from_slice(values).view(shape)
    }

    /// Two sentences of up to three tokens (the second has two), width 2, one pair of states.
    fn case() -> (Tensor, Tensor, Tensor) {
        let student = states(&[1.0, 0.5, -0.3, 0.8, 0.2, 0.1, 0.7, -1.1, 0.4, 0.9, 5.0, 5.0], [2, 3, 2]);
        let teacher = states(&[0.6, 0.1, -0.2, 1.4, 0.3, -0.5, 1.0, -0.9, 0.2, 0.3, -7.0, 2.0], [2, 3, 2]);
        let mask = Tensor::from_slice(&[true, true, true, true, true, false]).view([2, 3]);
        (student, teacher, mask)
    }

    fn value(loss: &HiddenLoss, student: &Tensor, teacher: &Tensor, mask: &Tensor) -> Tensor {
        let features = Features {
            pairs: [((1, 2), (student.shallow_clone(), teacher.shallow_clone()))].into(),
            mask: mask.shallow_clone(),
        };
        let labels = Tensor::zeros([0], (Kind::Int64, Device::Cpu));
        let none = Tensor::zeros([0], (Kind::Double, Device::Cpu));
        let input = LossInput {
            student: &none,
            teacher: Target::Dense(&none),
            labels: &labels,
            progress: 0.0,
            sequence_len: None,
            features: Some(&features),
        };
        loss.loss(&input).unwrap()
    }

    fn term(distance: FeatureDistance) -> HiddenLoss {
        HiddenLoss { map: [(1, 2)].into(), loss: distance }
    }

    #[test]
    fn padding_is_not_compared() {
        let (student, teacher, mask) = case();
        // By hand over the five real tokens: MSE per token averaged over its two dimensions.
        let pairs: [[f64; 4]; 4] =
            [[1.0, 0.5, 0.6, 0.1], [-0.3, 0.8, -0.2, 1.4], [0.2, 0.1, 0.3, -0.5], [0.7, -1.1, 1.0, -0.9]];
        let mut sum: f64 = pairs.iter().map(|[a, b, c, d]| ((a - c).powi(2) + (b - d).powi(2)) / 2.0).sum();
        sum += ((0.4f64 - 0.2).powi(2) + (0.9f64 - 0.3).powi(2)) / 2.0;
        let mse = value(&term(FeatureDistance::Mse), &student, &teacher, &mask).double_value(&[]);
        assert!((mse - sum / 5.0).abs() < 1e-12, "{mse} against {}", sum / 5.0);
    }

    #[test]
    fn gradients_match_finite_differences() {
        for distance in [FeatureDistance::Mse, FeatureDistance::Cosine] {
            let loss = term(distance);
            let (start, teacher, mask) = case();
            let x = start.copy().set_requires_grad(true);
            value(&loss, &x, &teacher, &mask).backward();
            let grad = x.grad().view([-1]);
            for i in 0..12 {
                let bump = |d: f64| {
                    let y = start.copy();
                    let _ = y.view([-1]).get(i).fill_(start.view([-1]).double_value(&[i]) + d);
                    value(&loss, &y, &teacher, &mask).double_value(&[])
                };
                let numeric = (bump(1e-6) - bump(-1e-6)) / 2e-6;
                let analytic = grad.double_value(&[i]);
                assert!((numeric - analytic).abs() < 1e-7, "{distance:?} element {i}: {numeric} vs {analytic}");
                if i >= 10 {
                    assert_eq!(analytic, 0.0, "a padding position has no gradient");
                }
            }
        }
    }
}

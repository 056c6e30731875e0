//! Losses on sentence embeddings (a `bert` student distilled from an encoder's embeddings, stored by `infer` or
//! computed online): the student's pooled embedding against the teacher's, row by row.
//!
//! - `mse_embedding: {}` — mean squared difference over all elements, as sentence-transformers' `MSELoss` (its
//!   layer-reduction and multilingual distillation recipe).
//! - `cosine_embedding: {}` — mean over sentences of 1 − cos(student, teacher): the direction alone, which is all a
//!   normalised embedder's similarities depend on.
//! - `similarity_embedding: {}` — mean over the batch's pairs of sentences of (cos_student(i, j) − cos_teacher(i, j))²:
//!   the relations between sentences rather than their positions (similarity-preserving KD, Tung & Mori 2019), which is
//!   what search and clustering read from an embedder. Not a mean over rows: its value depends on which sentences
//!   share a batch (with `distributed`, the pairs within each rank's part of it).

use serde::{Deserialize, Serialize};
use tch::{Reduction, Tensor};

use super::{DistillLoss, LossInput};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MseEmbedding {}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CosineEmbedding {}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimilarityEmbedding {}

/// Student and teacher embeddings must be the same shape (a clear error, not libtorch's, when they are not).
fn check_shapes(input: &LossInput) -> anyhow::Result<()> {
    let (s, t) = (input.student.size(), input.teacher_dense().size());
    if s != t {
        anyhow::bail!("student embeddings {s:?} and the teacher's {t:?} differ in shape");
    }
    Ok(())
}

impl DistillLoss for MseEmbedding {
    fn loss(&self, input: &LossInput) -> anyhow::Result<Tensor> {
        check_shapes(input)?;
        Ok(input.student.mse_loss(input.teacher_dense(), Reduction::Mean))
    }

    fn mean_over_rows(&self) -> bool {
        true
    }
}

/// 1 − cos of each row pair `[N]`; a zero row counts as perpendicular (the norm is floored, not divided by zero).
pub fn one_minus_cosine(a: &Tensor, b: &Tensor) -> Tensor {
    // Sums in the inputs' own precision (f64 in the gradient check).
    let dot = (a * b).sum_dim_intlist(-1, false, a.kind());
    let norms = a.norm_scalaropt_dim(2, [-1], false) * b.norm_scalaropt_dim(2, [-1], false);
    -(dot / norms.clamp_min(1e-12)) + 1.0
}

impl DistillLoss for CosineEmbedding {
    fn loss(&self, input: &LossInput) -> anyhow::Result<Tensor> {
        check_shapes(input)?;
        Ok(one_minus_cosine(input.student, input.teacher_dense()).mean(input.student.kind()))
    }

    fn mean_over_rows(&self) -> bool {
        true
    }
}

/// The cosine similarities of every pair of rows `[N, N]`; a zero row is at cosine 0 to everything.
fn cosine_matrix(x: &Tensor) -> Tensor {
    let unit = x / x.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-12);
    unit.matmul(&unit.tr())
}

impl DistillLoss for SimilarityEmbedding {
    fn loss(&self, input: &LossInput) -> anyhow::Result<Tensor> {
        check_shapes(input)?;
        let n = input.student.size()[0];
        if n < 2 {
            // No pair to compare: zero, still attached to the student so backward runs.
            return Ok(input.student.sum(input.student.kind()) * 0.0);
        }
        let diff = cosine_matrix(input.student) - cosine_matrix(input.teacher_dense());
        // The diagonal (a sentence with itself) is 1 on both sides and carries nothing; each pair counts once per
        // order, which leaves the mean unchanged.
        let off_diagonal = Tensor::eye(n, (input.student.kind(), input.student.device())).neg() + 1.0;
        Ok((diff.square() * off_diagonal).sum(input.student.kind()) / (n * (n - 1)) as f64)
    }

    fn mean_over_rows(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn input<'a>(student: &'a Tensor, teacher: &'a Tensor, labels: &'a Tensor) -> LossInput<'a> {
        LossInput::new(student, teacher, labels)
    }

    /// The analytic gradient of `loss` at `x` against central differences in f64, element by element.
    fn check_gradient(loss: &dyn DistillLoss) {
        let opts = (Kind::Double, tch::Device::Cpu);
        let teacher =
            Tensor::from_slice(&[0.3, -1.2, 0.7, 2.0, 0.1, -0.4, 1.5, 0.9, -2.2]).view([3, 3]).to_kind(opts.0);
        let start = Tensor::from_slice(&[1.0, 0.2, -0.3, -0.5, 0.8, 1.1, 0.4, -1.0, 0.6]).view([3, 3]).to_kind(opts.0);
        let labels = Tensor::zeros([0], (Kind::Int64, opts.1));
        let x = start.set_requires_grad(true);
        let value = loss.loss(&input(&x, &teacher, &labels)).unwrap();
        value.backward();
        let grad = x.grad();
        let eps = 1e-6;
        for i in 0..9 {
            let bump = |d: f64| {
                let y = start.copy();
                let flat = y.view([-1]);
                let _ = flat.get(i).fill_(start.view([-1]).double_value(&[i]) + d);
                tch::no_grad(|| loss.loss(&input(&y, &teacher, &labels)).unwrap().double_value(&[]))
            };
            let numeric = (bump(eps) - bump(-eps)) / (2.0 * eps);
            let analytic = grad.view([-1]).double_value(&[i]);
            assert!((numeric - analytic).abs() < 1e-7, "element {i}: numeric {numeric}, analytic {analytic}");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        check_gradient(&MseEmbedding {});
        check_gradient(&CosineEmbedding {});
        check_gradient(&SimilarityEmbedding {});
    }

    #[test]
    fn values() {
        let labels = Tensor::zeros([0], (Kind::Int64, tch::Device::Cpu));
        let s = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 2.0]).view([2, 2]);
        let t = Tensor::from_slice(&[3.0f32, 0.0, 1.0, 0.0]).view([2, 2]);
        let mse = MseEmbedding {}.loss(&input(&s, &t, &labels)).unwrap().double_value(&[]);
        assert!((mse - (4.0 + 0.0 + 1.0 + 4.0) / 4.0).abs() < 1e-6);
        // Same direction: 0; perpendicular: 1.
        let cos = CosineEmbedding {}.loss(&input(&s, &t, &labels)).unwrap().double_value(&[]);
        assert!((cos - 0.5).abs() < 1e-6, "{cos}");
    }

    #[test]
    fn similarity_compares_relations_not_positions() {
        let labels = Tensor::zeros([0], (Kind::Int64, tch::Device::Cpu));
        let similarity =
            |s: &Tensor, t: &Tensor| SimilarityEmbedding {}.loss(&input(s, t, &labels)).unwrap().double_value(&[]);
        // Student rows perpendicular (cos 0), teacher rows parallel (cos 1): each of the two ordered pairs is off by 1.
        let s = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 2.0]).view([2, 2]);
        let t = Tensor::from_slice(&[3.0f32, 0.0, 1.0, 0.0]).view([2, 2]);
        assert!((similarity(&s, &t) - 1.0).abs() < 1e-6);
        // A rotation and rescaling of the teacher keeps every cosine: nothing to pay, though MSE would.
        let t3 = Tensor::from_slice(&[1.0f32, 0.0, 0.6, 0.8, -0.6, 0.8]).view([3, 2]);
        let rotation = Tensor::from_slice(&[0.0f32, -1.0, 1.0, 0.0]).view([2, 2]);
        let scale = Tensor::from_slice(&[2.0f32, 0.5, 3.0]).view([3, 1]);
        let s3 = t3.matmul(&rotation) * scale;
        assert!(similarity(&s3, &t3).abs() < 1e-6, "{}", similarity(&s3, &t3));
        // Three rows, six ordered pairs: (0, 1) is off by 0.6 − 0, (1, 2) by 0.8 − 0.28, (0, 2) agrees at −0.6.
        let s3 = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, -0.6, 0.8]).view([3, 2]);
        let t3 = Tensor::from_slice(&[1.0f32, 0.0, 0.6, 0.8, -0.6, 0.8]).view([3, 2]);
        let expected = 2.0 * (0.6f64.powi(2) + (0.8f64 - 0.28).powi(2)) / 6.0;
        assert!((similarity(&s3, &t3) - expected).abs() < 1e-6, "{} vs {expected}", similarity(&s3, &t3));
        // One sentence: no pair, a zero loss that still has a gradient.
        let one = Tensor::from_slice(&[1.0f32, 2.0]).view([1, 2]).set_requires_grad(true);
        let value = SimilarityEmbedding {}.loss(&input(&one, &t.narrow(0, 0, 1), &labels)).unwrap();
        value.backward();
        assert_eq!(value.double_value(&[]), 0.0);
    }
}

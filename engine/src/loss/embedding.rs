//! Losses on sentence embeddings (a `bert` student distilled from an encoder's embeddings, stored by `infer` or
//! computed online): the student's pooled embedding against the teacher's, row by row.
//!
//! - `mse_embedding: {}` — mean squared difference over all elements, as sentence-transformers' `MSELoss` (its
//!   layer-reduction and multilingual distillation recipe).
//! - `cosine_embedding: {}` — mean over sentences of 1 − cos(student, teacher): the direction alone, which is all a
//!   normalised embedder's similarities depend on.

use serde::{Deserialize, Serialize};
use tch::{Reduction, Tensor};

use super::{DistillLoss, LossInput};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MseEmbedding {}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CosineEmbedding {}

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
}

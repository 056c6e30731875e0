//! The gradient a plugin's loss gives the student, compared with central differences of its value. A dense plugin
//! writes its own gradient, and a wrong one trains silently (a student ended at 13.65 % accuracy): `anbiq plugin
//! check` runs this on random logits, and the `plugin` loss term on a slice of the first real batch before it trains.
//!
//! The differences are taken along whole directions, not entry by entry: the gradient's own direction (a gradient off
//! by a factor shows there) and two fixed pseudo-random sign patterns (one wrong in direction shows there). A step of
//! 1e-3·|student| along a direction moves the loss by that times |g|, far above f32 rounding even for a language
//! model's `[4, 4, 49152]` slice, where one entry's own change would drown in it.

use tch::{Kind, Tensor};

use super::error::PluginError;
use super::runner::{CallInput, Runner};

/// Largest accepted error of a directional derivative, relative to |gradient| (plus f32 rounding of the loss).
pub const TOLERANCE: f64 = 1e-2;
/// The step along a direction, relative to |student| (or to √n, for logits near 0): small enough that the loss's
/// curvature does not bend the difference (a normalised embedding's rows are short), large enough to stand far above
/// f32 rounding of the loss.
const STEP: f64 = 1e-3;
/// Directions compared: the gradient's own, and this many sign patterns.
const PATTERNS: u64 = 2;

/// The outcome of one check.
#[derive(Clone, Copy, Debug)]
pub struct GradientCheck {
    /// Directions compared.
    pub directions: usize,
    /// The largest error of a directional derivative, relative to |gradient|.
    pub worst: f64,
    /// Whether every direction agreed within the tolerance (and f32 rounding of the loss).
    pub ok: bool,
    /// The loss at the given logits, and the fuel that value-and-gradient call used.
    pub loss: f64,
    pub fuel: u64,
}

impl GradientCheck {
    pub fn ok(&self) -> bool {
        self.ok
    }
}

/// Compares d loss / d student with central differences of the loss along a few directions (any shape of student).
/// Draws nothing from libtorch's random generator, so training after the check is what it would have been.
pub fn check(
    runner: &mut Runner,
    student: &Tensor,
    teacher: &Tensor,
    labels: &Tensor,
    progress: f64,
) -> Result<GradientCheck, PluginError> {
    let student = student.detach().to_kind(Kind::Float);
    let teacher = teacher.detach().to_kind(Kind::Float);
    let s = student.copy().set_requires_grad(true);
    let loss = runner.loss(&CallInput { student: &s, teacher: &teacher, labels, progress })?;
    let (value, fuel) = (loss.double_value(&[]), runner.last_fuel);
    loss.backward();
    let grad = s.grad().reshape([-1]);
    let norm = grad.norm().double_value(&[]);
    let n = student.numel();
    let step = STEP * student.norm().double_value(&[]).max((n as f64).sqrt());
    let mut directions: Vec<Tensor> = (0..PATTERNS).map(|k| signs(n, k, student.device())).collect();
    if norm > 0.0 && norm.is_finite() {
        directions.insert(0, &grad / norm);
    }
    let mut at = |v: &Tensor, h: f64| -> Result<f64, PluginError> {
        let x = (student.reshape([-1]) + v * h).reshape(student.size());
        Ok(tch::no_grad(|| runner.loss(&CallInput { student: &x, teacher: &teacher, labels, progress }))?
            .double_value(&[]))
    };
    // What f32 rounding of the loss alone can make of a difference quotient.
    let rounding = 16.0 * f64::from(f32::EPSILON) * (value.abs() + 1.0) / step;
    let (mut worst, mut ok) = (0.0f64, norm.is_finite());
    for v in &directions {
        let difference = (at(v, step)? - at(v, -step)?) / (2.0 * step);
        let expected = grad.dot(v).double_value(&[]);
        let error = (difference - expected).abs();
        ok &= error <= TOLERANCE * norm + rounding;
        worst = worst.max(error / norm.max(1e-12));
    }
    Ok(GradientCheck { directions: directions.len(), worst, ok, loss: value, fuel })
}

/// A unit vector of ±1/√n entries in a fixed pseudo-random pattern `k` (splitmix64 of the index).
fn signs(n: usize, k: u64, device: tch::Device) -> Tensor {
    let scale = 1.0 / (n.max(1) as f32).sqrt();
    let values: Vec<f32> = (0..n as u64)
        .map(|i| {
            let mut z = (i ^ (k << 48)).wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            if (z ^ (z >> 31)) & 1 == 0 {
                scale
            } else {
                -scale
            }
        })
        .collect();
    Tensor::from_slice(&values).to_device(device)
}

//! The gradient a plugin's loss gives the student, compared with central differences of its value. A dense plugin
//! writes its own gradient, and a wrong one trains silently (a student ended at 13.65 % accuracy): `anbiq plugin
//! check` runs this on random logits, and the `plugin` loss term on a slice of the first real batch before it trains.

use tch::{Kind, Tensor};

use super::error::PluginError;
use super::runner::{CallInput, Runner};

/// Largest accepted error, relative to the largest |gradient| (f32 central differences with a step of 1e-2).
pub const TOLERANCE: f64 = 1e-2;
/// Entries compared, spread over the student's logits.
const ENTRIES: usize = 24;
const STEP: f64 = 1e-2;

/// The outcome: the largest error over the compared entries, relative to the largest |gradient|.
#[derive(Clone, Copy, Debug)]
pub struct GradientCheck {
    pub entries: usize,
    pub worst: f64,
    /// The loss at the given logits.
    pub loss: f64,
}

impl GradientCheck {
    pub fn ok(&self) -> bool {
        self.worst <= TOLERANCE
    }
}

/// Compares d loss / d student with central differences at up to 24 entries of `student` (any shape).
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
    let value = loss.double_value(&[]);
    loss.backward();
    let grad = s.grad().reshape([-1]);
    let scale = grad.abs().max().double_value(&[]).max(1e-6);
    let n = student.numel();
    let entries: Vec<usize> =
        if n <= ENTRIES { (0..n).collect() } else { (0..ENTRIES).map(|i| (i * 7919) % n).collect() };
    let flat = student.reshape([-1]);
    let mut worst: f64 = 0.0;
    for &i in &entries {
        let mut at = |delta: f64| -> Result<f64, PluginError> {
            let x = flat.copy();
            let _ = x.get(i as i64).fill_(flat.double_value(&[i as i64]) + delta);
            let x = x.reshape(student.size());
            Ok(tch::no_grad(|| runner.loss(&CallInput { student: &x, teacher: &teacher, labels, progress }))?
                .double_value(&[]))
        };
        let difference = (at(STEP)? - at(-STEP)?) / (2.0 * STEP);
        worst = worst.max((difference - grad.double_value(&[i as i64])).abs() / scale);
    }
    Ok(GradientCheck { entries: entries.len(), worst, loss: value })
}

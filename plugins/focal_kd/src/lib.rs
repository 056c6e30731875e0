//! Focal KD: per-sample `T²·KL(p ‖ q)` weighted by `(1 − q₁(y))^γ`, where `q₁(y)` is the student's probability
//! of the true label at T = 1; samples it already gets right count less. Batch-mean, so γ = 0 is plain KD without
//! the CE term. The weight is differentiated too (no stop-gradient), so the gradient is the loss's true one.
#![no_std]

use anbiq_sdk::{export_loss, param, Tensor};

fn focal_kd(student: Tensor, teacher: Tensor, labels: Tensor) -> Tensor {
    let (t, gamma) = (param("temperature"), param("gamma"));
    let log_q = student.log_softmax(t);
    let log_p = teacher.log_softmax(t);
    let per_sample = (log_p.exp() * (log_p - log_q)).sum(-1) * (t * t);
    let p_true = student.softmax(1.0).gather(-1, labels.unsqueeze(-1)).sum(-1);
    let weight = p_true.rsub(1.0).clamp(0.0, 1.0).pow(gamma);
    (per_sample * weight).mean_all()
}

export_loss!(
    focal_kd,
    r#"{"name": "focal_kd", "kind": "loss", "style": "tensor",
        "description": "KD weighted by (1 - p_student(label))^gamma",
        "params": [
          {"name": "temperature", "type": "float", "default": 4.0, "min": 0.000001},
          {"name": "gamma", "type": "float", "default": 2.0, "min": 0.0}]}"#
);

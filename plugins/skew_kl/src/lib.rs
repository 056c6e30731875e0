//! DistiLLM's α-skew KL (Ko et al. 2024): `KL(p ‖ α·p + (1−α)·q)` with p the teacher's and q the student's
//! softmax at temperature T, times T², batch-mean. Bounded, and stable where q has vanishing mass.
#![no_std]

use anbiq_sdk::{export_loss, param, Tensor};

fn skew_kl(student: Tensor, teacher: Tensor, _labels: Tensor) -> Tensor {
    let (t, alpha) = (param("temperature"), param("alpha"));
    let p = teacher.softmax(t);
    let q = student.softmax(t);
    let mix = p * alpha + q * (1.0 - alpha);
    let log_p = teacher.log_softmax(t);
    (p * (log_p - mix.clamp(1e-30, 1.0).log())).sum(-1).mean_all() * (t * t)
}

export_loss!(
    skew_kl,
    r#"{"name": "skew_kl", "kind": "loss", "style": "tensor",
        "description": "alpha-skew KL: T^2 * KL(teacher || alpha*teacher + (1-alpha)*student)",
        "params": [
          {"name": "temperature", "type": "float", "default": 1.0, "min": 0.000001},
          {"name": "alpha", "type": "float", "default": 0.1, "min": 0.0, "max": 0.999}]}"#
);

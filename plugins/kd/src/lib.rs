//! Hinton et al. (2015): `α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, y)`, batch-mean, computed op for op as
//! anbiq's native `kd` loss (so the two agree bit for bit).
#![no_std]

use anbiq_sdk::{export_loss, param, Reduction, Tensor};

fn kd(student: Tensor, teacher: Tensor, labels: Tensor) -> Tensor {
    let (t, alpha) = (param("temperature"), param("alpha"));
    // Averaged per row: per sample for [B, C] logits, per token for a language model's [B, T, V].
    let rows = (student.numel() as i64 / student.size(-1)) as f64;
    let kl = student.log_softmax(t).kl_div(teacher.log_softmax(t), Reduction::Sum, true);
    let soft = kl * (t * t / rows);
    let hard = student.cross_entropy(labels, Reduction::Mean);
    soft * alpha + hard * (1.0 - alpha)
}

export_loss!(
    kd,
    r#"{"name": "kd", "kind": "loss", "style": "tensor",
        "description": "Hinton KD: alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE(student, labels)",
        "params": [
          {"name": "temperature", "type": "float", "default": 4.0, "min": 0.000001, "description": "softmax temperature"},
          {"name": "alpha", "type": "float", "default": 0.9, "min": 0.0, "max": 1.0, "description": "weight of the soft term"}]}"#
);

//! Reverse KL, `T²·KL(softmax(s/T) ‖ softmax(t/T))`, batch-mean: mode-seeking, the student concentrates on the
//! teacher's main modes instead of covering all of them (as in MiniLLM).
#![no_std]

use anbiq_sdk::{export_loss, param, Tensor};

fn reverse_kl(student: Tensor, teacher: Tensor, _labels: Tensor) -> Tensor {
    let t = param("temperature");
    let log_q = student.log_softmax(t);
    let log_p = teacher.log_softmax(t);
    (log_q.exp() * (log_q - log_p)).sum(-1).mean_all() * (t * t)
}

export_loss!(
    reverse_kl,
    r#"{"name": "reverse_kl", "kind": "loss", "style": "tensor",
        "description": "T^2 * KL(student || teacher), batch-mean",
        "params": [{"name": "temperature", "type": "float", "default": 1.0, "min": 0.000001}]}"#
);

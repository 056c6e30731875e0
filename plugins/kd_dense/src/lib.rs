//! Hinton KD in dense style: the same loss as `kd`, computed in the guest on f32 copies of the logits (in f64),
//! returning the loss and its gradient `α·T·(q−p)/B + (1−α)·(softmax(s) − onehot(y))/B`.
#![no_std]

extern crate alloc;

use alloc::vec;
use anbiq_sdk::math::{exp, ln};
use anbiq_sdk::{export_dense_loss, param, DenseInput};

/// softmax(x / t) into `out`, returning log Σ exp(x/t − max) for the log-probabilities.
fn softmax(x: &[f32], t: f64, out: &mut [f64]) -> f64 {
    let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64 / t));
    let mut z = 0.0;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = exp(v as f64 / t - max);
        z += *o;
    }
    for o in out.iter_mut() {
        *o /= z;
    }
    max + ln(z)
}

fn kd_dense(input: &DenseInput, grad: &mut [f32]) -> f32 {
    let (t, alpha) = (param("temperature"), param("alpha"));
    let (b, c) = (input.batch, input.classes);
    let (mut p, mut q, mut q1) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
    let (mut kl, mut ce) = (0.0, 0.0);
    for r in 0..b {
        let (s, te) = (&input.student[r * c..(r + 1) * c], &input.teacher[r * c..(r + 1) * c]);
        let lse_p = softmax(te, t, &mut p);
        let lse_q = softmax(s, t, &mut q);
        let lse_1 = softmax(s, 1.0, &mut q1);
        let y = input.labels[r] as usize;
        for j in 0..c {
            let (log_p, log_q) = (te[j] as f64 / t - lse_p, s[j] as f64 / t - lse_q);
            kl += p[j] * (log_p - log_q);
            let onehot = if j == y { 1.0 } else { 0.0 };
            let g = alpha * t * (q[j] - p[j]) + (1.0 - alpha) * (q1[j] - onehot);
            grad[r * c + j] = (g / b as f64) as f32;
        }
        ce -= s[y] as f64 - lse_1;
    }
    (alpha * t * t * kl / b as f64 + (1.0 - alpha) * ce / b as f64) as f32
}

export_dense_loss!(
    kd_dense,
    r#"{"name": "kd_dense", "kind": "loss", "style": "dense",
        "description": "Hinton KD computed in the guest (dense style)",
        "params": [
          {"name": "temperature", "type": "float", "default": 4.0, "min": 0.000001},
          {"name": "alpha", "type": "float", "default": 0.9, "min": 0.0, "max": 1.0}]}"#
);

//! Sequence outputs as rows: a language model's logits `[B, T, V]` and labels `[B, T]` become `[B·T, V]` and
//! `[B·T]`, so every per-sample loss and metric (cross-entropy, KD, accuracy, plugins) works per token unchanged and
//! averages over tokens. Classifier shapes pass through.

use tch::Tensor;

/// `[.., C]` → `[N, C]`: all leading dimensions folded into rows.
pub fn rows(logits: &Tensor) -> Tensor {
    if logits.dim() == 2 {
        logits.shallow_clone()
    } else {
        logits.flatten(0, -2)
    }
}

/// Labels `[..]` → `[N]`, matching [`rows`].
pub fn labels(y: &Tensor) -> Tensor {
    if y.dim() == 1 {
        y.shallow_clone()
    } else {
        y.flatten(0, -1)
    }
}

/// Cross-entropy of logits against labels, averaged over every token (or sample).
pub fn cross_entropy(logits: &Tensor, y: &Tensor) -> Tensor {
    rows(logits).cross_entropy_for_logits(&labels(y))
}

//! `1 − cos(student, teacher)` of sentence embeddings, averaged over sentences: the built-in `cosine_embedding` as a
//! plugin, and the example of a loss on embeddings (`"inputs": "embeddings"` in describe; see plugins/ABI.md).
#![no_std]

use anbiq_sdk::{export_loss, Tensor};

fn cosine_embedding(student: Tensor, teacher: Tensor, _labels: Tensor) -> Tensor {
    let dot = (student * teacher).sum(-1);
    let norms = ((student * student).sum(-1) * (teacher * teacher).sum(-1)).sqrt();
    (dot / norms.clamp(1e-12, f64::INFINITY)).rsub(1.0).mean_all()
}

export_loss!(
    cosine_embedding,
    r#"{"name": "cosine_embedding", "kind": "loss", "style": "tensor", "inputs": "embeddings",
        "description": "1 - cos(student, teacher) of sentence embeddings, mean over sentences", "params": []}"#
);

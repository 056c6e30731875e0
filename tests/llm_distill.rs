//! Distillation of a language model at LLM scale, on a tiny Llama trained here on bytes of text: the loss computed a
//! chunk of positions at a time (the output projection inside the chunk) trains the same student as the loss over the
//! whole batch, for both top-k tails, an online teacher and label-only training.

use std::collections::BTreeMap;

use tch::Tensor;

mod common;
use common::Project;

const TEXT: &str = "To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer \
The slings and arrows of outrageous fortune, Or to take arms against a sea of troubles ";

const LLAMA: &str = "{arch: llama, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 3, \
num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64}";

/// Teacher, its top-k logits, a pruned start, and students whose loss is chunked by `chunk` positions.
fn workflow(chunk: i64) -> String {
    format!(
        "seed: 5\nsteps:\n  \
         text: {{kind: dataset, source: text, path: text.txt, tokenizer: byte, context: 16, split: {{val: 0.1}}}}\n  \
         teacher: {{kind: train, data: text.train, epochs: 1, batch_size: 16, model: {LLAMA}}}\n  \
         logits: {{kind: infer, model: teacher, data: text.train, store: {{top_k: 8}}}}\n  \
         pruned: {{kind: prune, model: teacher, data: text.train, calibration: 16, layers: {{count: 2, by: block_influence}}}}\n  \
         even: {{kind: distill, teacher: logits, data: text.train, init: pruned, loss: {{kd: {{temperature: 2, alpha: 0.5}}}}, epochs: 1, batch_size: 8, loss_chunk: {chunk}}}\n  \
         shaped: {{kind: distill, teacher: logits, data: text.train, init: pruned, top_k_tail: student, loss: {{kd: {{temperature: 1, alpha: 1}}}}, epochs: 1, batch_size: 8, loss_chunk: {chunk}}}\n  \
         online: {{kind: distill, teacher: teacher, data: text.train, init: pruned, loss: [{{reverse_kl: {{}}, weight: 0.5}}, {{mse_logits: {{}}, weight: 0.1}}], epochs: 1, batch_size: 8, loss_chunk: {chunk}}}\n  \
         labels: {{kind: train, data: text.train, init: pruned, epochs: 1, batch_size: 8, loss_chunk: {chunk}}}\n"
    )
}

fn weights(p: &Project, step: &str) -> BTreeMap<String, Tensor> {
    anbiq::nn::weights::safetensors::read(&p.output(step, "model").join("weights.safetensors")).unwrap()
}

#[test]
fn a_loss_in_chunks_of_positions_trains_the_student_the_whole_batch_trains() {
    let run = |chunk: i64| {
        let p = Project::new(&workflow(chunk));
        p.write("text.txt", TEXT.repeat(12));
        p.run(&[]);
        p
    };
    // 16 positions a window, 8 windows a batch: 7 splits windows and leaves a short last chunk; 4096 is one chunk.
    let (chunked, whole) = (run(7), run(4096));
    let start = weights(&chunked, "pruned");
    for step in ["even", "shaped", "online", "labels"] {
        let (a, b) = (weights(&chunked, step), weights(&whole, step));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        let worst = a.iter().map(|(k, w)| (w - &b[k]).abs().max().double_value(&[])).fold(0.0, f64::max);
        assert!(worst < 1e-5, "{step}: weights differ by {worst}");
        let moved = a.iter().map(|(k, w)| (w - &start[k]).abs().max().double_value(&[]));
        assert!(moved.fold(0.0, f64::max) > 1e-3, "{step}: training changed the weights");
    }
}

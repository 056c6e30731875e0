//! Language-model metrics from next-token logits `[N, T, V]` over held-out windows.
//!
//! - `nll`: mean next-token cross-entropy in nats (every position of every window; positions early in a window see
//!   less context, as in any non-overlapping evaluation);
//! - `perplexity` = e^nll;
//! - `bits_per_char` = total bits / characters the tokens stand for (= nll / ln 2 for a char vocabulary);
//! - `bits_per_byte` = total bits / UTF-8 bytes the tokens stand for: comparable across tokenizers;
//! - `accuracy`: next-token accuracy; `agreement` (with a reference model): same arg-max next token.

use std::collections::BTreeMap;

use tch::Tensor;

use crate::data::Vocab;
use crate::nn::tokens;

/// The metrics above (and those the classifier report shares: top-5 accuracy, ECE) for logits `[N, T, V]`.
pub fn quality(logits: &Tensor, y: &Tensor, vocab: &Vocab) -> BTreeMap<String, f64> {
    let (rows, labels) = (tokens::rows(logits), tokens::labels(y));
    let mut m = crate::steps::evaluate::quality(&rows, &labels, vocab.size());
    let nll = m["nll"];
    let n_tokens = labels.numel() as f64;
    m.insert("perplexity".into(), nll.exp());
    let bits = nll * n_tokens / std::f64::consts::LN_2;
    let size = vocab.text_size(&labels);
    m.insert("bits_per_char".into(), bits / size.characters as f64);
    m.insert("bits_per_byte".into(), bits / size.bytes as f64);
    m.insert("tokens".into(), n_tokens);
    m.remove("errors");
    m
}

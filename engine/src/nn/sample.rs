//! Sampling text from a language model, deterministically for a seed: every random draw comes from an anbiq
//! [`Rng`] (one uniform per sequence per token, turned into a token by inverting the filtered distribution's CDF).
//!
//! ```yaml
//! sampling: {temperature: 0.8, top_k: 20, top_p: 0.95}   # temperature 0: greedy (arg-max)
//! ```

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::nn::{KvCache, Mode, Model};
use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// Logits are divided by it; 0 picks the most likely token.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Sample only among the k most likely tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i64>,
    /// Sample only among the most likely tokens whose probabilities add up to at least p (nucleus sampling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
}

fn one() -> f64 {
    1.0
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { temperature: 1.0, top_k: None, top_p: None }
    }
}

impl Sampling {
    /// Problems as (field, message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            problems.push(("temperature".into(), format!("must be 0 or more, got {}", self.temperature)));
        }
        if matches!(self.top_k, Some(k) if k < 1) {
            problems.push(("top_k".into(), "must be at least 1".into()));
        }
        if matches!(self.top_p, Some(p) if !(p > 0.0 && p <= 1.0)) {
            problems.push(("top_p".into(), "must be in (0, 1]".into()));
        }
        problems
    }

    /// One token per row of `logits` `[B, V]`, given one uniform draw per row `u` `[B]` in [0, 1).
    pub fn pick(&self, logits: &Tensor, u: &Tensor) -> Tensor {
        if self.temperature == 0.0 {
            return logits.argmax(-1, false);
        }
        let v = logits.size()[1];
        // Stable sort: equal logits keep their token order, so ties never depend on the sort's implementation.
        let (sorted, order) = (logits.to_kind(Kind::Float) / self.temperature).sort_stable(true, -1, true);
        let mut probs = sorted.softmax(-1, Kind::Float);
        let rank = Tensor::arange(v, (Kind::Int64, logits.device())).unsqueeze(0);
        if let Some(k) = self.top_k {
            probs *= rank.lt(k).to_kind(Kind::Float);
        }
        if let Some(p) = self.top_p {
            // Keep a token if the mass before it is still short of p (so the first is always kept).
            let before = probs.cumsum(-1, Kind::Float) - &probs;
            probs = &probs * before.lt(p).to_kind(Kind::Float);
        }
        let cdf = probs.cumsum(-1, Kind::Float);
        let threshold = u.to_kind(Kind::Float).unsqueeze(-1) * cdf.narrow(1, v - 1, 1);
        let position = cdf.le_tensor(&threshold).sum_dim_intlist(-1, true, Kind::Int64).clamp_max(v - 1);
        order.gather(-1, &position, false).squeeze_dim(-1)
    }
}

/// Continues each row of `prompt` (`[B, p]` token ids) by `new_tokens`, feeding the model at most its last
/// `context` tokens; returns `[B, p + new_tokens]` on the CPU. A model with a [`crate::nn::Decoder`] decodes
/// incrementally while the sequence fits its context; otherwise (or past the context) each token costs a forward pass
/// over the last `context` tokens.
pub fn generate(
    model: &dyn Model,
    prompt: &Tensor,
    new_tokens: i64,
    context: i64,
    sampling: &Sampling,
    rng: &mut Rng,
    device: Device,
) -> Tensor {
    let batch = prompt.size()[0];
    let mut seq = prompt.to_kind(Kind::Int64).to_device(device);
    // The last token fed sits at position p + new − 2, which must be inside the context for the cache.
    let cached = model.decoder().filter(|_| prompt.size()[1] + new_tokens - 1 <= context);
    let mut cache = KvCache::default();
    tch::no_grad(|| {
        for i in 0..new_tokens {
            let len = seq.size()[1];
            let logits = match cached {
                Some(decoder) if i == 0 => decoder.decode(&seq, &mut cache),
                Some(decoder) => decoder.decode(&seq.narrow(1, len - 1, 1), &mut cache),
                None => model.forward(&seq.narrow(1, (len - context).max(0), len.min(context)), Mode::Eval),
            }
            .select(1, -1);
            let draws: Vec<f32> = (0..batch).map(|_| rng.uniform_f32()).collect();
            let next = sampling.pick(&logits, &Tensor::from_slice(&draws).to_device(device));
            seq = Tensor::cat(&[seq.shallow_clone(), next.unsqueeze(1)], 1);
        }
    });
    seq.to_device(Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_follows_the_filtered_distribution() {
        // probabilities 0.5, 0.25, 0.125, 0.125 for tokens 2, 0, 1, 3 (ties keep token order)
        let logits = Tensor::from_slice(&[2f32.ln(), 0.0, 4f32.ln(), 0.0]).view([1, 4]) + 0.0;
        let logits = logits.log_softmax(-1, Kind::Float);
        let at = |s: &Sampling, u: f32| s.pick(&logits, &Tensor::from_slice(&[u])).int64_value(&[0]);
        let plain = Sampling::default();
        assert_eq!([at(&plain, 0.1), at(&plain, 0.6), at(&plain, 0.8), at(&plain, 0.95)], [2, 0, 1, 3]);
        let greedy = Sampling { temperature: 0.0, ..Default::default() };
        assert_eq!(at(&greedy, 0.99), 2);
        let top2 = Sampling { top_k: Some(2), ..Default::default() };
        assert_eq!([at(&top2, 0.6), at(&top2, 0.7), at(&top2, 0.99)], [2, 0, 0]);
        // top_p 0.7: tokens 2 (0.5, before it 0) and 0 (before it 0.5 < 0.7) are kept; 1 (before it 0.75) is not.
        let nucleus = Sampling { top_p: Some(0.7), ..Default::default() };
        assert_eq!([at(&nucleus, 0.5), at(&nucleus, 0.99)], [2, 0]);
    }
}

//! A decoder-only transformer (GPT-2 style) for language modelling: token ids `[B, t]` (t ≤ `context`) → next-token
//! logits `[B, t, vocab]`.
//!
//! ```yaml
//! model: {arch: gpt, layers: 4, heads: 4, d_model: 256, context: 128, dropout: 0.1}
//! ```
//! Learned positions; pre-norm blocks `h += attn(ln(h)); h += mlp(ln(h))` with causal self-attention through
//! libtorch's `scaled_dot_product_attention` (`is_causal`, so a position never sees later ones) and a GELU MLP
//! (`d_ff` wide, 4 × `d_model` by default); a final layer norm; the output projection shares the token embedding (`tied`, default). Weights start
//! `N(0, 0.02²)`, residual projections `N(0, (0.02/√(2·layers))²)` as in GPT-2. Dropout (embeddings and each
//! residual branch) draws its masks from the step's [`Rng`]; there is none inside attention, whose own dropout would
//! use libtorch's global generator.

use super::{check_dropout, Architecture};
use crate::nn::layers::{Dropout, Embedding, LayerNorm, Linear};
use crate::nn::model::with_cached;
use crate::nn::prune::Trace;
use crate::nn::{Blocks, Decoder, KvCache, LanguageModel, Mode, Model};
use crate::rng::Rng;
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GptConfig {
    /// Transformer blocks.
    pub layers: i64,
    /// Attention heads per block.
    pub heads: i64,
    /// Width of the residual stream.
    pub d_model: i64,
    /// The longest input, in tokens (rows of the position table).
    pub context: i64,
    /// Dropout in attention and MLP outputs during training.
    #[serde(default)]
    pub dropout: f64,
    /// Output projection = token embedding (transposed).
    #[serde(default = "default_true")]
    pub tied: bool,
    /// Width of each block's MLP; 4 × `d_model` when left out (`prune` with `mlp` narrows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_ff: Option<i64>,
}

impl GptConfig {
    pub fn d_ff(&self) -> i64 {
        self.d_ff.unwrap_or(4 * self.d_model)
    }
}

fn default_true() -> bool {
    true
}

impl Architecture for GptConfig {
    fn name(&self) -> &'static str {
        "gpt"
    }

    fn validate(&self) -> Result<(), String> {
        for (field, v) in [
            ("layers", self.layers),
            ("heads", self.heads),
            ("d_model", self.d_model),
            ("context", self.context),
            ("d_ff", self.d_ff()),
        ] {
            if v <= 0 {
                return Err(format!("model.{field}: must be positive, got {v}"));
            }
        }
        if self.d_model % self.heads != 0 {
            return Err(format!("model.heads: must divide d_model = {}, got {}", self.d_model, self.heads));
        }
        check_dropout("model.dropout", self.dropout)
    }

    fn build(&self, vs: &nn::Path, input_shape: &[i64], classes: i64, rng: &mut Rng) -> Result<Box<dyn Model>> {
        ensure!(
            input_shape.len() == 1 && input_shape[0] <= self.context,
            "gpt: takes token windows [T] with T ≤ context = {}, the data's samples are {input_shape:?}",
            self.context
        );
        Ok(Box::new(Gpt::new(self, vs, classes, rng)))
    }
}

struct Block {
    ln1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ln2: LayerNorm,
    fc: Linear,
    out: Linear,
}

/// Parameters: `wte`, `wpe`, `blocks.{i}.{ln1,qkv,proj,ln2,fc,out}`, `ln_f`, and `head` when not tied.
pub struct Gpt {
    wte: Embedding,
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    head: Option<Linear>,
    heads: i64,
    dropout: Dropout,
}

impl Gpt {
    pub fn new(c: &GptConfig, vs: &nn::Path, vocab: i64, rng: &mut Rng) -> Self {
        let d = c.d_model;
        let residual_std = 0.02 / ((2 * c.layers) as f64).sqrt();
        let wte = Embedding::new(&(vs / "wte"), vocab, d, rng);
        let wpe = Embedding::new(&(vs / "wpe"), c.context, d, rng);
        let blocks = (0..c.layers)
            .map(|i| {
                let p = vs / "blocks" / i;
                Block {
                    ln1: LayerNorm::new(&(&p / "ln1"), d),
                    qkv: Linear::normal(&(&p / "qkv"), d, 3 * d, 0.02, rng),
                    proj: Linear::normal(&(&p / "proj"), d, d, residual_std, rng),
                    ln2: LayerNorm::new(&(&p / "ln2"), d),
                    fc: Linear::normal(&(&p / "fc"), d, c.d_ff(), 0.02, rng),
                    out: Linear::normal(&(&p / "out"), c.d_ff(), d, residual_std, rng),
                }
            })
            .collect();
        let ln_f = LayerNorm::new(&(vs / "ln_f"), d);
        let head = (!c.tied).then(|| Linear::normal(&(vs / "head"), d, vocab, 0.02, rng));
        Gpt { wte, wpe, blocks, ln_f, head, heads: c.heads, dropout: Dropout::new(c.dropout) }
    }

    /// Causal self-attention of `x` `[B, t, d]`; with a cache slot, after the keys and values stored there (which
    /// then include `x`'s).
    fn attention(
        &self,
        b: &Block,
        x: &Tensor,
        past: Option<&mut Option<(Tensor, Tensor)>>,
        trace: Option<(&mut Trace, usize)>,
    ) -> Tensor {
        let (batch, t, d) = x.size3().expect("[B, t, d]");
        let split = |z: &Tensor| z.view([batch, t, self.heads, d / self.heads]).transpose(1, 2);
        let qkv = b.qkv.forward(x).chunk(3, -1);
        let (q, k, v) = (split(&qkv[0]), split(&qkv[1]), split(&qkv[2]));
        let (k, v, causal) = with_cached(past, k, v);
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, causal, None, false);
        if let Some((trace, layer)) = trace {
            trace.add_heads(layer, &y, None);
        }
        b.proj.forward(&y.transpose(1, 2).contiguous().view([batch, t, d]))
    }

    /// Final hidden states (after `ln_f`) of `x`.
    fn run(&self, x: &Tensor, mode: Mode<'_>, cache: Option<&mut KvCache>) -> Tensor {
        self.run_blocks(x, mode, cache, None, None)
    }

    /// Logits of `x` through the blocks in `keep` only (in order): the model with the others removed.
    pub fn forward_layers(&self, x: &Tensor, keep: &[usize]) -> Tensor {
        self.project(&self.run_blocks(x, Mode::Eval, None, Some(keep), None))
    }

    /// Logits of `x` in eval mode, adding what pruning scores need to `trace` (see [`Trace`]).
    pub fn forward_traced(&self, x: &Tensor, trace: &mut Trace) -> Tensor {
        self.project(&self.run_blocks(x, Mode::Eval, None, None, Some(trace)))
    }

    pub fn layers(&self) -> usize {
        self.blocks.len()
    }

    /// Final hidden states of `x` through the blocks (those in `keep`, if given).
    fn run_blocks(
        &self,
        x: &Tensor,
        mut mode: Mode<'_>,
        mut cache: Option<&mut KvCache>,
        keep: Option<&[usize]>,
        mut trace: Option<&mut Trace>,
    ) -> Tensor {
        let t = x.size()[1];
        let offset = cache.as_ref().map_or(0, |c| c.len);
        let mut h = self.embed_from(x, offset, &mut mode);
        if let Some(c) = cache.as_deref_mut() {
            c.layers.resize_with(self.blocks.len(), || None);
            c.len += t;
        }
        if let Some(trace) = trace.as_deref_mut() {
            let channels = self.blocks.first().map_or(0, |b| b.fc.weight.size()[0]);
            trace.start_batch(self.blocks.len(), channels, self.heads, x.numel() as i64, x.device());
        }
        for (i, b) in self.blocks.iter().enumerate() {
            if keep.is_some_and(|keep| !keep.contains(&i)) {
                continue;
            }
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            h = self.block_of(b, &h, slot, &mut mode, trace.as_deref_mut().map(|t| (t, i)));
        }
        self.ln_f.forward(&h)
    }

    /// Token and position embeddings of `x`, its first token at position `offset`, with dropout.
    fn embed_from(&self, x: &Tensor, offset: i64, mode: &mut Mode<'_>) -> Tensor {
        let positions = Tensor::arange_start(offset, offset + x.size()[1], (Kind::Int64, x.device()));
        self.dropout.forward(&(self.wte.forward(x) + self.wpe.forward(&positions)), mode)
    }

    /// One pre-norm block: attention, then the MLP, each added to the residual stream after dropout.
    fn block_of(
        &self,
        b: &Block,
        h: &Tensor,
        past: Option<&mut Option<(Tensor, Tensor)>>,
        mode: &mut Mode<'_>,
        mut trace: Option<(&mut Trace, usize)>,
    ) -> Tensor {
        let traced = trace.as_mut().map(|(t, i)| (&mut **t, *i));
        let mid = h + self.dropout.forward(&self.attention(b, &b.ln1.forward(h), past, traced), mode);
        let act = b.fc.forward(&b.ln2.forward(&mid)).gelu("none");
        let out = &mid + self.dropout.forward(&b.out.forward(&act), mode);
        if let Some((trace, i)) = trace {
            trace.add_mlp(i, &act, None);
            trace.add_cosine(i, h, &out, None);
        }
        out
    }

    fn project(&self, h: &Tensor) -> Tensor {
        match &self.head {
            Some(head) => head.forward(h),
            None => h.matmul(&self.wte.weight.tr()),
        }
    }
}

impl Model for Gpt {
    fn forward(&self, x: &Tensor, mode: Mode<'_>) -> Tensor {
        self.project(&self.run(x, mode, None))
    }

    fn decoder(&self) -> Option<&dyn Decoder> {
        Some(self)
    }

    fn language_model(&self) -> Option<&dyn LanguageModel> {
        Some(self)
    }
}

impl LanguageModel for Gpt {
    fn hidden(&self, x: &Tensor, mode: Mode<'_>) -> Tensor {
        self.run(x, mode, None)
    }

    fn logits_of(&self, hidden: &Tensor) -> Tensor {
        self.project(hidden)
    }

    fn head_parameters(&self) -> Vec<Tensor> {
        match &self.head {
            Some(head) => vec![head.weight.shallow_clone(), head.bias.shallow_clone()],
            None => vec![self.wte.weight.shallow_clone()],
        }
    }

    fn blocks(&self) -> Option<&dyn Blocks> {
        Some(self)
    }
}

impl Blocks for Gpt {
    fn count(&self) -> usize {
        self.blocks.len()
    }

    fn embed(&self, x: &Tensor, mut mode: Mode<'_>) -> Tensor {
        self.embed_from(x, 0, &mut mode)
    }

    fn block(&self, i: usize, h: &Tensor, mut mode: Mode<'_>) -> Tensor {
        self.block_of(&self.blocks[i], h, None, &mut mode, None)
    }

    fn finish(&self, h: &Tensor) -> Tensor {
        self.ln_f.forward(h)
    }
}

impl Decoder for Gpt {
    fn decode(&self, x: &Tensor, cache: &mut KvCache) -> Tensor {
        self.project(&self.run(x, Mode::Eval, Some(cache)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device};

    fn tiny() -> GptConfig {
        GptConfig { layers: 2, heads: 2, d_model: 16, context: 12, dropout: 0.1, tied: true, d_ff: None }
    }

    #[test]
    fn a_position_never_sees_later_tokens() {
        let vs = VarStore::new(Device::Cpu);
        let model = tiny().build(&vs.root(), &[12], 7, &mut Rng::new(3)).unwrap();
        let x = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5]).view([1, 12]);
        let changed = x.copy();
        let _ = changed.get(0).get(8).fill_(6);
        let (a, b) = tch::no_grad(|| (model.forward(&x, Mode::Eval), model.forward(&changed, Mode::Eval)));
        assert_eq!(a.size(), [1, 12, 7]);
        assert!(a.narrow(1, 0, 8).equal(&b.narrow(1, 0, 8)), "positions before the change must not move");
        assert!(!a.narrow(1, 8, 4).equal(&b.narrow(1, 8, 4)), "positions from the change on must");
        // Shorter inputs are fine and give the same logits as the prefix of a longer one.
        let short = tch::no_grad(|| model.forward(&x.narrow(1, 0, 5), Mode::Eval));
        assert!(short.allclose(&a.narrow(1, 0, 5), 1e-5, 1e-6, false));
        // Decoding with a cache (a 5-token prompt, then one token at a time) gives the same logits.
        let mut cache = KvCache::default();
        let decoder = model.decoder().unwrap();
        let mut steps = vec![tch::no_grad(|| decoder.decode(&x.narrow(1, 0, 5), &mut cache))];
        for i in 5..12 {
            steps.push(tch::no_grad(|| decoder.decode(&x.narrow(1, i, 1), &mut cache)));
        }
        assert!(Tensor::cat(&steps, 1).allclose(&a, 1e-5, 1e-5, false));
    }

    #[test]
    fn tied_shares_the_embedding_and_validation_names_fields() {
        let vs = VarStore::new(Device::Cpu);
        tiny().build(&vs.root(), &[12], 7, &mut Rng::new(3)).unwrap();
        let names: Vec<String> = vs.variables().into_keys().collect();
        assert!(names.contains(&"wte.weight".into()) && !names.iter().any(|n| n.starts_with("head")));
        let untied = GptConfig { tied: false, ..tiny() };
        let vs2 = VarStore::new(Device::Cpu);
        untied.build(&vs2.root(), &[12], 7, &mut Rng::new(3)).unwrap();
        assert!(vs2.variables().contains_key("head.weight"));
        assert_eq!(
            GptConfig { heads: 3, ..tiny() }.validate().unwrap_err(),
            "model.heads: must divide d_model = 16, got 3"
        );
        assert!(tiny().build(&vs.root(), &[13], 7, &mut Rng::new(3)).is_err());
    }
}

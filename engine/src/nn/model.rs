//! The [`Model`] trait every architecture implements, and the train/eval [`Mode`] passed to `forward`.

use crate::rng::Rng;
use tch::Tensor;

/// Whether a forward pass trains (dropout active, drawing its masks from the given stream) or evaluates.
///
/// Holding `&mut Rng` instead of a flag makes a training forward pass impossible without a seeded stream, so no layer
/// can fall back to libtorch's global generator.
pub enum Mode<'a> {
    Eval,
    Train(&'a mut Rng),
}

impl Mode<'_> {
    /// A shorter-lived copy of this mode, for handing to one layer after another.
    pub fn reborrow(&mut self) -> Mode<'_> {
        match self {
            Mode::Eval => Mode::Eval,
            Mode::Train(rng) => Mode::Train(rng),
        }
    }

    pub fn is_train(&self) -> bool {
        matches!(self, Mode::Train(_))
    }
}

/// A classifier: input `[B, ..input_shape]` → logits `[B, classes]`. Its parameters live in the `VarStore` it was
/// built in; the model only holds shallow handles to them.
pub trait Model: Send {
    fn forward(&self, x: &Tensor, mode: Mode<'_>) -> Tensor;

    /// Language models that can decode incrementally (keeping attention keys and values between calls) return
    /// themselves here; sampling then costs one position per new token instead of a whole window.
    fn decoder(&self) -> Option<&dyn Decoder> {
        None
    }

    /// Language models whose logits are a linear map of their final hidden states return themselves here, so
    /// training can compute its loss a chunk of positions at a time and never hold `[B, T, V]` logits (see
    /// [`crate::nn::training::chunked`]).
    fn language_model(&self) -> Option<&dyn LanguageModel> {
        None
    }

    /// Sentence encoders return themselves here, so a feature loss can compare their layers' hidden states.
    fn encoder(&self) -> Option<&dyn Encoder> {
        None
    }
}

/// A sentence encoder seen layer by layer: `forward(ids)` is the embedding of [`Encoder::embed_with_states`].
pub trait Encoder {
    /// Encoder layers; the hidden states are numbered `0..=layers` as `transformers`' `output_hidden_states`: 0
    /// the embedding layer's output, `i` the output of layer `i − 1` (0-based), `layers` the last.
    fn layers(&self) -> usize;
    /// Width of the hidden states.
    fn width(&self) -> i64;
    /// The embeddings of token ids `[B, T]`, with the hidden states numbered `states` (each `[B, t, d]`, in that
    /// order) and the mask of real tokens `[B, t]`, the batch cut to its longest sequence.
    fn embed_with_states(&self, ids: &Tensor, states: &[usize]) -> EncoderStates;
}

/// What [`Encoder::embed_with_states`] gives.
pub struct EncoderStates {
    /// `[B, dim]`, f32.
    pub embeddings: Tensor,
    /// The requested hidden states, `[B, t, d]` each.
    pub states: Vec<Tensor>,
    /// True at real (not padding) tokens, `[B, t]`.
    pub mask: Tensor,
}

/// A model split before its output projection: `forward(x) == logits_of(hidden(x))`.
pub trait LanguageModel {
    /// Final hidden states `[B, T, d]`, after the last norm.
    fn hidden(&self, x: &Tensor, mode: Mode<'_>) -> Tensor;
    /// Logits `[.., V]` of hidden states `[.., d]`, in f32.
    fn logits_of(&self, hidden: &Tensor) -> Tensor;
    /// The parameters [`Self::logits_of`] reads (the output projection; the token embedding when the two are tied).
    fn head_parameters(&self) -> Vec<Tensor>;
    /// The trunk as a chain of blocks, for training that keeps only each block's input and recomputes the rest in
    /// the backward pass ([`crate::nn::training::recompute`]); `None` when the model does not offer it.
    fn blocks(&self) -> Option<&dyn Blocks> {
        None
    }
}

/// A language model's trunk as a chain of blocks: `hidden(x, mode)` is
/// `finish(block(n − 1, … block(0, embed(x, mode), mode) …, mode))` with the same random draws, in the same order.
/// Blocks see no key/value cache and start at position 0.
pub trait Blocks {
    /// Blocks in the chain.
    fn count(&self) -> usize;
    /// The first block's input `[B, T, d]`: the tokens' embeddings (with their dropout, in train mode).
    fn embed(&self, x: &Tensor, mode: Mode<'_>) -> Tensor;
    /// Block `i` of `h` `[B, T, d]`, to `[B, T, d]`.
    fn block(&self, i: usize, h: &Tensor, mode: Mode<'_>) -> Tensor;
    /// Final hidden states of the last block's output (the last norm).
    fn finish(&self, h: &Tensor) -> Tensor;
}

/// Incremental decoding with a key/value cache, in eval mode.
pub trait Decoder {
    /// Logits `[B, t, V]` for the tokens `x` `[B, t]` that follow the `cache.len` tokens already seen. The first call
    /// (empty cache) may pass a whole prompt; later calls one token at a time.
    fn decode(&self, x: &Tensor, cache: &mut KvCache) -> Tensor;
}

/// Attention keys and values of the tokens decoded so far, one entry per layer.
#[derive(Default)]
pub struct KvCache {
    pub layers: Vec<Option<(Tensor, Tensor)>>,
    /// Tokens seen.
    pub len: i64,
}

/// Keys and values `[B, heads, t, head_dim]` of one attention layer for the `t` new tokens, joined to what its cache
/// slot (if decoding) holds, which then holds them all. Returns what attention should see and whether it needs the
/// causal mask: a prompt does; one new token after a cached prefix attends to everything (a causal mask would align
/// it with the first key, not the last).
pub fn with_cached(slot: Option<&mut Option<(Tensor, Tensor)>>, k: Tensor, v: Tensor) -> (Tensor, Tensor, bool) {
    let Some(slot) = slot else { return (k, v, true) };
    let (k, v, causal) = match slot.take() {
        Some((pk, pv)) => {
            assert_eq!(k.size()[2], 1, "after a prompt, decode one token at a time");
            (Tensor::cat(&[pk, k], 2), Tensor::cat(&[pv, v], 2), false)
        }
        None => (k, v, true),
    };
    *slot = Some((k.shallow_clone(), v.shallow_clone()));
    (k, v, causal)
}

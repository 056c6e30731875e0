//! Activation recomputation (what PyTorch calls activation or gradient checkpointing): a language model's trunk
//! trained without keeping what its backward pass needs.
//!
//! A plain backward pass needs every block's saved activations — for a 20-layer, 576-wide Llama on 8 × 256 tokens
//! about 2.4 GB, most of a distillation step's memory once the loss goes a chunk at a time. [`Recomputed::forward`]
//! runs the blocks one at a time, dropping each one's autograd graph once it has run, and keeps only each block's
//! input (one `[B, T, d]` tensor per block, and the random stream as it stood, so dropout draws the same masks
//! again); the final norm runs with autograd from a leaf standing for the last block's output. After the loss has been backpropagated into [`Recomputed::hidden`],
//! [`Recomputed::backward`] reruns each block from its input, last to first, and backpropagates the gradient its
//! output received — one block's activations alive at a time, for one more forward pass of compute.
//!
//! Recomputation can stop short of the top: with `recompute_activations: {keep: N}` the last N blocks run as in a
//! plain pass, their activations kept and backpropagated through without a rerun — N blocks' memory back (about
//! 120 MB each for the trunk above) for N blocks' forward compute saved, what Megatron calls recomputing only some
//! layers; the step's memory budget decides N.
//!
//! The recomputed forward pass is the same computation on the same inputs and each block's backward pass the same
//! graph, so on CPU the gradients are bit-identical to a plain backward pass (tested below and in
//! `tests/llm_distill.rs`): recomputation changes memory and time, never results.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::nn::model::{Blocks, LanguageModel, Mode};
use crate::nn::runtime::precision::Precision;
use crate::rng::Rng;

/// A step's `recompute_activations`: `false` (the default: every block keeps its activations), `true` (every block
/// recomputed), or `{keep: N}` (the last N blocks keep theirs, the others are recomputed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RecomputeActivations {
    All(bool),
    Keep { keep: usize },
}

impl Default for RecomputeActivations {
    fn default() -> Self {
        RecomputeActivations::All(false)
    }
}

impl RecomputeActivations {
    pub fn is_off(&self) -> bool {
        self.kept_blocks().is_none()
    }

    /// How many of the trunk's last blocks keep their activations when any are recomputed; `None`: none recomputed.
    pub fn kept_blocks(&self) -> Option<usize> {
        match *self {
            RecomputeActivations::All(false) => None,
            RecomputeActivations::All(true) => Some(0),
            RecomputeActivations::Keep { keep } => Some(keep),
        }
    }

    /// `keep` must leave a block to recompute in a trunk of `blocks`.
    pub fn check(&self, blocks: usize) -> Result<(), String> {
        match *self {
            RecomputeActivations::Keep { keep } if keep >= blocks => Err(format!(
                "keeps {keep} of the model's {blocks} blocks, so none is recomputed: keep fewer, or leave the field out"
            )),
            _ => Ok(()),
        }
    }
}

/// A trunk run forward for a recomputing backward pass.
pub struct Recomputed<'m> {
    blocks: &'m dyn Blocks,
    x: Tensor,
    precision: Precision,
    /// The random stream before the embedding, in train mode (`None`: eval).
    embed_rng: Option<Rng>,
    /// Each recomputed block's input, without autograd history, and the random stream before the block.
    inputs: Vec<(Tensor, Option<Rng>)>,
    /// The last recomputed block's output as a leaf: the backward pass of `hidden` ends here.
    top: Tensor,
    /// The final hidden states `[B, T, d]`, differentiable (through the kept blocks and the last norm) back to `top`.
    pub hidden: Tensor,
}

fn snapshot(mode: &Mode<'_>) -> Option<Rng> {
    match mode {
        Mode::Train(rng) => Some((**rng).clone()),
        Mode::Eval => None,
    }
}

fn mode_of(rng: &mut Option<Rng>) -> Mode<'_> {
    match rng {
        Some(rng) => Mode::Train(rng),
        None => Mode::Eval,
    }
}

/// `Σ out · grad`: its backward pass sends exactly `grad` into `out`'s graph (tch has no `backward(grad)`).
fn backward_with(out: &Tensor, grad: &Tensor) {
    (out * grad).sum(out.kind()).backward();
}

impl<'m> Recomputed<'m> {
    /// Runs `blocks` on the tokens `x` under `precision`, keeping only each block's input but for the last `keep`
    /// blocks, which keep their autograd graphs. `mode` advances as a plain forward pass would advance it.
    pub fn forward(
        blocks: &'m dyn Blocks,
        x: &Tensor,
        mut mode: Mode<'_>,
        precision: Precision,
        keep: usize,
    ) -> Recomputed<'m> {
        let device = x.device();
        let embed_rng = snapshot(&mode);
        // As a plain forward pass runs — autograd on, each block's graph freed as soon as its output is detached —
        // rather than under `no_grad`, whose inference paths libtorch may dispatch to other kernels: the recomputed
        // blocks must see exactly the inputs a plain pass would have saved.
        let mut h = precision.run(device, || blocks.embed(x, mode.reborrow())).detach();
        let recomputed = blocks.count().saturating_sub(keep);
        let mut inputs = Vec::with_capacity(recomputed);
        for i in 0..recomputed {
            let rng = snapshot(&mode);
            let out = precision.run(device, || blocks.block(i, &h, mode.reborrow())).detach();
            inputs.push((std::mem::replace(&mut h, out), rng));
        }
        let top = h.set_requires_grad(true);
        let mut kept = top.shallow_clone();
        for i in recomputed..blocks.count() {
            kept = precision.run(device, || blocks.block(i, &kept, mode.reborrow()));
        }
        let hidden = precision.run(device, || blocks.finish(&kept));
        Recomputed { blocks, x: x.shallow_clone(), precision, embed_rng, inputs, top, hidden }
    }

    /// The trunk's backward pass, once the loss has been backpropagated into [`Self::hidden`]: each block rerun from
    /// its input with the same random draws and backpropagated with the gradient of its output, then the embedding.
    /// Parameter gradients accumulate as a plain backward pass accumulates them.
    pub fn backward(self) -> Result<()> {
        let device = self.x.device();
        let mut grad = self.top.grad();
        ensure!(grad.defined(), "recomputation: the loss did not reach the final hidden states");
        for (i, (input, mut rng)) in self.inputs.into_iter().enumerate().rev() {
            let input = input.set_requires_grad(true);
            let out = self.precision.run(device, || self.blocks.block(i, &input, mode_of(&mut rng)));
            backward_with(&out, &grad);
            grad = input.grad();
        }
        let mut rng = self.embed_rng;
        let embedded = self.precision.run(device, || self.blocks.embed(&self.x, mode_of(&mut rng)));
        if embedded.requires_grad() {
            backward_with(&embedded, &grad);
        }
        Ok(())
    }
}

/// A language model's final hidden states for one training batch, from a plain forward pass or a recomputing one.
pub enum Trunk<'m> {
    Kept(Tensor),
    Recomputed(Recomputed<'m>),
}

impl<'m> Trunk<'m> {
    /// `lm`'s final hidden states `[B, T, d]` of `x` under `precision`; when `recompute` recomputes any block, from
    /// [`Recomputed::forward`] (an error when the model does not offer its blocks).
    pub fn forward(
        lm: &'m dyn LanguageModel,
        x: &Tensor,
        mode: Mode<'_>,
        precision: Precision,
        recompute: RecomputeActivations,
    ) -> Result<Trunk<'m>> {
        match (recompute.kept_blocks(), lm.blocks()) {
            (None, _) => Ok(Trunk::Kept(precision.run(x.device(), || lm.hidden(x, mode)))),
            (Some(keep), Some(blocks)) => Ok(Trunk::Recomputed(Recomputed::forward(blocks, x, mode, precision, keep))),
            (Some(_), None) => anyhow::bail!("recomputation: this model does not offer its blocks"),
        }
    }

    pub fn hidden(&self) -> &Tensor {
        match self {
            Trunk::Kept(hidden) => hidden,
            Trunk::Recomputed(r) => &r.hidden,
        }
    }

    /// Completes the backward pass once the loss has been backpropagated into [`Self::hidden`]: nothing left for a
    /// kept trunk, the blocks' recomputed backward passes otherwise.
    pub fn backward(self) -> Result<()> {
        match self {
            Trunk::Kept(_) => Ok(()),
            Trunk::Recomputed(r) => r.backward(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::gpt::GptConfig;
    use crate::nn::arch::llama::LlamaConfig;
    use crate::nn::arch::Architecture;
    use crate::nn::runtime::random::uniform;
    use crate::nn::Model;
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    /// Every parameter's gradient after a plain backward pass and after a recomputing one, and the random stream's
    /// next draw after each.
    fn gradients(
        model: &dyn Model,
        vs: &VarStore,
        x: &Tensor,
        weights: &Tensor,
        keep: Option<usize>,
    ) -> (Vec<(String, Tensor)>, u64) {
        for mut var in vs.trainable_variables() {
            var.zero_grad();
        }
        let lm = model.language_model().unwrap();
        let mut rng = Rng::new(11);
        let loss = |hidden: &Tensor| lm.logits_of(hidden).matmul(weights).pow_tensor_scalar(2).mean(Kind::Float);
        if let Some(keep) = keep {
            let trunk = Recomputed::forward(lm.blocks().unwrap(), x, Mode::Train(&mut rng), Precision::F32, keep);
            loss(&trunk.hidden).backward();
            trunk.backward().unwrap();
        } else {
            loss(&lm.hidden(x, Mode::Train(&mut rng))).backward();
        }
        let mut grads: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(k, v)| (k, v.grad().copy())).collect();
        grads.sort_by(|a, b| a.0.cmp(&b.0));
        (grads, rng.next_u64())
    }

    fn assert_bit_identical(model: &dyn Model, vs: &VarStore) {
        // Tokens and the loss's weights from seeded streams, not libtorch's global generator, which tests running
        // beside this one draw from too.
        let x = (uniform(5, &[3, 10], Device::Cpu) * 7.0).floor().to_kind(Kind::Int64);
        let weights = uniform(9, &[7], Device::Cpu) * 2.0 - 1.0;
        let (plain, plain_next) = gradients(model, vs, &x, &weights, None);
        assert!(!plain.is_empty());
        // Every block recomputed, all but the last, and all but the last two (of three).
        for keep in 0..3 {
            let (recomputed, next) = gradients(model, vs, &x, &weights, Some(keep));
            assert_eq!(plain_next, next, "keep {keep}: the random stream must advance as in a plain forward pass");
            for ((name, a), (_, b)) in plain.iter().zip(&recomputed) {
                assert!(a.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name}: no gradient");
                assert!(a.equal(b), "keep {keep}: {name}: recomputed gradient differs");
            }
        }
    }

    #[test]
    fn a_llama_trunk_recomputed_gives_bit_identical_gradients() {
        let config: LlamaConfig = serde_yaml::from_str(
            "{hidden_size: 16, intermediate_size: 24, num_hidden_layers: 3, num_attention_heads: 4, \
             num_key_value_heads: 2, max_position_embeddings: 16, tie_word_embeddings: true}",
        )
        .unwrap();
        let vs = VarStore::new(Device::Cpu);
        let model = config.build(&vs.root(), &[10], 7, &mut Rng::new(1)).unwrap();
        assert_bit_identical(model.as_ref(), &vs);
    }

    /// With dropout: the recomputed blocks draw the masks the forward pass drew.
    #[test]
    fn a_gpt_trunk_with_dropout_recomputed_gives_bit_identical_gradients() {
        let config = GptConfig { layers: 3, heads: 2, d_model: 16, context: 12, dropout: 0.2, tied: false, d_ff: None };
        let vs = VarStore::new(Device::Cpu);
        let model = config.build(&vs.root(), &[10], 7, &mut Rng::new(1)).unwrap();
        assert_bit_identical(model.as_ref(), &vs);
    }
}

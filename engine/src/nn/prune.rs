//! Cutting a pretrained model down to a smaller one of the same architecture, the weights kept copied from it:
//! a model's forward pass fills a [`Trace`] with the calibration scores, the `prune` step turns them into a
//! [`PrunePlan`] (which layers, MLP channels and key/value groups stay), and [`prune_llama`] / [`prune_bert`] /
//! [`prune_gpt`] write the smaller config and its weights under the model's own keys.

use std::collections::BTreeMap;

use anyhow::{ensure, Context as _, Result};
use tch::{Device, Kind, Tensor};

use crate::nn::arch::{Architecture as _, BertConfig, GptConfig, LlamaConfig};

/// Sums over calibration tokens of what pruning ranks by, per layer (f64, so sums over many batches stay exact
/// enough and do not depend on batch boundaries beyond rounding); padding tokens (a `mask`) do not count:
/// - `cosine`: the cosine between each token's hidden state entering and leaving the layer (ShortGPT's block
///   influence is 1 − its mean);
/// - `mlp`: the magnitude of each intermediate channel's activation (Minitron's activation importance);
/// - `heads`: the norm of each query head's attention output.
#[derive(Default)]
pub struct Trace {
    pub tokens: i64,
    pub cosine: Vec<f64>,
    pub mlp: Vec<Tensor>,
    pub heads: Vec<Tensor>,
}

impl Trace {
    /// Sizes the sums for `layers` layers of `channels` MLP channels and `heads` query heads (on the first batch)
    /// and counts the batch's `tokens`.
    pub fn start_batch(&mut self, layers: usize, channels: i64, heads: i64, tokens: i64, device: Device) {
        if self.mlp.is_empty() {
            let zeros = |n: i64| Tensor::zeros([n], (Kind::Double, device));
            self.cosine = vec![0.0; layers];
            self.mlp = (0..layers).map(|_| zeros(channels)).collect();
            self.heads = (0..layers).map(|_| zeros(heads)).collect();
        }
        self.tokens += tokens;
    }

    /// Layer `layer`'s attention output per head `[B, heads, t, head_dim]`.
    pub fn add_heads(&mut self, layer: usize, y: &Tensor, mask: Option<&Tensor>) {
        let norms = y.to_kind(Kind::Double).norm_scalaropt_dim(2, [-1], false);
        let norms = match mask {
            Some(m) => norms * m.unsqueeze(1).to_kind(Kind::Double),
            None => norms,
        };
        self.heads[layer] += norms.sum_dim_intlist(&[0i64, 2][..], false, Kind::Double);
    }

    /// Layer `layer`'s MLP activations `[B, t, channels]` (what the output projection multiplies).
    pub fn add_mlp(&mut self, layer: usize, act: &Tensor, mask: Option<&Tensor>) {
        let act = act.to_kind(Kind::Double).abs();
        let act = match mask {
            Some(m) => act * m.unsqueeze(-1).to_kind(Kind::Double),
            None => act,
        };
        self.mlp[layer] += act.sum_dim_intlist(&[0i64, 1][..], false, Kind::Double);
    }

    /// Layer `layer`'s hidden states entering and leaving it `[B, t, d]`.
    pub fn add_cosine(&mut self, layer: usize, input: &Tensor, output: &Tensor, mask: Option<&Tensor>) {
        let cos = Tensor::cosine_similarity(&input.to_kind(Kind::Double), &output.to_kind(Kind::Double), -1, 1e-8);
        let cos = match mask {
            Some(m) => cos * m.to_kind(Kind::Double),
            None => cos,
        };
        self.cosine[layer] += cos.sum(Kind::Double).double_value(&[]);
    }
}

/// What a pruned model keeps of its teacher.
#[derive(Clone, Debug, PartialEq)]
pub struct PrunePlan {
    /// The teacher's layers kept, in order; they become layers 0, 1, ….
    pub layers: Vec<usize>,
    /// For each kept layer, the intermediate channels kept (ascending, the same count in every layer); `None` keeps
    /// all.
    pub mlp: Option<Vec<Vec<i64>>>,
    /// For each kept layer, the key/value groups kept (ascending, the same count in every layer), each with its
    /// query heads (a model without grouped queries: its heads); `None` keeps all.
    pub kv_groups: Option<Vec<Vec<i64>>>,
}

impl PrunePlan {
    /// Checks the plan against a teacher of `layers` layers; returns the MLP channels and the groups kept per layer
    /// (`None`: all).
    fn check(&self, layers: usize) -> Result<(Option<i64>, Option<i64>)> {
        ensure!(!self.layers.is_empty(), "a model needs at least one layer");
        ensure!(self.layers.windows(2).all(|w| w[0] < w[1]), "kept layers must be distinct and in order");
        ensure!(self.layers.iter().all(|&l| l < layers), "the teacher has {layers} layers");
        let same_count = |lists: &Option<Vec<Vec<i64>>>, what: &str| -> Result<Option<i64>> {
            let Some(lists) = lists else { return Ok(None) };
            ensure!(lists.len() == self.layers.len(), "{what}: one list per kept layer");
            let n = lists[0].len() as i64;
            ensure!(
                n > 0 && lists.iter().all(|l| l.len() as i64 == n),
                "{what}: the same positive count in every layer"
            );
            Ok(Some(n))
        };
        Ok((same_count(&self.mlp, "mlp")?, same_count(&self.kv_groups, "kv_groups")?))
    }
}

/// The indices of the `k` largest `scores` (ties: the lower index first), in ascending order.
pub fn top_k(scores: &[f64], k: usize) -> Vec<i64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut kept: Vec<i64> = order.into_iter().take(k).map(|i| i as i64).collect();
    kept.sort_unstable();
    kept
}

/// The smaller config and its weights (moved out of `weights` where kept whole, sliced copies elsewhere).
pub fn prune_llama(
    config: &LlamaConfig,
    weights: &BTreeMap<String, Tensor>,
    plan: &PrunePlan,
) -> Result<(LlamaConfig, BTreeMap<String, Tensor>)> {
    let (channels, groups) = plan.check(config.num_hidden_layers as usize)?;
    let (heads, kv_heads, hd) = (config.num_attention_heads, config.kv_heads(), config.head_dim());
    let per_group = heads / kv_heads;
    let mut out = config.clone();
    out.num_hidden_layers = plan.layers.len() as i64;
    if let Some(n) = channels {
        out.intermediate_size = n;
    }
    if let Some(g) = groups {
        out.num_key_value_heads = Some(g);
        out.num_attention_heads = g * per_group;
    }
    out.head_dim = Some(hd);
    out.validate().map_err(anyhow::Error::msg)?;

    let index = |v: &[i64]| Tensor::from_slice(v);
    // Rows of the query heads (and of the key/value heads) of the kept groups.
    let rows_of = |groups: &[i64], heads_per_group: i64| -> Tensor {
        let rows: Vec<i64> = groups
            .iter()
            .flat_map(|&g| (g * heads_per_group..(g + 1) * heads_per_group).flat_map(|h| h * hd..(h + 1) * hd))
            .collect();
        index(&rows)
    };
    let pruned = renumber_layers(weights, "model.layers.", &plan.layers, |new, part, tensor| {
        let mlp = plan.mlp.as_ref().map(|m| index(&m[new]));
        let q_rows = plan.kv_groups.as_ref().map(|g| rows_of(&g[new], per_group));
        let kv_rows = plan.kv_groups.as_ref().map(|g| rows_of(&g[new], 1));
        let is_weight = part.ends_with(".weight");
        match (part.rsplit_once('.').map_or(part, |(p, _)| p), &mlp, &q_rows, &kv_rows) {
            ("mlp.gate_proj" | "mlp.up_proj", Some(ch), _, _) => tensor.index_select(0, ch),
            ("mlp.down_proj", Some(ch), _, _) if is_weight => tensor.index_select(1, ch),
            ("self_attn.q_proj", _, Some(rows), _) => tensor.index_select(0, rows),
            ("self_attn.k_proj" | "self_attn.v_proj", _, _, Some(rows)) => tensor.index_select(0, rows),
            ("self_attn.o_proj", _, Some(rows), _) if is_weight => tensor.index_select(1, rows),
            _ => tensor.shallow_clone(),
        }
    })?;
    Ok((out, pruned))
}

/// The weights of a model whose layers (keys `{prefix}{i}.{part}`) are cut to `kept`, renumbered 0, 1, …, each
/// kept layer's tensors passed through `slice(new index, part, tensor)`; every other key copied. Copies of values,
/// never views into the teacher's autograd graph.
fn renumber_layers(
    weights: &BTreeMap<String, Tensor>,
    prefix: &str,
    kept: &[usize],
    slice: impl Fn(usize, &str, &Tensor) -> Tensor,
) -> Result<BTreeMap<String, Tensor>> {
    let mut pruned = BTreeMap::new();
    for (key, tensor) in weights {
        let tensor = &tensor.detach();
        let Some(rest) = key.strip_prefix(prefix) else {
            pruned.insert(key.clone(), tensor.shallow_clone());
            continue;
        };
        let (layer, part) = rest.split_once('.').context("a layer key names its part")?;
        let layer: usize = layer.parse().with_context(|| format!("weight `{key}`: no layer number"))?;
        let Some(new) = kept.iter().position(|&l| l == layer) else { continue };
        let sliced = slice(new, part, tensor);
        pruned.insert(format!("{prefix}{new}.{part}"), sliced.to_kind(tensor.kind()).contiguous());
    }
    Ok(pruned)
}

/// The smaller BERT and its weights: layers and intermediate channels as `plan` says. Heads cannot go:
/// `transformers`' `BertConfig` derives the head width from `hidden_size / num_attention_heads`, so fewer heads of
/// the same width is not a config it loads.
pub fn prune_bert(
    config: &BertConfig,
    weights: &BTreeMap<String, Tensor>,
    plan: &PrunePlan,
) -> Result<(BertConfig, BTreeMap<String, Tensor>)> {
    let (channels, groups) = plan.check(config.num_hidden_layers as usize)?;
    ensure!(groups.is_none(), "a BERT keeps all its attention heads (its config cannot express fewer)");
    let mut out = config.clone();
    out.num_hidden_layers = plan.layers.len() as i64;
    if let Some(n) = channels {
        out.intermediate_size = n;
    }
    out.validate().map_err(anyhow::Error::msg)?;
    let pruned = renumber_layers(weights, "encoder.layer.", &plan.layers, |new, part, tensor| {
        let kept = plan.mlp.as_ref().map(|m| Tensor::from_slice(&m[new]));
        match (part, &kept) {
            ("intermediate.dense.weight" | "intermediate.dense.bias", Some(ch)) => tensor.index_select(0, ch),
            ("output.dense.weight", Some(ch)) => tensor.index_select(1, ch),
            _ => tensor.shallow_clone(),
        }
    })?;
    Ok((out, pruned))
}

/// The smaller GPT and its weights: blocks and MLP channels as `plan` says (`blocks.{i}.fc` rows, `out` columns).
/// Heads cannot go: a GPT's head width is `d_model / heads`.
pub fn prune_gpt(
    config: &GptConfig,
    weights: &BTreeMap<String, Tensor>,
    plan: &PrunePlan,
) -> Result<(GptConfig, BTreeMap<String, Tensor>)> {
    let (channels, groups) = plan.check(config.layers as usize)?;
    ensure!(groups.is_none(), "a GPT keeps all its attention heads (its head width is d_model / heads)");
    let mut out = config.clone();
    out.layers = plan.layers.len() as i64;
    if let Some(n) = channels {
        out.d_ff = Some(n);
    }
    out.validate().map_err(anyhow::Error::msg)?;
    let pruned = renumber_layers(weights, "blocks.", &plan.layers, |new, part, tensor| {
        let kept = plan.mlp.as_ref().map(|m| Tensor::from_slice(&m[new]));
        match (part, &kept) {
            ("fc.weight" | "fc.bias", Some(ch)) => tensor.index_select(0, ch),
            ("out.weight", Some(ch)) => tensor.index_select(1, ch),
            _ => tensor.shallow_clone(),
        }
    })?;
    Ok((out, pruned))
}

/// Mean next-token cross-entropy of logits `[B, T, V]` against labels `[B, T]`, in f64.
pub fn nll(logits: &Tensor, labels: &Tensor) -> f64 {
    crate::nn::tokens::cross_entropy(logits, labels).to_kind(Kind::Double).double_value(&[])
}

/// The `k` directions that keep most of the squared length of the rows of `x` `[N, d]`: the top eigenvectors of
/// `xᵀx / N`, as rows `[k, d]` (largest first, each signed so its largest-magnitude entry is positive, which makes
/// the result unique), and the share of Σ|x|² they keep. Uncentred on purpose: with k = d the map is a rotation, so
/// every cosine between embeddings is kept exactly, and with k < d it is the best rank-k approximation of their dot
/// products — which is what a sentence embedder's similarities are made of.
pub fn principal_directions(x: &Tensor, k: i64) -> Result<(Tensor, f64)> {
    let (n, d) = x.size2()?;
    ensure!((1..=d).contains(&k), "{k} directions asked of {d}-dimensional embeddings");
    ensure!(n >= k, "{k} directions need at least {k} embeddings, there are {n} (raise `calibration`)");
    let x = x.to_kind(Kind::Double);
    let second_moment = x.tr().matmul(&x) / n as f64;
    let (values, vectors) = second_moment.linalg_eigh("L");
    // Ascending eigenvalues: the last k columns, largest first.
    let top = vectors.narrow(1, d - k, k).flip([1]).tr();
    let largest = top.abs().argmax(1, true);
    let signs = top.gather(1, &largest, false).sign();
    let kept = values.narrow(0, d - k, k).sum(Kind::Double) / values.sum(Kind::Double);
    Ok((top * signs, kept.double_value(&[])))
}

#[cfg(test)]
mod pca_tests {
    use super::*;

    #[test]
    fn principal_directions_are_the_right_singular_vectors() {
        // Rows with most of their length along (1, 1, 0)/√2, some along (0, 0, 1), a little along (1, −1, 0)/√2.
        let mut rng = crate::rng::Rng::new(7);
        let basis =
            Tensor::from_slice(&[0.5f64.sqrt(), 0.5f64.sqrt(), 0.0, 0.0, 0.0, 1.0, 0.5f64.sqrt(), -0.5f64.sqrt(), 0.0])
                .view([3, 3]);
        let scales = Tensor::from_slice(&[3.0f64, 1.0, 0.1]);
        let values: Vec<f64> = (0..600).map(|_| rng.normal_f64()).collect();
        let coefficients = Tensor::from_slice(&values).view([200, 3]) * &scales;
        let x = coefficients.matmul(&basis);
        let (top, kept) = principal_directions(&x, 2).unwrap();
        // Independent computation: the right singular vectors of x, signed the same way.
        let (_, s, v) = x.svd(true, true);
        let vh = v.tr().narrow(0, 0, 2);
        let signs = vh.gather(1, &vh.abs().argmax(1, true), false).sign();
        assert!((&top - vh * signs).abs().max().double_value(&[]) < 1e-9);
        let energy = s.square();
        let expected = energy.narrow(0, 0, 2).sum(Kind::Double) / energy.sum(Kind::Double);
        assert!((kept - expected.double_value(&[])).abs() < 1e-12);
        assert!(top.double_value(&[0, 0]) > 0.69 && top.double_value(&[0, 0]) < 0.72, "the dominant direction first");
    }
}

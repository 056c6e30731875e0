//! Cutting a pretrained model down to a smaller one of the same architecture, the weights kept copied from it:
//! which layers, MLP channels and key/value groups stay is a [`LlamaPlan`] (chosen by the `prune` step from
//! calibration scores), and [`prune_llama`] writes the smaller config and its weights under their Hugging Face keys.

use std::collections::BTreeMap;

use anyhow::{ensure, Context as _, Result};
use tch::{Kind, Tensor};

use crate::nn::arch::{Architecture as _, LlamaConfig};

/// What a pruned llama keeps of its teacher.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaPlan {
    /// The teacher's layers kept, in order; they become layers 0, 1, ….
    pub layers: Vec<usize>,
    /// For each kept layer, the intermediate channels kept (ascending, the same count in every layer); `None` keeps
    /// all.
    pub mlp: Option<Vec<Vec<i64>>>,
    /// For each kept layer, the key/value groups kept (ascending, the same count in every layer), each with its
    /// query heads; `None` keeps all.
    pub kv_groups: Option<Vec<Vec<i64>>>,
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
    plan: &LlamaPlan,
) -> Result<(LlamaConfig, BTreeMap<String, Tensor>)> {
    let layers = config.num_hidden_layers as usize;
    ensure!(!plan.layers.is_empty(), "a model needs at least one layer");
    ensure!(plan.layers.windows(2).all(|w| w[0] < w[1]), "kept layers must be distinct and in order");
    ensure!(plan.layers.iter().all(|&l| l < layers), "the teacher has {layers} layers");
    let (heads, kv_heads, hd) = (config.num_attention_heads, config.kv_heads(), config.head_dim());
    let per_group = heads / kv_heads;
    let same_count = |lists: &Option<Vec<Vec<i64>>>, what: &str| -> Result<Option<i64>> {
        let Some(lists) = lists else { return Ok(None) };
        ensure!(lists.len() == plan.layers.len(), "{what}: one list per kept layer");
        let n = lists[0].len() as i64;
        ensure!(n > 0 && lists.iter().all(|l| l.len() as i64 == n), "{what}: the same positive count in every layer");
        Ok(Some(n))
    };
    let channels = same_count(&plan.mlp, "mlp")?;
    let groups = same_count(&plan.kv_groups, "kv_groups")?;
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
    let mut pruned = BTreeMap::new();
    for (key, tensor) in weights {
        // Copies of values, never views into the teacher's autograd graph.
        let tensor = &tensor.detach();
        let Some(rest) = key.strip_prefix("model.layers.") else {
            pruned.insert(key.clone(), tensor.shallow_clone());
            continue;
        };
        let (layer, part) = rest.split_once('.').context("a layer key names its part")?;
        let layer: usize = layer.parse().with_context(|| format!("weight `{key}`: no layer number"))?;
        let Some(new) = plan.layers.iter().position(|&l| l == layer) else { continue };
        let mlp = plan.mlp.as_ref().map(|m| index(&m[new]));
        let q_rows = plan.kv_groups.as_ref().map(|g| rows_of(&g[new], per_group));
        let kv_rows = plan.kv_groups.as_ref().map(|g| rows_of(&g[new], 1));
        let is_weight = part.ends_with(".weight");
        let sliced = match (part.rsplit_once('.').map_or(part, |(p, _)| p), &mlp, &q_rows, &kv_rows) {
            ("mlp.gate_proj" | "mlp.up_proj", Some(ch), _, _) => tensor.index_select(0, ch),
            ("mlp.down_proj", Some(ch), _, _) if is_weight => tensor.index_select(1, ch),
            ("self_attn.q_proj", _, Some(rows), _) => tensor.index_select(0, rows),
            ("self_attn.k_proj" | "self_attn.v_proj", _, _, Some(rows)) => tensor.index_select(0, rows),
            ("self_attn.o_proj", _, Some(rows), _) if is_weight => tensor.index_select(1, rows),
            _ => tensor.shallow_clone(),
        };
        pruned.insert(format!("model.layers.{new}.{part}"), sliced.to_kind(tensor.kind()).contiguous());
    }
    Ok((out, pruned))
}

/// Mean next-token cross-entropy of logits `[B, T, V]` against labels `[B, T]`, in f64.
pub fn nll(logits: &Tensor, labels: &Tensor) -> f64 {
    crate::nn::tokens::cross_entropy(logits, labels).to_kind(Kind::Double).double_value(&[])
}

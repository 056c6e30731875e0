//! The `llama` architecture of GGUF files: llama.cpp's tensor names mapped to Hugging Face's, the Q/K row
//! permutation of its converter undone, and `config.json` from the metadata.
//!
//! llama.cpp's `convert_hf_to_gguf.py` stores `q_proj` and `k_proj` (weights and biases) permuted for its
//! interleaved rotary embedding: `w.reshape(heads, 2, rows / heads / 2, cols).swapaxes(1, 2)`. [`unpermute`] is the
//! inverse, so the weights come out exactly as `transformers` holds them.

use std::collections::BTreeMap;

use tch::Tensor;

use super::{Gguf, GgufError, MetaValue};
use crate::nn::arch::llama::{LlamaConfig, RopeScaling};
use crate::nn::arch::Architecture as _;

/// The Hugging Face key of a llama.cpp tensor name, and the number of heads whose permutation to undo (for Q and K).
pub fn hf_name(gguf_name: &str, heads: usize, kv_heads: usize) -> Option<(String, Option<usize>)> {
    let fixed = match gguf_name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some((name.to_string(), None));
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, suffix) = rest.rsplit_once('.')?;
    let (hf, permute) = match part {
        "attn_norm" => ("input_layernorm", None),
        "ffn_norm" => ("post_attention_layernorm", None),
        "attn_q" => ("self_attn.q_proj", Some(heads)),
        "attn_k" => ("self_attn.k_proj", Some(kv_heads)),
        "attn_v" => ("self_attn.v_proj", None),
        "attn_output" => ("self_attn.o_proj", None),
        "ffn_gate" => ("mlp.gate_proj", None),
        "ffn_up" => ("mlp.up_proj", None),
        "ffn_down" => ("mlp.down_proj", None),
        _ => return None,
    };
    Some((format!("model.layers.{layer}.{hf}.{suffix}"), permute))
}

/// Undoes llama.cpp's rotary permutation of a `[rows, cols]` Q or K projection (weight, or bias with `cols == 1`)
/// over `heads` heads, in place of `values` (row-major).
pub fn unpermute(values: &[f32], rows: usize, cols: usize, heads: usize) -> Result<Vec<f32>, String> {
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        return Err(format!("{rows} rows do not split into {heads} heads of two rotary halves"));
    }
    let half = rows / heads / 2;
    let mut out = vec![0f32; values.len()];
    for h in 0..heads {
        for s in 0..2 {
            for i in 0..half {
                let hf_row = h * 2 * half + s * half + i;
                let gguf_row = h * 2 * half + i * 2 + s;
                out[hf_row * cols..(hf_row + 1) * cols]
                    .copy_from_slice(&values[gguf_row * cols..(gguf_row + 1) * cols]);
            }
        }
    }
    Ok(out)
}

/// A llama GGUF as anbiq's [`LlamaConfig`] and its weights under Hugging Face keys (dequantised to f32, Q/K
/// unpermuted, then converted to `kind` one tensor at a time, so a bf16 import never holds the f32 model), ready
/// for [`crate::nn::weights::source::WeightSource::Load`].
pub fn load(gguf: &Gguf, kind: tch::Kind) -> Result<(LlamaConfig, BTreeMap<String, Tensor>), GgufError> {
    let config = load_config(gguf)?;
    let (heads, kv_heads) = (config.num_attention_heads as usize, config.kv_heads() as usize);
    let mut tensors = BTreeMap::new();
    for info in &gguf.tensors {
        let Some((name, permuted)) = hf_name(&info.name, heads, kv_heads) else { continue };
        let shape = info.shape();
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let tensor = match permuted {
            None => gguf.dequantize_tensor_as(info, kind),
            Some(heads) => {
                let cols = shape.get(1).copied().unwrap_or(1);
                let values = unpermute(&gguf.dequantize(info), shape[0], cols, heads)
                    .map_err(|m| gguf.error(format!("tensor `{}`: {m}", info.name)))?;
                Tensor::from_slice(&values)
            }
        };
        let tensor = tensor.reshape(dims);
        tensors.insert(name, if kind == tch::Kind::Float { tensor } else { tensor.to_kind(kind) });
    }
    Ok((config, tensors))
}

/// The [`LlamaConfig`] a llama GGUF declares (metadata and which tensors exist), without reading any weights.
pub fn load_config(gguf: &Gguf) -> Result<LlamaConfig, GgufError> {
    let arch = gguf.architecture()?;
    if arch != "llama" {
        return Err(gguf.error(format!("architecture `{arch}` is not supported (supported: llama)")));
    }
    let int = |key: &str| -> Result<usize, GgufError> {
        let v = gguf.require(key)?;
        v.as_u64().map(|v| v as usize).ok_or_else(|| gguf.error(format!("metadata `{key}` is {v}, not an integer")))
    };
    let float_required = |key: &str| -> Result<f64, GgufError> {
        let v = gguf.require(key)?;
        v.as_decimal().ok_or_else(|| gguf.error(format!("metadata `{key}` is {v}, not a number")))
    };
    let float = |key: &str, default: f64| match gguf.metadata.get(key) {
        None => Ok(default),
        Some(_) => float_required(key),
    };
    let hidden = int("llama.embedding_length")?;
    let heads = int("llama.attention.head_count")?;
    let kv_heads = match gguf.metadata.get("llama.attention.head_count_kv") {
        None => heads,
        Some(_) => int("llama.attention.head_count_kv")?,
    };
    if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(
            gguf.error(format!("metadata: {heads} attention heads do not divide into {kv_heads} key/value heads"))
        );
    }
    let head_dim = match gguf.metadata.get("llama.attention.key_length") {
        Some(_) => int("llama.attention.key_length")?,
        None if hidden % heads == 0 => hidden / heads,
        None => return Err(gguf.error(format!("metadata: hidden size {hidden} is not a multiple of {heads} heads"))),
    };
    let layers = int("llama.block_count")?;
    let vocab = match gguf.metadata.get("llama.vocab_size").and_then(MetaValue::as_u64) {
        Some(v) => v as usize,
        None => {
            gguf.tensor("token_embd.weight").ok_or_else(|| gguf.error("no tensor `token_embd.weight`".into()))?.shape()
                [0]
        }
    };
    if gguf.tensor("rope_freqs.weight").is_some() {
        return Err(gguf.error(
            "tensor `rope_freqs.weight`: per-frequency rope factors (Llama 3.1 scaling in GGUF) are not supported yet; \
             import the Hugging Face directory instead"
                .into(),
        ));
    }
    let scaling = gguf.metadata.get("llama.rope.scaling.type").and_then(MetaValue::as_str);
    let rope_scaling = match scaling {
        None | Some("none") => None,
        Some("linear") => Some(RopeScaling::Linear { factor: float_required("llama.rope.scaling.factor")? }),
        Some(other) => {
            return Err(gguf.error(format!("metadata `llama.rope.scaling.type`: `{other}` is not supported (linear)")))
        }
    };
    let token = |key: &str| gguf.metadata.get(key).and_then(MetaValue::as_u64).map(|v| v as i64);
    let config = LlamaConfig {
        hidden_size: hidden as i64,
        intermediate_size: int("llama.feed_forward_length")? as i64,
        num_hidden_layers: layers as i64,
        num_attention_heads: heads as i64,
        num_key_value_heads: Some(kv_heads as i64),
        head_dim: Some(head_dim as i64),
        vocab_size: Some(vocab as i64),
        max_position_embeddings: int("llama.context_length")? as i64,
        rms_norm_eps: float("llama.attention.layer_norm_rms_epsilon", 1e-5)?,
        rope_theta: float("llama.rope.freq_base", 10_000.0)?,
        rope_scaling,
        attention_bias: gguf.tensor("blk.0.attn_output.bias").is_some(),
        qkv_bias: gguf.tensor("blk.0.attn_q.bias").is_some() && gguf.tensor("blk.0.attn_output.bias").is_none(),
        mlp_bias: gguf.tensor("blk.0.ffn_up.bias").is_some(),
        tie_word_embeddings: gguf.tensor("output.weight").is_none(),
        bos_token_id: token("tokenizer.ggml.bos_token_id"),
        eos_token_id: token("tokenizer.ggml.eos_token_id"),
        sliding_window: None,
    };
    config.validate().map_err(|m| gguf.error(format!("metadata: {}", m.trim_start_matches("model."))))?;
    // Nothing is dropped silently: a tensor without a place in the model means the file is not what it claims.
    for t in &gguf.tensors {
        let Some((name, permuted)) = hf_name(&t.name, heads, kv_heads) else {
            return Err(gguf.error(format!("tensor `{}` has no counterpart in a llama model", t.name)));
        };
        let layer = name.strip_prefix("model.layers.").and_then(|r| r.split('.').next()?.parse::<usize>().ok());
        if layer.is_some_and(|l| l >= layers) {
            return Err(gguf.error(format!("tensor `{}`: the file declares {layers} layers", t.name)));
        }
        if permuted.is_some() && t.dims.is_empty() {
            return Err(gguf.error(format!("tensor `{}` has no dimensions", t.name)));
        }
    }
    Ok(config)
}

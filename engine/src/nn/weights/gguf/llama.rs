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

/// llama.cpp's names beside Hugging Face's: whole tensors, and the parts of each layer (`blk.N.…` beside
/// `model.layers.N.…`).
const WHOLE: [(&str, &str); 3] = [
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];
const LAYER_PARTS: [(&str, &str); 9] = [
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// The two naming schemes of the tables above.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Gguf,
    Hf,
}

impl Side {
    fn of(self, pair: &(&'static str, &'static str)) -> &'static str {
        if self == Side::Gguf {
            pair.0
        } else {
            pair.1
        }
    }

    fn layers(self) -> &'static str {
        if self == Side::Gguf {
            "blk."
        } else {
            "model.layers."
        }
    }

    fn other(self) -> Side {
        if self == Side::Gguf {
            Side::Hf
        } else {
            Side::Gguf
        }
    }
}

/// `name` in the other scheme, with the llama.cpp name of its layer part (`attn_q`, …; empty for whole tensors).
fn translate(name: &str, from: Side) -> Option<(String, &'static str)> {
    let to = from.other();
    if let Some(pair) = WHOLE.iter().find(|p| from.of(p) == name) {
        return Some((to.of(pair).to_string(), ""));
    }
    let (layer, rest) = name.strip_prefix(from.layers())?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, suffix) = rest.rsplit_once('.')?;
    let pair = LAYER_PARTS.iter().find(|p| from.of(p) == part)?;
    Some((format!("{}{layer}.{}.{suffix}", to.layers(), to.of(pair)), pair.0))
}

/// The Hugging Face key of a llama.cpp tensor name, and the number of heads whose permutation to undo (for Q and K).
pub fn hf_name(gguf_name: &str, heads: usize, kv_heads: usize) -> Option<(String, Option<usize>)> {
    let (name, part) = translate(gguf_name, Side::Gguf)?;
    let permute = match part {
        "attn_q" => Some(heads),
        "attn_k" => Some(kv_heads),
        _ => None,
    };
    Some((name, permute))
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

/// llama.cpp's name of a Hugging Face llama key (the inverse of [`hf_name`]), and whether it is permuted for
/// llama.cpp's rotary embedding (Q and K).
pub fn gguf_name(hf: &str) -> Option<(String, bool)> {
    let (name, part) = translate(hf, Side::Hf)?;
    Some((name, matches!(part, "attn_q" | "attn_k")))
}

/// llama.cpp's permutation of a Q or K projection `[rows, ..]` over `heads` heads (the inverse of [`unpermute`]):
/// `w.reshape(heads, 2, rows / heads / 2, ..).swapaxes(1, 2)`.
pub fn permute(t: &Tensor, heads: i64) -> Tensor {
    let size = t.size();
    let rows = size[0];
    let mut shape = vec![heads, 2, rows / heads / 2];
    shape.extend_from_slice(&size[1..]);
    t.reshape(shape.as_slice()).transpose(1, 2).reshape(size.as_slice())
}

/// The `llama.*` and `general.*` metadata llama.cpp reads for `config` with `vocab` outputs, its file type the
/// one of the weight matrices (llama.cpp's `LLAMA_FTYPE`: 0 all f32, 1 mostly f16, 7 mostly Q8_0).
pub fn metadata(
    config: &LlamaConfig,
    vocab: i64,
    name: &str,
    file_type: u32,
) -> Result<Vec<(String, MetaValue)>, String> {
    let rope = match &config.rope_scaling {
        None => None,
        Some(RopeScaling::Linear { factor }) => Some(*factor),
        Some(RopeScaling::Llama3 { .. }) => {
            return Err(
                "rope_scaling of type llama3 is stored by llama.cpp as a `rope_freqs` tensor, which anbiq does \
                        not write yet"
                    .into(),
            )
        }
    };
    if config.qkv_bias || config.attention_bias || config.mlp_bias {
        return Err(
            "a llama with biases (Qwen2-style) is a `qwen2` model in llama.cpp, which anbiq does not write".into()
        );
    }
    let u32v = |v: i64| MetaValue::U32(v as u32);
    let mut m = vec![
        ("general.architecture".to_string(), MetaValue::String("llama".into())),
        ("general.name".to_string(), MetaValue::String(name.into())),
        ("general.alignment".to_string(), MetaValue::U32(super::write::ALIGNMENT as u32)),
        ("general.file_type".to_string(), MetaValue::U32(file_type)),
        ("llama.vocab_size".to_string(), u32v(vocab)),
        ("llama.context_length".to_string(), u32v(config.max_position_embeddings)),
        ("llama.embedding_length".to_string(), u32v(config.hidden_size)),
        ("llama.block_count".to_string(), u32v(config.num_hidden_layers)),
        ("llama.feed_forward_length".to_string(), u32v(config.intermediate_size)),
        ("llama.attention.head_count".to_string(), u32v(config.num_attention_heads)),
        ("llama.attention.head_count_kv".to_string(), u32v(config.kv_heads())),
        ("llama.attention.key_length".to_string(), u32v(config.head_dim())),
        ("llama.attention.value_length".to_string(), u32v(config.head_dim())),
        ("llama.rope.dimension_count".to_string(), u32v(config.head_dim())),
        ("llama.rope.freq_base".to_string(), MetaValue::F32(config.rope_theta as f32)),
        ("llama.attention.layer_norm_rms_epsilon".to_string(), MetaValue::F32(config.rms_norm_eps as f32)),
    ];
    if let Some(factor) = rope {
        m.push(("llama.rope.scaling.type".into(), MetaValue::String("linear".into())));
        m.push(("llama.rope.scaling.factor".into(), MetaValue::F32(factor as f32)));
    }
    Ok(m)
}

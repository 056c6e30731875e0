//! The Llama family of causal language models (Llama 2/3, SmolLM2, TinyLlama, Mistral), as `transformers`'
//! `LlamaForCausalLM` computes it: token ids `[B, t]` → next-token logits `[B, t, vocab]`.
//!
//! ```yaml
//! model: {arch: llama, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4,
//!         num_key_value_heads: 2, max_position_embeddings: 256}
//! ```
//! The config mirrors `config.json` (same field names; [`LlamaConfig::from_hf_json`] reads one, unknown fields
//! ignored) and every weight is registered under its Hugging Face key (`model.layers.3.self_attn.q_proj.weight`), so
//! importing is a copy and exporting the identity. RMSNorm in f32; rotary embeddings over `rotate_half` halves
//! (`rope_theta`, `rope_scaling` of type `linear` or `llama3`); grouped-query attention (`num_key_value_heads`, and a
//! `head_dim` that need not be `hidden_size / heads`) through libtorch's scaled-dot-product attention; SwiGLU MLP;
//! optional `attention_bias` and `mlp_bias`; `tie_word_embeddings`. Decodes with a key/value cache, so `generate`
//! costs one position per token.
//!
//! Weights come from a [`WeightSource`]: seeded initialisation (N(0, 0.02²), norms 1, biases 0, as `transformers`
//! initialises) or tensors loaded from a file — a loaded model never draws random weights first.

use super::Architecture;
use crate::nn::model::with_cached;
use crate::nn::prune::Trace;
use crate::nn::weights::source::{Init, WeightSource};
use crate::nn::{Blocks, Decoder, KvCache, LanguageModel, Mode, Model};
use crate::rng::Rng;
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlamaConfig {
    /// Width of the residual stream (`config.json`'s name, as every field here).
    pub hidden_size: i64,
    /// Width of the gated MLP.
    pub intermediate_size: i64,
    /// Decoder layers.
    pub num_hidden_layers: i64,
    /// Query heads per layer.
    pub num_attention_heads: i64,
    /// Defaults to `num_attention_heads` (no grouping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<i64>,
    /// Defaults to `hidden_size / num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<i64>,
    /// The output size; defaults to the data's vocabulary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<i64>,
    /// The longest input, in tokens.
    pub max_position_embeddings: i64,
    /// RMSNorm's epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE's base frequency.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// `{rope_type: linear, factor}` or Llama 3.1's `{rope_type: llama3, …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    /// Biases on the q, k, v and o projections.
    #[serde(default)]
    pub attention_bias: bool,
    /// Biases on the q, k and v projections only (Qwen2).
    #[serde(default)]
    pub qkv_bias: bool,
    /// Biases in the MLP projections.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Output projection = token embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// The tokenizer's special tokens, as `config.json` records them (for export and generation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<i64>,
    /// The end-of-sequence token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<i64>,
    /// Mistral's attention window. anbiq attends to the whole input, which equals windowed attention only for inputs
    /// no longer than the window: longer ones are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<i64>,
}

fn default_eps() -> f64 {
    1e-6
}

fn default_theta() -> f64 {
    10_000.0
}

/// `rope_scaling` of `config.json`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(tag = "rope_type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RopeScaling {
    /// Positions divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.1's frequency-dependent scaling.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: f64 },
}

impl LlamaConfig {
    pub fn kv_heads(&self) -> i64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// The longest input the model computes exactly: its context, or its sliding window if shorter.
    pub fn longest_input(&self) -> i64 {
        self.sliding_window.map_or(self.max_position_embeddings, |w| w.min(self.max_position_embeddings))
    }

    pub fn head_dim(&self) -> i64 {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Reads a Hugging Face `config.json` of `model_type` `llama`, `mistral` or `qwen2` (unknown fields ignored;
    /// both `rope_theta`/`rope_scaling` and transformers 5's `rope_parameters`). Errors name the field.
    pub fn from_hf_json(json: &serde_json::Value) -> Result<LlamaConfig, String> {
        let model_type = json.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        if !matches!(model_type, "llama" | "mistral" | "qwen2") {
            return Err(format!("model_type: `{model_type}` is not a Llama-family model (llama, mistral, qwen2)"));
        }
        let int = |field: &str| -> Result<Option<i64>, String> {
            match json.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v.as_i64().map(Some).ok_or_else(|| format!("{field}: expected an integer, got {v}")),
            }
        };
        let need = |field: &str| int(field)?.ok_or_else(|| format!("{field}: missing"));
        let float =
            |field: &str, v: &serde_json::Value| v.as_f64().ok_or_else(|| format!("{field}: expected a number"));
        let flag = |field: &str| json.get(field).and_then(|v| v.as_bool()).unwrap_or(false);
        // transformers ≥ 5 writes `rope_parameters: {rope_type, rope_theta, factor, …}`; older files `rope_theta` and
        // `rope_scaling: {rope_type | type, factor, …}`.
        let rope = json.get("rope_parameters").or_else(|| json.get("rope_scaling")).filter(|v| !v.is_null());
        let theta = match (json.get("rope_theta"), rope.and_then(|r| r.get("rope_theta"))) {
            (Some(v), _) | (None, Some(v)) => float("rope_theta", v)?,
            (None, None) => default_theta(),
        };
        let rope_scaling = match rope {
            None => None,
            Some(r) => {
                let kind = r.get("rope_type").or_else(|| r.get("type")).and_then(|v| v.as_str()).unwrap_or("default");
                let get =
                    |f: &str| r.get(f).ok_or_else(|| format!("rope_scaling.{f}: missing")).and_then(|v| float(f, v));
                match kind {
                    "default" => None,
                    "linear" => Some(RopeScaling::Linear { factor: get("factor")? }),
                    "llama3" => Some(RopeScaling::Llama3 {
                        factor: get("factor")?,
                        low_freq_factor: get("low_freq_factor")?,
                        high_freq_factor: get("high_freq_factor")?,
                        original_max_position_embeddings: get("original_max_position_embeddings")?,
                    }),
                    other => {
                        return Err(format!("rope_scaling.rope_type: `{other}` is not supported (linear, llama3)"))
                    }
                }
            }
        };
        let config = LlamaConfig {
            hidden_size: need("hidden_size")?,
            intermediate_size: need("intermediate_size")?,
            num_hidden_layers: need("num_hidden_layers")?,
            num_attention_heads: need("num_attention_heads")?,
            num_key_value_heads: int("num_key_value_heads")?,
            head_dim: int("head_dim")?,
            vocab_size: Some(need("vocab_size")?),
            max_position_embeddings: need("max_position_embeddings")?,
            rms_norm_eps: match json.get("rms_norm_eps") {
                Some(v) => float("rms_norm_eps", v)?,
                None => default_eps(),
            },
            rope_theta: theta,
            rope_scaling,
            attention_bias: flag("attention_bias"),
            qkv_bias: model_type == "qwen2",
            mlp_bias: flag("mlp_bias"),
            tie_word_embeddings: flag("tie_word_embeddings"),
            bos_token_id: int("bos_token_id").ok().flatten(),
            // A list of end tokens (Llama 3) keeps its first: the one generation stops at by default.
            eos_token_id: match json.get("eos_token_id") {
                Some(serde_json::Value::Array(ids)) => ids.first().and_then(|v| v.as_i64()),
                _ => int("eos_token_id").ok().flatten(),
            },
            // Qwen2 files carry a window they do not use unless `use_sliding_window` says so.
            sliding_window: match json.get("use_sliding_window").and_then(|v| v.as_bool()) {
                Some(false) => None,
                _ if model_type == "llama" => None,
                _ => int("sliding_window")?,
            },
        };
        config.validate().map_err(|e| e.trim_start_matches("model.").to_string())?;
        Ok(config)
    }

    /// `config.json` as transformers 5 writes it for `LlamaForCausalLM` (`Qwen2ForCausalLM` for a Qwen2 config):
    /// what [`from_hf_json`](Self::from_hf_json) reads back to the same config.
    pub fn to_hf_json(&self, vocab: i64) -> serde_json::Value {
        let mut rope = serde_json::json!({"rope_type": "default", "rope_theta": self.rope_theta});
        match &self.rope_scaling {
            None => {}
            Some(RopeScaling::Linear { factor }) => {
                rope["rope_type"] = "linear".into();
                rope["factor"] = (*factor).into();
            }
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                rope["rope_type"] = "llama3".into();
                rope["factor"] = (*factor).into();
                rope["low_freq_factor"] = (*low_freq_factor).into();
                rope["high_freq_factor"] = (*high_freq_factor).into();
                rope["original_max_position_embeddings"] = (*original_max_position_embeddings).into();
            }
        }
        let (architecture, model_type) =
            if self.qkv_bias { ("Qwen2ForCausalLM", "qwen2") } else { ("LlamaForCausalLM", "llama") };
        let mut json = serde_json::json!({
            "architectures": [architecture],
            "model_type": model_type,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.kv_heads(),
            "head_dim": self.head_dim(),
            "vocab_size": vocab,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": rope,
            "hidden_act": "silu",
            "attention_bias": self.attention_bias,
            "mlp_bias": self.mlp_bias,
            "tie_word_embeddings": self.tie_word_embeddings,
            "dtype": "float32",
        });
        for (field, id) in [("bos_token_id", self.bos_token_id), ("eos_token_id", self.eos_token_id)] {
            if let Some(id) = id {
                json[field] = id.into();
            }
        }
        if let Some(window) = self.sliding_window {
            json["sliding_window"] = window.into();
        }
        json
    }
}

impl Architecture for LlamaConfig {
    fn name(&self) -> &'static str {
        "llama"
    }

    fn validate(&self) -> Result<(), String> {
        for (field, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("head_dim", self.head_dim()),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v <= 0 {
                return Err(format!("model.{field}: must be positive, got {v}"));
            }
        }
        if self.head_dim.is_none() && self.hidden_size % self.num_attention_heads != 0 {
            return Err(format!(
                "model.num_attention_heads: {} heads do not divide hidden_size {} (give head_dim)",
                self.num_attention_heads, self.hidden_size
            ));
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return Err(format!(
                "model.num_key_value_heads: {} does not divide num_attention_heads {}",
                self.kv_heads(),
                self.num_attention_heads
            ));
        }
        if self.head_dim() % 2 != 0 {
            return Err(format!("model.head_dim: rotary embeddings need an even head_dim, got {}", self.head_dim()));
        }
        if !(self.rms_norm_eps > 0.0 && self.rope_theta > 0.0) {
            return Err("model.rms_norm_eps and model.rope_theta: must be positive".into());
        }
        Ok(())
    }

    fn build(&self, vs: &nn::Path, input_shape: &[i64], classes: i64, rng: &mut Rng) -> Result<Box<dyn Model>> {
        ensure!(
            input_shape.len() == 1 && input_shape[0] <= self.longest_input(),
            "llama: takes token windows [T] with T ≤ {} (its context, or its sliding window), the data's samples are \
             {input_shape:?}",
            self.longest_input()
        );
        if let Some(v) = self.vocab_size {
            ensure!(v == classes, "llama: vocab_size {v} differs from the data's vocabulary of {classes}");
        }
        Ok(Box::new(Llama::new(self, vs, classes, &mut WeightSource::Init(rng))?))
    }
}

struct Projection {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Projection {
    fn new(vs: &nn::Path, src: &mut WeightSource, inputs: i64, outputs: i64, bias: bool) -> Result<Projection> {
        let weight = src.tensor(vs, "weight", &[outputs, inputs], Init::Normal)?;
        let bias = if bias { Some(src.tensor(vs, "bias", &[outputs], Init::Zeros)?) } else { None };
        Ok(Projection { weight, bias })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(vs: &nn::Path, src: &mut WeightSource, size: i64, eps: f64) -> Result<RmsNorm> {
        Ok(RmsNorm { weight: src.tensor(vs, "weight", &[size], Init::Ones)?, eps })
    }

    /// As `LlamaRMSNorm`: in f32, then scaled by the weight.
    fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let h = x.to_kind(Kind::Float);
        let variance = h.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let h = &h * (variance + self.eps).rsqrt();
        &self.weight * h.to_kind(kind)
    }
}

struct Layer {
    input_norm: RmsNorm,
    q: Projection,
    k: Projection,
    v: Projection,
    o: Projection,
    post_norm: RmsNorm,
    gate: Projection,
    up: Projection,
    down: Projection,
}

/// The model; parameters under their Hugging Face keys.
pub struct Llama {
    embed: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    /// `None` when tied to the embedding.
    lm_head: Option<Tensor>,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
    /// Rotary inverse frequencies `[head_dim / 2]`, f32.
    inv_freq: Tensor,
}

impl Llama {
    pub fn new(c: &LlamaConfig, vs: &nn::Path, vocab: i64, src: &mut WeightSource) -> Result<Llama> {
        c.validate().map_err(anyhow::Error::msg)?;
        let (d, hd) = (c.hidden_size, c.head_dim());
        let (q_out, kv_out) = (c.num_attention_heads * hd, c.kv_heads() * hd);
        let model = vs / "model";
        let embed = src.tensor(&(&model / "embed_tokens"), "weight", &[vocab, d], Init::Normal)?;
        let qkv_bias = c.attention_bias || c.qkv_bias;
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let p = &model / "layers" / i;
                let attn = &p / "self_attn";
                let mlp = &p / "mlp";
                Ok(Layer {
                    input_norm: RmsNorm::new(&(&p / "input_layernorm"), src, d, c.rms_norm_eps)?,
                    q: Projection::new(&(&attn / "q_proj"), src, d, q_out, qkv_bias)?,
                    k: Projection::new(&(&attn / "k_proj"), src, d, kv_out, qkv_bias)?,
                    v: Projection::new(&(&attn / "v_proj"), src, d, kv_out, qkv_bias)?,
                    o: Projection::new(&(&attn / "o_proj"), src, q_out, d, c.attention_bias)?,
                    post_norm: RmsNorm::new(&(&p / "post_attention_layernorm"), src, d, c.rms_norm_eps)?,
                    gate: Projection::new(&(&mlp / "gate_proj"), src, d, c.intermediate_size, c.mlp_bias)?,
                    up: Projection::new(&(&mlp / "up_proj"), src, d, c.intermediate_size, c.mlp_bias)?,
                    down: Projection::new(&(&mlp / "down_proj"), src, c.intermediate_size, d, c.mlp_bias)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(&(&model / "norm"), src, d, c.rms_norm_eps)?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(src.tensor(&(vs / "lm_head"), "weight", &[vocab, d], Init::Normal)?)
        };
        Ok(Llama {
            embed,
            layers,
            norm,
            lm_head,
            heads: c.num_attention_heads,
            kv_heads: c.kv_heads(),
            head_dim: hd,
            inv_freq: inverse_frequencies(hd, c.rope_theta, c.rope_scaling.as_ref()),
        })
    }

    /// `(cos, sin)` `[t, head_dim]` for positions `offset..offset + t`, as `LlamaRotaryEmbedding` computes them.
    fn rotary(&self, offset: i64, t: i64, device: Device) -> (Tensor, Tensor) {
        let positions = Tensor::arange_start(offset, offset + t, (Kind::Float, device));
        let freqs = positions.outer(&self.inv_freq.to_device(device));
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        (emb.cos(), emb.sin())
    }

    fn attention(
        &self,
        l: &Layer,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        past: Option<&mut Option<(Tensor, Tensor)>>,
        trace: Option<(&mut Trace, usize)>,
    ) -> Tensor {
        let (batch, t, _) = x.size3().expect("[B, t, d]");
        let split = |z: Tensor, heads: i64| z.view([batch, t, heads, self.head_dim]).transpose(1, 2);
        let (cos, sin) = rope;
        let (cos, sin) = (cos.to_kind(x.kind()), sin.to_kind(x.kind()));
        let rotate = |z: &Tensor| {
            let halves = z.chunk(2, -1);
            let rotated = Tensor::cat(&[-&halves[1], halves[0].shallow_clone()], -1);
            z * &cos + rotated * &sin
        };
        let q = rotate(&split(l.q.forward(x), self.heads));
        let k = rotate(&split(l.k.forward(x), self.kv_heads));
        let v = split(l.v.forward(x), self.kv_heads);
        let (k, v, causal) = with_cached(past, k, v);
        let groups = self.heads / self.kv_heads;
        let (k, v) = if groups > 1 {
            (k.repeat_interleave_self_int(groups, 1, None), v.repeat_interleave_self_int(groups, 1, None))
        } else {
            (k, v)
        };
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, causal, None, false);
        if let Some((trace, layer)) = trace {
            trace.add_heads(layer, &y, None);
        }
        l.o.forward(&y.transpose(1, 2).contiguous().view([batch, t, self.heads * self.head_dim]))
    }

    fn run(&self, x: &Tensor, cache: Option<&mut KvCache>) -> Tensor {
        self.project(&self.run_layers(x, cache, None, None))
    }

    /// Logits of `x` through the layers in `keep` only (in order): the model with the others removed.
    pub fn forward_layers(&self, x: &Tensor, keep: &[usize]) -> Tensor {
        self.project(&self.run_layers(x, None, Some(keep), None))
    }

    /// Logits of `x`, adding what pruning scores need to `trace` (see [`Trace`]).
    pub fn forward_traced(&self, x: &Tensor, trace: &mut Trace) -> Tensor {
        self.project(&self.run_layers(x, None, None, Some(trace)))
    }

    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// Final hidden states (after the last norm) of `x` through the layers (those in `keep`, if given).
    fn run_layers(
        &self,
        x: &Tensor,
        mut cache: Option<&mut KvCache>,
        keep: Option<&[usize]>,
        mut trace: Option<&mut Trace>,
    ) -> Tensor {
        let t = x.size()[1];
        let offset = cache.as_ref().map_or(0, |c| c.len);
        let rope = self.rotary(offset, t, x.device());
        let mut h = Blocks::embed(self, x, Mode::Eval);
        if let Some(c) = cache.as_deref_mut() {
            c.layers.resize_with(self.layers.len(), || None);
            c.len += t;
        }
        if let Some(trace) = trace.as_deref_mut() {
            let channels = self.layers.first().map_or(0, |l| l.up.weight.size()[0]);
            trace.start_batch(self.layers.len(), channels, self.heads, x.numel() as i64, x.device());
        }
        for (i, l) in self.layers.iter().enumerate() {
            if keep.is_some_and(|keep| !keep.contains(&i)) {
                continue;
            }
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            h = self.layer(l, &h, &rope, slot, trace.as_deref_mut().map(|t| (t, i)));
        }
        self.norm.forward(&h)
    }

    /// One decoder layer: attention and the gated MLP, each on the normed residual stream and added to it.
    fn layer(
        &self,
        l: &Layer,
        h: &Tensor,
        rope: &(Tensor, Tensor),
        past: Option<&mut Option<(Tensor, Tensor)>>,
        mut trace: Option<(&mut Trace, usize)>,
    ) -> Tensor {
        let traced = trace.as_mut().map(|(t, i)| (&mut **t, *i));
        let mid = h + self.attention(l, &l.input_norm.forward(h), rope, past, traced);
        let n = l.post_norm.forward(&mid);
        let act = l.gate.forward(&n).silu() * l.up.forward(&n);
        let out = &mid + l.down.forward(&act);
        if let Some((trace, i)) = trace {
            trace.add_mlp(i, &act, None);
            trace.add_cosine(i, h, &out, None);
        }
        out
    }

    /// Logits of final hidden states: in f32 whatever the weights are held in (as transformers' `logits.float()`).
    fn project(&self, h: &Tensor) -> Tensor {
        h.matmul(&self.lm_head.as_ref().unwrap_or(&self.embed).tr()).to_kind(Kind::Float)
    }
}

/// `inv_freq` of `transformers`' rope initialisers (default, linear, llama3), in f32 with the same operations.
fn inverse_frequencies(head_dim: i64, theta: f64, scaling: Option<&RopeScaling>) -> Tensor {
    let exponents =
        Tensor::arange_start_step(0, head_dim, 2, (Kind::Int64, Device::Cpu)).to_kind(Kind::Float) / head_dim as f64;
    let inv_freq = (Tensor::from(theta as f32).pow(&exponents)).reciprocal();
    match scaling {
        None => inv_freq,
        Some(RopeScaling::Linear { factor }) => inv_freq / *factor,
        Some(RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings }) => {
            let old = *original_max_position_embeddings;
            let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
            let wavelen = inv_freq.reciprocal() * (2.0 * std::f64::consts::PI);
            let scaled = inv_freq.where_self(&wavelen.le(low_wavelen), &(&inv_freq / *factor));
            let smooth = (wavelen.reciprocal() * old - *low_freq_factor) / (high_freq_factor - low_freq_factor);
            let smoothed: Tensor = (smooth.ones_like() - &smooth) * &scaled / *factor + &smooth * &scaled;
            let medium = wavelen.ge(high_wavelen).logical_and(&wavelen.le(low_wavelen));
            smoothed.where_self(&medium, &scaled)
        }
    }
}

impl Model for Llama {
    fn forward(&self, x: &Tensor, _mode: Mode<'_>) -> Tensor {
        self.run(x, None)
    }

    fn decoder(&self) -> Option<&dyn Decoder> {
        Some(self)
    }

    fn language_model(&self) -> Option<&dyn LanguageModel> {
        Some(self)
    }
}

impl LanguageModel for Llama {
    fn hidden(&self, x: &Tensor, _mode: Mode<'_>) -> Tensor {
        self.run_layers(x, None, None, None)
    }

    fn logits_of(&self, hidden: &Tensor) -> Tensor {
        self.project(hidden)
    }

    fn head_parameters(&self) -> Vec<Tensor> {
        vec![self.lm_head.as_ref().unwrap_or(&self.embed).shallow_clone()]
    }

    fn blocks(&self) -> Option<&dyn Blocks> {
        Some(self)
    }
}

impl Blocks for Llama {
    fn count(&self) -> usize {
        self.layers.len()
    }

    fn embed(&self, x: &Tensor, _mode: Mode<'_>) -> Tensor {
        Tensor::embedding(&self.embed, x, -1, false, false)
    }

    fn block(&self, i: usize, h: &Tensor, _mode: Mode<'_>) -> Tensor {
        let rope = self.rotary(0, h.size()[1], h.device());
        self.layer(&self.layers[i], h, &rope, None, None)
    }

    fn finish(&self, h: &Tensor) -> Tensor {
        self.norm.forward(h)
    }
}

impl Decoder for Llama {
    fn decode(&self, x: &Tensor, cache: &mut KvCache) -> Tensor {
        self.run(x, Some(cache))
    }
}

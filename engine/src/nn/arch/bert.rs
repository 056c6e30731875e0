//! BERT-family encoders (BERT, MiniLM, the sentence-transformers models) as sentence embedders: token ids `[B, T]`
//! → one embedding `[B, hidden_size]` per sequence, the way sentence-transformers computes it — `transformers`'
//! `BertModel` (word + position + token-type embeddings and LayerNorm, post-norm encoder layers, GELU), then pooling
//! and, optionally, L2 normalisation.
//!
//! ```yaml
//! model: {arch: bert, vocab_size: 30522, hidden_size: 384, num_hidden_layers: 6, num_attention_heads: 12,
//!         intermediate_size: 1536, max_position_embeddings: 512, pooling: mean, normalize: true}
//! ```
//! The config mirrors `config.json` (same field names, [`BertConfig::from_hf_json`]), plus the sentence-transformers
//! head: `pooling` (`mean` over the real tokens, `cls` the first token's state, or `pooler`, BertModel's tanh dense
//! layer on it), `normalize` and an optional `dense` head after it (sentence-transformers' `Dense`: a PCA projection
//! to fewer dimensions, say). Padding is the id `pad_token_id` (BERT's `[PAD]`, never a real token): the attention
//! mask is `ids != pad`, and each batch is cut to its longest sequence first, so padding costs nothing. Weights are
//! registered under their Hugging Face keys (`encoder.layer.0.attention.self.query.weight`); a `bert.` prefix is
//! accepted on load. Dropout is not applied (evaluation and distillation targets are deterministic).

use super::Architecture;
use crate::nn::prune::Trace;
use crate::nn::weights::source::{Init, WeightSource};
use crate::nn::{Encoder, EncoderStates, Mode, Model};
use crate::rng::Rng;
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BertConfig {
    /// Word-piece vocabulary size (`config.json`'s name, as every field here).
    pub vocab_size: i64,
    /// Width of the hidden states.
    pub hidden_size: i64,
    /// Encoder layers.
    pub num_hidden_layers: i64,
    /// Attention heads per layer.
    pub num_attention_heads: i64,
    /// Width of the feed-forward layer.
    pub intermediate_size: i64,
    /// The longest input, in tokens.
    pub max_position_embeddings: i64,
    /// Token type (segment) embeddings.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: i64,
    /// LayerNorm's epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// `gelu` or `relu`.
    #[serde(default)]
    pub hidden_act: HiddenAct,
    /// The padding token.
    #[serde(default)]
    pub pad_token_id: i64,
    /// How token states become one embedding.
    #[serde(default)]
    pub pooling: Pooling,
    /// L2-normalise the embedding (sentence-transformers' `Normalize` module).
    #[serde(default)]
    pub normalize: bool,
    /// The checkpoint has BertModel's pooler layer (`pooler.dense`), kept so export is the identity.
    #[serde(default)]
    pub pooler: bool,
    /// A linear map of the (normalised) embedding to another width — sentence-transformers' `Dense` module, e.g. a
    /// PCA projection from `prune`'s `pca` — under `dense.linear.*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense: Option<DenseHead>,
}

/// sentence-transformers' `Dense` module after pooling: `activation(linear(x))`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DenseHead {
    /// The embedding width after the head.
    pub out_features: i64,
    /// The head adds a bias.
    #[serde(default)]
    pub bias: bool,
    /// Applied after the linear map (`identity` by default).
    #[serde(default)]
    pub activation: DenseActivation,
    /// The head comes before `Normalize` (sentence-transformers' modules Pooling, Dense, Normalize, as LaBSE has them)
    /// rather than after it (Pooling, Normalize, Dense: a PCA of normalised embeddings).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub before_normalize: bool,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DenseActivation {
    #[default]
    Identity,
    Tanh,
}

fn default_type_vocab() -> i64 {
    2
}

fn default_eps() -> f64 {
    1e-12
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// The exact, erf-based GELU (`gelu` in `config.json`).
    #[default]
    Gelu,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean of the states of the real (non-padding) tokens.
    #[default]
    Mean,
    /// The state of the first token (`[CLS]`).
    Cls,
    /// `tanh(dense(cls))`: BertModel's `pooler_output`.
    Pooler,
}

impl BertConfig {
    /// Width of the embeddings: `hidden_size`, or the `dense` head's output.
    pub fn output_size(&self) -> i64 {
        self.dense.as_ref().map_or(self.hidden_size, |d| d.out_features)
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Reads a Hugging Face `config.json` of `model_type` `bert` (unknown fields ignored); errors name the field.
    /// The sentence-transformers head (`pooling`, `normalize`) is not in `config.json`: it is left at mean pooling
    /// without normalisation for the caller to set.
    pub fn from_hf_json(json: &serde_json::Value) -> Result<BertConfig, String> {
        let model_type = json.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        if model_type != "bert" {
            return Err(format!("model_type: `{model_type}` is not a BERT model (bert)"));
        }
        let need = |field: &str| match json.get(field) {
            None | Some(serde_json::Value::Null) => Err(format!("{field}: missing")),
            Some(v) => v.as_i64().ok_or_else(|| format!("{field}: expected an integer, got {v}")),
        };
        let or = |field: &str, default: i64| {
            if json.get(field).is_some_and(|v| !v.is_null()) {
                need(field)
            } else {
                Ok(default)
            }
        };
        let hidden_act = match json.get("hidden_act").and_then(|v| v.as_str()).unwrap_or("gelu") {
            "gelu" => HiddenAct::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => HiddenAct::GeluTanh,
            "relu" => HiddenAct::Relu,
            other => return Err(format!("hidden_act: `{other}` is not supported (gelu, gelu_new, relu)")),
        };
        if let Some(kind) = json.get("position_embedding_type").and_then(|v| v.as_str()) {
            if kind != "absolute" {
                return Err(format!("position_embedding_type: `{kind}` is not supported (absolute)"));
            }
        }
        let config = BertConfig {
            vocab_size: need("vocab_size")?,
            hidden_size: need("hidden_size")?,
            num_hidden_layers: need("num_hidden_layers")?,
            num_attention_heads: need("num_attention_heads")?,
            intermediate_size: need("intermediate_size")?,
            max_position_embeddings: need("max_position_embeddings")?,
            type_vocab_size: or("type_vocab_size", default_type_vocab())?,
            layer_norm_eps: match json.get("layer_norm_eps") {
                Some(v) => v.as_f64().ok_or("layer_norm_eps: expected a number")?,
                None => default_eps(),
            },
            hidden_act,
            pad_token_id: or("pad_token_id", 0)?,
            pooling: Pooling::Mean,
            normalize: false,
            pooler: false,
            dense: None,
        };
        config.validate().map_err(|e| e.trim_start_matches("model.").to_string())?;
        Ok(config)
    }

    /// `config.json` as transformers 5 writes it for `BertModel`: what [`from_hf_json`](Self::from_hf_json) reads back.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let act = match self.hidden_act {
            HiddenAct::Gelu => "gelu",
            HiddenAct::GeluTanh => "gelu_new",
            HiddenAct::Relu => "relu",
        };
        serde_json::json!({
            "architectures": ["BertModel"],
            "model_type": "bert",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "hidden_act": act,
            "pad_token_id": self.pad_token_id,
            "position_embedding_type": "absolute",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "dtype": "float32",
        })
    }
}

impl Architecture for BertConfig {
    fn name(&self) -> &'static str {
        "bert"
    }

    fn validate(&self) -> Result<(), String> {
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v <= 0 {
                return Err(format!("model.{field}: must be positive, got {v}"));
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(format!(
                "model.num_attention_heads: {} heads do not divide hidden_size {}",
                self.num_attention_heads, self.hidden_size
            ));
        }
        if !(0..self.vocab_size).contains(&self.pad_token_id) {
            return Err(format!("model.pad_token_id: {} is not in the vocabulary", self.pad_token_id));
        }
        if self.pooling == Pooling::Pooler && !self.pooler {
            return Err("model.pooling: `pooler` needs the pooler layer (`pooler: true`)".into());
        }
        if let Some(d) = &self.dense {
            if d.out_features <= 0 {
                return Err(format!("model.dense.out_features: must be positive, got {}", d.out_features));
            }
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err("model.layer_norm_eps: must be positive".into());
        }
        Ok(())
    }

    fn build(&self, vs: &nn::Path, input_shape: &[i64], classes: i64, rng: &mut Rng) -> Result<Box<dyn Model>> {
        check_shapes(self, input_shape, classes)?;
        Ok(Box::new(Bert::new(self, vs, &mut WeightSource::Init(rng))?))
    }
}

/// A BERT takes token windows no longer than its positions and gives embeddings of `hidden_size`.
pub fn check_shapes(c: &BertConfig, input_shape: &[i64], classes: i64) -> Result<()> {
    ensure!(
        input_shape.len() == 1 && input_shape[0] <= c.max_position_embeddings,
        "bert: takes token windows [T] with T ≤ {} (max_position_embeddings), the samples are {input_shape:?}",
        c.max_position_embeddings
    );
    ensure!(classes == c.output_size(), "bert: gives embeddings of {} dimensions, not {classes}", c.output_size());
    Ok(())
}

struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    fn new(vs: &nn::Path, src: &mut WeightSource, inputs: i64, outputs: i64) -> Result<Dense> {
        Ok(Dense {
            weight: src.tensor(vs, "weight", &[outputs, inputs], Init::Normal)?,
            bias: src.tensor(vs, "bias", &[outputs], Init::Zeros)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}

struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Norm {
    fn new(vs: &nn::Path, src: &mut WeightSource, size: i64, eps: f64) -> Result<Norm> {
        Ok(Norm {
            weight: src.tensor(vs, "weight", &[size], Init::Ones)?,
            bias: src.tensor(vs, "bias", &[size], Init::Zeros)?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.weight.size()[0]], Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

struct Layer {
    query: Dense,
    key: Dense,
    value: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

/// The encoder and its pooling; parameters under their Hugging Face keys.
pub struct Bert {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    embed_norm: Norm,
    layers: Vec<Layer>,
    pooler: Option<Dense>,
    /// The `dense` head: weight `[out, hidden]`, optional bias.
    head: Option<(Tensor, Option<Tensor>)>,
    config: BertConfig,
}

impl Bert {
    pub fn new(c: &BertConfig, vs: &nn::Path, src: &mut WeightSource) -> Result<Bert> {
        c.validate().map_err(anyhow::Error::msg)?;
        let (d, eps) = (c.hidden_size, c.layer_norm_eps);
        let e = vs / "embeddings";
        let word = src.tensor(&(&e / "word_embeddings"), "weight", &[c.vocab_size, d], Init::Normal)?;
        let position =
            src.tensor(&(&e / "position_embeddings"), "weight", &[c.max_position_embeddings, d], Init::Normal)?;
        let token_type =
            src.tensor(&(&e / "token_type_embeddings"), "weight", &[c.type_vocab_size, d], Init::Normal)?;
        let embed_norm = Norm::new(&(&e / "LayerNorm"), src, d, eps)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let p = vs / "encoder" / "layer" / i;
                let attention = &p / "attention";
                Ok(Layer {
                    query: Dense::new(&(&attention / "self" / "query"), src, d, d)?,
                    key: Dense::new(&(&attention / "self" / "key"), src, d, d)?,
                    value: Dense::new(&(&attention / "self" / "value"), src, d, d)?,
                    attention_out: Dense::new(&(&attention / "output" / "dense"), src, d, d)?,
                    attention_norm: Norm::new(&(&attention / "output" / "LayerNorm"), src, d, eps)?,
                    intermediate: Dense::new(&(&p / "intermediate" / "dense"), src, d, c.intermediate_size)?,
                    output: Dense::new(&(&p / "output" / "dense"), src, c.intermediate_size, d)?,
                    output_norm: Norm::new(&(&p / "output" / "LayerNorm"), src, d, eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let pooler = if c.pooler { Some(Dense::new(&(vs / "pooler" / "dense"), src, d, d)?) } else { None };
        let head = match &c.dense {
            None => None,
            Some(h) => {
                let p = vs / "dense" / "linear";
                let weight = src.tensor(&p, "weight", &[h.out_features, d], Init::Normal)?;
                let bias = if h.bias { Some(src.tensor(&p, "bias", &[h.out_features], Init::Zeros)?) } else { None };
                Some((weight, bias))
            }
        };
        Ok(Bert { word, position, token_type, embed_norm, layers, pooler, head, config: c.clone() })
    }

    /// The last hidden states `[B, t, d]` of `ids` `[B, t]` and the mask of real tokens `[B, t]`, after cutting the
    /// batch to its longest sequence (padding is on the right).
    pub fn hidden_states(&self, ids: &Tensor) -> (Tensor, Tensor) {
        let (h, mask, _) = self.run(ids, None, &[]);
        (h, mask)
    }

    /// [`Bert::hidden_states`], adding what pruning scores need to `trace` (real tokens only).
    pub fn hidden_states_traced(&self, ids: &Tensor, trace: &mut Trace) -> (Tensor, Tensor) {
        let (h, mask, _) = self.run(ids, Some(trace), &[]);
        (h, mask)
    }

    /// The last hidden states, the mask, and the hidden states numbered `states` ([`Encoder`]'s numbering).
    fn run(&self, ids: &Tensor, mut trace: Option<&mut Trace>, states: &[usize]) -> (Tensor, Tensor, Vec<Tensor>) {
        let mask = ids.ne(self.config.pad_token_id);
        let longest = mask.sum_dim_intlist(1, false, Kind::Int64).max().int64_value(&[]).max(1);
        let (ids, mask) = (ids.narrow(1, 0, longest), mask.narrow(1, 0, longest));
        let (batch, t) = ids.size2().expect("token ids [B, T]");
        let positions = Tensor::arange(t, (Kind::Int64, ids.device()));
        let mut h = Tensor::embedding(&self.word, &ids, -1, false, false)
            + Tensor::embedding(&self.position, &positions, -1, false, false).unsqueeze(0)
            + self.token_type.get(0);
        h = self.embed_norm.forward(&h);
        let mut kept: Vec<Option<Tensor>> = states.iter().map(|_| None).collect();
        let mut keep = |number: usize, h: &Tensor| {
            for (slot, _) in kept.iter_mut().zip(states).filter(|(_, s)| **s == number) {
                *slot = Some(h.shallow_clone());
            }
        };
        keep(0, &h);
        let (heads, hd) = (self.config.num_attention_heads, self.config.head_dim());
        // True where a key may be attended to: [B, 1, 1, t], broadcast over heads and queries.
        let attend = mask.view([batch, 1, 1, t]);
        if let Some(trace) = trace.as_deref_mut() {
            let tokens = mask.sum(Kind::Int64).int64_value(&[]);
            trace.start_batch(self.layers.len(), self.config.intermediate_size, heads, tokens, ids.device());
        }
        for (layer, l) in self.layers.iter().enumerate() {
            let input = trace.is_some().then(|| h.shallow_clone());
            let split = |z: Tensor| z.view([batch, t, heads, hd]).transpose(1, 2);
            let (q, k, v) = (split(l.query.forward(&h)), split(l.key.forward(&h)), split(l.value.forward(&h)));
            let a = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&attend), 0.0, false, None, false);
            if let Some(trace) = trace.as_deref_mut() {
                trace.add_heads(layer, &a, Some(&mask));
            }
            let a = a.transpose(1, 2).contiguous().view([batch, t, heads * hd]);
            h = l.attention_norm.forward(&(l.attention_out.forward(&a) + &h));
            let i = l.intermediate.forward(&h);
            let i = match self.config.hidden_act {
                HiddenAct::Gelu => i.gelu("none"),
                HiddenAct::GeluTanh => i.gelu("tanh"),
                HiddenAct::Relu => i.relu(),
            };
            h = l.output_norm.forward(&(l.output.forward(&i) + &h));
            if let (Some(trace), Some(input)) = (trace.as_deref_mut(), input) {
                trace.add_mlp(layer, &i, Some(&mask));
                trace.add_cosine(layer, &input, &h, Some(&mask));
            }
            keep(layer + 1, &h);
        }
        let states = kept.into_iter().map(|s| s.expect("state numbers are checked against the layers")).collect();
        (h, mask, states)
    }

    /// One embedding `[B, d]` per sequence.
    pub fn embed(&self, ids: &Tensor) -> Tensor {
        let (h, mask) = self.hidden_states(ids);
        self.pool(&h, &mask)
    }

    /// The embeddings of last hidden states `h` `[B, t, d]` with the mask of real tokens `[B, t]`: pooled, (with
    /// `normalize`) L2-normalised and (with `dense`) mapped to its width, in the order of sentence-transformers'
    /// modules, in f32.
    pub fn pool(&self, h: &Tensor, mask: &Tensor) -> Tensor {
        let pooled = match self.config.pooling {
            Pooling::Mean => {
                let m = mask.unsqueeze(-1).to_kind(h.kind());
                (h * &m).sum_dim_intlist(1, false, h.kind()) / m.sum_dim_intlist(1, false, h.kind()).clamp_min(1e-9)
            }
            Pooling::Cls => h.select(1, 0),
            Pooling::Pooler => self.pooler.as_ref().expect("validated: pooler present").forward(&h.select(1, 0)).tanh(),
        };
        let pooled = pooled.to_kind(Kind::Float);
        let before = self.config.dense.as_ref().is_some_and(|d| d.before_normalize);
        if before {
            self.normalize(&self.dense(&pooled))
        } else {
            self.dense(&self.normalize(&pooled))
        }
    }

    fn normalize(&self, x: &Tensor) -> Tensor {
        if self.config.normalize {
            x / x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
        } else {
            x.shallow_clone()
        }
    }

    fn dense(&self, x: &Tensor) -> Tensor {
        match (&self.head, &self.config.dense) {
            (Some((weight, bias)), Some(head)) => {
                let out = x.linear(&weight.to_kind(Kind::Float), bias.as_ref().map(|b| b.to_kind(Kind::Float)));
                match head.activation {
                    DenseActivation::Identity => out,
                    DenseActivation::Tanh => out.tanh(),
                }
            }
            _ => x.shallow_clone(),
        }
    }
}

impl Model for Bert {
    fn forward(&self, x: &Tensor, _mode: Mode<'_>) -> Tensor {
        self.embed(x)
    }

    fn encoder(&self) -> Option<&dyn Encoder> {
        Some(self)
    }
}

impl Encoder for Bert {
    fn layers(&self) -> usize {
        self.layers.len()
    }

    fn width(&self) -> i64 {
        self.config.hidden_size
    }

    /// Panics on a state number above [`Encoder::layers`] (callers check them against the model first).
    fn embed_with_states(&self, ids: &Tensor, states: &[usize]) -> EncoderStates {
        assert!(
            states.iter().all(|&s| s <= self.layers.len()),
            "hidden states {states:?} of a {}-layer encoder",
            self.layers.len()
        );
        let (h, mask, states) = self.run(ids, None, states);
        EncoderStates { embeddings: self.pool(&h, &mask), states, mask }
    }
}

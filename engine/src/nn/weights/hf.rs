//! Hugging Face model directories: `config.json` plus `model.safetensors`, or shards named by
//! `model.safetensors.index.json`, and for sentence encoders the sentence-transformers files beside them. Read locally
//! only; nothing is ever downloaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use tch::Tensor;

use crate::nn::arch::bert::{BertConfig, DenseActivation, DenseHead, Pooling};
use crate::nn::arch::llama::LlamaConfig;

/// The `config.json` of a directory, parsed.
pub fn read_config(dir: &Path) -> Result<serde_json::Value> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
}

/// The weight files of a directory: its shards in index order, or its one `model.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).with_context(|| format!("{}: cannot read", index.display()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", index.display()))?;
        let map =
            json["weight_map"].as_object().with_context(|| format!("{}: no `weight_map` object", index.display()))?;
        let mut files: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
        files.sort();
        files.dedup();
        let files: Vec<PathBuf> = files.into_iter().map(|f| dir.join(f)).collect();
        for f in &files {
            if !f.exists() {
                bail!("{}: `weight_map` names {}, which does not exist", index.display(), f.display());
            }
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if !single.exists() {
        bail!("{}: no model.safetensors (or model.safetensors.index.json)", dir.display());
    }
    Ok(vec![single])
}

/// Every tensor of the directory's weight files, by key.
pub fn read_weights(dir: &Path) -> Result<BTreeMap<String, Tensor>> {
    let mut tensors = BTreeMap::new();
    for file in weight_files(dir)? {
        for (name, tensor) in super::safetensors::read(&file)? {
            if tensors.insert(name.clone(), tensor).is_some() {
                bail!("{}: tensor `{name}` is also in another shard", file.display());
            }
        }
    }
    Ok(tensors)
}

/// A Llama-family directory as a config and weights under their Hugging Face keys (a `bert.`-style prefix does not
/// apply to Llama checkpoints).
pub fn load_llama(dir: &Path) -> Result<(LlamaConfig, BTreeMap<String, Tensor>)> {
    let json = read_config(dir)?;
    let config =
        LlamaConfig::from_hf_json(&json).map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("config.json").display()))?;
    Ok((config, read_weights(dir)?))
}

/// The architecture a directory's `config.json` names (`model_type`), for the message that lists what is supported.
pub fn model_type(dir: &Path) -> Result<String> {
    let json = read_config(dir)?;
    Ok(json.get("model_type").and_then(|v| v.as_str()).unwrap_or("").to_string())
}

/// A BERT directory as a config and weights under BertModel's keys: a `bert.` prefix (BertForMaskedLM and the like)
/// is removed, the pretraining heads (`cls.*`) and the `position_ids` buffer are left out (logged), and the pooler is
/// kept when the checkpoint has one. The sentence-transformers files beside it, when present, set the pooling
/// (`1_Pooling/config.json`), the normalisation (a `Normalize` module in `modules.json`) and a `Dense` head (its
/// folder's weights under `dense.`).
pub fn load_bert(dir: &Path) -> Result<(BertConfig, BTreeMap<String, Tensor>)> {
    let json = read_config(dir)?;
    let mut config =
        BertConfig::from_hf_json(&json).map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("config.json").display()))?;
    let head = sentence_transformers_head(dir)?;
    head.apply(&mut config);
    let mut weights = BTreeMap::new();
    if let Some((_, dense_dir)) = &head.dense {
        for (name, tensor) in super::safetensors::read(&dense_dir.join("model.safetensors"))? {
            weights.insert(format!("{DENSE_PREFIX}{name}"), tensor);
        }
    }
    let mut left_out = Vec::new();
    for (name, tensor) in read_weights(dir)? {
        let name = name.strip_prefix("bert.").map(str::to_string).unwrap_or(name);
        if name.starts_with("cls.") || name == "embeddings.position_ids" {
            left_out.push(name);
        } else {
            weights.insert(name, tensor);
        }
    }
    if !left_out.is_empty() {
        tracing::info!(
            "{}: left out {} tensors outside the encoder ({})",
            dir.display(),
            left_out.len(),
            left_out.join(", ")
        );
    }
    config.pooler = weights.contains_key("pooler.dense.weight");
    Ok((config, weights))
}

/// The sentence-transformers modules after the encoder: pooling, normalisation and a `Dense` head.
#[derive(Clone, Debug, PartialEq)]
pub struct SentenceHead {
    pub pooling: Pooling,
    pub normalize: bool,
    /// The `Dense` module and its folder (`2_Dense`).
    pub dense: Option<(DenseHead, PathBuf)>,
}

impl SentenceHead {
    /// Sets the head on `config`.
    pub fn apply(&self, config: &mut BertConfig) {
        config.pooling = self.pooling;
        config.normalize = self.normalize;
        config.dense = self.dense.as_ref().map(|(d, _)| d.clone());
    }
}

/// The module's class name: `sentence_transformers.models.Pooling` and (sentence-transformers ≥ 5)
/// `sentence_transformers.base.modules.pooling.Pooling` both name `Pooling`.
fn module_class(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// The head of a sentence-transformers directory (`modules.json`: Transformer, Pooling, then optionally Normalize and
/// a `Dense`, in that order); mean pooling alone when the directory is a plain Hugging Face one.
pub fn sentence_transformers_head(dir: &Path) -> Result<SentenceHead> {
    let modules = dir.join("modules.json");
    let mut head = SentenceHead { pooling: Pooling::Mean, normalize: false, dense: None };
    if let Ok(text) = std::fs::read_to_string(&modules) {
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", modules.display()))?;
        let listed: Vec<(&str, &str)> = json
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| (m["type"].as_str().unwrap_or(""), m["path"].as_str().unwrap_or("")))
            .collect();
        let classes: Vec<&str> = listed.iter().map(|(t, _)| module_class(t)).collect();
        let supported = matches!(
            classes.as_slice(),
            ["Transformer", "Pooling"]
                | ["Transformer", "Pooling", "Normalize"]
                | ["Transformer", "Pooling", "Dense"]
                | ["Transformer", "Pooling", "Normalize", "Dense"]
                | ["Transformer", "Pooling", "Dense", "Normalize"]
        );
        if !supported {
            bail!(
                "{}: modules {classes:?} are not supported (Transformer, Pooling, then Normalize and a Dense)",
                modules.display()
            );
        }
        head.normalize = classes.contains(&"Normalize");
        if let Some((_, path)) = listed.iter().find(|(t, _)| module_class(t) == "Dense") {
            let mut dense = dense_config(&dir.join(path))?;
            dense.before_normalize = classes.ends_with(&["Dense", "Normalize"]);
            head.dense = Some((dense, dir.join(path)));
        }
    }
    let pooling_file = dir.join("1_Pooling/config.json");
    if let Ok(text) = std::fs::read_to_string(&pooling_file) {
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", pooling_file.display()))?;
        let chosen: Vec<&str> = json
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| k.starts_with("pooling_mode_") && v.as_bool() == Some(true))
            .map(|(k, _)| k.as_str())
            .collect();
        head.pooling = match chosen.as_slice() {
            ["pooling_mode_mean_tokens"] => Pooling::Mean,
            ["pooling_mode_cls_token"] => Pooling::Cls,
            other => bail!(
                "{}: pooling {other:?} is not supported (exactly one of pooling_mode_mean_tokens, \
                 pooling_mode_cls_token)",
                pooling_file.display()
            ),
        };
    }
    Ok(head)
}

/// A `Dense` module's `config.json`: identity or tanh activation, no residual.
fn dense_config(dir: &Path) -> Result<DenseHead> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
    let out_features = json["out_features"]
        .as_i64()
        .with_context(|| format!("{}: `out_features` must be an integer", path.display()))?;
    let activation = match json["activation_function"].as_str().map(module_class) {
        Some("Identity") => DenseActivation::Identity,
        Some("Tanh") | None => DenseActivation::Tanh,
        Some(other) => bail!("{}: activation `{other}` is not supported (Identity, Tanh)", path.display()),
    };
    if json["use_residual"].as_bool() == Some(true) {
        bail!("{}: `use_residual` is not supported", path.display());
    }
    Ok(DenseHead { out_features, bias: json["bias"].as_bool().unwrap_or(true), activation, before_normalize: false })
}

/// The name a `Dense` module's weights have in anbiq (`linear.weight` in `2_Dense/model.safetensors` is
/// `dense.linear.weight`).
pub const DENSE_PREFIX: &str = "dense.";

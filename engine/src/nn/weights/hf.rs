//! Hugging Face model directories: `config.json` plus `model.safetensors`, or shards named by
//! `model.safetensors.index.json`, and for sentence encoders the sentence-transformers files beside them. Read locally
//! only; nothing is ever downloaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use tch::Tensor;

use crate::nn::arch::bert::{BertConfig, Pooling};
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
/// (`1_Pooling/config.json`) and the normalisation (a `Normalize` module in `modules.json`).
pub fn load_bert(dir: &Path) -> Result<(BertConfig, BTreeMap<String, Tensor>)> {
    let json = read_config(dir)?;
    let mut config =
        BertConfig::from_hf_json(&json).map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("config.json").display()))?;
    let (pooling, normalize) = sentence_transformers_head(dir)?;
    config.pooling = pooling;
    config.normalize = normalize;
    let mut weights = BTreeMap::new();
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

/// The pooling and normalisation of a sentence-transformers directory; mean pooling without normalisation when the
/// directory is a plain Hugging Face one.
pub fn sentence_transformers_head(dir: &Path) -> Result<(Pooling, bool)> {
    let modules = dir.join("modules.json");
    let normalize = match std::fs::read_to_string(&modules) {
        Err(_) => false,
        Ok(text) => {
            let json: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", modules.display()))?;
            let types: Vec<&str> = json.as_array().into_iter().flatten().filter_map(|m| m["type"].as_str()).collect();
            for t in &types {
                let known = ["models.Transformer", "models.Pooling", "models.Normalize"];
                if !known.iter().any(|k| t.ends_with(k)) {
                    bail!("{}: module `{t}` is not supported (Transformer, Pooling, Normalize)", modules.display());
                }
            }
            types.iter().any(|t| t.ends_with("models.Normalize"))
        }
    };
    let pooling_file = dir.join("1_Pooling/config.json");
    let pooling = match std::fs::read_to_string(&pooling_file) {
        Err(_) => Pooling::Mean,
        Ok(text) => {
            let json: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", pooling_file.display()))?;
            let chosen: Vec<&str> = json
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| k.starts_with("pooling_mode_") && v.as_bool() == Some(true))
                .map(|(k, _)| k.as_str())
                .collect();
            match chosen.as_slice() {
                ["pooling_mode_mean_tokens"] => Pooling::Mean,
                ["pooling_mode_cls_token"] => Pooling::Cls,
                other => bail!(
                    "{}: pooling {other:?} is not supported (exactly one of pooling_mode_mean_tokens, \
                     pooling_mode_cls_token)",
                    pooling_file.display()
                ),
            }
        }
    };
    Ok((pooling, normalize))
}

//! Hugging Face model directories: `config.json` plus `model.safetensors`, or shards named by
//! `model.safetensors.index.json`. Read locally only; nothing is ever downloaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use tch::Tensor;

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

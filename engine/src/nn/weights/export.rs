//! A model artifact out to the ecosystem: `anbiq export … --format hf` writes a Hugging Face directory that
//! `transformers` loads with `from_pretrained(DIR)`.
//!
//! For a `llama` model: `config.json` (as transformers 5 writes it), `generation_config.json`, `model.safetensors` —
//! the stored weights already carry their Hugging Face keys, so the tensor data is copied byte for byte and only the
//! header gains `{"format": "pt"}`, which `transformers` checks — and the tokenizer files the model was imported
//! with, if any.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::nn::arch::llama::LlamaConfig;

/// Files of a Hugging Face directory that travel with a model unchanged (its tokenizer).
pub const TOKENIZER_FILES: &[&str] = &["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

/// Writes a llama model — its config, output size `vocab`, its stored `weights` file and the tokenizer files in
/// `beside` (if any) — as a Hugging Face directory `out_dir` (new, or empty).
pub fn hf(config: &LlamaConfig, vocab: i64, weights: &Path, beside: &Path, out_dir: &Path) -> Result<Vec<PathBuf>> {
    if out_dir.exists() && std::fs::read_dir(out_dir)?.next().is_some() {
        bail!("{} is not empty: export writes into a new or empty directory", out_dir.display());
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut written = Vec::new();
    let mut write_json = |name: &str, value: serde_json::Value| -> Result<()> {
        let path = out_dir.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(&value)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
        Ok(())
    };
    write_json("config.json", config.to_hf_json(vocab))?;
    let mut generation = serde_json::json!({"_from_model_config": true});
    for (field, id) in [("bos_token_id", config.bos_token_id), ("eos_token_id", config.eos_token_id)] {
        if let Some(id) = id {
            generation[field] = id.into();
        }
    }
    write_json("generation_config.json", generation)?;
    let out_weights = out_dir.join("model.safetensors");
    copy_with_format_metadata(weights, &out_weights)?;
    written.push(out_weights);
    written.extend(copy_tokenizer_files(beside, out_dir)?);
    Ok(written)
}

/// Copies those of [`TOKENIZER_FILES`] that `from` holds into `to`; the paths written.
pub fn copy_tokenizer_files(from: &Path, to: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for name in TOKENIZER_FILES {
        let source = from.join(name);
        if source.exists() {
            let target = to.join(name);
            std::fs::copy(&source, &target).with_context(|| format!("copying {}", source.display()))?;
            written.push(target);
        }
    }
    Ok(written)
}

/// Copies a safetensors file, setting `__metadata__.format` to `pt` in its header; the tensor data is copied as it
/// is (offsets in the header are relative to the data, so they stay valid).
fn copy_with_format_metadata(from: &Path, to: &Path) -> Result<()> {
    let mut src = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let mut len = [0u8; 8];
    src.read_exact(&mut len).with_context(|| format!("{}: not a safetensors file", from.display()))?;
    let len = u64::from_le_bytes(len);
    anyhow::ensure!(len < 100 << 20, "{}: a {len}-byte header is not a safetensors header", from.display());
    let mut header = vec![0u8; len as usize];
    src.read_exact(&mut header)?;
    let mut json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).with_context(|| format!("{}: not a safetensors header", from.display()))?;
    let metadata = json.entry("__metadata__").or_insert_with(|| serde_json::json!({}));
    metadata["format"] = "pt".into();
    let mut header = serde_json::to_vec(&json)?;
    // The data that follows stays 8-byte aligned, as the format recommends.
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let tmp = to.with_extension("safetensors.partial");
    {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(&header)?;
        src.seek(SeekFrom::Start(8 + len))?;
        std::io::copy(&mut src, &mut out)?;
        out.flush()?;
    }
    std::fs::rename(&tmp, to)?;
    Ok(())
}

//! `anbiq convert FILE.gguf OUT_DIR`: any GGUF file to safetensors, every tensor dequantised to f32, so the weights
//! can be inspected or used anywhere. For the `llama` architecture the tensors take their Hugging Face names (Q/K
//! rotary permutation undone) and a `config.json` is written beside them; other architectures keep llama.cpp's
//! names and shapes.
//!
//! Tensors are dequantised one at a time while the file is written, so memory stays at one tensor beyond the output.
//! Each file is written under a temporary name and renamed into place: an interrupted conversion leaves no file that
//! looks complete.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use safetensors::tensor::{Dtype, View};

use super::gguf::llama;
use super::gguf::{Gguf, TensorInfo};

/// What a conversion wrote.
#[derive(Debug)]
pub struct Converted {
    pub architecture: String,
    pub tensors: usize,
    /// Whether tensors carry Hugging Face names (a supported architecture).
    pub hf_names: bool,
    pub files: Vec<PathBuf>,
}

/// One output tensor, dequantised when the writer asks for its bytes.
struct Lazy<'a> {
    gguf: &'a Gguf,
    info: &'a TensorInfo,
    shape: Vec<usize>,
    /// Heads whose rotary permutation to undo (llama Q and K).
    unpermute: Option<usize>,
}

impl View for Lazy<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let mut values = self.gguf.dequantize(self.info);
        if let Some(heads) = self.unpermute {
            let rows = self.shape[0];
            let cols = self.shape.get(1).copied().unwrap_or(1);
            values = llama::unpermute(&values, rows, cols, heads).expect("checked before writing");
        }
        Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn data_len(&self) -> usize {
        self.info.elements() * 4
    }
}

/// Converts `src` into `out_dir` (created; it must be empty if it exists).
pub fn gguf_to_safetensors(src: &Path, out_dir: &Path) -> anyhow::Result<Converted> {
    let gguf = Gguf::open(src)?;
    let architecture = gguf.architecture()?.to_string();
    if out_dir.exists() && std::fs::read_dir(out_dir)?.next().is_some() {
        bail!("{} is not empty: convert writes into a new or empty directory", out_dir.display());
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    // A llama file is checked as an import checks it (every tensor in its place, rope scaling understood), so the
    // directory written is one `transformers` reads as the same model.
    let config = match architecture.as_str() {
        "llama" => Some(llama::load_config(&gguf)?),
        _ => None,
    };
    let mut tensors: Vec<(String, Lazy)> = Vec::with_capacity(gguf.tensors.len());
    for info in &gguf.tensors {
        let mapped = config
            .as_ref()
            .and_then(|c| llama::hf_name(&info.name, c.num_attention_heads as usize, c.kv_heads() as usize));
        let (name, unpermute) = mapped.unwrap_or_else(|| (info.name.clone(), None));
        let shape = info.shape();
        if let Some(heads) = unpermute {
            let rows = shape[0];
            if !rows.is_multiple_of(2 * heads) {
                bail!(
                    "{}: tensor `{}` has {rows} rows, which do not split into {heads} heads",
                    src.display(),
                    info.name
                );
            }
        }
        tensors.push((name, Lazy { gguf: &gguf, info, shape, unpermute }));
    }
    let mut files = Vec::new();
    let weights = out_dir.join("model.safetensors");
    let tmp = out_dir.join(".model.safetensors.partial");
    let info = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let count = tensors.len();
    if let Err(e) = safetensors::tensor::serialize_to_file(tensors, &info, &tmp) {
        let _ = std::fs::remove_file(&tmp); // a retry must find the directory as empty as this run did
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    std::fs::rename(&tmp, &weights)?;
    files.push(weights);
    if let Some(c) = &config {
        let path = out_dir.join("config.json");
        let vocab = c.vocab_size.context("a llama config has vocab_size")?;
        std::fs::write(&path, serde_json::to_string_pretty(&c.to_hf_json(vocab))? + "\n")?;
        files.push(path);
    }
    // The tokenizer, when the file has one of a supported kind: without it the weights are still worth having.
    match super::gguf::tokenizer::tokenizer_files(&gguf) {
        Ok((tokenizer, config)) => {
            for (name, value) in [("tokenizer.json", tokenizer), ("tokenizer_config.json", config)] {
                let path = out_dir.join(name);
                std::fs::write(&path, serde_json::to_string(&value)? + "\n")?;
                files.push(path);
            }
        }
        Err(e) => tracing::warn!("{e}; no tokenizer.json written"),
    }
    Ok(Converted { architecture, tensors: count, hf_names: config.is_some(), files })
}

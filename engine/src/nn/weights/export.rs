//! A model artifact out to the ecosystem: `anbiq export … --format hf` writes a Hugging Face directory that
//! `transformers` loads with `from_pretrained(DIR)`.
//!
//! For a `bert` model: `config.json` as transformers writes it for `BertModel`, the stored weights (HF keys), the
//! tokenizer files, and the sentence-transformers files of its pooling (see [`hf`]).
//!
//! For a `llama` model: `config.json` (as transformers 5 writes it), `generation_config.json`, `model.safetensors` —
//! the stored weights already carry their Hugging Face keys, so the tensor data is copied byte for byte and only the
//! header gains `{"format": "pt"}`, which `transformers` checks — and the tokenizer files the model was imported
//! with, if any.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::nn::arch::bert::{BertConfig, DenseActivation, Pooling};
use crate::nn::arch::llama::LlamaConfig;
use crate::nn::ArchConfig;

/// Files of a Hugging Face directory that travel with a model unchanged (its tokenizer).
pub const TOKENIZER_FILES: &[&str] = &["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

/// Writes a model — its architecture, output size `classes`, its stored `weights` file and the tokenizer files in
/// `beside` (if any) — as a Hugging Face directory `out_dir` (new, or empty): `llama` as `LlamaForCausalLM` with a
/// `generation_config.json`; `bert` as `BertModel` with the sentence-transformers files that give its pooling and
/// normalisation (`modules.json`, `1_Pooling/config.json`), so `SentenceTransformer(OUT_DIR)` computes the same
/// embeddings.
pub fn hf(arch: &ArchConfig, classes: i64, weights: &Path, beside: &Path, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let files = match arch {
        ArchConfig::Llama(c) => llama_files(c, classes),
        ArchConfig::Bert(c) => bert_files(c)?,
        other => bail!("--format hf exports `llama` and `bert` models, not `{}`", other.name()),
    };
    if out_dir.exists() && std::fs::read_dir(out_dir)?.next().is_some() {
        bail!("{} is not empty: export writes into a new or empty directory", out_dir.display());
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut written = Vec::new();
    for (name, value) in files {
        let path = out_dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, serde_json::to_string_pretty(&value)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    let out_weights = out_dir.join("model.safetensors");
    match arch {
        ArchConfig::Bert(c) if c.dense.is_some() => written.extend(split_dense_head(weights, out_dir)?),
        _ => {
            copy_with_format_metadata(weights, &out_weights)?;
            written.push(out_weights);
        }
    }
    written.extend(copy_tokenizer_files(beside, out_dir)?);
    Ok(written)
}

fn llama_files(config: &LlamaConfig, vocab: i64) -> Vec<(String, serde_json::Value)> {
    let mut generation = serde_json::json!({"_from_model_config": true});
    for (field, id) in [("bos_token_id", config.bos_token_id), ("eos_token_id", config.eos_token_id)] {
        if let Some(id) = id {
            generation[field] = id.into();
        }
    }
    vec![("config.json".into(), config.to_hf_json(vocab)), ("generation_config.json".into(), generation)]
}

/// `config.json`, and sentence-transformers' description of the head: the encoder, its pooling, then (if the model
/// normalises) `Normalize`, which has no files of its own, then its `Dense` head (config here, weights written by
/// [`split_dense_head`]). BertModel's tanh pooler is not a sentence-transformers pooling: a model pooled that way is
/// written as a plain `BertModel`.
fn bert_files(config: &BertConfig) -> Result<Vec<(String, serde_json::Value)>> {
    let mut files = vec![("config.json".to_string(), config.to_hf_json())];
    if config.pooling == Pooling::Pooler {
        if config.dense.is_some() {
            bail!("a `pooler`-pooled bert with a `dense` head has no sentence-transformers form");
        }
        return Ok(files);
    }
    let module = |idx: usize, path: &str, kind: &str| {
        serde_json::json!({"idx": idx, "name": idx.to_string(), "path": path,
                           "type": format!("sentence_transformers.models.{kind}")})
    };
    let mut modules = vec![module(0, "", "Transformer"), module(1, "1_Pooling", "Pooling")];
    let normalize_last = config.dense.as_ref().is_some_and(|d| d.before_normalize);
    if config.normalize && !normalize_last {
        modules.push(module(2, "2_Normalize", "Normalize"));
    }
    if let Some(dense) = &config.dense {
        let activation = match dense.activation {
            DenseActivation::Identity => "torch.nn.modules.linear.Identity",
            DenseActivation::Tanh => "torch.nn.modules.activation.Tanh",
        };
        let dir = dense_dir(modules.len());
        modules.push(module(modules.len(), &dir, "Dense"));
        files.push((
            format!("{dir}/config.json"),
            serde_json::json!({"in_features": config.hidden_size, "out_features": dense.out_features,
                               "bias": dense.bias, "activation_function": activation}),
        ));
    }
    if config.normalize && normalize_last {
        modules.push(module(3, "3_Normalize", "Normalize"));
    }
    files.push(("modules.json".into(), serde_json::Value::Array(modules)));
    files.push((
        "config_sentence_transformers.json".into(),
        serde_json::json!({"model_type": "SentenceTransformer", "similarity_fn_name": "cosine",
                           "prompts": {}, "default_prompt_name": null,
                           "__version__": {"anbiq": env!("CARGO_PKG_VERSION")}}),
    ));
    files.push((
        "1_Pooling/config.json".into(),
        serde_json::json!({
            "word_embedding_dimension": config.hidden_size,
            "pooling_mode_cls_token": config.pooling == Pooling::Cls,
            "pooling_mode_mean_tokens": config.pooling == Pooling::Mean,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
        }),
    ));
    files.push((
        "sentence_bert_config.json".into(),
        serde_json::json!({"max_seq_length": config.max_position_embeddings, "do_lower_case": false}),
    ));
    Ok(files)
}

/// A module's folder is named by its index in `modules.json`: `2_Dense` after Transformer and Pooling, `3_Dense`
/// after Normalize too.
fn dense_dir(index: usize) -> String {
    format!("{index}_Dense")
}

/// A bert with a `dense` head: the encoder's weights to `model.safetensors`, the head's (`dense.linear.*`, stored by
/// anbiq under the module's name) to the `Dense` module's folder as `linear.*`, both with `{"format": "pt"}`.
fn split_dense_head(weights: &Path, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let (mut encoder, mut head) = (Vec::new(), Vec::new());
    for (name, tensor) in super::safetensors::read(weights)? {
        match name.strip_prefix(super::hf::DENSE_PREFIX) {
            Some(inner) => head.push((inner.to_string(), tensor)),
            None => encoder.push((name, tensor)),
        }
    }
    let dense_dir = [2, 3].map(|i| out_dir.join(dense_dir(i))).into_iter().find(|d| d.join("config.json").is_file());
    // (`2_Dense` when it comes right after Pooling, `3_Dense` after Normalize.)
    let dense_dir = dense_dir.context("the Dense module's config is written first")?;
    let mut written = Vec::new();
    for (tensors, path) in [(encoder, out_dir.join("model.safetensors")), (head, dense_dir.join("model.safetensors"))] {
        let plain = path.with_extension("plain.partial");
        super::safetensors::write(&plain, &tensors)?;
        copy_with_format_metadata(&plain, &path)?;
        std::fs::remove_file(&plain)?;
        written.push(path);
    }
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

/// The type of a GGUF export's weight matrices (vectors — norms, biases — stay f32, as llama.cpp keeps them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufQuant {
    F16,
    /// Q8_0 where a row is whole blocks of 32, F16 elsewhere.
    Q8_0,
}

/// Writes a `llama` model as a GGUF v3 file `out` (which must not exist): llama.cpp's tensor names, Q and K
/// permuted back to its rotary layout, its metadata, and the tokenizer of `beside` (`tokenizer.json`) when there is
/// one — without it the file holds the weights, but llama.cpp cannot run it (a warning says so).
pub fn gguf(
    arch: &ArchConfig,
    classes: i64,
    weights: &Path,
    beside: &Path,
    out: &Path,
    quant: GgufQuant,
) -> Result<Vec<PathBuf>> {
    use super::gguf::{llama, tokenizer, write, GgmlType};
    let ArchConfig::Llama(config) = arch else {
        bail!("--format gguf exports `llama` models, not `{}`", arch.name());
    };
    if out.exists() {
        bail!("{} exists: export writes a new file", out.display());
    }
    let file_type = match quant {
        GgufQuant::F16 => 1,
        GgufQuant::Q8_0 => 7,
    };
    let name = out.file_stem().map_or("anbiq".into(), |s| s.to_string_lossy().to_string());
    let mut metadata = llama::metadata(config, classes, &name, file_type).map_err(anyhow::Error::msg)?;
    match std::fs::read(beside.join("tokenizer.json")) {
        Ok(bytes) => {
            let tok: serde_json::Value = serde_json::from_slice(&bytes).context("tokenizer.json is not JSON")?;
            let config_path = beside.join("tokenizer_config.json");
            let cfg = match std::fs::read(&config_path) {
                Ok(b) => serde_json::from_slice(&b).with_context(|| format!("{}: not JSON", config_path.display()))?,
                Err(_) => serde_json::Value::Null,
            };
            metadata.extend(tokenizer::metadata(&tok, &cfg).map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?);
        }
        Err(_) => tracing::warn!(
            "the model has no tokenizer: {} holds its weights, but llama.cpp cannot run it",
            out.display()
        ),
    }
    let (heads, kv_heads) = (config.num_attention_heads, config.kv_heads());
    let mut tensors = Vec::new();
    for (key, values) in super::safetensors::read(weights)? {
        let (name, permuted) =
            llama::gguf_name(&key).with_context(|| format!("weight `{key}` has no llama.cpp name"))?;
        let values = match (permuted, key.contains("k_proj")) {
            (false, _) => values,
            (true, false) => llama::permute(&values, heads),
            (true, true) => llama::permute(&values, kv_heads),
        };
        let row = values.size().last().copied().unwrap_or(1);
        let ty = match (values.dim(), quant) {
            (1, _) => GgmlType::F32,
            (_, GgufQuant::Q8_0) if write::can_store(GgmlType::Q8_0, row) => GgmlType::Q8_0,
            _ => GgmlType::F16,
        };
        tensors.push(write::OutTensor { name, values, ty });
    }
    write::write(out, &metadata, &tensors)?;
    Ok(vec![out.to_path_buf()])
}

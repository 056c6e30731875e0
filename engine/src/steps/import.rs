//! `kind: import` — bring your own teacher: a TorchScript module, or safetensors weights for a built-in architecture.
//!
//! ```yaml
//! teacher:
//!   kind: import
//!   torchscript: models/teacher.pt     # from torch.jit.script / torch.jit.trace; always run in eval mode
//!   input_shape: [1, 28, 28]           # one sample, without the batch dimension
//!   classes: 10
//! mlp:
//!   kind: import
//!   weights: models/mlp.safetensors    # tensor names as anbiq writes them: hidden.0.weight, …, out.bias
//!   model: {arch: mlp, hidden: [256]}
//!   input_shape: [1, 8, 8]
//!   classes: 10
//! ```
//! A pretrained causal language model of the Llama family, from a GGUF file (llama.cpp, Ollama: dequantised, Q/K
//! unpermuted) or a local Hugging Face directory (`config.json` + `model.safetensors` or shards); `input_shape` is the
//! token window the workflow feeds it, `classes` defaults to its vocabulary:
//! ```yaml
//! teacher: {kind: import, gguf: data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, input_shape: [256]}
//! teacher: {kind: import, hf: models/SmolLM2-135M, input_shape: [256]}
//! teacher: {kind: import, gguf: smollm2.gguf, input_shape: [256], dtype: bf16}   # held in bf16: half the memory
//! ```
//! A BERT-family sentence encoder (`model_type: bert`; a sentence-transformers directory's pooling and
//! normalisation are read from its `1_Pooling/config.json` and `modules.json`) outputs one embedding per window:
//! ```yaml
//! encoder: {kind: import, hf: data/minilm, input_shape: [128]}     # classes = 384, the embedding size
//! ```
//! Output `model`, usable wherever a trained model is (`infer`, `evaluate`, online `distill`). The file's bytes (every
//! file of a directory) are part of the step's key: replacing the file reruns the import and everything downstream.
//! The file is checked when the workflow is loaded (header, config, architecture), and the import runs one sample
//! through the model, so a wrong `input_shape` or `classes` fails here rather than in a later step.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::registry::{parse_config, schema_of, ParseEnv, StepKind};
use super::{canonical, check_fields, ArtifactKind, FileInput, InputDecl, OutputDecl, Step, StepContext};
use crate::artifact::model::{copy_weights, ModelArtifact, ModelSpec};
use crate::config::{Located, Node};
use crate::nn::arch::{BertConfig, LlamaConfig};
use crate::nn::torchscript::TorchScriptModel;
use crate::nn::weights::export::copy_tokenizer_files;
use crate::nn::weights::gguf::{llama as gguf_llama, Gguf};
use crate::nn::weights::hf;
use crate::nn::{ArchConfig, Mode};
use crate::rng::Rng;

pub const KIND: StepKind = StepKind {
    name: "import",
    version: 1,
    summary: "import a model: TorchScript, safetensors, a GGUF file or a Hugging Face directory",
    parse,
    schema: schema_of::<ImportConfig>,
};

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportConfig {
    /// A TorchScript file (relative to the workflow file) …
    #[serde(default)]
    pub torchscript: Option<PathBuf>,
    /// … or a safetensors file of weights for `model` …
    #[serde(default)]
    pub weights: Option<PathBuf>,
    /// With `weights`: the architecture the weights are for.
    #[serde(default)]
    pub model: Option<ArchConfig>,
    /// … or a GGUF file of a Llama-family model …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gguf: Option<PathBuf>,
    /// … or a Hugging Face model directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf: Option<PathBuf>,
    /// With `torchscript` or `weights`: the shape of one sample (`[1, 28, 28]`).
    pub input_shape: Vec<i64>,
    /// `gguf` and `hf`: the type the weights are held in (`bf16` halves a frozen teacher's memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<WeightDtype>,
    /// Required for `torchscript` and `weights`; a language model's vocabulary otherwise.
    #[serde(default)]
    pub classes: Option<i64>,
}

/// The type a pretrained model's weights are held in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    F32,
    Bf16,
}

impl WeightDtype {
    fn kind(self) -> Kind {
        match self {
            WeightDtype::F32 => Kind::Float,
            WeightDtype::Bf16 => Kind::BFloat16,
        }
    }
}

/// Where the model comes from: exactly one, decided at parse time.
#[derive(Debug)]
enum Source {
    TorchScript,
    Weights(ArchConfig),
    Gguf,
    Hf,
}

#[derive(Debug)]
pub struct Import {
    config: ImportConfig,
    source: Source,
    /// The file (or directory), as written and resolved against the workflow's directory.
    file: FileInput,
    /// A pretrained language model's vocabulary, read at parse time (what `validate` knows of its classes).
    vocabulary: Option<i64>,
}

fn parse(node: &Node, env: &ParseEnv) -> Result<Box<dyn Step>, Vec<Located>> {
    let config: ImportConfig = parse_config(node)?;
    let mut problems = Vec::new();
    let given: Vec<(&str, &PathBuf)> = [
        ("torchscript", &config.torchscript),
        ("weights", &config.weights),
        ("gguf", &config.gguf),
        ("hf", &config.hf),
    ]
    .into_iter()
    .filter_map(|(field, path)| path.as_ref().map(|p| (field, p)))
    .collect();
    let (field, written) = match given.as_slice() {
        [one] => *one,
        [] => {
            let message = "needs one of `torchscript: file.pt`, `weights` with `model`, `gguf: file.gguf` or `hf: dir`";
            return Err(check_fields(node, vec![("".into(), message.into())]).unwrap_err());
        }
        [_, (second, _), ..] => {
            let names: Vec<String> = given.iter().map(|(f, _)| format!("`{f}`")).collect();
            let message = format!("give one source of the model, not {}", names.join(" and "));
            return Err(check_fields(node, vec![(second.to_string(), message)]).unwrap_err());
        }
    };
    // On a mistake the source is a placeholder: `problems` is then not empty, and `check_fields` returns the error.
    let source = match (field, &config.model) {
        ("weights", Some(arch)) => Source::Weights(arch.clone()),
        ("weights", None) => {
            problems.push(("weights".into(), "needs `model` (the architecture the weights belong to)".into()));
            Source::TorchScript
        }
        (_, Some(_)) => {
            problems
                .push(("model".into(), format!("`{field}` brings its own architecture; `model` goes with `weights`")));
            Source::TorchScript
        }
        ("torchscript", None) => Source::TorchScript,
        ("gguf", None) => Source::Gguf,
        _ => Source::Hf,
    };
    if let Some(Err(e)) = config.model.as_ref().map(ArchConfig::validate) {
        problems.push(super::field_problem("model", e));
    }
    if config.dtype.is_some() && !matches!(source, Source::Gguf | Source::Hf) {
        problems.push(("dtype".into(), "applies to pretrained models (`gguf`, `hf`)".into()));
    }
    if config.input_shape.is_empty() || config.input_shape.iter().any(|&d| d < 1) {
        problems.push(("input_shape".into(), format!("must list positive sizes, got {:?}", config.input_shape)));
    }
    match (config.classes, &source) {
        (None, Source::TorchScript | Source::Weights(_)) => {
            problems.push(("classes".into(), "needs the number of classes the model outputs".into()))
        }
        (Some(c), _) if c < 1 => problems.push(("classes".into(), format!("must be positive, got {c}"))),
        _ => {}
    }
    let file = FileInput::new(written, env);
    if matches!(source, Source::TorchScript | Source::Weights(_)) && file.path.is_dir() {
        problems.push((field.to_string(), format!("{} is a directory; give the file", written.display())));
    }
    // A language model is checked now, so `anbiq validate` finds a broken file before anything runs.
    let mut vocabulary = None;
    if problems.is_empty() && matches!(source, Source::Gguf | Source::Hf) {
        match pretrained_config(&source, &file.path).and_then(|c| check_window(&c, &config).map(|()| c)) {
            Ok(ArchConfig::Llama(c)) => vocabulary = c.vocab_size,
            Ok(_) => {}
            Err(e) => problems.push((field.to_string(), format!("{e:#}"))),
        }
    }
    check_fields(node, problems)?;
    Ok(Box::new(Import { config, source, file, vocabulary }))
}

/// The architecture of a pretrained model, read from its file without loading the weights.
fn pretrained_config(source: &Source, path: &std::path::Path) -> anyhow::Result<ArchConfig> {
    if let Source::Gguf = source {
        return Ok(ArchConfig::Llama(gguf_llama::load_config(&Gguf::open(path)?)?));
    }
    let json = hf::read_config(path)?;
    let at = |e: String| anyhow::anyhow!("{}: {e}", path.join("config.json").display());
    let config = match json.get("model_type").and_then(|v| v.as_str()) {
        Some("bert") => {
            let mut c = BertConfig::from_hf_json(&json).map_err(at)?;
            hf::sentence_transformers_head(path)?.apply(&mut c);
            ArchConfig::Bert(c)
        }
        Some("llama" | "mistral" | "qwen2") => ArchConfig::Llama(LlamaConfig::from_hf_json(&json).map_err(at)?),
        other => {
            return Err(at(format!(
                "model_type: `{}` is not supported (supported: llama, mistral, qwen2, bert)",
                other.unwrap_or("")
            )))
        }
    };
    hf::weight_files(path)?;
    Ok(config)
}

/// What a pretrained model outputs for one sample: next-token logits over its vocabulary, or an embedding.
fn pretrained_classes(arch: &ArchConfig) -> anyhow::Result<i64> {
    match arch {
        ArchConfig::Llama(c) => c.vocab_size.context("a pretrained config has vocab_size"),
        ArchConfig::Bert(c) => Ok(c.output_size()),
        other => bail!("`{}` is not a pretrained architecture", other.name()),
    }
}

/// `input_shape` must be one token window the model can take, and `classes` (if given) what it outputs.
fn check_window(model: &ArchConfig, config: &ImportConfig) -> anyhow::Result<()> {
    let (longest, what) = match model {
        ArchConfig::Llama(c) => (c.longest_input(), "its context, or its sliding window"),
        ArchConfig::Bert(c) => (c.max_position_embeddings, "its max_position_embeddings"),
        _ => (0, ""),
    };
    anyhow::ensure!(
        config.input_shape.len() == 1 && config.input_shape[0] <= longest,
        "a pretrained transformer takes token windows: `input_shape: [T]` with T ≤ {longest} ({what}), got {:?}",
        config.input_shape
    );
    let outputs = pretrained_classes(model)?;
    if let Some(c) = config.classes {
        let has = match model {
            ArchConfig::Bert(_) => format!("the model's embeddings have {outputs} dimensions"),
            _ => format!("the model's vocabulary has {outputs} tokens"),
        };
        anyhow::ensure!(c == outputs, "`classes` is {c}, {has}");
    }
    Ok(())
}

impl Step for Import {
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("model", ArtifactKind::Model)]
    }

    fn inputs(&self) -> Vec<InputDecl> {
        Vec::new()
    }

    fn files(&self) -> Vec<FileInput> {
        vec![self.file.clone()]
    }

    fn known_classes(&self, _output: &str, _input: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        self.config.classes.or(self.vocabulary)
    }

    fn canonical_config(&self) -> serde_json::Value {
        canonical(&self.config)
    }

    fn run(&self, ctx: &mut StepContext) -> anyhow::Result<()> {
        let dir = ctx.output_dir("model")?;
        let (shape, classes) = (self.config.input_shape.clone(), self.config.classes.unwrap_or(0));
        match &self.source {
            Source::Gguf | Source::Hf => {
                // The model (and its VarStore) is dropped at the end of this arm, before the check below loads the
                // artifact again: the import holds one copy of the weights at a time.
                let field = if matches!(self.source, Source::Gguf) { "gguf" } else { "hf" };
                let located =
                    |e: anyhow::Error| anyhow::anyhow!("field `{field}`: {}: {e:#}", self.file.path.display());
                // The tokenizer travels with the model (to text datasets and `anbiq export`): the directory's files,
                // or the ones the GGUF metadata describes. Written first, so its JSON is gone before the weights come.
                let outputs = pretrained_classes(&pretrained_config(&self.source, &self.file.path)?)?;
                std::fs::create_dir_all(&dir)?;
                match self.source {
                    Source::Hf => {
                        copy_tokenizer_files(&self.file.path, &dir)?;
                    }
                    _ => write_gguf_tokenizer(&Gguf::open(&self.file.path)?, &dir, outputs)?,
                }
                let kind = self.config.dtype.unwrap_or(WeightDtype::F32).kind();
                let (arch, mut weights) = match &self.source {
                    Source::Gguf => {
                        let (c, w) = gguf_llama::load(&Gguf::open(&self.file.path)?, kind)?;
                        (ArchConfig::Llama(c), w)
                    }
                    _ => match pretrained_config(&self.source, &self.file.path)? {
                        ArchConfig::Bert(_) => {
                            let (c, w) = hf::load_bert(&self.file.path)?;
                            (ArchConfig::Bert(c), w)
                        }
                        _ => {
                            let (c, w) = hf::load_llama(&self.file.path)?;
                            (ArchConfig::Llama(c), w)
                        }
                    },
                };
                // A directory's own type (often bf16) becomes the one asked for, tensor by tensor.
                for tensor in weights.values_mut() {
                    if tensor.kind() != kind && tensor.is_floating_point() {
                        *tensor = tensor.to_kind(kind);
                    }
                }
                let vs = VarStore::new(Device::Cpu);
                let model = crate::nn::arch::from_weights(&arch, &vs.root(), outputs, &mut weights)
                    .map_err(located)?
                    .context("a pretrained architecture builds from weights")?;
                if !weights.is_empty() {
                    let extra: Vec<&String> = weights.keys().take(5).collect();
                    return Err(located(anyhow::anyhow!("weights the architecture has no place for: {extra:?}")));
                }
                // A few tokens prove the model runs and has the outputs it claims (the window length was checked
                // against its context at load); a whole window's logits would only raise the import's peak memory.
                let probe = shape[0].min(8);
                let window = Tensor::ones([1, probe], (Kind::Int64, Device::Cpu));
                let out = tch::no_grad(|| model.forward(&window, Mode::Eval));
                let expected = match arch {
                    ArchConfig::Bert(_) => vec![1, outputs],
                    _ => vec![1, probe, outputs],
                };
                anyhow::ensure!(out.size() == expected, "the model maps {probe} tokens to {:?}", out.size());
                drop(model);
                let spec = ModelSpec::new(arch, shape, outputs, &vs);
                ModelArtifact::save(&dir, &vs, &spec)?;
            }
            Source::TorchScript => {
                let module = TorchScriptModel::load(&self.file.path, Device::Cpu).context("field `torchscript`")?;
                let spec = ModelSpec::torchscript(shape, classes, module.parameter_count()?);
                check_output(|x| module.try_forward(x), &self.config, Io::Features)?;
                ModelArtifact::save_torchscript(&dir, &self.file.path, &spec)?;
            }
            Source::Weights(arch) => {
                let vs = VarStore::new(Device::Cpu);
                let model = crate::nn::build(arch, &vs.root(), &shape, classes, &mut Rng::new(ctx.seed))
                    .map_err(|e| anyhow::anyhow!("field `model`: {e:#}"))?;
                let saved = crate::nn::weights::safetensors::read(&self.file.path).context("field `weights`")?;
                copy_weights(&vs, &saved).map_err(|e| anyhow::anyhow!("field `weights`: {e:#}"))?;
                let io = match arch {
                    ArchConfig::Llama(_) | ArchConfig::Gpt(_) => Io::Tokens,
                    ArchConfig::Bert(_) => Io::TokensToOne,
                    _ => Io::Features,
                };
                check_output(|x| Ok(model.forward(x, Mode::Eval)), &self.config, io)?;
                let spec = ModelSpec::new(arch.clone(), shape, classes, &vs);
                ModelArtifact::save(&dir, &vs, &spec)?;
            }
        }
        // The artifact must load the way every consumer will load it.
        let loaded = ModelArtifact::load(&dir, ctx.device)?;
        ctx.record_metric("parameters", loaded.spec.parameters);
        Ok(())
    }
}

/// Writes `tokenizer.json` and `tokenizer_config.json` from a GGUF file's metadata. A file without a tokenizer, or
/// with one not supported, still imports (its model can run on token ids made elsewhere); the reason is logged and
/// a dataset asking for the tokenizer says it has none.
fn write_gguf_tokenizer(gguf: &Gguf, dir: &std::path::Path, vocab: i64) -> anyhow::Result<()> {
    let (tokenizer, config) = match crate::nn::weights::gguf::tokenizer::tokenizer_files(gguf) {
        Ok(files) => files,
        Err(e) => {
            tracing::warn!("{e}; the model is imported without a tokenizer");
            return Ok(());
        }
    };
    let tokens = tokenizer["model"]["vocab"].as_object().map_or(0, |v| v.len()) as i64;
    anyhow::ensure!(
        tokens <= vocab,
        "{}: the tokenizer has {tokens} tokens, the model only {vocab} outputs",
        gguf.path().display()
    );
    for (name, value) in [("tokenizer.json", tokenizer), ("tokenizer_config.json", config)] {
        let path = dir.join(name);
        std::fs::write(&path, serde_json::to_string(&value)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// What a model takes and gives: floats or token ids, one row of outputs per sample or per position.
#[derive(Clone, Copy)]
enum Io {
    Features,
    /// A language model: token ids in, logits at every position out.
    Tokens,
    /// An encoder: token ids in, one embedding out.
    TokensToOne,
}

/// Runs one zero sample of `input_shape` through the model: it must be accepted and give `[1, classes]` outputs
/// (`[1, T, classes]` for a language model).
fn check_output(
    forward: impl Fn(&Tensor) -> anyhow::Result<Tensor>,
    config: &ImportConfig,
    io: Io,
) -> anyhow::Result<()> {
    let mut shape = vec![1];
    shape.extend(&config.input_shape);
    let kind = if matches!(io, Io::Features) { Kind::Float } else { Kind::Int64 };
    let x = Tensor::zeros(shape.as_slice(), (kind, Device::Cpu));
    let classes = config.classes.unwrap_or(0);
    let mut expected = shape.clone();
    if !matches!(io, Io::Tokens) {
        expected.truncate(1);
    }
    expected.push(classes);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tch::no_grad(|| forward(&x))));
    match result {
        Ok(Ok(y)) if y.size() == expected => Ok(()),
        Ok(Ok(y)) => bail!("field `classes`: the model maps one sample to shape {:?}, expected {expected:?}", y.size()),
        Ok(Err(e)) => {
            // TorchScript errors carry both tracebacks; the last line says what went wrong.
            let text = format!("{e:#}");
            let reason = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().trim();
            bail!("field `input_shape`: the model does not accept {shape:?}: {reason}")
        }
        Err(_) => bail!("field `input_shape`: the model does not accept {shape:?}"),
    }
}

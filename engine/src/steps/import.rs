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
//! Output `model`, usable wherever a trained model is (`infer`, `evaluate`, online `distill`). The file's bytes are
//! part of the step's key: replacing the file reruns the import and everything downstream. The import runs one
//! sample through the model, so a wrong `input_shape` or `classes` fails here rather than in a later step.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::registry::{parse_config, ParseEnv, StepKind};
use super::{canonical, check_fields, ArtifactKind, FileInput, InputDecl, OutputDecl, Step, StepContext};
use crate::config::{Located, Node};
use crate::nn::model_file::{copy_weights, ModelArtifact, ModelSpec};
use crate::nn::torchscript::TorchScriptModel;
use crate::nn::{ArchConfig, Mode};
use crate::rng::Rng;

pub const KIND: StepKind = StepKind {
    name: "import",
    version: 1,
    summary: "import a model trained elsewhere (TorchScript or safetensors)",
    parse,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportConfig {
    /// A TorchScript file (relative to the workflow file) …
    #[serde(default)]
    pub torchscript: Option<PathBuf>,
    /// … or a safetensors file of weights for `model`.
    #[serde(default)]
    pub weights: Option<PathBuf>,
    #[serde(default)]
    pub model: Option<ArchConfig>,
    pub input_shape: Vec<i64>,
    pub classes: i64,
}

#[derive(Debug)]
pub struct Import {
    config: ImportConfig,
    /// The file, as written and resolved against the workflow's directory.
    file: FileInput,
}

fn parse(node: &Node, env: &ParseEnv) -> Result<Box<dyn Step>, Vec<Located>> {
    let config: ImportConfig = parse_config(node)?;
    let mut problems = Vec::new();
    match (&config.torchscript, &config.weights, &config.model) {
        (Some(_), None, None) | (None, Some(_), Some(_)) => {}
        (Some(_), Some(_), _) => problems.push(("weights".into(), "give `torchscript` or `weights`, not both".into())),
        (Some(_), None, Some(_)) => problems.push((
            "model".into(),
            "a TorchScript file brings its own architecture; `model` goes with `weights`".into(),
        )),
        (None, Some(_), None) => {
            problems.push(("weights".into(), "needs `model` (the architecture the weights belong to)".into()))
        }
        (None, None, _) => problems.push(("".into(), "needs `torchscript: file.pt` or `weights` and `model`".into())),
    }
    if let Some(Err(e)) = config.model.as_ref().map(ArchConfig::validate) {
        problems.push(super::field_problem("model", e));
    }
    if config.input_shape.is_empty() || config.input_shape.iter().any(|&d| d < 1) {
        problems.push(("input_shape".into(), format!("must list positive sizes, got {:?}", config.input_shape)));
    }
    if config.classes < 1 {
        problems.push(("classes".into(), format!("must be positive, got {}", config.classes)));
    }
    check_fields(node, problems)?;
    let file = FileInput::new(config.torchscript.as_ref().or(config.weights.as_ref()).expect("checked above"), env);
    Ok(Box::new(Import { config, file }))
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

    fn canonical_config(&self) -> serde_json::Value {
        canonical(&self.config)
    }

    fn run(&self, ctx: &mut StepContext) -> anyhow::Result<()> {
        let dir = ctx.output_dir("model")?;
        let (shape, classes) = (self.config.input_shape.clone(), self.config.classes);
        match &self.config.model {
            None => {
                let module = TorchScriptModel::load(&self.file.path, Device::Cpu).context("field `torchscript`")?;
                let spec = ModelSpec::torchscript(shape, classes, module.parameter_count()?);
                check_output(|x| module.try_forward(x), &self.config)?;
                ModelArtifact::save_torchscript(&dir, &self.file.path, &spec)?;
            }
            Some(arch) => {
                let vs = VarStore::new(Device::Cpu);
                let model = crate::nn::build(arch, &vs.root(), &shape, classes, &mut Rng::new(ctx.seed))
                    .map_err(|e| anyhow::anyhow!("field `model`: {e:#}"))?;
                let saved: BTreeMap<String, Tensor> = Tensor::read_safetensors(&self.file.path)
                    .with_context(|| format!("field `weights`: reading {}", self.file.path.display()))?
                    .into_iter()
                    .collect();
                copy_weights(&vs, &saved).map_err(|e| anyhow::anyhow!("field `weights`: {e:#}"))?;
                check_output(|x| Ok(model.forward(x, Mode::Eval)), &self.config)?;
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

/// Runs one zero sample of `input_shape` through the model: it must be accepted and give `[1, classes]` logits.
fn check_output(forward: impl Fn(&Tensor) -> anyhow::Result<Tensor>, config: &ImportConfig) -> anyhow::Result<()> {
    let mut shape = vec![1];
    shape.extend(&config.input_shape);
    let x = Tensor::zeros(shape.as_slice(), (Kind::Float, Device::Cpu));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tch::no_grad(|| forward(&x))));
    match result {
        Ok(Ok(y)) if y.size() == [1, config.classes] => Ok(()),
        Ok(Ok(y)) => bail!(
            "field `classes`: the model maps one sample to shape {:?}, expected [1, {}]",
            y.size(),
            config.classes
        ),
        Ok(Err(e)) => {
            // TorchScript errors carry both tracebacks; the last line says what went wrong.
            let text = format!("{e:#}");
            let reason = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().trim();
            bail!("field `input_shape`: the model does not accept {shape:?}: {reason}")
        }
        Err(_) => bail!("field `input_shape`: the model does not accept {shape:?}"),
    }
}

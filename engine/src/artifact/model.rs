//! A model on disk: `model.json` (what it is) beside either `weights.safetensors` (named tensors for a built-in
//! architecture) or `module.pt` (a TorchScript module, which carries its own code and weights).

use crate::nn::torchscript::TorchScriptModel;
use crate::nn::{arch, ArchConfig, Model};
use crate::rng::Rng;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn::VarStore, Device, Tensor};

pub const WEIGHTS_FILE: &str = "weights.safetensors";
pub const SPEC_FILE: &str = "model.json";
pub const TORCHSCRIPT_FILE: &str = "module.pt";

/// Everything needed to rebuild a model, saved next to its weights. Exactly one of `arch` and `torchscript` is set.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// A built-in architecture, whose weights are in `weights.safetensors` …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<ArchConfig>,
    /// … or the name of a TorchScript module file in the model directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torchscript: Option<String>,
    /// Sample shape, without the batch dimension.
    pub input_shape: Vec<i64>,
    pub classes: i64,
    /// Number of scalar parameters, for reports and a consistency check on load.
    pub parameters: i64,
    /// The names of the classes it was trained on, when its data had names: data whose classes are named
    /// differently is refused ([`ModelSpec::check_classes`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
}

impl ModelSpec {
    /// The spec of a model just built in `vs` (counts its parameters).
    pub fn new(arch: ArchConfig, input_shape: Vec<i64>, classes: i64, vs: &VarStore) -> Self {
        let parameters = parameter_count(vs);
        ModelSpec { arch: Some(arch), torchscript: None, input_shape, classes, parameters, class_names: None }
    }

    /// The spec of a TorchScript module stored as [`TORCHSCRIPT_FILE`].
    pub fn torchscript(input_shape: Vec<i64>, classes: i64, parameters: i64) -> Self {
        let torchscript = Some(TORCHSCRIPT_FILE.into());
        ModelSpec { arch: None, torchscript, input_shape, classes, parameters, class_names: None }
    }

    /// Whether this model's outputs mean the classes of data `meta`: as many, and, where both sides name them, the
    /// same names in the same order (a renamed or reordered class would score as chance, silently). Sentence
    /// encoders output embeddings, not classes. `Err` says what differs.
    pub fn check_classes(&self, meta: &crate::data::DatasetMeta) -> std::result::Result<(), String> {
        if meta.sentence_padding().is_some() {
            return Ok(());
        }
        if let (Some(ours), Some(theirs)) = (&self.class_names, &meta.class_names) {
            crate::data::classes::same_names(ours, theirs, ("the model (from its training data)", "the data"))?;
        }
        if self.classes != meta.classes {
            return Err(format!("it outputs {} classes, the data has {}", self.classes, meta.classes));
        }
        Ok(())
    }

    /// The file holding the weights (for reports of their size).
    pub fn weights_file(&self) -> &str {
        self.torchscript.as_deref().unwrap_or(WEIGHTS_FILE)
    }
}

/// A model loaded from disk with the VarStore that owns its weights (empty for a TorchScript module, which owns its
/// own).
pub struct LoadedModel {
    pub vs: VarStore,
    pub model: Box<dyn Model>,
    pub spec: ModelSpec,
}

/// Saving and loading of model directories.
pub struct ModelArtifact;

impl ModelArtifact {
    /// Writes `dir/weights.safetensors` and `dir/model.json`, creating `dir`. Tensors are written in name order
    /// (always on the CPU), so identical weights give identical files.
    pub fn save(dir: &Path, vs: &VarStore, spec: &ModelSpec) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let named: Vec<(String, Tensor)> = sorted_variables(vs)
            .into_iter()
            .map(|(name, t)| (name, t.detach().to_device(Device::Cpu).contiguous()))
            .collect();
        crate::nn::weights::safetensors::write(&dir.join(WEIGHTS_FILE), &named)?;
        let json = serde_json::to_string_pretty(spec)?;
        std::fs::write(dir.join(SPEC_FILE), json + "\n")
            .with_context(|| format!("writing {}", dir.join(SPEC_FILE).display()))?;
        Ok(())
    }

    /// Writes a TorchScript model: copies `module` into `dir` as [`TORCHSCRIPT_FILE`] and writes `dir/model.json`.
    pub fn save_torchscript(dir: &Path, module: &Path, spec: &ModelSpec) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::copy(module, dir.join(TORCHSCRIPT_FILE)).with_context(|| format!("copying {}", module.display()))?;
        let json = serde_json::to_string_pretty(spec)?;
        std::fs::write(dir.join(SPEC_FILE), json + "\n")
            .with_context(|| format!("writing {}", dir.join(SPEC_FILE).display()))?;
        Ok(())
    }

    /// The spec (`model.json`) of a model directory.
    pub fn spec(dir: &Path) -> Result<ModelSpec> {
        let spec_path = dir.join(SPEC_FILE);
        let text = std::fs::read_to_string(&spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", spec_path.display()))
    }

    /// Loads a model directory on `device`: the one way every step reads a model. A built-in architecture is rebuilt
    /// from `model.json` and the saved weights copied in by name (names and shapes must match exactly); a TorchScript
    /// module is loaded by libtorch's JIT.
    pub fn load(dir: &Path, device: Device) -> Result<LoadedModel> {
        let spec_path = dir.join(SPEC_FILE);
        let spec = Self::spec(dir)?;
        let vs = VarStore::new(device);
        let (model, parameters): (Box<dyn Model>, i64) = match (&spec.arch, &spec.torchscript) {
            (Some(arch @ (ArchConfig::Llama(_) | ArchConfig::Bert(_))), None) => {
                // Built straight from the saved tensors: no random initialisation, one copy of the weights.
                let mut saved = read_weights(&dir.join(WEIGHTS_FILE))?;
                let model = arch::from_weights(arch, &vs.root(), spec.classes, &mut saved)
                    .map_err(|e| anyhow::anyhow!("{}: {e:#}", dir.display()))?
                    .context("llama and bert build from weights")?;
                if !saved.is_empty() {
                    bail!(
                        "{}: weights the architecture has no place for: {:?}",
                        dir.display(),
                        saved.keys().collect::<Vec<_>>()
                    );
                }
                (model, parameter_count(&vs))
            }
            (Some(arch), None) => {
                // The initial values are overwritten below, so any stream will do.
                let model = arch::build(arch, &vs.root(), &spec.input_shape, spec.classes, &mut Rng::new(0))?;
                let saved = read_weights(&dir.join(WEIGHTS_FILE))?;
                copy_weights(&vs, &saved).map_err(|e| anyhow::anyhow!("{}: {e:#}", dir.display()))?;
                (model, parameter_count(&vs))
            }
            (None, Some(file)) => {
                if file.contains(['/', '\\']) || file == ".." {
                    bail!(
                        "{}: `torchscript` must name a file in the model directory, got `{file}`",
                        spec_path.display()
                    );
                }
                let model = TorchScriptModel::load(&dir.join(file), device)?;
                let parameters = model.parameter_count()?;
                (Box::new(model), parameters)
            }
            _ => bail!("{}: needs exactly one of `arch` and `torchscript`", spec_path.display()),
        };
        if parameters != spec.parameters {
            bail!(
                "{}: model.json says {} parameters, the architecture has {parameters}",
                dir.display(),
                spec.parameters
            );
        }
        Ok(LoadedModel { vs, model, spec })
    }
}

impl ModelArtifact {
    /// A model that brought its own tokenizer (an import, and what was pruned or distilled from one) reads only text
    /// tokenised by that tokenizer — the same one, not just one of the same size: otherwise its outputs are
    /// compared with other tokens' labels. Models without one (trained on characters or bytes) are not checked.
    pub fn check_tokenizer(dir: &Path, data: &crate::data::Vocab) -> Result<()> {
        use crate::data::tokenizer::{TextTokenizer, TOKENIZER_FILE};
        use crate::data::Vocab;
        if !dir.join(TOKENIZER_FILE).is_file() {
            return Ok(());
        }
        let own = TextTokenizer::from_dir(dir)?;
        let describe = |v: &Vocab| match v {
            Vocab::Byte => "bytes (256 tokens)".to_string(),
            Vocab::Char { .. } => format!("the corpus' {} characters", v.size()),
            Vocab::Tokenizer { tokenizer, .. } => {
                format!("a tokenizer of {} tokens ({})", tokenizer.size(), &tokenizer.fingerprint()[..12])
            }
        };
        if !matches!(data, Vocab::Tokenizer { tokenizer, .. } if **tokenizer == own) {
            bail!(
                "tokenises with a tokenizer of {} tokens ({}), the data with {}; give the dataset the model's own \
                 tokenizer (`tokenizer: {{model: STEP}}`)",
                own.size(),
                &own.fingerprint()[..12],
                describe(data)
            );
        }
        Ok(())
    }
}

/// The stored weights, each checked to be finite (a damaged store would otherwise surface as "loss is NaN").
fn read_weights(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let weights = crate::nn::weights::safetensors::read(path)?;
    for (name, tensor) in &weights {
        if tensor.is_floating_point() {
            super::check::finite(tensor, name, path)?;
        }
    }
    Ok(weights)
}

/// Copies `saved` into the variables of `vs` by name; names and shapes must match exactly (dtypes are converted).
pub fn copy_weights(vs: &VarStore, saved: &BTreeMap<String, Tensor>) -> Result<()> {
    let vars = sorted_variables(vs);
    let missing: Vec<&String> = vars.keys().filter(|k| !saved.contains_key(*k)).collect();
    let extra: Vec<&String> = saved.keys().filter(|k| !vars.contains_key(*k)).collect();
    if !missing.is_empty() || !extra.is_empty() {
        bail!("weights do not match the architecture: missing {missing:?}, unexpected {extra:?}");
    }
    tch::no_grad(|| {
        for (name, mut var) in vars {
            let src = &saved[&name];
            if src.size() != var.size() {
                bail!("{name} has shape {:?}, the architecture expects {:?}", src.size(), var.size());
            }
            var.copy_(src);
        }
        Ok(())
    })
}

/// The top-level path of variables a training step keeps beside the model it trains (a feature loss's projections):
/// trained and checkpointed with the model, never saved or counted as part of it.
pub const TRAINING_ONLY: &str = "training_only";

/// Total number of scalar parameters of the model in `vs`.
pub fn parameter_count(vs: &VarStore) -> i64 {
    sorted_variables(vs).values().map(|t| t.numel() as i64).sum()
}

/// The model's variables in `vs` by name (those under [`TRAINING_ONLY`] left out).
fn sorted_variables(vs: &VarStore) -> BTreeMap<String, Tensor> {
    let training_only = format!("{TRAINING_ONLY}.");
    vs.variables().into_iter().filter(|(name, _)| !name.starts_with(&training_only)).collect()
}

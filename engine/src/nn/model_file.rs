//! A trained model on disk: `weights.safetensors` (named tensors) + `model.json` (what to rebuild them into).

use crate::nn::{arch, ArchConfig, Model};
use crate::rng::Rng;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn::VarStore, Device, Tensor};

pub const WEIGHTS_FILE: &str = "weights.safetensors";
pub const SPEC_FILE: &str = "model.json";

/// Everything needed to rebuild a model's structure, saved next to its weights.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub arch: ArchConfig,
    /// Sample shape, without the batch dimension.
    pub input_shape: Vec<i64>,
    pub classes: i64,
    /// Number of scalar parameters, for reports and a consistency check on load.
    pub parameters: i64,
}

impl ModelSpec {
    /// The spec of a model just built in `vs` (counts its parameters).
    pub fn new(arch: ArchConfig, input_shape: Vec<i64>, classes: i64, vs: &VarStore) -> Self {
        ModelSpec { arch, input_shape, classes, parameters: parameter_count(vs) }
    }
}

/// A model loaded from disk with the VarStore that owns its weights.
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
        Tensor::write_safetensors(&named, dir.join(WEIGHTS_FILE))
            .with_context(|| format!("writing {}", dir.join(WEIGHTS_FILE).display()))?;
        let json = serde_json::to_string_pretty(spec)?;
        std::fs::write(dir.join(SPEC_FILE), json + "\n")
            .with_context(|| format!("writing {}", dir.join(SPEC_FILE).display()))?;
        Ok(())
    }

    /// Rebuilds the architecture from `model.json` on `device`, then copies the saved weights in by name; names and
    /// shapes must match exactly.
    pub fn load(dir: &Path, device: Device) -> Result<LoadedModel> {
        let spec_path = dir.join(SPEC_FILE);
        let text = std::fs::read_to_string(&spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
        let spec: ModelSpec =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", spec_path.display()))?;
        let vs = VarStore::new(device);
        // The initial values are overwritten below, so any stream will do.
        let model = arch::build(&spec.arch, &vs.root(), &spec.input_shape, spec.classes, &mut Rng::new(0))?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let saved: BTreeMap<String, Tensor> = Tensor::read_safetensors(&weights_path)
            .with_context(|| format!("reading {}", weights_path.display()))?
            .into_iter()
            .collect();
        let vars = sorted_variables(&vs);
        let missing: Vec<&String> = vars.keys().filter(|k| !saved.contains_key(*k)).collect();
        let extra: Vec<&String> = saved.keys().filter(|k| !vars.contains_key(*k)).collect();
        if !missing.is_empty() || !extra.is_empty() {
            bail!(
                "{}: weights do not match the architecture: missing {missing:?}, unexpected {extra:?}",
                dir.display()
            );
        }
        tch::no_grad(|| -> Result<()> {
            for (name, mut var) in vars {
                let src = &saved[&name];
                if src.size() != var.size() {
                    bail!(
                        "{}: {name} has shape {:?}, the architecture expects {:?}",
                        dir.display(),
                        src.size(),
                        var.size()
                    );
                }
                var.copy_(src);
            }
            Ok(())
        })?;
        let parameters = parameter_count(&vs);
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

/// Total number of scalar parameters in `vs`.
pub fn parameter_count(vs: &VarStore) -> i64 {
    vs.variables().values().map(|t| t.numel() as i64).sum()
}

fn sorted_variables(vs: &VarStore) -> BTreeMap<String, Tensor> {
    vs.variables().into_iter().collect()
}

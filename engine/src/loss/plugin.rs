//! `plugin`: a loss computed by a sandboxed WebAssembly module (see `crate::plugin` and plugins/ABI.md).
//!
//! ```yaml
//! loss: {plugin: {path: plugins/build/reverse_kl.wasm, params: {temperature: 2}}}
//! loss: [{kd: {temperature: 4}, weight: 0.5}, {plugin: {path: my_loss.wasm}, weight: 0.5}]
//! ```
//! `path` is relative to the workflow file; the module's bytes enter the step's cache key. The module is loaded
//! (compiled once per process) and its parameters are checked against its `describe` when the workflow is
//! loaded, so a typo fails `anbiq validate` with a line and column before anything trains.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{DistillLoss, LossInput};
use crate::plugin::{self, CallInput, Limits, Runner};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginTerm {
    /// The `.wasm` file, as written in the workflow (relative paths are relative to the workflow file).
    pub path: PathBuf,
    /// Values for the parameters the plugin declares; the others take their defaults.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Sandbox limits per call.
    #[serde(default)]
    pub limits: Limits,
    /// `path` resolved against the workflow's directory, set by the step that parsed the term.
    #[serde(skip)]
    pub resolved: Option<PathBuf>,
}

impl PluginTerm {
    /// The file to load.
    pub fn file(&self) -> PathBuf {
        self.resolved.clone().unwrap_or_else(|| self.path.clone())
    }

    pub fn resolve_path(&mut self, resolve: &dyn Fn(&Path) -> PathBuf) {
        self.resolved = Some(resolve(&self.path));
    }

    /// Loads the module and binds the parameters. Problems as (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.limits.validate().map_err(|(f, m)| (format!("limits.{f}"), m))?;
        let plugin = plugin::load(&self.file()).map_err(|e| ("path".to_string(), e.to_string()))?;
        plugin.describe.bind(&self.params).map_err(|(name, message)| {
            (if name.is_empty() { "params".to_string() } else { format!("params.{name}") }, message)
        })?;
        Ok(())
    }

    /// Replaces `params` by every parameter the plugin declares, defaults filled in and typed as declared: the form
    /// the cache key hashes, so `{}`, `{temperature: 2}` and `{temperature: 2.0}` for a default of 2 are one key.
    pub fn canonicalize(&mut self) -> Result<(), (String, String)> {
        let plugin = plugin::load(&self.file()).map_err(|e| ("path".to_string(), e.to_string()))?;
        self.params =
            plugin.describe.canonical(&self.params).map_err(|(name, message)| (format!("params.{name}"), message))?;
        Ok(())
    }

    pub fn build(&self) -> anyhow::Result<PluginLoss> {
        let plugin = plugin::load(&self.file())?;
        Ok(PluginLoss { runner: Mutex::new(Runner::new(plugin, &self.params, self.limits.clone())?) })
    }
}

/// A bound plugin as a [`DistillLoss`].
pub struct PluginLoss {
    runner: Mutex<Runner>,
}

impl DistillLoss for PluginLoss {
    fn loss(&self, input: &LossInput) -> anyhow::Result<Tensor> {
        // A panic cannot happen while the lock is held (plugin failures are errors), but never let one poison it.
        let mut runner = self.runner.lock().unwrap_or_else(|p| p.into_inner());
        // ABI version 2 passes sequences as they are: logits [B, T, V], labels [B, T] (reshaping the rows back keeps
        // the autograd link to them); version 1 plugins get the token rows they were written for.
        let (student, teacher, labels) = match input.sequence_len {
            Some(t) if runner.plugin().abi >= 2 => {
                let vocab = input.student.size()[1];
                (
                    input.student.reshape([-1, t, vocab]),
                    input.teacher.reshape([-1, t, vocab]),
                    input.labels.reshape([-1, t]),
                )
            }
            _ => (input.student.shallow_clone(), input.teacher.shallow_clone(), input.labels.shallow_clone()),
        };
        let call = CallInput { student: &student, teacher: &teacher, labels: &labels, progress: input.progress };
        Ok(runner.loss(&call)?)
    }

    fn mean_over_rows(&self) -> bool {
        false
    }
}

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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{DistillLoss, LossInput};
use crate::plugin::{self, CallInput, Limits, Runner};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// Before the first training step, compare the plugin's gradient with central differences on a slice of the
    /// first batch ([`crate::plugin::gradient`]) and fail the step if they disagree. (Serialised only when off, so
    /// the keys of steps that leave it on are those of before it existed.)
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub check_gradient: bool,
    /// `path` resolved against the workflow's directory, set by the step that parsed the term.
    #[serde(skip)]
    pub resolved: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
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
        let plugin = plugin::load_with(&self.file(), &self.limits).map_err(|e| ("path".to_string(), e.to_string()))?;
        plugin.describe.bind(&self.params).map_err(|(name, message)| {
            (if name.is_empty() { "params".to_string() } else { format!("params.{name}") }, message)
        })?;
        Ok(())
    }

    /// Replaces `params` by every parameter the plugin declares, defaults filled in and typed as declared: the form
    /// the cache key hashes, so `{}`, `{temperature: 2}` and `{temperature: 2.0}` for a default of 2 are one key.
    pub fn canonicalize(&mut self) -> Result<(), (String, String)> {
        let plugin = plugin::load_with(&self.file(), &self.limits).map_err(|e| ("path".to_string(), e.to_string()))?;
        self.params =
            plugin.describe.canonical(&self.params).map_err(|(name, message)| (format!("params.{name}"), message))?;
        Ok(())
    }

    pub fn build(&self) -> anyhow::Result<PluginLoss> {
        let plugin = plugin::load_with(&self.file(), &self.limits)?;
        let runner = Runner::new(plugin, &self.params, self.limits.clone())?;
        let check_gradient = AtomicBool::new(self.check_gradient);
        Ok(PluginLoss { runner: Mutex::new(runner), term: self.clone(), check_gradient })
    }
}

/// A bound plugin as a [`DistillLoss`].
pub struct PluginLoss {
    runner: Mutex<Runner>,
    /// The term as written: the gradient check runs in an instance of its own, built from it.
    term: PluginTerm,
    /// The gradient check is still to run (on the first call).
    check_gradient: AtomicBool,
}

/// Rows (and, of sequences, positions) of the first batch the gradient check uses: enough to exercise the plugin,
/// few enough that its seven calls cost nothing beside training.
const CHECK_ROWS: i64 = 4;

impl PluginLoss {
    /// Runs the gradient check on a slice of this call's inputs, in a fresh instance (so the training instance's
    /// memory and any state the plugin keeps see only the training calls); an error when the gradient is wrong.
    fn check_gradient(&self, student: &Tensor, teacher: &Tensor, labels: &Tensor, progress: f64) -> anyhow::Result<()> {
        // Sequences [B, T, V] (labels [B, T]) are cut in batch and time, rows [N, C] (labels [N]) in rows.
        let sequences = student.dim() == 3;
        let slice = |t: &Tensor| {
            let t = t.narrow(0, 0, t.size()[0].min(CHECK_ROWS));
            if sequences && t.dim() >= 2 {
                t.narrow(1, 0, t.size()[1].min(CHECK_ROWS))
            } else {
                t
            }
        };
        let labels = if labels.numel() == 0 { labels.shallow_clone() } else { slice(labels) };
        let plugin = plugin::load_with(&self.term.file(), &self.term.limits)?;
        let mut runner = Runner::new(plugin, &self.term.params, self.term.limits.clone())?;
        let report = crate::plugin::gradient::check(&mut runner, &slice(student), &slice(teacher), &labels, progress)?;
        let label = &runner.plugin().label;
        if !report.ok() {
            anyhow::bail!(
                "plugin {label}: its gradient disagrees with central differences of its loss on a slice {:?} of the \
                 first batch (error {:.2e} of |gradient| along {} directions; tolerance {:.0e}): a wrong gradient \
                 trains silently. A dense plugin must write d loss / d student (`anbiq plugin check` runs the same \
                 test); `check_gradient: false` skips it",
                slice(student).size(),
                report.worst,
                report.directions,
                crate::plugin::gradient::TOLERANCE
            );
        }
        tracing::debug!("plugin {label}: gradient check passed ({:.1e})", report.worst);
        Ok(())
    }
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
                    input.teacher_dense().reshape([-1, t, vocab]),
                    input.labels.reshape([-1, t]),
                )
            }
            _ => (input.student.shallow_clone(), input.teacher_dense().shallow_clone(), input.labels.shallow_clone()),
        };
        if self.check_gradient.swap(false, Ordering::Relaxed) {
            self.check_gradient(&student, &teacher, &labels, input.progress)?;
        }
        let call = CallInput { student: &student, teacher: &teacher, labels: &labels, progress: input.progress };
        Ok(runner.loss(&call)?)
    }

    fn mean_over_rows(&self) -> bool {
        false
    }
}

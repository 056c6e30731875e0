//! What a running step sees: its inputs' directories, a directory for each output, its seed, device and progress.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use super::ArtifactKind;
pub use crate::nn::runtime::progress::Progress;

/// An input artifact, resolved to its directory in the store.
#[derive(Clone, Debug)]
pub struct ResolvedInput {
    /// The reference as written (`digits.train`): how reports name it.
    pub label: String,
    pub kind: ArtifactKind,
    pub dir: PathBuf,
}

/// Loads the dataset (or view) behind input `role`.
pub fn load_data(ctx: &StepContext, role: &str) -> anyhow::Result<crate::artifact::LoadedData> {
    let input = ctx.input(role)?;
    crate::artifact::view::load_dir(&ctx.store_root, &input.dir)
        .with_context(|| format!("loading `{role}` ({})", input.label))
}

/// The run-time environment of one step.
pub struct StepContext {
    /// The step's id in the workflow.
    pub id: String,
    /// Its kind (`train`, `distill`, …), for progress bars: `teacher: train`.
    pub kind: &'static str,
    /// The step's own seed, derived from the workflow seed and the step id.
    pub seed: u64,
    pub device: tch::Device,
    /// libtorch intra-op threads for this step.
    pub threads: usize,
    pub progress: Progress,
    /// Data-parallel: the process group when this process is one rank of the step (see [`crate::nn::distributed`]).
    /// Every rank runs the whole step; only rank 0's outputs are committed.
    pub group: Option<std::sync::Arc<crate::nn::distributed::ProcessGroup>>,
    inputs: BTreeMap<String, ResolvedInput>,
    out_dir: PathBuf,
    store_root: PathBuf,
    checkpoint_dir: Option<PathBuf>,
    metrics: serde_json::Map<String, serde_json::Value>,
    timings: serde_json::Map<String, serde_json::Value>,
}

/// What a step reports besides its outputs.
pub struct StepRecords {
    /// Summary metrics, deterministic like the outputs (final accuracy, samples kept).
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// Measurements of this machine (latency, throughput): kept out of every hash.
    pub timings: serde_json::Map<String, serde_json::Value>,
}

impl StepContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        seed: u64,
        device: tch::Device,
        threads: usize,
        progress: Progress,
        inputs: BTreeMap<String, ResolvedInput>,
        out_dir: PathBuf,
        store_root: PathBuf,
    ) -> Self {
        StepContext {
            id,
            kind: "step",
            seed,
            device,
            threads,
            progress,
            group: None,
            inputs,
            out_dir,
            store_root,
            checkpoint_dir: None,
            metrics: Default::default(),
            timings: Default::default(),
        }
    }

    /// Names the step's kind in progress bars.
    pub fn with_kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }

    /// `id: kind`, how a progress bar names the step.
    pub fn label(&self) -> String {
        format!("{}: {}", self.id, self.kind)
    }

    /// Lets long steps checkpoint into (and resume from) `dir`, which outlives a failed or interrupted run.
    pub fn with_checkpoints(mut self, dir: PathBuf) -> Self {
        self.checkpoint_dir = Some(dir);
        self
    }

    /// Where a training loop keeps its checkpoint, if the engine provides one.
    pub fn checkpoint(&self) -> Option<crate::nn::training::checkpoint::Checkpoint> {
        self.checkpoint_dir.as_ref().map(crate::nn::training::checkpoint::Checkpoint::new)
    }

    /// The input behind the config field `role` (`data`, `models[1]`).
    pub fn input(&self, role: &str) -> anyhow::Result<&ResolvedInput> {
        match self.inputs.get(role) {
            Some(i) => Ok(i),
            None => bail!("step `{}` has no input `{role}` (engine bug: inputs are resolved before run)", self.id),
        }
    }

    /// The directory to write output `name` into (created on first use). It is a temporary directory until the
    /// step returns successfully; the engine then moves it into the store in one rename.
    pub fn output_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.out_dir.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// A path inside the store, relative to its root: what artifacts write when they refer to other artifacts, so
    /// that a store directory can be moved.
    pub fn store_relative(&self, path: &Path) -> anyhow::Result<PathBuf> {
        path.strip_prefix(&self.store_root)
            .map(Path::to_path_buf)
            .with_context(|| format!("{} is not inside the store {}", path.display(), self.store_root.display()))
    }

    /// The inverse of [`store_relative`](Self::store_relative).
    pub fn store_path(&self, relative: &Path) -> PathBuf {
        self.store_root.join(relative)
    }

    /// Records a summary metric for the lockfile (e.g. final accuracy, samples kept).
    pub fn record_metric(&mut self, name: &str, value: impl Into<serde_json::Value>) {
        self.metrics.insert(name.to_string(), value.into());
    }

    /// Records a measurement of the machine (a latency, a throughput). Unlike outputs and metrics it differs from
    /// run to run, so it goes into the manifest and the lockfile's `timings`, which no hash covers, and never into
    /// an output.
    pub fn record_timing(&mut self, name: &str, value: impl Into<serde_json::Value>) {
        self.timings.insert(name.to_string(), value.into());
    }

    pub fn into_records(self) -> StepRecords {
        StepRecords { metrics: self.metrics, timings: self.timings }
    }
}

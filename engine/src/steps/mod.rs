//! Step kinds: one file per kind, all behind the [`Step`] trait, found by name in the [`registry`].
//!
//! A step gets its configuration (already parsed and validated), the directories of its resolved inputs and a
//! temporary directory for its outputs; it knows nothing of other steps, the DAG, the cache or the lockfile. Adding a
//! step kind means one new file here and one line in [`registry::KINDS`].

mod context;
pub mod dataset;
pub mod distill;
pub mod evaluate;
pub mod filter;
pub mod generate;
pub mod import;
pub mod infer;
pub mod lm;
pub mod prune;
mod reference;
pub mod registry;
pub mod train;
pub mod training;

pub use context::{load_data, Progress, ResolvedInput, StepContext, StepRecords};
pub use reference::{is_identifier, OneOrMany, StepRef};
pub use registry::{find_kind, registry, ParseEnv, StepKind};

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What an output is; checked against what a referencing field accepts before anything runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// Samples and labels (or an index view of another dataset).
    Dataset,
    /// Trained weights plus the architecture that reads them.
    Model,
    /// A teacher's outputs over a dataset.
    Logits,
    /// Metrics and tables.
    Report,
}

impl ArtifactKind {
    pub const ALL: [ArtifactKind; 4] =
        [ArtifactKind::Dataset, ArtifactKind::Model, ArtifactKind::Logits, ArtifactKind::Report];

    /// The version of this artifact's stored format: it enters the key of every step that writes one, so a format
    /// change reruns every writer (and so every reader) instead of mixing formats in one store. Bump it with the
    /// format.
    pub fn format_version(self) -> u32 {
        match self {
            // 2: token ids stored as u16/u32.
            ArtifactKind::Dataset => 2,
            ArtifactKind::Model => 1,
            // 2: per-token ids stored as u16/u32.
            ArtifactKind::Logits => 2,
            ArtifactKind::Report => 1,
        }
    }

    /// The name a lockfile uses for it.
    pub fn name(self) -> &'static str {
        match self {
            ArtifactKind::Dataset => "dataset",
            ArtifactKind::Model => "model",
            ArtifactKind::Logits => "logits",
            ArtifactKind::Report => "report",
        }
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArtifactKind::Dataset => "a dataset",
            ArtifactKind::Model => "a model",
            ArtifactKind::Logits => "teacher logits",
            ArtifactKind::Report => "a report",
        })
    }
}

/// One named output of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputDecl {
    pub name: String,
    pub kind: ArtifactKind,
}

impl OutputDecl {
    pub fn new(name: impl Into<String>, kind: ArtifactKind) -> Self {
        OutputDecl { name: name.into(), kind }
    }
}

/// A file (or directory) outside the store that a step reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInput {
    /// The path as the workflow writes it (relative to the workflow file, or absolute): how the cache key and the
    /// lockfile name the file, so that neither depends on the current directory or on how the workflow's own path
    /// was typed on the command line.
    pub written: PathBuf,
    /// Where it is: `written` resolved against the workflow's directory.
    pub path: PathBuf,
}

impl FileInput {
    pub fn new(written: &Path, env: &ParseEnv) -> Self {
        FileInput { written: written.to_path_buf(), path: env.resolve(written) }
    }
}

/// One reference from a step's configuration to another step's output.
#[derive(Clone, Debug)]
pub struct InputDecl {
    /// Where the reference sits in the step's config, as a path (`data`, `models[1]`): the key under which the
    /// step later asks its context for the input, and how errors find the line and column.
    pub role: String,
    pub reference: StepRef,
    /// Kinds of artifact this field can take.
    pub accepts: &'static [ArtifactKind],
}

impl InputDecl {
    pub fn new(role: impl Into<String>, reference: &StepRef, accepts: &'static [ArtifactKind]) -> Self {
        InputDecl { role: role.into(), reference: reference.clone(), accepts }
    }
}

/// A parsed, validated step of one kind.
pub trait Step: Send + Sync + fmt::Debug {
    /// The step's outputs; the first is the default, what a bare `step-id` reference means.
    fn outputs(&self) -> Vec<OutputDecl>;

    /// The other steps' outputs this step reads.
    fn inputs(&self) -> Vec<InputDecl>;

    /// Files outside the store that this step reads: their bytes enter the cache key, named as the workflow writes
    /// them.
    fn files(&self) -> Vec<FileInput> {
        Vec::new()
    }

    /// How many classes (or tokens) output `output` has, when the configuration says so before anything runs
    /// (`digits`: 10; a declared `classes`; a trainer's model: its data's). `input` answers the same for this
    /// step's inputs, by role. Lets `validate` find what needs no run to know (an `infer`'s `top_k` above it).
    fn known_classes(&self, output: &str, input: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        let _ = (output, input);
        None
    }

    /// Problems that the inputs' known classes reveal, as (field, message).
    fn check_known_classes(&self, input: &dyn Fn(&str) -> Option<i64>) -> Vec<(String, String)> {
        let _ = input;
        Vec::new()
    }

    /// The configuration in canonical form (defaults filled in): hashed into the cache key and kept in the lockfile
    /// so that `plan` can say which field changed.
    fn canonical_config(&self) -> serde_json::Value;

    /// Does the work: reads inputs from `ctx`, writes every declared output under `ctx.output_dir(name)`.
    fn run(&self, ctx: &mut StepContext) -> anyhow::Result<()>;

    /// Into how many independent shards the step's work splits (`1`: it does not). A sharded step runs as
    /// [`run_shard`](Self::run_shard) for every shard (threads locally, a job array on Slurm), then
    /// [`assemble`](Self::assemble) once; the assembled outputs must not depend on the number of shards.
    fn shards(&self) -> usize {
        1
    }

    /// Data-parallel: the step runs as this many ranks (processes), see [`crate::nn::distributed`].
    fn distributed(&self) -> Option<&crate::nn::distributed::DistributedConfig> {
        None
    }

    /// Computes shard `index` of `count`, writing it anywhere under `dir` (opaque to the engine).
    fn run_shard(&self, ctx: &mut StepContext, index: usize, count: usize, dir: &Path) -> anyhow::Result<()> {
        let _ = (ctx, index, count, dir);
        anyhow::bail!("step kind does not support shards")
    }

    /// Builds the declared outputs from every shard's directory, in shard order.
    fn assemble(&self, ctx: &mut StepContext, shards: &[PathBuf]) -> anyhow::Result<()> {
        let _ = (ctx, shards);
        anyhow::bail!("step kind does not support shards")
    }
}

/// Serialises a config for [`Step::canonical_config`]; configs are plain data, so this cannot fail.
pub fn canonical<T: Serialize>(config: &T) -> serde_json::Value {
    serde_json::to_value(config).expect("step configs serialise to JSON")
}

/// Splits a message of the form `field.path[1]: what is wrong` (how nn and loss configs report problems) into its
/// field and text; other messages are attributed to `default_field`.
pub fn field_problem(default_field: &str, message: String) -> (String, String) {
    match message.split_once(": ") {
        Some((field, rest)) if !field.is_empty() && !field.contains(' ') => (field.to_string(), rest.to_string()),
        _ => (default_field.to_string(), message),
    }
}

/// Turns `(field path, message)` problems into located errors at each field's value (or the step, if absent).
pub fn check_fields(
    node: &crate::config::Node,
    problems: Vec<(String, String)>,
) -> Result<(), Vec<crate::config::Located>> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(problems
        .into_iter()
        .map(|(field, message)| {
            let span = field_span(node, &field).unwrap_or(node.span);
            let message = if field.is_empty() { message } else { format!("`{field}`: {message}") };
            crate::config::Located { span, message }
        })
        .collect())
}

/// The span of the value at a field path like `data`, `models[1]` or `loss.kd.temperature`; the deepest part of
/// the path that exists.
pub fn field_span(node: &crate::config::Node, path: &str) -> Option<crate::config::Span> {
    let mut current = node;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some(next) = current.get(key) else { break };
        current = next;
        if let Some(item) = index.and_then(|i| current.as_seq().and_then(|s| s.get(i))) {
            current = item;
        }
    }
    Some(current.span)
}

/// Runs one sample through a freshly built model, so that a model that does not fit the data fails with a clear
/// message before any training starts.
pub fn check_model_fits(
    model: &dyn crate::nn::Model,
    data: &crate::data::Dataset,
    outputs: i64,
    device: tch::Device,
) -> anyhow::Result<()> {
    let x = data.x.narrow(0, 0, 1).to_device(device);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tch::no_grad(|| model.forward(&x, crate::nn::Mode::Eval).size())
    }));
    // One row of outputs per label: [1, classes] for a classifier, [1, T, vocab] for a language model; one
    // embedding [1, width] per sentence.
    let per_label = if data.meta.sentence_padding().is_some() { &[][..] } else { &data.y.size()[1..] };
    let expected: Vec<i64> = [1].into_iter().chain(per_label.iter().copied()).chain([outputs]).collect();
    match result {
        Ok(shape) if shape == expected => Ok(()),
        Ok(shape) => anyhow::bail!("field `model`: the model outputs shape {shape:?} per sample, the data needs {expected:?}"),
        Err(_) => anyhow::bail!(
            "field `model`: the model does not accept the data's samples of shape {:?} (e.g. a `cnn` needs images [C, H, W])",
            data.meta.sample_shape
        ),
    }
}

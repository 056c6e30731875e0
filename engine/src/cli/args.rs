//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::graph::render::Format;
use crate::workflow::Override;

#[derive(Debug, Parser)]
#[command(
    name = "anbiq",
    version,
    about = "Declarative, reproducible knowledge distillation on libtorch",
    long_about = "anbiq runs a distillation workflow — datasets, teacher training, teacher inference, filtering, \
                  multi-stage distillation, evaluation — described as a DAG of steps in one YAML file. Every output is \
                  cached by a key over everything that produced it, and a lockfile beside the workflow records the \
                  provenance. Re-running an unchanged workflow does no work.",
    after_help = "Start with:  anbiq run workflows/quickstart.yaml\nExit codes: 0 success, 1 a step failed, 2 invalid workflow or arguments, 130 interrupted (Ctrl-C)."
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check workflow files: syntax, types, references, cycles. Every problem is printed as file:line:col.
    #[command(after_help = "Example:\n  anbiq validate workflows/*.yaml")]
    Validate(ValidateArgs),
    /// Show what `run` would do: the order, and per step whether it is cached or will run, and why.
    #[command(after_help = "Example:\n  anbiq plan workflows/quickstart.yaml --set temperature=8")]
    Plan(PlanArgs),
    /// Draw the step graph as Graphviz DOT or Mermaid.
    #[command(
        after_help = "Example:\n  anbiq graph workflows/quickstart.yaml --format dot | dot -Tsvg > quickstart.svg"
    )]
    Graph(GraphArgs),
    /// Run a workflow: every step whose outputs are not cached, independent steps in parallel.
    #[command(
        after_help = "Examples:\n  anbiq run workflows/quickstart.yaml\n  anbiq run workflows/quickstart.yaml --set temperature=8 --jobs 2\n  anbiq run workflows/quickstart.yaml --only teacher --force teacher\n  anbiq run workflows/quickstart.yaml --executor slurm --store /shared/anbiq --partition gpu"
    )]
    Run(RunArgs),
    /// Show the results of every evaluation step for these parameters (--set), read from the store by key.
    #[command(
        after_help = "Examples:\n  anbiq metrics workflows/quickstart.yaml --json\n  anbiq metrics workflows/sweep-kd.yaml --sort accuracy"
    )]
    Metrics(MetricsArgs),
    /// Check a workflow's outputs in the store, found by the keys it (with its --set) gives: present, whole,
    /// unmodified (rehashed), and as the lockfile records them.
    #[command(after_help = "Example:\n  anbiq verify workflows/quickstart.yaml")]
    Verify(VerifyArgs),
    /// Write one self-contained HTML page of a workflow's results (for these parameters, read from the store by key):
    /// the step graph, training curves, evaluation tables and charts, sweeps, samples and provenance.
    #[command(after_help = "Example:\n  anbiq report workflows/quickstart.yaml -o quickstart.html")]
    Report(ReportArgs),
    /// Explain the differences between two lockfiles: versions, seeds, configs, inputs, files, outputs.
    #[command(after_help = "Example:\n  anbiq diff yesterday/quickstart.lock workflows/quickstart.lock")]
    Diff(DiffArgs),
    /// Delete cached outputs (and checkpoints) that no run recorded in this store references any more.
    #[command(after_help = "Example:\n  anbiq gc --dry-run")]
    Gc(GcArgs),
    /// Show the Slurm jobs of a workflow's last `run --executor slurm`, and bring its lockfile up to date.
    #[command(after_help = "Example:\n  anbiq status workflows/quickstart.yaml --store /shared/anbiq")]
    Status(StatusArgs),
    /// Cancel the Slurm jobs of a workflow's last `run --executor slurm` that have not finished.
    #[command(after_help = "Example:\n  anbiq cancel workflows/quickstart.yaml --store /shared/anbiq")]
    Cancel(CancelArgs),
    /// Convert a GGUF file (llama.cpp, Ollama) to safetensors, every tensor dequantised to f32; for the llama
    /// architecture with Hugging Face names and a config.json.
    #[command(after_help = "Example:\n  anbiq convert data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf smollm2-hf/")]
    Convert(ConvertArgs),
    /// Write a model step's output in a format the ecosystem runs: a Hugging Face directory (`transformers`
    /// loads it with from_pretrained). The step is found in the store by the key the workflow (with --set) gives.
    #[command(after_help = "Example:\n  anbiq export workflows/my.yaml student student-hf/ --format hf")]
    Export(ExportArgs),
    /// Print the JSON Schema of workflow files (draft 2020-12), for editors: VS Code's YAML extension completes and
    /// checks a workflow whose first line is `# yaml-language-server: $schema=PATH/anbiq.schema.json`.
    #[command(after_help = "Example:\n  anbiq schema -o anbiq.schema.json")]
    Schema(SchemaArgs),
    /// Plumbing: run exactly one step of a workflow against the store and commit its outputs (what each Slurm job
    /// runs). Refuses when an input is missing from the store.
    #[command(hide = true)]
    RunStep(RunStepArgs),
    /// Work with WebAssembly loss plugins: check one, or start a new one.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Load a plugin, print its describe, run it on random logits, compare its gradient with central finite
    /// differences, and report fuel and time per call.
    #[command(after_help = "Example:\n  anbiq plugin check plugins/build/reverse_kl.wasm --params temperature=2")]
    Check(PluginCheckArgs),
    /// Create a plugin project that builds as-is (Rust with the anbiq SDK, or C with anbiq_plugin.h).
    #[command(after_help = "Example:\n  anbiq plugin new my_loss && cd my_loss && ./build.sh")]
    New(PluginNewArgs),
}

#[derive(Debug, clap::Args)]
pub struct PluginCheckArgs {
    /// The plugin module (.wasm, or .wat text).
    pub file: PathBuf,
    /// Parameter values (repeatable, or comma-separated): --params temperature=2,alpha=0.5.
    #[arg(long, value_name = "NAME=VALUE", value_delimiter = ',')]
    pub params: Vec<String>,
    /// Rows of the random batch.
    #[arg(long, default_value_t = 16)]
    pub batch: i64,
    /// Classes of the random batch.
    #[arg(long, default_value_t = 10)]
    pub classes: i64,
    /// Calls to time.
    #[arg(long, default_value_t = 200)]
    pub calls: usize,
    /// Fuel per call.
    #[arg(long)]
    pub fuel: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PluginLang {
    Rust,
    C,
}

#[derive(Debug, clap::Args)]
pub struct PluginNewArgs {
    /// The plugin's name (letters, digits, `_`); also the directory created.
    pub name: String,
    #[arg(long, value_enum, default_value_t = PluginLang::Rust)]
    pub lang: PluginLang,
    /// Where to create the project (default: ./NAME).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Workflow files.
    #[arg(required = true)]
    pub workflows: Vec<PathBuf>,
}

/// Options shared by the commands that evaluate a workflow against the store.
#[derive(Debug, clap::Args)]
pub struct WorkflowArgs {
    /// The workflow file.
    pub workflow: PathBuf,
    /// Override a parameter declared under `params:` (repeatable): --set temperature=8.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub overrides: Vec<Override>,
    /// Store directory for cached outputs.
    #[arg(long, value_name = "DIR", default_value = ".anbiq", env = "ANBIQ_STORE")]
    pub store: PathBuf,
    /// The lockfile: where `run` writes it, what `plan` and `verify` compare with (default: `<workflow>.lock`
    /// beside the workflow). The store keeps its own record of every run, so this file is only provenance.
    #[arg(long = "lock", value_name = "PATH")]
    pub lockfile: Option<PathBuf>,
}

impl WorkflowArgs {
    /// `--lock`, else the lockfile beside the workflow.
    pub fn lockfile_path(&self, wf: &crate::workflow::Workflow) -> PathBuf {
        self.lockfile.clone().unwrap_or_else(|| wf.lockfile_path())
    }
}

#[derive(Debug, clap::Args)]
pub struct SelectArgs {
    /// Run this step even if its outputs are cached (repeatable).
    #[arg(long, value_name = "STEP")]
    pub force: Vec<String>,
    /// Run only this step and the steps it needs.
    #[arg(long, value_name = "STEP")]
    pub only: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// The workflow file.
    pub workflow: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Dot)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    /// Where to write it (default: `<workflow>.report.html` beside the workflow).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Write it to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Steps that may run at once.
    #[arg(long, short, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,
    /// Print the per-step results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// At the end, write the HTML report (as `anbiq report` does) to PATH, by default `<workflow>.report.html`
    /// beside the workflow; the path is printed.
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    pub report: Option<Option<PathBuf>>,
    /// Where steps run: `local` (this machine, in threads) or `slurm` (one sbatch job per step; the store must be
    /// on a filesystem every node mounts).
    #[arg(long, value_enum, default_value_t = Executor::Local)]
    pub executor: Executor,
    #[command(flatten)]
    pub slurm: SlurmArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    Local,
    Slurm,
}

/// Options of `run --executor slurm`.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Slurm (with --executor slurm)")]
pub struct SlurmArgs {
    /// Submit to this partition.
    #[arg(long, value_name = "P")]
    pub partition: Option<String>,
    /// Charge this account.
    #[arg(long, value_name = "A")]
    pub account: Option<String>,
    /// An extra argument for every sbatch call (repeatable): --sbatch-arg=--qos=high.
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Submit and return; follow with `anbiq status`, stop with `anbiq cancel`.
    #[arg(long)]
    pub detach: bool,
    /// Accept a store under a node-local temp directory (/tmp, $TMPDIR): only right on a single-node cluster.
    #[arg(long)]
    pub allow_local_store: bool,
    /// Seconds between job-state polls while waiting.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pub poll: f64,
}

impl SlurmArgs {
    /// Whether any Slurm option was given (they need --executor slurm).
    pub fn any(&self) -> bool {
        self.partition.is_some()
            || self.account.is_some()
            || !self.sbatch_args.is_empty()
            || self.detach
            || self.allow_local_store
    }
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    /// Print the jobs as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub workflow: WorkflowArgs,
}

#[derive(Debug, clap::Args)]
pub struct RunStepArgs {
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    /// The step to run.
    #[arg(long, value_name = "STEP")]
    pub step: String,
    /// Compute only this shard of a sharded step (a job array's task id).
    #[arg(long, value_name = "I")]
    pub shard: Option<usize>,
    /// The step's key at submission: refuse to run if the workflow now gives another.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Run even if the step's outputs are in the store.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    /// Sort each table by this metric, best first (highest, or lowest for nll, ece, errors, kl_*, latency_ms).
    /// Without it: the reference model (the teacher) first, then the others in the order the step lists them.
    #[arg(long, value_name = "METRIC")]
    pub sort: Option<String>,
    /// Only these metrics, in this order (`--columns accuracy,errors,parameters`); in JSON too.
    #[arg(long, value_name = "A,B,..", value_delimiter = ',')]
    pub columns: Vec<String>,
    /// JSON shaped {step: {model: {metric: value}}}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Store directory.
    #[arg(long, value_name = "DIR", default_value = ".anbiq", env = "ANBIQ_STORE")]
    pub store: PathBuf,
    /// Only report what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub workflow: WorkflowArgs,
}

#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// The GGUF file.
    pub file: PathBuf,
    /// The directory to write (new, or empty).
    pub out_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    /// The step whose model to export.
    pub step: String,
    /// The directory to write (new, or empty) for `hf`; the file to write (new) for `gguf`.
    pub out_dir: PathBuf,
    #[arg(long, value_enum, default_value_t = ExportFormat::Hf)]
    pub format: ExportFormat,
    /// `gguf` only: the type of the weight matrices (norms and biases stay f32).
    #[arg(long, value_enum)]
    pub quant: Option<ExportQuant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A Hugging Face directory: config.json, model.safetensors, generation_config.json, tokenizer files.
    Hf,
    /// A GGUF v3 file for llama.cpp and Ollama (llama models): llama.cpp's names and metadata, the tokenizer.
    Gguf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportQuant {
    /// Half precision (the default).
    F16,
    /// llama.cpp's 8-bit blocks of 32 (8.5 bits per weight).
    #[value(name = "q8_0")]
    Q8_0,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The first lockfile.
    pub a: PathBuf,
    /// The second lockfile.
    pub b: PathBuf,
    /// JSON: {"differences": [..], "metrics": [{step, metric, a, b, delta}]}.
    #[arg(long)]
    pub json: bool,
}

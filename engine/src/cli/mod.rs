//! The command line: parse arguments, set up logging, run one command, print one error, exit with a code that means
//! something (0 success, 1 a step or the engine failed, 2 the workflow or the arguments are invalid, 130
//! interrupted).

mod args;
mod convert;
mod diff;
mod export;
mod gc;
mod graph;
mod metrics;
mod plan;
mod plugin;
mod report;
mod run;
mod run_step;
mod schema;
mod slurm;
mod validate;
mod verify;

use std::io::IsTerminal;

use clap::Parser;

pub use args::{Args, Command, LogFormat, PluginCommand};

use crate::config::Diagnostics;

/// Exit codes.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_INVALID: i32 = 2;
/// Stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The workflow file has problems; each is already formatted `file:line:col: message`.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// Bad arguments that clap could not catch (an unknown step in `--only`, say).
    #[error("{0}")]
    Usage(String),
    /// Something failed while running.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl CliError {
    fn exit_code(&self) -> i32 {
        match self {
            CliError::Invalid(_) | CliError::Usage(_) => EXIT_INVALID,
            CliError::Failed(_) => EXIT_FAILED,
        }
    }
}

impl From<Diagnostics> for CliError {
    fn from(d: Diagnostics) -> Self {
        CliError::Invalid(d)
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    quiet_on_broken_pipe();
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_INVALID } else { EXIT_OK };
        }
    };
    init_logging(&args);
    crate::nn::runtime::device::load_cuda_runtime();
    match try_main(args) {
        Ok(code) => code,
        Err(err) => {
            match &err {
                CliError::Failed(e) => eprintln!("error: {}", crate::run::brief::without_backtrace(&format!("{e:#}"))),
                other => eprintln!("{other}"),
            }
            err.exit_code()
        }
    }
}

/// `anbiq plan --json | head`: a reader that stops early is not an error. Rust ignores SIGPIPE, so `println!` panics
/// with "failed printing to stdout: Broken pipe"; leave quietly instead, as ripgrep does.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message =
            payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if message.is_some_and(|m| m.starts_with("failed printing to stdout") && m.contains("Broken pipe")) {
            // SAFETY: ends the process at once; stdout is gone and nothing else is pending that destructors would
            // finish (main leaves the same way).
            unsafe { libc::_exit(EXIT_OK) }
        }
        default(info)
    }));
}

fn try_main(args: Args) -> Result<i32, CliError> {
    match args.command {
        Command::Validate(a) => validate::validate(a),
        Command::Plan(a) => plan::plan(a),
        Command::Graph(a) => graph::graph(a),
        Command::Run(a) => run::run(a),
        Command::Metrics(a) => metrics::metrics(a),
        Command::Verify(a) => verify::verify(a),
        Command::Diff(a) => diff::diff(a),
        Command::Gc(a) => gc::gc(a),
        Command::Convert(a) => convert::convert(a),
        Command::Export(a) => export::export(a),
        Command::Plugin(PluginCommand::Check(a)) => plugin::check(a),
        Command::Plugin(PluginCommand::New(a)) => plugin::new(a),
        Command::Status(a) => slurm::status(a),
        Command::Cancel(a) => slurm::cancel(a),
        Command::Schema(a) => schema::schema(a),
        Command::Report(a) => report::report(a),
        Command::RunStep(a) => run_step::run_step(a),
    }
}

fn init_logging(args: &Args) {
    use tracing_subscriber::{fmt, EnvFilter};
    let level = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // RUST_LOG wins when set; otherwise our level applies to anbiq and warnings to dependencies.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("warn,anbiq={level}")));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = match args.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).without_time().try_init(),
    };
}

/// Loads a workflow for a command: load errors are the user's to fix (exit 2).
fn load(
    path: &std::path::Path,
    overrides: &[crate::workflow::Override],
) -> Result<crate::workflow::Workflow, CliError> {
    Ok(crate::workflow::load(path, overrides)?)
}

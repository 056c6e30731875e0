//! `anbiq run`: execute, then print a one-line result per step.

use super::args::RunArgs;
use super::{load, CliError, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK};
use crate::run::{self, Outcome, PlanOptions, RunOptions};
use crate::steps::Progress;

pub fn run(args: RunArgs) -> Result<i32, CliError> {
    let wf = load(&args.workflow.workflow, &args.workflow.overrides)?;
    crate::graph::Dag::build(&wf)?;
    for id in args.select.force.iter().chain(args.select.only.iter()) {
        if wf.step_index(id).is_none() {
            let known: Vec<&str> = wf.steps.iter().map(|s| s.id.as_str()).collect();
            return Err(CliError::Usage(format!(
                "no step `{id}` in {} (steps: {})",
                wf.path.display(),
                known.join(", ")
            )));
        }
    }
    let options = RunOptions {
        jobs: args.jobs as usize,
        store: args.workflow.store.clone(),
        plan: PlanOptions { force: args.select.force, only: args.select.only },
        progress: Progress::default(),
    };
    crate::interrupt::install_handler();
    let report = run::run(&wf, &options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.results).map_err(anyhow::Error::from)?);
    } else {
        let width = report.results.iter().map(|r| r.id.len()).max().unwrap_or(0);
        for r in &report.results {
            let what = match &r.outcome {
                Outcome::Cached => "cached".to_string(),
                Outcome::Ran { seconds } => format!("ran in {seconds:.1}s"),
                Outcome::Failed { error } => format!("FAILED: {error}"),
                Outcome::Skipped { because } => format!("skipped: {because}"),
                Outcome::NotSelected => "not selected".to_string(),
            };
            println!("{:<width$}  {what}", r.id);
        }
        println!("lockfile: {}", report.lockfile.display());
    }
    if crate::interrupt::requested() {
        eprintln!("interrupted: finished steps are stored and checkpoints kept; run the same command to resume");
        return Ok(EXIT_INTERRUPTED);
    }
    let failed = report.failures().count();
    if failed > 0 {
        eprintln!("error: {failed} step(s) failed");
        return Ok(EXIT_FAILED);
    }
    Ok(EXIT_OK)
}

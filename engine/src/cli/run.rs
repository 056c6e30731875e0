//! `anbiq run`: execute, then print a one-line result per step.

use std::time::Duration;

use super::args::{Executor, RunArgs};
use super::{load, CliError, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK};
use crate::run::{self, slurm, Outcome, PlanOptions, RunOptions};
use crate::steps::Progress;

pub fn run(args: RunArgs) -> Result<i32, CliError> {
    let wf = load(&args.workflow.workflow, &args.workflow.overrides)?;
    crate::graph::Dag::build(&wf)?;
    for id in args.select.force.iter().chain(args.select.only.iter()) {
        wf.require_step(id).map_err(CliError::Usage)?;
    }
    if args.executor == Executor::Local && args.slurm.any() {
        return Err(CliError::Usage(
            "--partition, --account, --sbatch-arg, --detach and --allow-local-store need --executor slurm".into(),
        ));
    }
    let plan = PlanOptions { force: args.select.force, only: args.select.only };
    crate::interrupt::install_handler();
    let report = match args.executor {
        Executor::Local => {
            let options = RunOptions {
                jobs: args.jobs as usize,
                overrides: args.workflow.overrides.clone(),
                rank_binary: None,
                store: args.workflow.store.clone(),
                lockfile: args.workflow.lockfile.clone(),
                plan,
                progress: Progress::default(),
            };
            run::run(&wf, &options)?
        }
        Executor::Slurm => {
            if !(args.slurm.poll.is_finite() && args.slurm.poll > 0.0) {
                return Err(CliError::Usage(format!("--poll must be a positive number, got {}", args.slurm.poll)));
            }
            let options = slurm::SlurmOptions {
                store: args.workflow.store.clone(),
                lockfile: args.workflow.lockfile.clone(),
                plan,
                overrides: args.workflow.overrides.clone(),
                partition: args.slurm.partition.clone(),
                account: args.slurm.account.clone(),
                sbatch_args: args.slurm.sbatch_args.clone(),
                allow_local_store: args.slurm.allow_local_store,
                poll: Duration::from_secs_f64(args.slurm.poll),
                exe: None,
            };
            let submission = slurm::submit(&wf, &options)?;
            if args.slurm.detach {
                print_submission(&submission);
                return Ok(EXIT_OK);
            }
            let report = slurm::wait(&wf, &submission, &options)?;
            if crate::interrupt::requested() {
                eprintln!(
                    "stopped waiting: the jobs keep running. Follow them with `anbiq status {wf}`, stop them with                      `anbiq cancel {wf}`",
                    wf = args.workflow.workflow.display()
                );
            }
            report
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.results).map_err(anyhow::Error::from)?);
    } else {
        let width = report.results.iter().map(|r| r.id.len()).max().unwrap_or(0);
        for r in &report.results {
            let what = match &r.outcome {
                Outcome::Cached => "cached".to_string(),
                Outcome::Ran { seconds } => format!("ran in {seconds:.1}s"),
                Outcome::Failed { error } => {
                    format!("FAILED: {}", error.replace('\n', &format!("\n{:width$}    ", "")))
                }
                Outcome::Skipped { because } => format!("skipped: {because}"),
                Outcome::NotSelected => "not selected".to_string(),
            };
            println!("{:<width$}  {what}", r.id);
        }
        println!("lockfile: {}", report.lockfile.display());
        print_summary(&report);
    }
    if let Some(path) = &args.report {
        let path = path.clone().unwrap_or_else(|| super::report::default_path(&wf));
        super::report::write(&wf, &args.workflow, Some(&report), &path)?;
        // With --json, stdout is the JSON document alone.
        if args.json {
            eprintln!("report: {}", path.display());
        } else {
            println!("report: {}", path.display());
        }
    }
    if crate::interrupt::requested() && args.executor == Executor::Local {
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

/// "summary: N ran, M cached, K failed", then each evaluate step's headline metric per model (from the lockfile
/// just written).
fn print_summary(report: &run::RunReport) {
    let count = |f: fn(&Outcome) -> bool| report.results.iter().filter(|r| f(&r.outcome)).count();
    let mut line = format!(
        "summary: {} ran, {} cached, {} failed",
        count(|o| matches!(o, Outcome::Ran { .. })),
        count(|o| matches!(o, Outcome::Cached)),
        count(|o| matches!(o, Outcome::Failed { .. }))
    );
    let skipped = count(|o| matches!(o, Outcome::Skipped { .. }));
    if skipped > 0 {
        line += &format!(", {skipped} skipped");
    }
    println!("{line}");
    let Ok(Some(lock)) = run::Lockfile::read(&report.lockfile) else { return };
    for step in lock.steps.iter().filter(|s| s.ingredients.kind == "evaluate") {
        if let Some((metric, values)) = crate::report::results::headline(&step.metrics) {
            let shown: Vec<String> =
                values.iter().map(|(m, v)| format!("{m} {}", crate::report::results::format_number(*v))).collect();
            println!("results: {} {metric}: {}", step.id, shown.join(", "));
        }
    }
}

/// What `--detach` prints: each submitted job, and how to follow them.
fn print_submission(submission: &slurm::Submission) {
    let cached = submission.plan.entries.iter().filter(|e| e.status == run::Status::Cached).count();
    let label = |j: &slurm::RecordedJob| match j.role {
        slurm::Role::Step => j.step.clone(),
        slurm::Role::Shards => format!("{} (shards {})", j.step, j.array.as_deref().unwrap_or("")),
    };
    let width = submission.record.jobs.iter().map(|j| label(j).len()).max().unwrap_or(0);
    for j in &submission.record.jobs {
        let step = label(j);
        let note = if submission.new_jobs.contains(&j.job) { "" } else { "  (already queued)" };
        println!("{step:<width$}  job {}{note}", j.job);
    }
    println!(
        "submitted {} job(s), {cached} step(s) cached; jobs recorded in {}",
        submission.new_jobs.len(),
        submission.record_path.display()
    );
    println!("follow with `anbiq status WORKFLOW`, cancel with `anbiq cancel WORKFLOW` (same --store and --set)");
}

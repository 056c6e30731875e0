//! `anbiq status` and `anbiq cancel`: the Slurm jobs of a workflow's last `run --executor slurm`.

use super::args::{CancelArgs, StatusArgs};
use super::{load, CliError, EXIT_OK};
use crate::run::slurm;

pub fn status(args: StatusArgs) -> Result<i32, CliError> {
    let wf = load(&args.workflow.workflow, &args.workflow.overrides)?;
    let Some((record, rows, lockfile)) = slurm::status(&wf, &args.workflow.store)? else {
        eprintln!(
            "no Slurm jobs recorded for {} in the store {} (submit with `anbiq run --executor slurm`)",
            wf.path.display(),
            args.workflow.store.display()
        );
        return Ok(EXIT_OK);
    };
    if args.json {
        let doc = serde_json::json!({ "submitted": record.submitted, "jobs": rows, "lockfile": lockfile });
        println!("{}", serde_json::to_string_pretty(&doc).map_err(anyhow::Error::from)?);
        return Ok(EXIT_OK);
    }
    let width = rows.iter().map(|r| r.step.len() + if r.role == slurm::Role::Shards { 9 } else { 0 }).max();
    let width = width.unwrap_or(4).max(4);
    println!("{:<width$}  {:>8}  STATE", "STEP", "JOB");
    for r in &rows {
        let step = match r.role {
            slurm::Role::Step => r.step.clone(),
            slurm::Role::Shards => format!("{} (shards)", r.step),
        };
        println!("{step:<width$}  {:>8}  {}", r.job, r.state);
        if let (Some(log), Some(error)) = (&r.log, &r.error) {
            println!("{:<width$}            log: {}", "", log.display());
            for line in error.lines() {
                println!("{:<width$}            {line}", "");
            }
        }
    }
    let done = rows.iter().filter(|r| r.role == slurm::Role::Step && r.done).count();
    let steps = rows.iter().filter(|r| r.role == slurm::Role::Step).count();
    println!("{done}/{steps} submitted steps done; lockfile: {}", lockfile.display());
    Ok(EXIT_OK)
}

pub fn cancel(args: CancelArgs) -> Result<i32, CliError> {
    let wf = load(&args.workflow.workflow, &args.workflow.overrides)?;
    match slurm::cancel(&wf, &args.workflow.store)? {
        None => {
            eprintln!("no Slurm jobs recorded for {} in the store {}", wf.path.display(), args.workflow.store.display())
        }
        Some(cancelled) if cancelled.is_empty() => println!("nothing to cancel: every job has finished"),
        Some(cancelled) => {
            for (step, job) in &cancelled {
                println!("cancelled job {job} ({step})");
            }
        }
    }
    Ok(EXIT_OK)
}

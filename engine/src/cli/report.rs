//! `anbiq report` (and `run --report`): the HTML page of a workflow's results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::args::{ReportArgs, WorkflowArgs};
use super::{load, CliError, EXIT_OK};
use crate::report::{Sources, Status};
use crate::run::{Outcome, RunReport, Store};
use crate::workflow::Workflow;

pub fn report(args: ReportArgs) -> Result<i32, CliError> {
    let wf = load(&args.workflow.workflow, &args.workflow.overrides)?;
    crate::graph::Dag::build(&wf)?;
    let path = args.output.clone().unwrap_or_else(|| default_path(&wf));
    write(&wf, &args.workflow, None, &path)?;
    println!("report: {}", path.display());
    Ok(EXIT_OK)
}

/// `<workflow>.report.html` beside the workflow.
pub(super) fn default_path(wf: &Workflow) -> PathBuf {
    let stem = wf.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| wf.name.clone());
    wf.path.with_file_name(format!("{stem}.report.html"))
}

/// Writes the report; with a run's `outcome`, steps are shown as that run left them (ran, cached, failed, skipped).
pub(super) fn write(
    wf: &Workflow,
    args: &WorkflowArgs,
    outcome: Option<&RunReport>,
    path: &Path,
) -> Result<(), CliError> {
    let store = Store::open(&args.store)?;
    let statuses = outcome.map(|r| {
        r.results
            .iter()
            .filter_map(|s| {
                let status = match s.outcome {
                    Outcome::Ran { .. } => Status::Ran,
                    Outcome::Cached => Status::Cached,
                    Outcome::Failed { .. } => Status::Failed,
                    Outcome::Skipped { .. } => Status::Skipped,
                    Outcome::NotSelected => return None,
                };
                Some((s.id.clone(), status))
            })
            .collect::<BTreeMap<_, _>>()
    });
    let sources = Sources {
        store: &store,
        lockfile: args.lockfile_path(wf),
        statuses,
        overrides: args.overrides.iter().map(|o| format!("{}={}", o.name, o.value)).collect(),
    };
    crate::report::write(wf, &sources, path)?;
    Ok(())
}

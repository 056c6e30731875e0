//! Running workflows: plan against the store, execute, record the lockfile; and the store's upkeep (`gc`).

mod diff;
mod executor;
mod json_diff;
pub mod lockfile;
pub mod plan;
pub mod slurm;
mod step;
pub mod store;

pub use diff::diff;
pub use executor::{run, Outcome, RunOptions, RunReport, StepResult};
pub use lockfile::{LockedStep, Lockfile};
pub use plan::{plan, Plan, PlanEntry, PlanOptions, Status};
pub use step::{run_one, StepDone, StepOptions};
pub use store::{Manifest, Store};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What `gc` removed.
#[derive(Debug, Default)]
pub struct GcReport {
    pub roots: Vec<PathBuf>,
    pub kept: usize,
    pub removed: usize,
    pub bytes_freed: u64,
}

/// Drops every store entry that no registered lockfile references. With `dry_run`, only counts.
pub fn gc(store_root: &Path, dry_run: bool) -> anyhow::Result<GcReport> {
    let store = Store::open(store_root)?;
    let _lock = store.lock()?;
    let mut report = GcReport { roots: store.roots()?, ..Default::default() };
    let mut live = BTreeSet::new();
    for root in &report.roots {
        if let Some(lock) = Lockfile::read(root)? {
            live.extend(lock.steps.into_iter().map(|s| s.key));
        }
    }
    // A detached Slurm run's lockfile lags behind its jobs (`anbiq status` catches it up): what the last submission
    // of each workflow produces is kept too, so that its pending jobs still find their inputs.
    live.extend(slurm::recorded_keys(&store)?);
    for key in store.keys()? {
        if live.contains(&key) {
            report.kept += 1;
        } else {
            report.removed += 1;
            report.bytes_freed += if dry_run { 0 } else { store.remove(&key)? };
        }
    }
    Ok(report)
}

/// One problem `verify` found.
#[derive(Debug, PartialEq)]
pub struct VerifyProblem {
    pub step: String,
    pub message: String,
}

/// Recomputes the hash of every output the lockfile lists and compares; an empty list means all match.
pub fn verify(lock: &Lockfile, store_root: &Path) -> anyhow::Result<Vec<VerifyProblem>> {
    let store = Store::open(store_root)?;
    let mut problems = Vec::new();
    for step in &lock.steps {
        let problem = |message: String| VerifyProblem { step: step.id.clone(), message };
        let Some(manifest) = store.manifest(&step.key) else {
            problems
                .push(problem(format!("not in the store {} (never run here, or collected)", store.root().display())));
            continue;
        };
        for (name, recorded) in &step.outputs {
            match manifest.outputs.get(name) {
                Some(m) if &m.hash == recorded => {}
                Some(m) => problems.push(problem(format!(
                    "output `{name}`: the store's manifest says {}, the lockfile {recorded}",
                    m.hash
                ))),
                None => problems.push(problem(format!("output `{name}` is missing from the store"))),
            }
        }
        for (name, recorded, actual) in store.verify(&manifest)? {
            problems.push(problem(format!("output `{name}` was modified on disk: recorded {recorded}, now {actual}")));
        }
    }
    Ok(problems)
}

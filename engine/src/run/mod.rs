//! Running workflows: plan against the store, execute, record the lockfile; and the store's upkeep (`gc`).

pub mod brief;
mod diff;
mod executor;
mod json_diff;
pub mod lockfile;
pub mod plan;
mod ranks;
pub mod roots;
pub mod slurm;
mod step;
pub mod store;

pub use diff::{diff, metric_changes_all, MetricChange};
pub use executor::{previous_lockfile, run, Outcome, RunOptions, RunReport, StepResult};
pub use lockfile::{LockedStep, Lockfile};
pub use plan::{plan, Plan, PlanEntry, PlanOptions, Status};
pub use step::{run_one, StepDone, StepOptions};
pub use store::{Manifest, Store, Stored};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::graph::{compute_keys, Dag, KeyEnv};
use crate::workflow::Workflow;

/// `path` made absolute with links resolved, as the store's records name workflows and lockfiles; a file that does
/// not exist yet (a lockfile before its first run) by its resolved directory.
pub(crate) fn absolute_path(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    match (path.parent().and_then(|d| d.canonicalize().ok()), path.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf()),
    }
}

/// What `gc` removed.
#[derive(Debug, Default)]
pub struct GcReport {
    /// The workflows whose runs in this store are kept (absolute paths).
    pub roots: Vec<PathBuf>,
    pub kept: usize,
    pub removed: usize,
    /// Checkpoints and shards of unfinished steps no root needs any more.
    pub removed_unfinished: usize,
    pub bytes_freed: u64,
}

/// Drops every store entry that no root of *this store* references (see [`roots`]), and the checkpoints and shards
/// of steps no root will run again. With `dry_run`, only counts.
pub fn gc(store_root: &Path, dry_run: bool) -> anyhow::Result<GcReport> {
    let store = Store::open(store_root)?;
    let _lock = store.lock()?;
    let mut report = GcReport::default();
    let mut live = BTreeSet::new();
    let mut resumable = BTreeSet::new();
    for root in roots::all(&store)? {
        live.extend(root.lock.steps.into_iter().map(|s| s.key));
        resumable.extend(root.pending);
        report.roots.push(root.workflow);
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
    // Checkpoints and shards of the steps a root's last run did not complete are what its next run resumes from;
    // any other (the workflow or a parameter changed since) would stay forever.
    for key in store.unfinished_keys()? {
        if !live.contains(&key) && !resumable.contains(&key) {
            report.removed_unfinished += 1;
            report.bytes_freed += if dry_run { 0 } else { store.remove_unfinished(&key)? };
        }
    }
    // A failure is worth reporting only while its step is still to be run again.
    if !dry_run {
        store.forget_failures_except(&resumable);
    }
    Ok(report)
}

/// One problem `verify` found.
#[derive(Debug, PartialEq)]
pub struct VerifyProblem {
    pub step: String,
    pub message: String,
}

/// Checks a workflow's outputs in the store, found by the keys the workflow (with its parameters) gives now:
/// each must be there, whole, and hash to what was committed; where `lock` (a lockfile to compare with) records the
/// same key, its output hashes must agree too. An empty list means all is well.
pub fn verify(wf: &Workflow, store: &Store, lock: Option<&Lockfile>) -> anyhow::Result<Verified> {
    let dag = Dag::build(wf).map_err(|d| anyhow::anyhow!("{d}"))?;
    let keys = compute_keys(wf, &dag, &KeyEnv::current())?;
    let workflow = wf.path.display();
    let mut problems = Vec::new();
    let mut compared = 0;
    for &i in dag.order() {
        let (key, _) = &keys[i];
        let id = &wf.steps[i].id;
        let problem = |message: String| VerifyProblem { step: id.clone(), message };
        let manifest = match store.stored(key) {
            Stored::Complete(m) => m,
            Stored::Absent => {
                problems.push(problem(format!(
                    "not in the store {} (key {}: never run here with these parameters, or collected); `anbiq run \
                     {workflow}` computes it",
                    store.root().display(),
                    key.short()
                )));
                continue;
            }
            Stored::Damaged(_, damage) => {
                problems.push(problem(format!(
                    "{damage} in {}; `anbiq run {workflow}` runs the step again",
                    store.step_dir(key).display()
                )));
                continue;
            }
        };
        let modified = store.verify(&manifest);
        let any_modified = !modified.is_empty();
        for message in modified {
            problems.push(problem(format!("{message} in {}", store.step_dir(key).display())));
        }
        if any_modified {
            problems.push(problem(format!("`anbiq run {workflow} --force {id}` writes it again")));
        }
        let Some(locked) = lock.and_then(|l| l.step(id)) else { continue };
        if &locked.key != key {
            problems.push(problem(format!(
                "the lockfile records key {} for this step, the workflow now gives {} (it describes another run: \
                 `anbiq plan {workflow}` says what changed)",
                locked.key.short(),
                key.short()
            )));
            continue;
        }
        compared += 1;
        for (name, recorded) in &locked.outputs {
            match manifest.outputs.get(name) {
                Some(m) if &m.hash == recorded => {}
                Some(m) => problems.push(problem(format!(
                    "output `{name}`: the lockfile records {recorded}, the store holds {} for the same key (a \
                     non-deterministic step, or another machine computing other bits)",
                    m.hash
                ))),
                None => problems.push(problem(format!("output `{name}` of the lockfile is not in the store's entry"))),
            }
        }
    }
    Ok(Verified { problems, compared_with_lockfile: compared })
}

/// What `verify` found.
#[derive(Debug)]
pub struct Verified {
    /// Empty when all is well.
    pub problems: Vec<VerifyProblem>,
    /// Steps whose output hashes were compared with the lockfile's (same key).
    pub compared_with_lockfile: usize,
}

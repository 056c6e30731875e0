//! One step of a workflow against the store: what `anbiq run-step` does, and so what every Slurm job runs — and
//! every rank of a data-parallel step (its rank and rendezvous in the environment, [`Rendezvous::from_env`]).
//!
//! It holds the store's lock shared (many jobs commit at once; a local `anbiq run` is kept out), refuses when an
//! input is missing from the store or the workflow no longer gives the step the key it was submitted with, and
//! commits the step's outputs (or, with `shard`, one shard of a sharded step) atomically. It does not write the
//! lockfile: the submitting `anbiq run` (or `anbiq status`) does.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

use super::executor::{install_panic_hook, run_shard, run_step, step_threads, Shared};
use super::plan::{plan, PlanOptions};
use super::store::{Manifest, Store};
use crate::graph::{Dag, KeyEnv};
use crate::nn::distributed::Rendezvous;
use crate::steps::Progress;
use crate::workflow::Workflow;

pub struct StepOptions {
    pub store: PathBuf,
    pub step: String,
    /// Compute only this shard of a sharded step (a job array's task).
    pub shard: Option<usize>,
    /// The key the step had when it was submitted: refuse if the workflow now gives another.
    pub expect_key: Option<String>,
    /// Run even if the step's outputs are already in the store.
    pub force: bool,
    pub progress: Progress,
}

/// What `run_one` did.
#[derive(Debug)]
pub enum StepDone {
    Ran(Manifest),
    /// The outputs were already in the store (another job, or an earlier run).
    AlreadyStored(Manifest),
    Shard {
        index: usize,
        count: usize,
    },
}

pub fn run_one(wf: &Workflow, options: &StepOptions) -> anyhow::Result<StepDone> {
    let dag = Dag::build(wf).map_err(|d| anyhow::anyhow!("{d}"))?;
    let store = Store::open(&options.store)?;
    // A rank the local executor launched works for it, under the lock it holds.
    let rendezvous = Rendezvous::from_env()?;
    let launched = rendezvous.is_some() && std::env::var_os(super::ranks::PARENT_HOLDS_LOCK).is_some();
    let _lock = if launched { None } else { Some(store.lock_shared()?) };
    let env = KeyEnv::current();
    let index = wf.require_step(&options.step).map_err(anyhow::Error::msg)?;
    let only = PlanOptions { force: Vec::new(), only: Some(options.step.clone()) };
    let plan = plan(wf, &dag, &store, None, &env, &only)?;
    let entry = plan.entry(index).context("the step is planned")?;
    if let Some(expected) = &options.expect_key {
        if &entry.key.0 != expected {
            bail!(
                "step `{}` now has key {}, not {} as when it was submitted: the workflow, a file it reads or anbiq \
                 changed since; submit it again",
                entry.id,
                entry.key.short(),
                &expected[..12.min(expected.len())]
            );
        }
    }
    for d in dag.dependencies(index) {
        let upstream = plan.entry(d).context("dependencies are planned")?;
        if !store.is_complete(&upstream.key) {
            bail!(
                "input step `{}` (key {}) is not in the store {}: run it first",
                upstream.id,
                upstream.key.short(),
                store.root().display()
            );
        }
    }
    if options.shard.is_none() && !options.force {
        if let Some(m) = store.complete(&entry.key) {
            return Ok(StepDone::AlreadyStored(m));
        }
    }
    let device = crate::nn::runtime::device::resolve(&wf.device)?;
    crate::nn::runtime::determinism::set_deterministic(true);
    install_panic_hook();
    let ctx = Shared {
        wf,
        dag: &dag,
        plan: &plan,
        store: &store,
        device,
        threads: step_threads(wf),
        progress: &options.progress,
        overrides: &[],
        rank_binary: None,
        rendezvous,
    };
    match options.shard {
        Some(i) => {
            run_shard(&ctx, entry, i, device)?;
            Ok(StepDone::Shard { index: i, count: wf.steps[index].step.shards() })
        }
        None => Ok(StepDone::Ran(run_step(&ctx, entry, true)?)),
    }
}

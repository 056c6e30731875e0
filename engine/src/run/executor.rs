//! Runs a plan: independent steps in parallel, each on its own thread, outputs committed to the store atomically,
//! the lockfile written at the end. A failed step stops only its descendants; other branches finish.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{mpsc, Once};
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use super::lockfile::{LockedStep, Lockfile};
use super::plan::{plan, Plan, PlanEntry, PlanOptions, Status};
use super::store::{Manifest, Store};
use crate::graph::{Dag, KeyEnv};
use crate::steps::{Progress, ResolvedInput, StepContext};
use crate::workflow::Workflow;

pub struct RunOptions {
    /// Steps that may run at once.
    pub jobs: usize,
    pub store: PathBuf,
    pub plan: PlanOptions,
    pub progress: Progress,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: 1,
            store: PathBuf::from(".anbiq"),
            plan: PlanOptions::default(),
            progress: Progress::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Cached,
    Ran {
        seconds: f64,
    },
    Failed {
        error: String,
    },
    /// Not run because a step it needs failed.
    Skipped {
        because: String,
    },
    NotSelected,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    pub id: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug)]
pub struct RunReport {
    pub plan: Plan,
    /// In topological order.
    pub results: Vec<StepResult>,
    pub lockfile: PathBuf,
}

impl RunReport {
    pub fn failures(&self) -> impl Iterator<Item = &StepResult> {
        self.results.iter().filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
    }

    /// Ids of the steps that actually ran, in order.
    pub fn ran(&self) -> Vec<&str> {
        self.results.iter().filter(|r| matches!(r.outcome, Outcome::Ran { .. })).map(|r| r.id.as_str()).collect()
    }
}

/// Plans and runs a workflow.
pub fn run(wf: &Workflow, options: &RunOptions) -> anyhow::Result<RunReport> {
    let dag = Dag::build(wf).map_err(|d| anyhow::anyhow!("{d}"))?;
    let store = Store::open(&options.store)?;
    let _lock = store.lock()?;
    let env = KeyEnv::current();
    let lockfile_path = wf.lockfile_path();
    let previous = Lockfile::read(&lockfile_path)?;
    let plan = plan(wf, &dag, &store, previous.as_ref(), &env, &options.plan)?;
    let device_name = wf.device.clone();
    let jobs = options.jobs.max(1);
    // The thread count can change floating-point reduction order, so it must not depend on --jobs: the workflow's
    // `threads`, else every core. It is recorded per step in the lockfile.
    let threads = wf.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));

    let mut outcomes: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut manifests: BTreeMap<usize, Manifest> = BTreeMap::new();
    for e in &plan.entries {
        match e.status {
            Status::Cached => {
                let m = store.manifest(&e.key).context("cached step lost its manifest")?;
                manifests.insert(e.index, m);
                outcomes.insert(e.index, Outcome::Cached);
            }
            Status::NotSelected => {
                outcomes.insert(e.index, Outcome::NotSelected);
            }
            Status::Run(_) => {}
        }
    }
    if plan.to_run().next().is_some() {
        let device = crate::nn::device::resolve(&device_name)?;
        crate::nn::determinism::set_deterministic(true);
        install_panic_hook();
        let ctx = Shared { wf, dag: &dag, plan: &plan, store: &store, device, threads, progress: &options.progress };
        schedule(&ctx, jobs, &mut outcomes, &mut manifests);
    }

    // The lockfile describes the newest outputs of each step; steps that did not complete keep their old entry.
    let mut lock = Lockfile::new(&wf.name, wf.seed, &env);
    for e in &plan.entries {
        if let Some(m) = manifests.get(&e.index) {
            lock.steps.push(LockedStep::new(&e.id, &e.key, &e.ingredients, m));
        } else if let Some(old) = previous.as_ref().and_then(|p| p.step(&e.id)) {
            lock.steps.push(old.clone());
        }
    }
    if previous.as_ref() != Some(&lock) {
        lock.write(&lockfile_path)?;
    }
    store.add_root(&lockfile_path)?;

    let results = plan
        .entries
        .iter()
        .map(|e| StepResult {
            id: e.id.clone(),
            outcome: outcomes.get(&e.index).cloned().unwrap_or(Outcome::NotSelected),
        })
        .collect();
    Ok(RunReport { plan, results, lockfile: lockfile_path })
}

/// What every worker reads.
struct Shared<'a> {
    wf: &'a Workflow,
    dag: &'a Dag,
    plan: &'a Plan,
    store: &'a Store,
    device: tch::Device,
    threads: usize,
    progress: &'a Progress,
}

/// Runs every `Run` entry once its dependencies are done, at most `jobs` at a time.
fn schedule(
    ctx: &Shared,
    jobs: usize,
    outcomes: &mut BTreeMap<usize, Outcome>,
    manifests: &mut BTreeMap<usize, Manifest>,
) {
    let pending: Vec<&PlanEntry> = ctx.plan.to_run().collect();
    let mut waiting: Vec<&PlanEntry> = pending.clone();
    let (tx, rx) = mpsc::channel::<(usize, anyhow::Result<Manifest>, f64)>();
    std::thread::scope(|scope| {
        let mut running = 0usize;
        loop {
            // Skip whatever depends on a failure; start whatever is ready.
            let mut still_waiting = Vec::new();
            for e in waiting.drain(..) {
                let deps = ctx.dag.dependencies(e.index);
                if let Some(bad) = deps
                    .iter()
                    .find(|d| matches!(outcomes.get(d), Some(Outcome::Failed { .. } | Outcome::Skipped { .. })))
                {
                    let because = format!("`{}` did not complete", ctx.wf.steps[*bad].id);
                    tracing::warn!(step = %e.id, "skipped: {because}");
                    outcomes.insert(e.index, Outcome::Skipped { because });
                } else if running < jobs && deps.iter().all(|d| manifests.contains_key(d)) {
                    running += 1;
                    let tx = tx.clone();
                    let e: &PlanEntry = e;
                    std::thread::Builder::new()
                        .name(format!("step-{}", e.id))
                        .spawn_scoped(scope, move || {
                            let start = Instant::now();
                            let result = run_step(ctx, e);
                            let _ = tx.send((e.index, result, start.elapsed().as_secs_f64()));
                        })
                        .expect("spawning a step thread");
                } else {
                    still_waiting.push(e);
                }
            }
            waiting = still_waiting;
            if running == 0 {
                break;
            }
            let (index, result, seconds) = rx.recv().expect("workers send before exiting");
            running -= 1;
            let id = &ctx.wf.steps[index].id;
            match result {
                Ok(m) => {
                    tracing::info!(step = %id, "done in {seconds:.2}s");
                    outcomes.insert(index, Outcome::Ran { seconds });
                    manifests.insert(index, m);
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    tracing::error!(step = %id, "failed: {error}");
                    outcomes.insert(index, Outcome::Failed { error });
                }
            }
        }
    });
}

/// Runs one step in a temporary directory and commits it; the temporary directory is removed on failure.
fn run_step(ctx: &Shared, entry: &PlanEntry) -> anyhow::Result<Manifest> {
    let decl = &ctx.wf.steps[entry.index];
    tracing::info!(step = %decl.id, kind = decl.kind, key = entry.key.short(), "running");
    tch::set_num_threads(ctx.threads as i32);
    let mut inputs = BTreeMap::new();
    for input in decl.step.inputs() {
        let j = ctx.wf.step_index(&input.reference.step).context("references are checked at load")?;
        let output =
            ctx.wf.resolve_output(j, input.reference.output.as_deref()).context("outputs are checked at load")?;
        let upstream = ctx.plan.entry(j).context("every step is planned")?;
        let dir = ctx.store.step_dir(&upstream.key).join(&output.name);
        inputs.insert(input.role, ResolvedInput { label: input.reference.to_string(), kind: output.kind, dir });
    }
    let tmp = ctx.store.begin(&entry.key)?;
    let start = Instant::now();
    let mut step_ctx = StepContext::new(
        decl.id.clone(),
        entry.ingredients.seed,
        ctx.device,
        ctx.threads,
        ctx.progress.clone(),
        inputs,
        tmp.clone(),
        ctx.store.root().to_path_buf(),
    )
    .with_checkpoints(ctx.store.checkpoint_dir(&entry.key));
    let result = catch_panics(|| decl.step.run(&mut step_ctx));
    let result = result.and_then(|()| {
        let manifest = Manifest {
            key: entry.key.clone(),
            step: decl.id.clone(),
            kind: decl.kind.to_string(),
            outputs: BTreeMap::new(),
            metrics: step_ctx.into_metrics(),
            seconds: start.elapsed().as_secs_f64(),
            device: format!("{:?}", ctx.device).to_lowercase(),
            threads: ctx.threads,
        };
        let declared: Vec<_> = decl.step.outputs().into_iter().map(|o| (o.name, o.kind)).collect();
        ctx.store.commit(&tmp, manifest, &declared)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.with_context(|| format!("step `{}` ({})", decl.id, decl.kind))
}

thread_local! {
    static IN_STEP: Cell<bool> = const { Cell::new(false) };
}

/// libtorch errors surface as panics in tch's non-`f_` methods: inside a step they become that step's error.
fn catch_panics<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    IN_STEP.with(|s| s.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    IN_STEP.with(|s| s.set(false));
    match result {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            // libtorch messages carry a long C++ backtrace after the first lines; keep the part a user can act on.
            let msg: String =
                msg.lines().take_while(|l| !l.starts_with("Exception raised from")).collect::<Vec<_>>().join("\n");
            Err(anyhow::anyhow!("{}", msg.trim()))
        }
    }
}

/// Panics inside steps are reported as step errors, so the default hook's message would only be noise there.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_STEP.with(Cell::get) {
                tracing::debug!("panic inside a step: {info}");
            } else {
                default(info);
            }
        }));
    });
}

//! Runs a plan: independent steps in parallel, each on its own thread, outputs committed to the store atomically,
//! the lockfile written at the end. A failed step stops only its descendants; other branches finish.
//!
//! [`run_step`] (one step, against the store) is shared with `anbiq run-step`, what each Slurm job runs.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, Once};
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use super::lockfile::{LockedStep, Lockfile};
use super::plan::{plan, Plan, PlanEntry, PlanOptions, Status};
use super::roots;
use super::store::{Manifest, Store};
use crate::failpoint;
use crate::graph::{Dag, KeyEnv};
use crate::nn::distributed::{ProcessGroup, Rendezvous};
use crate::steps::{Progress, ResolvedInput, StepContext};
use crate::workflow::{Override, StepDecl, Workflow};

pub struct RunOptions {
    /// Steps that may run at once.
    pub jobs: usize,
    /// The `--set` overrides the workflow was loaded with: a data-parallel step's rank processes load it alike.
    pub overrides: Vec<Override>,
    /// The anbiq binary a data-parallel step's ranks run; `None`: this program when it is anbiq, else `ANBIQ_EXE`.
    pub rank_binary: Option<PathBuf>,
    pub store: PathBuf,
    /// Where to write the lockfile; `None`: beside the workflow ([`Workflow::lockfile_path`]).
    pub lockfile: Option<PathBuf>,
    pub plan: PlanOptions,
    pub progress: Progress,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: 1,
            overrides: Vec::new(),
            rank_binary: None,
            store: PathBuf::from(".anbiq"),
            lockfile: None,
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
    let lockfile_path = options.lockfile.clone().unwrap_or_else(|| wf.lockfile_path());
    let recorded = roots::read(&store, wf)?;
    let previous = previous_lockfile(recorded.as_ref(), &lockfile_path)?;
    let plan = plan(wf, &dag, &store, previous.as_ref(), &env, &options.plan)?;
    let device_name = wf.device.clone();
    let jobs = options.jobs.max(1);
    let threads = step_threads(wf);

    let mut outcomes: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut manifests: BTreeMap<usize, Manifest> = BTreeMap::new();
    for e in &plan.entries {
        match e.status {
            Status::Cached => {
                manifests.insert(e.index, e.cached.clone().context("planning keeps a cached step's manifest")?);
                outcomes.insert(e.index, Outcome::Cached);
            }
            Status::NotSelected => {
                outcomes.insert(e.index, Outcome::NotSelected);
            }
            Status::Run(_) => {}
        }
    }
    if plan.to_run().next().is_some() {
        // Recorded before anything runs, so that `gc` keeps the checkpoints of an interrupted run for its resumption.
        let pending = plan.to_run().map(|e| e.key.clone()).collect();
        let lock = recorded.clone().unwrap_or_else(|| Lockfile::new(&wf.name, wf.seed, roots::params_of(wf), &env));
        roots::write(&store, wf, &lock, pending)?;
        let device = crate::nn::runtime::device::resolve(&device_name)?;
        crate::nn::runtime::determinism::set_deterministic(true);
        install_panic_hook();
        let ctx = Shared {
            wf,
            dag: &dag,
            plan: &plan,
            store: &store,
            device,
            threads,
            progress: &options.progress,
            overrides: &options.overrides,
            rank_binary: options.rank_binary.as_deref(),
            rendezvous: None,
        };
        schedule(&ctx, jobs, &mut outcomes, &mut manifests);
    }

    write_lockfile(wf, &plan, &manifests, recorded.as_ref(), &env, &store, &lockfile_path)?;

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

/// libtorch threads per step. The thread count can change floating-point reduction order, so it must not depend on
/// --jobs: the workflow's `threads`, else every core. It is recorded per step in the lockfile.
pub(crate) fn step_threads(wf: &Workflow) -> usize {
    wf.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// What `plan` compares with to say why a step must run: this store's record of the workflow's last run with these
/// parameters, else the lockfile at `path` (e.g. one committed with the workflow).
pub fn previous_lockfile(recorded: Option<&Lockfile>, path: &Path) -> anyhow::Result<Option<Lockfile>> {
    match recorded {
        Some(lock) => Ok(Some(lock.clone())),
        None => Lockfile::read(path),
    }
}

/// Writes the lockfile to `path` and records it as the workflow's root in the store, each only if it changed. It
/// describes the newest outputs of each step (`manifests`, by step index); steps that did not complete keep their
/// entry from `recorded`, this store's record of the last run (never another store's).
pub(crate) fn write_lockfile(
    wf: &Workflow,
    plan: &Plan,
    manifests: &BTreeMap<usize, Manifest>,
    recorded: Option<&Lockfile>,
    env: &KeyEnv,
    store: &Store,
    path: &Path,
) -> anyhow::Result<PathBuf> {
    let mut lock = Lockfile::new(&wf.name, wf.seed, roots::params_of(wf), env);
    for e in &plan.entries {
        if let Some(m) = manifests.get(&e.index) {
            lock.steps.push(LockedStep::new(&e.id, &e.key, &e.ingredients, m));
        } else if let Some(old) = recorded.and_then(|p| p.step(&e.id)) {
            lock.steps.push(old.clone());
        }
    }
    let pending = plan.to_run().filter(|e| !manifests.contains_key(&e.index)).map(|e| e.key.clone()).collect();
    // The root first: once it is written, `gc` keeps these outputs whatever happens to the file at `path`.
    roots::write(store, wf, &lock, pending)?;
    lock.write(path)?;
    Ok(path.to_path_buf())
}

/// What every worker reads; also what `run-step` builds to run its one step.
pub(crate) struct Shared<'a> {
    pub wf: &'a Workflow,
    pub dag: &'a Dag,
    pub plan: &'a Plan,
    pub store: &'a Store,
    pub device: tch::Device,
    pub threads: usize,
    pub progress: &'a Progress,
    pub overrides: &'a [Override],
    pub rank_binary: Option<&'a Path>,
    /// Set when this process is one rank of a data-parallel step (`run-step` launched by [`super::ranks`] or
    /// `srun`): it runs that step as its rank.
    pub rendezvous: Option<Rendezvous>,
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
                            let result = run_step(ctx, e, true);
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
                    // Logged in full at debug level only: the run's summary prints it once.
                    tracing::debug!(step = %id, "failed: {e:#}");
                    let error = super::brief::without_backtrace(&format!("{e:#}"));
                    outcomes.insert(index, Outcome::Failed { error });
                }
            }
        }
    });
}

/// Runs one step in a temporary directory and commits it; the temporary directory is removed on failure.
///
/// A sharded step first computes its shards that are not in the store yet (in parallel, one GPU each when several
/// are visible) when `compute_shards`; otherwise (a Slurm assembly job, whose array computed them) missing shards
/// are an error. Then it assembles them into its outputs and drops the shards.
pub(crate) fn run_step(ctx: &Shared, entry: &PlanEntry, compute_shards: bool) -> anyhow::Result<Manifest> {
    let decl = &ctx.wf.steps[entry.index];
    // A rank of a data-parallel step says which it is in its errors; the launcher shows that rank's as the step's.
    let part = match (decl.step.distributed(), &ctx.rendezvous) {
        (Some(_), Some(at)) => format!(", rank {}", at.rank),
        _ => String::new(),
    };
    // A data-parallel step: launch its ranks, or, in one of them, join the others.
    let group = match (decl.step.distributed(), &ctx.rendezvous) {
        (Some(config), None) => {
            return super::ranks::launch(ctx, entry, config).map_err(|e| in_step(ctx.wf, decl, e, ""));
        }
        (Some(config), Some(at)) => Some(join_group(ctx, config, at).map_err(|e| in_step(ctx.wf, decl, e, &part))?),
        (None, _) => None,
    };
    let primary = group.as_ref().is_none_or(|g| g.is_root());
    // The ranks share the step's cores.
    let threads = group.as_ref().map_or(ctx.threads, |g| (ctx.threads / g.world).max(1));
    tracing::info!(step = %decl.id, kind = decl.kind, key = entry.key.short(), "running");
    tch::set_num_threads(threads as i32);
    let count = decl.step.shards();
    let shards = if count > 1 {
        // Its errors already say which step and shard.
        match ensure_shards(ctx, entry, compute_shards) {
            Ok(dirs) => Some(dirs),
            Err(e) => {
                ctx.store.record_failure(&entry.key, &super::brief::without_backtrace(&format!("{e:#}")));
                return Err(e);
            }
        }
    } else {
        None
    };
    let tmp = ctx.store.begin(&entry.key)?;
    let start = Instant::now();
    let mut step_ctx = step_context(ctx, entry, tmp.clone(), ctx.device)?;
    step_ctx.threads = threads;
    step_ctx.group = group.map(std::sync::Arc::new);
    let result = catch_panics(|| match &shards {
        Some(dirs) => decl.step.assemble(&mut step_ctx, dirs),
        None => decl.step.run(&mut step_ctx),
    });
    let result = result.and_then(|()| {
        let records = step_ctx.into_records();
        let manifest = Manifest {
            key: entry.key.clone(),
            step: decl.id.clone(),
            kind: decl.kind.to_string(),
            outputs: BTreeMap::new(),
            metrics: records.metrics,
            timings: records.timings,
            seconds: start.elapsed().as_secs_f64(),
            device: format!("{:?}", ctx.device).to_lowercase(),
            threads,
        };
        let declared: Vec<_> = decl.step.outputs().into_iter().map(|o| (o.name, o.kind)).collect();
        if primary {
            ctx.store.commit(&tmp, manifest, &declared)
        } else {
            // The other ranks computed the same step; rank 0 commits it.
            ctx.store.discard(&tmp);
            Ok(manifest)
        }
    });
    if let Err(e) = &result {
        ctx.store.discard(&tmp);
        if !crate::interrupt::requested() {
            ctx.store.record_failure(&entry.key, &super::brief::without_backtrace(&format!("{e:#}")));
        }
    } else {
        ctx.store.clear_failure(&entry.key);
        if shards.is_some() {
            ctx.store.remove_shards(&entry.key)?;
        }
        failpoint::reach(|| format!("committed:{}", decl.id));
    }
    result.map_err(|e| in_step(ctx.wf, decl, e, &part))
}

/// Joins the process group of a data-parallel step as the rank `at` describes.
fn join_group(
    ctx: &Shared,
    config: &crate::nn::distributed::DistributedConfig,
    at: &Rendezvous,
) -> anyhow::Result<ProcessGroup> {
    config.check_device(ctx.device)?;
    anyhow::ensure!(
        at.world == config.ranks,
        "field `distributed.ranks`: the step asks for {} ranks but was launched as {}",
        config.ranks,
        at.world
    );
    ProcessGroup::join(at, config.timeout())
}

/// A step's error, said where in the workflow it is: at the field it names (errors that begin ``field `loss.kd`:``
/// point there), else at the step.
fn in_step(wf: &Workflow, decl: &StepDecl, error: anyhow::Error, part: &str) -> anyhow::Error {
    let field = error.chain().find_map(|e| {
        let text = e.to_string();
        text.strip_prefix("field `").and_then(|rest| rest.split_once('`')).map(|(field, _)| field.to_string())
    });
    let span = field.and_then(|f| crate::steps::field_span(&decl.node, &f)).unwrap_or(decl.span);
    error.context(format!("{}:{span}: step `{}` ({}){part}", wf.path.display(), decl.id, decl.kind))
}

/// Computes shard `index` of a sharded step on `device` and commits it to the store's shards area.
pub(crate) fn run_shard(ctx: &Shared, entry: &PlanEntry, index: usize, device: tch::Device) -> anyhow::Result<()> {
    let decl = &ctx.wf.steps[entry.index];
    let count = decl.step.shards();
    anyhow::ensure!(index < count, "step `{}` has {count} shards: there is no shard {index}", decl.id);
    tracing::info!(step = %decl.id, key = entry.key.short(), "running shard {index} of {count}");
    tch::set_num_threads(ctx.threads as i32);
    let tmp = ctx.store.begin(&entry.key)?;
    let mut step_ctx = step_context(ctx, entry, tmp.clone(), device)?;
    let result = catch_panics(|| decl.step.run_shard(&mut step_ctx, index, count, &tmp))
        .and_then(|()| ctx.store.commit_shard(&tmp, &entry.key, count, index).map(drop));
    if result.is_err() {
        ctx.store.discard(&tmp);
    } else {
        failpoint::reach(|| format!("shard:{}:{index}", decl.id));
    }
    result.map_err(|e| in_step(ctx.wf, decl, e, &format!(", shard {index} of {count}")))
}

/// The directories of every shard of a sharded step, computing the missing ones first if `compute`.
fn ensure_shards(ctx: &Shared, entry: &PlanEntry, compute: bool) -> anyhow::Result<Vec<PathBuf>> {
    let count = ctx.wf.steps[entry.index].step.shards();
    let missing = ctx.store.missing_shards(&entry.key, count);
    if !missing.is_empty() && !compute {
        let list: Vec<String> = missing.iter().map(usize::to_string).collect();
        let error = anyhow::anyhow!(
            "shard(s) {} of {count} are not in the store (their array tasks did not complete)",
            list.join(", ")
        );
        return Err(in_step(ctx.wf, &ctx.wf.steps[entry.index], error, ""));
    }
    if !missing.is_empty() {
        // One worker per GPU when several are visible, else as many as there are cores (they share libtorch's pool).
        let gpus = match ctx.device {
            tch::Device::Cuda(_) => tch::Cuda::device_count().max(0) as usize,
            _ => 0,
        };
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let workers = if gpus > 1 { gpus } else { cores }.min(missing.len());
        let next = AtomicUsize::new(0);
        let errors = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for w in 0..workers {
                let (next, errors, missing) = (&next, &errors, &missing);
                let device = if gpus > 1 { tch::Device::Cuda(w) } else { ctx.device };
                std::thread::Builder::new()
                    .name(format!("shard-{w}"))
                    .spawn_scoped(scope, move || {
                        while let Some(&index) = missing.get(next.fetch_add(1, Ordering::Relaxed)) {
                            if let Err(e) = run_shard(ctx, entry, index, device) {
                                errors.lock().expect("no panics while held").push(e);
                            }
                        }
                    })
                    .expect("spawning a shard thread");
            }
        });
        if let Some(e) = errors.into_inner().expect("threads joined").into_iter().next() {
            return Err(e);
        }
    }
    Ok((0..count).map(|i| ctx.store.shard_dir(&entry.key, count, i)).collect())
}

/// The inputs' directories in the store and the step's environment, writing into `out_dir`.
fn step_context(ctx: &Shared, entry: &PlanEntry, out_dir: PathBuf, device: tch::Device) -> anyhow::Result<StepContext> {
    let decl = &ctx.wf.steps[entry.index];
    let mut inputs = BTreeMap::new();
    for input in decl.step.inputs() {
        let j = ctx.wf.step_index(&input.reference.step).context("references are checked at load")?;
        let output =
            ctx.wf.resolve_output(j, input.reference.output.as_deref()).context("outputs are checked at load")?;
        let upstream = ctx.plan.entry(j).context("every step is planned")?;
        let dir = ctx.store.step_dir(&upstream.key).join(&output.name);
        inputs.insert(input.role, ResolvedInput { label: input.reference.to_string(), kind: output.kind, dir });
    }
    Ok(StepContext::new(
        decl.id.clone(),
        entry.ingredients.seed,
        device,
        ctx.threads,
        ctx.progress.clone(),
        inputs,
        out_dir,
        ctx.store.root().to_path_buf(),
    )
    .with_kind(decl.kind)
    .with_checkpoints(ctx.store.checkpoint_dir(&entry.key)))
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
            Err(anyhow::anyhow!("{}", super::brief::without_backtrace(msg).trim()))
        }
    }
}

/// Panics inside steps are reported as step errors, so the default hook's message would only be noise there.
pub(crate) fn install_panic_hook() {
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

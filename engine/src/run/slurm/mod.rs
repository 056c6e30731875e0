//! The Slurm executor: every step that must run becomes one `sbatch` job running `anbiq run-step` against the
//! shared store, with `--dependency=afterok:…` mirroring the DAG. A sharded step (`infer` with `shards: N`) becomes
//! a job array computing the shards plus one job assembling them.
//!
//! The store must be on a filesystem every node mounts at the same path (NFS, Lustre, GPFS, …): jobs read their
//! inputs from it and commit their outputs into it. [`submit`] refuses a store under a node-local temp directory.
//!
//! ```text
//! <store>/slurm/<lockfile stem>-<hash>/
//!   jobs.json             the last submission: step → job id (what `anbiq status` and `anbiq cancel` read)
//!   scripts/<step>.sh     the batch scripts as submitted
//!   logs/<step>-<job>.log each job's stdout and stderr (`<step>-<array job>_<task>.log` for shards)
//! ```
//! Job states come from `scontrol show job -o`, which works without accounting; a job Slurm has forgotten
//! (`MinJobAge`) is judged by the store: its step is done iff its outputs are there.

pub(crate) mod scontrol;
mod script;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

pub use scontrol::{JobInfo, Phase};
pub use script::{array_spec, batch_script, dependency, resource_options, shell_quote, JobSpec};

use super::executor::{previous_lockfile, write_lockfile};
use super::plan::{plan, Plan, PlanOptions, Status};
use super::store::{write_atomic, Manifest, Store};
use super::{absolute_path, roots};
use super::{Outcome, RunReport, StepResult};
use crate::graph::{Dag, KeyEnv, StepKey};
use crate::workflow::{Override, Workflow};

pub struct SlurmOptions {
    pub store: PathBuf,
    /// Where to write the lockfile; `None`: beside the workflow.
    pub lockfile: Option<PathBuf>,
    pub plan: PlanOptions,
    /// The `--set` overrides, passed on to every job so that it loads the same workflow.
    pub overrides: Vec<Override>,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Extra `sbatch` arguments, given on its command line (they override the script's `#SBATCH` lines).
    pub sbatch_args: Vec<String>,
    /// Accept a store under a node-local temp directory (a single-node cluster, tests).
    pub allow_local_store: bool,
    /// How often [`wait`] asks Slurm for job states.
    pub poll: Duration,
    /// The `anbiq` binary the jobs run (default: this one).
    pub exe: Option<PathBuf>,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        SlurmOptions {
            store: PathBuf::from(".anbiq"),
            lockfile: None,
            plan: PlanOptions::default(),
            overrides: Vec::new(),
            partition: None,
            account: None,
            sbatch_args: Vec::new(),
            allow_local_store: false,
            poll: Duration::from_secs(2),
            exe: None,
        }
    }
}

/// What a job does for its step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the step (or, for a sharded step, assembles its shards).
    Step,
    /// The job array computing a sharded step's shards.
    Shards,
}

/// One submitted job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedJob {
    pub step: String,
    pub key: StepKey,
    pub job: String,
    pub role: Role,
    /// For a job array: the shard indices, in `--array` syntax.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<String>,
    /// The `--output` pattern (`%j`, `%A`, `%a` filled in by Slurm).
    pub log: PathBuf,
}

/// The jobs of a workflow's last submission, kept in the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub workflow: PathBuf,
    pub lockfile: PathBuf,
    /// Seconds since the epoch.
    pub submitted: u64,
    pub jobs: Vec<RecordedJob>,
}

/// What [`submit`] did.
pub struct Submission {
    pub plan: Plan,
    pub record: JobRecord,
    /// Where the record is kept.
    pub record_path: PathBuf,
    /// Jobs submitted now (the others in the record were still queued or running from an earlier submission).
    pub new_jobs: Vec<String>,
}

/// Paths under a node-local temp directory that Slurm jobs on other nodes cannot see: the directory, if `path`
/// (absolute, resolved) is under one of `candidates`.
pub fn node_local_dir(path: &Path, candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates.iter().find(|c| c.as_os_str().len() > 1 && path.starts_with(c)).cloned()
}

/// The usual node-local temp directories, resolved: /tmp, /var/tmp, /dev/shm, /run/user, $TMPDIR, $SLURM_TMPDIR.
pub fn node_local_candidates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/tmp", "/var/tmp", "/dev/shm", "/run/user"].iter().map(PathBuf::from).collect();
    for var in ["TMPDIR", "SLURM_TMPDIR", "TMP", "TEMP"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            dirs.push(PathBuf::from(v));
        }
    }
    dirs.into_iter().map(|d| d.canonicalize().unwrap_or(d)).collect()
}

/// `<store>/slurm/<lockfile stem>-<16 hex of its absolute path>`: one directory per workflow file.
pub fn record_dir(store: &Store, wf: &Workflow) -> PathBuf {
    let lockfile = absolute_path(&wf.lockfile_path());
    let stem = lockfile.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "workflow".into());
    let hash = blake3::hash(lockfile.to_string_lossy().as_bytes()).to_hex();
    store.root().join("slurm").join(format!("{stem}-{}", &hash[..16]))
}

/// The record of the workflow's last submission, if any.
pub fn read_record(store: &Store, wf: &Workflow) -> anyhow::Result<Option<JobRecord>> {
    let path = record_dir(store, wf).join("jobs.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The step keys named in every job record in the store (what `gc` keeps besides the lockfiles' keys).
pub fn recorded_keys(store: &Store) -> anyhow::Result<BTreeSet<StepKey>> {
    let mut keys = BTreeSet::new();
    let Ok(dirs) = std::fs::read_dir(store.root().join("slurm")) else { return Ok(keys) };
    for dir in dirs {
        let path = dir?.path().join("jobs.json");
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let record: JobRecord = serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        keys.extend(record.jobs.into_iter().map(|j| j.key));
    }
    Ok(keys)
}

/// Opens the store for the Slurm executor: it must exist on a shared filesystem.
fn open_shared_store(options: &SlurmOptions) -> anyhow::Result<Store> {
    let store = Store::open(&options.store)?;
    if !options.allow_local_store {
        if let Some(dir) = node_local_dir(store.root(), &node_local_candidates()) {
            bail!(
                "the store {} is under {}, a node-local temp directory: Slurm jobs on other nodes would not see it. \
                 Put the store on a filesystem every node mounts (--store /shared/path or ANBIQ_STORE), or pass \
                 --allow-local-store on a single-node cluster",
                store.root().display(),
                dir.display()
            );
        }
    }
    Ok(store)
}

/// Plans the workflow and submits one job per step that must run (a job array plus an assembly job for a sharded
/// step), dependencies mirroring the DAG. Steps whose job from an earlier submission is still queued or running
/// are not submitted again: their jobs are depended upon.
pub fn submit(wf: &Workflow, options: &SlurmOptions) -> anyhow::Result<Submission> {
    let dag = Dag::build(wf).map_err(|d| anyhow::anyhow!("{d}"))?;
    let store = open_shared_store(options)?;
    if !scontrol::available() {
        bail!(
            "no Slurm controller answers `scontrol ping`: run on a cluster's login node (or start a test cluster with \
             scripts/slurm-dev.sh start)"
        );
    }
    let env = KeyEnv::current();
    let lockfile = options.lockfile.clone().unwrap_or_else(|| wf.lockfile_path());
    let recorded = roots::read(&store, wf)?;
    let previous = previous_lockfile(recorded.as_ref(), &lockfile)?;
    let plan = plan(wf, &dag, &store, previous.as_ref(), &env, &options.plan)?;
    let dir = record_dir(&store, wf);
    for sub in ["scripts", "logs"] {
        std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let old = read_record(&store, wf)?;
    let exe = match &options.exe {
        Some(e) => e.clone(),
        None => std::env::current_exe().context("finding the anbiq binary for the jobs")?,
    };
    let workdir = std::env::current_dir().context("reading the current directory")?;
    let workflow = absolute_path(&wf.path);

    let mut jobs: Vec<RecordedJob> = Vec::new();
    let mut new_jobs: Vec<String> = Vec::new();
    let mut final_job: BTreeMap<usize, String> = BTreeMap::new();
    let result = (|| -> anyhow::Result<()> {
        for e in plan.to_run() {
            let decl = &wf.steps[e.index];
            if let Some(active) = old.as_ref().map(|r| still_active(r, &e.id, &e.key)).transpose()?.flatten() {
                let step_job = active.iter().find(|j| j.role == Role::Step).expect("still_active keeps the step job");
                tracing::info!(step = %e.id, "already submitted as job {} (still queued or running)", step_job.job);
                final_job.insert(e.index, step_job.job.clone());
                jobs.extend(active);
                continue;
            }
            let after: Vec<String> =
                dag.dependencies(e.index).iter().filter_map(|d| final_job.get(d).cloned()).collect();
            let mut command: Vec<String> = vec![
                exe.to_string_lossy().into_owned(),
                "run-step".into(),
                workflow.to_string_lossy().into_owned(),
                "--store".into(),
                store.root().to_string_lossy().into_owned(),
                "--step".into(),
                e.id.clone(),
                "--key".into(),
                e.key.0.clone(),
            ];
            if options.plan.force.contains(&e.id) {
                command.push("--force".into());
            }
            for o in &options.overrides {
                command.push("--set".into());
                command.push(format!("{}={}", o.name, o.value));
            }
            let spec = |name: String, log: PathBuf, after: Vec<String>, array: Option<Vec<usize>>| JobSpec {
                name,
                comment: format!(
                    "anbiq: step `{}` ({}) of {}, key {}",
                    e.id,
                    decl.kind,
                    workflow.display(),
                    e.key.short()
                ),
                log,
                workdir: workdir.clone(),
                resources: decl.resources.clone(),
                partition: options.partition.clone(),
                account: options.account.clone(),
                after,
                array,
                tasks: decl.step.distributed().map(|d| d.ranks),
                command: command.clone(),
            };
            let mut step_after = after.clone();
            let count = decl.step.shards();
            if count > 1 {
                let missing = store.missing_shards(&e.key, count);
                if !missing.is_empty() {
                    let log = dir.join("logs").join(format!("{}-%A_%a.log", e.id));
                    let job =
                        spec(format!("anbiq:{}:{}:shards", wf.name, e.id), log.clone(), after, Some(missing.clone()));
                    let id = submit_one(&dir.join("scripts").join(format!("{}.shards.sh", e.id)), &job, options)?;
                    tracing::info!(step = %e.id, "submitted shards {} of {count} as job array {id}", array_spec(&missing));
                    new_jobs.push(id.clone());
                    jobs.push(RecordedJob {
                        step: e.id.clone(),
                        key: e.key.clone(),
                        job: id.clone(),
                        role: Role::Shards,
                        array: Some(array_spec(&missing)),
                        log,
                    });
                    step_after = vec![id];
                }
            }
            let log = dir.join("logs").join(format!("{}-%j.log", e.id));
            let job = spec(format!("anbiq:{}:{}", wf.name, e.id), log.clone(), step_after.clone(), None);
            let id = submit_one(&dir.join("scripts").join(format!("{}.sh", e.id)), &job, options)?;
            match dependency(&step_after) {
                Some(dep) => tracing::info!(step = %e.id, "submitted as job {id} ({dep})"),
                None => tracing::info!(step = %e.id, "submitted as job {id}"),
            }
            new_jobs.push(id.clone());
            jobs.push(RecordedJob {
                step: e.id.clone(),
                key: e.key.clone(),
                job: id.clone(),
                role: Role::Step,
                array: None,
                log,
            });
            final_job.insert(e.index, id);
        }
        Ok(())
    })();
    if let Err(e) = result {
        // Half a submission is worse than none: the jobs already queued would run without their dependants.
        let _ = scontrol::scancel(&new_jobs);
        return Err(e.context("submitting to Slurm (the jobs submitted so far were cancelled)"));
    }
    let record = JobRecord {
        workflow,
        lockfile: absolute_path(&lockfile),
        submitted: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        jobs,
    };
    let record_path = dir.join("jobs.json");
    write_atomic(&record_path, serde_json::to_string_pretty(&record)?.as_bytes())?;
    // Registered now, so that `gc` keeps what the jobs produce even before the lockfile names it.
    write_lockfile(wf, &plan, &cached_manifests(&plan, &store)?, recorded.as_ref(), &env, &store, &record.lockfile)?;
    Ok(Submission { plan, record, record_path, new_jobs })
}

fn submit_one(script_path: &Path, job: &JobSpec, options: &SlurmOptions) -> anyhow::Result<String> {
    write_atomic(script_path, batch_script(job).as_bytes())?;
    scontrol::sbatch(script_path, &options.sbatch_args)
}

/// The recorded jobs of `step` if its step job (same key) is still queued or running.
fn still_active(record: &JobRecord, step: &str, key: &StepKey) -> anyhow::Result<Option<Vec<RecordedJob>>> {
    let mine: Vec<RecordedJob> = record.jobs.iter().filter(|j| j.step == step && &j.key == key).cloned().collect();
    let Some(step_job) = mine.iter().find(|j| j.role == Role::Step) else { return Ok(None) };
    let active = scontrol::show_job(&step_job.job)?
        .is_some_and(|lines| lines.iter().all(|l| matches!(l.phase(), Phase::Waiting | Phase::Running)));
    Ok(active.then_some(mine))
}

/// Manifests of the plan's steps that are in the store, by step index.
fn cached_manifests(plan: &Plan, store: &Store) -> anyhow::Result<BTreeMap<usize, Manifest>> {
    let mut manifests = BTreeMap::new();
    for e in &plan.entries {
        if e.status == Status::NotSelected {
            continue;
        }
        if let Some(m) = store.complete(&e.key) {
            manifests.insert(e.index, m);
        }
    }
    Ok(manifests)
}

/// A step's jobs' state, summarised.
#[derive(Clone, Debug, PartialEq)]
pub struct StepState {
    pub phase: Phase,
    /// `RUNNING`, `PENDING (Dependency)`, `shards 2/4 done`, …
    pub text: String,
    /// For a failure: the failed job's log and its error lines.
    pub failure: Option<(String, PathBuf, String)>,
}

/// Asks Slurm about a step's jobs (`None` for a job Slurm no longer knows).
fn step_state(jobs: &[&RecordedJob]) -> anyhow::Result<Vec<(RecordedJob, Option<Vec<JobInfo>>)>> {
    jobs.iter().map(|j| Ok(((*j).clone(), scontrol::show_job(&j.job)?))).collect()
}

/// Decides a step's state from its jobs'. `done_in_store` settles jobs Slurm has forgotten.
fn summarise(jobs: &[(RecordedJob, Option<Vec<JobInfo>>)], done_in_store: bool) -> StepState {
    let failure_of = |job: &RecordedJob, info: &JobInfo| {
        let log = info.stdout.clone().unwrap_or_else(|| job.log.clone());
        let what = format!("job {} {} (exit {})", info.id, info.state, info.exit_code);
        (what, log.clone(), scontrol::log_error(&log))
    };
    let mut text = Vec::new();
    for (job, lines) in jobs {
        let Some(lines) = lines else {
            if job.role == Role::Step {
                return if done_in_store {
                    StepState { phase: Phase::Completed, text: "COMPLETED".into(), failure: None }
                } else {
                    let log = job.log.to_string_lossy().replace("%j", &job.job);
                    StepState {
                        phase: Phase::Failed,
                        text: "GONE".into(),
                        failure: Some((
                            format!("job {} is no longer known to Slurm and its outputs are not in the store", job.job),
                            PathBuf::from(&log),
                            scontrol::log_error(Path::new(&log)),
                        )),
                    }
                };
            }
            continue; // a forgotten shards array: its step job tells the rest
        };
        match job.role {
            Role::Shards => {
                if let Some(bad) = lines.iter().find(|l| l.phase() == Phase::Failed) {
                    return StepState {
                        phase: Phase::Failed,
                        text: format!("shard {} {}", bad.array_task.as_deref().unwrap_or("?"), bad.state),
                        failure: Some(failure_of(job, bad)),
                    };
                }
                if let Some(cancelled) = lines.iter().find(|l| l.phase() == Phase::DependencyFailed) {
                    return StepState {
                        phase: Phase::DependencyFailed,
                        text: format!("shards {}", cancelled.state),
                        failure: None,
                    };
                }
                let done = lines.iter().filter(|l| l.phase() == Phase::Completed).count();
                let running = lines.iter().filter(|l| l.phase() == Phase::Running).count();
                let total = job.array.as_deref().map(count_array).unwrap_or(lines.len());
                if done < total {
                    text.push(format!("shards {done}/{total} done, {running} running"));
                }
            }
            Role::Step => {
                let info = &lines[0];
                let phase = info.phase();
                if phase == Phase::Failed {
                    return StepState { phase, text: info.state.clone(), failure: Some(failure_of(job, info)) };
                }
                if phase == Phase::Waiting && !text.is_empty() {
                    return StepState { phase: Phase::Running, text: text.join(", "), failure: None };
                }
                let shown = match phase {
                    Phase::Waiting if !matches!(info.reason.as_str(), "" | "None") => {
                        format!("{} ({})", info.state, info.reason)
                    }
                    _ => info.state.clone(),
                };
                return StepState { phase, text: shown, failure: None };
            }
        }
    }
    StepState { phase: Phase::Waiting, text: text.join(", "), failure: None }
}

/// How many indices an `--array` spec like `0-2,5` names.
fn count_array(spec: &str) -> usize {
    spec.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap_or(0).saturating_sub(a.parse().unwrap_or(0)) + 1,
            None => 1,
        })
        .sum()
}

/// Waits for a submission's jobs, reporting progress, writing the lockfile as steps finish, cancelling the jobs of
/// a failed step's dependants. Returns when every job has finished, or at Ctrl-C (the jobs keep running).
pub fn wait(wf: &Workflow, submission: &Submission, options: &SlurmOptions) -> anyhow::Result<RunReport> {
    let dag = Dag::build(wf).map_err(|d| anyhow::anyhow!("{d}"))?;
    let store = Store::open(&options.store)?;
    let env = KeyEnv::current();
    let recorded = roots::read(&store, wf)?;
    let lockfile_path = &submission.record.lockfile;
    let plan = &submission.plan;
    let mut manifests = cached_manifests(plan, &store)?;
    let mut outcomes: BTreeMap<usize, Outcome> = BTreeMap::new();
    for e in &plan.entries {
        match e.status {
            Status::Cached => {
                outcomes.insert(e.index, Outcome::Cached);
            }
            Status::NotSelected => {
                outcomes.insert(e.index, Outcome::NotSelected);
            }
            Status::Run(_) => {}
        }
    }
    let to_run: Vec<(usize, String)> = plan.to_run().map(|e| (e.index, e.id.clone())).collect();
    let mut shown: BTreeMap<usize, String> = BTreeMap::new();
    let started = Instant::now();
    loop {
        let mut changed = false;
        for (index, id) in &to_run {
            if outcomes.contains_key(index) {
                continue;
            }
            let entry = plan.entry(*index).expect("planned");
            let jobs: Vec<&RecordedJob> = submission.record.jobs.iter().filter(|j| &j.step == id).collect();
            let state = summarise(&step_state(&jobs)?, store.is_complete(&entry.key));
            if shown.get(index) != Some(&state.text) {
                let job = jobs.iter().find(|j| j.role == Role::Step).map(|j| j.job.as_str()).unwrap_or("?");
                tracing::info!(step = %id, "job {job}: {}", state.text);
                shown.insert(*index, state.text.clone());
            }
            match state.phase {
                Phase::Completed => {
                    match store.complete(&entry.key) {
                        Some(m) => {
                            outcomes.insert(*index, Outcome::Ran { seconds: m.seconds });
                            manifests.insert(*index, m);
                        }
                        None => {
                            outcomes.insert(
                                *index,
                                Outcome::Failed {
                                    error: "its job completed but its outputs are not in the store".into(),
                                },
                            );
                        }
                    }
                    changed = true;
                }
                Phase::Failed => {
                    let (what, log, error) = state.failure.unwrap_or_default();
                    let error = format!("{what}; log: {}\n{error}", log.display());
                    tracing::error!(step = %id, "failed: {error}");
                    outcomes.insert(*index, Outcome::Failed { error });
                    skip_dependants(&dag, *index, id, &to_run, submission, &mut outcomes)?;
                    changed = true;
                }
                Phase::DependencyFailed => {
                    let because = dag
                        .dependencies(*index)
                        .into_iter()
                        .find(|d| matches!(outcomes.get(d), Some(Outcome::Failed { .. } | Outcome::Skipped { .. })))
                        .map(|d| format!("`{}` did not complete", wf.steps[d].id))
                        .unwrap_or_else(|| "a job it depends on failed".into());
                    outcomes.insert(*index, Outcome::Skipped { because });
                    changed = true;
                }
                Phase::Waiting | Phase::Running => {}
            }
        }
        if changed {
            write_lockfile(wf, plan, &manifests, recorded.as_ref(), &env, &store, lockfile_path)?;
            let done = to_run.iter().filter(|(i, _)| outcomes.contains_key(i)).count();
            tracing::info!("{done}/{} steps finished ({:.0}s)", to_run.len(), started.elapsed().as_secs_f64());
        }
        if to_run.iter().all(|(i, _)| outcomes.contains_key(i)) || crate::interrupt::requested() {
            break;
        }
        std::thread::sleep(options.poll);
    }
    let lockfile = write_lockfile(wf, plan, &manifests, recorded.as_ref(), &env, &store, lockfile_path)?;
    let results = plan
        .entries
        .iter()
        .map(|e| StepResult {
            id: e.id.clone(),
            outcome: outcomes.get(&e.index).cloned().unwrap_or_else(|| Outcome::Skipped {
                because: "still queued or running in Slurm (stopped waiting)".into(),
            }),
        })
        .collect();
    Ok(RunReport { plan: plan.clone(), results, lockfile })
}

/// Cancels the jobs of every step downstream of a failed one (Slurm would too, with `--kill-on-invalid-dep`; doing
/// it here does not depend on the cluster's settings) and marks them skipped.
fn skip_dependants(
    dag: &Dag,
    failed: usize,
    failed_id: &str,
    to_run: &[(usize, String)],
    submission: &Submission,
    outcomes: &mut BTreeMap<usize, Outcome>,
) -> anyhow::Result<()> {
    let mut downstream = BTreeSet::from([failed]);
    for &i in dag.order() {
        if dag.dependencies(i).iter().any(|d| downstream.contains(d)) {
            downstream.insert(i);
        }
    }
    downstream.remove(&failed);
    let mut cancel = Vec::new();
    for (index, id) in to_run {
        if downstream.contains(index) && !outcomes.contains_key(index) {
            cancel.extend(submission.record.jobs.iter().filter(|j| &j.step == id).map(|j| j.job.clone()));
            outcomes.insert(*index, Outcome::Skipped { because: format!("`{failed_id}` did not complete") });
        }
    }
    if !cancel.is_empty() {
        tracing::warn!("cancelling the jobs of steps that need `{failed_id}`: {}", cancel.join(" "));
        scontrol::scancel(&cancel)?;
    }
    Ok(())
}

/// One row of `anbiq status`.
#[derive(Clone, Debug, Serialize)]
pub struct JobStatus {
    pub step: String,
    pub job: String,
    pub role: Role,
    pub state: String,
    /// A failed job's log and error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the step's outputs are in the store.
    pub done: bool,
}

/// The state of every job of the workflow's last submission (`None` if it has none); also brings the lockfile up
/// to date with the steps that have finished, which is how a `--detach`ed run's lockfile gets written.
pub fn status(wf: &Workflow, store_root: &Path) -> anyhow::Result<Option<(JobRecord, Vec<JobStatus>, PathBuf)>> {
    let store = Store::open(store_root)?;
    let Some(record) = read_record(&store, wf)? else { return Ok(None) };
    let mut rows = Vec::new();
    for job in &record.jobs {
        let done = store.is_complete(&job.key);
        let lines = scontrol::show_job(&job.job)?;
        let state = summarise(&[(job.clone(), lines)], done);
        let (log, error) = match state.failure {
            Some((what, log, error)) => (Some(log), Some(format!("{what}: {error}"))),
            None => (None, None),
        };
        let text = if job.role == Role::Shards && state.text.is_empty() { "COMPLETED".into() } else { state.text };
        rows.push(JobStatus {
            step: job.step.clone(),
            job: job.job.clone(),
            role: job.role,
            state: text,
            log,
            error,
            done,
        });
    }
    let dag = Dag::build(wf).map_err(|d| anyhow::anyhow!("{d}"))?;
    let env = KeyEnv::current();
    let recorded = roots::read(&store, wf)?;
    let previous = previous_lockfile(recorded.as_ref(), &record.lockfile)?;
    let plan = plan(wf, &dag, &store, previous.as_ref(), &env, &PlanOptions::default())?;
    let manifests = cached_manifests(&plan, &store)?;
    let lockfile = write_lockfile(wf, &plan, &manifests, recorded.as_ref(), &env, &store, &record.lockfile)?;
    Ok(Some((record, rows, lockfile)))
}

/// Cancels the jobs of the workflow's last submission that have not finished; returns `(step, job)` of each.
pub fn cancel(wf: &Workflow, store_root: &Path) -> anyhow::Result<Option<Vec<(String, String)>>> {
    let store = Store::open(store_root)?;
    let Some(record) = read_record(&store, wf)? else { return Ok(None) };
    let mut cancelled = Vec::new();
    for job in &record.jobs {
        let active = scontrol::show_job(&job.job)?
            .is_some_and(|lines| lines.iter().any(|l| matches!(l.phase(), Phase::Waiting | Phase::Running)));
        if active {
            cancelled.push((job.step.clone(), job.job.clone()));
        }
    }
    let ids: Vec<String> = cancelled.iter().map(|(_, j)| j.clone()).collect();
    scontrol::scancel(&ids)?;
    Ok(Some(cancelled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_local_stores_are_recognised() {
        let candidates = vec![PathBuf::from("/tmp"), PathBuf::from("/scratch/local"), PathBuf::from("/")];
        assert_eq!(node_local_dir(Path::new("/tmp/x/store"), &candidates), Some(PathBuf::from("/tmp")));
        assert_eq!(node_local_dir(Path::new("/scratch/local/s"), &candidates), Some(PathBuf::from("/scratch/local")));
        assert_eq!(node_local_dir(Path::new("/shared/store"), &candidates), None, "`/` is never a temp dir");
        assert_eq!(node_local_dir(Path::new("/tmpfoo/store"), &candidates), None, "components, not prefixes");
    }

    #[test]
    fn array_counts() {
        assert_eq!(count_array("0-3"), 4);
        assert_eq!(count_array("0-2,5,7-8"), 6);
        assert_eq!(count_array("1"), 1);
    }

    fn job(role: Role, array: Option<&str>) -> RecordedJob {
        RecordedJob {
            step: "logits".into(),
            key: StepKey("k".repeat(64)),
            job: "7".into(),
            role,
            array: array.map(String::from),
            log: "/s/logs/logits-%j.log".into(),
        }
    }

    fn info(state: &str, reason: &str, task: Option<&str>) -> JobInfo {
        JobInfo {
            id: "7".into(),
            state: state.into(),
            reason: reason.into(),
            exit_code: "0:0".into(),
            stdout: None,
            array_task: task.map(String::from),
        }
    }

    #[test]
    fn summaries() {
        let shards = job(Role::Shards, Some("0-3"));
        let step = job(Role::Step, None);
        let running = summarise(
            &[
                (shards.clone(), Some(vec![info("COMPLETED", "None", Some("0")), info("RUNNING", "None", Some("1"))])),
                (step.clone(), Some(vec![info("PENDING", "Dependency", None)])),
            ],
            false,
        );
        assert_eq!(running.phase, Phase::Running);
        assert_eq!(running.text, "shards 1/4 done, 1 running");
        let failed = summarise(
            &[
                (shards, Some(vec![info("FAILED", "NonZeroExitCode", Some("2"))])),
                (step.clone(), Some(vec![info("PENDING", "DependencyNeverSatisfied", None)])),
            ],
            false,
        );
        assert_eq!(failed.phase, Phase::Failed);
        assert_eq!(failed.text, "shard 2 FAILED");
        assert_eq!(summarise(&[(step.clone(), None)], true).phase, Phase::Completed);
        let gone = summarise(&[(step, None)], false);
        assert_eq!(gone.phase, Phase::Failed);
        assert_eq!(gone.failure.unwrap().1, PathBuf::from("/s/logs/logits-7.log"));
    }
}

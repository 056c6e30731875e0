//! Scale-out on Slurm, against a real cluster: `scripts/slurm-dev.sh start` brings up a single-node one (CI does).
//! Without Slurm the cluster tests print a note and pass; the plumbing they rest on (`run-step`, its store locking,
//! the shared-store check, sharded inference on the local executor) is tested either way.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anbiq::run::{self, Lockfile, RunOptions, Store};
use anbiq::steps::Progress;
use anbiq::workflow;

/// Small and fast: single-threaded steps on CPU, so the local and the Slurm runs compute exactly alike.
const SMALL: &str = "\
name: small
seed: 5
device: cpu
threads: 1
params: {t: 4, min_confidence: 0.5}
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.25}, limit: 600}
  teacher: {kind: train, data: digits.train, model: {arch: mlp, hidden: [32]}, epochs: 3, optimizer: {name: adam, lr: 0.01}}
  logits: {kind: infer, model: teacher, data: digits.train, batch_size: 64}
  kept: {kind: filter, data: logits, keep: {min_confidence: \"${params.min_confidence}\"}}
  student:
    kind: distill
    teacher: logits
    data: kept
    model: {arch: mlp, hidden: [16]}
    loss: {kd: {temperature: \"${params.t}\"}}
    epochs: 2
    resources: {cpus: 1, mem: 200M, time: \"00:10:00\"}
  report: {kind: evaluate, data: digits.test, models: [teacher, student], timing: false}
";

fn anbiq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_anbiq"))
}

/// Whether a Slurm controller answers; prints why the cluster tests are skipped when not.
fn slurm_up() -> bool {
    static UP: OnceLock<bool> = OnceLock::new();
    *UP.get_or_init(|| {
        let ok = |cmd: &str, args: &[&str]| Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success());
        let up = ok("sinfo", &["-h"]) && ok("scontrol", &["ping"]);
        if !up {
            eprintln!("note: no Slurm here (`sinfo` missing or no controller): skipping the cluster tests; start one with scripts/slurm-dev.sh start");
        }
        up
    })
}

fn write(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("wf.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// `anbiq ARGS` in `dir`; panics with its output if the exit code is not `code`.
fn cli(dir: &Path, args: &[&str], code: i32) -> (String, String) {
    let out: Output = anbiq().args(args).current_dir(dir).stdin(Stdio::null()).output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert_eq!(out.status.code(), Some(code), "anbiq {args:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    (stdout, stderr)
}

/// `anbiq run wf.yaml --executor slurm` with a store in the test's temp dir (hence --allow-local-store).
fn run_slurm(dir: &Path, extra: &[&str], code: i32) -> (String, String) {
    let mut args =
        vec!["run", "wf.yaml", "--executor", "slurm", "--store", "store", "--allow-local-store", "--poll", "0.2"];
    args.extend_from_slice(extra);
    cli(dir, &args, code)
}

/// Runs on the local executor (in-process) and returns the lockfile.
fn run_local(dir: &Path, yaml: &str) -> Lockfile {
    let wf = workflow::load(&write(dir, yaml), &[]).unwrap();
    let options = RunOptions {
        jobs: 2,
        store: dir.join("store"),
        progress: Progress::hidden(),
        rank_binary: Some(env!("CARGO_BIN_EXE_anbiq").into()),
        ..Default::default()
    };
    let report = run::run(&wf, &options).unwrap();
    assert_eq!(report.failures().count(), 0, "{:?}", report.results);
    Lockfile::read(&wf.lockfile_path()).unwrap().unwrap()
}

/// Step id → output hashes: the part of a lockfile that must be bit-identical.
fn lockfile(dir: &Path) -> Lockfile {
    Lockfile::read(&dir.join("wf.lock")).unwrap().expect("a lockfile")
}

/// The job record `run --executor slurm` keeps in the store.
fn record(dir: &Path) -> serde_json::Value {
    let slurm = dir.join("store/slurm");
    let sub = std::fs::read_dir(&slurm).unwrap().next().expect("a record directory").unwrap().path();
    serde_json::from_str(&std::fs::read_to_string(sub.join("jobs.json")).unwrap()).unwrap()
}

fn recorded_steps(record: &serde_json::Value) -> Vec<(String, String)> {
    record["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["step"].as_str().unwrap().to_string(), j["role"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn the_small_workflow_on_slurm_gives_the_local_executors_hashes() {
    if !slurm_up() {
        return;
    }
    let local = tempfile::tempdir().unwrap();
    let reference = run_local(local.path(), SMALL);

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), SMALL);
    let start = Instant::now();
    let (out, err) = run_slurm(dir.path(), &[], 0);
    eprintln!("small workflow on Slurm: {:.1}s", start.elapsed().as_secs_f64());
    for step in ["digits", "teacher", "logits", "kept", "student", "report"] {
        assert!(out.lines().any(|l| l.starts_with(step) && l.contains("ran in")), "{step} ran:\n{out}");
    }
    assert!(err.contains("submitted as job"), "progress is reported:\n{err}");
    assert!(err.contains("afterok:"), "dependencies mirror the DAG:\n{err}");
    // Whole lockfiles, minus the declared measurements: keys, configs, inputs, outputs, metrics, devices, threads.
    let (slurm, local) = (lockfile(dir.path()).without_measurements(), reference.without_measurements());
    assert!(slurm == local, "Slurm and local runs record the same: {:?}", anbiq::run::diff(&local, &slurm));
    assert_eq!(recorded_steps(&record(dir.path())).len(), 6);
    let script = std::fs::read_to_string(
        std::fs::read_dir(dir.path().join("store/slurm"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("scripts/student.sh"),
    )
    .unwrap();
    for directive in ["--cpus-per-task=1", "--mem=200M", "--time=00:10:00", "--kill-on-invalid-dep=yes"] {
        assert!(script.contains(directive), "per-step resources reach sbatch: {directive}\n{script}");
    }

    // Everything is in the store now: nothing is submitted again.
    let (out, err) = run_slurm(dir.path(), &[], 0);
    let steps = out.lines().filter(|l| !["lockfile:", "summary:", "results:"].iter().any(|p| l.starts_with(p)));
    assert!(steps.clone().all(|l| l.contains("cached")), "{out}");
    assert!(out.contains(&format!("summary: 0 ran, {} cached, 0 failed", steps.count())), "{out}");
    assert!(!err.contains("submitted as job"), "{err}");
}

#[test]
fn a_sharded_infer_runs_as_a_job_array_and_equals_the_unsharded_output() {
    if !slurm_up() {
        return;
    }
    let sharded = SMALL.replace("batch_size: 64}", "batch_size: 64, shards: 4}");
    let local = tempfile::tempdir().unwrap();
    let reference = run_local(local.path(), SMALL);

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &sharded);
    let (_, err) = run_slurm(dir.path(), &["--only", "logits"], 0);
    assert!(err.contains("submitted shards 0-3 of 4 as job array"), "{err}");
    let rec = record(dir.path());
    let array = rec["jobs"].as_array().unwrap().iter().find(|j| j["role"] == "shards").expect("an array job").clone();
    assert_eq!(array["array"], "0-3");
    let logs = std::fs::read_dir(dir.path().join("store/slurm")).unwrap().next().unwrap().unwrap().path().join("logs");
    let job = array["job"].as_str().unwrap();
    for task in 0..4 {
        assert!(logs.join(format!("logits-{job}_{task}.log")).exists(), "array task {task} wrote its log");
    }
    let lock = lockfile(dir.path());
    let reference_logits = &reference.step("logits").unwrap().outputs;
    assert_eq!(&lock.step("logits").unwrap().outputs, reference_logits, "4 shards equal the unsharded logits");
    assert!(!dir.path().join("store/shards").read_dir().unwrap().any(|_| true), "shards are dropped once assembled");
}

#[test]
fn a_failing_step_cancels_its_dependants_reports_its_log_and_a_rerun_submits_only_whats_missing() {
    if !slurm_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), SMALL);
    // Nothing reaches confidence 1.0, so `kept` fails at run time; `student` and `report` need it.
    let (out, err) = run_slurm(dir.path(), &["--set", "min_confidence=1.0"], 1);
    let kept = out.lines().find(|l| l.starts_with("kept")).unwrap();
    assert!(kept.contains("FAILED: job") && kept.contains("FAILED"), "{out}");
    let log_line = out.lines().find(|l| l.contains("log: ")).expect("the failed job's log path");
    let log = PathBuf::from(log_line.split("log: ").nth(1).unwrap().trim());
    assert!(log.exists(), "{}", log.display());
    assert!(std::fs::read_to_string(&log).unwrap().contains("error:"), "the log holds the step's error");
    assert!(out.contains(": step `kept` (filter): field `keep`"), "the job's error is printed:\n{out}");
    for step in ["student", "report"] {
        let line = out.lines().find(|l| l.starts_with(step)).unwrap();
        assert!(line.contains("skipped: `kept` did not complete") || line.contains("skipped: `student`"), "{out}");
    }
    assert!(err.contains("1 step(s) failed"), "{err}");
    let (status, _) = cli(dir.path(), &["status", "wf.yaml", "--store", "store", "--set", "min_confidence=1.0"], 0);
    let student = status.lines().find(|l| l.starts_with("student")).unwrap();
    assert!(student.contains("CANCELLED"), "the dependant's job was cancelled:\n{status}");
    let done = lockfile(dir.path());
    assert!(done.step("teacher").is_some() && done.step("kept").is_none(), "the lockfile has what finished");

    // Fixed: only the failed step and what needs it are submitted.
    let (out, _) = run_slurm(dir.path(), &[], 0);
    assert_eq!(
        recorded_steps(&record(dir.path())),
        [("kept".into(), "step".into()), ("student".into(), "step".into()), ("report".into(), "step".into())]
    );
    for step in ["digits", "teacher", "logits"] {
        assert!(out.lines().any(|l| l.starts_with(step) && l.contains("cached")), "{out}");
    }
}

#[test]
fn detach_then_status_then_cancel() {
    if !slurm_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &SMALL.replace("epochs: 3", "epochs: 400"));
    let (out, _) = run_slurm(dir.path(), &["--detach"], 0);
    assert!(out.contains("submitted 6 job(s)"), "{out}");
    assert!(out.contains("anbiq status"), "{out}");
    let (status, _) = cli(dir.path(), &["status", "wf.yaml", "--store", "store"], 0);
    assert!(status.lines().any(|l| l.starts_with("teacher")), "{status}");
    // Wait for the teacher to start, so that both a running and pending jobs are cancelled.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = cli(dir.path(), &["status", "wf.yaml", "--store", "store"], 0);
        let teacher = status.lines().find(|l| l.starts_with("teacher")).unwrap().to_string();
        if teacher.contains("RUNNING") {
            break;
        }
        assert!(Instant::now() < deadline, "the teacher never started:\n{status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (out, _) = cli(dir.path(), &["cancel", "wf.yaml", "--store", "store"], 0);
    for step in ["teacher", "logits", "report"] {
        assert!(out.contains(&format!("({step})")), "{step} cancelled:\n{out}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = cli(dir.path(), &["status", "wf.yaml", "--store", "store"], 0);
        if !status.contains("RUNNING") && !status.contains("PENDING") {
            assert!(status.lines().any(|l| l.starts_with("teacher") && l.contains("CANCELLED")), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "jobs still active after cancel:\n{status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (out, _) = cli(dir.path(), &["cancel", "wf.yaml", "--store", "store"], 0);
    assert!(out.contains("nothing to cancel"), "{out}");
}

// --- Without a cluster -----------------------------------------------------------------------------------------

#[test]
fn the_slurm_executor_refuses_a_store_in_a_node_local_temp_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), SMALL);
    let (_, err) = cli(dir.path(), &["run", "wf.yaml", "--executor", "slurm", "--store", "store"], 1);
    assert!(err.contains("node-local temp directory") && err.contains("--allow-local-store"), "{err}");
    let (_, err) = cli(dir.path(), &["run", "wf.yaml", "--detach"], 2);
    assert!(err.contains("need --executor slurm"), "{err}");
}

#[test]
fn run_step_refuses_a_missing_input_and_runs_one_step() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), SMALL);
    let (_, err) = cli(dir.path(), &["run-step", "wf.yaml", "--store", "store", "--step", "teacher"], 1);
    assert!(err.contains("input step `digits`") && err.contains("is not in the store"), "{err}");
    let (out, _) = cli(dir.path(), &["run-step", "wf.yaml", "--store", "store", "--step", "digits"], 0);
    assert!(out.contains("digits: ran in"), "{out}");
    let (out, _) = cli(dir.path(), &["run-step", "wf.yaml", "--store", "store", "--step", "digits"], 0);
    assert!(out.contains("already in the store"), "{out}");
    let (_, err) =
        cli(dir.path(), &["run-step", "wf.yaml", "--store", "store", "--step", "teacher", "--key", "0000"], 1);
    assert!(err.contains("not 0000 as when it was submitted"), "{err}");
}

#[test]
fn single_step_writers_share_the_store_but_wait_for_a_local_run() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), SMALL);
    let store = Store::open(&dir.path().join("store")).unwrap();
    let step = |id: &str| {
        anbiq()
            .args(["run-step", "wf.yaml", "--store", "store", "--step", id])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    {
        // Another job holds the store shared: a job still runs.
        let _shared = store.lock_shared().unwrap();
        let out = step("digits").wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // A local run holds it exclusively: the job says so and waits until it is done.
    let local = store.lock().unwrap();
    let mut child = step("teacher");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.contains("a local anbiq run is using the store") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("the job reports that it waits for the local run");
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "a job must wait while a local run holds the store");
    drop(local);
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert!(status.success(), "{stderr}");
}

#[test]
fn sharded_infer_on_the_local_executor_equals_the_unsharded_output() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let unsharded = run_local(a.path(), SMALL);
    // 450 training rows in batches of 64: 8 batches over 3 shards (3, 3, 2 batches; the last one partial).
    let sharded = run_local(b.path(), &SMALL.replace("batch_size: 64}", "batch_size: 64, shards: 3}"));
    // `shards` is not in the key and does not change a byte: the whole lockfiles agree.
    let (sharded, unsharded) = (sharded.without_measurements(), unsharded.without_measurements());
    assert!(sharded == unsharded, "{:?}", anbiq::run::diff(&unsharded, &sharded));
}

#[test]
fn resources_come_from_the_step_over_the_workflows_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = |teacher_resources: &str| {
        format!(
            "resources: {{cpus: 2, mem: 4G}}\nsteps:\n  digits: {{kind: dataset, source: digits}}\n  \
             teacher: {{kind: train, data: digits.train, model: {{arch: mlp, hidden: [8]}}, epochs: 1{teacher_resources}}}\n"
        )
    };
    let load = |text: &str| workflow::load(&write(dir.path(), text), &[]).unwrap();
    let wf = load(&yaml(", resources: {gpus: 1, mem: 16G, time: \"02:00:00\"}"));
    let r = |id: &str| wf.steps[wf.step_index(id).unwrap()].resources.clone();
    assert_eq!(r("digits"), workflow::Resources { cpus: Some(2), mem: Some("4G".into()), ..Default::default() });
    assert_eq!(
        r("teacher"),
        workflow::Resources {
            cpus: Some(2),
            gpus: Some(1),
            mem: Some("16G".into()),
            time: Some("02:00:00".into()),
            nodes: None
        }
    );
    let key = |wf: &workflow::Workflow| {
        let dag = anbiq::graph::Dag::build(wf).unwrap();
        anbiq::graph::compute_keys(wf, &dag, &anbiq::graph::KeyEnv::current()).unwrap()[1].0.clone()
    };
    assert_eq!(key(&wf), key(&load(&yaml(""))), "resources are not part of the key");
}

/// A data-parallel step (two ranks, one thread each) on the 2-CPU test cluster.
const DATA_PARALLEL: &str = "\
name: dp
seed: 5
device: cpu
threads: 2
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.25}, limit: 600}
  teacher: {kind: train, data: digits.train, model: {arch: mlp, hidden: [32]}, epochs: 3, optimizer: {name: adam, lr: 0.01}, distributed: {ranks: 2}}
";

#[test]
fn a_data_parallel_step_is_one_job_of_two_tasks_under_srun_with_the_local_result() {
    if !slurm_up() {
        return;
    }
    let local = tempfile::tempdir().unwrap();
    let reference = run_local(local.path(), DATA_PARALLEL);

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), DATA_PARALLEL);
    let (out, _) = run_slurm(dir.path(), &[], 0);
    assert!(out.lines().any(|l| l.starts_with("teacher") && l.contains("ran in")), "{out}");
    let (slurm, local) = (lockfile(dir.path()).without_measurements(), reference.without_measurements());
    assert!(
        slurm == local,
        "Slurm's two tasks and the local two ranks record the same: {:?}",
        anbiq::run::diff(&local, &slurm)
    );
    let sub = std::fs::read_dir(dir.path().join("store/slurm")).unwrap().next().unwrap().unwrap().path();
    let script = std::fs::read_to_string(sub.join("scripts/teacher.sh")).unwrap();
    assert!(script.contains("#SBATCH --ntasks=2\n") && script.contains("exec srun --kill-on-bad-exit=1 "), "{script}");
}

//! Reproducibility claims, each proven by comparing hashes: bit-identical reruns (across stores and `--jobs`),
//! kill -9 and resume, teacher → assistant → student chains run once, sweeps that rerun only what changed, the store
//! lock, `verify` and `diff`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anbiq::run::{self, Lockfile, PlanOptions, RunOptions, RunReport, Store};
use anbiq::steps::Progress;
use anbiq::workflow;

/// Teacher → assistant → student, plus a direct student and a two-teacher student, on digits.
const CHAIN: &str = "\
name: chain
seed: 11
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.25}, limit: 700, normalize: standardize}
  teacher: {kind: train, data: digits.train, model: {arch: mlp, hidden: [64], dropout: 0.1}, epochs: 8, optimizer: {name: adam, lr: 0.01}}
  assistant:
    kind: distill
    teacher: teacher
    data: digits.train
    model: {arch: mlp, hidden: [24]}
    loss: {kd: {temperature: 4, alpha: 0.7}}
    epochs: 6
    optimizer: {name: adam, lr: 0.01}
  student_ta:
    kind: distill
    teacher: assistant
    data: digits.train
    model: {arch: mlp, hidden: [8]}
    loss: {kd: {temperature: 4, alpha: 0.7}}
    epochs: 6
    optimizer: {name: adam, lr: 0.01}
  student_direct:
    kind: distill
    teacher: teacher
    data: digits.train
    model: {arch: mlp, hidden: [8]}
    loss: {kd: {temperature: 4, alpha: 0.7}}
    epochs: 6
    optimizer: {name: adam, lr: 0.01}
  student_both:
    kind: distill
    teacher: [teacher, assistant]
    teacher_weights: [2, 1]
    data: digits.train
    model: {arch: mlp, hidden: [8]}
    loss: {kd: {temperature: 4, alpha: 0.7}}
    epochs: 6
    optimizer: {name: adam, lr: 0.01}
  report:
    kind: evaluate
    data: digits.test
    models: [teacher, assistant, student_ta, student_direct, student_both]
    reference: teacher
    timing: false
";

fn write_workflow(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("wf.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn run_in(dir: &Path, yaml: &str, jobs: usize, sets: &[&str]) -> (RunReport, Lockfile) {
    let path = write_workflow(dir, yaml);
    let overrides: Vec<_> = sets.iter().map(|s| s.parse().unwrap()).collect();
    let wf = workflow::load(&path, &overrides).unwrap();
    let options = RunOptions {
        jobs,
        store: dir.join("store"),
        lockfile: None,
        plan: PlanOptions::default(),
        progress: Progress::hidden(),
        ..Default::default()
    };
    let report = run::run(&wf, &options).unwrap();
    let failures: Vec<_> = report.failures().collect();
    assert!(failures.is_empty(), "{failures:?}");
    let lock = Lockfile::read(&wf.lockfile_path()).unwrap().unwrap();
    (report, lock)
}

/// Step id → its output hashes, the part of a lockfile that must be bit-identical.
fn outputs(lock: &Lockfile) -> Vec<(String, Vec<(String, String)>)> {
    lock.steps.iter().map(|s| (s.id.clone(), s.outputs.clone().into_iter().collect())).collect()
}

#[test]
fn same_seed_gives_bit_identical_outputs_across_runs_and_jobs() {
    let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_, lock_a) = run_in(a.path(), CHAIN, 1, &[]);
    let (_, lock_b) = run_in(b.path(), CHAIN, 1, &[]);
    let (_, lock_c) = run_in(c.path(), CHAIN, 3, &[]);
    assert_eq!(outputs(&lock_a), outputs(&lock_b), "two runs, same seed");
    assert_eq!(outputs(&lock_a), outputs(&lock_c), "--jobs 1 and --jobs 3");
    assert!(run::diff(&lock_a, &lock_c).is_empty(), "{:?}", run::diff(&lock_a, &lock_c));

    let d = tempfile::tempdir().unwrap();
    let (_, lock_d) = run_in(d.path(), &CHAIN.replace("seed: 11", "seed: 12"), 1, &[]);
    let teacher = |l: &Lockfile| l.step("teacher").unwrap().outputs["model"].clone();
    assert_ne!(teacher(&lock_a), teacher(&lock_d), "another seed gives other weights");
    let diff = run::diff(&lock_a, &lock_d);
    assert_eq!(diff[0], "seed: 11 → 12");
    assert!(diff.contains(&"step `teacher`: seed changed".to_string()), "{diff:?}");
}

/// `seed: NAME` makes a step draw the streams NAME gives: a copy of `student_direct` under another id is another
/// student (its own seed), and the same student bit for bit — the same key — once it names `student_direct`. Students
/// taught by different teachers can so see their batches in the same order.
#[test]
fn a_step_that_names_a_seed_draws_the_same_numbers_as_the_steps_that_name_it() {
    let student = |id: &str, seed: &str| {
        format!(
            "  {id}:\n    kind: distill\n    teacher: teacher\n    data: digits.train\n    model: {{arch: mlp, hidden: [8]}}\n    \
             loss: {{kd: {{temperature: 4, alpha: 0.7}}}}\n    epochs: 6\n    optimizer: {{name: adam, lr: 0.01}}\n{seed}"
        )
    };
    let yaml = CHAIN.replace(
        "  report:\n",
        &(student("twin", "") + &student("named", "    seed: student_direct\n") + "  report:\n"),
    );
    let dir = tempfile::tempdir().unwrap();
    let (_, lock) = run_in(dir.path(), &yaml, 2, &[]);
    let step = |id: &str| lock.step(id).unwrap();
    assert_eq!(step("named").key, step("student_direct").key);
    assert_eq!(step("named").outputs, step("student_direct").outputs);
    assert_ne!(step("twin").outputs, step("student_direct").outputs, "its own id, its own seed");
}

#[test]
fn a_chain_runs_each_stage_once_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let (report, lock) = run_in(dir.path(), CHAIN, 2, &[]);
    // The assistant feeds two students and the report, the teacher four steps: each ran exactly once.
    assert_eq!(
        report.ran(),
        ["digits", "teacher", "assistant", "student_ta", "student_direct", "student_both", "report"]
    );
    let metrics: serde_json::Value = {
        let store = Store::open(&dir.path().join("store")).unwrap();
        let key = &lock.step("report").unwrap().key;
        serde_json::from_str(&std::fs::read_to_string(store.step_dir(key).join("report/metrics.json")).unwrap())
            .unwrap()
    };
    for model in ["teacher", "assistant", "student_ta", "student_direct", "student_both"] {
        let acc = metrics[model]["accuracy"].as_f64().unwrap();
        assert!(acc > 0.5, "{model} learned something: accuracy {acc}");
    }
    // Changing the assistant reruns the assistant, what it teaches and the report; not the teacher or the direct path.
    let (again, _) = run_in(dir.path(), &CHAIN.replace("hidden: [24]", "hidden: [32]"), 2, &[]);
    assert_eq!(again.ran(), ["assistant", "student_ta", "student_both", "report"]);
}

const SWEEP: &str = "\
seed: 5
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.25}, limit: 500}
  teacher: {kind: train, data: digits.train, model: {arch: mlp, hidden: [32]}, epochs: 3}
  logits: {kind: infer, model: teacher, data: digits.train}
  student:
    kind: distill
    matrix: {temperature: [1, 4], alpha: [0.5, 0.9]}
    teacher: logits
    data: digits.train
    model: {arch: mlp, hidden: [8]}
    loss: {kd: {temperature: \"${matrix.temperature}\", alpha: \"${matrix.alpha}\"}}
    epochs: 2
  student_logits: {kind: infer, model: student, data: digits.test}
  report: {kind: evaluate, data: digits.test, models: [teacher, student], timing: false}
";

#[test]
fn a_matrix_expands_fans_out_collects_and_reruns_only_changed_variants() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _) = run_in(dir.path(), SWEEP, 2, &[]);
    let variants = ["temperature1-alpha0p5", "temperature1-alpha0p9", "temperature4-alpha0p5", "temperature4-alpha0p9"];
    let mut expected = vec!["digits".to_string(), "teacher".into(), "logits".into()];
    expected.extend(variants.iter().map(|v| format!("student-{v}")));
    expected.extend(variants.iter().map(|v| format!("student_logits-{v}")));
    expected.push("report".into());
    assert_eq!(report.ran(), expected);

    // The report collected all four variants beside the teacher.
    let wf = workflow::load(&dir.path().join("wf.yaml"), &[]).unwrap();
    let report_step = wf.steps.iter().find(|s| s.id == "report").unwrap();
    let models: Vec<String> = report_step
        .step
        .inputs()
        .iter()
        .filter(|i| i.role.starts_with("models"))
        .map(|i| i.reference.to_string())
        .collect();
    assert_eq!(models.len(), 5);
    // Variants share their template's seed: they differ only in what the matrix changes.
    let seeds: Vec<&str> =
        wf.steps.iter().filter(|s| s.id.starts_with("student-")).map(|s| s.seed_id.as_str()).collect();
    assert_eq!(seeds, ["student"; 4]);

    // One more temperature: only the new variants, their fan-out and the report run.
    let (more, _) = run_in(dir.path(), &SWEEP.replace("temperature: [1, 4]", "temperature: [1, 4, 8]"), 2, &[]);
    assert_eq!(
        more.ran(),
        [
            "student-temperature8-alpha0p5",
            "student-temperature8-alpha0p9",
            "student_logits-temperature8-alpha0p5",
            "student_logits-temperature8-alpha0p9",
            "report"
        ]
    );
}

const LONG: &str = "\
seed: 21
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.25}, normalize: standardize}
  teacher:
    kind: train
    data: digits.train
    val: digits.test
    model: {arch: mlp, hidden: [256, 256], dropout: 0.2}
    epochs: 40
    optimizer: {name: sgd, lr: 0.05, momentum: 0.9, nesterov: true}
    keep: best val_accuracy
";

fn anbiq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_anbiq"))
}

#[test]
fn kill_9_then_resume_ends_with_the_same_weights_as_an_uninterrupted_run() {
    let clean = tempfile::tempdir().unwrap();
    let (_, reference) = run_in(clean.path(), LONG, 1, &[]);
    // The best epoch's weights are kept, and it is not the last: the resumed run must restore them from its checkpoint.
    let best_epoch = reference.step("teacher").unwrap().metrics["best_epoch"].as_u64().unwrap();
    assert!(best_epoch < 40, "best epoch {best_epoch}");

    let dir = tempfile::tempdir().unwrap();
    let path = write_workflow(dir.path(), LONG);
    let store = dir.path().join("store");
    let mut child = anbiq()
        .arg("run")
        .arg(&path)
        .arg("--store")
        .arg(&store)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until a few epochs are checkpointed, then kill without warning.
    let checkpoints = store.join("checkpoints");
    let deadline = Instant::now() + Duration::from_secs(120);
    let state = loop {
        let found = std::fs::read_dir(&checkpoints)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path().join("current/state.json"));
        if let Some(state) = found.filter(|s| s.exists()) {
            let text = std::fs::read_to_string(&state).unwrap_or_default();
            // Any checkpoint after a few epochs will do: the kill lands mid-run whatever the machine's speed.
            let epoch = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["epoch"].as_u64());
            if epoch.is_some_and(|e| e >= 4) {
                break state;
            }
        }
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run finished before it could be killed: make LONG longer");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(state.exists(), "the checkpoint survives the kill");

    let out = anbiq().arg("run").arg(&path).arg("--store").arg(&store).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming from a checkpoint"));
    let resumed = Lockfile::read(&dir.path().join("wf.lock")).unwrap().unwrap();
    // The whole lockfile (keys, output hashes, the final `val_accuracy` metric) equals the uninterrupted run's.
    assert_eq!(
        resumed.without_measurements(),
        reference.without_measurements(),
        "{:?}",
        run::diff(&reference, &resumed)
    );
    assert!(std::fs::read_dir(&checkpoints).unwrap().next().is_none(), "a completed step drops its checkpoint");
}

#[test]
fn a_second_run_on_the_same_store_waits_for_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_workflow(dir.path(), "steps:\n  digits: {kind: dataset, source: digits}\n");
    let store = Store::open(&dir.path().join("store")).unwrap();
    let lock = store.lock().unwrap();
    let mut child = anbiq()
        .arg("run")
        .arg(&path)
        .arg("--store")
        .arg(store.root())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Read the child's stderr on a thread, so we can wait for it to say it is waiting (however loaded the machine).
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::{BufRead, BufReader};
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let waiting = rx.iter().find(|l| l.contains("another anbiq run is using the store"));
    assert!(waiting.is_some(), "the second run must say it waits");
    assert!(child.try_wait().unwrap().is_none(), "the second run must wait while the store is locked");
    drop(lock);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
}

#[test]
fn verify_catches_a_tampered_output() {
    let dir = tempfile::tempdir().unwrap();
    let (_, lock) =
        run_in(dir.path(), "steps:\n  digits: {kind: dataset, source: digits, split: {test: 0.5}}\n", 1, &[]);
    let wf = workflow::load(&dir.path().join("wf.yaml"), &[]).unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let clean = run::verify(&wf, &store, Some(&lock)).unwrap();
    assert!(clean.problems.is_empty() && clean.compared_with_lockfile == 1, "{clean:?}");
    let meta = store.step_dir(&lock.step("digits").unwrap().key).join("test/meta.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, text.replace("digits", "digitz")).unwrap();
    let problems = run::verify(&wf, &store, Some(&lock)).unwrap().problems;
    let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    assert!(problems.iter().all(|p| p.step == "digits"), "{problems:?}");
    assert!(messages[0].starts_with("`test/meta.json` was modified (blake3 "), "{messages:?}");
    assert!(messages[1].ends_with("--force digits` writes it again"), "{messages:?}");
    // The lockfile recorded the bytes as committed: the manifest still agrees with it, so nothing else is reported.
    assert_eq!(problems.len(), 2, "{messages:?}");

    let out = anbiq()
        .arg("verify")
        .arg(dir.path().join("wf.yaml"))
        .arg("--store")
        .arg(dir.path().join("store"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // A lockfile of another run (another seed: other keys) is said to be one, not silently passed over.
    let other = Lockfile {
        steps: lock
            .steps
            .iter()
            .map(|s| anbiq::run::LockedStep { key: anbiq::graph::StepKey("0".repeat(64)), ..s.clone() })
            .collect(),
        ..lock.clone()
    };
    let problems = run::verify(&wf, &store, Some(&other)).unwrap().problems;
    assert!(problems.iter().any(|p| p.message.starts_with("the lockfile records key 000000000000")), "{problems:?}");
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_130_then_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_workflow(dir.path(), LONG);
    let store = dir.path().join("store");
    let child = anbiq()
        .arg("run")
        .arg(&path)
        .arg("--store")
        .arg(&store)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let checkpoints = store.join("checkpoints");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_dir(&checkpoints).map(|mut d| d.next().is_none()).unwrap_or(true) {
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let lock = Lockfile::read(&dir.path().join("wf.lock")).unwrap().unwrap();
    assert!(lock.step("teacher").is_none(), "an interrupted step is not recorded as done");

    let out = anbiq().arg("run").arg(&path).arg("--store").arg(&store).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming from a checkpoint"));
}

//! Data-parallel training (`distributed: {ranks: N}`) on Gloo over localhost: one rank is the plain path bit for
//! bit, two ranks give the one-rank weights to f32 reduction tolerance and rerun bit-identically, and `kill -9` of a
//! rank fails the step cleanly while the rerun resumes from rank 0's checkpoint to the uninterrupted run's weights.
//! (The same step as one 2-task Slurm job: tests/slurm.rs.)

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use common::Project;
use tch::Tensor;

/// A train step whose every epoch ends with a one-sample batch (so one of two ranks has nothing to do and must
/// still take part), scored on `val` each epoch (rank 0 scores for all), and a distill step whose loss has two terms
/// (the ranks agree on each one's share too); both data-parallel.
const DP: &str = "\
name: dp
seed: 7
device: cpu
threads: 2
params: {ranks: 2}
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.25}, limit: 600}
  teacher:
    kind: train
    data: digits.train
    val: digits.test
    model: {arch: mlp, hidden: [32]}
    epochs: 3
    batch_size: 449
    optimizer: {name: adam, lr: 0.01}
    keep: best val_accuracy
    distributed: {ranks: \"${params.ranks}\"}
  logits: {kind: infer, model: teacher, data: digits.train}
  student:
    kind: distill
    teacher: logits
    data: digits.train
    model: {arch: mlp, hidden: [16]}
    loss: [{kd: {temperature: 4, alpha: 0.7}}, {mse_logits: {}, weight: 0.1}]
    epochs: 4
    optimizer: {name: adam, lr: 0.01}
    distributed: {ranks: \"${params.ranks}\"}
";

fn weights(project: &Project, step: &str) -> BTreeMap<String, Tensor> {
    let file = project.output(step, "model").join("weights.safetensors");
    Tensor::read_safetensors(&file).unwrap().into_iter().collect()
}

fn history(project: &Project, step: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(project.output(step, "model").join("history.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn weight_bytes(project: &Project, step: &str) -> Vec<u8> {
    std::fs::read(project.output(step, "model").join("weights.safetensors")).unwrap()
}

/// The largest absolute difference between two sets of weights, which must have the same names and shapes.
fn max_difference(a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) -> f64 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter().map(|(name, t)| (t - &b[name]).abs().max().double_value(&[])).fold(0.0, f64::max)
}

#[test]
fn one_rank_is_the_plain_path_and_two_ranks_match_it() {
    let plain =
        Project::new(&common::edit_workflow(DP.into(), "    distributed: {ranks: \"${params.ranks}\"}\n", "", 2));
    plain.run(&[]);
    let one = Project::new(DP);
    one.run(&["ranks=1"]);
    for step in ["teacher", "student"] {
        assert!(weight_bytes(&plain, step) == weight_bytes(&one, step), "{step}: one rank ≡ no ranks, bit for bit");
    }
    assert_eq!(plain.lock().step("teacher").unwrap().metrics, one.lock().step("teacher").unwrap().metrics);
    assert_eq!(history(&plain, "student"), history(&one, "student"), "the loss and its terms, epoch by epoch");

    let two = Project::new(DP);
    two.run(&["ranks=2"]);
    for step in ["teacher", "student"] {
        let difference = max_difference(&weights(&one, step), &weights(&two, step));
        // The same global batches and mean gradients; only the order of the f32 sums differs (and the ranks use
        // one thread each where one rank used two).
        assert!(difference < 1e-5, "{step}: two ranks are {difference} from one rank");
        eprintln!("{step}: two ranks vs one: largest weight difference {difference:e}");
    }
    // Each epoch's two term shares add up to its loss, on two ranks as on one, and agree with one rank's.
    let (h1, h2) = (history(&one, "student"), history(&two, "student"));
    assert_eq!(h2["terms"], serde_json::json!(["kd", "mse_logits × 0.1"]));
    for (e1, e2) in h1["epochs"].as_array().unwrap().iter().zip(h2["epochs"].as_array().unwrap()) {
        let terms: Vec<f64> = e2["terms"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
        let loss = e2["train_loss"].as_f64().unwrap();
        assert!((terms.iter().sum::<f64>() - loss).abs() < 1e-6 * loss, "{e2}");
        assert!((e1["terms"][1].as_f64().unwrap() - terms[1]).abs() < 1e-5, "one rank {e1}, two {e2}");
    }
    let (teacher_one, teacher_two) =
        (one.lock().step("teacher").unwrap().metrics.clone(), two.lock().step("teacher").unwrap().metrics.clone());
    assert_eq!(teacher_one["val_accuracy"], teacher_two["val_accuracy"], "rank 0's score is every rank's");
    assert_eq!(teacher_one["best_epoch"], teacher_two["best_epoch"]);

    let again = Project::new(DP);
    again.run(&["ranks=2"]);
    let (a, b) = (two.lock().without_measurements(), again.lock().without_measurements());
    assert!(a == b, "two 2-rank runs record the same: {:?}", anbiq::run::diff(&a, &b));
    let threads: Vec<usize> = a.steps.iter().filter(|s| s.id != "digits").map(|s| s.threads).collect();
    assert_eq!(threads, vec![1, 2, 1], "each of two ranks gets one of the workflow's two threads");
}

fn anbiq(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_anbiq"));
    command.current_dir(dir).stdin(Stdio::null());
    command
}

#[test]
fn killing_a_rank_fails_the_step_and_the_rerun_resumes_to_the_same_weights() {
    let reference = Project::new(DP);
    reference.run(&[]);

    let project = Project::new(DP);
    let killed = anbiq(project.dir.path())
        .args(["run", "wf.yaml", "--store", "store"])
        .env("ANBIQ_KILL_AT", "rank:1:epoch:2")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&killed.stdout), String::from_utf8_lossy(&killed.stderr));
    assert_eq!(killed.status.code(), Some(1), "{stderr}");
    assert!(stdout.contains("step `teacher` (train): rank 1 of 2 was killed by signal 9"), "{stdout}");
    assert!(stdout.contains("summary: 1 ran, 0 cached, 1 failed, 2 skipped"), "{stdout}");
    let checkpoints = project.store().join("checkpoints");
    let rank0 = std::fs::read_dir(&checkpoints).unwrap().next().unwrap().unwrap().path().join("ranks/rank-0.log");
    let log = std::fs::read_to_string(&rank0).unwrap();
    assert!(log.contains("DDP's Reducer"), "the MLP's gradients were reduced during the backward pass:\n{log}");

    let resumed = anbiq(project.dir.path()).args(["run", "wf.yaml", "--store", "store"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&resumed.stdout), String::from_utf8_lossy(&resumed.stderr));
    assert!(resumed.status.success(), "{stderr}");
    assert!(stdout.contains("summary: 3 ran, 1 cached, 0 failed"), "{stdout}");
    assert!(stderr.contains("resuming from a checkpoint step=teacher epoch=3 batch=0"), "{stderr}");
    for step in ["teacher", "student"] {
        assert!(weight_bytes(&project, step) == weight_bytes(&reference, step), "{step}: resumed ≡ uninterrupted");
    }
    let (a, b) = (project.lock().without_measurements(), reference.lock().without_measurements());
    assert!(a == b, "{:?}", anbiq::run::diff(&a, &b));
}

#[test]
fn bad_distributed_settings_are_refused_at_their_field() {
    let zero = Project::new(&DP.replace("params: {ranks: 2}", "params: {ranks: 0}"));
    let err = zero.try_load(&[]).unwrap_err();
    assert!(err.contains("distributed.ranks") && err.contains("must be 1 or more"), "{err}");

    let nccl = Project::new(&common::edit_workflow(
        DP.into(),
        "distributed: {ranks: \"${params.ranks}\"}",
        "distributed: {ranks: 2, backend: nccl}",
        2,
    ));
    let failures = nccl.failures(&[]);
    assert!(failures[0].contains("wf.yaml:") && failures[0].contains("nccl needs CUDA devices"), "{failures:?}");
}

/// The teacher of [`DP`], slower (a wide MLP, small batches, many epochs) so a test can act in the middle of it.
fn long_teacher() -> String {
    common::edit_workflow(
        common::edit_workflow(
            DP.into(),
            "    epochs: 3\n    batch_size: 449\n",
            "    epochs: 60\n    batch_size: 16\n",
            1,
        ),
        "hidden: [32]",
        "hidden: [256]",
        1,
    )
}

/// The epoch rank 0 last checkpointed, once it has one.
fn checkpointed_epoch(store: &Path) -> Option<u64> {
    let dir = std::fs::read_dir(store.join("checkpoints")).ok()?.next()?.ok()?.path();
    let text = std::fs::read_to_string(dir.join("current/state.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["epoch"].as_u64()
}

#[test]
fn ctrl_c_stops_every_rank_at_one_batch_and_the_rerun_resumes() {
    let project = Project::new(&long_teacher());
    let mut child = anbiq(project.dir.path())
        .args(["run", "wf.yaml", "--store", "store"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while checkpointed_epoch(&project.store()).is_none_or(|e| e < 3) {
        assert!(std::time::Instant::now() < deadline, "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it was interrupted");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: signalling our own child; only the launcher gets it, which passes it on to the ranks.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(project.lock().step("teacher").is_none(), "an interrupted step is not recorded as done");

    let resumed = anbiq(project.dir.path()).args(["run", "wf.yaml", "--store", "store"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains("resuming from a checkpoint step=teacher"), "{stderr}");
    let reference = Project::new(&long_teacher());
    reference.run(&[]);
    let (a, b) = (project.lock().without_measurements(), reference.lock().without_measurements());
    assert!(a == b, "interrupted and resumed ≡ uninterrupted: {:?}", anbiq::run::diff(&a, &b));
}

#[test]
fn a_hung_rank_fails_the_step_within_the_timeout() {
    let project = Project::new(&common::edit_workflow(
        DP.into(),
        "distributed: {ranks: \"${params.ranks}\"}",
        "distributed: {ranks: 2, timeout: 4}",
        2,
    ));
    let start = std::time::Instant::now();
    let out = anbiq(project.dir.path())
        .args(["run", "wf.yaml", "--store", "store"])
        .env("ANBIQ_STOP_AT", "rank:1:epoch:1")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout.contains("step `teacher` (train): rank 0 of 2 failed: ") && stdout.contains("imed out"), "{stdout}");
    // The timeout, then the few seconds the launcher gives the others before it kills them: not the 300 s default.
    assert!(start.elapsed().as_secs() < 120, "took {:?}", start.elapsed());
}

/// A language model's loss goes a chunk of positions at a time: several backward passes reach the output projection
/// (here tied to the token embedding), one reaches the rest — one per block when recomputing activations. DDP's
/// Reducer averages the trunk's gradients during that pass, the projection's after it: the same agreement with one
/// rank, and bit-identical reruns.
#[test]
fn a_language_model_trains_on_two_ranks_like_on_one() {
    let yaml = "\
name: dp-lm
seed: 3
threads: 2
params: {ranks: 1, recompute: false}
steps:
  text: {kind: dataset, source: text, path: corpus.txt, context: 16}
  teacher:
    kind: train
    data: text.train
    model: {arch: gpt, layers: 2, heads: 2, d_model: 16, context: 16}
    epochs: 2
    batch_size: 10
    loss_chunk: 40
    recompute_activations: \"${params.recompute}\"
    optimizer: {name: adam, lr: 0.003}
    distributed: {ranks: \"${params.ranks}\"}
";
    let corpus = "It is a truth universally acknowledged, that a single man in possession of a good fortune must be in want of a wife. ";
    for recompute in ["false", "true"] {
        let runs: Vec<Project> = ["1", "2"]
            .iter()
            .map(|ranks| {
                let project = Project::new(yaml);
                project.write("corpus.txt", corpus.repeat(8));
                project.run(&[&format!("ranks={ranks}"), &format!("recompute={recompute}")]);
                project
            })
            .collect();
        let difference = max_difference(&weights(&runs[0], "teacher"), &weights(&runs[1], "teacher"));
        assert!(difference < 1e-4, "recompute {recompute}: two ranks are {difference} from one rank");
        let timings = runs[1].lock().step("teacher").unwrap().timings.clone();
        let overlapped = timings["gradients_overlapped"].as_f64().unwrap();
        // Everything but the (tied) token embedding overlaps.
        assert!(overlapped > 0.5 && overlapped < 1.0, "recompute {recompute}: {timings:?}");
        eprintln!("gpt, recompute {recompute}: two ranks vs one: largest weight difference {difference:e}");
        if recompute == "false" {
            let again = Project::new(yaml);
            again.write("corpus.txt", corpus.repeat(8));
            again.run(&["ranks=2", "recompute=false"]);
            assert!(weight_bytes(&again, "teacher") == weight_bytes(&runs[1], "teacher"), "two ranks rerun ≡");
            let (a, b) = (again.lock().without_measurements(), runs[1].lock().without_measurements());
            assert!(a == b, "{:?}", anbiq::run::diff(&a, &b));
        }
    }
}

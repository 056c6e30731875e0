//! The engine core on a small real workflow (digits): caching, exact invalidation, plan reasons, interrupted writes,
//! failure isolation, `--only`/`--force`, gc, graph output and the CLI's exit codes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anbiq::graph::{render, Dag};
use anbiq::run::{self, Outcome, PlanOptions, Status, Store};

mod common;
use common::Project;

const WORKFLOW: &str = "\
name: small
seed: 3
params: {t: 4, hidden: [16]}
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.25}, limit: 600}
  teacher: {kind: train, data: digits.train, model: {arch: mlp, hidden: [32]}, epochs: 3, optimizer: {name: adam, lr: 0.01}}
  logits: {kind: infer, model: teacher, data: digits.train}
  student:
    kind: distill
    teacher: logits
    data: digits.train
    model: {arch: mlp, hidden: \"${params.hidden}\"}
    loss: {kd: {temperature: \"${params.t}\"}}
    epochs: 2
  baseline: {kind: train, data: digits.train, model: {arch: mlp, hidden: [16]}, epochs: 2}
  report: {kind: evaluate, data: digits.test, models: [teacher, student, baseline], timing: false}
";

fn status_of<'a>(plan: &'a run::Plan, id: &str) -> &'a Status {
    &plan.entries.iter().find(|e| e.id == id).unwrap().status
}

#[test]
fn unchanged_rerun_runs_nothing_and_a_param_change_reruns_exactly_its_descendants() {
    let p = Project::new(WORKFLOW);
    let first = p.run(&[]);
    assert_eq!(first.ran(), ["digits", "teacher", "logits", "student", "baseline", "report"]);
    let lock = p.lock();
    assert_eq!(lock.steps.len(), 6);
    assert!(lock.steps.iter().all(|s| !s.outputs.is_empty()));

    let second = p.run(&[]);
    assert!(second.ran().is_empty(), "nothing may run again: {:?}", second.ran());
    assert!(second.results.iter().all(|r| r.outcome == Outcome::Cached));

    let third = p.run(&["t=8"]);
    assert_eq!(third.ran(), ["student", "report"]);

    // Back to the old value: both versions are in the store, so nothing runs.
    assert!(p.run(&[]).ran().is_empty());
}

#[test]
fn plan_says_why_each_step_runs() {
    let p = Project::new(WORKFLOW);
    let plan = p.plan(&[]);
    assert_eq!(status_of(&plan, "teacher"), &Status::Run(vec!["never run (no lockfile)".into()]));
    p.run(&[]);
    let plan = p.plan(&["t=8", "hidden=[8]"]);
    assert_eq!(status_of(&plan, "teacher"), &Status::Cached);
    assert_eq!(
        status_of(&plan, "student"),
        &Status::Run(vec![
            "config `model.hidden`: [16] → [8]".into(),
            "config `loss.kd.temperature`: 4.0 → 8.0".into()
        ])
    );
    assert_eq!(
        status_of(&plan, "report"),
        &Status::Run(vec!["input `models[1]` changed: upstream `student` will run".into()])
    );
}

#[test]
fn a_changed_input_file_is_named_in_the_plan_and_reruns_the_step() {
    let csv = "a,b,label\n0.1,0.2,0\n0.9,0.8,1\n0.2,0.1,0\n0.8,0.9,1\n";
    let p = Project::new("steps:\n  table: {kind: dataset, source: csv, path: t.csv, label: label}\n");
    p.write("t.csv", csv);
    assert_eq!(p.run(&[]).ran(), ["table"]);
    assert!(p.run(&[]).ran().is_empty());
    p.write("t.csv", format!("{csv}0.5,0.5,1\n"));
    let plan = p.plan(&[]);
    // Named as the workflow writes it: the key does not depend on where the workflow or the shell are.
    assert_eq!(status_of(&plan, "table"), &Status::Run(vec!["file `t.csv` changed".into()]));
    assert_eq!(p.run(&[]).ran(), ["table"]);
}

#[test]
fn only_and_force_select_steps() {
    let p = Project::new(WORKFLOW);
    let only = p.run_with(&[], PlanOptions { only: Some("teacher".into()), ..Default::default() });
    assert_eq!(only.ran(), ["digits", "teacher"]);
    let forced = p.run_with(&[], PlanOptions { force: vec!["teacher".into()], only: Some("teacher".into()) });
    assert_eq!(forced.ran(), ["teacher"]);
    // A forced step recomputes its own key: its dependants stay cached.
    let rest = p.run(&[]);
    assert_eq!(rest.ran(), ["logits", "student", "baseline", "report"]);
}

#[test]
fn a_partial_step_left_by_a_crash_is_never_trusted() {
    let p = Project::new(WORKFLOW);
    p.run(&[]);
    let plan = p.plan(&[]);
    let teacher_key = &plan.entries.iter().find(|e| e.id == "teacher").unwrap().key;
    let store = Store::open(&p.store()).unwrap();
    let dir = store.step_dir(teacher_key);
    // A crash between writing outputs and the manifest: the directory exists, its manifest does not.
    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    // And a crashed run's temporary directory.
    let stray = p.store().join("tmp").join("deadbeef.1.0");
    std::fs::create_dir_all(stray.join("model")).unwrap();
    std::fs::write(stray.join("model").join("weights.safetensors"), b"half a file").unwrap();

    assert_eq!(status_of(&p.plan(&[]), "teacher"), &Status::Run(vec!["outputs missing from the store".into()]));
    let again = p.run(&[]);
    assert_eq!(
        again.ran(),
        ["teacher"],
        "only the untrusted step reruns; its key is unchanged so dependants stay cached"
    );
    assert!(!stray.exists(), "stray temporary directories are removed");
    assert!(store.is_complete(teacher_key));
}

#[test]
fn a_killed_run_leaves_no_output_that_a_later_run_would_trust() {
    let slow = WORKFLOW.replace("hidden: [32]}, epochs: 3,", "hidden: [256, 256]}, epochs: 5000,");
    let p = Project::new(&slow);
    let mut child = Command::new(env!("CARGO_BIN_EXE_anbiq"))
        .args(["run", "--store"])
        .arg(p.store())
        .arg(p.workflow_path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains("running") && line.contains("teacher") {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap(); // SIGKILL: no cleanup code runs
    child.wait().unwrap();

    let tmp_entries = std::fs::read_dir(p.store().join("tmp")).unwrap().count();
    assert_eq!(tmp_entries, 1, "the killed step's work is in tmp/");
    let plan = p.plan(&[]);
    assert_eq!(status_of(&plan, "digits"), &Status::Cached, "steps finished before the kill are kept");
    assert!(matches!(status_of(&plan, "teacher"), Status::Run(_)), "the interrupted step must run again");
    let key = &plan.entries.iter().find(|e| e.id == "teacher").unwrap().key;
    assert!(!Store::open(&p.store()).unwrap().step_dir(key).exists());
}

#[test]
fn a_failing_step_stops_its_descendants_only() {
    let failing = format!("{WORKFLOW}  kept: {{kind: filter, data: logits, keep: {{min_confidence: 1.0}}}}\n  late: {{kind: distill, teacher: logits, data: kept, model: {{arch: mlp, hidden: [4]}}, loss: {{kd: {{}}}}, epochs: 1}}\n");
    let p = Project::new(&failing);
    let report = p.run_report(&[]);
    let outcome = |id: &str| report.results.iter().find(|r| r.id == id).unwrap().outcome.clone();
    match outcome("kept") {
        Outcome::Failed { error } => assert!(error.contains("keeps no samples"), "{error}"),
        other => panic!("kept should fail: {other:?}"),
    }
    assert_eq!(outcome("late"), Outcome::Skipped { because: "`kept` did not complete".into() });
    assert!(matches!(outcome("report"), Outcome::Ran { .. }), "independent branches finish");
    let lock = p.lock();
    assert!(lock.step("kept").is_none() && lock.step("late").is_none());
    assert!(std::fs::read_dir(p.store().join("tmp")).unwrap().next().is_none(), "a failed step leaves nothing behind");
}

#[test]
fn gc_drops_what_no_run_recorded_in_the_store_references() {
    let p = Project::new(WORKFLOW);
    p.run(&[]);
    p.run(&["t=8"]);
    // Each parameter set's last run is a root of the store: the t=4 results stay although the lockfile beside the
    // workflow now describes the t=8 run.
    let dry = run::gc(&p.store(), true).unwrap();
    assert_eq!((dry.kept, dry.removed), (8, 0));
    // Editing the workflow replaces its t=4 root: the old student and report are no longer referenced.
    p.write("wf.yaml", WORKFLOW.replace("    epochs: 2\n  baseline", "    epochs: 3\n  baseline"));
    assert_eq!(p.run(&[]).ran(), ["student", "report"]);
    let real = run::gc(&p.store(), false).unwrap();
    assert_eq!((real.kept, real.removed), (8, 2), "{real:?}");
    assert!(p.run(&[]).ran().is_empty(), "what the roots reference survives");
}

#[test]
fn graph_renders_dot_and_mermaid_with_field_labels() {
    let p = Project::new(WORKFLOW);
    let wf = p.load(&[]);
    let dag = Dag::build(&wf).unwrap();
    let dot = render::render(&wf, &dag, render::Format::Dot);
    assert!(dot.starts_with("digraph \"small\" {"), "{dot}");
    assert!(dot.contains("\"digits\" -> \"teacher\" [label=\"data ← train\"];"), "{dot}");
    assert!(dot.contains("\"student\" -> \"report\" [label=\"models[1]\"];"), "{dot}");
    let mermaid = render::render(&wf, &dag, render::Format::Mermaid);
    assert!(mermaid.starts_with("flowchart LR\n"));
    assert!(mermaid.contains("s2 -->|\"teacher\"| s3"), "{mermaid}");
    assert_eq!(mermaid.matches("-->").count(), dag.edges().len());
}

fn anbiq(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_anbiq")).args(args).current_dir(dir).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn cli_exit_codes_mean_something() {
    let p = Project::new(WORKFLOW);
    let dir = p.dir.path();
    std::fs::write(dir.join("bad.yaml"), "steps:\n  a: {kind: dataset, source: digitz}\n").unwrap();
    let (code, _, err) = anbiq(&["validate", "bad.yaml"], dir);
    assert_eq!(code, 2);
    assert!(err.starts_with("bad.yaml:2:30: "), "{err}");

    let (code, out, _) = anbiq(&["validate", "wf.yaml"], dir);
    assert_eq!((code, out.as_str()), (0, "wf.yaml: ok (6 steps)\n"));

    let (code, _, err) = anbiq(&["run", "wf.yaml", "--only", "nope"], dir);
    assert_eq!(code, 2, "{err}");

    let (code, out, _) = anbiq(&["run", "wf.yaml", "--only", "digits", "-q"], dir);
    assert_eq!(code, 0);
    assert!(out.starts_with("digits"), "{out}");

    let failing =
        WORKFLOW.replace("report:", "kept: {kind: filter, data: logits, keep: {min_confidence: 1.0}}\n  report:");
    std::fs::write(dir.join("fail.yaml"), failing).unwrap();
    let (code, _, err) = anbiq(&["run", "fail.yaml", "-q"], dir);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("1 step(s) failed"), "{err}");

    let (code, out, _) = anbiq(&["metrics", "fail.yaml", "--json"], dir);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(json["report"]["teacher"]["accuracy"].as_f64().unwrap() > 0.5, "{json}");
}

/// What a person reads after a run: the summary, the metrics in the order and columns asked for, and two runs'
/// metrics side by side.
#[test]
fn the_command_line_shows_what_happened_and_what_moved() {
    let p = Project::new(WORKFLOW);
    let dir = p.dir.path();
    let (code, out, err) = anbiq(&["-q", "run", "wf.yaml", "--lock", "a.lock"], dir);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("summary: 6 ran, 0 cached, 0 failed"), "{out}");
    let results = out.lines().find(|l| l.starts_with("results: report accuracy: ")).expect(&out);
    assert!(["teacher ", "student ", "baseline "].iter().all(|m| results.contains(m)), "{results}");

    // Models in the step's order (not by name), only the columns asked for, counts as integers.
    let (code, out, _) = anbiq(&["metrics", "wf.yaml", "--json", "--columns", "errors,accuracy"], dir);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let report = json["report"].as_object().unwrap();
    assert_eq!(report.keys().collect::<Vec<_>>(), ["teacher", "student", "baseline"]);
    assert_eq!(report["teacher"].as_object().unwrap().keys().collect::<Vec<_>>(), ["errors", "accuracy"]);
    assert!(report["teacher"]["errors"].is_i64(), "{out}");

    let (code, _, err) = anbiq(&["-q", "run", "wf.yaml", "--set", "t=2", "--lock", "b.lock"], dir);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = anbiq(&["diff", "a.lock", "b.lock"], dir);
    assert_eq!(code, 1, "they differ");
    assert!(out.contains("step `student`: config `loss.kd.temperature`: 4.0 → 2.0"), "{out}");
    assert!(out.contains("metrics of `report`  (A = a.lock, B = b.lock)"), "{out}");
    let row = out.lines().find(|l| l.trim_start().starts_with("student.accuracy")).expect(&out);
    let cells: Vec<f64> = row.split_whitespace().skip(1).map(|c| c.parse().unwrap()).collect();
    assert!((cells[1] - cells[0] - cells[2]).abs() < 1e-4, "B − A: {row}");
    let (_, out, _) = anbiq(&["diff", "a.lock", "b.lock", "--json"], dir);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let moved = json["metrics"].as_array().unwrap();
    assert!(moved.iter().any(|m| m["step"] == "report" && m["metric"] == "student.accuracy"), "{out}");
    assert!(moved.iter().all(|m| m["metric"] != "teacher.accuracy"), "the teacher did not change: {out}");
}

/// With `--jobs 2` on a terminal, two steps training at once draw two bars, each named by its step, with its epoch
/// and rate, on lines of their own. A pseudo-terminal from util-linux's `script` stands in for the user's.
#[test]
fn two_steps_at_once_draw_two_named_bars() {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI needs util-linux's `script` for this test");
        eprintln!("skipped: no `script` (util-linux) to give anbiq a terminal");
        return;
    }
    let two = "\
name: two
seed: 1
steps:
  digits: {kind: dataset, source: digits}
  wide: {kind: train, data: digits.train, model: {arch: mlp, hidden: [256]}, epochs: 25}
  narrow: {kind: train, data: digits.train, model: {arch: mlp, hidden: [128]}, epochs: 25}
";
    let p = Project::new(two);
    const COLUMNS: usize = 160;
    let command = format!("stty cols {COLUMNS} rows 40; exec {} run wf.yaml --jobs 2", env!("CARGO_BIN_EXE_anbiq"));
    let out = Command::new("script").args(["-qefc", &command, "/dev/null"]).current_dir(p.dir.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // The terminal's rows as plain text: escape sequences (cursor moves, colours) and line breaks end one, and a
    // full-width bar wraps onto the next row (indicatif relies on that wrap between bars).
    let escape = regex::Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]").unwrap();
    let plain = escape.replace_all(&text, "\n");
    let rows: Vec<String> = plain
        .split(['\n', '\r'])
        .flat_map(|segment| {
            segment.chars().collect::<Vec<_>>().chunks(COLUMNS).map(String::from_iter).collect::<Vec<_>>()
        })
        .collect();
    let lines: Vec<&str> = rows.iter().map(String::as_str).filter(|l| l.contains(": train")).collect();
    let bar =
        regex::Regex::new(r"^\s*(wide|narrow): train \[[0-9:]+\] .* (\d+)/(\d+) [0-9.]+\S*/s ETA \S+ epoch (\d+)/25")
            .unwrap();
    let drawn: Vec<(usize, &str, bool)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| bar.captures(l).map(|c| (i, c.get(1).unwrap().as_str(), c[2] != c[3])))
        .collect();
    for step in ["wide", "narrow"] {
        assert!(drawn.iter().any(|d| d.1 == step && d.2), "no bar in progress for `{step}` in:\n{}", lines.join("\n"));
    }
    assert!(lines.iter().all(|l| !(l.contains("wide: train") && l.contains("narrow: train"))), "two bars on one line");
    // Both in progress at once: each one's first unfinished frame comes before the other's last.
    let span = |step: &str| {
        let at: Vec<usize> = drawn.iter().filter(|d| d.1 == step && d.2).map(|d| d.0).collect();
        (at[0], at[at.len() - 1])
    };
    let (wide, narrow) = (span("wide"), span("narrow"));
    assert!(wide.0 < narrow.1 && narrow.0 < wide.1, "the bars were not drawn together: {wide:?} {narrow:?}");
}

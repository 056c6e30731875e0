//! Every kind of workflow error is reported as `file:line:col: message`, all of a file's problems at once.

use std::path::Path;

use anbiq::workflow::{self, Override};

/// The diagnostics of a workflow that must not load, one `file:line:col: message` per line.
fn errors(yaml: &str) -> Vec<String> {
    errors_with(yaml, &[])
}

fn errors_with(yaml: &str, overrides: &[Override]) -> Vec<String> {
    let path = Path::new("wf.yaml");
    let diagnostics = match workflow::parse(path, yaml, overrides) {
        Ok(wf) => match anbiq::graph::Dag::build(&wf) {
            Ok(_) => panic!("workflow unexpectedly valid:\n{yaml}"),
            Err(d) => d,
        },
        Err(d) => d,
    };
    diagnostics.to_string().lines().map(str::to_string).collect()
}

fn assert_has(errors: &[String], expected_prefix: &str, expected_text: &str) {
    assert!(
        errors.iter().any(|e| e.starts_with(expected_prefix) && e.contains(expected_text)),
        "expected an error starting {expected_prefix:?} containing {expected_text:?}, got:\n{}",
        errors.join("\n")
    );
}

const VALID: &str = "\
name: ok
seed: 7
params: {frac: 0.2}
steps:
  digits: {kind: dataset, source: digits, split: {test: \"${params.frac}\"}}
";

#[test]
fn a_valid_workflow_loads() {
    let wf = workflow::parse(Path::new("wf.yaml"), VALID, &[]).expect("valid");
    assert_eq!(wf.name, "ok");
    assert_eq!(wf.seed, 7);
    assert_eq!(wf.steps.len(), 1);
    assert_eq!(wf.steps[0].kind, "dataset");
}

#[test]
fn yaml_syntax_error_has_a_location() {
    let errs = errors("steps:\n  a: {kind: dataset\n  b: 1\n");
    assert!(errs[0].starts_with("wf.yaml:"), "{errs:?}");
    let loc: Vec<&str> = errs[0].splitn(4, ':').collect();
    assert!(loc[1].parse::<u32>().is_ok() && loc[2].parse::<u32>().is_ok(), "{errs:?}");
}

#[test]
fn a_syntax_error_does_not_hide_the_other_steps_problems() {
    let errs = errors(
        "steps:\n  a: {kind: dataset, source: digits\n  b: {kind: train, data: a.train}\n  c: {kind: evaluate, data: a.test, \
         models: [b]}\n  d: {kind: dataset, source: digitz}\n",
    );
    assert!(errs[0].starts_with("wf.yaml:3:") && errs[0].contains("syntax error"), "{errs:?}");
    assert_has(&errs, "wf.yaml:5:30:", "unknown variant `digitz`");
    // The steps cut around the syntax error are not reported again as unknown where they are used.
    assert_eq!(errs.len(), 2, "{errs:?}");
}

#[test]
fn a_syntax_error_in_the_only_step_is_the_only_error() {
    let errs = errors("steps:\n  a: {kind: dataset, source: digits\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    // Two steps with a syntax error each: both reported.
    let errs = errors("steps:\n  a:\n    kind: [dataset\n  b: {kind: dataset}\n  c:\n    source: 'digits\n");
    assert!(errs.len() == 2 && errs[0].starts_with("wf.yaml:4:") && errs[1].starts_with("wf.yaml:6:"), "{errs:?}");
}

#[test]
fn one_bad_step_is_reported_once() {
    let errs = errors(
        "steps:\n  d: {kind: dataset, source: digits, shuffle: true}\n  t: {kind: train, data: d.train, model: \
         {arch: mlp, hidden: [4]}, epochs: 1}\n  e: {kind: evaluate, data: d.test, models: [t], after: [d]}\n",
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_has(&errs, "wf.yaml:2:38:", "unknown field `shuffle`");
}

#[test]
fn unknown_top_level_key() {
    let errs = errors("name: x\nstepz: {}\nsteps:\n  d: {kind: dataset, source: digits}\n");
    assert_has(&errs, "wf.yaml:2:1:", "unknown top-level key `stepz`");
}

#[test]
fn unknown_key_in_a_step() {
    let errs = errors("steps:\n  d: {kind: dataset, source: digits, shuffle: true}\n");
    assert_has(&errs, "wf.yaml:2:38:", "unknown field `shuffle`");
}

#[test]
fn unknown_step_kind_lists_the_known_ones() {
    let errs = errors("steps:\n  d:\n    kind: datset\n    source: digits\n");
    assert_has(&errs, "wf.yaml:3:11:", "unknown step kind `datset` (known: dataset");
}

#[test]
fn wrong_type() {
    let errs = errors("steps:\n  d: {kind: dataset, source: digits, limit: lots}\n");
    assert_has(&errs, "wf.yaml:2:45:", "lots");
    let errs = errors("seed: -3\nsteps:\n  d: {kind: dataset, source: digits}\n");
    assert_has(&errs, "wf.yaml:1:7:", "`seed` must be a non-negative integer");
    let errs = errors("steps:\n  d: {kind: dataset, source: digits, seed: 3}\n");
    assert_has(
        &errs,
        "wf.yaml:2:44:",
        "step `d`: `seed` names the streams the step draws from (a non-empty string), found integer",
    );
}

#[test]
fn duplicate_step_ids() {
    let errs = errors("steps:\n  d: {kind: dataset, source: digits}\n  d: {kind: dataset, source: digits}\n");
    assert_has(&errs, "wf.yaml:3:3:", "duplicate key `d`");
}

#[test]
fn all_problems_of_a_file_are_reported_at_once() {
    let errs = errors("bogus: 1\nsteps:\n  a: {kind: nope}\n  b: {kind: dataset, source: digits, limit: x}\n");
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert_has(&errs, "wf.yaml:1:1:", "bogus");
    assert_has(&errs, "wf.yaml:3:13:", "nope");
    assert_has(&errs, "wf.yaml:4:45:", "x");
}

#[test]
fn interpolation_errors_name_the_parameter() {
    let errs = errors(
        "params: {alpha: 0.1}\nsteps:\n  d: {kind: dataset, source: digits, split: {test: \"${params.alpah}\"}}\n",
    );
    assert_has(&errs, "wf.yaml:3:", "unknown parameter `alpah`");
}

#[test]
fn set_overrides_a_parameter_and_rejects_unknown_ones() {
    let set = |s: &str| s.parse::<Override>().unwrap();
    let wf = workflow::parse(Path::new("wf.yaml"), VALID, &[set("frac=0.5")]).expect("valid");
    assert_eq!(wf.params["frac"].to_json(), serde_json::json!(0.5));
    let errs = errors_with(VALID, &[set("fraction=0.5")]);
    assert_has(&errs, "wf.yaml:1:1:", "--set fraction: the workflow has no parameter `fraction` (known: frac)");
}

const CHAIN: &str = "\
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.2}}
  teacher: {kind: train, data: digits.train, model: {arch: mlp, hidden: [8]}, epochs: 1}
";

#[test]
fn dangling_reference_names_the_missing_step() {
    let yaml = format!("{CHAIN}  logits: {{kind: infer, model: teachr, data: digits.train}}\n");
    let errs = errors(&yaml);
    assert_has(&errs, "wf.yaml:4:32:", "refers to unknown step `teachr` (did you mean `teacher`?)");
}

#[test]
fn reference_to_a_missing_output_lists_the_outputs() {
    let yaml = format!("{CHAIN}  logits: {{kind: infer, model: teacher, data: digits.val}}\n");
    let errs = errors(&yaml);
    assert_has(&errs, "wf.yaml:4:47:", "step `digits` has no output `val` (its outputs: train, test)");
}

#[test]
fn reference_of_the_wrong_kind() {
    let yaml = format!("{CHAIN}  logits: {{kind: infer, model: digits.train, data: teacher}}\n");
    let errs = errors(&yaml);
    assert_has(&errs, "wf.yaml:4:32:", "`model` expects a model, but `digits.train` is a dataset");
    assert_has(&errs, "wf.yaml:4:52:", "`data` expects a dataset, but `teacher` is a model");
}

#[test]
fn cycles_name_their_steps_in_order() {
    let yaml = "\
steps:
  digits: {kind: dataset, source: digits}
  a: {kind: train, data: digits.train, model: {arch: mlp, hidden: [4]}, epochs: 1, after: [c]}
  b: {kind: train, data: digits.train, model: {arch: mlp, hidden: [4]}, epochs: 1, after: [a]}
  c: {kind: train, data: digits.train, model: {arch: mlp, hidden: [4]}, epochs: 1, after: [b]}
";
    let errs = errors(yaml);
    assert_eq!(errs, vec!["wf.yaml:3:3: cycle: a → b → c → a"]);
}

#[test]
fn a_step_that_needs_itself_is_a_cycle() {
    let yaml = "steps:\n  a: {kind: dataset, source: digits, after: [a]}\n";
    assert_eq!(errors(yaml), vec!["wf.yaml:2:3: cycle: a → a"]);
}

#[test]
fn bad_training_values_name_the_field() {
    let yaml = "\
steps:
  digits: {kind: dataset, source: digits}
  t: {kind: train, data: digits.train, model: {arch: mlp, hidden: [8, 0]}, epochs: 1, optimizer: {name: sgd, lr: 0}}
  u: {kind: train, data: digits.train, model: {arch: transformer}, epochs: 1}
";
    let errs = errors(yaml);
    assert_has(&errs, "wf.yaml:3:", "hidden[1]");
    assert_has(&errs, "wf.yaml:3:", "lr");
    assert_has(&errs, "wf.yaml:4:", "transformer");
}

#[test]
fn every_shipped_workflow_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let wf = workflow::load(&path, &[]).unwrap_or_else(|d| panic!("{d}"));
            anbiq::graph::Dag::build(&wf).unwrap_or_else(|d| panic!("{d}"));
            checked += 1;
        }
    }
    assert!(checked >= 4, "found only {checked} workflows in {}", dir.display());
}

//! The workflow format's JSON Schema (`anbiq schema`, committed as `workflows/anbiq.schema.json`): current, pointed to by
//! every shipped workflow, and accepting each of them under a real JSON Schema validator, while refusing what
//! `validate` refuses for the same reason.
//!
//! `ANBIQ_BLESS=1 cargo test --test schema` rewrites the committed schema after a config type changed.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn workflows_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows")
}

fn committed() -> PathBuf {
    workflows_dir().join(anbiq::workflow::schema::FILE_NAME)
}

fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workflows_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    files
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(committed()).unwrap()).unwrap();
    jsonschema::draft202012::new(&schema).expect("the schema is a valid draft 2020-12 schema")
}

fn as_json(yaml: &str) -> Value {
    serde_yaml::from_str(yaml).unwrap()
}

fn errors(validator: &jsonschema::Validator, yaml: &str) -> Vec<String> {
    validator.iter_errors(&as_json(yaml)).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

#[test]
fn the_committed_schema_is_what_anbiq_schema_prints() {
    let current = anbiq::workflow::schema::to_text();
    if std::env::var_os("ANBIQ_BLESS").is_some() {
        std::fs::write(committed(), &current).unwrap();
    }
    let on_disk = std::fs::read_to_string(committed()).unwrap_or_default();
    assert!(
        on_disk == current,
        "{} is stale: run `ANBIQ_BLESS=1 cargo test --test schema` (or `anbiq schema -o {0}`) and commit it",
        committed().display()
    );
}

#[test]
fn every_shipped_workflow_points_to_the_schema_and_passes_it() {
    let validator = validator();
    let line = format!("# yaml-language-server: $schema={}", anbiq::workflow::schema::FILE_NAME);
    for path in shipped() {
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().next(), Some(line.as_str()), "{} must start with `{line}`", path.display());
        let problems = errors(&validator, &text);
        assert!(problems.is_empty(), "{}: {problems:#?}", path.display());
    }
}

/// What the parser refuses, the schema refuses too; what it accepts (an interpolated number), the schema accepts.
#[test]
fn the_schema_refuses_what_validate_refuses() {
    let validator = validator();
    let good = "steps:\n  digits: {kind: dataset, source: digits}\n  t:\n    kind: train\n    data: digits\n    \
                model: {arch: mlp, hidden: [8]}\n    epochs: 3\n";
    assert_eq!(errors(&validator, good), Vec::<String>::new());
    let cases = [
        ("epochs: 3", "epoch: 3", "unknown key"),
        ("epochs: 3", "epochs: three", "a word for a number"),
        ("epochs: 3", "epochs: 3\n    keep: best accuracy", "an unknown metric"),
        ("kind: train", "kind: trian", "an unknown kind"),
        ("arch: mlp", "arch: transformer", "an unknown architecture"),
        ("source: digits", "source: digits, shuffle: yes", "unknown dataset key"),
    ];
    for (from, to, what) in cases {
        let bad = good.replacen(from, to, 1);
        assert!(!errors(&validator, &bad).is_empty(), "{what} passed the schema:\n{bad}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.yaml");
        std::fs::write(&path, &bad).unwrap();
        assert!(anbiq::workflow::load(&path, &[]).is_err(), "{what}: `validate` accepts it:\n{bad}");
    }
    let interpolated = format!("params: {{n: 3}}\n{}", good.replace("epochs: 3", "epochs: \"${params.n}\""));
    assert_eq!(errors(&validator, &interpolated), Vec::<String>::new());
    assert!(!errors(&validator, "steps: {}\nseed: -1\n").is_empty(), "a negative seed");
}

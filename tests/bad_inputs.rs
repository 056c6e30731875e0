//! Bad inputs, as a careless user gives them (tests/fixtures/bad/): each is refused with a meaningful exit code and
//! one clear message naming the file and place, never a panic or a C++ backtrace, and none costs the store anything —
//! after every case, the good workflow on the same store is still fully cached and `anbiq verify` is clean.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One bad input: the command (`{}` is the case's workflow), the exit code it must give and text its output must
/// contain (and must not).
struct Case {
    workflow: &'static str,
    command: &'static str,
    code: i32,
    says: &'static str,
    not: &'static [&'static str],
}

const fn case(workflow: &'static str, command: &'static str, code: i32, says: &'static str) -> Case {
    Case { workflow, command, code, says, not: &[] }
}

const CASES: &[Case] = &[
    // Data where it enters: the dataset step refuses it at file:line:column.
    case(
        "csv_mixed_labels",
        "run",
        1,
        "mixed_labels.csv:4:5: label \"x\" is a class name but the column's first label",
    ),
    case("csv_fraction_label", "run", 1, "fraction_label.csv:3:5: label \"0.5\" is not a whole number"),
    case("csv_sparse_label", "run", 1, "sparse_label.csv:3:5: label 100000 would make 100001 classes"),
    case("csv_nan_cell", "run", 1, "nan_cell.csv:3:3: column 2: \"NaN\" is not a finite number"),
    case(
        "csv_huge_cell",
        "run",
        1,
        "huge_cell.csv:2:1: column 1: \"1e400\" is not a finite number (out of f32's range)",
    ),
    case("csv_renamed_class", "run", 1, "class 2 is `emu` in the model (from its training data), `gnu` in the data"),
    case(
        "group_by_length_digits",
        "run",
        1,
        "group_by_length_digits.yaml:3:105: step `model` (train): field `group_by_length`: groups sentences (padded rows)",
    ),
    case("idx_label_255", "run", 1, "t10k-labels-idx1-ubyte: item 1: label 255 would make 256 classes"),
    case("tensors_csv_renamed", "run", 1, "csv_text.safetensors: not a readable safetensors file"),
    case("tensors_empty", "run", 1, "empty.safetensors: not a readable safetensors file: empty"),
    case("tensors_random", "run", 1, "random.safetensors: not a readable safetensors file"),
    case("torchscript_garbage", "run", 1, "garbage.pt is not a TorchScript file"),
    // What needs no run to know: `validate` finds it, at the field.
    case("tensors_directory", "validate", 2, "tensors_directory.yaml:2:50: step `arrays`: `data` is a directory"),
    case(
        "tensors_missing",
        "validate",
        2,
        "tensors_missing.yaml:2:50: step `arrays`: `data/nowhere.safetensors` does not exist",
    ),
    case(
        "torchscript_directory",
        "validate",
        2,
        "torchscript_directory.yaml:2:40: step `teacher`: `torchscript`: data is a directory",
    ),
    case(
        "topk_too_large",
        "validate",
        2,
        "topk_too_large.yaml:4:76: step `logits`: `store.top_k`: 20 is more than the model's 10 classes",
    ),
    case(
        "store_top_k_and_sample",
        "validate",
        2,
        "store_top_k_and_sample.yaml:4:87: step `logits`: `store.sample`: give `top_k` or `sample`, not both",
    ),
    case(
        "store_slots_without_sample",
        "validate",
        2,
        "store_slots_without_sample.yaml:4:86: step `logits`: `store.slots`: applies to `sample`",
    ),
    case(
        "hidden_map_empty",
        "validate",
        2,
        "hidden_map_empty.yaml:4:120: step `student`: `loss.hidden.map`: pair at least one student hidden state",
    ),
    case(
        "nodes_without_ranks",
        "validate",
        2,
        "nodes_without_ranks.yaml:3:107: step `model`: `resources.nodes`: a step runs as one task on one node unless",
    ),
    case("plugin_missing", "validate", 2, "plugin_missing.yaml:10:65: step `student`: `loss[1].plugin.path`"),
    Case {
        workflow: "cascade",
        command: "validate",
        code: 2,
        says: "cascade.yaml:3:43: step `digits`: unknown field `shuffle`",
        not: &["unknown step", "\n"],
    },
    Case {
        workflow: "matrix_not_scalar",
        command: "validate",
        code: 2,
        says: "matrix_not_scalar.yaml:5:22: matrix values are scalars, found sequence",
        not: &["expected", "\n"],
    },
    // A wrong gradient is found before the first training step.
    case("plugin_wrong_gradient", "run", 1, "its gradient disagrees with central differences"),
    // The bytes of the workflow file itself.
    case("nul_byte", "validate", 2, "nul_byte.yaml:4:1: a NUL byte"),
    case("escape_sequence", "validate", 2, "escape_sequence.yaml:1:7: control character U+001B"),
    case("latin1", "validate", 2, "latin1.yaml:1:10: byte 0xe9 is not UTF-8 text"),
    case("with_bom", "validate", 0, "with_bom.yaml: ok (1 step)"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The corpus in a temporary directory, with what cannot be committed as text made here.
fn corpus() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad");
    copy_dir(&repo().join("tests/fixtures/bad"), &bad);
    copy_dir(&repo().join("tests/fixtures/plugins"), &dir.path().join("plugins"));
    let steps = "steps:\n  digits: {kind: dataset, source: digits}\n";
    std::fs::write(bad.join("nul_byte.yaml"), format!("name: x\n{steps}\0  lost: {{kind: dataset, source: digits}}\n"))
        .unwrap();
    std::fs::write(bad.join("escape_sequence.yaml"), format!("name: \x1b[1mx\n{steps}")).unwrap();
    std::fs::write(bad.join("latin1.yaml"), [b"name: caf\xe9\n".as_slice(), steps.as_bytes()].concat()).unwrap();
    std::fs::write(bad.join("with_bom.yaml"), format!("\u{feff}name: x\n{steps}")).unwrap();
    // MNIST-format files: 20 training digits 0..9, and a test label byte of 255.
    let mnist = bad.join("mnist");
    std::fs::create_dir(&mnist).unwrap();
    let idx = |name: &str, dims: &[usize], data: &[u8]| anbiq::data::idx::write(&mnist.join(name), dims, data).unwrap();
    idx("train-images-idx3-ubyte", &[20, 2, 2], &[7; 80]);
    idx("train-labels-idx1-ubyte", &[20], &(0..20).map(|i| i % 10).collect::<Vec<u8>>());
    idx("t10k-images-idx3-ubyte", &[3, 2, 2], &[7; 12]);
    idx("t10k-labels-idx1-ubyte", &[3], &[1, 255, 3]);
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Runs `anbiq ARGS` in `dir`: exit code and stdout + stderr.
fn anbiq(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_anbiq")).args(args).current_dir(dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// What no output may contain: a Rust panic or a C++ frame.
fn assert_composed(what: &str, text: &str) {
    for sign in ["panicked", "frame #", "Exception raised from", "RUST_BACKTRACE"] {
        assert!(!text.contains(sign), "{what} printed {sign:?}:\n{text}");
    }
}

/// The good workflow, run on `store`: everything cached, and the store verifies.
fn assert_store_unharmed(dir: &Path, store: &str, after: &str) {
    let (code, text) = anbiq(dir, &["-q", "run", "--store", store, "good.yaml"]);
    assert_eq!(code, 0, "after {after}: the good workflow failed:\n{text}");
    assert!(
        text.contains("summary: 0 ran, 4 cached, 0 failed"),
        "after {after}: the good workflow is no longer cached:\n{text}"
    );
    let (code, text) = anbiq(dir, &["-q", "verify", "--store", store, "good.yaml"]);
    assert_eq!(code, 0, "after {after}: verify found damage:\n{text}");
}

#[test]
fn every_bad_input_is_refused_clearly_and_costs_the_store_nothing() {
    let corpus = corpus();
    let dir = corpus.path().join("bad");
    let (code, text) = anbiq(&dir, &["-q", "run", "--store", "store", "good.yaml"]);
    assert_eq!(code, 0, "{text}");
    let mut wrong = Vec::new();
    for case in CASES {
        let file = format!("{}.yaml", case.workflow);
        let args: Vec<&str> = match case.command {
            "run" => vec!["-q", "run", "--store", "store", &file],
            command => vec!["-q", command, &file],
        };
        let (code, text) = anbiq(&dir, &args);
        assert_composed(case.workflow, &text);
        let body = text.trim_end();
        let unwanted = case.not.iter().find(|n| body.contains(**n));
        if code != case.code || !text.contains(case.says) || unwanted.is_some() {
            wrong.push(format!(
                "{}: expected exit {} and {:?}{}, got exit {code}:\n{text}",
                case.workflow,
                case.code,
                case.says,
                unwanted.map(|n| format!(" without {n:?}")).unwrap_or_default()
            ));
        }
        assert_store_unharmed(&dir, "store", case.workflow);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn plan_says_a_step_failed_last_time() {
    let corpus = corpus();
    let dir = corpus.path().join("bad");
    let (code, _) = anbiq(&dir, &["-q", "run", "--store", "store", "csv_nan_cell.yaml"]);
    assert_eq!(code, 1);
    let (code, text) = anbiq(&dir, &["plan", "--store", "store", "csv_nan_cell.yaml"]);
    assert_eq!(code, 0, "{text}");
    let table = text.lines().find(|l| l.contains(" table ")).unwrap_or_default();
    assert!(
        table.contains("will run: failed last time with these inputs: data/nan_cell.csv:3:3: column 2: \"NaN\""),
        "{text}"
    );
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let corpus = corpus();
    let mut child = Command::new(env!("CARGO_BIN_EXE_anbiq"))
        .args(["plan", "--json", "--store", "store", "good.yaml"])
        .current_dir(corpus.path().join("bad"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // like `| head` that has read enough
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), stderr.as_ref()), (Some(0), ""), "anbiq plan --json into a closed pipe");
}

/// A damaged store (a hand-edited artifact) is caught when the artifact is read, not as "loss is NaN" or a libtorch
/// index panic.
#[test]
fn damaged_logits_are_refused_when_read() {
    let corpus = corpus();
    let dir = corpus.path().join("bad");
    let good = std::fs::read_to_string(dir.join("good.yaml")).unwrap();
    let filtered = good + "  kept: {kind: filter, data: logits, keep: {min_confidence: 0.1}}\n";
    std::fs::write(dir.join("filtered.yaml"), filtered).unwrap();
    let (code, text) = anbiq(&dir, &["-q", "run", "--store", "store", "good.yaml"]);
    assert_eq!(code, 0, "{text}");
    let lock = anbiq::run::Lockfile::read(&dir.join("good.lock")).unwrap().expect("a lockfile");
    let key = &lock.step("logits").unwrap().key;
    let file = dir.join("store/steps").join(key.to_string()).join("logits/logits.safetensors");
    let original = std::fs::read(&file).unwrap();
    let edit = |name: &str, value: f64| {
        let mut tensors = tch::Tensor::read_safetensors(&file).unwrap();
        let (_, t) = tensors.iter_mut().find(|(n, _)| n == name).unwrap();
        let mut first = if t.dim() == 1 { t.get(0) } else { t.get(0).get(0) };
        let _ = first.fill_(value);
        let named: Vec<(&str, &tch::Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        tch::Tensor::write_safetensors(&named, &file).unwrap();
    };
    for (name, value, says) in [
        ("logits", f64::NAN, "`logits` holds NaN at element 0"),
        ("predictions", 32000.0, "`predictions` holds class id 32000, outside 0..10"),
    ] {
        std::fs::write(&file, &original).unwrap();
        edit(name, value);
        let (code, text) = anbiq(&dir, &["-q", "run", "--store", "store", "filtered.yaml"]);
        assert_composed(name, &text);
        assert!(
            code == 1 && text.contains(says) && text.contains("the artifact is damaged"),
            "{name}: exit {code}\n{text}"
        );
    }
}

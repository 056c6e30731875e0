//! WebAssembly loss plugins: the host against hand-written WAT fixtures (tests/fixtures/plugins), so these tests
//! need no wasm toolchain. A tensor-style KD agrees with the native kd bit for bit and trains identical weights;
//! a dense-style loss injects its gradient; every hostile module ends in a clean, named error while the engine
//! carries on; the module's bytes are part of the cache key. The shipped plugins built by
//! scripts/build-plugins.sh are checked too when plugins/build/ has them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anbiq::loss::{DistillLoss, KdLoss, LossInput, PluginTerm, Target, Temperature};
use anbiq::plugin::{self, CallInput, ErrorKind, Limits, PluginError, Runner};
use anbiq::run::{Outcome, Status};
use tch::{Kind, Reduction, Tensor};

mod common;
use common::Project;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/plugins").join(name)
}

fn params(pairs: &[(&str, serde_json::Value)]) -> BTreeMap<String, serde_json::Value> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// A batch: student logits that require grad, teacher logits, labels.
fn batch(seed: i64, b: i64, c: i64) -> (Tensor, Tensor, Tensor) {
    tch::manual_seed(seed);
    let student = (Tensor::randn([b, c], (Kind::Float, tch::Device::Cpu)) * 2.0).set_requires_grad(true);
    let teacher = Tensor::randn([b, c], (Kind::Float, tch::Device::Cpu)) * 3.0;
    let labels = Tensor::randint(c, [b], (Kind::Int64, tch::Device::Cpu));
    (student, teacher, labels)
}

/// Loss value and d loss / d student, for a classifier's batch (`sequence_len` None) or a language model's token rows.
fn value_and_grad(
    loss: &dyn DistillLoss,
    (student, teacher, labels): (&Tensor, &Tensor, &Tensor),
    sequence_len: Option<i64>,
) -> (f64, Tensor) {
    let s = student.detach().set_requires_grad(true);
    let l = loss
        .loss(&LossInput {
            student: &s,
            teacher: Target::Dense(teacher),
            labels,
            progress: 0.3,
            sequence_len,
            features: None,
        })
        .unwrap();
    l.backward();
    (l.double_value(&[]), s.grad().detach().copy())
}

fn term(path: PathBuf, p: BTreeMap<String, serde_json::Value>, limits: Limits) -> PluginTerm {
    PluginTerm { path, params: p, limits, check_gradient: true, resolved: None }
}

fn runner(name: &str, limits: Limits) -> Result<Runner, PluginError> {
    Runner::new(plugin::load(&fixture(name))?, &BTreeMap::new(), limits)
}

fn call(r: &mut Runner, progress: f64) -> Result<Tensor, PluginError> {
    let (student, teacher, labels) = batch(1, 8, 5);
    r.loss(&CallInput { student: &student, teacher: &teacher, labels: &labels, progress })
}

fn small(fuel: u64) -> Limits {
    Limits { fuel, ..Limits::default() }
}

#[track_caller]
fn assert_fails(r: Result<impl std::fmt::Debug, PluginError>, kind: ErrorKind, parts: &[&str]) -> String {
    let e = r.expect_err("the plugin must fail");
    let text = e.to_string();
    assert_eq!(e.kind, kind, "{text}");
    for part in parts {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
    text
}

#[test]
fn tensor_style_kd_equals_native_kd_bit_for_bit() {
    for (t, alpha) in [(4.0, 0.9), (2.0, 0.5), (1.0, 1.0)] {
        let native = KdLoss { temperature: Temperature::Constant(t), alpha };
        let wasm =
            term(fixture("kd.wat"), params(&[("temperature", t.into()), ("alpha", alpha.into())]), Limits::default())
                .build()
                .unwrap();
        for seed in 0..3 {
            let (s, te, y) = batch(seed, 16, 10);
            let (v1, g1) = value_and_grad(&native, (&s, &te, &y), None);
            let (v2, g2) = value_and_grad(&wasm, (&s, &te, &y), None);
            assert_eq!(v1, v2, "value, T={t} α={alpha}");
            assert!(g1.equal(&g2), "gradient, T={t} α={alpha}: max diff {}", (&g1 - &g2).abs().max().double_value(&[]));
        }
    }
}

#[test]
fn sequence_logits_reach_plugins_as_batch_time_vocab() {
    // A language model's batch as the distill step gives it to losses: B·T token rows of V, and T.
    let (b, t, v) = (3, 5, 7);
    let (s, te, y) = batch(4, b * t, v);
    let probe = |name: &str, sequence_len| {
        // The probes return their inputs' shapes as the loss and a made-up gradient: no gradient check.
        let loss = PluginTerm { check_gradient: false, ..term(fixture(name), BTreeMap::new(), Limits::default()) };
        let loss = loss.build().unwrap();
        value_and_grad(&loss, (&s, &te, &y), sequence_len)
    };
    assert_eq!(probe("shape_probe.wat", None).0, 1221.0, "classifier: [B, C], [B, C], [B], seq_len 1");
    assert_eq!(probe("shape_probe.wat", Some(t)).0, (1000 * t + 332) as f64, "[B, T, V], [B, T, V], [B, T], seq_len T");
    // The same module declaring ABI version 1 gets the token rows that version promised.
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("shape_probe_v1.wat");
    let wat = std::fs::read_to_string(fixture("shape_probe.wat")).unwrap();
    let declare = |v: i32| format!("(func (export \"anbiq_abi_version\") (result i32) (i32.const {v}))");
    assert!(wat.contains(&declare(2)));
    std::fs::write(&v1, wat.replace(&declare(2), &declare(1))).unwrap();
    let loss = term(v1, BTreeMap::new(), Limits::default()).build().unwrap();
    assert_eq!(value_and_grad(&loss, (&s, &te, &y), Some(t)).0, 1221.0, "ABI 1: [B·T, V] rows, seq_len 1");
    let (value, grad) = probe("shape_probe_dense.wat", Some(t));
    assert_eq!(value, (1000 * b * t + v) as f64, "dense style: B·T rows of V");
    assert_eq!(grad.size(), [b * t, v]);
    assert!(grad.eq(t as f64).all().int64_value(&[]) == 1, "the dense gradient reaches the token rows: {grad}");

    // A plugin averaging per token (kd.wat divides by numel / size(-1)) is the native token-level kd, bit for bit.
    for (temperature, alpha) in [(1.0, 0.5), (2.0, 0.9)] {
        let native = KdLoss { temperature: Temperature::Constant(temperature), alpha };
        let p = params(&[("temperature", temperature.into()), ("alpha", alpha.into())]);
        let wasm = term(fixture("kd.wat"), p, Limits::default()).build().unwrap();
        let (v1, g1) = value_and_grad(&native, (&s, &te, &y), Some(t));
        let (v2, g2) = value_and_grad(&wasm, (&s, &te, &y), Some(t));
        assert_eq!(v1, v2, "value, T={temperature}");
        assert!(g1.equal(&g2), "gradient, T={temperature}: max diff {}", (&g1 - &g2).abs().max().double_value(&[]));
    }
}

#[test]
fn dense_style_injects_the_plugins_gradient() {
    let wasm = term(fixture("mse_dense.wat"), BTreeMap::new(), Limits::default()).build().unwrap();
    // Two batch sizes: the host's guest buffers are reused for the smaller one.
    for (seed, b) in [(0, 32), (1, 7)] {
        let (s, te, y) = batch(seed, b, 10);
        let (v, g) = value_and_grad(&wasm, (&s, &te, &y), None);
        let s2 = s.detach().set_requires_grad(true);
        let expected = s2.mse_loss(&te, Reduction::Mean);
        expected.backward();
        let ev = expected.double_value(&[]);
        assert!(((v - ev) / ev).abs() < 1e-5, "value {v} vs {ev}");
        let gdiff = (&g - s2.grad()).abs().max().double_value(&[]);
        assert!(gdiff < 1e-6, "gradient differs by {gdiff}");
    }
}

#[test]
fn results_and_fuel_are_deterministic() {
    let mut r = Runner::new(
        plugin::load(&fixture("kd.wat")).unwrap(),
        &params(&[("temperature", 3.into())]),
        Limits::default(),
    )
    .unwrap();
    let a = call(&mut r, 0.0).unwrap().double_value(&[]);
    let fuel = r.last_fuel;
    assert!(fuel > 0);
    let b = call(&mut r, 0.0).unwrap().double_value(&[]);
    assert_eq!(a.to_bits(), b.to_bits());
    assert_eq!(fuel, r.last_fuel, "fuel is deterministic");
}

#[test]
fn hostile_modules_fail_at_load_with_the_cause() {
    let load = |name: &str| plugin::load(&fixture(name)).map(|_| ());
    assert_fails(
        load("wasi.wat"),
        ErrorKind::ForbiddenImport,
        &["wasi.wat", "load", "`wasi_snapshot_preview1::fd_write`"],
    );
    assert_fails(load("giant_table.wat"), ErrorKind::Instantiate, &["giant_table.wat", "table", "10000"]);
    assert_fails(load("lying_describe.wat"), ErrorKind::Describe, &["says style `dense`", "anbiq_loss_dense"]);
    assert_fails(load("wrong_abi.wat"), ErrorKind::AbiVersion, &["ABI version 3", "speaks versions 1 to 2"]);
    assert_fails(load("missing_export.wat"), ErrorKind::MissingExport, &["does not export `anbiq_alloc`"]);
    assert_fails(load("malformed_describe.wat"), ErrorKind::Describe, &["anbiq_describe", "malformed describe JSON"]);
    assert_fails(load("describe_out_of_bounds.wat"), ErrorKind::Describe, &["outside its memory"]);
    assert_fails(load("no_such_plugin.wasm"), ErrorKind::Io, &["cannot read"]);
    assert_fails(
        plugin::load_bytes(Path::new("inline.wat"), b"(module (import \"anbiq\" \"open_file\" (func)))").map(|_| ()),
        ErrorKind::ForbiddenImport,
        &["`anbiq::open_file`", "does not define"],
    );
}

#[test]
fn hostile_calls_fail_cleanly_and_the_next_call_gets_a_fresh_instance() {
    let mut r = runner("infinite_loop.wat", small(5_000_000)).unwrap();
    assert_fails(
        call(&mut r, 0.0),
        ErrorKind::OutOfFuel,
        &["`infinite_loop`", "anbiq_loss", "ran out of fuel", "5000000"],
    );

    let timeout = Limits { fuel: u64::MAX / 2, timeout_ms: 100, ..Limits::default() };
    let mut r = runner("infinite_loop.wat", timeout).unwrap();
    let start = std::time::Instant::now();
    assert_fails(call(&mut r, 0.0), ErrorKind::Timeout, &["timed out", "100 ms"]);
    assert!(start.elapsed().as_secs_f64() < 5.0);

    let mut r = runner("memory_bomb.wat", Limits::default()).unwrap();
    assert_fails(call(&mut r, 0.0), ErrorKind::MemoryLimit, &["`memory_bomb`", "64 MiB"]);

    let mut r = runner("recursion.wat", Limits::default()).unwrap();
    assert_fails(call(&mut r, 0.0), ErrorKind::StackOverflow, &["`recursion`", "stack"]);

    let mut r = runner("nan_loss.wat", Limits::default()).unwrap();
    assert_fails(call(&mut r, 0.0), ErrorKind::BadResult, &["`nan_loss`", "loss of NaN"]);

    let mut r = runner("nan_grad_dense.wat", Limits::default()).unwrap();
    assert_fails(call(&mut r, 0.0), ErrorKind::BadResult, &["anbiq_loss_dense", "gradient entry [0, 0] is NaN"]);

    let mut r = runner("bad_handle.wat", Limits::default()).unwrap();
    assert_fails(call(&mut r, 0.0), ErrorKind::HostCall, &["`anbiq::exp`", "bad handle 12345"]);

    let mut r = runner("broadcast_bomb.wat", Limits::default()).unwrap();
    assert_fails(call(&mut r, 0.0), ErrorKind::HostCall, &["`anbiq::mul`", "over the call's budget"]);

    let mut r = runner("undeclared_param.wat", Limits::default()).unwrap();
    assert_fails(call(&mut r, 0.0), ErrorKind::HostCall, &["parameter `beta` is not declared"]);

    // A trap after the guest corrupted its own state: the next call must not see that state.
    let mut r = runner("trap_mid_call.wat", Limits::default()).unwrap();
    assert_fails(call(&mut r, 0.0), ErrorKind::Trap, &["`trap_mid_call`", "anbiq_loss", "unreachable"]);
    let after = call(&mut r, 1.0).expect("a fresh instance after the trap");
    assert!(after.double_value(&[]).is_finite());
    // Same runner keeps working across many calls.
    for _ in 0..3 {
        let _ = call(&mut r, 1.0).unwrap();
    }
}

#[test]
fn parameters_are_checked_against_describe() {
    let kd = || plugin::load(&fixture("kd.wat")).unwrap();
    let e = Runner::new(kd(), &params(&[("temprature", 2.into())]), Limits::default()).map(|_| ());
    assert_fails(e, ErrorKind::Params, &["no parameter `temprature`", "`temperature`, `alpha`"]);
    let e = Runner::new(kd(), &params(&[("alpha", 1.5.into())]), Limits::default()).map(|_| ());
    assert_fails(e, ErrorKind::Params, &["parameter `alpha`", "at most 1"]);
    let e = Runner::new(kd(), &params(&[("alpha", "high".into())]), Limits::default()).map(|_| ());
    assert_fails(e, ErrorKind::Params, &["must be a number"]);
}

// ---- Through the engine -------------------------------------------------------------------------------------------

// `threads: 1` in every workflow here: libtorch's thread count is process-wide, and tests that compare bytes must
// not have a concurrently running test change it (GEMM results depend on it).
const HEAD: &str = "\
name: plugins
seed: 5
threads: 1
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.25}, limit: 400}
  teacher: {kind: train, data: digits.train, model: {arch: mlp, hidden: [32]}, epochs: 2, optimizer: {name: adam, lr: 0.01}}
  logits: {kind: infer, model: teacher, data: digits.train}
";

fn student(loss: &str) -> String {
    format!("  student: {{kind: distill, teacher: logits, data: digits.train, model: {{arch: mlp, hidden: [16]}}, loss: {loss}, epochs: 2}}\n")
}

#[test]
fn the_kd_plugin_and_native_kd_train_identical_weights() {
    let native = Project::new(&format!("{HEAD}{}", student("{kd: {temperature: 3, alpha: 0.8}}")));
    let wasm =
        Project::new(&format!("{HEAD}{}", student("{plugin: {path: kd.wat, params: {temperature: 3, alpha: 0.8}}}")))
            .with_files([fixture("kd.wat")]);
    assert_same_student(&native, &wasm);
}

/// Runs both projects and asserts their `student` steps wrote the same model, byte for byte.
fn assert_same_student(native: &Project, wasm: &Project) {
    for p in [native, wasm] {
        let report = p.run_report(&[]);
        assert_eq!(report.failures().count(), 0, "{:?}", report.results);
    }
    let (a, b) = (native.output_files("student", "model"), wasm.output_files("student", "model"));
    assert!(!a.is_empty());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        if name == "history.json" {
            // Identical but for the seconds each epoch took.
            let losses = |bytes: &[u8]| -> Vec<f64> {
                let h: serde_json::Value = serde_json::from_slice(bytes).unwrap();
                let epochs = h.as_array().or_else(|| h["epochs"].as_array()).expect("epochs").clone();
                epochs.iter().map(|e| e["train_loss"].as_f64().unwrap()).collect()
            };
            assert_eq!(losses(bytes), losses(&b[name]));
        } else {
            assert!(bytes == &b[name], "{name} differs between native kd and the kd plugin");
        }
    }
}

#[test]
fn a_language_model_distils_through_the_kd_plugin_as_through_native_kd() {
    // The plugin receives [B, T, V] sequence logits; the native loss their B·T token rows.
    let head = "\
name: lm-plugin
seed: 2
threads: 1
steps:
  text: {kind: dataset, source: text, path: corpus.txt, context: 8, split: {test: 0.2}}
  teacher: {kind: train, data: text.train, model: {arch: gpt, layers: 1, heads: 2, d_model: 16, context: 8}, epochs: 2, batch_size: 8}
  logits: {kind: infer, model: teacher, data: text.train, store: {top_k: 4}}
";
    let student = |loss: &str| {
        format!(
            "{head}  student: {{kind: distill, teacher: logits, data: text.train, loss: {loss}, epochs: 2, batch_size: 8, \
             model: {{arch: gpt, layers: 1, heads: 1, d_model: 8, context: 8}}}}\n"
        )
    };
    let native = Project::new(&student("{kd: {temperature: 2, alpha: 0.5}}"));
    let wasm = Project::new(&student("{plugin: {path: kd.wat, params: {temperature: 2, alpha: 0.5}}}"))
        .with_files([fixture("kd.wat")]);
    let corpus = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n".repeat(4);
    for p in [&native, &wasm] {
        p.write("corpus.txt", &corpus);
        let report = p.run_report(&[]);
        assert_eq!(report.failures().count(), 0, "{:?}", report.results);
    }
    // Native kd reads the stored top 4 as they are (`TopKTeacher::forward_kl`); the plugin gets them rebuilt as
    // dense [B, T, V] logits: the same loss in other rounding, so the same weights to f32 tolerance after training.
    let weights = |p: &Project| {
        let path = p.output("student", "model").join(anbiq::artifact::model::WEIGHTS_FILE);
        Tensor::read_safetensors(path).unwrap().into_iter().collect::<BTreeMap<_, _>>()
    };
    let (a, b) = (weights(&native), weights(&wasm));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for ((name, x), y) in a.iter().zip(b.values()) {
        let diff = (x - y).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{name}: native kd and the kd plugin differ by {diff}");
    }
}

#[test]
fn a_failing_plugin_fails_its_step_only_and_caches_nothing() {
    let yaml = format!(
        "{HEAD}{}{}  baseline: {{kind: train, data: digits.train, model: {{arch: mlp, hidden: [8]}}, epochs: 1}}\n",
        student("{plugin: {path: infinite_loop.wat, limits: {fuel: 1000000}}}"),
        student("[{kd: {}, weight: 0.5}, {plugin: {path: trap_mid_call.wat}, weight: 0.5}]")
            .replace("student:", "mixed:"),
    );
    let p = Project::new(&yaml).with_files(["infinite_loop.wat", "trap_mid_call.wat"].map(fixture));
    let report = p.run_report(&[]);
    let failed: BTreeMap<&str, &str> = report
        .results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed { error } => Some((r.id.as_str(), error.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(failed.keys().copied().collect::<Vec<_>>(), ["mixed", "student"], "{:?}", report.results);
    assert!(failed["student"].contains("plugin `infinite_loop`") && failed["student"].contains("ran out of fuel"));
    assert!(failed["mixed"].contains("plugin `trap_mid_call`") && failed["mixed"].contains("unreachable"));
    assert!(report.results.iter().any(|r| r.id == "baseline" && matches!(r.outcome, Outcome::Ran { .. })));
    // Nothing of the failed steps entered the store: a second run tries them again, the rest is cached.
    let again = p.run_report(&[]);
    let ran: Vec<_> =
        again.results.iter().filter(|r| !matches!(r.outcome, Outcome::Cached)).map(|r| r.id.as_str()).collect();
    assert_eq!(ran, ["student", "mixed"]);
}

#[test]
fn the_plugin_file_is_in_the_cache_key_and_the_lockfile() {
    let p = Project::new(&format!("{HEAD}{}", student("{plugin: {path: kd.wat}}"))).with_files([fixture("kd.wat")]);
    p.run_report(&[]);
    let lock = p.lock();
    let locked = lock.steps.iter().find(|s| s.id == "student").unwrap();
    assert!(locked.ingredients.files.contains_key("kd.wat"), "{:?}", locked.ingredients.files);
    assert_eq!(locked.ingredients.config["loss"]["plugin"]["path"], "kd.wat", "the config keeps the path as written");

    // Same behaviour, different bytes: the step reruns.
    let text = std::fs::read_to_string(p.path("kd.wat")).unwrap();
    p.write("kd.wat", format!("{text};; edited\n"));
    let plan = p.plan(&[]);
    let entry = plan.entries.iter().find(|e| e.id == "student").unwrap();
    assert_eq!(entry.status, Status::Run(vec!["file `kd.wat` changed".to_string()]));
}

#[test]
fn plugin_problems_are_located_errors_when_the_workflow_loads() {
    let cases = [
        (
            "{plugin: {path: kd.wat, params: {temprature: 2}}}",
            "loss.plugin.params.temprature",
            "no parameter `temprature`",
        ),
        ("{plugin: {path: kd.wat, params: {alpha: 3}}}", "loss.plugin.params.alpha", "at most 1"),
        ("{plugin: {path: wasi.wat}}", "loss.plugin.path", "wasi_snapshot_preview1::fd_write"),
        ("{plugin: {path: missing.wasm}}", "loss.plugin.path", "cannot read"),
        ("[{kd: {}}, {plugin: {path: kd.wat, limits: {fuel: 0}}}]", "loss[1].plugin.limits.fuel", "must be positive"),
    ];
    for (loss, field, message) in cases {
        let p = Project::new(&format!("{HEAD}{}", student(loss))).with_files(["kd.wat", "wasi.wat"].map(fixture));
        let e = p.try_load(&[]).expect_err(loss);
        assert!(e.contains(&format!("`{field}`")) && e.contains(message), "{loss}: {e}");
        assert!(e.contains("wf.yaml:8:"), "located at the student's line: {e}");
    }
}

/// The shipped `kd` plugin (Rust SDK) against native kd, when scripts/build-plugins.sh has built it.
#[test]
fn the_shipped_kd_plugin_equals_native_kd() {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build");
    let mut checked = 0;
    for name in ["kd.wasm", "kd_dense.wasm"] {
        let path = built.join(name);
        if !path.exists() {
            eprintln!("note: {} is not built (run scripts/build-plugins.sh); skipped", path.display());
            continue;
        }
        let wasm =
            term(path, params(&[("temperature", 3.into()), ("alpha", 0.7.into())]), Limits::default()).build().unwrap();
        let native = KdLoss { temperature: Temperature::Constant(3.0), alpha: 0.7 };
        // Classifier batches, and 32 token rows of 8 sequences of 4 (the plugin sees [8, 4, 10]).
        for (seed, sequence_len) in [(0, None), (1, None), (2, Some(4))] {
            let (s, te, y) = batch(seed, 32, 10);
            let (v1, g1) = value_and_grad(&native, (&s, &te, &y), sequence_len);
            let (v2, g2) = value_and_grad(&wasm, (&s, &te, &y), sequence_len);
            assert!(((v1 - v2) / v1).abs() <= 1e-5, "{name} {sequence_len:?}: value {v1} vs {v2}");
            let rel = (&g1 - &g2).abs().max().double_value(&[]) / g1.abs().max().double_value(&[]);
            assert!(rel <= 1e-5, "{name} {sequence_len:?}: gradient differs by {rel} (relative)");
        }
        checked += 1;
    }
    eprintln!("checked {checked} shipped plugin(s)");
}

// ---- The CLI ------------------------------------------------------------------------------------------------------

fn anbiq(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anbiq")).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn plugin_check_reports_describe_gradient_fuel_and_time() {
    let kd = fixture("kd.wat");
    let (code, out, err) =
        anbiq(&["plugin", "check", kd.to_str().unwrap(), "--params", "temperature=2", "--calls", "5"]);
    assert_eq!(code, 0, "{out}{err}");
    for part in [
        "plugin `kd_wat`",
        "param temperature = 2",
        "param alpha = 0.9",
        "loss on random [16, 10]",
        "— ok",
        "as [2, 8, 10] sequences: loss",
        "averages per token",
        "fuel per call",
    ] {
        assert!(out.contains(part), "`{part}` missing from:\n{out}");
    }
    let (code, _, err) = anbiq(&["plugin", "check", fixture("wasi.wat").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("wasi_snapshot_preview1::fd_write"), "{err}");
    let (code, _, err) = anbiq(&["plugin", "check", kd.to_str().unwrap(), "--params", "alpha=7"]);
    assert_eq!(code, 1);
    assert!(err.contains("parameter `alpha`: must be at most 1"), "{err}");
}

#[test]
fn plugin_new_scaffolds_a_project() {
    let dir = tempfile::tempdir().unwrap();
    for (lang, files) in [
        ("rust", &["Cargo.toml", "src/lib.rs", "build.sh", "README.md", "anbiq-sdk/src/tensor.rs"][..]),
        ("c", &["my_c_loss.c", "anbiq_plugin.h", "build.sh", "README.md"][..]),
    ] {
        let name = if lang == "c" { "my_c_loss" } else { "my_loss" };
        let at = dir.path().join(name);
        let (code, out, err) = anbiq(&["plugin", "new", name, "--lang", lang, "--dir", at.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}{err}");
        for f in files {
            assert!(at.join(f).is_file(), "{lang}: {f} missing");
        }
        let (code, _, err) = anbiq(&["plugin", "new", name, "--lang", lang, "--dir", at.to_str().unwrap()]);
        assert_eq!(code, 2, "an existing directory is refused: {err}");
    }
    let (code, _, err) = anbiq(&["plugin", "new", "bad name"]);
    assert_eq!(code, 2, "{err}");
}

/// Not a test: per-call cost of native kd vs the kd fixture (`cargo test --test plugins per_call -- --ignored --nocapture`).
#[test]
#[ignore]
fn per_call_cost() {
    tch::set_num_threads(1);
    let native = KdLoss { temperature: Temperature::Constant(4.0), alpha: 0.9 };
    let wasm = term(fixture("kd.wat"), BTreeMap::new(), Limits::default()).build().unwrap();
    let (s, te, y) = batch(0, 64, 10);
    let mut best = [f64::MAX; 4];
    for _ in 0..15 {
        for (i, loss) in [&native as &dyn DistillLoss, &wasm as &dyn DistillLoss].into_iter().enumerate() {
            for backward in [false, true] {
                let n = 300;
                let start = std::time::Instant::now();
                for _ in 0..n {
                    let l = loss.loss(&LossInput::new(&s, &te, &y)).unwrap();
                    if backward {
                        l.backward();
                    }
                }
                let k = 2 * i + backward as usize;
                best[k] = best[k].min(start.elapsed().as_secs_f64() / n as f64 * 1e6);
            }
        }
    }
    eprintln!("forward: native {:.1} µs, wasm {:.1} µs", best[0], best[2]);
    eprintln!("forward+backward: native {:.1} µs, wasm {:.1} µs", best[1], best[3]);
}

#[test]
fn a_wrong_gradient_is_caught_before_the_first_step() {
    let (s, te, y) = batch(5, 16, 10);
    let first_step = |term: PluginTerm| {
        let s = s.detach().set_requires_grad(true);
        let input = LossInput::new(&s, &te, &y);
        term.build().unwrap().loss(&input).map(drop).map_err(|e| e.to_string())
    };
    let err = first_step(term(fixture("half_grad_dense.wat"), BTreeMap::new(), Limits::default())).unwrap_err();
    assert!(
        err.contains("`half_grad_dense`") && err.contains("its gradient disagrees with central differences"),
        "{err}"
    );
    // A right gradient passes, and `check_gradient: false` skips the check.
    assert!(first_step(term(fixture("mse_dense.wat"), BTreeMap::new(), Limits::default())).is_ok());
    let unchecked = term(fixture("half_grad_dense.wat"), BTreeMap::new(), Limits::default());
    assert!(first_step(PluginTerm { check_gradient: false, ..unchecked }).is_ok());
}

#[test]
fn validation_probes_the_plugin_under_the_steps_limits() {
    let tight = Limits { fuel: 10, ..Limits::default() };
    let (field, message) = term(fixture("kd.wat"), BTreeMap::new(), tight).validate().unwrap_err();
    assert_eq!(field, "path");
    assert!(message.contains("ran out of fuel: a call may use 10 units"), "{message}");
}

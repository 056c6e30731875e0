//! Provenance you can trust: cache keys, lockfiles and stores that never disagree with what happened. Every promise
//! is proven by comparing whole lockfiles, minus only the fields declared non-deterministic (`seconds`, `timings`:
//! [`Lockfile::without_measurements`]).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anbiq::graph::{compute_keys, Dag, KeyEnv, StepKey};
use anbiq::run::{self, roots, Lockfile, PlanOptions, RunOptions, Status, Store};
use anbiq::steps::{ArtifactKind, Progress};
use anbiq::workflow;

mod common;
use common::Project;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Runs `anbiq ARGS` in `dir`.
fn anbiq(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anbiq")).args(args).current_dir(dir).output().unwrap()
}

/// Like [`anbiq`], asserting success; stdout.
fn anbiq_ok(dir: &Path, args: &[&str]) -> String {
    let out = anbiq(dir, args);
    assert!(out.status.success(), "anbiq {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn read_lock(path: &Path) -> Lockfile {
    Lockfile::read(path).unwrap().unwrap_or_else(|| panic!("no lockfile {}", path.display()))
}

/// Whole lockfiles, minus the fields declared non-deterministic; on failure, what `anbiq diff` says.
fn assert_same_lockfile(a: &Lockfile, b: &Lockfile, what: &str) {
    let (a, b) = (a.without_measurements(), b.without_measurements());
    assert!(
        a == b,
        "{what}: the lockfiles differ: {:?}\n{}\n---\n{}",
        run::diff(&a, &b),
        a.to_text().unwrap(),
        b.to_text().unwrap()
    );
}

/// Every file of every output a lockfile names, by `step/output/file`.
fn output_bytes(lock: &Lockfile, store: &Path) -> BTreeMap<String, Vec<u8>> {
    let store = Store::open(store).unwrap();
    let mut files = BTreeMap::new();
    for step in &lock.steps {
        for output in step.outputs.keys() {
            let manifest = store.manifest(&step.key).unwrap();
            for file in manifest.outputs[output].files.keys() {
                let path = store.step_dir(&step.key).join(output).join(file);
                files.insert(format!("{}/{output}/{file}", step.id), std::fs::read(path).unwrap());
            }
        }
    }
    files
}

#[test]
fn shipped_small_workflows_give_identical_lockfiles_across_stores_and_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let checkout_lock = repo().join("workflows/quickstart.lock");
    let untouched = || std::fs::metadata(&checkout_lock).and_then(|m| m.modified()).ok();
    let before = untouched();
    for name in ["quickstart", "sweep-kd"] {
        let workflow = repo().join("workflows").join(format!("{name}.yaml"));
        let mut locks = Vec::new();
        for jobs in ["1", "2"] {
            let store = tmp.path().join(format!("{name}-{jobs}"));
            let lock = tmp.path().join(format!("{name}-{jobs}.lock"));
            let args = ["run", workflow.to_str().unwrap(), "--jobs", jobs, "--store", store.to_str().unwrap()];
            anbiq_ok(tmp.path(), &[&args[..], &["--lock", lock.to_str().unwrap()]].concat());
            locks.push(lock);
        }
        let (a, b) = (read_lock(&locks[0]), read_lock(&locks[1]));
        assert_same_lockfile(&a, &b, &format!("{name}, --jobs 1 and 2 into two stores"));
        let diff = anbiq(tmp.path(), &["diff", locks[0].to_str().unwrap(), locks[1].to_str().unwrap()]);
        assert_eq!(String::from_utf8_lossy(&diff.stdout), "no differences\n");
        assert_eq!(diff.status.code(), Some(0));
        // Where the evaluation measures latency (timing on), it did so both times, outside every hash.
        let report = a.step("report").unwrap();
        if report.ingredients.config["timing"] == true {
            assert!(!report.timings.is_empty());
            assert!(report.timings.values().all(|t| t["latency_ms"].as_f64().unwrap() > 0.0), "{:?}", report.timings);
        }
    }
    assert_eq!(untouched(), before, "with --lock, running a shipped workflow leaves the checkout alone");
}

/// A CSV dataset read from a file beside the workflow, a tiny model, an evaluation.
const TABLE: &str = "\
seed: 5
steps:
  table: {kind: dataset, source: csv, path: data.csv, label: last, split: {test: 0.25}}
  model: {kind: train, data: table.train, model: {arch: mlp, hidden: [4]}, epochs: 2}
  report: {kind: evaluate, data: table.test, models: [model], timing: false}
";

/// [`TABLE`] in a fresh project, with its CSV beside it.
fn table_project() -> Project {
    let p = Project::new(TABLE);
    p.write("data.csv", table_csv());
    p
}

fn table_csv() -> String {
    let mut csv = String::from("a,b,label\n");
    for i in 0..40 {
        let (a, b) = ((i % 7) as f64 / 7.0, (i % 5) as f64 / 5.0);
        csv.push_str(&format!("{a},{b},{}\n", (a + b > 0.8) as u8));
    }
    csv
}

#[test]
fn the_key_does_not_depend_on_how_the_workflow_path_is_typed() {
    let p = table_project();
    std::fs::create_dir(p.path("sub")).unwrap();
    let store = p.store();
    let store = store.to_str().unwrap();
    let absolute = p.workflow_path();
    let absolute = absolute.to_str().unwrap();
    anbiq_ok(p.dir.path(), &["run", "wf.yaml", "--store", store]);
    let first = p.lock();
    assert_eq!(first.step("table").unwrap().ingredients.files.keys().collect::<Vec<_>>(), ["data.csv"]);
    for (dir, spelling) in [
        (p.dir.path().to_path_buf(), "./wf.yaml"),
        (p.dir.path().to_path_buf(), "sub/../wf.yaml"),
        (p.dir.path().to_path_buf(), absolute),
        (p.path("sub"), "../wf.yaml"),
        (PathBuf::from("/"), absolute),
    ] {
        let out = anbiq_ok(&dir, &["run", spelling, "--store", store, "--json"]);
        let results: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        assert!(results.iter().all(|r| r["outcome"] == "cached"), "`{spelling}` from {}: {out}", dir.display());
        assert_same_lockfile(&first, &p.lock(), spelling);
    }
}

/// digits → teacher → sharded teacher logits → student → report (timing on).
const KILLABLE: &str = "\
seed: 21
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.2}, normalize: standardize}
  teacher: {kind: train, data: digits.train, model: {arch: mlp, hidden: [64]}, epochs: 6, optimizer: {name: adam, lr: 0.01}}
  logits: {kind: infer, model: teacher, data: digits.train, batch_size: 128, shards: 3}
  student: {kind: distill, teacher: logits, data: digits.train, model: {arch: mlp, hidden: [8]}, loss: {kd: {temperature: 4}}, epochs: 4}
  report: {kind: evaluate, data: digits.test, models: [teacher, student], reference: teacher, latency_runs: 3}
";

#[test]
fn kill_9_between_steps_and_during_infer_then_resume_gives_the_uninterrupted_lockfile_and_bytes() {
    // The reference runs unsharded: `shards` is a scheduling choice, outside the key and the bytes.
    let clean = Project::new(&KILLABLE.replace(", shards: 3", ""));
    clean.run(&[]);
    let reference = clean.lock();
    let reference_bytes = output_bytes(&reference, &clean.store());
    for point in ["committed:digits", "committed:teacher", "shard:logits:1", "committed:logits", "committed:student"] {
        let p = Project::new(KILLABLE);
        let store = p.store();
        let args = ["run", "wf.yaml", "--store", store.to_str().unwrap(), "--jobs", "2"];
        let killed = Command::new(env!("CARGO_BIN_EXE_anbiq"))
            .args(args)
            .current_dir(p.dir.path())
            .env("ANBIQ_KILL_AT", point)
            .output()
            .unwrap();
        assert_eq!(killed.status.signal(), Some(9), "{point}: the run dies there");
        anbiq_ok(p.dir.path(), &args);
        let resumed = p.lock();
        assert_same_lockfile(&reference, &resumed, &format!("killed at {point}, then resumed"));
        assert!(output_bytes(&resumed, &store) == reference_bytes, "{point}: every output file is the same bytes");
        assert!(!store.join("shards").exists() || store.join("shards").read_dir().unwrap().next().is_none());
    }
}

#[test]
fn metrics_and_verify_read_the_store_by_key_and_each_store_keeps_its_own_provenance() {
    let yaml = "\
seed: 2
params: {t: 4}
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.3}, limit: 500}
  teacher: {kind: train, data: digits.train, model: {arch: mlp, hidden: [32]}, epochs: 3}
  student: {kind: distill, teacher: teacher, data: digits.train, model: {arch: mlp, hidden: [8]}, loss: {kd: {temperature: \"${params.t}\"}}, epochs: 2}
  report: {kind: evaluate, data: digits.test, models: [teacher, student], timing: false}
";
    let p = Project::new(yaml);
    let dir = p.dir.path();
    let (a, b) = (p.path("a"), p.path("b"));
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    anbiq_ok(dir, &["run", "wf.yaml", "--store", a]);
    let default = anbiq_ok(dir, &["metrics", "wf.yaml", "--store", a, "--json"]);
    assert!(default.contains("\"student\""), "{default}");

    // Parameters never run say so, and show nothing else's results.
    let out = anbiq(dir, &["metrics", "wf.yaml", "--store", a, "--set", "t=2", "--json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "{}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("step `report` has not run with these --set values"));
    anbiq_ok(dir, &["run", "wf.yaml", "--store", a, "--set", "t=2"]);
    let t2 = anbiq_ok(dir, &["metrics", "wf.yaml", "--store", a, "--set", "t=2", "--json"]);
    assert_ne!(t2, default, "another temperature, another student");
    assert_eq!(anbiq_ok(dir, &["metrics", "wf.yaml", "--store", a, "--json"]), default);
    assert_eq!(p.lock().params["t"], 2, "the lockfile beside the workflow is the last run's, with its parameters");

    // A run against a second store rewrites the shared lockfile, not the first store's provenance.
    anbiq_ok(dir, &["run", "wf.yaml", "--store", b]);
    let lock_b = p.lock();
    assert_eq!(anbiq_ok(dir, &["metrics", "wf.yaml", "--store", a, "--json"]), default);
    let gc = anbiq_ok(dir, &["gc", "--store", a]);
    assert!(gc.contains("kept 6 entries, removed 0"), "both parameter sets' results survive in store a: {gc}");
    assert!(anbiq_ok(dir, &["plan", "wf.yaml", "--store", a]).contains("0 of 4 steps will run"));
    assert!(anbiq_ok(dir, &["plan", "wf.yaml", "--store", a, "--set", "t=2"]).contains("0 of 4 steps will run"));
    assert!(anbiq_ok(dir, &["verify", "wf.yaml", "--store", a]).starts_with("ok: "));
    assert!(anbiq_ok(dir, &["verify", "wf.yaml", "--store", b]).starts_with("ok: "));
    assert_same_lockfile(&lock_b, &p.lock(), "metrics, gc, plan and verify leave the lockfile alone");

    // `--lock` writes elsewhere: the lockfile beside the workflow stays as it is.
    let elsewhere = p.path("elsewhere.lock");
    anbiq_ok(dir, &["run", "wf.yaml", "--store", a, "--set", "t=2", "--lock", elsewhere.to_str().unwrap()]);
    assert_eq!(read_lock(&elsewhere).params["t"], 2);
    assert_same_lockfile(&lock_b, &p.lock(), "--lock");
}

#[test]
fn a_damaged_entry_is_not_cached_verify_names_the_file_and_a_run_repairs_it() {
    let p = table_project();
    p.run(&[]);
    let before = p.lock();
    let weights = p.output("model", "model").join("weights.safetensors");
    std::fs::remove_file(&weights).unwrap();

    let plan = p.plan(&[]);
    let status = |id: &str| plan.entries.iter().find(|e| e.id == id).unwrap().status.clone();
    assert_eq!(status("table"), Status::Cached);
    assert_eq!(status("report"), Status::Cached, "its inputs' keys did not change");
    match status("model") {
        Status::Run(why) => assert!(why[0].contains("`model/weights.safetensors` is missing"), "{why:?}"),
        other => panic!("{other:?}"),
    }
    let out = anbiq(p.dir.path(), &["verify", "wf.yaml", "--store", p.store().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("step `model`: `model/weights.safetensors` is missing") && text.contains("anbiq run"),
        "{text}"
    );

    assert_eq!(p.run(&[]).ran(), ["model"]);
    assert!(weights.exists());
    assert_same_lockfile(&before, &p.lock(), "the repaired entry");
    // A truncated file is caught the same way.
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(p.run(&[]).ran(), ["model"]);
    assert_same_lockfile(&before, &p.lock(), "the repaired entry");
}

#[test]
fn gc_drops_orphaned_checkpoints_and_keeps_those_a_run_will_resume() {
    let p = table_project();
    p.run(&[]);
    let store = Store::open(&p.store()).unwrap();
    let (orphan, pending) = (StepKey("0".repeat(64)), StepKey("1".repeat(64)));
    for key in [&orphan, &pending] {
        std::fs::create_dir_all(store.checkpoint_dir(key)).unwrap();
        std::fs::write(store.checkpoint_dir(key).join("state.json"), "{}").unwrap();
    }
    // The workflow's root says its last run has `pending` to finish.
    let wf = p.load(&[]);
    roots::write(&store, &wf, &p.lock(), BTreeSet::from([pending.clone()])).unwrap();
    let report = run::gc(&p.store(), false).unwrap();
    assert_eq!((report.kept, report.removed, report.removed_unfinished), (3, 0, 1), "{report:?}");
    assert!(!store.checkpoint_dir(&orphan).exists());
    assert!(store.checkpoint_dir(&pending).exists());
}

#[test]
fn plugin_parameters_enter_the_key_in_canonical_form() {
    let kd = repo().join("plugins/build/kd.wasm");
    assert!(kd.exists(), "scripts/build-plugins.sh builds the shipped plugins");
    let key = |params: &str| {
        let p = Project::new(&format!(
            "steps:\n  digits: {{kind: dataset, source: digits}}\n  teacher: {{kind: train, data: digits.train, model: {{arch: mlp, hidden: [8]}}, epochs: 1}}\n  \
             student: {{kind: distill, teacher: teacher, data: digits.train, model: {{arch: mlp, hidden: [4]}}, epochs: 1, \
             loss: {{plugin: {{path: {}, params: {params}}}}}}}\n",
            kd.display()
        ));
        let wf = p.load(&[]);
        let keys = compute_keys(&wf, &Dag::build(&wf).unwrap(), &KeyEnv::current()).unwrap();
        (keys[2].0.clone(), keys[2].1.config["loss"]["plugin"]["params"].clone())
    };
    // kd.wasm declares temperature (default 4.0) and alpha (default 0.9).
    let (default, params) = key("{}");
    assert_eq!(params, serde_json::json!({"alpha": 0.9, "temperature": 4.0}));
    assert_eq!(key("{temperature: 4}").0, default);
    assert_eq!(key("{temperature: 4.0, alpha: 0.9}").0, default);
    assert_ne!(key("{temperature: 2}").0, default);
}

#[test]
fn a_bumped_step_or_format_version_reruns_exactly_that_kind_and_its_dependants() {
    let p = Project::new(&KILLABLE.replace(", shards: 3", ""));
    p.run(&[]);
    let wf = p.load(&[]);
    let dag = Dag::build(&wf).unwrap();
    let store = Store::open(&p.store()).unwrap();
    let lock = p.lock();
    let to_run = |env: &KeyEnv| {
        let plan = run::plan(&wf, &dag, &store, Some(&lock), env, &PlanOptions::default()).unwrap();
        let why = plan.entries.iter().find(|e| e.id == "logits").map(|e| e.status.clone());
        (plan.to_run().map(|e| e.id.clone()).collect::<Vec<_>>(), why)
    };
    assert!(to_run(&KeyEnv::current()).0.is_empty());
    let mut env = KeyEnv::current();
    let version = env.step_versions["infer"];
    *env.step_versions.get_mut("infer").unwrap() += 1;
    let (ran, why) = to_run(&env);
    assert_eq!(ran, ["logits", "student", "report"]);
    let message = format!("`infer` version changed: {version} → {} (its outputs change with this anbiq)", version + 1);
    assert_eq!(why, Some(Status::Run(vec![message])));
    let mut env = KeyEnv::current();
    let format = env.format_versions[&ArtifactKind::Logits];
    *env.format_versions.get_mut(&ArtifactKind::Logits).unwrap() += 1;
    let (ran, why) = to_run(&env);
    assert_eq!(ran, ["logits", "student", "report"]);
    let message = format!("stored format of `logits` changed: {format} → {}", format + 1);
    assert_eq!(why, Some(Status::Run(vec![message])));
    let mut env = KeyEnv::current();
    env.libtorch.push_str("+other");
    assert_eq!(to_run(&env).0.len(), 5, "another libtorch reruns everything");
}

/// Runs the workflow at `path` (CPU) into a fresh store and compares its lockfile with `tests/golden/NAME.lock`:
/// keys and output hashes first (the message says what to do), then everything but the measurements. `ANBIQ_BLESS=1`
/// rewrites the golden file; do that only together with a bumped version of every step kind whose output bytes
/// changed (`StepKind::version`, or the artifact's format version).
fn check_golden(name: &str, path: &Path) {
    // Intel's bits in tests/golden/, another vendor's (whose MKL takes its own path) in tests/golden/<mode>/.
    let mode = anbiq::nn::runtime::cpu_kernels::mode();
    let dir_of_mode =
        if mode == "avx2" { repo().join("tests/golden") } else { repo().join("tests/golden").join(&mode) };
    let golden_path = dir_of_mode.join(format!("{name}.lock"));
    let dir = path.parent().unwrap();
    let wf = workflow::load(path, &[]).unwrap();
    let lockfile = dir.join(format!("{name}.fresh.lock"));
    let options = RunOptions {
        jobs: 2,
        store: dir.join("store"),
        lockfile: Some(lockfile.clone()),
        plan: PlanOptions::default(),
        progress: Progress::hidden(),
        ..Default::default()
    };
    let report = run::run(&wf, &options).unwrap();
    assert_eq!(report.failures().count(), 0, "{:?}", report.results);
    let fresh = read_lock(&lockfile);
    if std::env::var_os("ANBIQ_BLESS").is_some() {
        std::fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
        std::fs::write(&golden_path, fresh.without_measurements().to_text().unwrap()).unwrap();
    }
    assert!(
        golden_path.exists(),
        "no golden lockfile for the CPU mode `{mode}` ({}): run `ANBIQ_BLESS=1 cargo test --test provenance golden` \
         on such a machine and commit it",
        golden_path.display()
    );
    let mut golden = read_lock(&golden_path);
    // Which anbiq wrote it is not a promise (versions of the step kinds are, and they are in the keys).
    golden.engine = fresh.engine.clone();
    let summary = |l: &Lockfile| -> Vec<(String, StepKey, BTreeMap<String, String>)> {
        l.steps.iter().map(|s| (s.id.clone(), s.key.clone(), s.outputs.clone())).collect()
    };
    assert_eq!(
        summary(&fresh),
        summary(&golden),
        "the workflow no longer reproduces {}: if a step's numerics or stored format changed on \
         purpose, bump that kind's `version` (or the artifact's format version) and bless the golden file with \
         ANBIQ_BLESS=1; otherwise this machine computes other bits ({:?})",
        golden_path.display(),
        run::diff(&golden, &fresh)
    );
    assert_same_lockfile(&golden, &fresh, &format!("the golden {name} lockfile"));
}

/// The cross-machine promise: a fresh run of the quickstart on any x86_64 CPU with AVX2 reproduces the golden
/// lockfile of its vendor (Intel's, or AMD's: see `cpu_kernels`): keys and output hashes (models, logits, datasets,
/// report).
#[test]
fn the_quickstart_reproduces_the_golden_lockfile() {
    let tmp = tempfile::tempdir().unwrap();
    // The shipped file on the CPU (`device: auto` would take a GPU where there is one; the device is not in the key)
    // with 2 libtorch threads (the default, every core, would make the bits depend on the machine's core count).
    let text = std::fs::read_to_string(repo().join("workflows/quickstart.yaml")).unwrap();
    assert!(text.contains("\ndevice: auto\n"));
    let text = text.replace("\ndevice: auto\n", "\ndevice: cpu\nthreads: 2\n");
    std::fs::write(tmp.path().join("quickstart.yaml"), text).unwrap();
    check_golden("quickstart", &tmp.path().join("quickstart.yaml"));
}

/// The kinds and architectures the quickstart does not run — a CNN, a character GPT trained and sampled and
/// evaluated on text, a Llama imported from a Hugging Face directory — held to a golden lockfile the same way, so a
/// change to their numerics or formats without a version bump fails the suite.
#[test]
fn the_other_kinds_reproduce_their_golden_lockfile() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("corpus.txt"), "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n".repeat(4)).unwrap();
    std::fs::create_dir(tmp.path().join("tiny-llama")).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(repo().join("tests/fixtures/tiny-llama").join(file), tmp.path().join("tiny-llama").join(file))
            .unwrap();
    }
    let yaml = "\
name: kinds
seed: 5
device: cpu
threads: 2
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.2}, normalize: standardize, limit: 400}
  cnn: {kind: train, data: digits.train, model: {arch: cnn, channels: [4], hidden: [16]}, epochs: 1}
  text: {kind: dataset, source: text, path: corpus.txt, context: 16, split: {test: 0.2}}
  gpt: {kind: train, data: text.train, model: {arch: gpt, layers: 1, heads: 2, d_model: 16, context: 16}, epochs: 2}
  sampled: {kind: generate, model: gpt, data: text.train, count: 4, length: 17, prompt_tokens: 4}
  lm: {kind: evaluate, data: text.test, models: [gpt], timing: false}
  images: {kind: evaluate, data: digits.test, models: [cnn], timing: false}
  llama: {kind: import, hf: tiny-llama, input_shape: [12]}
";
    std::fs::write(tmp.path().join("kinds.yaml"), yaml).unwrap();
    check_golden("kinds", &tmp.path().join("kinds.yaml"));
}

/// Every vendor's golden lockfiles (`tests/golden/`, `tests/golden/<mode>/`), rekeyed for this build: each step's
/// version and formats are this build's, and its key follows from its ingredients under the lockfile's CPU mode.
/// Outputs are kept — which is right only for a bump that changes none of the golden steps' outputs.
fn rekeyed(lock: &Lockfile) -> Lockfile {
    let env = KeyEnv { cpu: lock.cpu.clone(), ..KeyEnv::current() };
    let mut lock = lock.clone();
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    for step in &mut lock.steps {
        let ingredients = &mut step.ingredients;
        ingredients.version = env.step_versions[&ingredients.kind];
        for (artifact, version) in &mut ingredients.formats {
            *version = env.format_versions.iter().find(|(a, _)| a.name() == artifact).map(|(_, v)| *v).unwrap();
        }
        // An input is `<key>/<output>`, an `after` edge `<key>`.
        for reference in ingredients.inputs.values_mut() {
            let (key, output) = reference.split_once('/').map_or((reference.as_str(), None), |(k, o)| (k, Some(o)));
            if let Some(new) = renamed.get(key) {
                *reference = output.map_or(new.clone(), |o| format!("{new}/{o}"));
            }
        }
        let key = ingredients.key(&env);
        renamed.insert(std::mem::replace(&mut step.key, key.clone()).0, key.0);
    }
    lock
}

/// A bumped step kind must reach every vendor's golden lockfiles, not only those of the vendor whose machine ran
/// the bump (which the golden tests alone would notice only on a machine of the other vendor): the recorded keys
/// follow from the recorded ingredients under this build's versions. When a bump changes no golden step's outputs
/// (this vendor's `golden` tests show it), `ANBIQ_REKEY=1 cargo test --test provenance golden_keys` rewrites every
/// vendor's keys and versions; otherwise each vendor's goldens are blessed on its own machine.
#[test]
fn golden_keys_follow_from_their_ingredients_for_every_vendor() {
    let root = repo().join("tests/golden");
    let mut dirs = vec![root.clone()];
    dirs.extend(std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()));
    let mut checked = 0;
    for path in dirs.iter().flat_map(|d| std::fs::read_dir(d).unwrap()).map(|e| e.unwrap().path()) {
        if path.extension().is_none_or(|e| e != "lock") {
            continue;
        }
        let golden = read_lock(&path);
        let fresh = rekeyed(&golden);
        if std::env::var_os("ANBIQ_REKEY").is_some() {
            std::fs::write(&path, fresh.to_text().unwrap()).unwrap();
        } else {
            assert!(
                fresh == golden,
                "{} records keys or versions this build does not give its steps ({:?}): bless it on a machine of its \
                 CPU mode `{}`, or, if no golden step's outputs changed, run \
                 `ANBIQ_REKEY=1 cargo test --test provenance golden_keys`",
                path.display(),
                run::diff(&golden, &fresh),
                golden.cpu
            );
        }
        checked += 1;
    }
    assert!(checked >= 4, "Intel's and AMD's quickstart and kinds goldens: found {checked}");
}

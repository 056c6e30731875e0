//! anbiq's side of `scripts/bench.sh`: the same loops as `scripts/bench/torch_eager.py`, through the library code a
//! workflow runs (the distill step's [`DistillBatch`] driven by the [`Learner`], `infer`'s `batched_logits`).
//!
//! ```sh
//! cargo run --release --example bench -- --threads 1 --runs 7 distill_hinton small_student infer_mlp infer_cnn roofline
//! ```
//! Prints one JSON line per measurement: the median of `--runs` timed runs after one warm-up run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anbiq::artifact::logits::StoreDtype;
use anbiq::artifact::{LoadedData, LogitsArtifact, LogitsMeta};
use anbiq::data::{Dataset, DatasetMeta};
use anbiq::nn::runtime::precision::Precision;
use anbiq::nn::training::learner::{Learner, LearnerConfig};
use anbiq::nn::ArchConfig;
use anbiq::rng::Rng;
use anbiq::run::{Lockfile, Outcome, RunOptions, RunReport, Store};
use anbiq::steps::distill::{DistillBatch, Teacher, TopKTail};
use anbiq::steps::training::TensorSource;
use anbiq::steps::Progress;
use anbiq::workflow::Override;
use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

struct Args {
    threads: usize,
    runs: usize,
    n: usize,
    width: i64,
    /// Workflow seeds the logit-store benchmark averages over.
    seeds: usize,
    /// Scratch directory for the workflow benchmarks (stores, lockfiles).
    work: PathBuf,
    /// MNIST IDX files (scripts/fetch-data.sh mnist).
    mnist: PathBuf,
    /// Where the models and data live (`cpu`, `cuda`, …; see `anbiq::nn::runtime::device`).
    device: Device,
    /// `f32` or `bf16` (autocast) for the forward passes of the inference and distill benchmarks.
    precision: Precision,
    benches: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        threads: 1,
        runs: 7,
        n: 0,
        width: 800,
        seeds: 5,
        work: std::env::temp_dir().join("anbiq-bench"),
        mnist: PathBuf::from("data/mnist"),
        device: Device::Cpu,
        precision: Precision::F32,
        benches: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--threads" => args.threads = value()?.parse()?,
            "--runs" => args.runs = value()?.parse()?,
            "--n" => args.n = value()?.parse()?,
            "--width" => args.width = value()?.parse()?,
            "--seeds" => args.seeds = value()?.parse()?,
            "--work" => args.work = value()?.into(),
            "--mnist" => args.mnist = value()?.into(),
            "--device" => args.device = anbiq::nn::runtime::device::resolve(&value()?)?,
            "--precision" => args.precision = serde_json::from_value(json!(value()?))?,
            _ if a.starts_with('-') => bail!("unknown option {a}"),
            _ => args.benches.push(a),
        }
    }
    Ok(args)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

fn report(bench: &str, args: &Args, unit: &str, runs: Vec<f64>, extra: Value) {
    let bench = if args.precision == Precision::Bf16 { format!("{bench}_bf16") } else { bench.to_string() };
    let mut line = json!({"bench": bench, "impl": "anbiq", "threads": args.threads, "unit": unit,
                          "median": median(&runs), "runs": runs, "device": format!("{:?}", args.device)});
    if let (Some(l), Value::Object(e)) = (line.as_object_mut(), extra) {
        l.extend(e);
    }
    println!("{line}");
}

/// Times `f` once to warm up, then `runs` times; returns seconds per run.
fn time_runs(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(runs);
    for run in 0..=runs {
        let start = Instant::now();
        f()?;
        if run > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}

/// Waits for queued GPU work, so wall times cover it.
fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn config<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

/// Random inputs, labels and f32 teacher logits, as a distill step sees them (an offline `infer` artifact).
fn synthetic(n: usize, features: i64, classes: i64) -> Result<(LoadedData, LogitsArtifact)> {
    tch::manual_seed(0);
    let x = Tensor::randn([n as i64, features], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(classes, [n as i64], (Kind::Int64, Device::Cpu));
    let logits = Tensor::randn([n as i64, classes], (Kind::Float, Device::Cpu)) * 3.0;
    let meta =
        DatasetMeta { sample_shape: vec![features], classes, class_names: None, source: "bench".into(), vocab: None };
    let data = LoadedData { dataset: Dataset::new(x, y, meta)?, base: "bench".into(), base_indices: None };
    let meta = LogitsMeta {
        dataset: "bench".into(),
        samples: n as i64,
        classes,
        dtype: StoreDtype::F32,
        top_k: None,
        model: "bench".into(),
    };
    Ok((data, LogitsArtifact::from_logits(&logits, meta)))
}

/// One epoch of offline-logit distillation over `n` samples per run, through `Learner::fit` and `DistillBatch`.
#[allow(clippy::too_many_arguments)]
fn distill(
    args: &Args,
    bench: &str,
    sizes: (i64, &[i64], i64),
    n: usize,
    batch: usize,
    loss: &str,
    optimizer: &str,
    schedule: &str,
    clip: Option<f64>,
) -> Result<()> {
    let (features, hidden, classes) = sizes;
    let (data, logits) = synthetic(n, features, classes)?;
    let teachers = [(Teacher::Offline(logits), 1.0)];
    let vs = VarStore::new(args.device);
    let arch: ArchConfig = config(&format!("{{arch: mlp, hidden: {hidden:?}}}"));
    let student = anbiq::nn::build(&arch, &vs.root(), &[features], classes, &mut Rng::derive(0, "init"))?;
    let source = TensorSource::new(&data.dataset.x, &data.dataset.y, args.device);
    let learner = Learner::new(LearnerConfig {
        epochs: 1,
        batch_size: batch,
        optimizer: config(optimizer),
        schedule: config(schedule),
        clip_grad_norm: clip,
        keep: Default::default(),
        early_stopping: None,
        group_by_length: false,
    });
    let loss: anbiq::loss::LossConfig = config(loss);
    let mut step = DistillBatch {
        student: student.as_ref(),
        teachers: &teachers,
        data: &data,
        loss: loss.build()?,
        jitter: 0,
        device: args.device,
        tail: TopKTail::Even,
        precision: args.precision,
        chunk: anbiq::nn::training::chunked::chunk_positions(data.dataset.meta.classes),
        recompute: Default::default(),
        features: None,
        projection: None,
    };
    let mut rng = Rng::derive(0, "fit");
    let progress = Progress::hidden();
    let times = time_runs(args.runs, || {
        learner.fit(&vs, &mut step, &source, None, &mut rng, &progress, None)?;
        sync(args.device);
        Ok(())
    })?;
    let steps = n.div_ceil(batch);
    report(
        bench,
        args,
        "samples/s",
        times.iter().map(|t| n as f64 / t).collect(),
        json!({"n": n, "batch": batch, "steps": steps, "us_per_step": median(&times) / steps as f64 * 1e6}),
    );
    Ok(())
}

fn distill_hinton(args: &Args) -> Result<()> {
    let bench = if args.width == 800 { "distill_hinton".to_string() } else { format!("distill_width_{}", args.width) };
    distill(
        args,
        &bench,
        (784, &[args.width, args.width], 10),
        if args.n > 0 { args.n } else { 128 * 40 },
        128,
        "{kd: {temperature: 20, alpha: 0.9}}",
        "{name: sgd, lr: 0.1, momentum: 0.9, nesterov: true}",
        "{kind: cosine, warmup_steps: 200}",
        Some(5.0),
    )
}

/// The matrix multiplies of the Hinton student's training steps alone, as libtorch's `linear` forward and backward
/// issue them (same shapes, same transposes, bias included): forward `x·Wᵀ + b`, weight gradients `dYᵀ·X`, input
/// gradients `dY·W` (not for the first layer). What a step would reach if everything else — loss, activations,
/// optimiser, batch assembly — were free; reported in samples/s like `distill_hinton`.
fn step_gemms(args: &Args) -> Result<()> {
    let (batch, steps) = (128i64, 40);
    let sizes = [784, args.width, args.width, 10];
    tch::manual_seed(0);
    let opts = (Kind::Float, args.device);
    let weights: Vec<(Tensor, Tensor)> =
        sizes.windows(2).map(|w| (Tensor::randn([w[1], w[0]], opts), Tensor::randn([w[1]], opts))).collect();
    let x = Tensor::randn([batch, sizes[0]], opts);
    let grads: Vec<Tensor> = sizes[1..].iter().map(|&n| Tensor::randn([batch, n], opts)).collect();
    let times = time_runs(args.runs, || {
        args.precision.run(args.device, || {
            tch::no_grad(|| {
                for _ in 0..steps {
                    let mut input = x.shallow_clone();
                    let mut inputs = Vec::new();
                    for (w, b) in &weights {
                        let out = input.linear(w, Some(b));
                        inputs.push(std::mem::replace(&mut input, out));
                    }
                    for (i, ((w, _), dy)) in weights.iter().zip(&grads).enumerate().rev() {
                        let _dw = dy.tr().mm(&inputs[i]);
                        if i > 0 {
                            let _dx = dy.mm(w);
                        }
                    }
                }
            })
        });
        sync(args.device);
        Ok(())
    })?;
    let n = (batch * steps) as f64;
    report("step_gemms", args, "samples/s", times.iter().map(|t| n / t).collect(), json!({"batch": batch}));
    Ok(())
}

fn small_student(args: &Args) -> Result<()> {
    distill(
        args,
        "small_student",
        (64, &[32], 10),
        if args.n > 0 { args.n } else { 64 * 500 },
        64,
        "{kd: {temperature: 4, alpha: 0.9}}",
        "{name: adam, lr: 0.001}",
        "{kind: constant}",
        None,
    )
}

/// Teacher inference as the `infer` step runs it: eval mode, no autograd, 1024 rows at a time.
fn infer(args: &Args, bench: &str, arch: &str, shape: &[i64], n: usize) -> Result<()> {
    let vs = VarStore::new(args.device);
    let model = anbiq::nn::build(&config(arch), &vs.root(), shape, 10, &mut Rng::derive(0, "init"))?;
    tch::manual_seed(0);
    let mut full = vec![n as i64];
    full.extend_from_slice(shape);
    let x = Tensor::randn(&full, (Kind::Float, Device::Cpu));
    let bar = Progress::hidden().bar(n as u64, "infer");
    let times = time_runs(args.runs, || {
        let out = anbiq::steps::infer::batched_logits(model.as_ref(), &x, 1024, (args.device, args.precision), &bar);
        anyhow::ensure!(out.size()[0] == n as i64);
        Ok(())
    })?;
    report(bench, args, "samples/s", times.iter().map(|t| n as f64 / t).collect(), json!({"n": n, "batch": 1024}));
    Ok(())
}

/// fp32 matrix multiplies through the same libtorch on the same threads: a large square one, and the GEMM shapes of
/// the benchmarked steps (which stay in cache and run faster on a machine whose memory bandwidth is shared). The
/// roofline is the best median among them: the most this machine's libtorch gives on these threads right now.
fn roofline(args: &Args) -> Result<()> {
    tch::manual_seed(0);
    let mut best = (0.0, Vec::new());
    let mut shapes = serde_json::Map::new();
    for (m, k, n) in [(2048, 2048, 2048), (128, 784, 800), (128, 800, 800), (1024, 784, 1200), (1024, 1200, 1200)] {
        let a = Tensor::randn([m, k], (Kind::Float, args.device));
        let b = Tensor::randn([k, n], (Kind::Float, args.device));
        let reps = (2e9 / (2.0 * (m * k * n) as f64)).ceil().max(1.0) as usize;
        let mut gflops = Vec::new();
        for run in 0..=args.runs {
            sync(args.device);
            let start = Instant::now();
            for _ in 0..reps {
                let _ = a.mm(&b);
            }
            sync(args.device);
            if run > 0 {
                gflops.push(2.0 * (m * k * n * reps as i64) as f64 / start.elapsed().as_secs_f64() / 1e9);
            }
        }
        let med = median(&gflops);
        shapes.insert(format!("{m}x{k}x{n}"), json!(med));
        if med > best.0 {
            best = (med, gflops);
        }
    }
    report("roofline", args, "GFLOP/s", best.1, json!({"shapes": shapes}));
    Ok(())
}

/// Runs the workflow at `path` (with `sets` overrides) on `store`, one step at a time; returns the report, the
/// lockfile and the wall time.
fn run_workflow(path: &Path, sets: &[String], store: &Path) -> Result<(RunReport, Lockfile, f64)> {
    let overrides: Vec<Override> =
        sets.iter().map(|s| s.parse()).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?;
    let wf = anbiq::workflow::load(path, &overrides).map_err(|d| anyhow::anyhow!("{d}"))?;
    let options =
        RunOptions { jobs: 1, store: store.to_path_buf(), progress: Progress::hidden(), ..Default::default() };
    let start = Instant::now();
    let report = anbiq::run::run(&wf, &options)?;
    let wall = start.elapsed().as_secs_f64();
    if let Some(f) = report.failures().next() {
        bail!("{}: step {} failed: {:?}", path.display(), f.id, f.outcome);
    }
    let lock = Lockfile::read(&wf.lockfile_path())?.context("no lockfile")?;
    Ok((report, lock, wall))
}

/// 20 steps on the digits compiled into anbiq: a dataset, a small teacher, its logits, 17 filters of them.
fn overhead_workflow() -> String {
    let mut yaml = String::from(
        "name: bench-overhead\nseed: 1\nthreads: 1\nsteps:\n  \
         digits: {kind: dataset, source: digits, split: {test: 0.2}}\n  \
         teacher: {kind: train, data: digits.train, model: {arch: mlp, hidden: [16]}, epochs: 3}\n  \
         logits: {kind: infer, model: teacher, data: digits.train}\n",
    );
    for i in 1..=17 {
        yaml +=
            &format!("  keep{i}: {{kind: filter, data: logits, keep: {{min_confidence: {:.2}}}}}\n", i as f64 / 100.0);
    }
    yaml
}

/// Engine overhead: per-step scheduling cost of a cold run (wall time minus time inside the steps' `run`), and the
/// time of a fully cached rerun through the library (the CLI adds its process start, see scripts/bench.sh).
fn engine_overhead(args: &Args) -> Result<()> {
    let dir = args.work.join("overhead");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("overhead.yaml");
    std::fs::write(&path, overhead_workflow())?;
    let mut per_step = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..args.runs {
        let store = dir.join("store");
        let _ = std::fs::remove_dir_all(&store);
        let (report, lock, wall) = run_workflow(&path, &[], &store)?;
        anyhow::ensure!(report.results.len() == 20);
        let inside: f64 = lock.steps.iter().map(|s| s.seconds).sum();
        per_step.push((wall - inside) / 20.0 * 1e3);
        let (again, _, wall) = run_workflow(&path, &[], &store)?;
        anyhow::ensure!(again.results.iter().all(|r| matches!(r.outcome, Outcome::Cached)), "the rerun ran steps");
        cached.push(wall);
    }
    report("engine_step_overhead", args, "ms/step", per_step, json!({"steps": 20}));
    report("engine_cached_rerun", args, "s", cached, json!({"steps": 20, "via": "anbiq::run::run"}));
    println!("{{\"workflow\": {:?}}}", path.display().to_string());
    Ok(())
}

/// Logit store: bytes per sample and load time of each storage form, and the student distilled from each
/// (scripts/bench/logit-store.yaml on an MNIST slice).
/// The logit-store benchmark: one workflow (scripts/bench/logit-store.yaml) per seed, each a teacher, its logits
/// stored five ways and the same student distilled from each. Sizes and load times come from the first seed; the
/// students' accuracy is averaged over `--seeds` workflow seeds, and the cost of each format is the mean of its
/// per-seed difference to f32 (paired: within a seed the teacher and the student's initialisation are the same).
fn logit_store(args: &Args) -> Result<()> {
    const VARIANTS: [&str; 5] = ["f32", "f16", "top1", "top5", "top10"];
    let dir = args.work.join("logit-store");
    std::fs::create_dir_all(&dir)?;
    let template = std::fs::read_to_string("scripts/bench/logit-store.yaml").context("run from the repository root")?;
    let mnist = std::fs::canonicalize(&args.mnist).with_context(|| format!("{}", args.mnist.display()))?;
    let store_path = dir.join("store");
    let mut accuracies: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut first: Option<Lockfile> = None;
    for seed in 1..=args.seeds as u64 {
        let path = dir.join(format!("logit-store-seed{seed}.yaml"));
        let yaml = template.replacen("\nseed: 6\n", &format!("\nseed: {seed}\n"), 1);
        anyhow::ensure!(yaml != template || seed == 6, "scripts/bench/logit-store.yaml has no `seed: 6` line");
        std::fs::write(&path, yaml)?;
        let (_, lock, _) = run_workflow(&path, &[format!("data={}", mnist.display())], &store_path)?;
        for variant in VARIANTS {
            let student = lock.step(&format!("s_{variant}")).with_context(|| format!("no step s_{variant}"))?;
            let accuracy = student.metrics.get("val_accuracy").and_then(Value::as_f64).context("no val_accuracy")?;
            accuracies.entry(variant).or_default().push(accuracy);
        }
        first.get_or_insert(lock);
    }
    let lock = first.context("--seeds must be at least 1")?;
    let store = Store::open(&store_path)?;
    for variant in VARIANTS {
        let step = lock.step(variant).with_context(|| format!("no step {variant}"))?;
        let logits_dir = store.step_dir(&step.key).join("logits");
        let bytes = std::fs::metadata(logits_dir.join("logits.safetensors"))?.len();
        let mut loads = Vec::new();
        let mut samples = 0;
        for _ in 0..args.runs {
            let start = Instant::now();
            let artifact = LogitsArtifact::read(&logits_dir)?;
            samples = artifact.meta.samples;
            let all = Tensor::arange(samples, (Kind::Int64, Device::Cpu));
            let dense = artifact.dense_logits(&all);
            anyhow::ensure!(dense.size()[0] == samples);
            loads.push(start.elapsed().as_secs_f64() * 1e3);
        }
        let acc = &accuracies[variant];
        let deltas: Vec<f64> = acc.iter().zip(&accuracies["f32"]).map(|(a, b)| a - b).collect();
        let (delta, delta_sd) = mean_sd(&deltas);
        report(
            &format!("logit_store_{variant}"),
            args,
            "ms to load + densify",
            loads,
            json!({"bytes": bytes, "samples": samples, "bytes_per_sample": bytes as f64 / samples as f64,
                   "student_accuracy": mean_sd(acc).0, "accuracies": acc, "seeds": acc.len(),
                   "delta_vs_f32": delta, "delta_sd": delta_sd}),
        );
    }
    Ok(())
}

/// Mean and sample standard deviation (0 for a single value).
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    // As the `anbiq` binary does at start-up (ANBIQ_BENCH_DEFAULT_MALLOC=1 measures without it).
    if std::env::var_os("ANBIQ_BENCH_DEFAULT_MALLOC").is_none() {
        anbiq::nn::runtime::memory::tune_allocator();
    }
    tch::set_num_threads(args.threads as i32);
    for b in &args.benches {
        match b.as_str() {
            "distill_hinton" => distill_hinton(&args)?,
            "step_gemms" => step_gemms(&args)?,
            "small_student" => small_student(&args)?,
            "infer_mlp" => infer(
                &args,
                "infer_mlp",
                "{arch: mlp, hidden: [1200, 1200]}",
                &[784],
                if args.n > 0 { args.n } else { 8192 },
            )?,
            "infer_cnn" => infer(
                &args,
                "infer_cnn",
                "{arch: cnn, channels: [16, 32], kernel: 5, hidden: [128]}",
                &[1, 28, 28],
                if args.n > 0 { args.n } else { 4096 },
            )?,
            "roofline" => roofline(&args)?,
            "engine_overhead" => engine_overhead(&args)?,
            "logit_store" => logit_store(&args)?,
            other => bail!("unknown benchmark {other}"),
        }
    }
    Ok(())
}

//! One LLM distillation step, measured: peak resident memory and tokens/s of a SmolLM2-135M student (its first
//! `layers` layers, as a depth-pruned student starts) learning from per-token top-k teacher log-probabilities with
//! forward KL, AdamW — through `Learner::fit` and `DistillBatch`, the code a `distill` step runs. Beside it
//! `scripts/bench/llm_distill_bench.py` does the same in a plain PyTorch + `transformers` loop (full logits, the same
//! top-k KD, `torch.optim.AdamW`); `scripts/bench-llm-distill.sh` runs both, each in its own process so each peak is
//! its own.
//!
//! ```sh
//! cargo run --release --example llm_distill_bench -- MODEL MODE [layers] [batch] [time] [steps] [threads] [f32|bf16]
//! ```
//! MODEL is a GGUF file or a Hugging Face Llama directory (`config.json` + safetensors: on a GPU machine without the
//! GGUF, a random initialisation of SmolLM2's shape measures the same speed). `BENCH_DEVICE=cuda` runs it on a GPU
//! (default `cpu`); there the peak resident memory is the host's, not the GPU's.
//! MODE `chunked`: the loss a chunk of positions at a time (the default of every `distill` step); `recompute`: the
//! same with `recompute_activations: true` (the layers' activations recomputed in the backward pass); `recompute-keepN`:
//! with `recompute_activations: {keep: N}` (all but the last N layers recomputed); `whole`: one
//! chunk of the whole batch (`loss_chunk` ≥ batch × time), i.e. the `[B, T, V]` logits held at once as a plain loop
//! does.
//! Prints one JSON line. With a rank's variables in the environment (`ANBIQ_RANK`, `ANBIQ_WORLD_SIZE`,
//! `ANBIQ_MASTER_ADDR`, `ANBIQ_MASTER_PORT`, see `nn::distributed::Rendezvous`) it is one rank of a data-parallel
//! step, as `distributed: {ranks: N}` runs it (scripts/bench-distributed-llm.sh); rank 0 prints, `batch` is global.

use std::time::{Duration, Instant};

use anbiq::artifact::logits::StoreDtype;
use anbiq::artifact::token_logits::{ShardWriter, TokenLogits, TokenLogitsMeta};
use anbiq::artifact::LoadedData;
use anbiq::data::{Dataset, DatasetMeta, Vocab};
use anbiq::loss::LossConfig;
use anbiq::nn::arch::llama::Llama;
use anbiq::nn::distributed::{ProcessGroup, Rendezvous};
use anbiq::nn::runtime::precision::Precision;
use anbiq::nn::runtime::progress::Progress;
use anbiq::nn::training::chunked::chunk_positions;
use anbiq::nn::training::learner::{Learner, LearnerConfig};
use anbiq::nn::training::recompute::RecomputeActivations;
use anbiq::nn::weights::gguf::{llama, Gguf};
use anbiq::nn::weights::hf;
use anbiq::nn::weights::source::WeightSource;
use anbiq::rng::Rng;
use anbiq::steps::distill::{DistillBatch, Teacher, TopKTail};
use anbiq::steps::training::TensorSource;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const TOP_K: i64 = 8;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).map_or(default, |s| s.parse().unwrap_or_else(|_| panic!("argument {i}: {s}")))
}

/// Peak and current resident set size of this process, in MiB (Linux `VmHWM`, `VmRSS`).
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect(
        "usage: llm_distill_bench MODEL chunked|recompute|recompute-keepN|whole [layers] [batch] [time] [steps] [threads] [f32|bf16]",
    );
    let mode = args.get(2).map_or("chunked", String::as_str);
    let (layers, batch, time, steps, threads) =
        (arg(&args, 3, 20i64), arg(&args, 4, 8i64), arg(&args, 5, 256i64), arg(&args, 6, 3i64), arg(&args, 7, 2i32));
    let precision: Precision = serde_yaml::from_str(args.get(8).map_or("f32", String::as_str))?;
    // As the `anbiq` binary starts: glibc keeps freed activations instead of faulting them in again every batch.
    anbiq::nn::runtime::memory::tune_allocator();
    tch::set_num_threads(threads);
    let group = Rendezvous::from_env()?.map(|at| ProcessGroup::join(&at, Duration::from_secs(600))).transpose()?;
    let device = anbiq::nn::runtime::device::resolve(&std::env::var("BENCH_DEVICE").unwrap_or("cpu".into()))?;

    // The student: the model's first `layers` layers, trainable f32.
    let path = std::path::Path::new(path);
    let (mut config, mut weights) =
        if path.is_dir() { hf::load_llama(path)? } else { llama::load(&Gguf::open(path)?, Kind::Float)? };
    let vocab = config.vocab_size.expect("a vocabulary size");
    config.num_hidden_layers = layers;
    weights.retain(|key, _| {
        key.strip_prefix("model.layers.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|i| i.parse::<i64>().ok())
            .is_none_or(|i| i < layers)
    });
    let vs = VarStore::new(device);
    let student = Llama::new(&config, &vs.root(), vocab, &mut WeightSource::Load(&mut weights))?;

    // Random token windows and a random top-k teacher over them.
    let windows = batch * steps;
    tch::manual_seed(0);
    let ids = Tensor::randint(vocab, [windows, time + 1], (Kind::Int64, Device::Cpu));
    let (x, y) = (ids.narrow(1, 0, time).contiguous(), ids.narrow(1, 1, time).contiguous());
    let store = tempfile::tempdir()?;
    let mut writer = ShardWriter::new(store.path(), TOP_K, StoreDtype::F16, 64, vocab);
    for _ in 0..windows {
        writer.push(&(Tensor::randn([1, time, vocab], (Kind::Float, Device::Cpu)) * 3.0))?;
    }
    let meta = TokenLogitsMeta {
        dataset: "bench".into(),
        windows: 0,
        time,
        classes: vocab,
        top_k: TOP_K,
        sampled: false,
        layout: Default::default(),
        dtype: StoreDtype::F16,
        model: "random".into(),
        shards: Vec::new(),
    };
    writer.finish(meta)?;
    let teachers = [(Teacher::Tokens(TokenLogits::read(store.path())?), 1.0)];
    let meta = DatasetMeta {
        sample_shape: vec![time],
        classes: vocab,
        class_names: None,
        source: "bench".into(),
        vocab: Some(Vocab::Byte),
    };
    let data = LoadedData { dataset: Dataset::new(x, y, meta)?, base: "bench".into(), base_indices: None };
    let source = TensorSource::new(&data.dataset.x, &data.dataset.y, device);

    let loss: LossConfig = serde_yaml::from_str("{kd: {temperature: 1, alpha: 1}}")?;
    let (chunk, recompute) = match (mode, mode.strip_prefix("recompute-keep").map(str::parse::<usize>)) {
        ("chunked", _) => (chunk_positions(vocab), RecomputeActivations::All(false)),
        ("recompute", _) => (chunk_positions(vocab), RecomputeActivations::All(true)),
        (_, Some(Ok(keep))) => (chunk_positions(vocab), RecomputeActivations::Keep { keep }),
        ("whole", _) => (batch * time, RecomputeActivations::All(false)),
        (other, _) => anyhow::bail!("MODE is chunked, recompute, recompute-keepN or whole, not {other}"),
    };
    let mut step = DistillBatch {
        student: &student,
        teachers: &teachers,
        data: &data,
        loss: loss.build()?,
        jitter: 0,
        device,
        tail: TopKTail::Even,
        precision,
        chunk,
        recompute,
        features: None,
        projection: None,
    };
    let learner = |epochs| {
        Learner::new(LearnerConfig {
            epochs,
            batch_size: batch as usize,
            optimizer: serde_yaml::from_str("{name: adamw, lr: 1.0e-4}").expect("an optimizer"),
            schedule: Default::default(),
            clip_grad_norm: None,
            keep: Default::default(),
            early_stopping: None,
            group_by_length: false,
        })
        .distributed(group.as_ref())
    };
    let (_, before) = rss_mib();
    // A warm-up step on the first batch (allocator, kernels), then one timed epoch of `steps` steps.
    let single = TensorSource::new(&data.dataset.x.narrow(0, 0, batch), &data.dataset.y.narrow(0, 0, batch), device);
    let progress = Progress::hidden();
    learner(1).fit(&vs, &mut step, &single, None, &mut Rng::new(0), &progress, None)?;
    let started = Instant::now();
    let history = learner(1).fit(&vs, &mut step, &source, None, &mut Rng::new(1), &progress, None)?;
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
    let seconds = started.elapsed().as_secs_f64();
    let (peak, _) = rss_mib();
    if group.as_ref().is_some_and(|g| !g.is_root()) {
        return Ok(());
    }
    println!(
        "{}",
        serde_json::json!({
            "impl": "anbiq", "mode": mode, "layers": layers, "batch": batch, "time": time, "vocab": vocab,
            "ranks": group.as_ref().map_or(1, |g| g.world),
            "top_k": TOP_K, "threads": threads, "precision": precision, "steps": steps, "chunk_positions": chunk,
            "device": format!("{device:?}"),
            "seconds_per_step": seconds / steps as f64,
            "tokens_per_s": (batch * time * steps) as f64 / seconds,
            "rss_before_mib": before, "peak_rss_mib": peak,
            // Data-parallel: rank 0's wait for the gradients after the backward pass (and the loss agreement), and
            // the share of gradient elements averaged during it. The first step of a fit averages all after it.
            "collective_ms_per_step": history.collective_seconds_per_step.map(|s| s * 1e3),
            "gradients_overlapped": history.overlapped_gradient_share,
        })
    );
    Ok(())
}

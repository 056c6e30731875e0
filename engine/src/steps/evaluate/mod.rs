//! `kind: evaluate` — compares models on a dataset.
//!
//! ```yaml
//! report: {kind: evaluate, data: digits.test, models: [teacher, student], reference: teacher}
//! ```
//! Per model: accuracy, top-5 accuracy (more than 5 classes), NLL, ECE (15 bins), agreement with and
//! KL(reference ‖ model) against the reference model, parameter count, weight bytes, and (unless `timing: false`)
//! latency at batch 1 (median of `latency_runs`) and throughput at batch 256 (each at most ≈ 3 s). Output `report`: `metrics.json`
//! shaped `{model: {metric: value}}` and `report.md`. Latency and throughput measure the machine, not the models'
//! outputs: they go to the step's `timings` (manifest and lockfile, outside every hash), never into the report, so
//! two runs of one workflow give one report hash; `anbiq metrics` shows both side by side.
//!
//! On text data the same per token (accuracy = next-token accuracy, agreement = same next token as the reference),
//! plus perplexity and bits per character ([`crate::steps::lm::metrics`]) (and `tokens_per_s` among the timings), and
//! with `samples` a few
//! generated texts per model in `report.md`.
//!
//! On sentences (`source: sentences` or `pairs`), sentence encoders without labels: geometry kept from the reference,
//! paraphrase retrieval, speed ([`encoder`]).
//!
//! Text samples:
//! ```yaml
//! report: {kind: evaluate, data: text.test, models: [teacher, student], reference: teacher,
//!          samples: {prompt: "ROMEO:", length: 200, count: 2, sampling: {temperature: 0.8}}}
//! ```

mod encoder;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::infer::batched_logits;
use super::load_data;
use super::registry::{parse_config, schema_of, ParseEnv, StepKind};
use super::{canonical, check_fields, ArtifactKind, InputDecl, OutputDecl, Step, StepContext, StepRef};
use crate::artifact::model::{LoadedModel, ModelArtifact};
use crate::config::{Located, Node};
use crate::nn::runtime::precision::Precision;
use crate::nn::training::metrics;
use crate::nn::Mode;

// 2: text reports add bits_per_byte.
pub const KIND: StepKind = StepKind {
    name: "evaluate",
    version: 2,
    summary: "compare models on a dataset",
    parse,
    schema: schema_of::<EvaluateConfig>,
};

/// The file `anbiq metrics` reads.
pub const METRICS_FILE: &str = "metrics.json";

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateConfig {
    /// The test data.
    pub data: StepRef,
    /// The models compared, each a model step (a swept step lists every variant).
    pub models: Vec<StepRef>,
    /// One of `models`: agreement and KL are measured against it.
    #[serde(default)]
    pub reference: Option<StepRef>,
    /// Measure latency and throughput (these vary from run to run, unlike every other metric).
    #[serde(default = "default_true")]
    pub timing: bool,
    /// Repetitions of the latency measurement.
    #[serde(default = "default_latency_runs")]
    pub latency_runs: usize,
    /// Text data: generated samples per model for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<SampleOptions>,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleOptions {
    /// Text every sample starts from (must use the data's vocabulary).
    pub prompt: String,
    /// New tokens per sample.
    #[serde(default = "default_sample_length")]
    pub length: i64,
    /// Samples per model.
    #[serde(default = "default_sample_count")]
    pub count: i64,
    /// `{temperature, top_k, top_p}` (greedy at temperature 0).
    #[serde(default)]
    pub sampling: crate::nn::sample::Sampling,
}

fn default_sample_length() -> i64 {
    200
}

fn default_sample_count() -> i64 {
    2
}

fn default_true() -> bool {
    true
}

fn default_latency_runs() -> usize {
    50
}

#[derive(Debug)]
pub struct Evaluate {
    config: EvaluateConfig,
}

fn parse(node: &Node, _env: &ParseEnv) -> Result<Box<dyn Step>, Vec<Located>> {
    let config: EvaluateConfig = parse_config(node)?;
    let mut problems = Vec::new();
    if config.models.is_empty() {
        problems.push(("models".into(), "list at least one model".into()));
    }
    if let Some(r) = &config.reference {
        if !config.models.contains(r) {
            problems.push(("reference".into(), format!("`{r}` must be one of `models`")));
        }
    }
    for (i, m) in config.models.iter().enumerate() {
        if config.models[..i].contains(m) {
            problems.push((format!("models[{i}]"), format!("`{m}` is listed twice")));
        }
    }
    if let Some(s) = &config.samples {
        if s.length < 1 || s.count < 1 || s.prompt.is_empty() {
            problems.push(("samples".into(), "needs a non-empty `prompt` and positive `length` and `count`".into()));
        }
        problems.extend(s.sampling.check().into_iter().map(|(f, m)| (format!("samples.sampling.{f}"), m)));
    }
    if config.timing && config.latency_runs < 1 {
        problems.push(("latency_runs".into(), "must be at least 1".into()));
    }
    check_fields(node, problems)?;
    Ok(Box::new(Evaluate { config }))
}

impl Step for Evaluate {
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("report", ArtifactKind::Report)]
    }

    fn inputs(&self) -> Vec<InputDecl> {
        let mut inputs = vec![InputDecl::new("data", &self.config.data, &[ArtifactKind::Dataset])];
        for (i, m) in self.config.models.iter().enumerate() {
            inputs.push(InputDecl::new(format!("models[{i}]"), m, &[ArtifactKind::Model]));
        }
        inputs
    }

    fn canonical_config(&self) -> serde_json::Value {
        canonical(&self.config)
    }

    fn run(&self, ctx: &mut StepContext) -> anyhow::Result<()> {
        let data = load_data(ctx, "data")?.dataset;
        if let Some(pad) = data.meta.sentence_padding() {
            return encoder::run(&self.config, ctx, &data, pad);
        }
        let mut logits: Vec<(String, Tensor)> = Vec::new();
        let mut results: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        let mut timings: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        let mut samples: Vec<(String, Vec<String>)> = Vec::new();
        if self.config.samples.is_some() {
            super::lm::vocab(&data, "samples")?;
        }
        for (i, reference) in self.config.models.iter().enumerate() {
            let input = ctx.input(&format!("models[{i}]"))?.clone();
            let model = ModelArtifact::load(&input.dir, ctx.device)?;
            if model.spec.input_shape != data.meta.sample_shape {
                anyhow::bail!(
                    "field `models[{i}]`: `{reference}` takes samples of shape {:?}; the data's are {:?}",
                    model.spec.input_shape,
                    data.meta.sample_shape,
                );
            }
            model
                .spec
                .check_classes(&data.meta)
                .map_err(|e| anyhow::anyhow!("field `models[{i}]`: `{reference}`: {e}"))?;
            if let Some(vocab) = &data.meta.vocab {
                ModelArtifact::check_tokenizer(&input.dir, vocab)
                    .map_err(|e| anyhow::anyhow!("field `models[{i}]`: `{reference}` {e:#}"))?;
            }
            let bar = ctx.progress.bar(data.len() as u64, &format!("{}: {reference}", ctx.id));
            let out = batched_logits(model.model.as_ref(), &data.x, 1024, (ctx.device, Precision::F32), &bar);
            bar.finish_and_clear();
            let mut m = match &data.meta.vocab {
                Some(vocab) => super::lm::metrics::quality(&out, &data.y, vocab),
                None => quality(&out, &data.y, data.meta.classes),
            };
            m.insert("parameters".into(), model.spec.parameters as f64);
            m.insert("weight_bytes".into(), std::fs::metadata(input.dir.join(model.spec.weights_file()))?.len() as f64);
            if self.config.timing {
                let (latency, throughput) = timing(&model, &data.x, ctx.device, self.config.latency_runs);
                let t = timings.entry(reference.to_string()).or_default();
                t.insert("latency_ms".into(), latency);
                t.insert("throughput".into(), throughput);
                if data.meta.vocab.is_some() {
                    t.insert("tokens_per_s".into(), throughput * data.x.size()[1] as f64);
                }
            }
            if let (Some(options), Some(vocab)) = (&self.config.samples, &data.meta.vocab) {
                let texts = super::lm::samples(
                    &model,
                    vocab,
                    options,
                    &mut crate::rng::Rng::derive(ctx.seed, &format!("samples/{reference}")),
                    ctx.device,
                )?;
                samples.push((reference.to_string(), texts));
            }
            results.insert(reference.to_string(), m);
            logits.push((reference.to_string(), crate::nn::tokens::rows(&out)));
        }
        if let Some(r) = &self.config.reference {
            let name = r.to_string();
            let reference = &logits.iter().find(|(n, _)| *n == name).expect("checked at parse").1;
            for (model, out) in &logits {
                let m = results.get_mut(model).expect("inserted above");
                m.insert("agreement".into(), metrics::agreement(reference, out));
                m.insert("kl_from_reference".into(), metrics::kl(reference, out));
            }
        }

        let dir = ctx.output_dir("report")?;
        std::fs::write(dir.join(METRICS_FILE), serde_json::to_string_pretty(&results)? + "\n")?;
        let mut report = markdown(&ctx.id, &results);
        for (model, texts) in &samples {
            write!(report, "\n## Samples from `{model}`\n").unwrap();
            for text in texts {
                write!(report, "\n```text\n{text}\n```\n").unwrap();
            }
        }
        std::fs::write(dir.join("report.md"), report)?;
        for (model, t) in timings {
            ctx.record_timing(&model, serde_json::to_value(t)?);
        }
        for (model, m) in &results {
            ctx.record_metric(&format!("{model}.accuracy"), m["accuracy"]);
            for metric in ["bits_per_char", "bits_per_byte"] {
                if let Some(v) = m.get(metric) {
                    ctx.record_metric(&format!("{model}.{metric}"), *v);
                }
            }
        }
        Ok(())
    }
}

/// The metrics that depend only on the logits (deterministic).
pub fn quality(logits: &Tensor, labels: &Tensor, classes: i64) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    m.insert("accuracy".into(), metrics::accuracy(logits, labels));
    if classes > 5 {
        m.insert("top5_accuracy".into(), metrics::top_k_accuracy(logits, labels, 5));
    }
    m.insert("nll".into(), metrics::nll(logits, labels));
    m.insert("ece".into(), metrics::ece(logits, labels, 15));
    m.insert("errors".into(), (logits.argmax(-1, false).ne_tensor(labels).sum(Kind::Int64).int64_value(&[])) as f64);
    m
}

/// How long each timing measurement may take (see [`timing`]).
const TIME_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

/// Tokens per throughput batch of a language model.
const LM_THROUGHPUT_TOKENS: i64 = 4096;

/// (median latency in ms at batch 1 over `runs`, samples/s at batch 256 — for a language model, windows/s at
/// [`LM_THROUGHPUT_TOKENS`] tokens a batch).
fn timing(model: &LoadedModel, x: &Tensor, device: Device, runs: usize) -> (f64, f64) {
    tch::no_grad(|| {
        let one = x.narrow(0, 0, 1).to_device(device);
        let run_once = |input: &Tensor| {
            let _logits = model.model.forward(input, Mode::Eval);
            if let Device::Cuda(index) = device {
                tch::Cuda::synchronize(index as i64);
            }
        };
        for _ in 0..5 {
            run_once(&one); // warm-up: allocator, kernels, caches
        }
        // Each measurement stops after `runs` (latency) or 10 (throughput) repetitions or once it has taken
        // TIME_BUDGET, whichever comes first: a language model's batch of 256 windows takes minutes on a CPU.
        let started = Instant::now();
        let mut times = Vec::new();
        while times.len() < runs.max(1) && (times.len() < 3 || started.elapsed() < TIME_BUDGET) {
            let t = Instant::now();
            run_once(&one);
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let latency = times[times.len() / 2];
        // Batch 256, or for a language model's token windows `[N, T]` at most LM_THROUGHPUT_TOKENS tokens.
        let rows =
            if x.dim() == 2 && !x.is_floating_point() { (LM_THROUGHPUT_TOKENS / x.size()[1]).max(1) } else { 256 };
        let batch = x.narrow(0, 0, x.size()[0].min(rows)).to_device(device);
        run_once(&batch);
        let (mut reps, t) = (0, Instant::now());
        while reps < 10 && (reps == 0 || t.elapsed() < TIME_BUDGET) {
            run_once(&batch);
            reps += 1;
        }
        let throughput = (reps as f64 * batch.size()[0] as f64) / t.elapsed().as_secs_f64();
        (latency, throughput)
    })
}

fn markdown(step: &str, results: &BTreeMap<String, BTreeMap<String, f64>>) -> String {
    let mut columns: Vec<&String> = Vec::new();
    for m in results.values() {
        for k in m.keys() {
            if !columns.contains(&k) {
                columns.push(k);
            }
        }
    }
    let mut out = format!("# {step}\n\n| model |");
    for c in &columns {
        write!(out, " {c} |").unwrap();
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(columns.len()));
    out.push('\n');
    for (model, m) in results {
        write!(out, "| {model} |").unwrap();
        for c in &columns {
            match m.get(*c) {
                Some(v) if v.fract() == 0.0 => write!(out, " {v:.0} |").unwrap(),
                Some(v) => write!(out, " {v:.4} |").unwrap(),
                None => out.push_str(" - |"),
            }
        }
        out.push('\n');
    }
    out
}

//! `evaluate` on sentences: sentence encoders compared without labels — how well each keeps the reference's geometry
//! and, on sentence pairs (`source: pairs`), how well it retrieves each sentence's paraphrase.
//!
//! Per model: `parameters`, `weight_bytes`, `dim`; on pairs, `retrieval_accuracy` (accuracy@1) and `retrieval_mrr`
//! of each first sentence's partner among all second sentences of the split. Against the `reference` (on up to
//! [`GEOMETRY_SENTENCES`] sentences, the first of each pair): `similarity_spearman` (Spearman correlation of the two
//! models' cosine similarities over every pair of them), `neighbour_top1` (share of sentences with the same nearest
//! neighbour), `neighbour_recall_at_10` (share of the reference's 10 nearest found among the model's 10 nearest),
//! `cosine_to_reference` (mean cosine of the two embeddings of a sentence, when the widths agree) and
//! `retrieval_share_of_reference`. Timings (outside every hash): `sentences_per_s_batch1`, `sentences_per_s_batch64`.
//! Sentences are batched by length ([`crate::nn::encode`]); the step records the `tokens` and the `padding_tokens`
//! the batches carried.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::bail;
use tch::{Device, Tensor};

use super::{markdown, EvaluateConfig, METRICS_FILE, TIME_BUDGET};
use crate::artifact::model::{LoadedModel, ModelArtifact};
use crate::data::Dataset;
use crate::nn::encode::{embed_sentences, lengths};
use crate::nn::runtime::precision::Precision;
use crate::nn::training::similarity;
use crate::nn::Mode;
use crate::steps::StepContext;

/// Sentences the geometry metrics compare (every pair of them: ≈ 500,000 for 1000).
pub const GEOMETRY_SENTENCES: i64 = 1000;

/// Sentences per batch when embedding the data.
const BATCH: usize = 64;

pub(super) fn run(config: &EvaluateConfig, ctx: &mut StepContext, data: &Dataset, pad: i64) -> anyhow::Result<()> {
    let pairs = data.meta.is_pairs();
    // Pairs [N, 2, T]: the first sentences, then the second ones.
    let sentences =
        if pairs { Tensor::cat(&[data.x.select(1, 0), data.x.select(1, 1)], 0) } else { data.x.shallow_clone() };
    let (n, width) = (data.len() as i64, *data.meta.sample_shape.last().expect("sentences have a width"));
    let mut results: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut timings: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut embeddings: Vec<(String, Tensor)> = Vec::new();
    let mut padding = (0, 0);
    for (i, name) in config.models.iter().enumerate() {
        let input = ctx.input(&format!("models[{i}]"))?.clone();
        let model = ModelArtifact::load(&input.dir, ctx.device)?;
        let is_encoder = model.spec.arch.as_ref().is_some_and(|a| a.embedding_size().is_some());
        if !is_encoder || model.spec.input_shape != [width] {
            bail!(
                "field `models[{i}]`: `{name}` is not a sentence encoder of {width} tokens (it takes {:?}); the data are sentences",
                model.spec.input_shape
            );
        }
        let bar = ctx.progress.bar(sentences.size()[0] as u64, &format!("{}: {name}", ctx.id));
        let encoded = embed_sentences(model.model.as_ref(), &sentences, pad, BATCH, (ctx.device, Precision::F32), &bar);
        bar.finish_and_clear();
        padding = (encoded.tokens, encoded.padding);
        let mut m = BTreeMap::new();
        m.insert("parameters".to_string(), model.spec.parameters as f64);
        m.insert("weight_bytes".into(), std::fs::metadata(input.dir.join(model.spec.weights_file()))?.len() as f64);
        m.insert("dim".into(), model.spec.classes as f64);
        if pairs {
            let e = &encoded.embeddings;
            let (accuracy, mrr) = similarity::retrieval(&e.narrow(0, 0, n), &e.narrow(0, n, n));
            m.insert("retrieval_accuracy".into(), accuracy);
            m.insert("retrieval_mrr".into(), mrr);
        }
        if config.timing {
            let (one, batched) = speed(&model, &sentences, pad, ctx.device);
            let t = timings.entry(name.to_string()).or_default();
            t.insert("sentences_per_s_batch1".into(), one);
            t.insert("sentences_per_s_batch64".into(), batched);
        }
        results.insert(name.to_string(), m);
        embeddings.push((name.to_string(), encoded.embeddings));
    }
    if let Some(r) = &config.reference {
        // The first sentences only: a pair's second sentence is its first's paraphrase, every model's nearest.
        let geometry = if pairs { n } else { sentences.size()[0] }.min(GEOMETRY_SENTENCES);
        compare_to_reference(&r.to_string(), &embeddings, geometry, &mut results);
    }

    let dir = ctx.output_dir("report")?;
    std::fs::write(dir.join(METRICS_FILE), serde_json::to_string_pretty(&results)? + "\n")?;
    std::fs::write(dir.join("report.md"), markdown(&ctx.id, &results))?;
    for (model, t) in timings {
        ctx.record_timing(&model, serde_json::to_value(t)?);
    }
    ctx.record_metric("tokens", padding.0);
    ctx.record_metric("padding_tokens", padding.1);
    for (model, m) in &results {
        for metric in ["similarity_spearman", "retrieval_accuracy"] {
            if let Some(v) = m.get(metric) {
                ctx.record_metric(&format!("{model}.{metric}"), *v);
            }
        }
    }
    Ok(())
}

/// The geometry metrics of every model against the reference's embeddings, on the first `sentences`.
fn compare_to_reference(
    reference: &str,
    embeddings: &[(String, Tensor)],
    sentences: i64,
    results: &mut BTreeMap<String, BTreeMap<String, f64>>,
) {
    let rows = |e: &Tensor| e.narrow(0, 0, sentences);
    let of_reference = &embeddings.iter().find(|(name, _)| name == reference).expect("checked at parse").1;
    let reference_retrieval = results[reference].get("retrieval_accuracy").copied();
    for (name, e) in embeddings {
        let m = results.get_mut(name).expect("inserted with the embeddings");
        let (a, b) = (rows(e), rows(of_reference));
        m.insert("similarity_spearman".into(), similarity::similarity_spearman(&a, &b));
        let (top1, recall) = similarity::neighbour_agreement(&a, &b);
        m.insert("neighbour_top1".into(), top1);
        m.insert("neighbour_recall_at_10".into(), recall);
        if e.size()[1] == of_reference.size()[1] {
            m.insert("cosine_to_reference".into(), similarity::mean_cosine(e, of_reference));
        }
        if let (Some(own), Some(theirs)) = (m.get("retrieval_accuracy"), reference_retrieval) {
            m.insert("retrieval_share_of_reference".into(), own / theirs.max(f64::MIN_POSITIVE));
        }
    }
}

/// Sentences per second at batch 1 (one sentence at a time, each at its own length, the first 64 sentences) and at
/// batch 64 (sorted by length, the first 256): each the fastest of at least 3 passes over them, and of as many as fit in
/// about [`TIME_BUDGET`] — the fastest, because what slows a pass (another process, a page fault) is not the model.
fn speed(model: &LoadedModel, sentences: &Tensor, pad: i64, device: Device) -> (f64, f64) {
    let sample = sentences.narrow(0, 0, sentences.size()[0].min(256));
    let sync = || {
        if let Device::Cuda(index) = device {
            tch::Cuda::synchronize(index as i64);
        }
    };
    let fastest = |n: usize, pass: &dyn Fn()| {
        pass(); // warm-up: allocator, kernels, caches
        let (started, mut best, mut passes) = (Instant::now(), f64::INFINITY, 0);
        while passes < 3 || started.elapsed() < TIME_BUDGET / 2 {
            let t = Instant::now();
            pass();
            sync();
            best = best.min(t.elapsed().as_secs_f64());
            passes += 1;
        }
        n as f64 / best
    };
    tch::no_grad(|| {
        let lengths = lengths(&sample, pad);
        let rows: Vec<Tensor> = (0..sample.size()[0].min(64))
            .map(|i| sample.narrow(0, i, 1).narrow(1, 0, lengths.int64_value(&[i]).max(1)).to_device(device))
            .collect();
        let one_at_a_time = fastest(rows.len(), &|| {
            for row in &rows {
                let _ = model.model.forward(row, Mode::Eval);
            }
        });
        let bar = indicatif::ProgressBar::hidden();
        let batched = fastest(sample.size()[0] as usize, &|| {
            let _ = embed_sentences(model.model.as_ref(), &sample, pad, BATCH, (device, Precision::F32), &bar);
        });
        (one_at_a_time, batched)
    })
}

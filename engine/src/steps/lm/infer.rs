//! `infer` on text: per-token top-k (or sampled) teacher logits over every training window, streamed into shards (see
//! [`crate::artifact::token_logits`]), so memory holds one shard, not `N·T·V` logits.

use anyhow::Context as _;
use tch::{Device, Kind};

use crate::artifact::logits::StoreDtype;
use crate::artifact::model::LoadedModel;
use crate::artifact::token_logits::{sample, ShardWriter, Sparse, TokenLogitsMeta};
use crate::artifact::LoadedData;
use crate::nn::runtime::precision::Precision;
use crate::nn::Mode;
use crate::rng::Rng;
use crate::steps::StepContext;

/// Windows per shard unless `store.shard_windows` says otherwise (128-token windows, k = 8: ≈ 4 MB per shard).
pub const DEFAULT_SHARD_WINDOWS: i64 = 1024;

pub struct TokenStore {
    pub sparse: Option<Sparse>,
    pub dtype: StoreDtype,
    pub shard_windows: Option<i64>,
    pub batch_size: usize,
    pub precision: Precision,
}

pub fn run(ctx: &mut StepContext, data: &LoadedData, teacher: &LoadedModel, store: &TokenStore) -> anyhow::Result<()> {
    let sparse = store.sparse.context(
        "field `store.top_k`: text data needs top-k (or `sample`) storage (dense per-token logits are N·T·vocab values)",
    )?;
    let (x, y) = (&data.dataset.x, &data.dataset.y);
    let (n, time) = (x.size()[0], x.size()[1]);
    let dir = ctx.output_dir("logits")?;
    let shard_windows = store.shard_windows.unwrap_or(DEFAULT_SHARD_WINDOWS);
    let (k, mut writer) = match sparse {
        Sparse::TopK(k) | Sparse::Sample { slots: Some(k), .. } => {
            (k, ShardWriter::new(&dir, k, store.dtype, shard_windows, teacher.spec.classes))
        }
        Sparse::Sample { draws, slots: None } => {
            (draws, ShardWriter::for_draws(&dir, draws, shard_windows, teacher.spec.classes))
        }
    };
    let bar = ctx.progress.bar(n as u64, &format!("{}: infer", ctx.id));
    let (mut correct, mut nll, mut rest, mut distinct) = (0i64, 0.0, 0.0, 0.0);
    let mut start = 0;
    while start < n {
        let len = (store.batch_size as i64).min(n - start);
        let logits = tch::no_grad(|| {
            let xb = x.narrow(0, start, len).to_device(ctx.device);
            store.precision.forward(teacher.model.as_ref(), &xb, Mode::Eval).to_device(Device::Cpu)
        })
        .to_kind(Kind::Float);
        let labels = y.narrow(0, start, len);
        correct += logits.argmax(-1, false).eq_tensor(&labels).sum(Kind::Int64).int64_value(&[]);
        nll += crate::nn::training::metrics::nll(&crate::nn::tokens::rows(&logits), &labels.flatten(0, -1))
            * (len * time) as f64;
        match sparse {
            Sparse::TopK(_) => rest += writer.push(&logits)?,
            Sparse::Sample { draws, slots } => {
                // One stream per window, named by its index: the draws do not depend on batches or shards.
                let seeds: Vec<u64> =
                    (start..start + len).map(|w| Rng::derive(ctx.seed, &format!("sample/{w}")).next_u64()).collect();
                let drawn = sample(&logits, draws, slots.unwrap_or(draws), &seeds, store.dtype);
                distinct += drawn.distinct.sum(Kind::Double).double_value(&[]);
                rest += writer.push_draws(drawn)?;
            }
        }
        start += len;
        bar.inc(len as u64);
    }
    bar.finish_and_clear();
    let meta = writer.finish(TokenLogitsMeta {
        dataset: data.base.clone(),
        windows: n,
        time,
        classes: teacher.spec.classes,
        top_k: k,
        sampled: matches!(sparse, Sparse::Sample { .. }),
        layout: Default::default(),
        dtype: store.dtype,
        model: ctx.input("model")?.label.clone(),
        shards: Vec::new(),
    })?;
    let tokens = (n * time) as f64;
    ctx.record_metric("samples", n);
    ctx.record_metric("tokens", n * time);
    ctx.record_metric("shards", meta.shards.len());
    ctx.record_metric("teacher_accuracy", correct as f64 / tokens);
    ctx.record_metric("teacher_nll", nll / tokens);
    // How much probability the slots leave out, on average: what the tail stands for (a sampled store: the share
    // of draws that did not fit).
    ctx.record_metric("rest_mean", rest / tokens);
    if let Sparse::Sample { .. } = sparse {
        // How many different tokens the draws found at a position, on average.
        ctx.record_metric("distinct_mean", distinct / tokens);
    }
    let bytes: u64 = (0..meta.shards.len())
        .map(|i| std::fs::metadata(dir.join(format!("shard-{i:05}.safetensors"))).map_or(0, |m| m.len()))
        .sum();
    // What the store costs per token, headers included (DistillKit's anchor: ≈ 114–300 bytes/token).
    ctx.record_metric("bytes_per_token", bytes as f64 / tokens);
    Ok(())
}

//! `kind: infer` — teacher inference: runs a model over a dataset once and caches its logits.
//!
//! ```yaml
//! logits: {kind: infer, model: teacher, data: digits.train, store: {dtype: f16}}
//! logits_top5: {kind: infer, model: teacher, data: mnist.train, store: {dtype: f16, top_k: 5}}
//! tokens: {kind: infer, model: gpt_teacher, data: text.train, store: {top_k: 8}, batch_size: 64}
//! ```
//! Output `logits` (see [`crate::steps::artifacts::logits`]): batched, without autograd, on the workflow's device.
//! On text data, one top-k distribution per token, written in shards as it goes
//! ([`crate::steps::artifacts::token_logits`]); `top_k` is then required.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::artifacts::logits::StoreDtype;
use super::artifacts::{load_data, LogitsArtifact, LogitsMeta};
use super::registry::{parse_config, ParseEnv, StepKind};
use super::{canonical, check_fields, ArtifactKind, InputDecl, OutputDecl, Step, StepContext, StepRef};
use crate::config::{Located, Node};
use crate::nn::model_file::ModelArtifact;
use crate::nn::Mode;

pub const KIND: StepKind =
    StepKind { name: "infer", summary: "run a teacher over a dataset and cache its logits", parse };

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreOptions {
    #[serde(default)]
    pub dtype: StoreDtype,
    /// Keep only the k most likely classes per sample (plus the leftover probability mass).
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Text data: windows per shard file (memory while writing is about one shard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_windows: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferConfig {
    pub model: StepRef,
    pub data: StepRef,
    #[serde(default)]
    pub store: StoreOptions,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_batch_size() -> usize {
    1024
}

#[derive(Debug)]
pub struct Infer {
    config: InferConfig,
}

fn parse(node: &Node, _env: &ParseEnv) -> Result<Box<dyn Step>, Vec<Located>> {
    let config: InferConfig = parse_config(node)?;
    let mut problems = Vec::new();
    if config.batch_size == 0 {
        problems.push(("batch_size".into(), "must be positive, got 0".into()));
    }
    if let Some(k) = config.store.top_k {
        if k < 1 {
            problems.push(("store.top_k".into(), format!("must be at least 1, got {k}")));
        }
    }
    if matches!(config.store.shard_windows, Some(w) if w < 1) {
        problems.push(("store.shard_windows".into(), "must be at least 1".into()));
    }
    check_fields(node, problems)?;
    Ok(Box::new(Infer { config }))
}

/// Logits of `model` over all rows of `x`, in order, `batch_size` rows at a time; returned on the CPU as f32.
pub fn batched_logits(
    model: &dyn crate::nn::Model,
    x: &Tensor,
    batch_size: usize,
    device: Device,
    bar: &indicatif::ProgressBar,
) -> Tensor {
    let n = x.size()[0];
    let mut chunks = Vec::new();
    tch::no_grad(|| {
        let mut start = 0;
        while start < n {
            let len = (batch_size as i64).min(n - start);
            let xb = x.narrow(0, start, len).to_device(device);
            chunks.push(model.forward(&xb, Mode::Eval).to_device(Device::Cpu).to_kind(Kind::Float));
            start += len;
            bar.inc(len as u64);
        }
    });
    Tensor::cat(&chunks, 0)
}

impl Step for Infer {
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("logits", ArtifactKind::Logits)]
    }

    fn inputs(&self) -> Vec<InputDecl> {
        vec![
            InputDecl::new("model", &self.config.model, &[ArtifactKind::Model]),
            InputDecl::new("data", &self.config.data, &[ArtifactKind::Dataset]),
        ]
    }

    fn canonical_config(&self) -> serde_json::Value {
        canonical(&self.config)
    }

    fn run(&self, ctx: &mut StepContext) -> anyhow::Result<()> {
        let data = load_data(ctx, "data")?;
        if data.base_indices.is_some() {
            anyhow::bail!(
                "field `data`: run inference on a full dataset, then filter by its logits (`{}` is a filtered view)",
                ctx.input("data")?.label
            );
        }
        let model_input = ctx.input("model")?.clone();
        let teacher = ModelArtifact::load(&model_input.dir, ctx.device)?;
        let meta = &data.dataset.meta;
        if teacher.spec.input_shape != meta.sample_shape {
            anyhow::bail!(
                "field `model`: `{}` takes samples of shape {:?}, but the data's are {:?}",
                model_input.label,
                teacher.spec.input_shape,
                meta.sample_shape
            );
        }
        if let Some(k) = self.config.store.top_k {
            if k > teacher.spec.classes {
                anyhow::bail!("field `store.top_k`: {k} is more than the model's {} classes", teacher.spec.classes);
            }
        }
        if meta.vocab.is_some() {
            let store = super::lm::infer::TokenStore {
                top_k: self.config.store.top_k,
                dtype: self.config.store.dtype,
                shard_windows: self.config.store.shard_windows,
                batch_size: self.config.batch_size,
            };
            return super::lm::infer::run(ctx, &data, &teacher, &store);
        }
        let bar = ctx.progress.bar(data.dataset.len() as u64, &format!("{}: infer", ctx.id));
        let logits = batched_logits(teacher.model.as_ref(), &data.dataset.x, self.config.batch_size, ctx.device, &bar);
        bar.finish_and_clear();
        let artifact = LogitsArtifact::from_logits(
            &logits,
            LogitsMeta {
                dataset: data.base.clone(),
                samples: data.dataset.len() as i64,
                classes: teacher.spec.classes,
                dtype: self.config.store.dtype,
                top_k: self.config.store.top_k,
                model: model_input.label.clone(),
            },
        );
        artifact.write(&ctx.output_dir("logits")?)?;
        let accuracy = crate::nn::metrics::accuracy(&logits, &data.dataset.y);
        ctx.record_metric("samples", data.dataset.len());
        ctx.record_metric("teacher_accuracy", accuracy);
        Ok(())
    }
}

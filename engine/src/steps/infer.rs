//! `kind: infer` — teacher inference: runs a model over a dataset once and caches its logits.
//!
//! ```yaml
//! logits: {kind: infer, model: teacher, data: digits.train, store: {dtype: f16}}
//! logits_top5: {kind: infer, model: teacher, data: mnist.train, store: {dtype: f16, top_k: 5}}
//! tokens: {kind: infer, model: gpt_teacher, data: text.train, store: {top_k: 8}, batch_size: 64}
//! ```
//! Output `logits` (see [`crate::artifact::logits`]): batched, without autograd, on the workflow's device.
//!
//! `shards: N` splits the dataset into N contiguous shards computed independently: in parallel threads on the local
//! executor (one GPU each when several are visible), as one Slurm job array with `--executor slurm`. A final pass
//! concatenates them into the same `logits` artifact, byte for byte, as an unsharded run (see [`shard_rows`]).
//! On text data, one top-k distribution per token, written in shards as it goes
//! ([`crate::artifact::token_logits`]); `top_k` — or `sample`, tokens drawn from the teacher's distribution
//! ([`crate::artifact::token_logits::sample`]) — is then required. A sentence encoder (`bert`) on `sentences` stores
//! one pooled embedding per sentence instead ([`crate::artifact::embeddings`], f16 by default):
//! ```yaml
//! targets: {kind: infer, model: minilm, data: lines.train, batch_size: 64}
//! ```
//! `store: {hidden_states: [2, 4, 6]}` keeps the encoder's hidden states of those layers as well, at every real
//! token, so `distill`'s `hidden` terms compare against them without running the teacher again.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::load_data;
use super::registry::{parse_config, schema_of, ParseEnv, StepKind};
use super::{canonical, check_fields, ArtifactKind, InputDecl, OutputDecl, Step, StepContext, StepRef};
use crate::artifact::embeddings::{EmbeddingsArtifact, StoredStates};
use crate::artifact::logits::StoreDtype;
use crate::artifact::model::{LoadedModel, ModelArtifact};
use crate::artifact::token_logits::Sparse;
use crate::artifact::{LoadedData, LogitsArtifact, LogitsMeta};
use crate::config::{Located, Node};
use crate::nn::encode::{embed_sentences_with_states, StatesWanted};
use crate::nn::runtime::precision::Precision;
use crate::nn::Mode;

pub const KIND: StepKind = StepKind {
    name: "infer",
    // 2: `sample` without `slots` keeps every draw, as ids with counts (it filled `sample` fixed slots): a layout
    // of per-token logits that readers before it do not know, so no store mixes the two.
    version: 2,
    summary: "run a teacher over a dataset and cache its logits",
    parse,
    schema: schema_of::<InferConfig>,
};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreOptions {
    /// How values are stored: `f16` (half the bytes) or `f32`.
    #[serde(default)]
    pub dtype: StoreDtype,
    /// Keep only the k most likely classes per sample (plus the leftover probability mass).
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Text data, instead of `top_k`: draw this many tokens per position from the teacher's distribution and store
    /// the draws (random-sampling KD: an unbiased estimate of the distribution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<i64>,
    /// With `sample`: keep only the this-many most drawn tokens, in fixed slots, the other draws as leftover mass. By
    /// default every draw is kept, as each position's distinct tokens with their counts (3 bytes a position and 3 a
    /// distinct token; `dtype` does not apply: the counts rebuild the values exactly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<i64>,
    /// Text data: windows per shard file (memory while writing is about one shard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_windows: Option<i64>,
    /// A sentence encoder: also store these hidden states at every real token (numbered as `transformers`'
    /// `output_hidden_states`: 0 the embedding layer's output, `i` layer `i`'s), for `distill`'s `hidden` terms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden_states: Vec<usize>,
}

impl StoreOptions {
    /// What a per-token store keeps (the parse checks that at most one is given).
    pub fn sparse(&self) -> Option<Sparse> {
        match (self.top_k, self.sample) {
            (_, Some(draws)) => Some(Sparse::Sample { draws, slots: self.slots }),
            (Some(k), None) => Some(Sparse::TopK(k)),
            (None, None) => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InferConfig {
    /// The teacher.
    pub model: StepRef,
    /// The samples to run it on.
    pub data: StepRef,
    /// How the outputs are stored: `{dtype: f16, top_k: 8}`.
    #[serde(default)]
    pub store: StoreOptions,
    /// Samples per forward pass.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Split the work into this many contiguous shards (threads locally, a job array on Slurm).
    ///
    /// Not part of the cache key (hence `skip_serializing`: the canonical config leaves it out). Shard boundaries
    /// fall on multiples of `batch_size` ([`shard_rows`]), so every forward pass of a sharded run sees exactly the
    /// batch an unsharded run would, and the shards are concatenated before the one conversion to the stored form:
    /// the output is the same bytes for any number of shards (tested on CPU). Like `--jobs`, it is a scheduling
    /// choice: changing it must not rerun the teacher, and an unsharded result already in the store is reused.
    #[serde(default = "one", skip_serializing)]
    pub shards: usize,
    /// `bf16`: the teacher's forward passes under bf16 autocast (see [`crate::nn::runtime::precision`]); `f32` by default.
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

fn default_batch_size() -> usize {
    1024
}

fn one() -> usize {
    1
}

/// More shards than this is almost certainly a typo (and more array tasks than a cluster's MaxArraySize allows).
const MAX_SHARDS: usize = 10_000;

/// Rows `[start, end)` of shard `index` of `count` over `n` rows: contiguous, in order, covering every row once,
/// with boundaries on multiples of `batch_size` (so batches are the unsharded run's). Trailing shards may be empty
/// when there are fewer batches than shards.
pub fn shard_rows(n: usize, batch_size: usize, index: usize, count: usize) -> (usize, usize) {
    let batches = n.div_ceil(batch_size);
    let at = |i: usize| (i * batches / count * batch_size).min(n);
    (at(index), at(index + 1))
}

/// A shard's file: its rows' f32 logits, exactly as the unsharded computation produced them.
const SHARD_FILE: &str = "logits.safetensors";
const SHARD_META: &str = "shard.json";

#[derive(Serialize, Deserialize)]
struct ShardMeta {
    start: usize,
    end: usize,
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
    if config.shards == 0 || config.shards > MAX_SHARDS {
        problems.push(("shards".into(), format!("must be between 1 and {MAX_SHARDS}, got {}", config.shards)));
    }
    if let Some(k) = config.store.top_k {
        if k < 1 {
            problems.push(("store.top_k".into(), format!("must be at least 1, got {k}")));
        }
    }
    match config.store.sample {
        Some(_) if config.store.top_k.is_some() => {
            problems.push(("store.sample".into(), "give `top_k` or `sample`, not both".into()))
        }
        Some(n) if n < 1 => problems.push(("store.sample".into(), format!("must be at least 1 draw, got {n}"))),
        _ => {}
    }
    match (config.store.slots, config.store.sample) {
        (Some(_), None) => problems.push(("store.slots".into(), "applies to `sample`".into())),
        (Some(s), Some(n)) if !(1..=n).contains(&s) => {
            problems.push(("store.slots".into(), format!("must be between 1 and the {n} draws, got {s}")))
        }
        _ => {}
    }
    if matches!(config.store.shard_windows, Some(w) if w < 1) {
        problems.push(("store.shard_windows".into(), "must be at least 1".into()));
    }
    let states = &config.store.hidden_states;
    if let Some((i, n)) = states.iter().enumerate().find(|(i, n)| states[..*i].contains(n)) {
        problems.push((format!("store.hidden_states[{i}]"), format!("lists state {n} twice")));
    }
    check_fields(node, problems)?;
    Ok(Box::new(Infer { config }))
}

/// Logits of `model` over all rows of `x`, in order, `batch_size` rows at a time, at `precision`; returned on the
/// CPU as f32.
pub fn batched_logits(
    model: &dyn crate::nn::Model,
    x: &Tensor,
    batch_size: usize,
    (device, precision): (Device, Precision),
    bar: &indicatif::ProgressBar,
) -> Tensor {
    let n = x.size()[0];
    let mut chunks = Vec::new();
    tch::no_grad(|| {
        let mut start = 0;
        while start < n {
            let len = (batch_size as i64).min(n - start);
            let xb = x.narrow(0, start, len).to_device(device);
            chunks.push(precision.forward(model, &xb, Mode::Eval).to_device(Device::Cpu).to_kind(Kind::Float));
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

    fn known_classes(&self, _output: &str, input: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        input("model")
    }

    fn check_known_classes(&self, input: &dyn Fn(&str) -> Option<i64>) -> Vec<(String, String)> {
        match (self.config.store.top_k, input("model")) {
            (Some(k), Some(classes)) if k > classes => {
                vec![("store.top_k".into(), format!("{k} is more than the model's {classes} classes"))]
            }
            _ => Vec::new(),
        }
    }

    fn canonical_config(&self) -> serde_json::Value {
        canonical(&self.config)
    }

    fn run(&self, ctx: &mut StepContext) -> anyhow::Result<()> {
        self.config.precision.warn_if_slow(ctx.device, &ctx.id);
        let (data, teacher, label) = self.prepare(ctx)?;
        if let Some(pad) = data.dataset.meta.sentence_padding() {
            return self.run_encoder(ctx, &data, &teacher, label, pad);
        }
        if data.dataset.meta.vocab.is_some() {
            let store = super::lm::infer::TokenStore {
                sparse: self.config.store.sparse(),
                dtype: self.config.store.dtype,
                shard_windows: self.config.store.shard_windows,
                batch_size: self.config.batch_size,
                precision: self.config.precision,
            };
            return super::lm::infer::run(ctx, &data, &teacher, &store);
        }
        let bar = ctx.progress.bar(data.dataset.len() as u64, &format!("{}: infer", ctx.id));
        let on = (ctx.device, self.config.precision);
        let logits = batched_logits(teacher.model.as_ref(), &data.dataset.x, self.config.batch_size, on, &bar);
        bar.finish_and_clear();
        self.finish(ctx, &data, &teacher, label, &logits)
    }

    fn shards(&self) -> usize {
        self.config.shards
    }

    fn run_shard(&self, ctx: &mut StepContext, index: usize, count: usize, dir: &Path) -> anyhow::Result<()> {
        let (data, teacher, _) = self.prepare(ctx)?;
        if data.dataset.meta.sentence_padding().is_some() {
            anyhow::bail!("field `shards`: sentence embeddings are computed in one pass; drop `shards`");
        }
        if data.dataset.meta.vocab.is_some() {
            anyhow::bail!(
                "field `shards`: token logits are already written in shards (`store.shard_windows`); drop `shards`"
            );
        }
        let (start, end) = shard_rows(data.dataset.len(), self.config.batch_size, index, count);
        if end > start {
            let x = data.dataset.x.narrow(0, start as i64, (end - start) as i64);
            let bar = ctx.progress.bar((end - start) as u64, &format!("{}: infer {index}/{count}", ctx.id));
            let on = (ctx.device, self.config.precision);
            let logits = batched_logits(teacher.model.as_ref(), &x, self.config.batch_size, on, &bar);
            bar.finish_and_clear();
            Tensor::write_safetensors(&[("logits", &logits)], dir.join(SHARD_FILE))
                .with_context(|| format!("writing shard {index} of {count}"))?;
        }
        std::fs::write(dir.join(SHARD_META), serde_json::to_string(&ShardMeta { start, end })?)?;
        ctx.record_metric("samples", end - start);
        Ok(())
    }

    fn assemble(&self, ctx: &mut StepContext, shards: &[PathBuf]) -> anyhow::Result<()> {
        let (data, teacher, label) = self.prepare(ctx)?;
        let mut parts = Vec::new();
        let mut next = 0;
        for (index, dir) in shards.iter().enumerate() {
            let meta: ShardMeta = serde_json::from_str(
                &std::fs::read_to_string(dir.join(SHARD_META))
                    .with_context(|| format!("reading shard {index} ({})", dir.display()))?,
            )?;
            let expected = shard_rows(data.dataset.len(), self.config.batch_size, index, shards.len());
            if (meta.start, meta.end) != expected || meta.start != next {
                anyhow::bail!(
                    "shard {index} of {} covers rows {}..{}, expected {}..{} (computed for other data?)",
                    shards.len(),
                    meta.start,
                    meta.end,
                    expected.0,
                    expected.1
                );
            }
            next = meta.end;
            if meta.end > meta.start {
                let mut t = Tensor::read_safetensors(dir.join(SHARD_FILE))
                    .with_context(|| format!("reading shard {index} ({})", dir.display()))?;
                parts.push(t.pop().context("a shard file holds one tensor")?.1);
            }
        }
        if next != data.dataset.len() {
            anyhow::bail!("the shards cover {next} rows of {}", data.dataset.len());
        }
        let logits = Tensor::cat(&parts, 0);
        self.finish(ctx, &data, &teacher, label, &logits)
    }
}

impl Infer {
    /// Loads and checks the inputs: the dataset, the teacher, and the teacher's label for the artifact.
    fn prepare(&self, ctx: &StepContext) -> anyhow::Result<(LoadedData, LoadedModel, String)> {
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
        teacher.spec.check_classes(meta).map_err(|e| anyhow::anyhow!("field `model`: `{}`: {e}", model_input.label))?;
        if let Some(vocab) = &meta.vocab {
            ModelArtifact::check_tokenizer(&model_input.dir, vocab)
                .map_err(|e| anyhow::anyhow!("field `model`: `{}` {e:#}", model_input.label))?;
        }
        let encoder = matches!(teacher.spec.arch, Some(crate::nn::ArchConfig::Bert(_)));
        match (encoder, meta.sentence_padding().is_some()) {
            (true, false) => anyhow::bail!(
                "field `data`: `{}` is a sentence encoder; give it `source: sentences` data",
                model_input.label
            ),
            (false, true) => anyhow::bail!(
                "field `model`: `{}` is not a sentence encoder (`bert`), and the data are sentences",
                model_input.label
            ),
            _ => {}
        }
        if meta.is_pairs() {
            anyhow::bail!("field `data`: infer on `source: sentences` data, not on pairs (they are for `evaluate`)");
        }
        if encoder && self.config.store.top_k.is_some() {
            anyhow::bail!("field `store.top_k`: an encoder's embeddings are stored whole (top_k applies to logits)");
        }
        if !self.config.store.hidden_states.is_empty() {
            let Some(layers) = teacher.model.encoder().map(|e| e.layers()) else {
                anyhow::bail!("field `store.hidden_states`: `{}` is not a sentence encoder", model_input.label);
            };
            if let Some(&n) = self.config.store.hidden_states.iter().find(|&&n| n > layers) {
                anyhow::bail!(
                    "field `store.hidden_states`: `{}` has hidden states 0 to {layers} (0: the embedding layer's), \
                     not {n}",
                    model_input.label
                );
            }
        }
        if self.config.store.sample.is_some() && meta.vocab.is_none() {
            anyhow::bail!("field `store.sample`: draws a language model's next tokens; the data are not text");
        }
        if let Some(k) = self.config.store.top_k {
            if k > teacher.spec.classes {
                anyhow::bail!("field `store.top_k`: {k} is more than the model's {} classes", teacher.spec.classes);
            }
        }
        Ok((data, teacher, model_input.label))
    }

    /// A sentence encoder's embeddings of every sentence, sorted by length into batches
    /// ([`crate::nn::encode::embed_sentences`]), stored in `store.dtype` — with the hidden states
    /// `store.hidden_states` of every real token, if any.
    fn run_encoder(
        &self,
        ctx: &mut StepContext,
        data: &LoadedData,
        teacher: &LoadedModel,
        model: String,
        pad: i64,
    ) -> anyhow::Result<()> {
        let bar = ctx.progress.bar(data.dataset.len() as u64, &format!("{}: embed", ctx.id));
        let on = (ctx.device, self.config.precision);
        let (x, batch, store) = (&data.dataset.x, self.config.batch_size, &self.config.store);
        let wanted = teacher.model.encoder().filter(|_| !store.hidden_states.is_empty()).map(|encoder| StatesWanted {
            encoder,
            numbers: &store.hidden_states,
            kind: store.dtype.kind(),
        });
        let encoded = embed_sentences_with_states(teacher.model.as_ref(), wanted, x, pad, batch, on, &bar);
        bar.finish_and_clear();
        let states = encoded.states.map(|(lengths, tables)| StoredStates::new(lengths, tables));
        let artifact = EmbeddingsArtifact::new(&encoded.embeddings, data.base.clone(), store.dtype, model, states);
        artifact.write(&ctx.output_dir("logits")?)?;
        ctx.record_metric("samples", data.dataset.len());
        ctx.record_metric("dim", artifact.meta.dim);
        ctx.record_metric("tokens", encoded.tokens);
        ctx.record_metric("padding_tokens", encoded.padding);
        if artifact.states.is_some() {
            ctx.record_metric("hidden_state_bytes", artifact.state_bytes());
        }
        Ok(())
    }

    /// Writes the artifact from the f32 logits of every row, in order, and records the metrics.
    fn finish(
        &self,
        ctx: &mut StepContext,
        data: &LoadedData,
        teacher: &LoadedModel,
        model: String,
        logits: &Tensor,
    ) -> anyhow::Result<()> {
        let artifact = LogitsArtifact::from_logits(
            logits,
            LogitsMeta {
                dataset: data.base.clone(),
                samples: data.dataset.len() as i64,
                classes: teacher.spec.classes,
                dtype: self.config.store.dtype,
                top_k: self.config.store.top_k,
                model,
            },
        );
        artifact.write(&ctx.output_dir("logits")?)?;
        let accuracy = crate::nn::training::metrics::accuracy(logits, &data.dataset.y);
        ctx.record_metric("samples", data.dataset.len());
        ctx.record_metric("teacher_accuracy", accuracy);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::shard_rows;

    #[test]
    fn shards_are_contiguous_batch_aligned_and_cover_every_row_once() {
        for (n, bs, count) in [(1000, 64, 4), (1000, 1024, 3), (10, 3, 4), (0, 8, 2), (1437, 100, 7), (5, 1, 5)] {
            let mut next = 0;
            for i in 0..count {
                let (start, end) = shard_rows(n, bs, i, count);
                assert_eq!(start, next, "n={n} bs={bs} count={count} shard {i}");
                assert!(end >= start);
                assert!(start % bs == 0 || start == n, "boundaries fall on batches");
                next = end;
            }
            assert_eq!(next, n);
        }
        assert_eq!(shard_rows(1000, 64, 0, 4), (0, 256));
        assert_eq!(shard_rows(1000, 64, 3, 4), (768, 1000));
    }
}

//! `kind: generate` — samples text from a language model: for a report, or as a transfer set for sequence-level KD
//! (train a student on what the teacher writes, Kim & Rush 2016).
//!
//! ```yaml
//! transfer:
//!   kind: generate
//!   model: teacher
//!   data: text.train          # the vocabulary and window length; prompts are drawn from it
//!   count: 2000               # sequences
//!   length: 129               # tokens per sequence, prompt included (default: the data's window + 1)
//!   prompt_tokens: 16         # each sequence starts with this many tokens of a random place in `data` …
//!   # prompt: "ROMEO:"        # … or with this text
//!   sampling: {temperature: 1.0, top_k: 40}
//! seqkd: {kind: train, data: transfer, model: {arch: gpt, …}, epochs: 5}
//! ```
//! Output `text`: a text dataset with the data's vocabulary and window length (each sequence gives
//! ⌊(length − 1) / T⌋ windows, prompt included), and `samples.txt` with every sequence decoded. Deterministic for
//! a seed: prompts and sampling draw from the step's [`Rng`].

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::load_data;
use super::registry::{parse_config, schema_of, ParseEnv, StepKind};
use super::{canonical, check_fields, ArtifactKind, InputDecl, OutputDecl, Step, StepContext, StepRef};
use crate::artifact::model::ModelArtifact;
use crate::config::{Located, Node};
use crate::data::{Dataset, DatasetMeta};
use crate::nn::sample::{generate, Sampling};
use crate::rng::Rng;

pub const KIND: StepKind = StepKind {
    name: "generate",
    version: 1,
    summary: "sample text from a language model",
    parse,
    schema: schema_of::<GenerateConfig>,
};

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateConfig {
    /// The language model that writes.
    pub model: StepRef,
    /// Text data whose vocabulary (and prompts) it uses.
    pub data: StepRef,
    /// Sequences to generate.
    pub count: i64,
    /// New tokens per sequence (default: the data's context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<i64>,
    /// Text every sequence starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Or start each sequence from this many tokens of a data window.
    #[serde(default = "default_prompt_tokens")]
    pub prompt_tokens: i64,
    /// `{temperature, top_k, top_p}`.
    #[serde(default)]
    pub sampling: Sampling,
    /// Sequences generated together.
    #[serde(default = "default_batch_size")]
    pub batch_size: i64,
}

fn default_prompt_tokens() -> i64 {
    16
}

fn default_batch_size() -> i64 {
    256
}

#[derive(Debug)]
pub struct Generate {
    config: GenerateConfig,
}

fn parse(node: &Node, _env: &ParseEnv) -> Result<Box<dyn Step>, Vec<Located>> {
    let config: GenerateConfig = parse_config(node)?;
    let mut problems: Vec<(String, String)> =
        config.sampling.check().into_iter().map(|(f, m)| (format!("sampling.{f}"), m)).collect();
    for (field, value) in
        [("count", config.count), ("prompt_tokens", config.prompt_tokens), ("batch_size", config.batch_size)]
    {
        if value < 1 {
            problems.push((field.into(), format!("must be at least 1, got {value}")));
        }
    }
    if matches!(&config.prompt, Some(p) if p.is_empty()) {
        problems.push(("prompt".into(), "must not be empty (leave it out to draw prompts from `data`)".into()));
    }
    check_fields(node, problems)?;
    Ok(Box::new(Generate { config }))
}

impl Step for Generate {
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("text", ArtifactKind::Dataset)]
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
        let c = &self.config;
        let data = load_data(ctx, "data")?.dataset;
        let vocab = super::lm::vocab(&data, "data")?.clone();
        let model = ModelArtifact::load(&ctx.input("model")?.dir, ctx.device)?;
        if model.spec.classes != data.meta.classes {
            anyhow::bail!(
                "field `model`: {} tokens, the data's vocabulary has {}",
                model.spec.classes,
                data.meta.classes
            );
        }
        let (windows, time) = (data.x.size()[0], data.x.size()[1]);
        let length = c.length.unwrap_or(time + 1);
        let prompt: Option<Vec<i64>> = match &c.prompt {
            Some(p) => Some(vocab.encode(p).map_err(|e| anyhow::anyhow!("field `prompt`: {e}"))?),
            None => None,
        };
        let prompt_len = prompt.as_ref().map_or(c.prompt_tokens.min(time), |p| p.len() as i64);
        if length <= prompt_len || length < time + 1 {
            anyhow::bail!(
                "field `length`: {length} tokens leave no window of {} (the data's {time} + 1) after a {prompt_len}-token prompt",
                time + 1
            );
        }
        let rng = Rng::new(ctx.seed);
        let (mut prompts_rng, mut sample_rng) = (rng.fork("prompts"), rng.fork("sample"));
        let bar = ctx.progress.bar(c.count as u64, &format!("{}: generate", ctx.id));
        let mut sequences = Vec::new();
        let mut done = 0;
        while done < c.count {
            let n = c.batch_size.min(c.count - done);
            let prompts = match &prompt {
                Some(ids) => Tensor::from_slice(ids).unsqueeze(0).repeat([n, 1]),
                None => {
                    let starts: Vec<Tensor> = (0..n)
                        .map(|_| {
                            let w = prompts_rng.below(windows as u64) as i64;
                            let at = prompts_rng.below((time - prompt_len + 1) as u64) as i64;
                            data.x.get(w).narrow(0, at, prompt_len)
                        })
                        .collect();
                    Tensor::stack(&starts, 0)
                }
            };
            let context = super::lm::context(&model);
            let out = generate(
                model.model.as_ref(),
                &prompts,
                length - prompt_len,
                context,
                &c.sampling,
                &mut sample_rng,
                ctx.device,
            );
            sequences.push(out);
            done += n;
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
        let all = Tensor::cat(&sequences, 0);

        let dir = ctx.output_dir("text")?;
        let texts: Vec<String> =
            (0..c.count).map(|i| vocab.decode(&Vec::<i64>::try_from(&all.get(i)).expect("i64 tokens"))).collect();
        std::fs::write(dir.join("samples.txt"), texts.join("\n\n----\n\n") + "\n").context("writing samples.txt")?;
        let per_sequence = (length - 1) / time;
        let cut = |offset: i64| {
            Tensor::stack(&(0..per_sequence).map(|w| all.narrow(1, w * time + offset, time)).collect::<Vec<_>>(), 1)
                .reshape([c.count * per_sequence, time])
        };
        let meta = DatasetMeta {
            sample_shape: vec![time],
            classes: data.meta.classes,
            class_names: None,
            source: format!("generate:{}", ctx.input("model")?.label),
            vocab: Some(vocab),
        };
        let ds = Dataset::new(cut(0), cut(1), meta)?;
        crate::artifact::dataset::write_dataset(&dir, &ds)?;
        ctx.record_metric("sequences", c.count);
        ctx.record_metric("samples", ds.len());
        ctx.record_metric("tokens", ds.x.numel());
        Ok(())
    }
}

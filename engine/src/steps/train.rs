//! `kind: train` — supervised training of a built-in architecture on labelled data.
//!
//! ```yaml
//! teacher:
//!   kind: train
//!   data: digits.train
//!   val: digits.test              # optional: accuracy after every epoch
//!   model: {arch: mlp, hidden: [256, 256], dropout: 0.2}
//!   epochs: 30
//!   batch_size: 64
//!   optimizer: {name: adam, lr: 0.001}
//!   schedule: {kind: cosine}
//! ```
//! Output `model`: `weights.safetensors`, `model.json` (the architecture) and `history.json` (per-epoch loss and
//! validation accuracy). On text data (`model: {arch: gpt, …}`) the loss is the next-token cross-entropy averaged
//! over every position, and validation accuracy is next-token accuracy.

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::load_data;
use super::registry::{parse_config, schema_of, ParseEnv, StepKind};
use super::training::{build_student, fit_and_save, training_config, Student};
use super::{check_fields, ArtifactKind, InputDecl, OutputDecl, Step, StepContext, StepRef};
use crate::config::{Located, Node};
use crate::data::augment;
use crate::nn::runtime::precision::Precision;
use crate::nn::training::chunked;
use crate::nn::training::learner::{backward_whole, Batch, BatchLoss, TrainStep};
use crate::nn::training::recompute::{RecomputeActivations, Trunk};
use crate::nn::{tokens, ArchConfig, LanguageModel, Mode, Model};
use crate::rng::Rng;

// 2: a model started from `init` keeps that model's tokenizer files. 3: one trained from scratch on a model's
// tokenizer gets that tokenizer's files.
pub const KIND: StepKind = StepKind {
    name: "train",
    version: 3,
    summary: "train a model on labelled data",
    parse,
    schema: schema_of::<TrainConfig>,
};

training_config! {
    pub struct TrainConfig {
        /// The training data: a dataset step's split (`digits.train`) or a filtered view.
        pub data: StepRef,
        /// A dataset to score after every epoch (validation accuracy; next-token accuracy on text).
        #[serde(default)]
        pub val: Option<StepRef>,
        /// The architecture; may be left out with `init` (then it is `init`'s).
        #[serde(default)]
        pub model: Option<ArchConfig>,
    }
    after {
        /// Start from this model's weights instead of a fresh initialisation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub init: Option<StepRef>,
    }
}

#[derive(Debug)]
pub struct Train {
    config: TrainConfig,
}

fn parse(node: &Node, _env: &ParseEnv) -> Result<Box<dyn Step>, Vec<Located>> {
    let config: TrainConfig = parse_config(node)?;
    let mut problems = config.training().check();
    problems.extend(super::training::check_start(config.model.as_ref(), config.init.as_ref()));
    check_fields(node, problems)?;
    Ok(Box::new(Train { config }))
}

/// One batch of supervised training: cross-entropy of the model's logits against the labels (per token for text).
pub(crate) struct Supervised<'a> {
    pub model: &'a dyn Model,
    /// Positions per chunk of a language model's loss.
    pub chunk: i64,
    pub jitter: i64,
    pub precision: Precision,
    /// Recompute the language model's activations in the backward pass ([`Trunk`]).
    pub recompute: RecomputeActivations,
}

impl Supervised<'_> {
    /// The language model whose loss goes a chunk at a time, if the model is one.
    fn chunked(&self) -> Option<&dyn LanguageModel> {
        self.model.language_model().filter(|_| self.jitter == 0)
    }
}

impl TrainStep for Supervised<'_> {
    /// The output projection: one backward pass per chunk of positions reaches it (and a tied token embedding, the
    /// trunk's pass too); the trunk's parameters one pass alone (or one per block, recomputing).
    fn repeatedly_reached_parameters(&self) -> Vec<Tensor> {
        self.chunked().map(|lm| lm.head_parameters()).unwrap_or_default()
    }

    fn loss(&mut self, batch: &Batch, rng: &mut Rng, _progress: f64) -> anyhow::Result<Tensor> {
        let x = if self.jitter > 0 { augment::jitter(&batch.x, self.jitter, rng) } else { batch.x.shallow_clone() };
        let logits = self.precision.forward(self.model, &x, Mode::Train(rng));
        Ok(tokens::cross_entropy(&logits, &batch.y))
    }

    /// A language model's cross-entropy a chunk of positions at a time (see [`chunked`]).
    fn backward(&mut self, batch: &Batch, rng: &mut Rng, progress: f64) -> anyhow::Result<BatchLoss> {
        let Some(lm) = self.chunked() else {
            return backward_whole(self.loss(batch, rng, progress)?, batch.weight);
        };
        let trunk = Trunk::forward(lm, &batch.x, Mode::Train(rng), self.precision, self.recompute)?;
        let labels = tokens::labels(&batch.y);
        let loss = chunked::backward_in_chunks(&tokens::rows(trunk.hidden()), self.chunk, batch.weight, |start, h| {
            let logits = self.precision.run(h.device(), || lm.logits_of(h)).to_kind(Kind::Float);
            Ok((logits.cross_entropy_for_logits(&labels.narrow(0, start, h.size()[0])), Vec::new()))
        })?;
        trunk.backward()?;
        Ok(loss)
    }
}

impl Step for Train {
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("model", ArtifactKind::Model)]
    }

    fn inputs(&self) -> Vec<InputDecl> {
        let mut inputs = vec![InputDecl::new("data", &self.config.data, &[ArtifactKind::Dataset])];
        if let Some(val) = &self.config.val {
            inputs.push(InputDecl::new("val", val, &[ArtifactKind::Dataset]));
        }
        if let Some(init) = &self.config.init {
            inputs.push(InputDecl::new("init", init, &[ArtifactKind::Model]));
        }
        inputs
    }

    fn known_classes(&self, output: &str, input: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        (output == "model").then(|| input("data")).flatten()
    }

    fn canonical_config(&self) -> serde_json::Value {
        super::training::canonical_training(&self.config)
    }

    fn distributed(&self) -> Option<&crate::nn::distributed::DistributedConfig> {
        self.config.distributed.as_ref()
    }

    fn run(&self, ctx: &mut StepContext) -> anyhow::Result<()> {
        self.config.precision.warn_if_slow(ctx.device, &ctx.id);
        let train = load_data(ctx, "data")?.dataset;
        let val = self.config.val.as_ref().map(|_| load_data(ctx, "val")).transpose()?.map(|d| d.dataset);
        let meta = &train.meta;
        if meta.sentence_padding().is_some() {
            anyhow::bail!("field `data`: sentences have no labels to train on; distil an encoder with `kind: distill`");
        }
        let rng = Rng::new(ctx.seed);
        let vs = VarStore::new(ctx.device);
        let init = self.config.init.as_ref().map(|_| ctx.input("init")).transpose()?;
        let (arch, model) = build_student(self.config.model.as_ref(), init, meta, (&vs, &mut rng.fork("init")), None)?;
        super::check_model_fits(model.as_ref(), &train, meta.classes, ctx.device)?;

        let mut step = Supervised {
            model: model.as_ref(),
            chunk: self.config.training().loss_chunk(meta.classes),
            jitter: self.config.jitter,
            precision: self.config.precision,
            recompute: self.config.recompute_activations,
        };
        super::training::check_recompute(
            &self.config.training(),
            arch.name(),
            model.as_ref(),
            step.chunked().is_some(),
        )?;
        let init = init.map(|i| i.dir.clone());
        let student = Student { vs: &vs, arch, model: model.as_ref(), outputs: meta.classes, init };
        fit_and_save(ctx, &self.config.training(), student, &mut step, (&train, val.as_ref()), &rng)
    }
}

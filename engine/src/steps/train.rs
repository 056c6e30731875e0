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
use tch::Tensor;

use super::load_data;
use super::registry::{parse_config, ParseEnv, StepKind};
use super::training::{build_student, training_config, TensorSource};
use super::{canonical, check_fields, ArtifactKind, InputDecl, OutputDecl, Step, StepContext, StepRef};
use crate::artifact::model::{ModelArtifact, ModelSpec};
use crate::config::{Located, Node};
use crate::data::augment;
use crate::nn::runtime::precision::Precision;
use crate::nn::training::learner::{Batch, Learner, ModelEvaluator, TrainStep};
use crate::nn::{ArchConfig, Mode, Model};
use crate::rng::Rng;

pub const KIND: StepKind = StepKind { name: "train", version: 1, summary: "train a model on labelled data", parse };

training_config! {
    pub struct TrainConfig {
        pub data: StepRef,
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
    pub jitter: i64,
    pub precision: Precision,
}

impl TrainStep for Supervised<'_> {
    fn loss(&mut self, batch: &Batch, rng: &mut Rng, _progress: f64) -> anyhow::Result<Tensor> {
        let x = if self.jitter > 0 { augment::jitter(&batch.x, self.jitter, rng) } else { batch.x.shallow_clone() };
        let logits = self.precision.forward(self.model, &x, Mode::Train(rng));
        Ok(crate::nn::tokens::cross_entropy(&logits, &batch.y))
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

    fn canonical_config(&self) -> serde_json::Value {
        canonical(&self.config)
    }

    fn run(&self, ctx: &mut StepContext) -> anyhow::Result<()> {
        let train = load_data(ctx, "data")?.dataset;
        let val = self.config.val.as_ref().map(|_| load_data(ctx, "val")).transpose()?.map(|d| d.dataset);
        let meta = &train.meta;
        let rng = Rng::new(ctx.seed);
        let vs = VarStore::new(ctx.device);
        let init = self.config.init.as_ref().map(|_| ctx.input("init")).transpose()?;
        let (arch, model) = build_student(self.config.model.as_ref(), init, meta, &vs, &mut rng.fork("init"))?;
        super::check_model_fits(model.as_ref(), &train, ctx.device)?;

        let source = TensorSource::new(&train.x, &train.y, ctx.device);
        let val_source = val.as_ref().map(|v| TensorSource::new(&v.x, &v.y, ctx.device));
        let evaluator =
            val_source.as_ref().map(|v| ModelEvaluator { model: model.as_ref(), data: v, batch_size: 1024 });
        let learner = Learner::new(self.config.training().learner());
        let mut step =
            Supervised { model: model.as_ref(), jitter: self.config.jitter, precision: self.config.precision };
        let history = learner.fit(
            &vs,
            &mut step,
            &source,
            evaluator.as_ref().map(|e| e as &dyn crate::nn::training::learner::Evaluator),
            &mut rng.fork("fit"),
            &ctx.progress,
            ctx.checkpoint().as_ref(),
        )?;

        let dir = ctx.output_dir("model")?;
        let spec = ModelSpec::new(arch, meta.sample_shape.clone(), meta.classes, &vs);
        ModelArtifact::save(&dir, &vs, &spec)?;
        std::fs::write(dir.join("history.json"), serde_json::to_string_pretty(&history)? + "\n")?;
        ctx.record_metric("parameters", spec.parameters);
        if let Some(last) = history.last() {
            ctx.record_metric("train_loss", last.train_loss);
            if let Some(acc) = last.val_accuracy {
                ctx.record_metric("val_accuracy", acc);
            }
        }
        Ok(())
    }
}

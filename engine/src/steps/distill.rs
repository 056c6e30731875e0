//! `kind: distill` — trains a student to match a teacher.
//!
//! ```yaml
//! student:
//!   kind: distill
//!   teacher: logits           # offline: cached logits from an `infer` step …
//!   # teacher: big_model      # … or online: any model-producing step, run in the loop
//!   data: kept                # a dataset or a filtered view of the one the logits cover
//!   model: {arch: mlp, hidden: [32]}
//!   loss: {kd: {temperature: 4, alpha: 0.9}}
//!   epochs: 30
//! ```
//! Output `model`, like `train`. The teacher may itself be a distilled student, which makes teacher → assistant →
//! student chains plain DAGs.

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::artifacts::{load_data, LoadedData, LogitsArtifact};
use super::registry::{parse_config, ParseEnv, StepKind};
use super::training::{default_batch_size, default_optimizer, TensorSource, TrainingOptions};
use super::{canonical, check_fields, ArtifactKind, InputDecl, OutputDecl, Step, StepContext, StepRef};
use crate::config::{from_node, Located, Node};
use crate::data::augment;
use crate::loss::{DistillLoss, LossConfig, LossInput, LossTerm, WeightedTerm};
use crate::nn::learner::{Batch, Evaluator, Learner, ModelEvaluator, TrainStep};
use crate::nn::model_file::{LoadedModel, ModelArtifact, ModelSpec};
use crate::nn::optim::OptimizerConfig;
use crate::nn::schedule::LrSchedule;
use crate::nn::{ArchConfig, Mode, Model};
use crate::rng::Rng;

pub const KIND: StepKind =
    StepKind { name: "distill", summary: "train a student from a teacher's logits or model", parse };

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    pub teacher: StepRef,
    pub data: StepRef,
    #[serde(default)]
    pub val: Option<StepRef>,
    pub model: ArchConfig,
    pub loss: LossConfig,
    pub epochs: usize,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default = "default_optimizer")]
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub schedule: LrSchedule,
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    #[serde(default)]
    pub jitter: i64,
}

impl DistillConfig {
    fn training(&self) -> TrainingOptions {
        TrainingOptions {
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer: self.optimizer.clone(),
            schedule: self.schedule.clone(),
            clip_grad_norm: self.clip_grad_norm,
            jitter: self.jitter,
        }
    }
}

#[derive(Debug)]
pub struct Distill {
    config: DistillConfig,
}

fn parse(node: &Node, env: &ParseEnv) -> Result<Box<dyn Step>, Vec<Located>> {
    // `loss` is one term or a list of weighted terms; parse it on its own first so a mistake inside it is reported
    // at its exact place rather than as "no variant matched".
    if let Some(loss) = node.get("loss") {
        match loss.as_seq() {
            Some(_) => from_node::<Vec<WeightedTerm>>(loss).map(|_| ()),
            None => from_node::<LossTerm>(loss).map(|_| ()),
        }
        .map_err(|e| vec![e])?;
    }
    let mut config: DistillConfig = parse_config(node)?;
    config.loss.resolve_paths(&|p| env.resolve(p));
    let mut problems = config.training().check();
    problems.extend(config.loss.validate());
    if let Err(e) = config.model.validate() {
        problems.push(super::field_problem("model", e));
    }
    check_fields(node, problems)?;
    Ok(Box::new(Distill { config }))
}

/// Where the teacher's logits for a batch come from.
enum Teacher {
    /// Cached by an `infer` step; rows looked up through the data's indices into the dataset the logits cover.
    Offline(LogitsArtifact),
    /// A model run in eval mode on the same (possibly jittered) inputs as the student.
    Online(LoadedModel),
}

struct DistillBatch<'a> {
    student: &'a dyn Model,
    teacher: &'a Teacher,
    data: &'a LoadedData,
    loss: Box<dyn DistillLoss>,
    jitter: i64,
    device: Device,
    steps_done: usize,
    total_steps: usize,
}

impl TrainStep for DistillBatch<'_> {
    fn loss(&mut self, batch: &Batch, rng: &mut Rng) -> anyhow::Result<Tensor> {
        let x = if self.jitter > 0 { augment::jitter(&batch.x, self.jitter, rng) } else { batch.x.shallow_clone() };
        let teacher = match self.teacher {
            Teacher::Offline(logits) => logits.dense_logits(&self.data.base_rows(&batch.idx)).to_device(self.device),
            Teacher::Online(t) => tch::no_grad(|| t.model.forward(&x, Mode::Eval)),
        };
        let student = self.student.forward(&x, Mode::Train(rng));
        let progress = self.steps_done as f64 / self.total_steps.max(1) as f64;
        self.steps_done += 1;
        self.loss.loss(&LossInput { student: &student, teacher: &teacher, labels: &batch.y, progress })
    }
}

impl Step for Distill {
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("model", ArtifactKind::Model)]
    }

    fn inputs(&self) -> Vec<InputDecl> {
        let mut inputs = vec![
            InputDecl::new("teacher", &self.config.teacher, &[ArtifactKind::Logits, ArtifactKind::Model]),
            InputDecl::new("data", &self.config.data, &[ArtifactKind::Dataset]),
        ];
        if let Some(val) = &self.config.val {
            inputs.push(InputDecl::new("val", val, &[ArtifactKind::Dataset]));
        }
        inputs
    }

    fn files(&self) -> Vec<std::path::PathBuf> {
        self.config.loss.files()
    }

    fn canonical_config(&self) -> serde_json::Value {
        canonical(&self.config)
    }

    fn run(&self, ctx: &mut StepContext) -> anyhow::Result<()> {
        let data = load_data(ctx, "data")?;
        let val = self.config.val.as_ref().map(|_| load_data(ctx, "val")).transpose()?;
        let teacher_input = ctx.input("teacher")?.clone();
        let teacher = match teacher_input.kind {
            ArtifactKind::Logits => {
                let logits = LogitsArtifact::read(&teacher_input.dir)?;
                if logits.meta.dataset != data.base {
                    anyhow::bail!(
                        "field `teacher`: the logits `{}` were computed on {}, but `data` ({}) comes from {}; \
                         distil on the dataset the teacher saw, or a filter of it",
                        teacher_input.label,
                        logits.meta.dataset.display(),
                        ctx.input("data")?.label,
                        data.base.display()
                    );
                }
                Teacher::Offline(logits)
            }
            _ => Teacher::Online(ModelArtifact::load(&teacher_input.dir, ctx.device)?),
        };
        let classes = match &teacher {
            Teacher::Offline(l) => l.meta.classes,
            Teacher::Online(m) => m.spec.classes,
        };
        let meta = &data.dataset.meta;
        if classes != meta.classes {
            anyhow::bail!("field `teacher`: the teacher has {classes} classes, the data {}", meta.classes);
        }

        let rng = Rng::new(ctx.seed);
        let vs = VarStore::new(ctx.device);
        let student =
            crate::nn::build(&self.config.model, &vs.root(), &meta.sample_shape, meta.classes, &mut rng.fork("init"))
                .map_err(|e| anyhow::anyhow!("field `model`: {e:#}"))?;
        super::check_model_fits(student.as_ref(), &data.dataset, ctx.device)?;

        let source = TensorSource::new(&data.dataset.x, &data.dataset.y, ctx.device);
        let val_source = val.as_ref().map(|v| TensorSource::new(&v.dataset.x, &v.dataset.y, ctx.device));
        let evaluator =
            val_source.as_ref().map(|v| ModelEvaluator { model: student.as_ref(), data: v, batch_size: 1024 });
        let training = self.config.training();
        let mut step = DistillBatch {
            student: student.as_ref(),
            teacher: &teacher,
            data: &data,
            loss: self.config.loss.build()?,
            jitter: self.config.jitter,
            device: ctx.device,
            steps_done: 0,
            total_steps: data.dataset.len().div_ceil(training.batch_size) * training.epochs,
        };
        let history = Learner::new(training.learner()).fit(
            &vs,
            &mut step,
            &source,
            evaluator.as_ref().map(|e| e as &dyn Evaluator),
            &mut rng.fork("fit"),
            &ctx.progress,
        )?;

        let dir = ctx.output_dir("model")?;
        let spec = ModelSpec::new(self.config.model.clone(), meta.sample_shape.clone(), meta.classes, &vs);
        ModelArtifact::save(&dir, &vs, &spec)?;
        std::fs::write(dir.join("history.json"), serde_json::to_string_pretty(&history)? + "\n")?;
        ctx.record_metric("parameters", spec.parameters);
        ctx.record_metric("samples", data.dataset.len());
        if let Some(last) = history.last() {
            ctx.record_metric("train_loss", last.train_loss);
            if let Some(acc) = last.val_accuracy {
                ctx.record_metric("val_accuracy", acc);
            }
        }
        Ok(())
    }
}

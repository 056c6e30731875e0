//! `kind: distill` — trains a student to match a teacher.
//!
//! ```yaml
//! student:
//!   kind: distill
//!   teacher: logits           # offline: cached logits from an `infer` step …
//!   # teacher: big_model      # … or online: any model-producing step, run in the loop
//!   # teacher: [a, b]         # … or several, combined by a weighted mean of log-probabilities
//!   # teacher_weights: [2, 1]
//!   data: kept                # a dataset or a filtered view of the one the logits cover
//!   model: {arch: mlp, hidden: [32]}
//!   loss: {kd: {temperature: 4, alpha: 0.9}}
//!   epochs: 30
//! ```
//! Output `model`, like `train`. The teacher may itself be a distilled student, which makes teacher → assistant →
//! student chains plain DAGs.
//!
//! Language models work the same way: `data` is a text dataset, the teacher per-token top-k logits from `infer` (or
//! a `gpt` model, online), and every loss term — built in or a plugin — sees one row per token: student and teacher
//! `[B·T, V]`, labels `[B·T]` (see [`crate::nn::tokens`]), so `kd` is token-level KD averaged over tokens.

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::load_data;
use super::registry::{parse_config, ParseEnv, StepKind};
use super::training::{training_config, TensorSource};
use super::{canonical, check_fields, ArtifactKind, InputDecl, OneOrMany, OutputDecl, Step, StepContext, StepRef};
use crate::artifact::model::{LoadedModel, ModelArtifact, ModelSpec};
use crate::artifact::token_logits::{expand_like, is_token_logits};
use crate::artifact::{LoadedData, LogitsArtifact, TokenLogits};
use crate::config::{from_node, Located, Node};
use crate::data::augment;
use crate::loss::{DistillLoss, LossConfig, LossInput, LossTerm, WeightedTerm};
use crate::nn::runtime::precision::Precision;
use crate::nn::training::learner::{Batch, Evaluator, Learner, ModelEvaluator, TrainStep};
use crate::nn::{tokens, ArchConfig, Mode, Model};
use crate::rng::Rng;

pub const KIND: StepKind =
    StepKind { name: "distill", version: 1, summary: "train a student from a teacher's logits or model", parse };

training_config! {
    pub struct DistillConfig {
        pub teacher: OneOrMany,
        /// With several teachers: their weights (normalised to sum to 1); equal by default.
        #[serde(default)]
        pub teacher_weights: Option<Vec<f64>>,
        pub data: StepRef,
        #[serde(default)]
        pub val: Option<StepRef>,
        /// The student's architecture; may be left out with `init` (then it is `init`'s).
        #[serde(default)]
        pub model: Option<ArchConfig>,
        pub loss: LossConfig,
    }
    after {
        /// Top-k teacher logits: how the leftover mass is spread over the tokens (classes) outside the top k when
        /// the distribution is rebuilt — `even` (default), or `student` (like the student's own distribution there,
        /// which makes forward KL exact over "top k + the rest"; see [`crate::artifact::token_logits`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub top_k_tail: Option<TopKTail>,
        /// Start the student from this model's weights (a pruned teacher) instead of a fresh initialisation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub init: Option<StepRef>,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopKTail {
    Even,
    Student,
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
    if config.teacher.is_empty() {
        problems.push(("teacher".into(), "list at least one teacher".into()));
    }
    if let Some(w) = &config.teacher_weights {
        if w.len() != config.teacher.len() {
            problems
                .push(("teacher_weights".into(), format!("{} weights for {} teachers", w.len(), config.teacher.len())));
        } else if w.iter().any(|x| !(x.is_finite() && *x >= 0.0)) || w.iter().sum::<f64>() <= 0.0 {
            problems.push(("teacher_weights".into(), "weights must be 0 or more, and not all 0".into()));
        }
    }
    problems.extend(super::training::check_start(config.model.as_ref(), config.init.as_ref()));
    check_fields(node, problems)?;
    check_fields(node, config.loss.canonicalize())?;
    Ok(Box::new(Distill { config }))
}

/// Where the teacher's logits for a batch come from.
pub enum Teacher {
    /// Cached by an `infer` step; rows looked up through the data's indices into the dataset the logits cover.
    Offline(LogitsArtifact),
    /// Per-token top-k logits of a language model, looked up the same way.
    Tokens(TokenLogits),
    /// A model run in eval mode on the same (possibly jittered) inputs as the student.
    Online(LoadedModel),
}

impl Teacher {
    /// The teacher's logits for a batch: looked up (offline) or computed on the batch's inputs (online). With
    /// `shape_tail`, a top-k teacher's leftover mass follows the student's logits `student`. An online teacher runs
    /// at `precision`.
    fn logits(
        &self,
        x: &Tensor,
        base_rows: &Tensor,
        (device, precision): (Device, Precision),
        student: &Tensor,
        shape_tail: bool,
    ) -> Tensor {
        let top_k = match self {
            Teacher::Offline(logits) if shape_tail => logits.top_k(base_rows),
            Teacher::Tokens(logits) if shape_tail => Some(logits.top_k(base_rows)),
            _ => None,
        };
        if let Some((logprobs, indices, rest)) = top_k {
            let on = |t: Tensor| t.to_device(device);
            return expand_like(&on(logprobs), &on(indices), &on(rest), student);
        }
        match self {
            Teacher::Offline(logits) => logits.dense_logits(base_rows).to_device(device),
            Teacher::Tokens(logits) => logits.dense_logits(base_rows).to_device(device),
            Teacher::Online(t) => tch::no_grad(|| precision.forward(t.model.as_ref(), x, Mode::Eval)),
        }
    }
}

/// One batch of distillation: the [`TrainStep`] a distill step's [`Learner`] drives. Public so benchmarks and
/// embedders run exactly the code a workflow runs (`examples/bench.rs`).
pub struct DistillBatch<'a> {
    pub student: &'a dyn Model,
    /// Teachers and their normalised weights.
    pub teachers: &'a [(Teacher, f64)],
    pub data: &'a LoadedData,
    pub loss: Box<dyn DistillLoss>,
    pub jitter: i64,
    pub device: Device,
    pub shape_tail: bool,
    pub precision: Precision,
}

impl TrainStep for DistillBatch<'_> {
    fn loss(&mut self, batch: &Batch, rng: &mut Rng, progress: f64) -> anyhow::Result<Tensor> {
        let x = if self.jitter > 0 { augment::jitter(&batch.x, self.jitter, rng) } else { batch.x.shallow_clone() };
        let rows = self.data.base_rows(&batch.idx);
        let student = self.precision.forward(self.student, &x, Mode::Train(rng));
        let logits = |t: &Teacher| t.logits(&x, &rows, (self.device, self.precision), &student, self.shape_tail);
        let teacher = match self.teachers {
            [(only, _)] => logits(only),
            // An ensemble: the weighted mean of log-probabilities, i.e. a normalised weighted geometric mean.
            many => many
                .iter()
                .map(|(t, w)| logits(t).log_softmax(-1, tch::Kind::Float) * *w)
                .reduce(|a, b| a + b)
                .expect("at least one teacher"),
        };
        // Sequence logits become one row per token; classifier logits pass through.
        let sequence_len = (student.dim() == 3).then(|| student.size()[1]);
        let (student, teacher, labels) = (tokens::rows(&student), tokens::rows(&teacher), tokens::labels(&batch.y));
        self.loss.loss(&LossInput { student: &student, teacher: &teacher, labels: &labels, progress, sequence_len })
    }
}

/// Loads the teacher behind `role`: cached logits (checked to cover `data`'s rows) or a model.
/// Token-level KD compares distributions over the same tokens: a teacher that brought its own tokenizer must be the
/// one the data was tokenised with — the same tokenizer, not just the same vocabulary size. (Offline logits are
/// checked by the dataset they were computed on.)
fn same_tokenizer(data: &crate::data::Vocab, teacher_dir: &std::path::Path) -> anyhow::Result<()> {
    use crate::data::tokenizer::{TextTokenizer, TOKENIZER_FILE};
    if !teacher_dir.join(TOKENIZER_FILE).is_file() {
        return Ok(());
    }
    let teacher = TextTokenizer::from_dir(teacher_dir)?;
    let describe = |v: &crate::data::Vocab| match v {
        crate::data::Vocab::Byte => "bytes (256 tokens)".to_string(),
        crate::data::Vocab::Char { .. } => format!("the corpus' {} characters", v.size()),
        crate::data::Vocab::Tokenizer { tokenizer, .. } => {
            format!("a tokenizer of {} tokens ({})", tokenizer.size(), &tokenizer.fingerprint()[..12])
        }
    };
    let same = matches!(data, crate::data::Vocab::Tokenizer { tokenizer, .. } if **tokenizer == teacher);
    if !same {
        anyhow::bail!(
            "tokenises with a tokenizer of {} tokens ({}), the data with {}; token-level KD needs the teacher's own \
             tokenizer (`tokenizer: {{model: TEACHER}}` on the dataset)",
            teacher.size(),
            &teacher.fingerprint()[..12],
            describe(data)
        );
    }
    Ok(())
}

fn load_teacher(ctx: &StepContext, role: &str, data: &LoadedData) -> anyhow::Result<Teacher> {
    let input = ctx.input(role)?;
    if input.kind != ArtifactKind::Logits {
        if let Some(vocab) = &data.dataset.meta.vocab {
            same_tokenizer(vocab, &input.dir).map_err(|e| anyhow::anyhow!("field `{role}`: `{}` {e}", input.label))?;
        }
        return Ok(Teacher::Online(ModelArtifact::load(&input.dir, ctx.device)?));
    }
    let (teacher, dataset) = if is_token_logits(&input.dir) {
        let logits = TokenLogits::read(&input.dir)?;
        let dataset = logits.meta.dataset.clone();
        (Teacher::Tokens(logits), dataset)
    } else {
        let logits = LogitsArtifact::read(&input.dir)?;
        let dataset = logits.meta.dataset.clone();
        (Teacher::Offline(logits), dataset)
    };
    if dataset != data.base {
        anyhow::bail!(
            "field `{role}`: the logits `{}` were computed on {}, but `data` ({}) comes from {}; \
             distil on the dataset the teacher saw, or a filter of it",
            input.label,
            dataset.display(),
            ctx.input("data")?.label,
            data.base.display()
        );
    }
    Ok(teacher)
}

impl Step for Distill {
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("model", ArtifactKind::Model)]
    }

    fn inputs(&self) -> Vec<InputDecl> {
        let mut inputs: Vec<InputDecl> = self
            .config
            .teacher
            .roles("teacher")
            .into_iter()
            .map(|(role, r)| InputDecl::new(role, r, &[ArtifactKind::Logits, ArtifactKind::Model]))
            .collect();
        inputs.push(InputDecl::new("data", &self.config.data, &[ArtifactKind::Dataset]));
        if let Some(val) = &self.config.val {
            inputs.push(InputDecl::new("val", val, &[ArtifactKind::Dataset]));
        }
        if let Some(init) = &self.config.init {
            inputs.push(InputDecl::new("init", init, &[ArtifactKind::Model]));
        }
        inputs
    }

    fn files(&self) -> Vec<super::FileInput> {
        self.config.loss.files().into_iter().map(|(written, path)| super::FileInput { written, path }).collect()
    }

    fn canonical_config(&self) -> serde_json::Value {
        canonical(&self.config)
    }

    fn run(&self, ctx: &mut StepContext) -> anyhow::Result<()> {
        let data = load_data(ctx, "data")?;
        let val = self.config.val.as_ref().map(|_| load_data(ctx, "val")).transpose()?;
        let meta = &data.dataset.meta;
        let roles = self.config.teacher.roles("teacher");
        let weights = self.config.teacher_weights.clone().unwrap_or_else(|| vec![1.0; roles.len()]);
        let total: f64 = weights.iter().sum();
        let mut teachers = Vec::new();
        for ((role, _), weight) in roles.iter().zip(weights) {
            let teacher = load_teacher(ctx, role, &data)?;
            let classes = match &teacher {
                Teacher::Offline(l) => l.meta.classes,
                Teacher::Tokens(l) => l.meta.classes,
                Teacher::Online(m) => m.spec.classes,
            };
            if let Teacher::Online(m) = &teacher {
                if m.spec.input_shape != meta.sample_shape {
                    anyhow::bail!(
                        "field `{role}`: `{}` takes samples of shape {:?}, the data's are {:?}",
                        ctx.input(role)?.label,
                        m.spec.input_shape,
                        meta.sample_shape
                    );
                }
            }
            if classes != meta.classes {
                anyhow::bail!("field `{role}`: the teacher has {classes} classes, the data {}", meta.classes);
            }
            teachers.push((teacher, weight / total));
        }

        if self.config.top_k_tail == Some(TopKTail::Student) {
            let top_k = |t: &Teacher| match t {
                Teacher::Offline(l) => l.meta.top_k.is_some(),
                Teacher::Tokens(_) => true,
                Teacher::Online(_) => false,
            };
            if !teachers.iter().all(|(t, _)| top_k(t)) {
                anyhow::bail!(
                    "field `top_k_tail`: applies to teachers stored as top-k logits (`infer` with `store.top_k`)"
                );
            }
        }

        let rng = Rng::new(ctx.seed);
        let vs = VarStore::new(ctx.device);
        let init = self.config.init.as_ref().map(|_| ctx.input("init")).transpose()?;
        let (arch, student) =
            super::training::build_student(self.config.model.as_ref(), init, meta, &vs, &mut rng.fork("init"))?;
        super::check_model_fits(student.as_ref(), &data.dataset, ctx.device)?;

        let source = TensorSource::new(&data.dataset.x, &data.dataset.y, ctx.device);
        let val_source = val.as_ref().map(|v| TensorSource::new(&v.dataset.x, &v.dataset.y, ctx.device));
        let evaluator =
            val_source.as_ref().map(|v| ModelEvaluator { model: student.as_ref(), data: v, batch_size: 1024 });
        let training = self.config.training();
        let mut step = DistillBatch {
            student: student.as_ref(),
            teachers: &teachers,
            data: &data,
            loss: self.config.loss.build()?,
            jitter: self.config.jitter,
            device: ctx.device,
            shape_tail: self.config.top_k_tail == Some(TopKTail::Student),
            precision: self.config.precision,
        };
        let history = Learner::new(training.learner()).fit(
            &vs,
            &mut step,
            &source,
            evaluator.as_ref().map(|e| e as &dyn Evaluator),
            &mut rng.fork("fit"),
            &ctx.progress,
            ctx.checkpoint().as_ref(),
        )?;

        let dir = ctx.output_dir("model")?;
        let spec = ModelSpec::new(arch, meta.sample_shape.clone(), meta.classes, &vs);
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

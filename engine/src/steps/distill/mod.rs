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
//!
//! A sentence encoder (`bert`) on `source: sentences` data is distilled from a teacher encoder's embeddings —
//! stored by `infer`, or the teacher model online — with `mse_embedding`, `cosine_embedding` and
//! `similarity_embedding` ([`crate::loss::embedding`]), usually from a pruned copy of the teacher (`init`):
//! ```yaml
//! student: {kind: distill, teacher: targets, data: lines.train, init: pruned, loss: {mse_embedding: {}}}
//! ```
//! A student narrower than its teacher learns through a linear `projection` to the teacher's width, kept as the
//! student's last layer or dropped after training ([`projection`]); `hidden` terms compare intermediate layers, with
//! the teacher online or its states stored by `infer` (`store.hidden_states`, [`features`]).

mod features;
mod projection;
mod teacher;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::load_data;
use super::registry::{parse_config, schema_of, ParseEnv, StepKind};
use super::training::{fit_and_save, training_config, Student};
use super::{check_fields, ArtifactKind, InputDecl, OneOrMany, OutputDecl, Step, StepContext, StepRef};
use crate::artifact::LoadedData;
use crate::config::{from_node, Located, Node};
use crate::data::augment;
pub use crate::loss::TopKTail;
use crate::loss::{Compares, DistillLoss, LossConfig, LossInput, LossTerm, Target, WeightedTerm};
use crate::nn::runtime::precision::Precision;
use crate::nn::training::chunked::backward_in_chunks;
use crate::nn::training::learner::{backward_with_terms, Batch, BatchLoss, TrainStep};
use crate::nn::training::recompute::{RecomputeActivations, Trunk};
use crate::nn::{tokens, ArchConfig, LanguageModel, Mode, Model};
use crate::rng::Rng;
pub use features::FeatureTaps;
use features::{check_stored_lengths, TeacherStates};
pub use projection::{dropped_projection, Projection};
pub use teacher::Teacher;
use teacher::{load_teacher, TeacherRows};

// 2: a student started from `init` keeps that model's tokenizer files. 3: `history.json` holds each term's share of
// the loss when it has several. 4: one trained from scratch on a model's tokenizer gets that tokenizer's files.
// 5: a language model's forward KL from one top-k teacher is read from the stored top k, not a rebuilt dense
// teacher (the same loss, other f32 rounding).
pub const KIND: StepKind = StepKind {
    name: "distill",
    version: 5,
    summary: "train a student from a teacher's logits or model",
    parse,
    schema: schema_of::<DistillConfig>,
};

training_config! {
    pub struct DistillConfig {
        /// What the student learns from: stored logits (an `infer` step), a model (run in the loop), or a list of them (an ensemble).
        pub teacher: OneOrMany,
        /// With several teachers: their weights (normalised to sum to 1); equal by default.
        #[serde(default)]
        pub teacher_weights: Option<Vec<f64>>,
        /// The training data (with labels for the label terms of the loss).
        pub data: StepRef,
        /// A dataset to score after every epoch.
        #[serde(default)]
        pub val: Option<StepRef>,
        /// The student's architecture; may be left out with `init` (then it is `init`'s).
        #[serde(default)]
        pub model: Option<ArchConfig>,
        /// One term (`{kd: {temperature: 4, alpha: 0.9}}`) or a weighted list of terms, plugins included.
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
        /// A sentence-encoder student narrower than its teacher: a learned linear map of its embeddings to the
        /// teacher's width, `keep` (a final dense layer of the saved student) or `drop` (for the loss only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub projection: Option<Projection>,
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
    /// How a top-k teacher's leftover mass is spread (`top_k_tail`).
    pub tail: TopKTail,
    pub precision: Precision,
    /// Positions per chunk of a language-model student's loss.
    pub chunk: i64,
    /// Recompute a language-model student's activations in the backward pass ([`Trunk`]).
    pub recompute: RecomputeActivations,
    /// The hidden states a feature loss compares (an encoder student and online teacher), when it has such terms.
    pub features: Option<FeatureTaps>,
    /// `projection: drop`: the map of the student's embeddings to the teacher's width the loss sees.
    pub projection: Option<crate::nn::layers::Linear>,
}

impl TrainStep for DistillBatch<'_> {
    fn loss(&mut self, batch: &Batch, rng: &mut Rng, progress: f64) -> anyhow::Result<Tensor> {
        Ok(self.loss_and_terms(batch, rng, progress)?.0)
    }

    /// A language-model student with a loss that is a mean over positions is scored a chunk of positions at a
    /// time, its logits (and the teacher's) never held for the whole batch; anything else as one loss.
    fn backward(&mut self, batch: &Batch, rng: &mut Rng, progress: f64) -> anyhow::Result<BatchLoss> {
        match self.chunked() {
            Some(lm) => self.backward_chunked(lm, batch, rng, progress),
            None => {
                let (loss, terms) = self.loss_and_terms(batch, rng, progress)?;
                backward_with_terms(loss, terms, batch.weight)
            }
        }
    }

    /// The output projection: one backward pass per chunk of positions reaches it (and a tied token embedding, the
    /// trunk's pass too); the trunk's parameters one pass alone (or one per block, recomputing).
    fn repeatedly_reached_parameters(&self) -> Vec<Tensor> {
        self.chunked().map(|lm| lm.head_parameters()).unwrap_or_default()
    }

    fn term_names(&self) -> Vec<String> {
        self.loss.term_names()
    }
}

impl DistillBatch<'_> {
    /// The whole batch's loss and its terms' shares ([`DistillLoss::loss_and_terms`]).
    fn loss_and_terms(&mut self, batch: &Batch, rng: &mut Rng, progress: f64) -> anyhow::Result<(Tensor, Vec<Tensor>)> {
        let x = if self.jitter > 0 { augment::jitter(&batch.x, self.jitter, rng) } else { batch.x.shallow_clone() };
        let rows = self.data.base_rows(&batch.idx);
        if let Some(taps) = &self.features {
            return self.loss_with_features(taps, (&x, &rows), progress);
        }
        let student = self.projected(self.precision.forward(self.student, &x, Mode::Train(rng)));
        let teacher =
            ensemble(self.teachers, |t| t.logits(&x, &rows, (self.device, self.precision), &student, self.tail));
        // Sequence logits become one row per token; classifier logits pass through. Sentences have no labels.
        let sequence_len = (student.dim() == 3).then(|| student.size()[1]);
        let labels = match self.data.dataset.meta.sentence_padding() {
            Some(_) => Tensor::zeros([0], (Kind::Int64, self.device)),
            None => tokens::labels(&batch.y),
        };
        let (student, teacher) = (tokens::rows(&student), tokens::rows(&teacher));
        let input = LossInput {
            student: &student,
            teacher: Target::Dense(&teacher),
            labels: &labels,
            progress,
            sequence_len,
            features: None,
        };
        self.loss.loss_and_terms(&input)
    }
}

impl DistillBatch<'_> {
    /// The loss of an encoder student against its online teacher encoder with the hidden states the feature terms
    /// compare, both from one forward pass each.
    fn loss_with_features(
        &self,
        taps: &FeatureTaps,
        inputs: (&Tensor, &Tensor),
        progress: f64,
    ) -> anyhow::Result<(Tensor, Vec<Tensor>)> {
        let encoders = (self.student.encoder(), self.teachers.first().and_then(|(t, _)| t.states()));
        let (Some(student), Some(teacher)) = encoders else {
            anyhow::bail!("feature losses need an encoder student and a teacher's hidden states (checked before)");
        };
        let tapped = taps.run((student, teacher), inputs, (self.device, self.precision));
        let labels = Tensor::zeros([0], (Kind::Int64, self.device));
        self.loss.loss_and_terms(&LossInput {
            student: &self.projected(tapped.student),
            teacher: Target::Dense(&tapped.teacher),
            labels: &labels,
            progress,
            sequence_len: None,
            features: Some(&tapped.features),
        })
    }
}

impl DistillBatch<'_> {
    /// The student's embeddings as the loss compares them: through `projection: drop`'s map when there is one.
    fn projected(&self, student: Tensor) -> Tensor {
        match &self.projection {
            Some(p) => p.forward(&student),
            None => student,
        }
    }
}

/// The teacher logits of one teacher as they are; of several, the weighted mean of their log-probabilities (a
/// normalised weighted geometric mean). `teachers` holds each with its normalised weight.
fn ensemble<T>(teachers: &[(T, f64)], logits: impl Fn(&T) -> Tensor) -> Tensor {
    match teachers {
        [(only, _)] => logits(only),
        many => many
            .iter()
            .map(|(t, w)| logits(t).log_softmax(-1, Kind::Float) * *w)
            .reduce(|a, b| a + b)
            .expect("at least one teacher"),
    }
}

impl Distill {
    /// The loss and the teachers must compare the same thing: distributions, or (on sentences) embeddings — from one
    /// teacher, without `val` (an encoder is measured by `evaluate`).
    fn check_targets(&self, ctx: &StepContext, sentences: bool, teachers: &[(Teacher, f64)]) -> anyhow::Result<()> {
        let what = if sentences { Compares::Embeddings } else { Compares::Distributions };
        if let Err((field, message)) = self.config.loss.check_compares(what) {
            anyhow::bail!("field `{field}`: {message}");
        }
        for ((role, _), (teacher, _)) in self.config.teacher.roles("teacher").iter().zip(teachers) {
            if teacher.gives_embeddings() != sentences {
                let label = &ctx.input(role)?.label;
                match sentences {
                    true => anyhow::bail!(
                        "field `{role}`: `{label}` gives logits; sentences are distilled from an encoder's \
                         embeddings (`infer` on a `bert`, or the `bert` itself)"
                    ),
                    false => {
                        anyhow::bail!("field `{role}`: `{label}` gives sentence embeddings; the data are not sentences")
                    }
                }
            }
        }
        match (sentences, &self.config.val) {
            (true, Some(_)) => anyhow::bail!("field `val`: an encoder is measured by `evaluate`, not on a `val` set"),
            (true, None) if teachers.len() > 1 => anyhow::bail!("field `teacher`: an encoder learns from one teacher"),
            _ => Ok(()),
        }
    }
}

impl Distill {
    /// The hidden states the loss's feature terms compare, if it has any: they need an encoder student and the
    /// teacher encoder itself, or embeddings stored with the teacher's hidden states.
    fn feature_taps(
        &self,
        ctx: &StepContext,
        (student, data): (&dyn Model, &LoadedData),
        teachers: &[(Teacher, f64)],
        pairs: Vec<(usize, usize)>,
        (vs, rng): (&VarStore, &mut Rng),
    ) -> anyhow::Result<Option<FeatureTaps>> {
        let Some((i, _)) =
            self.config.loss.terms().iter().enumerate().find(|(_, t)| matches!(t.term, LossTerm::Hidden(_)))
        else {
            return Ok(None);
        };
        let field = match self.config.loss {
            LossConfig::One(_) => "loss.hidden".to_string(),
            LossConfig::Sum(_) => format!("loss[{i}].hidden"),
        };
        let Some(student) = student.encoder() else {
            anyhow::bail!("field `{field}`: compares a sentence encoder's hidden states; the student is not one");
        };
        let label = &ctx.input("teacher")?.label;
        let Some(teacher) = teachers.first().and_then(|(t, _)| t.states()) else {
            anyhow::bail!(
                "field `{field}`: compares hidden states, which `{label}` does not hold (stored embeddings); name the \
                 teacher encoder itself as `teacher`, or store its states (`infer` with `store.hidden_states`)"
            );
        };
        if let (TeacherStates::Stored(_, stored), Some(pad)) = (teacher, data.dataset.meta.sentence_padding()) {
            check_stored_lengths(stored, data, pad, label)?;
        }
        FeatureTaps::new(pairs, (student, teacher), vs, rng, &field).map(Some)
    }
}

impl Distill {
    /// `projection`, checked against the student's and the teacher's embedding widths: needed exactly when a
    /// sentence-encoder student's embeddings are narrower or wider than its teacher's and the loss compares them.
    fn check_projection(
        &self,
        init: Option<&super::ResolvedInput>,
        meta: &crate::data::DatasetMeta,
        (encoder, compares_embeddings): (bool, bool),
        teacher_width: i64,
    ) -> anyhow::Result<Option<Projection>> {
        let projection = self.config.projection;
        if !encoder {
            return match projection {
                Some(_) => anyhow::bail!(
                    "field `projection`: maps a sentence encoder's embeddings; the data are not sentences"
                ),
                None => Ok(None),
            };
        }
        let width = match (init, self.config.model.as_ref()) {
            (Some(init), _) => crate::artifact::model::ModelArtifact::spec(&init.dir)?.classes,
            (None, Some(model)) => super::training::outputs(model, meta, "model")?,
            (None, None) => anyhow::bail!("needs `model` or `init` (checked at parse time)"),
        };
        match projection {
            None if compares_embeddings && width != teacher_width => anyhow::bail!(
                "field `model`: the student's embeddings have {width} dimensions, the teacher's {teacher_width}; \
                 give the student the teacher's width, learn a map to it (`projection: keep` or `drop`), or distil \
                 from a teacher reduced to it (`prune` with `pca`)"
            ),
            Some(_) if !compares_embeddings => {
                anyhow::bail!("field `projection`: maps the student's embeddings, and the loss compares none")
            }
            Some(_) if width == teacher_width => anyhow::bail!(
                "field `projection`: the student's embeddings already have the teacher's {width} dimensions; \
                 leave `projection` out"
            ),
            p => Ok(p),
        }
    }
}

impl DistillBatch<'_> {
    /// The student, when its loss goes a chunk of positions at a time: a language model with a loss that is a mean
    /// over positions.
    fn chunked(&self) -> Option<&dyn LanguageModel> {
        self.student.language_model().filter(|_| self.loss.mean_over_rows() && self.jitter == 0)
    }

    fn backward_chunked(
        &self,
        lm: &dyn LanguageModel,
        batch: &Batch,
        rng: &mut Rng,
        progress: f64,
    ) -> anyhow::Result<BatchLoss> {
        let at = (self.device, self.precision);
        let rows = self.data.base_rows(&batch.idx);
        let trunk = Trunk::forward(lm, &batch.x, Mode::Train(rng), self.precision, self.recompute)?;
        let labels = tokens::labels(&batch.y);
        let teachers: Vec<(TeacherRows, f64)> =
            self.teachers.iter().map(|(t, w)| (t.rows(&batch.x, &rows, at), *w)).collect();
        let loss = backward_in_chunks(&tokens::rows(trunk.hidden()), self.chunk, batch.weight, |start, h| {
            let n = h.size()[0];
            let student = self.precision.run(self.device, || lm.logits_of(h)).to_kind(Kind::Float);
            // One top-k teacher is read as stored; several are averaged as dense log-probabilities.
            let top_k = match teachers.as_slice() {
                [(only, _)] => only.top_k(start, n, self.tail),
                _ => None,
            };
            let dense;
            let teacher = match &top_k {
                Some(top_k) => Target::TopK(top_k),
                None => {
                    dense = ensemble(&teachers, |t| t.logits(start, n, &student, self.tail));
                    Target::Dense(&dense)
                }
            };
            let labels = labels.narrow(0, start, n);
            self.loss.loss_and_terms(&LossInput {
                student: &student,
                teacher,
                labels: &labels,
                progress,
                sequence_len: None,
                features: None,
            })
        })?;
        trunk.backward()?;
        Ok(loss)
    }
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
        let data = load_data(ctx, "data")?;
        let val = self.config.val.as_ref().map(|_| load_data(ctx, "val")).transpose()?;
        let meta = &data.dataset.meta;
        let roles = self.config.teacher.roles("teacher");
        let weights = self.config.teacher_weights.clone().unwrap_or_else(|| vec![1.0; roles.len()]);
        let total: f64 = weights.iter().sum();
        let mut teachers = Vec::new();
        for ((role, _), weight) in roles.iter().zip(weights) {
            let teacher = load_teacher(ctx, role, &data)?;
            let classes = teacher.classes();
            if let Teacher::Online(m) = &teacher {
                if m.spec.input_shape != meta.sample_shape {
                    anyhow::bail!(
                        "field `{role}`: `{}` takes samples of shape {:?}, the data's are {:?}",
                        ctx.input(role)?.label,
                        m.spec.input_shape,
                        meta.sample_shape
                    );
                }
                let label = &ctx.input(role)?.label;
                m.spec.check_classes(meta).map_err(|e| anyhow::anyhow!("field `{role}`: `{label}`: {e}"))?;
            }
            if classes != meta.classes && meta.sentence_padding().is_none() {
                anyhow::bail!("field `{role}`: the teacher has {classes} classes, the data {}", meta.classes);
            }
            teachers.push((teacher, weight / total));
        }

        let encoder = meta.sentence_padding().is_some();
        self.check_targets(ctx, encoder, &teachers)?;

        if self.config.top_k_tail == Some(TopKTail::Student) && !teachers.iter().all(|(t, _)| t.is_top_k()) {
            anyhow::bail!(
                "field `top_k_tail`: applies to teachers stored as top-k logits (`infer` with `store.top_k`)"
            );
        }

        let rng = Rng::new(ctx.seed);
        let vs = VarStore::new(ctx.device);
        let init = self.config.init.as_ref().map(|_| ctx.input("init")).transpose()?;
        // A loss of hidden-state terms alone compares no embeddings (TinyBERT's general stage; the widths may differ).
        let compares_embeddings = self.config.loss.terms().iter().any(|t| !matches!(t.term, LossTerm::Hidden(_)));
        let teacher_width = teachers[0].0.classes();
        let projection = self.check_projection(init, meta, (encoder, compares_embeddings), teacher_width)?;
        let dense_head = (projection == Some(Projection::Keep)).then_some(teacher_width);
        let (arch, student) = super::training::build_student(
            self.config.model.as_ref(),
            init,
            meta,
            (&vs, &mut rng.fork("init")),
            dense_head,
        )?;
        let outputs = super::training::outputs(&arch, meta, "model")?;
        super::check_model_fits(student.as_ref(), &data.dataset, outputs, ctx.device)?;
        let dropped = (projection == Some(Projection::Drop))
            .then(|| dropped_projection(&vs, (outputs, teacher_width), &mut rng.fork("embedding_projection")));

        let training = self.config.training();
        // Built once: its hidden-state pairs say which states the feature terms need.
        let loss = self.config.loss.build()?;
        let pairs = loss.hidden_pairs();
        let features =
            self.feature_taps(ctx, (student.as_ref(), &data), &teachers, pairs, (&vs, &mut rng.fork("projection")))?;
        let mut step = DistillBatch {
            student: student.as_ref(),
            teachers: &teachers,
            data: &data,
            loss,
            jitter: self.config.jitter,
            device: ctx.device,
            tail: self.config.top_k_tail.unwrap_or_default(),
            precision: self.config.precision,
            chunk: training.loss_chunk(meta.classes),
            recompute: training.recompute_activations,
            features,
            projection: dropped,
        };
        super::training::check_recompute(&training, arch.name(), student.as_ref(), step.chunked().is_some())?;
        let model = Student { vs: &vs, arch, model: student.as_ref(), outputs, init: init.map(|i| i.dir.clone()) };
        let sets = (&data.dataset, val.as_ref().map(|v| &v.dataset));
        fit_and_save(ctx, &training, model, &mut step, sets, &rng)?;
        ctx.record_metric("samples", data.dataset.len());
        Ok(())
    }
}

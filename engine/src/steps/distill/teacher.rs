//! The teachers of a `distill` step: where a batch's teacher logits come from — cached by `infer` (per sample, or
//! per token as top-k) or computed by a model in the loop — whole for a batch, or a chunk of positions at a time for a
//! language-model student ([`TeacherRows`]). A sentence encoder's teacher gives embeddings instead of logits, stored
//! or online, through the same calls.

use tch::{Device, Kind, Tensor};

use super::super::{ArtifactKind, StepContext};
use super::features::TeacherStates;
use crate::artifact::embeddings::{is_embeddings, EmbeddingsArtifact};
use crate::artifact::model::{LoadedModel, ModelArtifact};
use crate::artifact::token_logits::{expand_like, is_token_logits};
use crate::artifact::{LoadedData, LogitsArtifact, TokenLogits};
use crate::loss::{TopKTail, TopKTeacher};
use crate::nn::runtime::precision::Precision;
use crate::nn::{tokens, LanguageModel, Mode};

/// Where the teacher's logits for a batch come from.
pub enum Teacher {
    /// Cached by an `infer` step; rows looked up through the data's indices into the dataset the logits cover.
    Offline(LogitsArtifact),
    /// Per-token top-k logits of a language model, looked up the same way.
    Tokens(TokenLogits),
    /// A sentence encoder's embeddings, cached by `infer`; looked up like `Offline`.
    Embeddings(EmbeddingsArtifact),
    /// A model run in eval mode on the same (possibly jittered) inputs as the student.
    Online(LoadedModel),
}

impl Teacher {
    /// Classes (the vocabulary, for a language model) the teacher scores.
    pub(super) fn classes(&self) -> i64 {
        match self {
            Teacher::Offline(l) => l.meta.classes,
            Teacher::Tokens(l) => l.meta.classes,
            Teacher::Embeddings(e) => e.meta.dim,
            Teacher::Online(m) => m.spec.classes,
        }
    }

    /// Whether the teacher gives sentence embeddings (stored, or an online encoder) rather than logits.
    pub(super) fn gives_embeddings(&self) -> bool {
        match self {
            Teacher::Embeddings(_) => true,
            Teacher::Online(m) => m.spec.arch.as_ref().is_some_and(|a| a.embedding_size().is_some()),
            Teacher::Offline(_) | Teacher::Tokens(_) => false,
        }
    }

    /// Where the teacher's hidden states come from: an online sentence encoder, or stored embeddings with the
    /// states `infer` kept beside them.
    pub(super) fn states(&self) -> Option<TeacherStates<'_>> {
        match self {
            Teacher::Online(m) => m.model.encoder().map(TeacherStates::Online),
            Teacher::Embeddings(e) => e.states.as_ref().map(|s| TeacherStates::Stored(e, s)),
            Teacher::Offline(_) | Teacher::Tokens(_) => None,
        }
    }

    /// Whether the teacher is stored as top-k logits.
    pub(super) fn is_top_k(&self) -> bool {
        match self {
            Teacher::Offline(l) => l.meta.top_k.is_some(),
            Teacher::Tokens(_) => true,
            Teacher::Embeddings(_) | Teacher::Online(_) => false,
        }
    }

    /// What the teacher knows of a batch's positions, one row per position, for scoring a chunk of them at a time:
    /// the stored top k as they are, an online language model's final hidden states (projected a chunk at a time),
    /// or dense logits otherwise.
    pub(super) fn rows(
        &self,
        x: &Tensor,
        base_rows: &Tensor,
        (device, precision): (Device, Precision),
    ) -> TeacherRows<'_> {
        let flat = |t: Tensor| tokens::rows(&t.to_device(device));
        let top_k = match self {
            Teacher::Offline(logits) => logits.top_k(base_rows),
            Teacher::Tokens(logits) => Some(logits.top_k(base_rows)),
            Teacher::Embeddings(_) | Teacher::Online(_) => None,
        };
        if let Some((logprobs, indices, rest)) = top_k {
            let rest = rest.to_device(device).flatten(0, -1);
            return TeacherRows::TopK {
                logprobs: flat(logprobs),
                indices: flat(indices),
                rest,
                classes: self.classes(),
            };
        }
        match self {
            Teacher::Online(t) => match t.model.language_model() {
                Some(model) => {
                    let hidden = tch::no_grad(|| precision.run(device, || model.hidden(x, Mode::Eval)));
                    TeacherRows::Hidden { model, hidden: tokens::rows(&hidden), precision }
                }
                None => TeacherRows::Dense(flat(tch::no_grad(|| precision.forward(t.model.as_ref(), x, Mode::Eval)))),
            },
            Teacher::Offline(logits) => TeacherRows::Dense(flat(logits.dense_logits(base_rows))),
            Teacher::Tokens(logits) => TeacherRows::Dense(flat(logits.dense_logits(base_rows))),
            Teacher::Embeddings(e) => TeacherRows::Dense(e.rows(base_rows).to_device(device)),
        }
    }

    /// The teacher's logits for a batch: looked up (offline) or computed on the batch's inputs (online). A top-k
    /// teacher's leftover mass is spread as `tail` says (following the student's logits `student`, or evenly). An
    /// online teacher runs at `precision`.
    pub(super) fn logits(
        &self,
        x: &Tensor,
        base_rows: &Tensor,
        (device, precision): (Device, Precision),
        student: &Tensor,
        tail: TopKTail,
    ) -> Tensor {
        let shape_tail = tail == TopKTail::Student;
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
            Teacher::Embeddings(e) => e.rows(base_rows).to_device(device),
            Teacher::Online(t) => tch::no_grad(|| precision.forward(t.model.as_ref(), x, Mode::Eval)),
        }
    }
}

/// A batch's teacher, one row per position (see [`Teacher::rows`]).
pub(super) enum TeacherRows<'a> {
    /// Top-k log-probabilities and ids `[N, k]`, leftover mass `[N]`.
    TopK { logprobs: Tensor, indices: Tensor, rest: Tensor, classes: i64 },
    /// An online language model and its final hidden states `[N, d]`.
    Hidden { model: &'a dyn LanguageModel, hidden: Tensor, precision: Precision },
    /// Logits `[N, V]`.
    Dense(Tensor),
}

impl TeacherRows<'_> {
    /// The stored top k of rows `start..start + n`, for a loss to read as they are; `None` for another teacher.
    pub(super) fn top_k(&self, start: i64, n: i64, tail: TopKTail) -> Option<TopKTeacher> {
        let rows = |t: &Tensor| t.narrow(0, start, n);
        match self {
            TeacherRows::TopK { logprobs, indices, rest, classes } => {
                Some(TopKTeacher::new(&rows(logprobs), &rows(indices), &rows(rest), *classes, tail))
            }
            TeacherRows::Hidden { .. } | TeacherRows::Dense(_) => None,
        }
    }

    /// Teacher logits `[n, V]` of rows `start..start + n`; a top-k teacher's leftover mass is spread as `tail` says
    /// (following the student's logits `student` `[n, V]` of those rows, or evenly).
    pub(super) fn logits(&self, start: i64, n: i64, student: &Tensor, tail: TopKTail) -> Tensor {
        let rows = |t: &Tensor| t.narrow(0, start, n);
        match self {
            TeacherRows::TopK { .. } => {
                self.top_k(start, n, tail).expect("a top-k teacher").dense(student).shallow_clone()
            }
            TeacherRows::Hidden { model, hidden, precision } => {
                tch::no_grad(|| precision.run(hidden.device(), || model.logits_of(&rows(hidden))).to_kind(Kind::Float))
            }
            TeacherRows::Dense(logits) => rows(logits),
        }
    }
}

/// Loads the teacher behind `role`: cached logits (checked to cover `data`'s rows) or a model.
pub(super) fn load_teacher(ctx: &StepContext, role: &str, data: &LoadedData) -> anyhow::Result<Teacher> {
    let input = ctx.input(role)?;
    if input.kind != ArtifactKind::Logits {
        if let Some(vocab) = &data.dataset.meta.vocab {
            ModelArtifact::check_tokenizer(&input.dir, vocab)
                .map_err(|e| anyhow::anyhow!("field `{role}`: `{}` {e}", input.label))?;
        }
        return Ok(Teacher::Online(ModelArtifact::load(&input.dir, ctx.device)?));
    }
    let (teacher, dataset) = if is_embeddings(&input.dir) {
        let embeddings = EmbeddingsArtifact::read(&input.dir)?;
        let dataset = embeddings.meta.dataset.clone();
        (Teacher::Embeddings(embeddings), dataset)
    } else if is_token_logits(&input.dir) {
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
    Ok(teacher.on(ctx.device, &input.label))
}

impl Teacher {
    /// A stored teacher copied to a CUDA `device` once, so each batch's rows are gathered there instead of on the
    /// host and copied over; one that does not fit stays on the host, with a warning. On the CPU: as it is.
    fn on(self, device: Device, label: &str) -> Teacher {
        if !device.is_cuda() {
            return self;
        }
        let moved = match &self {
            Teacher::Offline(l) => l.to_device(device).map(Teacher::Offline),
            Teacher::Tokens(l) => l.to_device(device).map(Teacher::Tokens),
            Teacher::Embeddings(e) => e.to_device(device).map(Teacher::Embeddings),
            Teacher::Online(_) => return self,
        };
        moved.unwrap_or_else(|e| {
            tracing::warn!(
                teacher = label,
                "the stored teacher does not fit on {device:?}; it is read from host memory: {e}"
            );
            self
        })
    }
}

//! The hidden states a `distill` step's feature losses compare ([`crate::loss::HiddenLoss`]): one forward pass of
//! the student per batch, giving its embeddings and the states the pairs name; the teacher's from one forward pass of
//! the online teacher encoder, or looked up where `infer` stored them (`store.hidden_states`); and a learned
//! projection of the student's states for each pair when the widths differ.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::artifact::embeddings::{EmbeddingsArtifact, StoredStates};
use crate::artifact::model::TRAINING_ONLY;
use crate::artifact::LoadedData;
use crate::loss::Features;
use crate::nn::encode::lengths;
use crate::nn::layers::init::{default_bound, uniform_var};
use crate::nn::runtime::precision::Precision;
use crate::nn::Encoder;
use crate::rng::Rng;

/// Where a teacher's hidden states come from.
#[derive(Clone, Copy)]
pub enum TeacherStates<'a> {
    /// The teacher encoder, run on each batch.
    Online(&'a dyn Encoder),
    /// Stored by `infer` beside its embeddings; looked up by the batch's rows in the teacher's dataset.
    Stored(&'a EmbeddingsArtifact, &'a StoredStates),
}

impl TeacherStates<'_> {
    fn width(&self) -> i64 {
        match self {
            TeacherStates::Online(e) => e.width(),
            TeacherStates::Stored(_, s) => s.width(),
        }
    }

    /// Whether state `t` is there; `Err` says which are (for the message).
    fn has(&self, t: usize) -> Result<(), String> {
        match self {
            TeacherStates::Online(e) if t > e.layers() => {
                Err(format!("the teacher has hidden states 0 to {} (0: the embedding layer's), not {t}", e.layers()))
            }
            TeacherStates::Stored(_, s) if !s.numbers().contains(&t) => Err(format!(
                "the stored teacher holds hidden states {:?}, not {t}; add it to the `infer` step's \
                 `store.hidden_states`",
                s.numbers()
            )),
            _ => Ok(()),
        }
    }
}

/// Which states to take from student and teacher, and the projections between them.
pub struct FeatureTaps {
    pairs: Vec<(usize, usize)>,
    /// Per pair whose widths differ: `[teacher width, student width]`, trained with the student.
    projections: BTreeMap<(usize, usize), Tensor>,
}

/// A batch's embeddings of student and teacher, and the features of every pair.
pub struct Tapped {
    pub student: Tensor,
    pub teacher: Tensor,
    pub features: Features,
}

impl FeatureTaps {
    /// Checks the pairs' state numbers against both encoders and registers, when the widths differ, one projection
    /// per pair in `vs` under [`TRAINING_ONLY`] (initialised like PyTorch's `Linear`, from `rng`). `field` names the
    /// loss in errors.
    pub fn new(
        pairs: Vec<(usize, usize)>,
        (student, teacher): (&dyn Encoder, TeacherStates),
        vs: &VarStore,
        rng: &mut Rng,
        field: &str,
    ) -> Result<FeatureTaps> {
        for &(s, t) in &pairs {
            if s > student.layers() {
                bail!(
                    "field `{field}`: the student has hidden states 0 to {} (0: the embedding layer's), not {s}",
                    student.layers()
                );
            }
            teacher.has(t).map_err(|e| anyhow::anyhow!("field `{field}`: {e}"))?;
        }
        let (from, to) = (student.width(), teacher.width());
        let mut projections = BTreeMap::new();
        if from != to {
            let root = vs.root() / TRAINING_ONLY / "hidden_projection";
            for &(s, t) in &pairs {
                let weight = uniform_var(&root, &format!("s{s}_t{t}"), &[to, from], default_bound(from), rng);
                projections.insert((s, t), weight);
            }
        }
        Ok(FeatureTaps { pairs, projections })
    }

    /// Runs the student (with its graph) on token ids `x`, and the teacher (without) or looks its states up by the
    /// batch's rows `rows` in the teacher's dataset.
    pub fn run(
        &self,
        (student, teacher): (&dyn Encoder, TeacherStates),
        (x, rows): (&Tensor, &Tensor),
        (device, precision): (Device, Precision),
    ) -> Tapped {
        let numbers = |side: fn(&(usize, usize)) -> usize| self.pairs.iter().map(side).collect::<Vec<_>>();
        let s = precision.run(device, || student.embed_with_states(x, &numbers(|p| p.0)));
        let (teacher_embeddings, teacher_states) = match teacher {
            TeacherStates::Online(teacher) => {
                let t = tch::no_grad(|| precision.run(device, || teacher.embed_with_states(x, &numbers(|p| p.1))));
                (t.embeddings, t.states)
            }
            TeacherStates::Stored(embeddings, stored) => {
                let t = s.mask.size()[1];
                let states = numbers(|p| p.1).into_iter().map(|n| stored.padded(n, rows, t).to_device(device));
                (embeddings.rows(rows).to_device(device), states.collect())
            }
        };
        let pairs = self
            .pairs
            .iter()
            .zip(s.states.iter().zip(&teacher_states))
            .map(|(pair, (sh, th))| {
                let sh = sh.to_kind(Kind::Float);
                let sh = match self.projections.get(pair) {
                    Some(w) => sh.linear::<Tensor>(w, None),
                    None => sh,
                };
                (*pair, (sh, th.to_kind(Kind::Float)))
            })
            .collect();
        Tapped { student: s.embeddings, teacher: teacher_embeddings, features: Features { pairs, mask: s.mask } }
    }
}

/// The stored states must be of the data's sentences: the same real tokens per row (a store from other tokens, or
/// a damaged one, would pair states with the wrong tokens).
pub fn check_stored_lengths(stored: &StoredStates, data: &LoadedData, pad: i64, teacher: &str) -> Result<()> {
    let all = Tensor::arange(data.dataset.len() as i64, (Kind::Int64, Device::Cpu));
    let rows = data.base_rows(&all);
    let stored = stored.lengths().to_device(Device::Cpu).index_select(0, &rows);
    if !stored.equal(&lengths(&data.dataset.x, pad)) {
        bail!("field `teacher`: the hidden states stored in `{teacher}` are not of the data's tokens (another tokenizer or context?)");
    }
    Ok(())
}

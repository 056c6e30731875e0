//! The hidden states a `distill` step's feature losses compare ([`crate::loss::HiddenLoss`]): one forward pass of
//! the student and one of the online teacher encoder per batch, each giving its embeddings and the states the pairs
//! name, and a learned projection of the student's states for each pair when the widths differ.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::artifact::model::TRAINING_ONLY;
use crate::loss::Features;
use crate::nn::runtime::precision::Precision;
use crate::nn::Encoder;
use crate::rng::Rng;

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
        (student, teacher): (&dyn Encoder, &dyn Encoder),
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
            if t > teacher.layers() {
                bail!(
                    "field `{field}`: the teacher has hidden states 0 to {} (0: the embedding layer's), not {t}",
                    teacher.layers()
                );
            }
        }
        let (from, to) = (student.width(), teacher.width());
        let mut projections = BTreeMap::new();
        if from != to {
            let bound = 1.0 / (from as f32).sqrt();
            let root = vs.root() / TRAINING_ONLY / "hidden_projection";
            for &(s, t) in &pairs {
                let init = Tensor::from_slice(&rng.uniform_vec((from * to) as usize, -bound, bound)).view([to, from]);
                let weight = root.var_copy(&format!("s{s}_t{t}"), &init.to_device(vs.device()));
                projections.insert((s, t), weight);
            }
        }
        Ok(FeatureTaps { pairs, projections })
    }

    /// Runs the student (with its graph) and the teacher (without) on token ids `x`.
    pub fn run(
        &self,
        (student, teacher): (&dyn Encoder, &dyn Encoder),
        x: &Tensor,
        (device, precision): (Device, Precision),
    ) -> Tapped {
        let numbers = |side: fn(&(usize, usize)) -> usize| self.pairs.iter().map(side).collect::<Vec<_>>();
        let s = precision.run(device, || student.embed_with_states(x, &numbers(|p| p.0)));
        let t = tch::no_grad(|| precision.run(device, || teacher.embed_with_states(x, &numbers(|p| p.1))));
        let pairs = self
            .pairs
            .iter()
            .zip(s.states.iter().zip(&t.states))
            .map(|(pair, (sh, th))| {
                let sh = sh.to_kind(Kind::Float);
                let sh = match self.projections.get(pair) {
                    Some(w) => sh.linear::<Tensor>(w, None),
                    None => sh,
                };
                (*pair, (sh, th.to_kind(Kind::Float)))
            })
            .collect();
        Tapped { student: s.embeddings, teacher: t.embeddings, features: Features { pairs, mask: s.mask } }
    }
}

//! `projection`: how a sentence-encoder student whose embedding width differs from its teacher's is compared with
//! it. `keep` gives the student a final `Dense` layer to the teacher's width (sentence-transformers' `Dense` module:
//! Pooling → Dense → Normalize), trained with it and saved as part of the model, so the student's embeddings are the
//! teacher's width. `drop` learns a linear map of the student's embeddings to the teacher's width for the loss only;
//! it is not saved, so the student keeps its own, narrower embeddings (compared with the teacher's by `evaluate`
//! through their similarities).

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;

use crate::artifact::model::TRAINING_ONLY;
use crate::nn::layers::Linear;
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Projection {
    /// A final dense layer of the student, saved with it (its embeddings become the teacher's width).
    Keep,
    /// A map used by the loss alone and dropped at the end (the student keeps its own width).
    Drop,
}

/// `drop`'s map of student embeddings `[B, from]` to the teacher's width `to`: a [`Linear`] trained with the student
/// under [`TRAINING_ONLY`] (so never saved in the model), initialised like PyTorch's from `rng`.
pub fn dropped_projection(vs: &VarStore, (from, to): (i64, i64), rng: &mut Rng) -> Linear {
    Linear::new(&(vs.root() / TRAINING_ONLY / "embedding_projection"), from, to, rng)
}

//! The DAG of a workflow: edges from references and `after`, topological order, cycles, cache keys, drawings.

mod dag;
pub mod key;
pub mod render;

pub use dag::Dag;
pub use key::{compute_keys, FileDigest, KeyEnv, KeyIngredients, StepKey};

//! The stored formats steps exchange, one file each: datasets ([`dataset`]), dataset views — a filter's kept rows —
//! ([`view`]), models ([`model`]), and a teacher's logits over a dataset ([`logits`]) or per token of text
//! ([`token_logits`]). Steps share these formats, never code paths of each other; a format change bumps its
//! [`ArtifactKind::format_version`](crate::steps::ArtifactKind::format_version).

mod check;
pub mod dataset;
pub mod embeddings;
pub mod ids;
pub mod logits;
pub mod model;
pub mod token_logits;
pub mod view;

pub use logits::{LogitsArtifact, LogitsMeta, StoredLogits};
pub use model::{LoadedModel, ModelArtifact, ModelSpec};
pub use token_logits::{TokenLogits, TokenLogitsMeta};
pub use view::LoadedData;

//! The on-disk formats steps exchange beyond plain datasets and models: dataset views (a filter's output) and
//! teacher logits (an infer step's output). Steps share formats, never code paths of each other.

pub mod logits;
pub mod token_logits;
pub mod view;

pub use logits::{LogitsArtifact, LogitsMeta, StoredLogits};
pub use token_logits::{TokenLogits, TokenLogitsMeta};
pub use view::{load_data, LoadedData};

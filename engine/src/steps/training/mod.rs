//! What the training steps (`train`, `distill`) share: the YAML training options and a batch source over an
//! in-memory dataset on the step's device. The loop itself is [`crate::nn::training::learner::Learner`].

mod fit;
mod options;
mod source;
mod student;

pub use fit::{fit_and_save, Student};
pub(crate) use options::training_config;
pub use options::{canonical_training, check_recompute, default_batch_size, default_optimizer, TrainingOptions};
pub use source::TensorSource;
pub use student::{build_student, check_start, outputs};

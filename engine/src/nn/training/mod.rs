//! Training: the [`Learner`](learner::Learner) loop and its [`TrainStep`](learner::TrainStep) split (what one batch
//! does lives with the step kind; the loop, validation and checkpointing here), the optimisers (their configs, and
//! their state in plain tensors so a checkpoint restores it exactly), learning-rate schedules, checkpoints and the
//! classification metrics the loop reports.

pub mod checkpoint;
pub mod chunked;
pub mod learner;
pub mod metrics;
pub mod optimizer;
pub mod optimizer_config;
pub mod recompute;
pub mod schedule;
pub mod selection;
pub mod similarity;
pub mod tally;

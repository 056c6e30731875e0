//! The tail every training step shares: fit the model with the step's [`TrainStep`], validating after each epoch,
//! then save it with its history and record its metrics.

use anyhow::Result;
use tch::nn::VarStore;

use super::{TensorSource, TrainingOptions};
use crate::artifact::model::{ModelArtifact, ModelSpec};
use crate::data::{Dataset, Vocab};
use crate::nn::training::learner::{Evaluator, Learner, ModelEvaluator, TrainStep};
use crate::nn::{ArchConfig, Model};
use crate::rng::Rng;
use crate::steps::StepContext;

/// The model being trained: its variables, its architecture and the model over them.
pub struct Student<'a> {
    pub vs: &'a VarStore,
    pub arch: ArchConfig,
    pub model: &'a dyn Model,
    /// Its output size: the data's classes, or a sentence encoder's embedding width.
    pub outputs: i64,
    /// The model it started from (`init`), whose tokenizer files it keeps: a student pruned from a pretrained teacher
    /// exports with the teacher's tokenizer. Without one, a model trained on a tokenizer's data gets that tokenizer.
    pub init: Option<std::path::PathBuf>,
}

/// Trains `student` on `train` (scored on `val` after every epoch, checkpointed by the step's context) and writes
/// the `model` output: weights, spec, `history.json`; records `parameters`, and `train_loss` and `val_accuracy` of
/// the epoch it kept (with `best_epoch` when it kept the best, `stopped_after` when it stopped early).
pub fn fit_and_save(
    ctx: &mut StepContext,
    options: &TrainingOptions,
    student: Student,
    step: &mut dyn TrainStep,
    (train, val): (&Dataset, Option<&Dataset>),
    rng: &Rng,
) -> Result<()> {
    if let Some(val) = val {
        train.meta.check_same_labels(&val.meta).map_err(|e| anyhow::anyhow!("field `val`: {e}"))?;
    }
    let mut source = TensorSource::new(&train.x, &train.y, ctx.device);
    if options.group_by_length {
        let Some(pad) = train.meta.sentence_padding() else {
            anyhow::bail!("field `group_by_length`: groups sentences (padded rows); these samples are all one length");
        };
        source = source.with_lengths(pad);
    }
    let val_source = val.map(|v| TensorSource::new(&v.x, &v.y, ctx.device));
    let evaluator = val_source.as_ref().map(|v| ModelEvaluator { model: student.model, data: v, batch_size: 1024 });
    let history = Learner::new(options.learner()).labelled(ctx.label()).distributed(ctx.group.as_deref()).fit(
        student.vs,
        step,
        &source,
        evaluator.as_ref().map(|e| e as &dyn Evaluator),
        &mut rng.fork("fit"),
        &ctx.progress,
        ctx.checkpoint().as_ref(),
    )?;

    let dir = ctx.output_dir("model")?;
    let meta = &train.meta;
    let mut spec = ModelSpec::new(student.arch, meta.sample_shape.clone(), student.outputs, student.vs);
    spec.class_names = meta.class_names.clone();
    ModelArtifact::save(&dir, student.vs, &spec)?;
    match (&student.init, &meta.vocab) {
        (Some(init), _) => {
            crate::nn::weights::export::copy_tokenizer_files(init, &dir)?;
        }
        // Trained from scratch on a model's tokenizer: the model reads (and exports with) that tokenizer.
        (None, Some(Vocab::Tokenizer { tokenizer, .. })) => tokenizer.write_files(&dir)?,
        (None, _) => {}
    }
    std::fs::write(dir.join("history.json"), serde_json::to_string_pretty(&history)? + "\n")?;
    ctx.record_metric("parameters", spec.parameters);
    if let Some(kept) = history.kept() {
        ctx.record_metric("train_loss", kept.train_loss);
        if let Some(acc) = kept.val_accuracy {
            ctx.record_metric("val_accuracy", acc);
        }
    }
    if let Some(epoch) = history.best_epoch {
        ctx.record_metric("best_epoch", epoch);
    }
    if let Some(epoch) = history.stopped_after {
        ctx.record_metric("stopped_after", epoch);
    }
    if let Some(seconds) = history.collective_seconds_per_step {
        ctx.record_timing("collective_ms_per_step", seconds * 1e3);
    }
    if let Some(share) = history.overlapped_gradient_share {
        ctx.record_timing("gradients_overlapped", share);
    }
    Ok(())
}

//! The training loop, split burn-style: a [`TrainStep`] says what one batch costs; the [`Learner`] owns everything
//! else (epochs, shuffling, optimiser, schedule, clipping, divergence checks, history, progress).
//!
//! Data access stays behind [`BatchSource`] so any dataset (in memory, on a GPU, a teacher's cached logits) can feed it.

use crate::nn::distributed::{self, GradientSync, ProcessGroup};
use crate::nn::runtime::progress::Progress;
use crate::nn::training::checkpoint::{Checkpoint, Position, Weights};
use crate::nn::training::metrics;
use crate::nn::training::optimizer::Optimizer;
use crate::nn::training::optimizer_config::OptimizerConfig;
use crate::nn::training::schedule::LrSchedule;
use crate::nn::training::selection::{self, EarlyStopping, Keep};
use crate::nn::training::tally::LossTally;
use crate::nn::{Mode, Model};
use crate::rng::Rng;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::{nn::VarStore, Tensor};

/// One mini-batch: inputs, labels, and the dataset indices they came from (so a step can look up per-sample extras
/// such as cached teacher logits).
pub struct Batch {
    pub x: Tensor,
    pub y: Tensor,
    pub idx: Tensor,
    /// What the backward pass multiplies the batch's loss by: 1, except on one rank of a data-parallel run, whose
    /// part of a global batch weighs `world × its samples / the batch's samples` (the ranks' gradients are then
    /// averaged). The loss a step returns is never weighted.
    pub weight: f64,
}

impl Batch {
    pub fn new(x: Tensor, y: Tensor, idx: Tensor) -> Self {
        Batch { x, y, idx, weight: 1.0 }
    }
}

/// A dataset the learner can slice into batches.
pub trait BatchSource {
    fn len(&self) -> usize;
    /// The samples at `idx` (int64, CPU); the source moves them to its device.
    fn batch(&self, idx: &Tensor) -> Batch;
    /// Each sample's length in tokens, for sources of padded sequences ([`LearnerConfig::group_by_length`]).
    fn lengths(&self) -> Option<Vec<i64>> {
        None
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one training batch does: returns the scalar loss to minimise. Train-mode forward passes draw their dropout
/// masks from `rng`.
pub trait TrainStep {
    /// `progress` is the fraction of training done (for schedules inside the loss, e.g. a temperature).
    fn loss(&mut self, batch: &Batch, rng: &mut Rng, progress: f64) -> Result<Tensor>;

    /// Adds the gradients of the batch's loss to the variables' and returns the loss, detached. By default the
    /// backward pass of [`TrainStep::loss`]; a step that computes its loss in pieces (a language model's positions a
    /// chunk at a time, [`crate::nn::training::chunked`]) backpropagates each piece itself.
    fn backward(&mut self, batch: &Batch, rng: &mut Rng, progress: f64) -> Result<BatchLoss> {
        backward_whole(self.loss(batch, rng, progress)?, batch.weight)
    }

    /// The parameters that [`TrainStep::backward`] reaches in more than one backward pass per batch (a language
    /// model's output projection, once per chunk of positions); none by default. Every other parameter must be
    /// reached by one pass at most: data-parallel training lets DDP's Reducer all-reduce their gradients while that
    /// pass computes, and averages these after it ([`crate::nn::distributed::gradients`]).
    fn repeatedly_reached_parameters(&self) -> Vec<Tensor> {
        Vec::new()
    }

    /// The names of the terms whose shares [`TrainStep::backward`] returns in [`BatchLoss::terms`] (a weighted sum
    /// of several losses); none by default. [`History`] keeps a curve for each.
    fn term_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A batch's loss after its backward pass: detached, and not multiplied by [`Batch::weight`].
pub struct BatchLoss {
    pub total: Tensor,
    /// Each term's share of `total` (they add up to it), in the order of [`TrainStep::term_names`]; empty for a
    /// loss of one term.
    pub terms: Vec<Tensor>,
}

impl BatchLoss {
    /// The total and the terms as numbers (one read from the device for all of them).
    pub(crate) fn values(&self) -> Result<(f64, Vec<f64>)> {
        if self.terms.is_empty() {
            return Ok((self.total.f_double_value(&[])?, Vec::new()));
        }
        let all = Tensor::f_stack(
            &std::iter::once(&self.total).chain(&self.terms).map(|t| t.to_kind(tch::Kind::Float)).collect::<Vec<_>>(),
            0,
        )?;
        let values = Vec::<f64>::try_from(all.to_kind(tch::Kind::Double).to_device(tch::Device::Cpu))?;
        Ok((values[0], values[1..].to_vec()))
    }
}

/// Backpropagates `weight ×` a scalar loss; returns the loss, detached and unweighted.
pub fn backward_whole(loss: Tensor, weight: f64) -> Result<BatchLoss> {
    backward_with_terms(loss, Vec::new(), weight)
}

/// [`backward_whole`] for a loss whose terms' shares (detached) come with it.
pub fn backward_with_terms(loss: Tensor, terms: Vec<Tensor>, weight: f64) -> Result<BatchLoss> {
    if loss.numel() != 1 {
        bail!("the loss must be a scalar, got shape {:?}", loss.size());
    }
    if !loss.requires_grad() {
        bail!("the loss does not depend on the model's parameters");
    }
    if weight == 1.0 {
        loss.f_backward()?;
    } else {
        (&loss * weight).f_backward()?;
    }
    Ok(BatchLoss { total: loss.detach(), terms })
}

/// Samples per run that [`grouped_by_length`] sorts: 50 batches, as `transformers`' `LengthGroupedSampler`.
const BATCHES_PER_LENGTH_RUN: usize = 50;

/// A random `order` regrouped so each batch holds samples of similar `lengths`: cut into runs of
/// [`BATCHES_PER_LENGTH_RUN`] batches, each run sorted longest first (stable), then the full batches shuffled with
/// `rng`; a smaller remainder stays the last batch, so `order.chunks(batch)` still cuts the same batches.
pub fn grouped_by_length(mut order: Vec<i64>, lengths: &[i64], batch: usize, rng: &mut Rng) -> Vec<i64> {
    for run in order.chunks_mut(batch * BATCHES_PER_LENGTH_RUN) {
        run.sort_by_key(|&i| std::cmp::Reverse(lengths[i as usize]));
    }
    let full = order.len() / batch;
    let mut batches: Vec<usize> = (0..full).collect();
    rng.shuffle(&mut batches);
    let mut grouped = Vec::with_capacity(order.len());
    for b in batches {
        grouped.extend_from_slice(&order[b * batch..(b + 1) * batch]);
    }
    grouped.extend_from_slice(&order[full * batch..]);
    grouped
}

/// Scores the model after each epoch (validation accuracy in [0, 1]).
pub trait Evaluator {
    fn evaluate(&self) -> Result<f64>;
}

/// Accuracy of `model` on a whole [`BatchSource`], in eval mode, in order, `batch_size` at a time.
pub struct ModelEvaluator<'a> {
    pub model: &'a dyn Model,
    pub data: &'a dyn BatchSource,
    pub batch_size: usize,
}

impl Evaluator for ModelEvaluator<'_> {
    fn evaluate(&self) -> Result<f64> {
        Ok(accuracy_on(self.model, self.data, self.batch_size))
    }
}

/// Eval-mode accuracy over all of `data`.
pub fn accuracy_on(model: &dyn Model, data: &dyn BatchSource, batch_size: usize) -> f64 {
    let n = data.len();
    if n == 0 {
        return 0.0;
    }
    let mut correct = 0.0;
    tch::no_grad(|| {
        for start in (0..n).step_by(batch_size.max(1)) {
            let end = (start + batch_size.max(1)).min(n);
            let idx = Tensor::arange_start(start as i64, end as i64, (tch::Kind::Int64, tch::Device::Cpu));
            let b = data.batch(&idx);
            correct += metrics::accuracy(&model.forward(&b.x, Mode::Eval), &b.y) * (end - start) as f64;
        }
    });
    correct / n as f64
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LearnerConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub schedule: LrSchedule,
    /// Clip the global L2 norm of all gradients to this value before each step.
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    /// Which epoch's weights the run ends with.
    #[serde(default)]
    pub keep: Keep,
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Batches of samples of similar length ([`grouped_by_length`]); the source must know the lengths.
    #[serde(default)]
    pub group_by_length: bool,
}

impl LearnerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.epochs == 0 {
            return Err("epochs: must be positive, got 0".into());
        }
        if self.batch_size == 0 {
            return Err("batch_size: must be positive, got 0".into());
        }
        self.optimizer.validate()?;
        self.schedule.validate()?;
        if let Some(stopping) = &self.early_stopping {
            stopping.validate()?;
        }
        match self.clip_grad_norm {
            Some(c) if !(c > 0.0 && c.is_finite()) => Err(format!("clip_grad_norm: must be positive, got {c}")),
            _ => Ok(()),
        }
    }

    /// Whether the run scores a validation set after each epoch for `keep` or `early_stopping`.
    pub fn needs_val(&self) -> Option<&'static str> {
        if matches!(self.keep, Keep::Best(m) if m.needs_val()) {
            return Some("keep");
        }
        self.early_stopping.as_ref().filter(|s| s.monitor(self.keep).needs_val()).map(|_| "early_stopping")
    }
}

/// One row of [`History`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Sample-weighted mean of the batch losses during the epoch.
    pub train_loss: f64,
    pub val_accuracy: Option<f64>,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// With a loss of several terms: each term's share of `train_loss` (sample-weighted means, adding up to it), in
    /// the order of [`History::terms`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<f64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct History {
    /// The names of the loss's terms when it has several (`kd`, `mse_logits × 0.1`): each epoch's
    /// [`EpochRecord::terms`] follow this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<String>,
    pub epochs: Vec<EpochRecord>,
    /// With `keep: best …`: the epoch whose weights were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
    /// With `early_stopping`: the epoch after which training stopped, when it stopped before the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_after: Option<usize>,
    /// Data-parallel: the seconds per step this rank spent in collectives outside the backward pass (a measurement,
    /// never stored with the model).
    #[serde(skip)]
    pub collective_seconds_per_step: Option<f64>,
    /// Data-parallel: the share of gradient elements averaged during the backward pass (a measurement, as above).
    #[serde(skip)]
    pub overlapped_gradient_share: Option<f64>,
}

impl History {
    pub fn last(&self) -> Option<&EpochRecord> {
        self.epochs.last()
    }

    /// The epoch whose weights the run ended with: the best one when it kept the best, else the last.
    pub fn kept(&self) -> Option<&EpochRecord> {
        match self.best_epoch {
            Some(best) => self.epochs.iter().find(|e| e.epoch == best),
            None => self.last(),
        }
    }
}

pub struct Learner<'g> {
    pub config: LearnerConfig,
    /// What the progress bar is called (`student: distill`).
    label: String,
    /// Data-parallel: this process's group, when it is one rank of several.
    group: Option<&'g ProcessGroup>,
    /// Batches between reads of the loss to the host, when not the device's default ([`LossTally`]).
    loss_reads: Option<usize>,
}

impl<'g> Learner<'g> {
    pub fn new(config: LearnerConfig) -> Self {
        Learner { config, label: "train".into(), group: None, loss_reads: None }
    }

    /// Reads the loss to the host every `batches` batches instead of the device's default (every batch on the CPU,
    /// every [`super::tally::CUDA_BATCHES_PER_READ`] on CUDA): for tests of the deferred path on the CPU.
    pub fn reading_the_loss_every(mut self, batches: usize) -> Self {
        self.loss_reads = Some(batches);
        self
    }

    /// Trains as one rank of `group`: each global batch's part for this rank ([`distributed::shard`]), gradients
    /// averaged over the ranks, the ranks agreeing on the loss, on interruption and on the validation score (rank 0
    /// scores and checkpoints; every rank resumes from its checkpoint).
    pub fn distributed(mut self, group: Option<&'g ProcessGroup>) -> Self {
        self.group = group;
        self
    }

    /// Names the progress bar (the step, `teacher: train`).
    pub fn labelled(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Trains the trainable variables of `vs` with the loss `step` computes, for `config.epochs` passes over `train`.
    ///
    /// Randomness: shuffling and the step's dropout use two streams forked from `rng` ("shuffle", "step"), so the batch
    /// order does not depend on how much randomness the step consumes; `rng` is then advanced once so a later `fit`
    /// with the same `rng` gets fresh streams. Each epoch visits a fresh permutation; the last batch may be smaller.
    ///
    /// With a `checkpoint`, the run is saved after every epoch and when interrupted (Ctrl-C, see
    /// [`crate::interrupt`]); a later `fit` with the same arguments resumes from it and ends with bit-identical
    /// weights.
    #[allow(clippy::too_many_arguments)]
    pub fn fit(
        &self,
        vs: &VarStore,
        step: &mut dyn TrainStep,
        train: &dyn BatchSource,
        val: Option<&dyn Evaluator>,
        rng: &mut Rng,
        progress: &Progress,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<History> {
        let cfg = &self.config;
        cfg.validate().map_err(anyhow::Error::msg)?;
        if let Some(field) = cfg.needs_val().filter(|_| val.is_none()) {
            bail!("`{field}` watches val_accuracy, which needs a `val` set");
        }
        let n = train.len();
        if n == 0 {
            bail!("training set is empty");
        }
        let lengths = match (cfg.group_by_length, train.lengths()) {
            (true, None) => bail!("`group_by_length` needs samples with lengths (padded sentences)"),
            (true, Some(lengths)) => Some(lengths),
            (false, _) => None,
        };
        let mut opt = Optimizer::new(&cfg.optimizer, vs);
        let base_lr = cfg.optimizer.lr();
        let batches_per_epoch = n.div_ceil(cfg.batch_size);
        let total_steps = batches_per_epoch * cfg.epochs;
        let group = self.group;
        // Every rank resumes from the checkpoint; only rank 0 writes it.
        let root = group.is_none_or(ProcessGroup::is_root);
        let saving = checkpoint.filter(|_| root);
        let term_names = step.term_names();

        let fresh = Position {
            epoch: 1,
            batch: 0,
            global_step: 0,
            loss_sum: 0.0,
            term_sums: vec![0.0; term_names.len()],
            shuffle_rng: rng.fork("shuffle").state(),
            step_rng: rng.fork("step").state(),
            history: History { terms: term_names.clone(), ..History::default() },
        };
        rng.next_u64();
        let mut best = BestWeights::default();
        let mut pos = match checkpoint.map(|c| c.load(vs, &mut opt)).transpose()?.flatten() {
            Some((saved, best_weights)) => {
                tracing::info!(epoch = saved.epoch, batch = saved.batch, "resuming from a checkpoint");
                best = BestWeights { epoch: selection::best_epoch(cfg.keep, &saved.history), weights: best_weights };
                saved
            }
            None => fresh,
        };
        if pos.history.terms != term_names || pos.term_sums.len() != term_names.len() {
            bail!("the checkpoint records the loss terms {:?}, this run has {term_names:?}", pos.history.terms);
        }
        let mut sync = group.map(|g| GradientSync::new(g, vs, &step.repeatedly_reached_parameters()));
        if let Some(sync) = &sync {
            sync.broadcast_weights()?;
        }
        let mut step_rng = Rng::from_state(pos.step_rng);
        let mut tally = self.loss_reads.map_or_else(
            || LossTally::for_device(vs.device(), batches_per_epoch),
            |every| LossTally::every(every, batches_per_epoch),
        );
        let (mut collective_seconds, mut collective_steps) = (0.0, 0usize);
        let bar = progress.bar(total_steps as u64, &self.label);
        bar.set_position(pos.global_step as u64);
        let mut last = String::new();

        while pos.epoch <= cfg.epochs {
            let started = Instant::now();
            let mut shuffle_rng = Rng::from_state(pos.shuffle_rng);
            let mut order = shuffle_rng.permutation(n);
            if let Some(lengths) = &lengths {
                order = grouped_by_length(order, lengths, cfg.batch_size, &mut shuffle_rng);
            }
            let mut lr = base_lr;
            // `epoch 3/20`, then the last epoch's loss (and validation accuracy) beside it.
            bar.set_message(format!("epoch {}/{}{last}", pos.epoch, cfg.epochs));
            for (b, chunk) in order.chunks(cfg.batch_size).enumerate().skip(pos.batch) {
                let interrupted = crate::interrupt::requested();
                if interrupted && group.is_none() {
                    tally.read(&mut pos)?;
                    return interrupted_at(saving, vs, &opt, &mut pos, step_rng.state(), best.weights.as_deref());
                }
                lr = cfg.schedule.lr_at(base_lr, pos.global_step, total_steps);
                opt.set_lr(lr);
                let progress = pos.global_step as f64 / total_steps as f64;
                let epoch = pos.epoch;
                let at = |e: anyhow::Error| e.context(format!("epoch {epoch}, batch {}", b + 1));
                opt.zero_grad();
                match (&mut sync, group) {
                    (Some(sync), Some(g)) => {
                        let part = distributed::shard(chunk, g.rank, g.world);
                        // Where an interruption agreed on below resumes: this batch, with its random stream.
                        let rng_before = step_rng.state();
                        sync.before_backward().map_err(at)?;
                        let (local, local_terms) = if part.is_empty() {
                            sync.zero_backward().map_err(at)?;
                            (0.0, vec![0.0; term_names.len()])
                        } else {
                            let mut batch = train.batch(&Tensor::from_slice(part));
                            batch.weight = (g.world * part.len()) as f64 / chunk.len() as f64;
                            // Each rank its own dropout stream, all advancing alike (one rank: the plain path's).
                            let mut rank_rng = if g.world == 1 {
                                step_rng.clone()
                            } else {
                                step_rng.fork(&format!("rank {}", g.rank))
                            };
                            let loss = step.backward(&batch, &mut rank_rng, progress).map_err(at)?;
                            if g.world == 1 {
                                step_rng = rank_rng;
                            }
                            loss.values().map_err(at)?
                        };
                        if g.world > 1 {
                            step_rng.next_u64();
                        }
                        let waiting = Instant::now();
                        sync.after_backward().map_err(at)?;
                        // The ranks agree on the batch's loss (and its terms) and on stopping here.
                        let share = |x: f64| x * part.len() as f64;
                        let mut mine = vec![f64::from(u8::from(interrupted)), share(local)];
                        mine.extend(local_terms.iter().map(|&t| share(t)));
                        let agreed = g.all_sum(&mine)?;
                        collective_seconds += waiting.elapsed().as_secs_f64();
                        collective_steps += 1;
                        if agreed[0] > 0.0 {
                            return interrupted_at(saving, vs, &opt, &mut pos, rng_before, best.weights.as_deref());
                        }
                        let (value, terms) = if g.world == 1 {
                            (local, local_terms)
                        } else {
                            let mean = |x: f64| x / chunk.len() as f64;
                            (mean(agreed[1]), agreed[2..].iter().map(|&t| mean(t)).collect())
                        };
                        tally.add_read(value, &terms, chunk.len(), b + 1, &mut pos)?;
                    }
                    _ => {
                        let batch = train.batch(&Tensor::from_slice(chunk));
                        let loss = step.backward(&batch, &mut step_rng, progress).map_err(at)?;
                        tally.add(&loss, chunk.len(), b + 1, &mut pos)?;
                    }
                }
                if let Some(max) = cfg.clip_grad_norm {
                    opt.clip_grad_norm(max);
                }
                opt.step();
                pos.global_step += 1;
                pos.batch = b + 1;
                bar.inc(1);
            }
            tally.read(&mut pos)?;
            let epoch = pos.epoch;
            let train_loss = pos.loss_sum / n as f64;
            let val_accuracy = match (val, group) {
                // Rank 0 scores; the others take its score.
                (Some(v), Some(g)) => Some(g.all_sum(&[if g.is_root() { v.evaluate()? } else { 0.0 }])?[0]),
                (v, _) => v.map(|v| v.evaluate()).transpose()?,
            };
            let seconds = started.elapsed().as_secs_f64();
            last = match val_accuracy {
                Some(acc) => format!(" · loss {train_loss:.4} val {:.2}%", acc * 100.0),
                None => format!(" · loss {train_loss:.4}"),
            };
            tracing::debug!(epoch, train_loss, ?val_accuracy, lr, seconds, "epoch done");
            let terms = pos.term_sums.iter().map(|sum| sum / n as f64).collect();
            pos.history.epochs.push(EpochRecord { epoch, train_loss, val_accuracy, lr, terms });
            let best_now = selection::best_epoch(cfg.keep, &pos.history);
            if best_now.is_some() && best_now != best.epoch {
                best = BestWeights { epoch: best_now, weights: Some(snapshot(vs)) };
            }
            let stop = epoch < cfg.epochs
                && cfg.early_stopping.as_ref().is_some_and(|s| s.should_stop(cfg.keep, &pos.history));
            if stop {
                tracing::info!(epoch, "stopping early: no improvement for the patience given");
                pos.history.stopped_after = Some(epoch);
                break;
            }
            pos = Position {
                epoch: epoch + 1,
                batch: 0,
                loss_sum: 0.0,
                term_sums: vec![0.0; term_names.len()],
                shuffle_rng: shuffle_rng.state(),
                step_rng: step_rng.state(),
                ..pos
            };
            if let Some(c) = saving {
                if pos.epoch <= cfg.epochs {
                    c.save(vs, &opt, &pos, best.weights.as_deref())?;
                }
            }
            crate::failpoint::reach(|| match group {
                Some(g) => format!("rank:{}:epoch:{epoch}", g.rank),
                None => format!("epoch:{epoch}"),
            });
        }
        bar.finish_and_clear();
        pos.history.best_epoch = best.epoch;
        pos.history.collective_seconds_per_step =
            (collective_steps > 0).then(|| collective_seconds / collective_steps as f64);
        pos.history.overlapped_gradient_share = sync.as_ref().map(GradientSync::overlapped_share);
        if let Some(weights) = best.weights.filter(|_| best.epoch != pos.history.last().map(|e| e.epoch)) {
            restore(vs, &weights);
        }
        Ok(pos.history)
    }
}

/// Stops an interrupted run: saves where it stands (when checkpointing), to resume at the batch it was at with the
/// random stream that batch starts with.
fn interrupted_at(
    checkpoint: Option<&Checkpoint>,
    vs: &VarStore,
    opt: &Optimizer,
    pos: &mut Position,
    step_rng: [u64; 4],
    best: Option<&[(String, Tensor)]>,
) -> Result<History> {
    if let Some(c) = checkpoint {
        pos.step_rng = step_rng;
        c.save(vs, opt, pos, best)?;
    }
    Err(crate::interrupt::Interrupted.into())
}

/// The weights of the best epoch so far, for `keep: best …`.
#[derive(Default)]
struct BestWeights {
    epoch: Option<usize>,
    weights: Option<Weights>,
}

/// A copy of every variable, by name.
fn snapshot(vs: &VarStore) -> Weights {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(n, t)| (n, t.detach().copy())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

fn restore(vs: &VarStore, weights: &[(String, Tensor)]) {
    let variables = vs.variables();
    tch::no_grad(|| {
        for (name, saved) in weights {
            if let Some(v) = variables.get(name) {
                v.shallow_clone().copy_(saved);
            }
        }
    });
}

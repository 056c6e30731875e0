//! An epoch's running loss: the sums of batch loss × batch size (and of each term's share) that become the epoch's
//! `train_loss`, with the divergence check on them.
//!
//! Reading a loss to the host waits for the device to finish the batch. On the CPU that costs nothing and each
//! batch is read at once (the sums are then f64 additions in batch order, as they always were). On a CUDA device the
//! sums stay on the device and are read every [`CUDA_BATCHES_PER_READ`] batches and before the position is used or
//! saved (epoch end, interruption), so the host queues the next batches instead of waiting on each; a diverged loss
//! is then reported for the run of batches it fell in, at most that many batches late.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use super::checkpoint::Position;
use super::learner::BatchLoss;

/// Batches between reads of the loss on a CUDA device.
pub const CUDA_BATCHES_PER_READ: usize = 32;

pub struct LossTally {
    /// Batches between reads: 1 reads every batch.
    every: usize,
    /// On the device: `[total, terms…]` sums of loss × samples, f64, since the last read.
    pending: Option<Tensor>,
    /// 1-based numbers of the first and last batch in `pending`.
    batches: (usize, usize),
    /// Batches in the epoch, for messages.
    of: usize,
}

impl LossTally {
    /// Reads every batch on the CPU, every [`CUDA_BATCHES_PER_READ`] on CUDA; `of` batches per epoch.
    pub fn for_device(device: Device, of: usize) -> LossTally {
        LossTally::every(if device.is_cuda() { CUDA_BATCHES_PER_READ } else { 1 }, of)
    }

    /// Reads every `every` batches, on any device (tests run the deferred path on the CPU).
    pub fn every(every: usize, of: usize) -> LossTally {
        LossTally { every: every.max(1), pending: None, batches: (0, 0), of }
    }

    /// Adds batch `batch` (1-based) of `samples` samples to `pos`'s sums: at once, or when its run is read.
    pub fn add(&mut self, loss: &BatchLoss, samples: usize, batch: usize, pos: &mut Position) -> Result<()> {
        if self.every == 1 {
            let (value, terms) = loss.values()?;
            return self.add_read(value, &terms, samples, batch, pos);
        }
        let row = Tensor::f_stack(
            &std::iter::once(&loss.total).chain(&loss.terms).map(|t| t.to_kind(Kind::Double)).collect::<Vec<_>>(),
            0,
        )? * samples as f64;
        self.pending = Some(match self.pending.take() {
            Some(sums) => sums + row,
            None => {
                self.batches.0 = batch;
                row
            }
        });
        self.batches.1 = batch;
        if batch + 1 - self.batches.0 >= self.every {
            self.read(pos)?;
        }
        Ok(())
    }

    /// Adds a batch already read (a data-parallel batch, whose ranks agree on it on the host), checking it first.
    pub fn add_read(
        &mut self,
        value: f64,
        terms: &[f64],
        samples: usize,
        batch: usize,
        pos: &mut Position,
    ) -> Result<()> {
        self.check(value, (batch, batch), pos)?;
        pos.loss_sum += value * samples as f64;
        for (sum, term) in pos.term_sums.iter_mut().zip(terms) {
            *sum += term * samples as f64;
        }
        Ok(())
    }

    /// Reads what is pending into `pos`; call before `pos` is used or saved.
    pub fn read(&mut self, pos: &mut Position) -> Result<()> {
        let Some(sums) = self.pending.take() else { return Ok(()) };
        let sums = Vec::<f64>::try_from(sums.to_device(Device::Cpu))?;
        self.check(sums[0], self.batches, pos)?;
        pos.loss_sum += sums[0];
        for (sum, term) in pos.term_sums.iter_mut().zip(&sums[1..]) {
            *sum += term;
        }
        Ok(())
    }

    fn check(&self, value: f64, (first, last): (usize, usize), pos: &Position) -> Result<()> {
        if value.is_finite() {
            return Ok(());
        }
        let of = self.of;
        let batches =
            if first == last { format!("batch {last}/{of}") } else { format!("batches {first}–{last}/{of}") };
        bail!("epoch {}, {batches}: loss is {value} (diverged; lower the learning rate or clip gradients)", pos.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::training::learner::History;

    fn position() -> Position {
        Position {
            epoch: 1,
            batch: 0,
            global_step: 0,
            loss_sum: 0.0,
            term_sums: vec![0.0],
            shuffle_rng: [0; 4],
            step_rng: [0; 4],
            history: History::default(),
        }
    }

    fn loss(total: f32, term: f32) -> BatchLoss {
        BatchLoss { total: Tensor::from(total), terms: vec![Tensor::from(term)] }
    }

    #[test]
    fn deferred_reads_give_the_sums_of_reading_every_batch() {
        let batches = [(0.5f32, 0.25f32, 16), (0.75, 0.5, 16), (1.5, 1.0, 16), (0.125, 0.0625, 7)];
        let sums = |every: usize| {
            let (mut tally, mut pos) = (LossTally::every(every, batches.len()), position());
            for (b, &(total, term, samples)) in batches.iter().enumerate() {
                tally.add(&loss(total, term), samples, b + 1, &mut pos).unwrap();
            }
            tally.read(&mut pos).unwrap();
            (pos.loss_sum, pos.term_sums[0])
        };
        // Dyadic values: every order of summation is exact, so the sums are equal, not close.
        assert_eq!(
            sums(1),
            (0.5 * 16.0 + 0.75 * 16.0 + 1.5 * 16.0 + 0.125 * 7.0, 0.25 * 16.0 + 0.5 * 16.0 + 16.0 + 0.0625 * 7.0)
        );
        assert_eq!(sums(3), sums(1));
        assert_eq!(sums(32), sums(1));
    }

    #[test]
    fn a_diverged_batch_is_named_at_once_or_with_its_run() {
        let run = |every: usize| {
            let (mut tally, mut pos) = (LossTally::every(every, 10), position());
            tally.add(&loss(0.5, 0.1), 8, 1, &mut pos).unwrap();
            let err = tally.add(&loss(f32::NAN, 0.1), 8, 2, &mut pos).and_then(|()| {
                tally.add(&loss(0.5, 0.1), 8, 3, &mut pos)?;
                tally.read(&mut pos)
            });
            err.unwrap_err().to_string()
        };
        assert!(run(1).starts_with("epoch 1, batch 2/10: loss is NaN (diverged"), "{}", run(1));
        assert!(run(4).starts_with("epoch 1, batches 1–3/10: loss is NaN (diverged"), "{}", run(4));
    }
}

//! Averaging gradients over ranks, the way DDP does: while the backward pass computes where it can.
//!
//! The first batch is a probe: its gradients are averaged after the backward pass, bucket by bucket, and the ranks
//! agree whether every parameter received a gradient. From the second batch on, when all did, DDP's own Reducer takes
//! over for every parameter that one backward pass reaches once: its hooks all-reduce each bucket while the backward
//! pass is still computing the layers before it. The parameters a step reaches in several passes
//! ([`crate::nn::training::learner::TrainStep::repeatedly_reached_parameters`]: a language model's output projection,
//! backpropagated a chunk of positions at a time by [`crate::nn::training::chunked`]) are averaged after the backward
//! pass, as all are when a parameter was not reached: DDP's hooks expect each parameter exactly once.
//!
//! Both paths compute the same mean: each rank's gradient times 1/N, summed (as DDP), so a power-of-two N gives the
//! same bits on either path.

use anyhow::Result;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::group::{ProcessGroup, Reducer};

/// Bytes per bucket: DDP's default `bucket_cap_mb` (25 MiB).
const BUCKET_BYTES: i64 = 25 * 1024 * 1024;

enum Path {
    /// The first batch: after the backward pass, then decide.
    Probe,
    AfterBackward,
    /// The Reducer averages the parameters one pass reaches; `after` holds the buckets of the others.
    Overlapped {
        reducer: Reducer,
        after: Vec<Vec<usize>>,
    },
}

pub struct GradientSync<'g> {
    group: &'g ProcessGroup,
    /// The trainable parameters, sorted by name (the optimiser's order).
    params: Vec<Tensor>,
    /// Whether the step's backward passes reach `params[i]` more than once.
    repeated: Vec<bool>,
    /// Buckets of all of `params`, last parameters first (roughly the order backward produces them).
    buckets: Vec<Vec<usize>>,
    path: Path,
}

impl<'g> GradientSync<'g> {
    /// `repeated`: the parameters the step reaches in more than one backward pass per batch (the same tensors as in
    /// `vs`, e.g. shallow clones).
    pub fn new(group: &'g ProcessGroup, vs: &VarStore, repeated: &[Tensor]) -> Self {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let params: Vec<Tensor> = named.into_iter().map(|(_, t)| t).collect();
        let repeated = params.iter().map(|p| repeated.iter().any(|r| r.data_ptr() == p.data_ptr())).collect();
        let buckets = buckets_by_size(&params, |_| true, BUCKET_BYTES);
        GradientSync { group, params, repeated, buckets, path: Path::Probe }
    }

    /// The share of gradient elements DDP's Reducer averages during the backward pass (0 before it takes over).
    pub fn overlapped_share(&self) -> f64 {
        let Path::Overlapped { after, .. } = &self.path else { return 0.0 };
        let total: f64 = self.params.iter().map(|p| p.numel() as f64).sum();
        1.0 - after.iter().flatten().map(|&i| self.params[i].numel() as f64).sum::<f64>() / total
    }

    /// Makes every rank hold rank 0's weights (all ranks initialise alike, but a mismatch would go unnoticed).
    pub fn broadcast_weights(&self) -> Result<()> {
        let weights: Vec<Tensor> = self.params.iter().map(Tensor::detach).collect();
        self.group.broadcast_from_root(&weights)
    }

    /// Call before the step's forward and backward passes.
    pub fn before_backward(&mut self) -> Result<()> {
        match &mut self.path {
            Path::Overlapped { reducer, .. } => reducer.prepare(),
            _ => Ok(()),
        }
    }

    /// Call after them: the gradients are then the mean over ranks.
    pub fn after_backward(&mut self) -> Result<()> {
        match &self.path {
            Path::Overlapped { after, .. } => self.average(after),
            Path::AfterBackward => self.average(&self.buckets),
            Path::Probe => {
                let missing = self.params.iter().filter(|p| !p.grad().defined()).count();
                let missing_anywhere = self.group.all_sum(&[missing as f64])?[0] > 0.0;
                self.average(&self.buckets)?;
                let once: Vec<Tensor> = self
                    .params
                    .iter()
                    .zip(&self.repeated)
                    .filter(|(_, &r)| !r)
                    .map(|(p, _)| p.shallow_clone())
                    .collect();
                self.path = if !missing_anywhere && !once.is_empty() {
                    tracing::info!(
                        overlapped = once.len(),
                        after = self.params.len() - once.len(),
                        "gradients: averaged by DDP's Reducer during the backward pass"
                    );
                    let after = buckets_by_size(&self.params, |i| self.repeated[i], BUCKET_BYTES);
                    Path::Overlapped { reducer: Reducer::new(self.group, &once, BUCKET_BYTES)?, after }
                } else {
                    tracing::info!(
                        unreached_parameters = missing_anywhere,
                        "gradients: averaged after the backward pass"
                    );
                    Path::AfterBackward
                };
                Ok(())
            }
        }
    }

    /// For a rank with no samples in a batch (a last batch smaller than the ranks): a backward pass that gives every
    /// parameter a zero gradient, so its collectives match the other ranks'.
    pub fn zero_backward(&self) -> Result<()> {
        let zero = self.params.iter().map(|p| (p * 0.0).sum(Kind::Float)).fold(Tensor::from(0f32), |a, b| a + b);
        zero.f_backward()?;
        Ok(())
    }

    /// Every gradient in `buckets` times 1/N, summed over ranks, one flat bucket at a time.
    fn average(&self, buckets: &[Vec<usize>]) -> Result<()> {
        for p in self.params.iter().filter(|p| !p.grad().defined()) {
            // A parameter the loss does not reach: a zero gradient, as DDP's find_unused_parameters gives it.
            (p * 0.0).sum(Kind::Float).f_backward()?;
        }
        let scale = 1.0 / self.group.world as f64;
        for bucket in buckets {
            let grads: Vec<Tensor> = bucket.iter().map(|&i| self.params[i].grad()).collect();
            let flat = Tensor::cat(&grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0) * scale;
            self.group.all_reduce_sum(&flat)?;
            let mut offset = 0;
            tch::no_grad(|| {
                for g in &grads {
                    let n = g.numel() as i64;
                    g.shallow_clone().copy_(&flat.narrow(0, offset, n).view_as(g));
                    offset += n;
                }
            });
        }
        Ok(())
    }
}

/// Indices of the `params` that are `wanted`, in buckets of at most `cap` bytes (a larger parameter alone), from the
/// last parameter back.
fn buckets_by_size(params: &[Tensor], wanted: impl Fn(usize) -> bool, cap: i64) -> Vec<Vec<usize>> {
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0i64;
    for i in (0..params.len()).rev().filter(|&i| wanted(i)) {
        let size = params[i].numel() as i64 * params[i].kind().elt_size_in_bytes() as i64;
        if buckets.is_empty() || bytes + size > cap {
            buckets.push(Vec::new());
            bytes = 0;
        }
        buckets.last_mut().expect("pushed above").push(i);
        bytes += size;
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_at_most_the_cap_and_every_parameter_once() {
        let params: Vec<Tensor> =
            [10, 300, 20, 20, 5].iter().map(|&n| Tensor::zeros([n], tch::kind::FLOAT_CPU)).collect();
        // 4 bytes per element: 40, 1200, 80, 80, 20 bytes; cap 200.
        let buckets = buckets_by_size(&params, |_| true, 200);
        assert_eq!(buckets, vec![vec![4, 3, 2], vec![1], vec![0]]);
        assert_eq!(buckets_by_size(&params, |i| i != 3, 200), vec![vec![4, 2], vec![1], vec![0]]);
    }
}

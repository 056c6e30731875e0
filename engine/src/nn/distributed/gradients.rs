//! Averaging gradients over ranks after each backward pass, the way DDP does.
//!
//! The first batch is a probe: its gradients are averaged after the backward pass, bucket by bucket, and the ranks
//! agree whether every parameter received a gradient. From the second batch on, when all did and the step runs one
//! backward pass per batch, DDP's own Reducer takes over: its hooks all-reduce each bucket while the backward pass is
//! still computing the layers before it. A step that backpropagates in several passes (a language model's loss a
//! chunk of positions at a time, [`crate::nn::training::chunked`]) or a model with parameters the loss does not
//! reach keeps the after-backward path: DDP refuses both (its hooks expect each parameter exactly once per pass).
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
    Overlapped(Reducer),
}

pub struct GradientSync<'g> {
    group: &'g ProcessGroup,
    /// The trainable parameters, sorted by name (the optimiser's order).
    params: Vec<Tensor>,
    /// Buckets of indices into `params`, last parameters first (roughly the order backward produces them).
    buckets: Vec<Vec<usize>>,
    single_backward: bool,
    path: Path,
}

impl<'g> GradientSync<'g> {
    /// `single_backward`: whether the step runs exactly one backward pass per batch.
    pub fn new(group: &'g ProcessGroup, vs: &VarStore, single_backward: bool) -> Self {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let params: Vec<Tensor> = named.into_iter().map(|(_, t)| t).collect();
        let buckets = buckets_by_size(&params, BUCKET_BYTES);
        GradientSync { group, params, buckets, single_backward, path: Path::Probe }
    }

    /// Whether DDP's Reducer is averaging the gradients during the backward pass.
    pub fn overlapped(&self) -> bool {
        matches!(self.path, Path::Overlapped(_))
    }

    /// Makes every rank hold rank 0's weights (all ranks initialise alike, but a mismatch would go unnoticed).
    pub fn broadcast_weights(&self) -> Result<()> {
        let weights: Vec<Tensor> = self.params.iter().map(Tensor::detach).collect();
        self.group.broadcast_from_root(&weights)
    }

    /// Call before the step's forward and backward passes.
    pub fn before_backward(&mut self) -> Result<()> {
        match &mut self.path {
            Path::Overlapped(reducer) => reducer.prepare(),
            _ => Ok(()),
        }
    }

    /// Call after them: the gradients are then the mean over ranks.
    pub fn after_backward(&mut self) -> Result<()> {
        match self.path {
            Path::Overlapped(_) => Ok(()),
            Path::AfterBackward => self.average(),
            Path::Probe => {
                let missing = self.params.iter().filter(|p| !p.grad().defined()).count();
                let missing_anywhere = self.group.all_sum(&[missing as f64])?[0] > 0.0;
                self.average()?;
                self.path = if self.single_backward && !missing_anywhere {
                    tracing::info!("gradients: averaged by DDP's Reducer during the backward pass");
                    Path::Overlapped(Reducer::new(self.group, &self.params, BUCKET_BYTES)?)
                } else {
                    tracing::info!(
                        several_passes = !self.single_backward,
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

    /// Every gradient times 1/N, summed over ranks, one flat bucket at a time.
    fn average(&self) -> Result<()> {
        for p in self.params.iter().filter(|p| !p.grad().defined()) {
            // A parameter the loss does not reach: a zero gradient, as DDP's find_unused_parameters gives it.
            (p * 0.0).sum(Kind::Float).f_backward()?;
        }
        let scale = 1.0 / self.group.world as f64;
        for bucket in &self.buckets {
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

/// Indices of `params` in buckets of at most `cap` bytes (a larger parameter alone), from the last parameter back.
fn buckets_by_size(params: &[Tensor], cap: i64) -> Vec<Vec<usize>> {
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0i64;
    for i in (0..params.len()).rev() {
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
        let buckets = buckets_by_size(&params, 200);
        assert_eq!(buckets, vec![vec![4, 3, 2], vec![1], vec![0]]);
    }
}

//! A [`BatchSource`] over tensors held on the step's device: a batch is one `index_select` per tensor.

use tch::{Device, Tensor};

use crate::nn::training::learner::{Batch, BatchSource};

pub struct TensorSource {
    x: Tensor,
    y: Tensor,
    device: Device,
    /// Each row's real tokens, for padded sentences ([`TensorSource::with_lengths`]).
    lengths: Option<Vec<i64>>,
}

impl TensorSource {
    /// Moves `x` and `y` to `device` once, so batches never copy from the host.
    pub fn new(x: &Tensor, y: &Tensor, device: Device) -> Self {
        TensorSource { x: x.to_device(device), y: y.to_device(device), device, lengths: None }
    }

    /// Padded token rows (padding id `pad`, on the right) that say their lengths, for batches of similar length.
    pub fn with_lengths(mut self, pad: i64) -> Self {
        let lengths = crate::nn::encode::lengths(&self.x.to_device(Device::Cpu), pad);
        self.lengths = Vec::<i64>::try_from(lengths).ok();
        self
    }
}

impl BatchSource for TensorSource {
    fn len(&self) -> usize {
        self.y.size()[0] as usize
    }

    fn batch(&self, idx: &Tensor) -> Batch {
        let on_device = idx.to_device(self.device);
        Batch::new(self.x.index_select(0, &on_device), self.y.index_select(0, &on_device), idx.shallow_clone())
    }

    fn lengths(&self) -> Option<Vec<i64>> {
        self.lengths.clone()
    }
}

//! A [`BatchSource`] over tensors held on the step's device: a batch is one `index_select` per tensor.

use tch::{Device, Tensor};

use crate::nn::training::learner::{Batch, BatchSource};

pub struct TensorSource {
    x: Tensor,
    y: Tensor,
    device: Device,
}

impl TensorSource {
    /// Moves `x` and `y` to `device` once, so batches never copy from the host.
    pub fn new(x: &Tensor, y: &Tensor, device: Device) -> Self {
        TensorSource { x: x.to_device(device), y: y.to_device(device), device }
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
}

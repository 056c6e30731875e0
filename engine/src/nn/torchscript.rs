//! A TorchScript module (the output of `torch.jit.script` or `torch.jit.trace`, run by libtorch's JIT) as a
//! [`Model`]: how anbiq uses a teacher trained elsewhere. Inference only: the module is put in eval mode on load and
//! `forward` ignores [`Mode`], since anbiq never trains an imported module.

use std::path::Path;

use anyhow::Result;
use tch::{CModule, Device, Tensor};

use crate::nn::{Mode, Model};

pub struct TorchScriptModel {
    module: CModule,
}

impl TorchScriptModel {
    /// Loads a module onto `device`, in eval mode.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        if path.is_dir() {
            anyhow::bail!(
                "{} is a directory, not a TorchScript file (`torch.jit.save` writes one file)",
                path.display()
            );
        }
        let mut module = CModule::load_on_device(path, device).map_err(|e| {
            let text = e.to_string();
            // libtorch's message for a file that is not a zip archive at all goes on about corrupted checkpoints.
            if text.contains("failed finding central directory") {
                anyhow::anyhow!(
                    "{} is not a TorchScript file (`torch.jit.save` writes a zip archive; this is not one)",
                    path.display()
                )
            } else {
                anyhow::Error::from(e).context(format!("loading TorchScript module {}", path.display()))
            }
        })?;
        module.set_eval();
        Ok(TorchScriptModel { module })
    }

    /// `forward` with the module's own error (e.g. a shape it does not accept) instead of a panic.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.module.forward_ts(&[x])?)
    }

    /// Scalar parameters of the module and its submodules.
    pub fn parameter_count(&self) -> Result<i64> {
        Ok(self.module.named_parameters()?.iter().map(|(_, t)| t.numel() as i64).sum())
    }
}

impl Model for TorchScriptModel {
    fn forward(&self, x: &Tensor, _mode: Mode<'_>) -> Tensor {
        // Shapes are checked when the module is imported, so a failure here is a bug in the module itself.
        self.try_forward(x).unwrap_or_else(|e| panic!("TorchScript forward failed: {e:#}"))
    }
}

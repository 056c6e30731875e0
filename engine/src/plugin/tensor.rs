//! Tensor-style calls: the inputs go in as handles (the tensors stay where they are, CPU or GPU), the guest builds
//! the loss from host functions, and the handle it returns is the loss, with libtorch's autograd graph intact.

use tch::Tensor;

use super::error::{ErrorKind, PluginError};
use super::runner::{CallInput, Live};
use super::sandbox::Limits;

const CALL: &str = "anbiq_loss";

pub(crate) fn call(live: &mut Live, plugin: &str, limits: &Limits, input: &CallInput) -> Result<Tensor, PluginError> {
    let f = live.tensor.as_ref().expect("tensor-style plugins have anbiq_loss (checked at load)");
    let h = live.store.data_mut().handles.begin(&[input.student, input.teacher, input.labels]);
    let out =
        f.call(&mut live.store, (h[0], h[1], h[2])).map_err(|e| PluginError::from_wasm(plugin, CALL, limits, e))?;
    let bad = |m: String| PluginError::new(plugin, CALL, ErrorKind::BadResult, m);
    let loss = live.store.data_mut().handles.take(CALL, out).map_err(|e| bad(format!("returned {}", e.message)))?;
    if loss.numel() != 1 || !loss.is_floating_point() {
        return Err(bad(format!(
            "returned a {:?} tensor of shape {:?}; a loss is a floating-point scalar",
            loss.kind(),
            loss.size()
        )));
    }
    let loss = if loss.dim() == 0 { loss } else { loss.reshape([] as [i64; 0]) };
    let value = loss.double_value(&[]);
    if !value.is_finite() {
        return Err(bad(format!("returned a loss of {value}")));
    }
    if input.student.requires_grad() && !loss.requires_grad() {
        return Err(bad("returned a loss that does not depend on the student's logits (detached?)".into()));
    }
    Ok(loss)
}

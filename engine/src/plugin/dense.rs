//! Dense-style calls: the host copies the f32 logits and i64 labels into guest memory, the guest returns the loss
//! and writes ∂loss/∂student into a buffer the host provides, and the host turns that into an autograd node:
//! `value + ((student − student.detach()) · grad).sum()` has exactly the value `value` (the difference is 0) and
//! exactly the gradient `grad`.

use tch::{Device, Kind, Tensor};

use super::error::{ErrorKind, PluginError};
use super::runner::{CallInput, Live};
use super::sandbox::Limits;

const CALL: &str = "anbiq_loss_dense";

/// Buffers in guest memory, allocated once through `anbiq_alloc` and reused while batches fit.
pub(crate) struct Buffers {
    /// Floats each of student, teacher, grad can hold; labels each buffer can hold.
    floats: usize,
    rows: usize,
    student: usize,
    teacher: usize,
    labels: usize,
    grad: usize,
}

fn alloc(live: &mut Live, plugin: &str, limits: &Limits, bytes: usize, align: usize) -> Result<usize, PluginError> {
    let size = i32::try_from(bytes).map_err(|_| {
        PluginError::new(plugin, "anbiq_alloc", ErrorKind::BadResult, format!("{bytes} bytes is over 2 GiB"))
    })?;
    let ptr = live
        .alloc
        .call(&mut live.store, (size, align as i32))
        .map_err(|e| PluginError::from_wasm(plugin, "anbiq_alloc", limits, e))? as u32 as usize;
    let fits = ptr != 0 && ptr.is_multiple_of(align) && ptr + bytes <= live.memory.data_size(&live.store);
    if !fits {
        return Err(PluginError::new(
            plugin,
            "anbiq_alloc",
            ErrorKind::BadResult,
            format!("returned {ptr} for {bytes} bytes aligned to {align}: null, misaligned or outside its memory"),
        ));
    }
    Ok(ptr)
}

fn host_f32(t: &Tensor) -> Tensor {
    t.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous()
}

pub(crate) fn call(live: &mut Live, plugin: &str, limits: &Limits, input: &CallInput) -> Result<Tensor, PluginError> {
    let bad = |m: String| PluginError::new(plugin, CALL, ErrorKind::BadResult, m);
    let shape = input.student.size();
    // Sequence logits [B, T, V] are B·T rows of V in memory already; the guest learns T from `seq_len()`.
    let (b, c) = match shape[..] {
        [b, c] => (b as usize, c as usize),
        [b, t, v] => ((b * t) as usize, v as usize),
        _ => return Err(bad(format!("dense-style losses take [B, C] or [B, T, V] logits, got shape {shape:?}"))),
    };
    let n = b * c;
    if live.buffers.as_ref().is_none_or(|buf| buf.floats < n || buf.rows < b) {
        let buffers = Buffers {
            floats: n,
            rows: b,
            student: alloc(live, plugin, limits, 4 * n, 16)?,
            teacher: alloc(live, plugin, limits, 4 * n, 16)?,
            labels: alloc(live, plugin, limits, 8 * b, 16)?,
            grad: alloc(live, plugin, limits, 4 * n, 16)?,
        };
        live.buffers = Some(buffers);
    }
    let buf = live.buffers.as_ref().expect("allocated above");
    let (student, teacher) = (host_f32(input.student), host_f32(input.teacher));
    let labels = input.labels.to_device(Device::Cpu).to_kind(Kind::Int64).contiguous();
    if teacher.size() != shape || labels.numel() != b {
        return Err(bad(format!(
            "inputs disagree: student {shape:?}, teacher {:?}, labels {:?}",
            teacher.size(),
            labels.size()
        )));
    }
    {
        let mem = live.memory.data_mut(&mut live.store);
        // The buffers were checked to lie inside memory when allocated, and memory never shrinks.
        let copy = |t: &Tensor, dst: &mut [u8], count: usize| t.f_copy_data_u8(dst, count);
        let (s, t, y, g) = (buf.student, buf.teacher, buf.labels, buf.grad);
        copy(&student, &mut mem[s..s + 4 * n], n).map_err(|e| bad(e.to_string()))?;
        copy(&teacher, &mut mem[t..t + 4 * n], n).map_err(|e| bad(e.to_string()))?;
        copy(&labels, &mut mem[y..y + 8 * b], b).map_err(|e| bad(e.to_string()))?;
        // NaN everywhere: entries the guest fails to write are caught below.
        for chunk in mem[g..g + 4 * n].chunks_exact_mut(4) {
            chunk.copy_from_slice(&f32::NAN.to_le_bytes());
        }
    }
    let f = live.dense.as_ref().expect("dense-style plugins have anbiq_loss_dense (checked at load)");
    let args = (buf.student as i32, buf.teacher as i32, buf.labels as i32, b as i32, c as i32, buf.grad as i32);
    let value = f.call(&mut live.store, args).map_err(|e| PluginError::from_wasm(plugin, CALL, limits, e))?;
    if !value.is_finite() {
        return Err(bad(format!("returned a loss of {value}")));
    }
    let grad_bytes = &live.memory.data(&live.store)[buf.grad..buf.grad + 4 * n];
    if let Some(i) =
        grad_bytes.chunks_exact(4).position(|x| !f32::from_le_bytes(x.try_into().expect("4 bytes")).is_finite())
    {
        let x = f32::from_le_bytes(grad_bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
        return Err(bad(format!(
            "gradient entry [{}, {}] is {x}: the plugin must write a finite ∂loss/∂student for all {b}×{c} entries",
            i / c,
            i % c
        )));
    }
    let device = input.student.device();
    let grad =
        Tensor::f_from_data_size(grad_bytes, &shape, Kind::Float).map_err(|e| bad(e.to_string()))?.to_device(device);
    let value = Tensor::from(value).to_device(device);
    let zero = input.student - input.student.detach();
    Ok(value + (zero * grad).sum(Kind::Float))
}

//! The host functions of module `anbiq`: tensor operations run natively by libtorch (with autograd) on the call's
//! handles, plus parameters, progress, logging and a bounded read. The linker defines nothing else, so a plugin
//! that imports anything more (WASI included) is refused at load.

use std::sync::OnceLock;

use tch::{Kind, Reduction, TchError, Tensor};
use wasmtime::{Caller, Extern, Linker};

use super::handles::{HostError, HostState};
use super::sandbox::engine;

/// Elements `read` copies at most.
pub const MAX_READ: usize = 1 << 16;
/// Longest `log` message and parameter name, bytes.
const MAX_LOG: usize = 4096;
const MAX_NAME: usize = 256;

type R<T> = wasmtime::Result<T>;
type C<'a> = Caller<'a, HostState>;

/// The host's first line of a libtorch error (its C++ backtrace is of no use to a plugin author).
fn torch(import: &'static str, e: TchError) -> HostError {
    let text = e.to_string();
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("libtorch error").trim();
    HostError::new(import, first.trim_start_matches("Internal torch error: ").to_string())
}

/// Fuel for a host operation: a fixed cost plus one unit per 64 elements produced.
fn charge(c: &mut C<'_>, import: &'static str, elements: i64) -> Result<(), HostError> {
    let cost = 10 + (elements.max(0) as u64) / 64;
    let left = c.get_fuel().unwrap_or(0);
    if left < cost {
        let _ = c.set_fuel(0);
        return Err(HostError { import, message: "out of fuel".into(), out_of_fuel: true });
    }
    let _ = c.set_fuel(left - cost);
    Ok(())
}

fn result(c: &mut C<'_>, import: &'static str, t: Result<Tensor, TchError>) -> R<i32> {
    let t = t.map_err(|e| torch(import, e))?;
    charge(c, import, t.numel() as i64)?;
    Ok(c.data_mut().handles.put(import, t)?)
}

fn op1(c: &mut C<'_>, import: &'static str, a: i32, f: impl FnOnce(&Tensor) -> Result<Tensor, TchError>) -> R<i32> {
    let t = f(c.data().handles.get(import, a)?);
    result(c, import, t)
}

/// Elements of the broadcast of some shapes (numpy rules; incompatible shapes are libtorch's to report).
fn broadcast_numel(shapes: &[Vec<i64>]) -> u64 {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    (0..rank)
        .map(|i| {
            shapes.iter().map(|s| if i < s.len() { s[s.len() - 1 - i].max(0) as u64 } else { 1 }).max().unwrap_or(1)
        })
        .fold(1u64, |n, d| n.saturating_mul(d))
}

fn op2(
    c: &mut C<'_>,
    import: &'static str,
    a: i32,
    b: i32,
    f: impl FnOnce(&Tensor, &Tensor) -> Result<Tensor, TchError>,
) -> R<i32> {
    let h = &c.data().handles;
    let (x, y) = (h.get(import, a)?, h.get(import, b)?);
    h.reserve(import, broadcast_numel(&[x.size(), y.size()]))?;
    let t = f(x, y);
    result(c, import, t)
}

fn reduction(import: &'static str, code: i32) -> Result<Option<Reduction>, HostError> {
    // None means batchmean: sum, then divide by the size of dimension 0.
    match code {
        0 => Ok(Some(Reduction::None)),
        1 => Ok(Some(Reduction::Mean)),
        2 => Ok(Some(Reduction::Sum)),
        3 => Ok(None),
        _ => Err(HostError::new(import, format!("reduction {code} is not 0 none, 1 mean, 2 sum or 3 batchmean"))),
    }
}

fn reduced(
    import: &'static str,
    code: i32,
    first: &Tensor,
    f: impl FnOnce(Reduction) -> Result<Tensor, TchError>,
) -> Result<Result<Tensor, TchError>, HostError> {
    Ok(match reduction(import, code)? {
        Some(r) => f(r),
        None => {
            let batch = first.size().first().copied().unwrap_or(1).max(1);
            f(Reduction::Sum).and_then(|t| t.f_div_scalar(batch as f64))
        }
    })
}

fn memory(c: &mut C<'_>, import: &'static str) -> Result<wasmtime::Memory, HostError> {
    match c.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(HostError::new(import, "the plugin exports no `memory`")),
    }
}

/// Reads `len` bytes of guest memory at `ptr`, bounds-checked.
fn guest_bytes(c: &mut C<'_>, import: &'static str, ptr: i32, len: i32, max: usize) -> Result<Vec<u8>, HostError> {
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    if len > max {
        return Err(HostError::new(import, format!("length {len} is over the limit of {max} bytes")));
    }
    let mem = memory(c, import)?;
    let data = mem.data(&*c);
    data.get(ptr..ptr.saturating_add(len))
        .map(|b| b.to_vec())
        .ok_or_else(|| HostError::new(import, format!("bytes {ptr}..{} are outside the plugin's memory", ptr + len)))
}

fn dim_of(import: &'static str, t: &Tensor, dim: i32) -> Result<usize, HostError> {
    let n = t.dim() as i64;
    let d = if dim < 0 { dim as i64 + n } else { dim as i64 };
    if d < 0 || d >= n {
        return Err(HostError::new(import, format!("dimension {dim} is out of range for a {n}-d tensor")));
    }
    Ok(d as usize)
}

/// The linker with every `anbiq` import, and the names it defines.
pub(crate) fn linker() -> &'static (Linker<HostState>, Vec<&'static str>) {
    static LINKER: OnceLock<(Linker<HostState>, Vec<&'static str>)> = OnceLock::new();
    LINKER.get_or_init(|| build().expect("the anbiq host functions link"))
}

macro_rules! unary {
    ($l:ident, $names:ident, $($name:literal => $f:expr),* $(,)?) => {$(
        $l.func_wrap("anbiq", $name, |mut c: C<'_>, a: i32| op1(&mut c, $name, a, $f))?;
        $names.push($name);
    )*};
}

macro_rules! binary {
    ($l:ident, $names:ident, $($name:literal => $f:expr),* $(,)?) => {$(
        $l.func_wrap("anbiq", $name, |mut c: C<'_>, a: i32, b: i32| op2(&mut c, $name, a, b, $f))?;
        $names.push($name);
    )*};
}

/// A plugin's scalar as the f32 it meets: beyond f32's range it saturates to ±∞ (what f32 arithmetic gives). libtorch
/// refuses such a scalar for an f32 tensor, and tch then panics while freeing it — never let a plugin reach that.
fn f32_range(s: f64) -> f64 {
    if s.abs() > f32::MAX as f64 && s.is_finite() {
        s.signum() * f64::INFINITY
    } else {
        s
    }
}

macro_rules! scalar {
    ($l:ident, $names:ident, $($name:literal => $f:expr),* $(,)?) => {$(
        $l.func_wrap("anbiq", $name, |mut c: C<'_>, a: i32, s: f64| {
            op1(&mut c, $name, a, |t| ($f)(t, f32_range(s)))
        })?;
        $names.push($name);
    )*};
}

macro_rules! dim_op {
    ($l:ident, $names:ident, $($name:literal => $f:expr),* $(,)?) => {$(
        $l.func_wrap("anbiq", $name, |mut c: C<'_>, a: i32, dim: i32, keep: i32| {
            op1(&mut c, $name, a, |t| ($f)(t, dim as i64, keep != 0))
        })?;
        $names.push($name);
    )*};
}

fn full_like(t: &Tensor, s: f64) -> Result<Tensor, TchError> {
    Tensor::f_full([] as [i64; 0], s, (Kind::Float, t.device()))
}

fn build() -> wasmtime::Result<(Linker<HostState>, Vec<&'static str>)> {
    let mut l: Linker<HostState> = Linker::new(engine());
    let mut names: Vec<&'static str> = Vec::new();

    unary!(l, names,
        "neg" => |t: &Tensor| t.f_neg(),
        "exp" => |t: &Tensor| t.f_exp(),
        "log" => |t: &Tensor| t.f_log(),
        "log1p" => |t: &Tensor| t.f_log1p(),
        "sqrt" => |t: &Tensor| t.f_sqrt(),
        "abs" => |t: &Tensor| t.f_abs(),
        "sigmoid" => |t: &Tensor| t.f_sigmoid(),
        "tanh" => |t: &Tensor| t.f_tanh(),
        "relu" => |t: &Tensor| t.f_relu(),
        "detach" => |t: &Tensor| t.f_detach(),
        "to_float" => |t: &Tensor| t.f_to_kind(Kind::Float),
        "sum_all" => |t: &Tensor| t.f_sum(Kind::Float),
        "mean_all" => |t: &Tensor| t.f_mean(Kind::Float),
    );
    binary!(l, names,
        "add" => |a: &Tensor, b: &Tensor| a.f_add(b),
        "sub" => |a: &Tensor, b: &Tensor| a.f_sub(b),
        "mul" => |a: &Tensor, b: &Tensor| a.f_mul(b),
        "div" => |a: &Tensor, b: &Tensor| a.f_div(b),
        "pow" => |a: &Tensor, b: &Tensor| a.f_pow(b),
        "maximum" => |a: &Tensor, b: &Tensor| a.f_maximum(b),
        "minimum" => |a: &Tensor, b: &Tensor| a.f_minimum(b),
        "eq" => |a: &Tensor, b: &Tensor| a.f_eq_tensor(b),
        "gt" => |a: &Tensor, b: &Tensor| a.f_gt_tensor(b),
        "lt" => |a: &Tensor, b: &Tensor| a.f_lt_tensor(b),
    );
    scalar!(l, names,
        "add_scalar" => |t: &Tensor, s: f64| t.f_add_scalar(s),
        "sub_scalar" => |t: &Tensor, s: f64| t.f_sub_scalar(s),
        "mul_scalar" => |t: &Tensor, s: f64| t.f_mul_scalar(s),
        "div_scalar" => |t: &Tensor, s: f64| t.f_div_scalar(s),
        "pow_scalar" => |t: &Tensor, s: f64| t.f_pow_tensor_scalar(s),
        "rsub_scalar" => |t: &Tensor, s: f64| full_like(t, s)?.f_sub(t),
        "rdiv_scalar" => |t: &Tensor, s: f64| full_like(t, s)?.f_div(t),
    );
    dim_op!(l, names,
        "sum" => |t: &Tensor, d: i64, k: bool| t.f_sum_dim_intlist([d].as_slice(), k, Kind::Float),
        "mean" => |t: &Tensor, d: i64, k: bool| t.f_mean_dim([d].as_slice(), k, Kind::Float),
        "amax" => |t: &Tensor, d: i64, k: bool| t.f_amax([d].as_slice(), k),
        "logsumexp" => |t: &Tensor, d: i64, k: bool| t.f_logsumexp([d].as_slice(), k),
        "argmax" => |t: &Tensor, d: i64, k: bool| t.f_argmax(d, k),
    );

    // Temperature-scaled softmax: softmax(x / t) along `dim`, exactly as the native losses compute it.
    l.func_wrap("anbiq", "softmax", |mut c: C<'_>, a: i32, dim: i32, t: f64| {
        op1(&mut c, "softmax", a, |x| x.f_div_scalar(f32_range(t))?.f_softmax(dim as i64, Kind::Float))
    })?;
    l.func_wrap("anbiq", "log_softmax", |mut c: C<'_>, a: i32, dim: i32, t: f64| {
        op1(&mut c, "log_softmax", a, |x| x.f_div_scalar(f32_range(t))?.f_log_softmax(dim as i64, Kind::Float))
    })?;
    l.func_wrap("anbiq", "clamp", |mut c: C<'_>, a: i32, lo: f64, hi: f64| {
        op1(&mut c, "clamp", a, |x| x.f_clamp(f32_range(lo), f32_range(hi)))
    })?;
    l.func_wrap("anbiq", "unsqueeze", |mut c: C<'_>, a: i32, dim: i32| {
        op1(&mut c, "unsqueeze", a, |x| x.f_unsqueeze(dim as i64))
    })?;
    l.func_wrap("anbiq", "one_hot", |mut c: C<'_>, a: i32, classes: i32| {
        let h = &c.data().handles;
        let n = h.get("one_hot", a)?.numel() as u64;
        h.reserve("one_hot", n.saturating_mul(classes.max(0) as u64))?;
        op1(&mut c, "one_hot", a, |x| x.f_one_hot(classes as i64)?.f_to_kind(Kind::Float))
    })?;
    l.func_wrap("anbiq", "gather", |mut c: C<'_>, a: i32, dim: i32, index: i32| {
        op2(&mut c, "gather", a, index, |x, i| x.f_gather(dim as i64, i, false))
    })?;
    l.func_wrap("anbiq", "where", |mut c: C<'_>, cond: i32, a: i32, b: i32| {
        let h = &c.data().handles;
        let (k, x, y) = (h.get("where", cond)?, h.get("where", a)?, h.get("where", b)?);
        h.reserve("where", broadcast_numel(&[k.size(), x.size(), y.size()]))?;
        let t = x.f_where_self(k, y);
        result(&mut c, "where", t)
    })?;
    // kl_div(input = log q, target = p or log p): Σ target · (log target − input), reduced.
    l.func_wrap("anbiq", "kl_div", |mut c: C<'_>, input: i32, target: i32, red: i32, log_target: i32| {
        let h = &c.data().handles;
        let (x, y) = (h.get("kl_div", input)?, h.get("kl_div", target)?);
        let t = reduced("kl_div", red, x, |r| x.f_kl_div(y, r, log_target != 0))?;
        result(&mut c, "kl_div", t)
    })?;
    // Cross-entropy from logits: class indices (integer target, as the native losses) or probabilities (float).
    l.func_wrap("anbiq", "cross_entropy", |mut c: C<'_>, logits: i32, target: i32, red: i32| {
        let h = &c.data().handles;
        let (x, y) = (h.get("cross_entropy", logits)?, h.get("cross_entropy", target)?);
        let t = reduced("cross_entropy", red, x, |r| {
            let log_q = x.f_log_softmax(-1, Kind::Float)?;
            if y.is_floating_point() {
                let per_row = log_q.f_mul(y)?.f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)?.f_neg()?;
                match r {
                    Reduction::None => Ok(per_row),
                    Reduction::Mean => per_row.f_mean(Kind::Float),
                    _ => per_row.f_sum(Kind::Float),
                }
            } else {
                // Class indices: the classes are the last dimension, for [B, C] and [B, T, V] logits alike.
                let classes = log_q.size().last().copied().unwrap_or(1);
                let per = log_q.f_reshape([-1, classes])?.f_nll_loss(&y.f_reshape([-1])?, None::<Tensor>, r, -100)?;
                if matches!(r, Reduction::None) {
                    per.f_reshape(y.size())
                } else {
                    Ok(per)
                }
            }
        })?;
        result(&mut c, "cross_entropy", t)
    })?;
    l.func_wrap("anbiq", "mse", |mut c: C<'_>, a: i32, b: i32, red: i32| {
        let h = &c.data().handles;
        let (x, y) = (h.get("mse", a)?, h.get("mse", b)?);
        let t = reduced("mse", red, x, |r| x.f_mse_loss(y, r))?;
        result(&mut c, "mse", t)
    })?;
    l.func_wrap("anbiq", "scalar", |mut c: C<'_>, v: f64| {
        let device = c.data().handles.device.unwrap_or(tch::Device::Cpu);
        if !c.data().handles.active {
            return Err(HostError::new("scalar", "tensor functions are available only inside `anbiq_loss`").into());
        }
        let t = Tensor::f_full([] as [i64; 0], v, (Kind::Float, device));
        result(&mut c, "scalar", t)
    })?;
    names.extend(["softmax", "log_softmax", "clamp", "unsqueeze", "one_hot", "gather", "where", "kl_div"]);
    names.extend(["cross_entropy", "mse", "scalar"]);

    // Shapes.
    l.func_wrap("anbiq", "ndim", |c: C<'_>, a: i32| -> R<i32> { Ok(c.data().handles.get("ndim", a)?.dim() as i32) })?;
    l.func_wrap("anbiq", "numel", |c: C<'_>, a: i32| -> R<i64> {
        Ok(c.data().handles.get("numel", a)?.numel() as i64)
    })?;
    l.func_wrap("anbiq", "size", |c: C<'_>, a: i32, dim: i32| -> R<i64> {
        let t = c.data().handles.get("size", a)?;
        let d = dim_of("size", t, dim)?;
        Ok(t.size()[d])
    })?;
    l.func_wrap("anbiq", "free", |mut c: C<'_>, a: i32| -> R<()> { Ok(c.data_mut().handles.free("free", a)?) })?;
    // Copies a small tensor (≤ max elements, ≤ MAX_READ) into guest memory as f32; returns the element count.
    l.func_wrap("anbiq", "read", |mut c: C<'_>, a: i32, ptr: i32, max: i32| -> R<i32> {
        let t = c.data().handles.get("read", a)?;
        let n = t.numel();
        if n > (max.max(0) as usize).min(MAX_READ) {
            return Err(HostError::new(
                "read",
                format!("the tensor has {n} elements; at most {} may be read", max.max(0).min(MAX_READ as i32)),
            )
            .into());
        }
        let t = t.f_detach().and_then(|t| t.f_to_kind(Kind::Float)).and_then(|t| t.f_to(tch::Device::Cpu));
        let t = t.and_then(|t| t.f_contiguous()).map_err(|e| torch("read", e))?;
        charge(&mut c, "read", n as i64)?;
        let mem = memory(&mut c, "read")?;
        let start = ptr as u32 as usize;
        let Some(dst) = mem.data_mut(&mut c).get_mut(start..start + 4 * n) else {
            return Err(
                HostError::new("read", format!("{n} floats at {start} do not fit in the plugin's memory")).into()
            );
        };
        t.f_copy_data_u8(dst, n).map_err(|e| torch("read", e))?;
        Ok(n as i32)
    })?;
    names.extend(["ndim", "numel", "size", "free", "read"]);

    // Parameters, progress, sequence length, logging: available in both call styles and in `describe`.
    l.func_wrap("anbiq", "param", |mut c: C<'_>, ptr: i32, len: i32| -> R<f64> {
        let bytes = guest_bytes(&mut c, "param", ptr, len, MAX_NAME)?;
        let name = String::from_utf8_lossy(&bytes);
        match c.data().params.iter().find(|(n, _)| *n == name) {
            Some((_, v)) => Ok(*v),
            None => {
                Err(HostError::new("param", format!("parameter `{name}` is not declared by the plugin's describe"))
                    .into())
            }
        }
    })?;
    l.func_wrap("anbiq", "progress", |c: C<'_>| -> R<f64> { Ok(c.data().progress) })?;
    l.func_wrap("anbiq", "seq_len", |c: C<'_>| -> R<i32> { Ok(c.data().seq_len.min(i32::MAX as i64) as i32) })?;
    // A line for the engine's log (at info level, tagged with the plugin's name); at most 16 per call.
    l.func_wrap("anbiq", "log_msg", |mut c: C<'_>, ptr: i32, len: i32| -> R<()> {
        let bytes = guest_bytes(&mut c, "log_msg", ptr, len, MAX_LOG)?;
        let state = c.data_mut();
        if state.log_budget > 0 {
            state.log_budget -= 1;
            tracing::info!(plugin = %state.plugin, "{}", String::from_utf8_lossy(&bytes));
        }
        Ok(())
    })?;
    // The guest gave up (a Rust panic, a failed check): its message becomes the error.
    l.func_wrap("anbiq", "panic", |mut c: C<'_>, ptr: i32, len: i32| -> R<()> {
        let bytes = guest_bytes(&mut c, "panic", ptr, len, MAX_LOG)?;
        Err(HostError::new("panic", String::from_utf8_lossy(&bytes)).into())
    })?;
    names.extend(["param", "progress", "seq_len", "log_msg", "panic"]);
    Ok((l, names))
}

//! The anbiq plugin SDK: write a distillation loss in a dozen lines of `no_std` Rust, build it for
//! `wasm32-unknown-unknown`, and use it from a workflow (`loss: {plugin: {path: my_loss.wasm}}`).
//!
//! ```ignore
//! #![no_std]
//! use anbiq_sdk::{export_loss, param, Tensor};
//!
//! fn reverse_kl(student: Tensor, teacher: Tensor, _labels: Tensor) -> Tensor {
//!     let t = param("temperature");
//!     let log_q = student.log_softmax(t);
//!     let log_p = teacher.log_softmax(t);
//!     (log_q.exp() * (log_q - log_p)).sum(-1).mean_all() * (t * t)
//! }
//!
//! export_loss!(reverse_kl, r#"{"name": "reverse_kl", "kind": "loss", "style": "tensor",
//!     "params": [{"name": "temperature", "type": "float", "default": 1.0, "min": 0.000001}]}"#);
//! ```
//!
//! What the SDK provides: the ABI exports (`anbiq_abi_version`, `anbiq_alloc`, `anbiq_describe`, the loss) through
//! [`export_loss!`] and [`export_dense_loss!`]; a global allocator (memory allocated during a call is released
//! when the call returns, so keep no heap data across calls); a panic handler that reports the panic message as
//! the plugin's error; [`Tensor`], a handle to a host tensor with operators; [`param`], [`progress`], [`log`]; and
//! [`math`] (`exp`, `ln`) for dense losses. See plugins/ABI.md for the ABI itself.

#![no_std]

extern crate alloc;

pub mod math;
mod memory;
mod tensor;

pub use memory::{call_scope, CallScope};
pub use tensor::{Reduction, Tensor};

/// The plugin ABI version this SDK speaks.
pub const ABI_VERSION: i32 = 2;

/// The raw host functions of module `anbiq` (see plugins/ABI.md). Prefer [`Tensor`]'s methods.
pub mod sys {
    #[link(wasm_import_module = "anbiq")]
    extern "C" {
        pub fn neg(a: i32) -> i32;
        pub fn exp(a: i32) -> i32;
        pub fn log(a: i32) -> i32;
        pub fn log1p(a: i32) -> i32;
        pub fn sqrt(a: i32) -> i32;
        pub fn abs(a: i32) -> i32;
        pub fn sigmoid(a: i32) -> i32;
        pub fn tanh(a: i32) -> i32;
        pub fn relu(a: i32) -> i32;
        pub fn detach(a: i32) -> i32;
        pub fn to_float(a: i32) -> i32;
        pub fn sum_all(a: i32) -> i32;
        pub fn mean_all(a: i32) -> i32;
        pub fn add(a: i32, b: i32) -> i32;
        pub fn sub(a: i32, b: i32) -> i32;
        pub fn mul(a: i32, b: i32) -> i32;
        pub fn div(a: i32, b: i32) -> i32;
        pub fn pow(a: i32, b: i32) -> i32;
        pub fn maximum(a: i32, b: i32) -> i32;
        pub fn minimum(a: i32, b: i32) -> i32;
        pub fn eq(a: i32, b: i32) -> i32;
        pub fn gt(a: i32, b: i32) -> i32;
        pub fn lt(a: i32, b: i32) -> i32;
        pub fn add_scalar(a: i32, s: f64) -> i32;
        pub fn sub_scalar(a: i32, s: f64) -> i32;
        pub fn mul_scalar(a: i32, s: f64) -> i32;
        pub fn div_scalar(a: i32, s: f64) -> i32;
        pub fn pow_scalar(a: i32, s: f64) -> i32;
        pub fn rsub_scalar(a: i32, s: f64) -> i32;
        pub fn rdiv_scalar(a: i32, s: f64) -> i32;
        pub fn sum(a: i32, dim: i32, keepdim: i32) -> i32;
        pub fn mean(a: i32, dim: i32, keepdim: i32) -> i32;
        pub fn amax(a: i32, dim: i32, keepdim: i32) -> i32;
        pub fn logsumexp(a: i32, dim: i32, keepdim: i32) -> i32;
        pub fn argmax(a: i32, dim: i32, keepdim: i32) -> i32;
        pub fn softmax(a: i32, dim: i32, temperature: f64) -> i32;
        pub fn log_softmax(a: i32, dim: i32, temperature: f64) -> i32;
        pub fn clamp(a: i32, lo: f64, hi: f64) -> i32;
        pub fn unsqueeze(a: i32, dim: i32) -> i32;
        pub fn one_hot(a: i32, classes: i32) -> i32;
        pub fn gather(a: i32, dim: i32, index: i32) -> i32;
        #[link_name = "where"]
        pub fn where_(cond: i32, a: i32, b: i32) -> i32;
        pub fn kl_div(input: i32, target: i32, reduction: i32, log_target: i32) -> i32;
        pub fn cross_entropy(logits: i32, target: i32, reduction: i32) -> i32;
        pub fn mse(a: i32, b: i32, reduction: i32) -> i32;
        pub fn scalar(v: f64) -> i32;
        pub fn ndim(a: i32) -> i32;
        pub fn numel(a: i32) -> i64;
        pub fn size(a: i32, dim: i32) -> i64;
        pub fn free(a: i32);
        pub fn read(a: i32, ptr: *mut f32, max: i32) -> i32;
        pub fn param(name: *const u8, len: i32) -> f64;
        pub fn progress() -> f64;
        pub fn seq_len() -> i32;
        pub fn log_msg(msg: *const u8, len: i32);
        pub fn panic(msg: *const u8, len: i32);
    }
}

/// A parameter's value (declared in describe; given in the workflow or defaulted). Booleans read as 0 or 1.
pub fn param(name: &str) -> f64 {
    unsafe { sys::param(name.as_ptr(), name.len() as i32) }
}

/// The fraction of training done, in [0, 1] (for schedules).
pub fn progress() -> f64 {
    unsafe { sys::progress() }
}

/// T of the call's sequence inputs (a language model's `[B, T, V]` logits; dense calls see them as B·T rows in
/// (batch, time) order); 1 for classifiers.
pub fn seq_len() -> usize {
    unsafe { sys::seq_len() as usize }
}

/// A line in the engine's log (at most 16 per call are printed).
pub fn log(msg: &str) {
    unsafe { sys::log_msg(msg.as_ptr(), msg.len() as i32) }
}

/// A dense-style call's inputs, in guest memory: row-major `[batch, classes]` f32 logits and `[batch]` labels.
/// For a language model each row is a token: `batch` = B·T rows in (batch, time) order, `classes` = V.
pub struct DenseInput<'a> {
    pub student: &'a [f32],
    pub teacher: &'a [f32],
    pub labels: &'a [i64],
    pub batch: usize,
    pub classes: usize,
}

impl DenseInput<'_> {
    /// T for sequence inputs (rows `i·T .. (i+1)·T` are sequence i), 1 for classifiers. A method rather than a
    /// field, so a plugin that never asks does not import `seq_len` (and loads on hosts that predate it).
    pub fn seq_len(&self) -> usize {
        seq_len()
    }
}

#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn on_panic(info: &core::panic::PanicInfo) -> ! {
    use core::fmt::Write;
    let mut buf = memory::FixedBuf::<512>::new();
    let _ = write!(buf, "{}", info.message());
    if let Some(at) = info.location() {
        let _ = write!(buf, " (at {}:{})", at.file(), at.line());
    }
    let text = buf.as_str();
    unsafe { sys::panic(text.as_ptr(), text.len() as i32) };
    core::arch::wasm32::unreachable()
}

/// The exports every plugin has: ABI version, allocator, describe. Used by the `export_*` macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __common_exports {
    ($describe:expr) => {
        #[no_mangle]
        pub extern "C" fn anbiq_abi_version() -> i32 {
            $crate::ABI_VERSION
        }

        #[no_mangle]
        pub extern "C" fn anbiq_alloc(size: i32, align: i32) -> i32 {
            $crate::__alloc_persistent(size as usize, align as usize) as i32
        }

        #[no_mangle]
        pub extern "C" fn anbiq_describe() -> i64 {
            let json: &'static str = $describe;
            ((json.as_ptr() as i64) << 32) | json.len() as i64
        }
    };
}

/// Exports a tensor-style loss `fn(student, teacher, labels) -> Tensor` with its describe JSON
/// (`"style": "tensor"`).
#[macro_export]
macro_rules! export_loss {
    ($loss:path, $describe:expr) => {
        $crate::__common_exports!($describe);

        #[no_mangle]
        pub extern "C" fn anbiq_loss(student: i32, teacher: i32, labels: i32) -> i32 {
            let _scope = $crate::call_scope();
            let f: fn($crate::Tensor, $crate::Tensor, $crate::Tensor) -> $crate::Tensor = $loss;
            f($crate::Tensor::from_raw(student), $crate::Tensor::from_raw(teacher), $crate::Tensor::from_raw(labels))
                .raw()
        }
    };
}

/// Exports a dense-style loss `fn(&DenseInput, grad: &mut [f32]) -> f32` with its describe JSON
/// (`"style": "dense"`). The function returns the loss and writes ∂loss/∂student (row-major, like the logits)
/// into every entry of `grad`.
#[macro_export]
macro_rules! export_dense_loss {
    ($loss:path, $describe:expr) => {
        $crate::__common_exports!($describe);

        #[no_mangle]
        pub unsafe extern "C" fn anbiq_loss_dense(
            student: *const f32,
            teacher: *const f32,
            labels: *const i64,
            batch: i32,
            classes: i32,
            grad: *mut f32,
        ) -> f32 {
            let _scope = $crate::call_scope();
            let (b, c) = (batch as usize, classes as usize);
            let input = $crate::DenseInput {
                student: core::slice::from_raw_parts(student, b * c),
                teacher: core::slice::from_raw_parts(teacher, b * c),
                labels: core::slice::from_raw_parts(labels, b),
                batch: b,
                classes: c,
            };
            let f: fn(&$crate::DenseInput, &mut [f32]) -> f32 = $loss;
            f(&input, core::slice::from_raw_parts_mut(grad, b * c))
        }
    };
}

#[doc(hidden)]
pub fn __alloc_persistent(size: usize, align: usize) -> usize {
    memory::alloc_persistent(size, align)
}

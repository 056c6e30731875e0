//! [`Tensor`]: a handle to a tensor that lives in the host (CPU or GPU), with operators. Every operation runs in
//! libtorch with autograd, so a loss built from them is differentiated by the host. Handles are valid for the
//! current call only.

use core::ops::{Add, Div, Mul, Neg, Sub};

use crate::sys;

/// How a loss reduces over elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Reduction {
    None = 0,
    Mean = 1,
    Sum = 2,
    /// Sum divided by the size of dimension 0 (the batch).
    BatchMean = 3,
}

/// A handle; `Copy`, valid until the current call returns.
#[derive(Clone, Copy, Debug)]
pub struct Tensor(i32);

impl Tensor {
    pub fn from_raw(handle: i32) -> Tensor {
        Tensor(handle)
    }

    pub fn raw(self) -> i32 {
        self.0
    }

    /// A 0-d f32 tensor on the inputs' device.
    pub fn scalar(v: f64) -> Tensor {
        Tensor(unsafe { sys::scalar(v) })
    }

    pub fn exp(self) -> Tensor {
        Tensor(unsafe { sys::exp(self.0) })
    }
    pub fn log(self) -> Tensor {
        Tensor(unsafe { sys::log(self.0) })
    }
    pub fn log1p(self) -> Tensor {
        Tensor(unsafe { sys::log1p(self.0) })
    }
    pub fn sqrt(self) -> Tensor {
        Tensor(unsafe { sys::sqrt(self.0) })
    }
    pub fn abs(self) -> Tensor {
        Tensor(unsafe { sys::abs(self.0) })
    }
    pub fn sigmoid(self) -> Tensor {
        Tensor(unsafe { sys::sigmoid(self.0) })
    }
    pub fn tanh(self) -> Tensor {
        Tensor(unsafe { sys::tanh(self.0) })
    }
    pub fn relu(self) -> Tensor {
        Tensor(unsafe { sys::relu(self.0) })
    }
    /// The same values, cut from the autograd graph.
    pub fn detach(self) -> Tensor {
        Tensor(unsafe { sys::detach(self.0) })
    }
    pub fn to_float(self) -> Tensor {
        Tensor(unsafe { sys::to_float(self.0) })
    }
    pub fn pow(self, e: f64) -> Tensor {
        Tensor(unsafe { sys::pow_scalar(self.0, e) })
    }
    pub fn pow_t(self, e: Tensor) -> Tensor {
        Tensor(unsafe { sys::pow(self.0, e.0) })
    }
    pub fn maximum(self, o: Tensor) -> Tensor {
        Tensor(unsafe { sys::maximum(self.0, o.0) })
    }
    pub fn minimum(self, o: Tensor) -> Tensor {
        Tensor(unsafe { sys::minimum(self.0, o.0) })
    }
    pub fn eq(self, o: Tensor) -> Tensor {
        Tensor(unsafe { sys::eq(self.0, o.0) })
    }
    pub fn gt(self, o: Tensor) -> Tensor {
        Tensor(unsafe { sys::gt(self.0, o.0) })
    }
    pub fn lt(self, o: Tensor) -> Tensor {
        Tensor(unsafe { sys::lt(self.0, o.0) })
    }
    /// `cond ? a : b`, elementwise (`cond` from `eq`/`gt`/`lt`).
    pub fn select(cond: Tensor, a: Tensor, b: Tensor) -> Tensor {
        Tensor(unsafe { sys::where_(cond.0, a.0, b.0) })
    }
    pub fn clamp(self, lo: f64, hi: f64) -> Tensor {
        Tensor(unsafe { sys::clamp(self.0, lo, hi) })
    }
    /// `s - self`.
    pub fn rsub(self, s: f64) -> Tensor {
        Tensor(unsafe { sys::rsub_scalar(self.0, s) })
    }
    /// `s / self`.
    pub fn rdiv(self, s: f64) -> Tensor {
        Tensor(unsafe { sys::rdiv_scalar(self.0, s) })
    }

    /// `softmax(self / temperature)` over the last dimension.
    pub fn softmax(self, temperature: f64) -> Tensor {
        Tensor(unsafe { sys::softmax(self.0, -1, temperature) })
    }
    /// `log_softmax(self / temperature)` over the last dimension.
    pub fn log_softmax(self, temperature: f64) -> Tensor {
        Tensor(unsafe { sys::log_softmax(self.0, -1, temperature) })
    }
    pub fn sum(self, dim: i32) -> Tensor {
        Tensor(unsafe { sys::sum(self.0, dim, 0) })
    }
    pub fn sum_keepdim(self, dim: i32) -> Tensor {
        Tensor(unsafe { sys::sum(self.0, dim, 1) })
    }
    pub fn mean(self, dim: i32) -> Tensor {
        Tensor(unsafe { sys::mean(self.0, dim, 0) })
    }
    pub fn amax(self, dim: i32) -> Tensor {
        Tensor(unsafe { sys::amax(self.0, dim, 0) })
    }
    pub fn logsumexp(self, dim: i32) -> Tensor {
        Tensor(unsafe { sys::logsumexp(self.0, dim, 0) })
    }
    pub fn argmax(self, dim: i32) -> Tensor {
        Tensor(unsafe { sys::argmax(self.0, dim, 0) })
    }
    pub fn sum_all(self) -> Tensor {
        Tensor(unsafe { sys::sum_all(self.0) })
    }
    pub fn mean_all(self) -> Tensor {
        Tensor(unsafe { sys::mean_all(self.0) })
    }
    pub fn unsqueeze(self, dim: i32) -> Tensor {
        Tensor(unsafe { sys::unsqueeze(self.0, dim) })
    }
    /// Labels → one-hot f32 rows.
    pub fn one_hot(self, classes: i64) -> Tensor {
        Tensor(unsafe { sys::one_hot(self.0, classes as i32) })
    }
    pub fn gather(self, dim: i32, index: Tensor) -> Tensor {
        Tensor(unsafe { sys::gather(self.0, dim, index.0) })
    }
    /// `Σ target·(log target − self)` with `self` = log q; `log_target` says whether `target` is log p.
    pub fn kl_div(self, target: Tensor, reduction: Reduction, log_target: bool) -> Tensor {
        Tensor(unsafe { sys::kl_div(self.0, target.0, reduction as i32, log_target as i32) })
    }
    /// Cross-entropy of logits against class indices (integer) or probabilities (float).
    pub fn cross_entropy(self, target: Tensor, reduction: Reduction) -> Tensor {
        Tensor(unsafe { sys::cross_entropy(self.0, target.0, reduction as i32) })
    }
    pub fn mse(self, target: Tensor, reduction: Reduction) -> Tensor {
        Tensor(unsafe { sys::mse(self.0, target.0, reduction as i32) })
    }

    pub fn ndim(self) -> usize {
        unsafe { sys::ndim(self.0) as usize }
    }
    pub fn numel(self) -> usize {
        unsafe { sys::numel(self.0) as usize }
    }
    pub fn size(self, dim: i32) -> i64 {
        unsafe { sys::size(self.0, dim) }
    }
    /// Releases the handle before the call ends (they are all released then anyway).
    pub fn free(self) {
        unsafe { sys::free(self.0) }
    }
    /// Copies a small tensor's values (as f32) into `out`; returns how many. Fails if it does not fit.
    pub fn read(self, out: &mut [f32]) -> usize {
        unsafe { sys::read(self.0, out.as_mut_ptr(), out.len() as i32) as usize }
    }
    /// The value of a one-element tensor.
    pub fn item(self) -> f32 {
        let mut v = [0f32; 1];
        self.read(&mut v);
        v[0]
    }
}

macro_rules! ops {
    ($trait:ident, $method:ident, $tensor_fn:ident, $scalar_fn:ident, $rev_scalar:expr) => {
        impl $trait for Tensor {
            type Output = Tensor;
            fn $method(self, o: Tensor) -> Tensor {
                Tensor(unsafe { sys::$tensor_fn(self.0, o.0) })
            }
        }
        impl $trait<f64> for Tensor {
            type Output = Tensor;
            fn $method(self, s: f64) -> Tensor {
                Tensor(unsafe { sys::$scalar_fn(self.0, s) })
            }
        }
        impl $trait<Tensor> for f64 {
            type Output = Tensor;
            fn $method(self, t: Tensor) -> Tensor {
                let f: fn(f64, Tensor) -> Tensor = $rev_scalar;
                f(self, t)
            }
        }
    };
}

ops!(Add, add, add, add_scalar, |s, t| t + s);
ops!(Sub, sub, sub, sub_scalar, |s, t| t.rsub(s));
ops!(Mul, mul, mul, mul_scalar, |s, t| t * s);
ops!(Div, div, div, div_scalar, |s, t| t.rdiv(s));

impl Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor(unsafe { sys::neg(self.0) })
    }
}

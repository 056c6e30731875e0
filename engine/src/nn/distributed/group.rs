//! A c10d process group (TCP store + Gloo) and DDP's Reducer, through `c10d_shim.cpp`.

use std::ffi::{c_char, CString};
use std::time::Duration;

use anyhow::{bail, Result};
use tch::Tensor;

use super::Rendezvous;

#[repr(C)]
struct RawGroup {
    _private: [u8; 0],
}

#[repr(C)]
struct RawReducer {
    _private: [u8; 0],
}

extern "C" {
    fn anbiq_group_new(
        host: *const c_char,
        port: i32,
        rank: i32,
        world: i32,
        timeout_ms: i64,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut RawGroup;
    fn anbiq_group_free(group: *mut RawGroup);
    fn anbiq_group_all_reduce_sum(
        group: *mut RawGroup,
        tensor: *mut torch_sys::C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn anbiq_group_broadcast(
        group: *mut RawGroup,
        tensors: *const *mut torch_sys::C_tensor,
        count: usize,
        root: i32,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn anbiq_reducer_new(
        group: *mut RawGroup,
        params: *const *mut torch_sys::C_tensor,
        count: usize,
        bucket_bytes: i64,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut RawReducer;
    fn anbiq_reducer_prepare(reducer: *mut RawReducer, err: *mut c_char, err_len: usize) -> i32;
    fn anbiq_reducer_free(reducer: *mut RawReducer);
}

/// Room for a C++ exception's message.
struct ErrorBuffer([u8; 1024]);

impl ErrorBuffer {
    fn new() -> Self {
        ErrorBuffer([0; 1024])
    }

    fn ptr(&mut self) -> (*mut c_char, usize) {
        (self.0.as_mut_ptr().cast(), self.0.len())
    }

    fn message(&self) -> String {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        let text = String::from_utf8_lossy(&self.0[..end]);
        // c10d's messages may run over several lines (a hint below the error); the first says what failed. Gloo's
        // start with the C++ source line that threw (`[…/pair.cc:538] Read error …`), which says nothing to a user.
        let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("unknown error");
        let first = match first.strip_prefix('[').and_then(|rest| rest.split_once("] ")) {
            Some((source, rest)) if source.contains(".cc:") || source.contains(".cpp:") => rest,
            _ => first,
        };
        first.to_string()
    }
}

/// This process's membership of a group of `world` ranks: collectives block until every rank has called them.
pub struct ProcessGroup {
    raw: *mut RawGroup,
    pub rank: usize,
    pub world: usize,
}

// SAFETY: c10d's process groups are used from any thread (DDP calls them from autograd's); the handle is only freed
// on drop.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

impl ProcessGroup {
    /// Joins the group described by `at`; every rank must call this within `timeout`, which then bounds every
    /// collective too (a dead or stuck rank fails the others instead of hanging them).
    pub fn join(at: &Rendezvous, timeout: Duration) -> Result<ProcessGroup> {
        let host = CString::new(at.host.as_str())?;
        let mut err = ErrorBuffer::new();
        let (e, n) = err.ptr();
        let timeout_ms = timeout.as_millis().min(i64::MAX as u128) as i64;
        // SAFETY: valid C strings and a writable error buffer of `n` bytes; the C++ side catches every exception.
        let raw = unsafe {
            anbiq_group_new(host.as_ptr(), at.port as i32, at.rank as i32, at.world as i32, timeout_ms, e, n)
        };
        if raw.is_null() {
            bail!(
                "rank {} of {} could not join the process group at {}:{}: {}",
                at.rank,
                at.world,
                at.host,
                at.port,
                err.message()
            );
        }
        Ok(ProcessGroup { raw, rank: at.rank, world: at.world })
    }

    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// Sums `values` over all ranks (in f64).
    pub fn all_sum(&self, values: &[f64]) -> Result<Vec<f64>> {
        let t = Tensor::from_slice(values);
        self.all_reduce_sum(&t)?;
        Ok(Vec::<f64>::try_from(&t)?)
    }

    /// Sums a tensor over all ranks, in place.
    pub fn all_reduce_sum(&self, tensor: &Tensor) -> Result<()> {
        let mut t = tensor.shallow_clone();
        let mut err = ErrorBuffer::new();
        let (e, n) = err.ptr();
        // SAFETY: as above; the all-reduce writes into the tensor's storage, which `tensor` shares.
        if unsafe { anbiq_group_all_reduce_sum(self.raw, t.as_mut_ptr(), e, n) } != 0 {
            bail!("all-reduce across {} ranks failed on rank {}: {}", self.world, self.rank, err.message());
        }
        Ok(())
    }

    /// Overwrites every tensor with rank 0's (in place, through shared storage).
    pub fn broadcast_from_root(&self, tensors: &[Tensor]) -> Result<()> {
        let mut handles: Vec<Tensor> = tensors.iter().map(Tensor::shallow_clone).collect();
        let ptrs: Vec<*mut torch_sys::C_tensor> = handles.iter_mut().map(|t| t.as_mut_ptr()).collect();
        let mut err = ErrorBuffer::new();
        let (e, n) = err.ptr();
        // SAFETY: `ptrs` point at the live tensors in `handles`; the C++ side catches every exception.
        if unsafe { anbiq_group_broadcast(self.raw, ptrs.as_ptr(), ptrs.len(), 0, e, n) } != 0 {
            bail!("broadcast from rank 0 failed on rank {}: {}", self.rank, err.message());
        }
        Ok(())
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: created by anbiq_group_new, freed once.
        unsafe { anbiq_group_free(self.raw) }
    }
}

/// DDP's Reducer over a set of parameters of a [`ProcessGroup`] (which must outlive it).
pub struct Reducer {
    raw: *mut RawReducer,
    /// The parameters it hooks, kept alive with it.
    _params: Vec<Tensor>,
}

// SAFETY: as for ProcessGroup.
unsafe impl Send for Reducer {}

impl Reducer {
    pub fn new(group: &ProcessGroup, params: &[Tensor], bucket_bytes: i64) -> Result<Reducer> {
        let mut handles: Vec<Tensor> = params.iter().map(Tensor::shallow_clone).collect();
        let ptrs: Vec<*mut torch_sys::C_tensor> = handles.iter_mut().map(|t| t.as_mut_ptr()).collect();
        let mut err = ErrorBuffer::new();
        let (e, n) = err.ptr();
        // SAFETY: live tensors and group; the C++ side copies the tensor handles and catches every exception.
        let raw = unsafe { anbiq_reducer_new(group.raw, ptrs.as_ptr(), ptrs.len(), bucket_bytes, e, n) };
        if raw.is_null() {
            bail!("creating the gradient reducer failed: {}", err.message());
        }
        Ok(Reducer { raw, _params: handles })
    }

    /// Arms the hooks for the next backward pass.
    pub fn prepare(&mut self) -> Result<()> {
        let mut err = ErrorBuffer::new();
        let (e, n) = err.ptr();
        // SAFETY: a live reducer; the C++ side catches every exception.
        if unsafe { anbiq_reducer_prepare(self.raw, e, n) } != 0 {
            bail!("preparing the gradient reducer failed: {}", err.message());
        }
        Ok(())
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        // SAFETY: created by anbiq_reducer_new, freed once.
        unsafe { anbiq_reducer_free(self.raw) }
    }
}

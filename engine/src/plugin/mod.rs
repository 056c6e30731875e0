//! WebAssembly plugins: custom losses that run sandboxed in wasmtime.
//!
//! A plugin is a core wasm module speaking the versioned ABI of `plugins/ABI.md`. It exports `memory`,
//! `anbiq_abi_version`, `anbiq_alloc`, `anbiq_describe` (JSON: name, kind, call style, parameters) and one loss
//! function in either style:
//! - **tensor** (`tensor.rs`): `anbiq_loss(student, teacher, labels) -> handle`; the guest composes host functions
//!   (`imports.rs`) that libtorch runs natively with autograd, on whatever device the tensors live. Costs a few
//!   microseconds over the same loss written in Rust.
//! - **dense** (`dense.rs`): `anbiq_loss_dense(...) -> f32`; any math at all, on f32 copies in guest memory, returning
//!   the loss and writing its gradient, which the host injects into autograd.
//!
//! The sandbox (`sandbox.rs`): only `anbiq::*` imports link (WASI and everything else is refused at load, by name);
//! fuel per call (deterministic), an epoch deadline (wall clock), a memory cap, bounded tables, one instance and
//! one memory per store, a bounded wasm stack. Every failure becomes a [`PluginError`] naming the plugin, the call
//! and the cause; after any failure the next call gets a fresh instance (`runner.rs`).
//!
//! Loading (`load.rs`) compiles once per process per file content and checks imports, exports, the ABI version and
//! the describe JSON (`describe.rs`); the `plugin` loss term (`crate::loss`) binds YAML parameters against it.

mod dense;
mod describe;
mod error;
pub mod gradient;
mod handles;
mod imports;
mod load;
mod runner;
mod sandbox;
mod tensor;

pub use describe::{Describe, Inputs, ParamSpec, ParamType, Style};
pub use error::{ErrorKind, PluginError};
pub use imports::MAX_READ;
pub use load::{load, load_bytes, load_with, Plugin, ABI_VERSION, MIN_ABI_VERSION};
pub use runner::{CallInput, Runner};
pub use sandbox::{Limits, EPOCH_TICK, MAX_TABLE_ELEMENTS, MAX_WASM_STACK};

/// The names of the host functions in module `anbiq` (ABI version [`ABI_VERSION`]).
pub fn host_functions() -> &'static [&'static str] {
    &imports::linker().1
}

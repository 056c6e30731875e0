//! Plugin errors: every failure names the plugin, the call and the cause, in words a plugin author can act on.

use std::fmt;

use wasmtime::Trap;

use super::handles::HostError;
use super::sandbox::Limits;

/// What went wrong, for callers (and tests) that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file cannot be read.
    Io,
    /// Not a valid WebAssembly module.
    Invalid,
    /// Imports something other than the `anbiq` host functions (WASI, say).
    ForbiddenImport,
    /// A required export is missing or has the wrong type.
    MissingExport,
    /// `anbiq_abi_version` returned a version this host does not speak.
    AbiVersion,
    /// `anbiq_describe` is malformed or contradicts the module.
    Describe,
    /// The parameters given do not match what `describe` declares.
    Params,
    /// Creating the instance failed (a memory or table larger than allowed, …).
    Instantiate,
    OutOfFuel,
    Timeout,
    StackOverflow,
    /// The plugin needed more memory than its cap.
    MemoryLimit,
    /// Any other trap (`unreachable`, out-of-bounds access, division by zero, …).
    Trap,
    /// A host function refused its arguments (bad handle, incompatible shapes, …).
    HostCall,
    /// The call returned something unusable: NaN or infinite loss or gradient, not a scalar, ….
    BadResult,
}

#[derive(Debug)]
pub struct PluginError {
    /// The plugin's name and file, e.g. "`kd` (plugins/build/kd.wasm)".
    pub plugin: String,
    /// The exported function or phase, e.g. `anbiq_loss`.
    pub call: String,
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {}, {}: {}", self.plugin, self.call, self.message)
    }
}

impl std::error::Error for PluginError {}

impl PluginError {
    pub fn new(plugin: &str, call: &str, kind: ErrorKind, message: impl Into<String>) -> Self {
        PluginError { plugin: plugin.to_string(), call: call.to_string(), kind, message: message.into() }
    }

    /// Classifies an error from calling into (or instantiating) a plugin.
    pub fn from_wasm(plugin: &str, call: &str, limits: &Limits, e: wasmtime::Error) -> Self {
        let (kind, message) = classify(limits, &e);
        PluginError::new(plugin, call, kind, message)
    }
}

fn classify(limits: &Limits, e: &wasmtime::Error) -> (ErrorKind, String) {
    let out_of_fuel = || {
        (
            ErrorKind::OutOfFuel,
            format!(
                "ran out of fuel: a call may use {} units (about one per wasm instruction); raise `limits.fuel` if \
                 the plugin is meant to work this hard",
                limits.fuel
            ),
        )
    };
    if let Some(h) = e.downcast_ref::<HostError>() {
        if h.out_of_fuel {
            return out_of_fuel();
        }
        if h.import == "panic" {
            return (ErrorKind::Trap, format!("panicked: {}", h.message));
        }
        return (ErrorKind::HostCall, h.to_string());
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => out_of_fuel(),
            Trap::Interrupt => (
                ErrorKind::Timeout,
                format!("timed out: a call may run {} ms (`limits.timeout_ms`)", limits.timeout_ms),
            ),
            Trap::StackOverflow => (
                ErrorKind::StackOverflow,
                format!("exhausted its {} KiB stack (runaway recursion?)", super::sandbox::MAX_WASM_STACK / 1024),
            ),
            Trap::MemoryOutOfBounds => (
                ErrorKind::Trap,
                format!(
                    "trapped: {trap} (a pointer past the module's memory — or, in C, locals beyond clang's 64 KiB \
                     shadow stack: build with `-Wl,--stack-first -Wl,-z,stack-size=1048576`, plugins/ABI.md)"
                ),
            ),
            other => (ErrorKind::Trap, format!("trapped: {other}")),
        };
    }
    let text = format!("{e:#}");
    if text.contains("growing memory") || text.contains("exceeds memory limits") {
        return (
            ErrorKind::MemoryLimit,
            format!("needed more memory than its cap of {} MiB ({text}; raise `limits.memory_mib`)", limits.memory_mib),
        );
    }
    if text.contains("growing table") || text.contains("exceeds table limits") {
        return (
            ErrorKind::Instantiate,
            format!("its table exceeds {} elements ({text})", super::sandbox::MAX_TABLE_ELEMENTS),
        );
    }
    (ErrorKind::Trap, text)
}

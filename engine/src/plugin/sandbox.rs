//! The sandbox: one wasmtime engine for the process (fuel, epoch interruption, a bounded wasm stack, deterministic
//! floating point), a ticker thread for wall-clock deadlines, and per-store resource limits.

use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};

use super::handles::HostState;

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// The most wasm stack a plugin may use (deep recursion traps with "call stack exhausted").
pub const MAX_WASM_STACK: usize = 512 * 1024;
/// Table elements a plugin may declare or grow to (a `funcref` table of a normal program has a few hundred).
pub const MAX_TABLE_ELEMENTS: usize = 10_000;

/// Per-call limits, settable per loss term (`limits: {fuel: ..., memory_mib: ..., timeout_ms: ...}`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Fuel per call: about one unit per wasm instruction, plus a charge per host operation proportional to the
    /// elements it produces. Deterministic: the same call always uses the same fuel.
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    /// Linear memory cap, MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Wall-clock deadline per call, milliseconds (a safety net behind fuel; host operations are not interrupted).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

pub fn default_fuel() -> u64 {
    4_000_000_000
}

fn default_memory_mib() -> u64 {
    64
}

fn default_timeout_ms() -> u64 {
    30_000
}

impl Default for Limits {
    fn default() -> Self {
        Limits { fuel: default_fuel(), memory_mib: default_memory_mib(), timeout_ms: default_timeout_ms() }
    }
}

impl Limits {
    /// Problems as (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.fuel == 0 {
            return Err(("fuel".into(), "must be positive".into()));
        }
        if !(1..=4096).contains(&self.memory_mib) {
            return Err(("memory_mib".into(), format!("must be in 1..=4096, got {}", self.memory_mib)));
        }
        if self.timeout_ms == 0 {
            return Err(("timeout_ms".into(), "must be positive".into()));
        }
        Ok(())
    }

    pub(crate) fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size((self.memory_mib * 1024 * 1024) as usize)
            .table_elements(MAX_TABLE_ELEMENTS)
            .instances(1)
            .tables(4)
            .memories(1)
            .trap_on_grow_failure(true)
            .build()
    }

    /// Epoch ticks to allow a call.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        (self.timeout_ms / EPOCH_TICK.as_millis() as u64).max(1) + 1
    }
}

/// The process's wasmtime engine; the first use starts the epoch ticker.
pub(crate) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            // Bit-identical results everywhere: canonical NaNs, no relaxed SIMD (threads need a feature this build lacks).
            .cranelift_nan_canonicalization(true)
            .wasm_relaxed_simd(false)
            .wasm_backtrace_max_frames(None);
        let engine = Engine::new(&config).expect("the plugin sandbox's wasmtime configuration is valid");
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("anbiq-plugin-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(EPOCH_TICK);
                ticker.increment_epoch();
            })
            .expect("spawning the plugin epoch ticker");
        engine
    })
}

/// A store with the limits applied, no fuel yet and an epoch deadline that traps.
pub(crate) fn new_store(limits: &Limits, state: HostState) -> Store<HostState> {
    let mut store = Store::new(engine(), state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(limits.deadline_ticks());
    store
}

/// Arms a store for one call: fresh fuel and deadline.
pub(crate) fn arm(store: &mut Store<HostState>, limits: &Limits) {
    // Fuel is enabled on the engine, so setting it cannot fail.
    let _ = store.set_fuel(limits.fuel);
    store.set_epoch_deadline(limits.deadline_ticks());
}

/// Fuel used since [`arm`].
pub(crate) fn fuel_used(store: &Store<HostState>, limits: &Limits) -> u64 {
    limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0))
}

//! The host side of a store: the per-call handle table that maps the guest's `i32` handles to libtorch tensors,
//! the bound parameters, and the error a host function reports.

use std::fmt;
use std::sync::Arc;

use tch::{Device, Tensor};
use wasmtime::StoreLimits;

/// Live handles a call may hold at once.
pub const MAX_HANDLES: usize = 1 << 16;
/// Elements a call may create in total: at least this many …
pub const MIN_ELEMENT_BUDGET: u64 = 1 << 26;
/// … or this many times its inputs' elements.
pub const ELEMENT_BUDGET_FACTOR: u64 = 64;

/// An error raised by a host function (a bad handle, a shape libtorch refuses, …); it traps the guest.
#[derive(Debug)]
pub struct HostError {
    /// The import, e.g. `kl_div`.
    pub import: &'static str,
    pub message: String,
    /// The host charged fuel for an operation and the call had too little left.
    pub out_of_fuel: bool,
}

impl HostError {
    pub fn new(import: &'static str, message: impl Into<String>) -> Self {
        HostError { import, message: message.into(), out_of_fuel: false }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host function `anbiq::{}`: {}", self.import, self.message)
    }
}

impl std::error::Error for HostError {}

/// A store's data.
pub struct HostState {
    pub limits: StoreLimits,
    pub handles: Handles,
    /// Bound parameter values (declared by `describe`, given in YAML or defaulted), by name.
    pub params: Arc<Vec<(String, f64)>>,
    pub progress: f64,
    /// T of this call's `[B, T, V]` sequence logits; 1 for classifiers.
    pub seq_len: i64,
    /// The plugin's name, for `log`.
    pub plugin: Arc<str>,
    /// `log` lines left this call.
    pub log_budget: u32,
}

impl HostState {
    pub fn new(limits: StoreLimits, params: Arc<Vec<(String, f64)>>, plugin: Arc<str>) -> Self {
        HostState { limits, handles: Handles::default(), params, progress: 0.0, seq_len: 1, plugin, log_budget: 0 }
    }
}

/// Tensors the guest may name during one call. Handles are 1-based indices (0 is never valid), checked on every
/// use; everything is dropped when the call ends.
#[derive(Default)]
pub struct Handles {
    slots: Vec<Option<Tensor>>,
    /// Freed slots, reused first.
    free: Vec<usize>,
    /// Whether a tensor-style call is in progress (outside one, tensor imports fail).
    pub active: bool,
    pub device: Option<Device>,
    created: u64,
    budget: u64,
}

impl Handles {
    /// Starts a call with its inputs as handles 1, 2, 3, ….
    pub fn begin(&mut self, inputs: &[&Tensor]) -> Vec<i32> {
        self.clear();
        self.active = true;
        self.device = inputs.first().map(|t| t.device());
        let elements: u64 = inputs.iter().map(|t| t.numel() as u64).sum();
        self.budget = MIN_ELEMENT_BUDGET.max(elements.saturating_mul(ELEMENT_BUDGET_FACTOR));
        inputs.iter().map(|t| self.insert(t.shallow_clone())).collect()
    }

    /// Drops every tensor of the call.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
        self.active = false;
        self.created = 0;
    }

    fn insert(&mut self, t: Tensor) -> i32 {
        self.slots.push(Some(t));
        self.slots.len() as i32
    }

    pub fn get(&self, import: &'static str, h: i32) -> Result<&Tensor, HostError> {
        if !self.active {
            return Err(HostError::new(import, "tensor functions are available only inside `anbiq_loss`"));
        }
        let slot = usize::try_from(h).ok().and_then(|i| i.checked_sub(1)).and_then(|i| self.slots.get(i));
        match slot {
            Some(Some(t)) => Ok(t),
            Some(None) => Err(HostError::new(import, format!("handle {h} was freed"))),
            None => {
                Err(HostError::new(import, format!("bad handle {h} ({} handles exist in this call)", self.slots.len())))
            }
        }
    }

    /// Refuses, before running it, an operation whose result would take the call over its element budget (a
    /// broadcast of `[B, C, 1]` against `[B, 1, C]`, a one-hot with a billion classes, …).
    pub fn reserve(&self, import: &'static str, elements: u64) -> Result<(), HostError> {
        if self.created.saturating_add(elements) > self.budget {
            return Err(HostError::new(
                import,
                format!(
                    "the result would have {elements} elements, over the call's budget of {} (64× its inputs)",
                    self.budget
                ),
            ));
        }
        Ok(())
    }

    /// Adds an operation's result, within the call's handle and element budgets.
    pub fn put(&mut self, import: &'static str, t: Tensor) -> Result<i32, HostError> {
        self.created += t.numel() as u64;
        if self.created > self.budget {
            return Err(HostError::new(
                import,
                format!("the call created more than {} tensor elements (64× its inputs)", self.budget),
            ));
        }
        if let Some(i) = self.free.pop() {
            self.slots[i] = Some(t);
            return Ok(i as i32 + 1);
        }
        if self.slots.len() >= MAX_HANDLES {
            return Err(HostError::new(import, format!("more than {MAX_HANDLES} live handles; `free` some")));
        }
        Ok(self.insert(t))
    }

    pub fn free(&mut self, import: &'static str, h: i32) -> Result<(), HostError> {
        self.take(import, h).map(drop)
    }

    /// Takes the result of a call out of the table.
    pub fn take(&mut self, import: &'static str, h: i32) -> Result<Tensor, HostError> {
        self.get(import, h)?;
        self.free.push(h as usize - 1);
        Ok(self.slots[h as usize - 1].take().expect("checked above"))
    }
}

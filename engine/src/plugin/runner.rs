//! Running a loaded plugin: one live instance, reused while calls succeed and replaced by a fresh one (through
//! `InstancePre`, microseconds) after any failure, so a trap can never leave half-updated guest state behind.

use std::collections::BTreeMap;
use std::sync::Arc;

use tch::Tensor;
use wasmtime::{Memory, Store, TypedFunc};

use super::describe::Style;
use super::error::{ErrorKind, PluginError};
use super::handles::HostState;
use super::load::Plugin;
use super::sandbox::{arm, fuel_used, new_store, Limits};
use super::{dense, tensor};

/// `log` lines a call may print.
const LOG_LINES_PER_CALL: u32 = 16;

/// A plugin bound to parameters and limits, ready to be called.
pub struct Runner {
    plugin: Arc<Plugin>,
    params: Arc<Vec<(String, f64)>>,
    limits: Limits,
    live: Option<Live>,
    /// Fuel the last call used.
    pub last_fuel: u64,
}

/// `anbiq_loss_dense(student, teacher, labels, batch, classes, grad) -> loss`.
pub(crate) type DenseFn = TypedFunc<(i32, i32, i32, i32, i32, i32), f32>;

pub(crate) struct Live {
    pub store: Store<HostState>,
    pub memory: Memory,
    pub alloc: TypedFunc<(i32, i32), i32>,
    pub tensor: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub dense: Option<DenseFn>,
    pub buffers: Option<dense::Buffers>,
}

/// One call's inputs: logits `[B, C]` and labels `[B]`, or sequence logits `[B, T, V]` and labels `[B, T]`.
pub struct CallInput<'a> {
    pub student: &'a Tensor,
    pub teacher: &'a Tensor,
    pub labels: &'a Tensor,
    pub progress: f64,
}

impl Runner {
    /// Binds `params` (checked against the plugin's describe).
    pub fn new(
        plugin: Arc<Plugin>,
        params: &BTreeMap<String, serde_json::Value>,
        limits: Limits,
    ) -> Result<Runner, PluginError> {
        let bound = plugin.describe.bind(params).map_err(|(name, message)| {
            let call = if name.is_empty() { "params".to_string() } else { format!("parameter `{name}`") };
            PluginError::new(&plugin.label, &call, ErrorKind::Params, message)
        })?;
        Ok(Runner { plugin, params: Arc::new(bound), limits, live: None, last_fuel: 0 })
    }

    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn instantiate(&self) -> Result<Live, PluginError> {
        let label = &self.plugin.label;
        let state =
            HostState::new(self.limits.store_limits(), self.params.clone(), self.plugin.describe.name.as_str().into());
        let mut store = new_store(&self.limits, state);
        arm(&mut store, &self.limits);
        let instance = self
            .plugin
            .pre
            .instantiate(&mut store)
            .map_err(|e| PluginError::from_wasm(label, "instantiate", &self.limits, e))?;
        let missing = |what: &str| PluginError::new(label, "instantiate", ErrorKind::MissingExport, what.to_string());
        let memory = instance.get_memory(&mut store, "memory").ok_or_else(|| missing("no `memory`"))?;
        let alloc = instance.get_typed_func(&mut store, "anbiq_alloc").map_err(|_| missing("no `anbiq_alloc`"))?;
        let (mut tensor, mut dense) = (None, None);
        match self.plugin.describe.style {
            Style::Tensor => {
                tensor =
                    Some(instance.get_typed_func(&mut store, "anbiq_loss").map_err(|_| missing("no `anbiq_loss`"))?)
            }
            Style::Dense => {
                dense = Some(
                    instance
                        .get_typed_func(&mut store, "anbiq_loss_dense")
                        .map_err(|_| missing("no `anbiq_loss_dense`"))?,
                )
            }
        }
        Ok(Live { store, memory, alloc, tensor, dense, buffers: None })
    }

    /// Computes the loss for one batch; differentiable with respect to `input.student`.
    pub fn loss(&mut self, input: &CallInput) -> Result<Tensor, PluginError> {
        let mut live = match self.live.take() {
            Some(live) => live,
            None => self.instantiate()?,
        };
        let state = live.store.data_mut();
        state.progress = input.progress;
        state.seq_len = if input.student.dim() == 3 { input.student.size()[1] } else { 1 };
        state.log_budget = LOG_LINES_PER_CALL;
        arm(&mut live.store, &self.limits);
        let label = &self.plugin.label;
        let result = match self.plugin.describe.style {
            Style::Tensor => tensor::call(&mut live, label, &self.limits, input),
            Style::Dense => dense::call(&mut live, label, &self.limits, input),
        };
        self.last_fuel = fuel_used(&live.store, &self.limits);
        live.store.data_mut().handles.clear();
        if result.is_ok() {
            self.live = Some(live);
        }
        result
    }
}

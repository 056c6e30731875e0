//! Where a model's weights come from, as candle's `VarBuilder`: layers ask for each tensor by name and shape, and
//! get it either freshly initialised from anbiq's seeded generator or moved out of a loaded file — so a model
//! built from a checkpoint never draws random weights first, and its weights are held once.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _, Result};
use tch::{nn, Device, Kind, Tensor};

use crate::nn::layers::init::normal;
use crate::rng::Rng;

/// Where a model's weights come from.
pub enum WeightSource<'a> {
    /// Seeded initialisation.
    Init(&'a mut Rng),
    /// Tensors by Hugging Face key; each is moved into the model as it is registered (so the source and the model
    /// never both hold all of them), and a missing key or a wrong shape is an error naming the key. f32 and bf16
    /// tensors keep their type; others become f32.
    Load(&'a mut BTreeMap<String, Tensor>),
}

/// How a fresh tensor starts.
#[derive(Clone, Copy)]
pub enum Init {
    Normal,
    Ones,
    Zeros,
}

impl WeightSource<'_> {
    /// The tensor `name` under `vs`: drawn (`init`) or loaded (and checked to have `shape`), registered trainable.
    pub fn tensor(&mut self, vs: &nn::Path, name: &str, shape: &[i64], init: Init) -> Result<Tensor> {
        match self {
            WeightSource::Init(rng) => {
                let value = match init {
                    Init::Normal => normal(shape, 0.02, rng),
                    Init::Ones => Tensor::ones(shape, (Kind::Float, Device::Cpu)),
                    Init::Zeros => Tensor::zeros(shape, (Kind::Float, Device::Cpu)),
                };
                Ok(vs.var_copy(name, &value))
            }
            WeightSource::Load(tensors) => {
                let key = vs.path(name);
                let t = tensors.remove(&key).with_context(|| format!("weight `{key}` is missing"))?;
                if t.size() != shape {
                    bail!("weight `{key}` has shape {:?}, the config needs {shape:?}", t.size());
                }
                // Registered as it is when it already is f32 (or bf16: a teacher held at half the memory) on the right
                // device, so the weights are held once.
                let t = if matches!(t.kind(), Kind::Float | Kind::BFloat16) { t } else { t.to_kind(Kind::Float) };
                let t = if t.device() == vs.device() { t } else { t.to_device(vs.device()) };
                Ok(vs.add(name, t, true))
            }
        }
    }
}

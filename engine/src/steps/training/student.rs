//! Where a training step's model starts: a fresh, seeded initialisation of `model`, or the weights of another step's
//! model (`init: STEP` — a pruned teacher, an earlier student), with `model` then optional and, if given, required
//! to be that model's architecture.

use anyhow::{bail, Context as _, Result};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::artifact::model::{copy_weights, ModelArtifact, WEIGHTS_FILE};
use crate::data::DatasetMeta;
use crate::nn::arch::bert::{BertConfig, DenseActivation, DenseHead};
use crate::nn::layers::init::normal;
use crate::nn::{arch, ArchConfig, Model};
use crate::rng::Rng;
use crate::steps::ResolvedInput;

/// Parse-time problems of `model` and `init`: one of them is needed, and `model` must be a valid architecture.
pub fn check_start(model: Option<&ArchConfig>, init: Option<&crate::steps::StepRef>) -> Vec<(String, String)> {
    match (model, init) {
        (None, None) => {
            vec![("model".into(), "needs `model` (an architecture) or `init` (a model step to start from)".into())]
        }
        (Some(model), _) => {
            model.validate().err().map(|e| crate::steps::field_problem("model", e)).into_iter().collect()
        }
        (None, Some(_)) => Vec::new(),
    }
}

/// How many outputs a model of `config` trained on data of `meta` gives: the data's classes (the vocabulary, for
/// text), or for sentences the encoder's embedding width (and sentences need an encoder).
pub fn outputs(config: &ArchConfig, meta: &DatasetMeta, field: &str) -> Result<i64> {
    match (meta.sentence_padding().is_some(), config.embedding_size()) {
        (true, Some(width)) => Ok(width),
        (true, None) => bail!("field `{field}`: sentences train a sentence encoder (`bert`), not `{}`", config.name()),
        (false, Some(_)) => {
            bail!("field `{field}`: a `{}` encoder trains on `source: sentences` data", config.name())
        }
        (false, None) => Ok(meta.classes),
    }
}

/// The model a training step trains, registered (trainable, f32) in `vs`, and its architecture. With `dense_head`,
/// a sentence encoder gains a final dense layer to that width ([`with_dense_head`]), drawn fresh from `rng`.
pub fn build_student(
    model: Option<&ArchConfig>,
    init: Option<&ResolvedInput>,
    meta: &DatasetMeta,
    (vs, rng): (&VarStore, &mut Rng),
    dense_head: Option<i64>,
) -> Result<(ArchConfig, Box<dyn Model>)> {
    let Some(init) = init else {
        let config = model.context("`model` is checked at parse time when there is no `init`")?;
        let config = match dense_head {
            Some(width) => ArchConfig::Bert(with_dense_head(config, width)?),
            None => config.clone(),
        };
        let classes = outputs(&config, meta, "model")?;
        let built = arch::build(&config, &vs.root(), &meta.sample_shape, classes, rng)
            .map_err(|e| anyhow::anyhow!("field `model`: {e:#}"))?;
        return Ok((config, built));
    };
    let spec = ModelArtifact::spec(&init.dir)?;
    let Some(config) = spec.arch.clone() else {
        bail!("field `init`: `{}` is a TorchScript module, whose weights anbiq cannot train", init.label);
    };
    if let Some(given) = model {
        if *given != config {
            bail!(
                "field `model`: differs from the architecture of `init` (`{}`: {}); leave `model` out to take it from `init`",
                init.label,
                serde_json::to_string(&config).unwrap_or_default()
            );
        }
    }
    if spec.classes != outputs(&config, meta, "init")? || spec.input_shape != meta.sample_shape {
        bail!(
            "field `init`: `{}` takes {:?} and gives {} outputs; the data has samples {:?} and {} classes",
            init.label,
            spec.input_shape,
            spec.classes,
            meta.sample_shape,
            meta.classes
        );
    }
    spec.check_classes(meta).map_err(|e| anyhow::anyhow!("field `init`: `{}`: {e}", init.label))?;
    // Trained in f32 whatever the model was held in (a bf16 teacher pruned into a student).
    let mut weights = crate::nn::weights::safetensors::read(&init.dir.join(WEIGHTS_FILE))?;
    for tensor in weights.values_mut() {
        if tensor.kind() != Kind::Float && tensor.is_floating_point() {
            *tensor = tensor.to_kind(Kind::Float);
        }
    }
    let (config, classes) = match dense_head {
        Some(width) => {
            let bert = with_dense_head(&config, width)?;
            weights.insert(DENSE_WEIGHT.into(), normal(&[width, bert.hidden_size], 0.02, rng));
            weights.insert(DENSE_BIAS.into(), Tensor::zeros([width], (Kind::Float, Device::Cpu)));
            (ArchConfig::Bert(bert), width)
        }
        None => (config, spec.classes),
    };
    let built = match arch::from_weights(&config, &vs.root(), classes, &mut weights)? {
        Some(built) => {
            if !weights.is_empty() {
                bail!("field `init`: weights without a place in the model: {:?}", weights.keys().collect::<Vec<_>>());
            }
            built
        }
        None => {
            let built = arch::build(&config, &vs.root(), &spec.input_shape, classes, rng)?;
            copy_weights(vs, &weights).map_err(|e| anyhow::anyhow!("field `init`: {e:#}"))?;
            built
        }
    };
    Ok((config, built))
}

const DENSE_WEIGHT: &str = "dense.linear.weight";
const DENSE_BIAS: &str = "dense.linear.bias";

/// A sentence encoder `config` with a final dense layer (with bias) to `width` dimensions, before its `normalize`
/// as sentence-transformers orders Pooling, Dense, Normalize: `distill`'s `projection: keep`.
pub fn with_dense_head(config: &ArchConfig, width: i64) -> Result<BertConfig> {
    let ArchConfig::Bert(bert) = config else {
        bail!("field `projection`: applies to a sentence encoder (`bert`) student, not `{}`", config.name());
    };
    if let Some(dense) = &bert.dense {
        bail!(
            "field `projection`: the student already ends in a dense layer (to {} dimensions, from `prune`'s `pca`?); \
             `keep` adds one",
            dense.out_features
        );
    }
    let dense =
        DenseHead { out_features: width, bias: true, activation: DenseActivation::Identity, before_normalize: true };
    Ok(BertConfig { dense: Some(dense), ..bert.clone() })
}

//! Model architectures, chosen by name in YAML (`model: {arch: mlp, hidden: [256]}`), and their registry.
//!
//! Adding an architecture: write its config + model in one file implementing [`Architecture`], then add one variant
//! to [`ArchConfig`] and one arm to [`ArchConfig::architecture`].

mod activation;
pub mod bert;
pub mod cnn;
pub mod gpt;
pub mod llama;
pub mod mlp;

pub use activation::Activation;
pub use bert::BertConfig;
pub use cnn::CnnConfig;
pub use gpt::GptConfig;
pub use llama::LlamaConfig;
pub use mlp::MlpConfig;

use crate::nn::Model;
use crate::rng::Rng;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::nn;

/// What each architecture's config provides.
pub trait Architecture {
    /// The `arch:` tag in YAML.
    fn name(&self) -> &'static str;
    /// Checks the values serde cannot (positivity, ranges); messages start with the field path, e.g. `model.hidden[1]`.
    fn validate(&self) -> Result<(), String>;
    /// Registers the parameters under `vs` (initialised from `rng`) and returns the model.
    fn build(&self, vs: &nn::Path, input_shape: &[i64], classes: i64, rng: &mut Rng) -> Result<Box<dyn Model>>;
}

/// An architecture config, internally tagged by `arch`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(tag = "arch", rename_all = "snake_case", deny_unknown_fields)]
pub enum ArchConfig {
    Mlp(MlpConfig),
    Cnn(CnnConfig),
    Gpt(GptConfig),
    Llama(LlamaConfig),
    Bert(BertConfig),
}

impl ArchConfig {
    /// The registry: the one place that maps a config variant to its implementation.
    pub fn architecture(&self) -> &dyn Architecture {
        match self {
            ArchConfig::Mlp(c) => c,
            ArchConfig::Cnn(c) => c,
            ArchConfig::Gpt(c) => c,
            ArchConfig::Llama(c) => c,
            ArchConfig::Bert(c) => c,
        }
    }

    pub fn name(&self) -> &'static str {
        self.architecture().name()
    }

    pub fn validate(&self) -> Result<(), String> {
        self.architecture().validate()
    }

    /// A sentence encoder's embedding width (its outputs whatever the data's classes); `None` for the others.
    pub fn embedding_size(&self) -> Option<i64> {
        match self {
            ArchConfig::Bert(c) => Some(c.output_size()),
            _ => None,
        }
    }
}

/// Validates `config` and builds it under `vs`; `input_shape` excludes the batch dimension.
pub fn build(
    config: &ArchConfig,
    vs: &nn::Path,
    input_shape: &[i64],
    classes: i64,
    rng: &mut Rng,
) -> Result<Box<dyn Model>> {
    config.validate().map_err(anyhow::Error::msg)?;
    anyhow::ensure!(classes >= 1, "{}: classes must be positive, got {classes}", config.name());
    anyhow::ensure!(
        !input_shape.is_empty() && input_shape.iter().all(|&d| d > 0),
        "{}: input shape must be non-empty with positive sizes, got {input_shape:?}",
        config.name()
    );
    config.architecture().build(vs, input_shape, classes, rng)
}

/// Builds a pretrained architecture (llama, bert) straight from its weights by Hugging Face key, moving each tensor
/// out of `weights` (no random initialisation, one copy); `None` for the architectures anbiq only trains itself
/// (their weights are copied into a built model instead). Tensors left in `weights` have no place in the model.
pub fn from_weights(
    config: &ArchConfig,
    vs: &nn::Path,
    classes: i64,
    weights: &mut std::collections::BTreeMap<String, tch::Tensor>,
) -> Result<Option<Box<dyn Model>>> {
    let source = &mut crate::nn::weights::source::WeightSource::Load(weights);
    Ok(match config {
        ArchConfig::Llama(c) => Some(Box::new(llama::Llama::new(c, vs, classes, source)?)),
        ArchConfig::Bert(c) => Some(Box::new(bert::Bert::new(c, vs, source)?)),
        _ => None,
    })
}

/// `field[i]` must be positive, for each i.
pub(crate) fn check_sizes(field: &str, sizes: &[i64]) -> Result<(), String> {
    for (i, &s) in sizes.iter().enumerate() {
        if s <= 0 {
            return Err(format!("{field}[{i}]: must be positive, got {s}"));
        }
    }
    Ok(())
}

/// A dropout probability must lie in [0, 1): p = 1 would divide by zero when rescaling.
pub(crate) fn check_dropout(field: &str, p: f64) -> Result<(), String> {
    if !(0.0..1.0).contains(&p) {
        return Err(format!("{field}: must be in [0, 1), got {p}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_in_mlp_is_rejected() {
        let err = serde_json::from_str::<ArchConfig>(r#"{"arch":"mlp","hidden":[8],"hiden":[3]}"#).unwrap_err();
        assert!(err.to_string().contains("hiden"), "{err}");
        let err = serde_json::from_str::<ArchConfig>(r#"{"arch":"cnn","channels":[8],"kernal":3}"#).unwrap_err();
        assert!(err.to_string().contains("kernal"), "{err}");
        let err = serde_json::from_str::<ArchConfig>(r#"{"arch":"transformer"}"#).unwrap_err();
        assert!(err.to_string().contains("transformer"), "{err}");
    }

    #[test]
    fn defaults_and_round_trip() {
        let c: ArchConfig = serde_json::from_str(r#"{"arch":"mlp","hidden":[8, 4]}"#).unwrap();
        assert_eq!(
            c,
            ArchConfig::Mlp(MlpConfig {
                hidden: vec![8, 4],
                activation: Activation::Relu,
                dropout: 0.0,
                input_dropout: 0.0
            })
        );
        let c: ArchConfig = serde_json::from_str(r#"{"arch":"cnn","channels":[32, 64]}"#).unwrap();
        let ArchConfig::Cnn(cnn) = &c else { panic!() };
        assert_eq!((cnn.kernel, cnn.pool, cnn.hidden.clone(), cnn.dropout), (5, 2, vec![128], 0.0));
        assert_eq!(c.name(), "cnn");
        let back: ArchConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn parses_from_yaml() {
        let c: ArchConfig =
            serde_yaml::from_str("arch: mlp\nhidden: [1200, 1200]\ndropout: 0.5\ninput_dropout: 0\nactivation: gelu\n")
                .unwrap();
        let ArchConfig::Mlp(m) = c else { panic!() };
        assert_eq!(
            (m.hidden, m.dropout, m.input_dropout, m.activation),
            (vec![1200, 1200], 0.5, 0.0, Activation::Gelu)
        );
        assert!(serde_yaml::from_str::<ArchConfig>("arch: mlp\nhidden: [8]\nlayers: 2\n").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let c: ArchConfig = serde_json::from_str(r#"{"arch":"mlp","hidden":[8, 0]}"#).unwrap();
        assert_eq!(c.validate().unwrap_err(), "model.hidden[1]: must be positive, got 0");
        let c: ArchConfig = serde_json::from_str(r#"{"arch":"mlp","hidden":[8],"dropout":1.0}"#).unwrap();
        assert_eq!(c.validate().unwrap_err(), "model.dropout: must be in [0, 1), got 1");
        let c: ArchConfig = serde_json::from_str(r#"{"arch":"cnn","channels":[8],"kernel":0}"#).unwrap();
        assert_eq!(c.validate().unwrap_err(), "model.kernel: must be positive, got 0");
    }
}

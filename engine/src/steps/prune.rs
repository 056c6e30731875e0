//! `kind: prune` — a student initialised from its teacher: the same architecture with fewer layers, MLP channels or
//! key/value groups, the kept weights copied (ShortGPT's depth pruning, Minitron's width pruning). No training.
//!
//! ```yaml
//! pruned:
//!   kind: prune
//!   model: teacher                    # a llama
//!   data: text.train                  # calibration windows
//!   calibration: 64                   # windows scored (the first ones; default 64)
//!   layers: {count: 20, by: block_influence}   # or {count: 20, by: loss}, or {keep: [0, 1, 2, …]}
//!   mlp: {size: 1024}                 # the channels with the largest mean |silu(gate)·up|
//!   heads: {kv_groups: 2}             # whole key/value groups with their query heads, by their heads' output norm
//! ```
//! - `block_influence` (ShortGPT): 1 − the mean cosine between a layer's input and output hidden states over the
//!   calibration tokens; the `count` most influential layers stay.
//! - `loss`: layers are dropped one at a time, each time the one whose removal raises the calibration loss least.
//! - Width scores are computed on the teacher (as Minitron does) and chosen per layer; every layer keeps the same
//!   number, so the result is a valid config (a GQA config stays one: whole groups go).
//!
//! Output `model`: the pruned model, its teacher's tokenizer, and `prune.json` with every score and choice. Metrics:
//! parameters, the calibration loss of the teacher and of the pruned model. Deterministic.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;

use super::load_data;
use super::registry::{parse_config, ParseEnv, StepKind};
use super::{canonical, check_fields, ArtifactKind, InputDecl, OutputDecl, Step, StepContext, StepRef};
use crate::artifact::model::{ModelArtifact, ModelSpec, WEIGHTS_FILE};
use crate::config::{Located, Node};
use crate::nn::arch::llama::{Llama, Trace};
use crate::nn::arch::ArchConfig;
use crate::nn::prune::{nll, prune_llama, top_k, LlamaPlan};
use crate::nn::weights::export::copy_tokenizer_files;
use crate::nn::weights::source::WeightSource;
use crate::nn::Model as _;

pub const KIND: StepKind = StepKind {
    name: "prune",
    version: 1,
    summary: "cut a pretrained model down (layers, MLP channels, key/value groups), weights copied",
    parse,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneConfig {
    pub model: StepRef,
    pub data: StepRef,
    #[serde(default = "default_calibration")]
    pub calibration: i64,
    #[serde(default = "default_batch_size")]
    pub batch_size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<LayersConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp: Option<MlpConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<HeadsConfig>,
}

fn default_calibration() -> i64 {
    64
}

fn default_batch_size() -> i64 {
    8
}

/// `layers:` as written: `{keep: [..]}` or `{count: N, by: ..}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayersConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<LayerScore>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerScore {
    BlockInfluence,
    Loss,
}

/// Which layers stay: exactly one way, decided at parse time.
#[derive(Clone, Debug)]
enum Depth {
    All,
    Keep(Vec<usize>),
    Count(usize, LayerScore),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    pub size: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadsConfig {
    pub kv_groups: i64,
}

#[derive(Debug)]
pub struct Prune {
    config: PruneConfig,
    depth: Depth,
}

fn parse(node: &Node, _env: &ParseEnv) -> Result<Box<dyn Step>, Vec<Located>> {
    let config: PruneConfig = parse_config(node)?;
    let mut problems = Vec::new();
    let depth = match &config.layers {
        None => Depth::All,
        Some(LayersConfig { keep: Some(keep), count: None, by: None }) => {
            if keep.is_empty() || keep.windows(2).any(|w| w[0] >= w[1]) {
                problems.push(("layers.keep".into(), "must list layers in increasing order, at least one".into()));
            }
            Depth::Keep(keep.clone())
        }
        Some(LayersConfig { keep: None, count: Some(count), by: Some(by) }) => {
            if *count == 0 {
                problems.push(("layers.count".into(), "must keep at least one layer".into()));
            }
            Depth::Count(*count, *by)
        }
        Some(_) => {
            problems.push(("layers".into(), "give `{keep: [..]}` or `{count: N, by: block_influence | loss}`".into()));
            Depth::All
        }
    };
    for (field, value) in [("calibration", config.calibration), ("batch_size", config.batch_size)] {
        if value < 1 {
            problems.push((field.into(), format!("must be at least 1, got {value}")));
        }
    }
    if matches!(&config.mlp, Some(m) if m.size < 1) {
        problems.push(("mlp.size".into(), "must be at least 1".into()));
    }
    if matches!(&config.heads, Some(h) if h.kv_groups < 1) {
        problems.push(("heads.kv_groups".into(), "must be at least 1".into()));
    }
    if matches!(depth, Depth::All) && config.mlp.is_none() && config.heads.is_none() && problems.is_empty() {
        problems.push(("".into(), "prunes nothing: give `layers`, `mlp` or `heads`".into()));
    }
    check_fields(node, problems)?;
    Ok(Box::new(Prune { config, depth }))
}

impl Step for Prune {
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("model", ArtifactKind::Model)]
    }

    fn inputs(&self) -> Vec<InputDecl> {
        vec![
            InputDecl::new("model", &self.config.model, &[ArtifactKind::Model]),
            InputDecl::new("data", &self.config.data, &[ArtifactKind::Dataset]),
        ]
    }

    fn canonical_config(&self) -> serde_json::Value {
        canonical(&self.config)
    }

    fn run(&self, ctx: &mut StepContext) -> anyhow::Result<()> {
        let c = &self.config;
        let teacher_dir = ctx.input("model")?.dir.clone();
        let spec = ModelArtifact::spec(&teacher_dir)?;
        let Some(ArchConfig::Llama(teacher_config)) = &spec.arch else {
            let what = spec.arch.as_ref().map_or("a TorchScript module", |a| a.name());
            bail!("field `model`: prune takes a `llama` model, not {what}");
        };
        let data = load_data(ctx, "data")?.dataset;
        super::lm::vocab(&data, "data")?;
        anyhow::ensure!(
            data.meta.classes == spec.classes,
            "field `data`: {} tokens, the model's vocabulary has {}",
            data.meta.classes,
            spec.classes
        );
        let windows = c.calibration.min(data.len() as i64);
        let (x, y) = (data.x.narrow(0, 0, windows), data.y.narrow(0, 0, windows));
        let batches: Vec<(Tensor, Tensor)> = (0..windows)
            .step_by(c.batch_size as usize)
            .map(|start| {
                let n = c.batch_size.min(windows - start);
                (x.narrow(0, start, n).to_device(ctx.device), y.narrow(0, start, n).to_device(ctx.device))
            })
            .collect();

        let mut weights = crate::nn::weights::safetensors::read(&teacher_dir.join(WEIGHTS_FILE))?;
        let vs = VarStore::new(ctx.device);
        let mut loaded: BTreeMap<String, Tensor> =
            weights.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect();
        let teacher = Llama::new(teacher_config, &vs.root(), spec.classes, &mut WeightSource::Load(&mut loaded))
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", teacher_dir.display()))?;
        let layers = teacher.layers();
        let (heads, kv_heads) = (teacher_config.num_attention_heads, teacher_config.kv_heads());

        // One traced pass over the calibration windows gives every score; the mean loss goes with it.
        let mut trace = Trace::default();
        let mut teacher_loss = 0.0;
        tch::no_grad(|| {
            for (bx, by) in &batches {
                let logits = teacher.forward_traced(bx, &mut trace);
                teacher_loss += nll(&logits, by) * bx.size()[0] as f64;
            }
        });
        teacher_loss /= windows as f64;
        let tokens = trace.tokens as f64;
        let influence: Vec<f64> = trace.cosine.iter().map(|c| 1.0 - c / tokens).collect();

        let mut removal_losses = Vec::new();
        let kept: Vec<usize> = match &self.depth {
            Depth::All => (0..layers).collect(),
            Depth::Keep(keep) => {
                if let Some(&bad) = keep.iter().find(|&&l| l >= layers) {
                    bail!(
                        "field `layers.keep`: layer {bad} does not exist (the model has {layers}: 0..{})",
                        layers - 1
                    );
                }
                keep.clone()
            }
            Depth::Count(count, _) if *count > layers => {
                bail!("field `layers.count`: {count} layers asked, the model has {layers}")
            }
            Depth::Count(count, LayerScore::BlockInfluence) => {
                top_k(&influence, *count).into_iter().map(|l| l as usize).collect()
            }
            Depth::Count(count, LayerScore::Loss) => {
                let mut keep: Vec<usize> = (0..layers).collect();
                while keep.len() > *count {
                    let mut best: Option<(f64, usize)> = None;
                    for &candidate in &keep {
                        let without: Vec<usize> = keep.iter().copied().filter(|&l| l != candidate).collect();
                        let loss = tch::no_grad(|| {
                            batches
                                .iter()
                                .map(|(bx, by)| nll(&teacher.forward_layers(bx, &without), by) * bx.size()[0] as f64)
                                .sum::<f64>()
                        }) / windows as f64;
                        if best.is_none_or(|(b, _)| loss < b) {
                            best = Some((loss, candidate));
                        }
                    }
                    let (loss, removed) = best.context("at least one layer to remove")?;
                    removal_losses.push(serde_json::json!({"removed": removed, "loss": loss}));
                    keep.retain(|&l| l != removed);
                }
                keep
            }
        };

        let to_vec = |t: &Tensor| Vec::<f64>::try_from(&(t / tokens)).unwrap_or_default();
        let mlp_scores: Vec<Vec<f64>> = trace.mlp.iter().map(to_vec).collect();
        let head_scores: Vec<Vec<f64>> = trace.heads.iter().map(to_vec).collect();
        let mlp = match &c.mlp {
            None => None,
            Some(m) if m.size > teacher_config.intermediate_size => {
                bail!("field `mlp.size`: {} channels asked, the model has {}", m.size, teacher_config.intermediate_size)
            }
            Some(m) => Some(kept.iter().map(|&l| top_k(&mlp_scores[l], m.size as usize)).collect::<Vec<_>>()),
        };
        let per_group = (heads / kv_heads) as usize;
        let group_scores: Vec<Vec<f64>> =
            head_scores.iter().map(|h| h.chunks(per_group).map(|g| g.iter().sum()).collect()).collect();
        let kv_groups = match &c.heads {
            None => None,
            Some(h) if h.kv_groups > kv_heads => {
                bail!("field `heads.kv_groups`: {} groups asked, the model has {kv_heads}", h.kv_groups)
            }
            Some(h) => Some(kept.iter().map(|&l| top_k(&group_scores[l], h.kv_groups as usize)).collect::<Vec<_>>()),
        };
        drop(teacher);
        drop(vs);

        let plan = LlamaPlan { layers: kept.clone(), mlp: mlp.clone(), kv_groups: kv_groups.clone() };
        let (config, mut pruned) = prune_llama(teacher_config, &weights, &plan)?;
        weights.clear();
        let vs = VarStore::new(ctx.device);
        let model = Llama::new(&config, &vs.root(), spec.classes, &mut WeightSource::Load(&mut pruned))?;
        anyhow::ensure!(pruned.is_empty(), "pruned weights without a place: {:?}", pruned.keys().collect::<Vec<_>>());
        let pruned_loss = tch::no_grad(|| {
            batches
                .iter()
                .map(|(bx, by)| nll(&model.forward(bx, crate::nn::Mode::Eval), by) * bx.size()[0] as f64)
                .sum::<f64>()
        }) / windows as f64;
        drop(model);

        let dir = ctx.output_dir("model")?;
        let out_spec = ModelSpec::new(ArchConfig::Llama(config), spec.input_shape.clone(), spec.classes, &vs);
        ModelArtifact::save(&dir, &vs, &out_spec)?;
        copy_tokenizer_files(&teacher_dir, &dir)?;
        let report = serde_json::json!({
            "calibration": {"windows": windows, "tokens": trace.tokens},
            "layers": {"block_influence": influence, "kept": kept, "removed_by_loss": removal_losses},
            "mlp": {"scores": mlp_scores, "kept": mlp},
            "heads": {"scores": head_scores, "group_scores": group_scores, "kv_groups_kept": kv_groups},
            "loss": {"teacher": teacher_loss, "pruned": pruned_loss},
        });
        let path = dir.join("prune.json");
        std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        ctx.record_metric("parameters", out_spec.parameters);
        ctx.record_metric("layers", kept.len());
        ctx.record_metric("calibration_nll_teacher", teacher_loss);
        ctx.record_metric("calibration_nll_pruned", pruned_loss);
        Ok(())
    }
}

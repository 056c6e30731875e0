//! `kind: prune` — a student initialised from its teacher: the same architecture with fewer layers, MLP channels or
//! key/value groups, the kept weights copied (ShortGPT's depth pruning, Minitron's width pruning). No training.
//!
//! ```yaml
//! pruned:
//!   kind: prune
//!   model: teacher                    # a llama, a gpt, or a bert
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
//! - A `gpt` (anbiq's own GPT-2-style language model) is pruned in depth and in `mlp` width (its config gains
//!   `d_ff`); not in `heads` (its head width is `d_model / heads`).
//! - A `bert` encoder (sentence embedder; `data` a `sentences` dataset, padding not counted) is pruned by
//!   `block_influence` or `keep`, and `mlp`; not by `loss` (it has no next-token loss) nor `heads` (BERT's config
//!   cannot express fewer heads of the same width). With `pca`, its embeddings are mapped to `size` dimensions by a
//!   fixed `dense` head: the top principal directions (uncentred, [`principal_directions`]) of the *teacher's*
//!   embeddings of the calibration sentences — so every model pruned from one teacher with one calibration set shares
//!   it, a teacher reduced this way (all layers kept) gives the targets of a student reduced this way.
//!
//! Output `model`: the pruned model, its teacher's tokenizer, and `prune.json` with every score and choice. Metrics:
//! parameters, layers, and on the calibration windows the next-token loss of teacher and pruned model (llama, gpt) or the
//! mean cosine of the pruned model's embeddings to the teacher's (bert). Deterministic.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;

use super::load_data;
use super::registry::{parse_config, schema_of, ParseEnv, StepKind};
use super::{canonical, check_fields, ArtifactKind, InputDecl, OutputDecl, Step, StepContext, StepRef};
use crate::artifact::model::{copy_weights, ModelArtifact, ModelSpec, WEIGHTS_FILE};
use crate::config::{Located, Node};
use crate::nn::arch::bert::Bert;
use crate::nn::arch::bert::{DenseActivation, DenseHead};
use crate::nn::arch::gpt::Gpt;
use crate::nn::arch::llama::Llama;
use crate::nn::arch::{ArchConfig, BertConfig, GptConfig, LlamaConfig};
use crate::nn::prune::{nll, principal_directions, prune_bert, prune_gpt, prune_llama, top_k, PrunePlan, Trace};
use crate::nn::weights::export::copy_tokenizer_files;
use crate::nn::weights::hf::DENSE_PREFIX;
use crate::nn::weights::source::WeightSource;
use crate::nn::Encoder as _;
use crate::rng::Rng;

pub const KIND: StepKind = StepKind {
    name: "prune",
    version: 1,
    summary: "cut a pretrained model down (layers, MLP channels, key/value groups), weights copied",
    parse,
    schema: schema_of::<PruneConfig>,
};

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneConfig {
    /// The teacher to cut down (llama, gpt or bert).
    pub model: StepRef,
    /// Calibration data: what the scores are measured on.
    pub data: StepRef,
    /// Windows (or sentences) of `data` to score on.
    #[serde(default = "default_calibration")]
    pub calibration: i64,
    /// Rows per calibration forward pass.
    #[serde(default = "default_batch_size")]
    pub batch_size: i64,
    /// Depth: `{keep: [0, 1, …]}`, or `{count: N, by: block_influence | loss}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<LayersConfig>,
    /// Width: `{size: N}` keeps the N intermediate channels of largest mean activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp: Option<MlpConfig>,
    /// Attention: `{kv_groups: N}` keeps whole key/value groups with their query heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<HeadsConfig>,
    /// A sentence encoder's embeddings reduced to `size` dimensions by the teacher's principal directions on the
    /// calibration sentences, as a `dense` head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pca: Option<PcaConfig>,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PcaConfig {
    /// Dimensions kept.
    pub size: i64,
}

fn default_calibration() -> i64 {
    64
}

fn default_batch_size() -> i64 {
    8
}

/// `layers:` as written: `{keep: [..]}` or `{count: N, by: ..}`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayersConfig {
    /// The layers kept, by index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<Vec<usize>>,
    /// Or how many to keep, chosen by `by`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// `block_influence` (ShortGPT: drop the layers whose output is most like their input) or `loss` (greedily drop the layer that costs least calibration loss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<LayerScore>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Intermediate channels kept per layer.
    pub size: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeadsConfig {
    /// Key/value groups kept per layer (must divide the heads evenly).
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
    if matches!(&config.pca, Some(p) if p.size < 1) {
        problems.push(("pca.size".into(), "must be at least 1".into()));
    }
    let nothing = config.mlp.is_none() && config.heads.is_none() && config.pca.is_none();
    if matches!(depth, Depth::All) && nothing && problems.is_empty() {
        problems.push(("".into(), "prunes nothing: give `layers`, `mlp`, `heads` or `pca`".into()));
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

    fn known_classes(&self, _output: &str, input: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        // `pca` makes an encoder's outputs narrower: not classes.
        self.config.pca.is_none().then(|| input("model")).flatten()
    }

    fn canonical_config(&self) -> serde_json::Value {
        canonical(&self.config)
    }

    fn run(&self, ctx: &mut StepContext) -> anyhow::Result<()> {
        let c = &self.config;
        let teacher_dir = ctx.input("model")?.dir.clone();
        let spec = ModelArtifact::spec(&teacher_dir)?;
        let data = load_data(ctx, "data")?.dataset;
        super::lm::vocab(&data, "data")?;
        let vocab = match &spec.arch {
            Some(ArchConfig::Llama(_) | ArchConfig::Gpt(_)) => spec.classes,
            Some(ArchConfig::Bert(b)) => b.vocab_size,
            other => {
                let what = other.as_ref().map_or("a TorchScript module", |a| a.name());
                bail!("field `model`: prune takes a `llama`, `gpt` or `bert` model, not {what}");
            }
        };
        anyhow::ensure!(
            data.meta.classes == vocab,
            "field `data`: {} tokens, the model's vocabulary has {vocab}",
            data.meta.classes,
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
        let teacher =
            Pretrained::load(spec.arch.as_ref().context("checked above")?, spec.classes, &weights, ctx.device)
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", teacher_dir.display()))?;
        let layers = teacher.layers();

        // One traced pass over the calibration windows gives every score, and what the pruned model is compared by.
        let mut trace = Trace::default();
        let reference = tch::no_grad(|| teacher.traced(&batches, &mut trace));
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
                let Some(lm) = teacher.language_model() else {
                    bail!("field `layers.by`: `loss` ranks by a language model's next-token loss; prune an encoder by `block_influence`");
                };
                let mut keep: Vec<usize> = (0..layers).collect();
                while keep.len() > *count {
                    let mut best: Option<(f64, usize)> = None;
                    for &candidate in &keep {
                        let without: Vec<usize> = keep.iter().copied().filter(|&l| l != candidate).collect();
                        let loss = tch::no_grad(|| {
                            batches
                                .iter()
                                .map(|(bx, by)| nll(&lm.forward_layers(bx, &without), by) * bx.size()[0] as f64)
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
        let channels = teacher.intermediate_size();
        let mlp = match &c.mlp {
            None => None,
            Some(m) if m.size > channels => {
                bail!("field `mlp.size`: {} channels asked, the model has {channels}", m.size)
            }
            Some(m) => Some(kept.iter().map(|&l| top_k(&mlp_scores[l], m.size as usize)).collect::<Vec<_>>()),
        };
        let (heads, kv_heads) = teacher.heads();
        let per_group = (heads / kv_heads) as usize;
        let group_scores: Vec<Vec<f64>> =
            head_scores.iter().map(|h| h.chunks(per_group).map(|g| g.iter().sum()).collect()).collect();
        let kv_groups = match &c.heads {
            None => None,
            Some(_) if matches!(teacher, Pretrained::Bert(..)) => {
                bail!("field `heads`: a BERT keeps all its heads (transformers' BertConfig cannot express fewer heads of the same width); prune `layers` or `mlp`")
            }
            Some(_) if matches!(teacher, Pretrained::Gpt(..)) => {
                bail!("field `heads`: a GPT keeps all its heads (its head width is d_model / heads); prune `layers` or `mlp`")
            }
            Some(h) if h.kv_groups > kv_heads => {
                bail!("field `heads.kv_groups`: {} groups asked, the model has {kv_heads}", h.kv_groups)
            }
            Some(h) => Some(kept.iter().map(|&l| top_k(&group_scores[l], h.kv_groups as usize)).collect::<Vec<_>>()),
        };

        let plan = PrunePlan { layers: kept.clone(), mlp: mlp.clone(), kv_groups: kv_groups.clone() };
        let (mut config, mut pruned) = teacher.prune(&weights, &plan)?;
        let (reference, pca_kept) = match (&c.pca, reference) {
            (None, reference) => (reference, None),
            (Some(pca), Reference::Embeddings(teacher_embeddings)) => {
                let ArchConfig::Bert(bert) = &mut config else { unreachable!("embeddings come from a bert") };
                if bert.dense.is_some() {
                    bail!("field `pca`: the model already maps its embeddings with a `dense` head");
                }
                let all = Tensor::cat(&teacher_embeddings, 0);
                let (directions, share) =
                    principal_directions(&all, pca.size).map_err(|e| anyhow::anyhow!("field `pca.size`: {e}"))?;
                let directions = directions.to_kind(tch::Kind::Float);
                bert.dense = Some(DenseHead {
                    out_features: pca.size,
                    bias: false,
                    activation: DenseActivation::Identity,
                    before_normalize: false,
                });
                // The pruned model is judged against the teacher's embeddings in the same reduced space.
                let projected = teacher_embeddings.iter().map(|t| t.matmul(&directions.tr())).collect();
                pruned.insert(format!("{DENSE_PREFIX}linear.weight"), directions);
                (Reference::Embeddings(projected), Some(share))
            }
            (Some(_), Reference::Loss(_)) => bail!("field `pca`: reduces a sentence encoder's (`bert`) embeddings"),
        };
        drop(teacher);
        weights.clear();
        let vs = VarStore::new(ctx.device);
        let model = Pretrained::build(&config, spec.classes, &vs, &mut pruned)?;
        anyhow::ensure!(pruned.is_empty(), "pruned weights without a place: {:?}", pruned.keys().collect::<Vec<_>>());
        let comparison = tch::no_grad(|| model.compare(&batches, &reference));
        drop(model);

        let dir = ctx.output_dir("model")?;
        let outputs = config.embedding_size().unwrap_or(spec.classes);
        let mut out_spec = ModelSpec::new(config, spec.input_shape.clone(), outputs, &vs);
        out_spec.class_names = spec.class_names.clone();
        ModelArtifact::save(&dir, &vs, &out_spec)?;
        copy_tokenizer_files(&teacher_dir, &dir)?;
        let mut report = serde_json::json!({
            "calibration": {"windows": windows, "tokens": trace.tokens},
            "layers": {"block_influence": influence, "kept": kept, "removed_by_loss": removal_losses},
            "mlp": {"scores": mlp_scores, "kept": mlp},
            "heads": {"scores": head_scores, "group_scores": group_scores, "kv_groups_kept": kv_groups},
        });
        if let Some(share) = pca_kept {
            report["pca"] = serde_json::json!({"size": outputs, "energy_kept": share});
            ctx.record_metric("pca_energy_kept", share);
        }
        ctx.record_metric("parameters", out_spec.parameters);
        ctx.record_metric("layers", kept.len());
        match (&reference, comparison) {
            (Reference::Loss(teacher_loss), Comparison::Loss(pruned_loss)) => {
                report["loss"] = serde_json::json!({"teacher": teacher_loss, "pruned": pruned_loss});
                ctx.record_metric("calibration_nll_teacher", *teacher_loss);
                ctx.record_metric("calibration_nll_pruned", pruned_loss);
            }
            (Reference::Embeddings(_), Comparison::Cosine(cosine)) => {
                report["embedding_cosine"] = serde_json::json!(cosine);
                ctx.record_metric("calibration_cosine", cosine);
            }
            _ => unreachable!("the pruned model has its teacher's architecture"),
        }
        let path = dir.join("prune.json");
        std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// What `prune` asks of a language model besides its logits: a pass that fills a [`Trace`], and a pass through
/// some of its layers only.
trait PrunableLm: crate::nn::Model {
    fn forward_traced(&self, x: &Tensor, trace: &mut Trace) -> Tensor;
    fn forward_layers(&self, x: &Tensor, keep: &[usize]) -> Tensor;
}

impl PrunableLm for Llama {
    fn forward_traced(&self, x: &Tensor, trace: &mut Trace) -> Tensor {
        Llama::forward_traced(self, x, trace)
    }

    fn forward_layers(&self, x: &Tensor, keep: &[usize]) -> Tensor {
        Llama::forward_layers(self, x, keep)
    }
}

impl PrunableLm for Gpt {
    fn forward_traced(&self, x: &Tensor, trace: &mut Trace) -> Tensor {
        Gpt::forward_traced(self, x, trace)
    }

    fn forward_layers(&self, x: &Tensor, keep: &[usize]) -> Tensor {
        Gpt::forward_layers(self, x, keep)
    }
}

/// A teacher (or its pruned copy) of an architecture `prune` knows.
enum Pretrained {
    Llama(LlamaConfig, Llama),
    Gpt(GptConfig, Gpt),
    Bert(BertConfig, Bert),
}

/// What the teacher gave on the calibration windows, for judging the pruned model: a language model's mean
/// next-token loss, an encoder's embeddings.
enum Reference {
    Loss(f64),
    Embeddings(Vec<Tensor>),
}

/// The pruned model beside its [`Reference`]: its own loss, or the mean cosine of its embeddings to the teacher's.
enum Comparison {
    Loss(f64),
    Cosine(f64),
}

impl Pretrained {
    fn load(
        arch: &ArchConfig,
        classes: i64,
        weights: &BTreeMap<String, Tensor>,
        device: tch::Device,
    ) -> anyhow::Result<Pretrained> {
        // The teacher borrows the weights (shallow handles) so the same tensors can be pruned afterwards.
        let mut loaded: BTreeMap<String, Tensor> =
            weights.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect();
        let vs = VarStore::new(device);
        Self::build(arch, classes, &vs, &mut loaded)
    }

    fn build(
        arch: &ArchConfig,
        classes: i64,
        vs: &VarStore,
        weights: &mut BTreeMap<String, Tensor>,
    ) -> anyhow::Result<Pretrained> {
        let src = &mut WeightSource::Load(weights);
        Ok(match arch {
            ArchConfig::Llama(c) => Pretrained::Llama(c.clone(), Llama::new(c, &vs.root(), classes, src)?),
            ArchConfig::Bert(c) => Pretrained::Bert(c.clone(), Bert::new(c, &vs.root(), src)?),
            ArchConfig::Gpt(c) => {
                // A GPT draws its weights when built: build it, then overwrite every one with the given tensor.
                let model = Gpt::new(c, &vs.root(), classes, &mut Rng::new(0));
                copy_weights(vs, weights)?;
                weights.clear();
                Pretrained::Gpt(c.clone(), model)
            }
            other => bail!("prune takes a `llama`, `gpt` or `bert` model, not {}", other.name()),
        })
    }

    fn layers(&self) -> usize {
        match self {
            Pretrained::Llama(_, m) => m.layers(),
            Pretrained::Gpt(_, m) => m.layers(),
            Pretrained::Bert(_, m) => m.layers(),
        }
    }

    /// The model as a language model (`None`: an encoder).
    fn language_model(&self) -> Option<&dyn PrunableLm> {
        match self {
            Pretrained::Llama(_, m) => Some(m),
            Pretrained::Gpt(_, m) => Some(m),
            Pretrained::Bert(..) => None,
        }
    }

    fn intermediate_size(&self) -> i64 {
        match self {
            Pretrained::Llama(c, _) => c.intermediate_size,
            Pretrained::Gpt(c, _) => c.d_ff(),
            Pretrained::Bert(c, _) => c.intermediate_size,
        }
    }

    /// Query heads and key/value heads (a BERT: each head its own group).
    fn heads(&self) -> (i64, i64) {
        match self {
            Pretrained::Llama(c, _) => (c.num_attention_heads, c.kv_heads()),
            Pretrained::Gpt(c, _) => (c.heads, c.heads),
            Pretrained::Bert(c, _) => (c.num_attention_heads, c.num_attention_heads),
        }
    }

    /// Runs the calibration batches, filling `trace`.
    fn traced(&self, batches: &[(Tensor, Tensor)], trace: &mut Trace) -> Reference {
        match self {
            Pretrained::Llama(..) | Pretrained::Gpt(..) => {
                let lm = self.language_model().expect("a language model");
                let windows: i64 = batches.iter().map(|(x, _)| x.size()[0]).sum();
                let sum: f64 =
                    batches.iter().map(|(x, y)| nll(&lm.forward_traced(x, trace), y) * x.size()[0] as f64).sum();
                Reference::Loss(sum / windows as f64)
            }
            Pretrained::Bert(_, m) => Reference::Embeddings(
                batches
                    .iter()
                    .map(|(x, _)| {
                        let (h, mask) = m.hidden_states_traced(x, trace);
                        m.pool(&h, &mask)
                    })
                    .collect(),
            ),
        }
    }

    fn compare(&self, batches: &[(Tensor, Tensor)], reference: &Reference) -> Comparison {
        match (self, reference) {
            (Pretrained::Llama(..) | Pretrained::Gpt(..), Reference::Loss(_)) => {
                let lm = self.language_model().expect("a language model");
                let windows: i64 = batches.iter().map(|(x, _)| x.size()[0]).sum();
                let sum: f64 = batches
                    .iter()
                    .map(|(x, y)| nll(&lm.forward(x, crate::nn::Mode::Eval), y) * x.size()[0] as f64)
                    .sum();
                Comparison::Loss(sum / windows as f64)
            }
            (Pretrained::Bert(_, m), Reference::Embeddings(teacher)) => {
                let (mut sum, mut n) = (0.0, 0);
                for ((x, _), t) in batches.iter().zip(teacher) {
                    let cos = Tensor::cosine_similarity(&m.embed(x), t, -1, 1e-8);
                    sum += cos.to_kind(tch::Kind::Double).sum(tch::Kind::Double).double_value(&[]);
                    n += x.size()[0];
                }
                Comparison::Cosine(sum / n as f64)
            }
            _ => unreachable!("a reference of the model's own kind"),
        }
    }

    fn prune(
        &self,
        weights: &BTreeMap<String, Tensor>,
        plan: &PrunePlan,
    ) -> anyhow::Result<(ArchConfig, BTreeMap<String, Tensor>)> {
        Ok(match self {
            Pretrained::Llama(c, _) => {
                let (config, w) = prune_llama(c, weights, plan)?;
                (ArchConfig::Llama(config), w)
            }
            Pretrained::Gpt(c, _) => {
                let (config, w) = prune_gpt(c, weights, plan)?;
                (ArchConfig::Gpt(config), w)
            }
            Pretrained::Bert(c, _) => {
                let (config, w) = prune_bert(c, weights, plan)?;
                (ArchConfig::Bert(config), w)
            }
        })
    }
}

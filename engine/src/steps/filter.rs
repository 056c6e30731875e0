//! `kind: filter` — keeps the samples the teacher is sure and right about, as a view of the dataset (no copy).
//!
//! ```yaml
//! kept:
//!   kind: filter
//!   data: logits                  # an infer step's output
//!   keep:
//!     min_confidence: 0.6         # teacher's top-1 probability
//!     max_entropy: 1.0            # nats
//!     min_margin: 0.2             # top-1 minus top-2 probability
//!     agree_with_label: true      # teacher's prediction equals the label
//!     top_fraction: 0.5           # then the best half by `by` (confidence | margin | entropy) …
//!     by: confidence
//!     balance: true               # … per class, and as many of each class as the rarest has
//! ```
//! Output `data`: a dataset view; `filter.json` beside it reports how many samples of each class were kept.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::registry::{parse_config, schema_of, ParseEnv, StepKind};
use super::{canonical, check_fields, ArtifactKind, InputDecl, OutputDecl, Step, StepContext, StepRef};
use crate::artifact::view::write_view;
use crate::artifact::{LoadedData, LogitsArtifact};
use crate::config::{Located, Node};

pub const KIND: StepKind = StepKind {
    name: "filter",
    version: 1,
    summary: "keep samples by what the teacher said",
    parse,
    schema: schema_of::<FilterConfig>,
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    #[default]
    Confidence,
    Margin,
    /// Lower is better.
    Entropy,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeepRule {
    /// Keep samples whose top class has at least this probability.
    #[serde(default)]
    pub min_confidence: Option<f64>,
    /// Keep samples whose teacher distribution has at most this entropy (nats).
    #[serde(default)]
    pub max_entropy: Option<f64>,
    /// Keep samples whose top two probabilities differ by at least this much.
    #[serde(default)]
    pub min_margin: Option<f64>,
    /// Keep only samples whose top class is their label.
    #[serde(default)]
    pub agree_with_label: bool,
    /// Keep this fraction of each class, ranked by `by`.
    #[serde(default)]
    pub top_fraction: Option<f64>,
    /// What `top_fraction` ranks by: `confidence`, `margin` or `entropy`.
    #[serde(default)]
    pub by: Score,
    /// Keep as many samples of every class as of the smallest one.
    #[serde(default)]
    pub balance: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The teacher's logits (an `infer` step) over the samples to filter.
    pub data: StepRef,
    /// Which samples to keep; all conditions given must hold.
    pub keep: KeepRule,
}

#[derive(Debug)]
pub struct Filter {
    config: FilterConfig,
}

fn parse(node: &Node, _env: &ParseEnv) -> Result<Box<dyn Step>, Vec<Located>> {
    let config: FilterConfig = parse_config(node)?;
    let k = &config.keep;
    let mut problems = Vec::new();
    let unit = |field: &str, v: Option<f64>, problems: &mut Vec<(String, String)>| {
        if let Some(v) = v {
            if !(0.0..=1.0).contains(&v) {
                problems.push((format!("keep.{field}"), format!("must be in [0, 1], got {v}")));
            }
        }
    };
    unit("min_confidence", k.min_confidence, &mut problems);
    unit("min_margin", k.min_margin, &mut problems);
    if let Some(f) = k.top_fraction {
        if !(f > 0.0 && f <= 1.0) {
            problems.push(("keep.top_fraction".into(), format!("must be in (0, 1], got {f}")));
        }
    }
    if let Some(e) = k.max_entropy {
        if e < 0.0 {
            problems.push(("keep.max_entropy".into(), format!("must be 0 or more, got {e}")));
        }
    }
    check_fields(node, problems)?;
    Ok(Box::new(Filter { config }))
}

/// Per-sample teacher scores.
pub struct Scores {
    pub confidence: Tensor,
    pub margin: Tensor,
    pub entropy: Tensor,
    pub prediction: Tensor,
}

impl Scores {
    pub fn from_log_probs(log_p: &Tensor) -> Scores {
        let p = log_p.exp();
        let (top2, idx) = p.topk(2.min(p.size()[1]), -1, true, true);
        let confidence = top2.select(1, 0);
        let margin = if top2.size()[1] > 1 { &confidence - top2.select(1, 1) } else { confidence.shallow_clone() };
        let entropy = -(&p * log_p).nan_to_num(0.0, None, None).sum_dim_intlist(-1, false, Kind::Float);
        Scores { confidence, margin, entropy, prediction: idx.select(1, 0) }
    }

    /// Higher is better for every score (entropy is negated).
    fn ranking(&self, by: Score) -> Tensor {
        match by {
            Score::Confidence => self.confidence.shallow_clone(),
            Score::Margin => self.margin.shallow_clone(),
            Score::Entropy => -&self.entropy,
        }
    }
}

/// The rows (sorted ascending) that `rule` keeps, given scores and labels.
pub fn select(rule: &KeepRule, scores: &Scores, labels: &Tensor, classes: i64) -> Tensor {
    let n = labels.size()[0];
    let mut mask = Tensor::ones([n], (Kind::Bool, tch::Device::Cpu));
    if let Some(c) = rule.min_confidence {
        mask = mask.logical_and(&scores.confidence.ge(c));
    }
    if let Some(e) = rule.max_entropy {
        mask = mask.logical_and(&scores.entropy.le(e));
    }
    if let Some(m) = rule.min_margin {
        mask = mask.logical_and(&scores.margin.ge(m));
    }
    if rule.agree_with_label {
        mask = mask.logical_and(&scores.prediction.eq_tensor(labels));
    }
    let candidates = mask.nonzero().squeeze_dim(1);
    if rule.top_fraction.is_none() && !rule.balance {
        return candidates;
    }
    let ranking = scores.ranking(rule.by);
    let fraction = rule.top_fraction.unwrap_or(1.0);
    // Per class: the best `fraction` of its candidates (by score, ties by index); with `balance`, then the same number
    // from each class: as many as the class with fewest.
    let mut per_class: Vec<Vec<i64>> = Vec::new();
    for c in 0..classes {
        let in_class = candidates.masked_select(&labels.index_select(0, &candidates).eq(c));
        let score: Vec<f64> =
            Vec::<f64>::try_from(ranking.index_select(0, &in_class).to_kind(Kind::Double)).unwrap_or_default();
        let rows: Vec<i64> = Vec::<i64>::try_from(&in_class).unwrap_or_default();
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(rows[a].cmp(&rows[b])));
        let take = (rows.len() as f64 * fraction).round() as usize;
        per_class.push(order.into_iter().take(take).map(|i| rows[i]).collect());
    }
    if rule.balance {
        let smallest = per_class.iter().filter(|v| !v.is_empty()).map(Vec::len).min().unwrap_or(0);
        for v in &mut per_class {
            v.truncate(smallest);
        }
    }
    let mut kept: Vec<i64> = per_class.into_iter().flatten().collect();
    kept.sort_unstable();
    Tensor::from_slice(&kept)
}

impl Step for Filter {
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("data", ArtifactKind::Dataset)]
    }

    fn inputs(&self) -> Vec<InputDecl> {
        vec![InputDecl::new("data", &self.config.data, &[ArtifactKind::Logits])]
    }

    fn known_classes(&self, _output: &str, input: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        input("data")
    }

    fn canonical_config(&self) -> serde_json::Value {
        canonical(&self.config)
    }

    fn run(&self, ctx: &mut StepContext) -> anyhow::Result<()> {
        let input = ctx.input("data")?.clone();
        if crate::artifact::token_logits::is_token_logits(&input.dir) {
            anyhow::bail!(
                "field `data`: `{}` holds per-token logits of a language model; filtering keeps or drops whole \
                 samples of a classifier",
                input.label
            );
        }
        let logits = LogitsArtifact::read(&input.dir)?;
        let dataset = crate::artifact::dataset::read_dataset(&ctx.store_path(&logits.meta.dataset))?;
        let all = Tensor::arange(logits.meta.samples, (Kind::Int64, tch::Device::Cpu));
        let scores = Scores::from_log_probs(&logits.log_probs(&all));
        let kept = select(&self.config.keep, &scores, &dataset.y, dataset.meta.classes);
        let n_kept = kept.size()[0];
        if n_kept == 0 {
            anyhow::bail!("field `keep`: the rule keeps no samples out of {} (loosen it)", logits.meta.samples);
        }
        let kept_labels = dataset.y.index_select(0, &kept);
        let per_class: Vec<i64> = Vec::<i64>::try_from(kept_labels.bincount::<Tensor>(None, dataset.meta.classes))?;
        let total: Vec<i64> = dataset.class_counts();
        let base = LoadedData { dataset, base: logits.meta.dataset.clone(), base_indices: None };
        let dir = ctx.output_dir("data")?;
        write_view(&dir, &base, &kept)?;
        let report = serde_json::json!({ "kept": n_kept, "of": logits.meta.samples, "kept_per_class": per_class, "total_per_class": total });
        std::fs::write(dir.join("filter.json"), serde_json::to_string_pretty(&report)? + "\n")?;
        ctx.record_metric("kept", n_kept);
        ctx.record_metric("of", logits.meta.samples);
        Ok(())
    }
}

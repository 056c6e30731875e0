//! The `loss:` field: one term, or a list of weighted terms.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    CeTeacherLabels, CosineEmbedding, DistillLoss, HiddenLoss, KdLoss, MseEmbedding, MseLogits, PluginTerm, ReverseKl,
    SimilarityEmbedding, WeightedSum,
};

/// One loss term, externally tagged by its name: `{kd: {temperature: 4}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LossTerm {
    /// Hinton et al.'s KD: `alpha` × T² × KL(teacher ‖ student) at temperature T, plus (1 − alpha) × cross-entropy.
    Kd(KdLoss),
    /// Mean squared difference of the logits, each row centred (Ba & Caruana).
    MseLogits(MseLogits),
    /// Cross-entropy against the teacher's most likely class (pseudo-labels), ignoring the true labels.
    CeTeacherLabels(CeTeacherLabels),
    /// A WebAssembly plugin: `{plugin: {path: my_loss.wasm, params: {...}}}`.
    Plugin(PluginTerm),
    /// Reverse KL, KL(student ‖ teacher) at temperature T: mode-seeking (MiniLLM), with (1 − alpha) × cross-entropy.
    ReverseKl(ReverseKl),
    /// Sentence embeddings: mean squared difference.
    MseEmbedding(MseEmbedding),
    /// Sentence embeddings: mean of 1 − cos.
    CosineEmbedding(CosineEmbedding),
    /// Sentence embeddings: mean over the batch's pairs of sentences of the squared difference of their cosines.
    SimilarityEmbedding(SimilarityEmbedding),
    /// A sentence encoder's intermediate hidden states, paired student → teacher: `{map: {1: 2, 2: 4}, loss: mse}`.
    Hidden(HiddenLoss),
}

/// What a loss term compares: a teacher's distributions (logits, with labels) or a sentence encoder's embeddings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compares {
    Distributions,
    Embeddings,
}

/// A term with a weight in a sum: `{kd: {...}, weight: 0.5}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WeightedTerm {
    #[serde(flatten)]
    pub term: LossTerm,
    /// The term's weight in the sum.
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum LossConfig {
    One(LossTerm),
    Sum(Vec<WeightedTerm>),
}

impl LossTerm {
    /// Problems as (field path under `loss`, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        match self {
            LossTerm::Kd(kd) => kd.validate().map_err(|(f, m)| (format!("kd.{f}"), m)),
            LossTerm::Plugin(p) => p.validate().map_err(|(f, m)| (format!("plugin.{f}"), m)),
            LossTerm::ReverseKl(r) => r.validate().map_err(|(f, m)| (format!("reverse_kl.{f}"), m)),
            LossTerm::Hidden(h) => h.validate().map_err(|(f, m)| (format!("hidden.{f}"), m)),
            LossTerm::MseLogits(_)
            | LossTerm::CeTeacherLabels(_)
            | LossTerm::MseEmbedding(_)
            | LossTerm::CosineEmbedding(_)
            | LossTerm::SimilarityEmbedding(_) => Ok(()),
        }
    }

    /// What the term compares. A plugin says in its describe (`"inputs": "embeddings"`, plugins/ABI.md); one that
    /// does not load compares distributions here, and `validate` reports why it does not load.
    pub fn compares(&self) -> Compares {
        match self {
            LossTerm::MseEmbedding(_)
            | LossTerm::CosineEmbedding(_)
            | LossTerm::SimilarityEmbedding(_)
            | LossTerm::Hidden(_) => Compares::Embeddings,
            LossTerm::Plugin(p) => match crate::plugin::load(&p.file()).map(|m| m.describe.inputs) {
                Ok(crate::plugin::Inputs::Embeddings) => Compares::Embeddings,
                _ => Compares::Distributions,
            },
            _ => Compares::Distributions,
        }
    }

    /// The term's name in YAML (`kd`, `mse_embedding`, …).
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_object().and_then(|o| o.keys().next().cloned()))
            .unwrap_or_default()
    }

    pub fn build(&self) -> anyhow::Result<Box<dyn DistillLoss>> {
        Ok(match self {
            LossTerm::Kd(l) => Box::new(l.clone()),
            LossTerm::MseLogits(l) => Box::new(l.clone()),
            LossTerm::CeTeacherLabels(l) => Box::new(l.clone()),
            LossTerm::ReverseKl(l) => Box::new(l.clone()),
            LossTerm::MseEmbedding(l) => Box::new(l.clone()),
            LossTerm::CosineEmbedding(l) => Box::new(l.clone()),
            LossTerm::SimilarityEmbedding(l) => Box::new(l.clone()),
            LossTerm::Hidden(l) => Box::new(l.clone()),
            LossTerm::Plugin(p) => Box::new(p.build()?),
        })
    }
}

impl LossConfig {
    pub fn terms(&self) -> Vec<WeightedTerm> {
        match self {
            LossConfig::One(term) => vec![WeightedTerm { term: term.clone(), weight: 1.0 }],
            LossConfig::Sum(terms) => terms.clone(),
        }
    }

    /// Problems as (field path from the step, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let LossConfig::Sum(terms) = self {
            if terms.is_empty() {
                problems.push(("loss".into(), "needs at least one term".into()));
            }
        }
        for (i, t) in self.terms().iter().enumerate() {
            let prefix = match self {
                LossConfig::One(_) => "loss".to_string(),
                LossConfig::Sum(_) => format!("loss[{i}]"),
            };
            if let Err((field, message)) = t.term.validate() {
                problems.push((format!("{prefix}.{field}"), message));
            }
            if !(t.weight.is_finite() && t.weight >= 0.0) {
                problems.push((format!("{prefix}.weight"), format!("must be 0 or more, got {}", t.weight)));
            }
        }
        problems
    }

    /// Every term must compare `what`; the first that does not is `(field, message)`.
    pub fn check_compares(&self, what: Compares) -> Result<(), (String, String)> {
        let one = matches!(self, LossConfig::One(_));
        for (i, t) in self.terms().iter().enumerate() {
            if t.term.compares() != what {
                let field = if one { "loss".to_string() } else { format!("loss[{i}]") };
                let message = match what {
                    Compares::Embeddings => format!(
                        "`{}` compares a teacher's distributions; a sentence encoder is distilled with \
                         `mse_embedding`, `cosine_embedding` or `similarity_embedding`",
                        t.term.name()
                    ),
                    Compares::Distributions => format!(
                        "`{}` compares sentence embeddings; this teacher gives logits (use `kd`, `mse_logits`, …)",
                        t.term.name()
                    ),
                };
                return Err((field, message));
            }
        }
        Ok(())
    }

    /// What training records each term of a sum of several as (`kd`, `mse_logits × 0.1`, a repeated name numbered:
    /// `kd (2)`); one term: none, its share being the whole loss.
    pub fn term_names(&self) -> Vec<String> {
        let terms = self.terms();
        if terms.len() < 2 {
            return Vec::new();
        }
        let mut names: Vec<String> = Vec::new();
        for t in &terms {
            let base = t.term.name();
            let seen = terms.iter().take(names.len()).filter(|u| u.term.name() == base).count();
            let name = if seen > 0 { format!("{base} ({})", seen + 1) } else { base };
            names.push(if t.weight == 1.0 { name } else { format!("{name} × {}", t.weight) });
        }
        names
    }

    pub fn build(&self) -> anyhow::Result<Box<dyn DistillLoss>> {
        let terms = self.terms().iter().map(|t| Ok((t.weight, t.term.build()?))).collect::<anyhow::Result<_>>()?;
        Ok(Box::new(WeightedSum { terms, names: self.term_names() }))
    }

    fn terms_mut(&mut self) -> Vec<&mut LossTerm> {
        match self {
            LossConfig::One(term) => vec![term],
            LossConfig::Sum(terms) => terms.iter_mut().map(|t| &mut t.term).collect(),
        }
    }

    /// Puts plugin parameters in canonical form ([`PluginTerm::canonicalize`]); call once `validate` found nothing.
    pub fn canonicalize(&mut self) -> Vec<(String, String)> {
        let one = matches!(self, LossConfig::One(_));
        let mut problems = Vec::new();
        for (i, term) in self.terms_mut().into_iter().enumerate() {
            if let LossTerm::Plugin(p) = term {
                if let Err((field, message)) = p.canonicalize() {
                    let prefix = if one { "loss".to_string() } else { format!("loss[{i}]") };
                    problems.push((format!("{prefix}.plugin.{field}"), message));
                }
            }
        }
        problems
    }

    /// Resolves plugin paths (as written, relative to the workflow) to files; call before `validate` and `build`.
    pub fn resolve_paths(&mut self, resolve: &dyn Fn(&Path) -> PathBuf) {
        for term in self.terms_mut() {
            if let LossTerm::Plugin(p) = term {
                p.resolve_path(resolve);
            }
        }
    }

    /// Files the loss reads (plugin modules), as `(path as written, path resolved)`: their bytes belong in the
    /// step's cache key.
    pub fn files(&self) -> Vec<(PathBuf, PathBuf)> {
        self.terms()
            .iter()
            .filter_map(|t| match &t.term {
                LossTerm::Plugin(p) => Some((p.path.clone(), p.file())),
                _ => None,
            })
            .collect()
    }
}

//! The `loss:` field: one term, or a list of weighted terms.

use serde::{Deserialize, Serialize};

use super::{CeTeacherLabels, DistillLoss, KdLoss, MseLogits, ReverseKl, WeightedSum};

/// One loss term, externally tagged by its name: `{kd: {temperature: 4}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LossTerm {
    Kd(KdLoss),
    MseLogits(MseLogits),
    CeTeacherLabels(CeTeacherLabels),
    ReverseKl(ReverseKl),
}

/// A term with a weight in a sum: `{kd: {...}, weight: 0.5}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightedTerm {
    #[serde(flatten)]
    pub term: LossTerm,
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
            LossTerm::ReverseKl(r) => r.validate().map_err(|(f, m)| (format!("reverse_kl.{f}"), m)),
            LossTerm::MseLogits(_) | LossTerm::CeTeacherLabels(_) => Ok(()),
        }
    }

    pub fn build(&self) -> Box<dyn DistillLoss> {
        match self {
            LossTerm::Kd(l) => Box::new(l.clone()),
            LossTerm::MseLogits(l) => Box::new(l.clone()),
            LossTerm::CeTeacherLabels(l) => Box::new(l.clone()),
            LossTerm::ReverseKl(l) => Box::new(l.clone()),
        }
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

    pub fn build(&self) -> Box<dyn DistillLoss> {
        Box::new(WeightedSum { terms: self.terms().iter().map(|t| (t.weight, t.term.build())).collect() })
    }
}

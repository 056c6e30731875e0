//! Which epoch's weights a run keeps (`keep: best val_accuracy`) and when it stops early (`early_stopping:`).
//!
//! Both are decided from the run's [`History`] alone, so a resumed run decides exactly as an uninterrupted one: the
//! best epoch is the first with the best score, and patience counts the epochs since the score last improved by more
//! than `min_delta`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::learner::{EpochRecord, History};

/// An epoch's score that selection watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Accuracy on the step's `val` set (higher is better); needs `val`.
    ValAccuracy,
    /// The epoch's mean training loss (lower is better).
    TrainLoss,
}

impl Monitor {
    pub const ALL: [Monitor; 2] = [Monitor::ValAccuracy, Monitor::TrainLoss];

    pub fn name(self) -> &'static str {
        match self {
            Monitor::ValAccuracy => "val_accuracy",
            Monitor::TrainLoss => "train_loss",
        }
    }

    /// Whether it needs a validation set.
    pub fn needs_val(self) -> bool {
        self == Monitor::ValAccuracy
    }

    /// The epoch's score, oriented so that higher is better.
    fn score(self, record: &EpochRecord) -> Option<f64> {
        match self {
            Monitor::ValAccuracy => record.val_accuracy,
            Monitor::TrainLoss => Some(-record.train_loss),
        }
    }
}

impl FromStr for Monitor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Monitor::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Monitor::ALL.iter().map(|m| m.name()).collect();
            format!("unknown metric `{s}` (expected one of: {})", names.join(", "))
        })
    }
}

/// Which epoch's weights the step writes: `last` (the default) or `best METRIC`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Keep {
    #[default]
    Last,
    Best(Monitor),
}

impl Keep {
    pub fn is_last(&self) -> bool {
        *self == Keep::Last
    }
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keep::Last => f.write_str("last"),
            Keep::Best(m) => write!(f, "best {}", m.name()),
        }
    }
}

impl FromStr for Keep {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_whitespace().collect::<Vec<_>>()[..] {
            ["last"] => Ok(Keep::Last),
            ["best", metric] => Ok(Keep::Best(metric.parse()?)),
            ["best"] => Err("say which metric: `best val_accuracy` or `best train_loss`".into()),
            _ => Err(format!("expected `last` or `best METRIC` (`best val_accuracy`), got `{s}`")),
        }
    }
}

impl Serialize for Keep {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl schemars::JsonSchema for Keep {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Keep".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let written: Vec<String> =
            std::iter::once(Keep::Last).chain(Monitor::ALL.map(Keep::Best)).map(|k| k.to_string()).collect();
        schemars::json_schema!({
            "enum": written,
            "description": "Which epoch's weights the step writes: the last, or the best by a metric.",
            "default": "last"
        })
    }
}

impl<'de> Deserialize<'de> for Keep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Stop once `metric` has not improved by more than `min_delta` for `patience` epochs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Epochs without improvement before training stops.
    pub patience: usize,
    /// What counts as an improvement (in the metric's own units: 0.001 is 0.1 points of accuracy).
    #[serde(default)]
    pub min_delta: f64,
    /// The metric watched; by default `keep`'s, else `val_accuracy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<Monitor>,
}

impl EarlyStopping {
    /// The metric it watches, given what the run keeps.
    pub fn monitor(&self, keep: Keep) -> Monitor {
        match (self.metric, keep) {
            (Some(m), _) | (None, Keep::Best(m)) => m,
            (None, Keep::Last) => Monitor::ValAccuracy,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.patience == 0 {
            return Err("early_stopping.patience: must be 1 epoch or more, got 0".into());
        }
        if !(self.min_delta >= 0.0 && self.min_delta.is_finite()) {
            return Err(format!("early_stopping.min_delta: must be 0 or more, got {}", self.min_delta));
        }
        Ok(())
    }

    /// Whether the run should stop after the epochs in `history`.
    pub fn should_stop(&self, keep: Keep, history: &History) -> bool {
        let monitor = self.monitor(keep);
        let mut best: Option<f64> = None;
        let mut since = 0;
        for score in history.epochs.iter().filter_map(|e| monitor.score(e)) {
            match best {
                Some(b) if score <= b + self.min_delta => since += 1,
                _ => {
                    best = Some(score);
                    since = 0;
                }
            }
        }
        since >= self.patience
    }
}

/// The epoch (1-based) whose weights `keep` selects among those in `history`; `None` for `last`.
pub fn best_epoch(keep: Keep, history: &History) -> Option<usize> {
    let Keep::Best(monitor) = keep else { return None };
    let mut best: Option<(usize, f64)> = None;
    for e in &history.epochs {
        if let Some(score) = monitor.score(e) {
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((e.epoch, score));
            }
        }
    }
    best.map(|(epoch, _)| epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(accuracies: &[f64]) -> History {
        let epochs = accuracies
            .iter()
            .enumerate()
            .map(|(i, &a)| EpochRecord {
                epoch: i + 1,
                train_loss: 1.0 / (i + 1) as f64,
                val_accuracy: Some(a),
                lr: 0.1,
                terms: Vec::new(),
            })
            .collect();
        History { epochs, ..History::default() }
    }

    #[test]
    fn keep_reads_and_writes_as_written() {
        for text in ["last", "best val_accuracy", "best train_loss"] {
            let keep: Keep = text.parse().unwrap();
            assert_eq!(keep.to_string(), text);
        }
        assert!("best".parse::<Keep>().unwrap_err().contains("which metric"));
        assert!("best val_acc".parse::<Keep>().unwrap_err().contains("unknown metric `val_acc`"));
        assert!("first".parse::<Keep>().is_err());
    }

    #[test]
    fn the_best_epoch_is_the_first_with_the_best_score() {
        let h = history(&[0.5, 0.8, 0.7, 0.8, 0.6]);
        assert_eq!(best_epoch(Keep::Best(Monitor::ValAccuracy), &h), Some(2));
        assert_eq!(best_epoch(Keep::Best(Monitor::TrainLoss), &h), Some(5));
        assert_eq!(best_epoch(Keep::Last, &h), None);
    }

    #[test]
    fn patience_counts_epochs_since_the_last_real_improvement() {
        let stop = |patience, min_delta, accs: &[f64]| {
            EarlyStopping { patience, min_delta, metric: None }.should_stop(Keep::Last, &history(accs))
        };
        assert!(!stop(2, 0.0, &[0.5, 0.6, 0.6]));
        assert!(stop(2, 0.0, &[0.5, 0.6, 0.6, 0.55]));
        // 0.605 is not better than 0.6 by more than 0.01: it does not reset the count.
        assert!(stop(2, 0.01, &[0.5, 0.6, 0.605, 0.607]));
        assert!(!stop(2, 0.0, &[0.5, 0.6, 0.605, 0.607]));
    }
}

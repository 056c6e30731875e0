//! A distillation temperature: constant (`temperature: 4`) or scheduled linearly over training
//! (`temperature: {from: 8, to: 1}`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Temperature {
    Constant(f64),
    Linear { from: f64, to: f64 },
}

impl Default for Temperature {
    fn default() -> Self {
        Temperature::Constant(1.0)
    }
}

impl Temperature {
    /// The temperature after `progress` (0..=1) of training.
    pub fn at(&self, progress: f64) -> f64 {
        match *self {
            Temperature::Constant(t) => t,
            Temperature::Linear { from, to } => from + (to - from) * progress.clamp(0.0, 1.0),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let ok = |t: f64| t > 0.0 && t.is_finite();
        match *self {
            Temperature::Constant(t) if !ok(t) => Err(format!("must be positive, got {t}")),
            Temperature::Linear { from, to } if !ok(from) || !ok(to) => {
                Err(format!("must be positive, got {from} → {to}"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_schedule_interpolates() {
        let t = Temperature::Linear { from: 8.0, to: 2.0 };
        assert_eq!(t.at(0.0), 8.0);
        assert_eq!(t.at(0.5), 5.0);
        assert_eq!(t.at(1.0), 2.0);
        assert_eq!(Temperature::Constant(4.0).at(0.3), 4.0);
        assert!(Temperature::Constant(0.0).validate().is_err());
    }
}

//! Optimiser configs (`optimizer: {name: adamw, lr: 1e-3}`) and their libtorch optimisers.

use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    Sgd {
        /// Learning rate.
        lr: f64,
        /// Momentum (0: plain SGD).
        #[serde(default)]
        momentum: f64,
        /// Nesterov momentum.
        #[serde(default)]
        nesterov: bool,
        /// L2 penalty added to the gradient.
        #[serde(default)]
        weight_decay: f64,
    },
    /// Adam; `weight_decay` is an L2 penalty added to the gradient, as in `torch.optim.Adam`.
    Adam {
        /// Learning rate.
        lr: f64,
        /// Decay rates of the first and second moment estimates.
        #[serde(default = "default_betas")]
        betas: [f64; 2],
        /// L2 penalty added to the gradient.
        #[serde(default)]
        weight_decay: f64,
        /// Added to the denominator for stability.
        #[serde(default = "default_eps")]
        eps: f64,
    },
    /// Adam with decoupled weight decay, as in `torch.optim.AdamW` (same default decay 0.01).
    #[serde(rename = "adamw")]
    AdamW {
        /// Learning rate.
        lr: f64,
        /// Decay rates of the first and second moment estimates.
        #[serde(default = "default_betas")]
        betas: [f64; 2],
        /// Decoupled weight decay.
        #[serde(default = "default_adamw_decay")]
        weight_decay: f64,
        /// Added to the denominator for stability.
        #[serde(default = "default_eps")]
        eps: f64,
    },
}

fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}
fn default_adamw_decay() -> f64 {
    0.01
}

impl OptimizerConfig {
    /// The base learning rate (schedules scale from it).
    pub fn lr(&self) -> f64 {
        match *self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adam { lr, .. } | OptimizerConfig::AdamW { lr, .. } => {
                lr
            }
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let lr = self.lr();
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(format!("optimizer.lr: must be positive, got {lr}"));
        }
        let nonneg = |field: &str, v: f64| {
            if v >= 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(format!("optimizer.{field}: must be non-negative, got {v}"))
            }
        };
        match *self {
            OptimizerConfig::Sgd { momentum, nesterov, weight_decay, .. } => {
                nonneg("momentum", momentum)?;
                nonneg("weight_decay", weight_decay)?;
                if nesterov && momentum <= 0.0 {
                    return Err("optimizer.nesterov: needs momentum > 0".into());
                }
            }
            OptimizerConfig::Adam { betas, weight_decay, eps, .. }
            | OptimizerConfig::AdamW { betas, weight_decay, eps, .. } => {
                for (i, b) in betas.iter().enumerate() {
                    if !(0.0..1.0).contains(b) {
                        return Err(format!("optimizer.betas[{i}]: must be in [0, 1), got {b}"));
                    }
                }
                nonneg("weight_decay", weight_decay)?;
                if eps <= 0.0 {
                    return Err(format!("optimizer.eps: must be positive, got {eps}"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults_and_validates() {
        let c: OptimizerConfig = serde_json::from_str(r#"{"name":"adamw","lr":0.001}"#).unwrap();
        assert_eq!(c, OptimizerConfig::AdamW { lr: 0.001, betas: [0.9, 0.999], weight_decay: 0.01, eps: 1e-8 });
        let c: OptimizerConfig = serde_json::from_str(r#"{"name":"sgd","lr":0.1,"momentum":0.9}"#).unwrap();
        assert_eq!(c.lr(), 0.1);
        assert!(c.validate().is_ok());
        let c: OptimizerConfig = serde_json::from_str(r#"{"name":"adam","lr":0}"#).unwrap();
        assert_eq!(c.validate().unwrap_err(), "optimizer.lr: must be positive, got 0");
        assert!(serde_json::from_str::<OptimizerConfig>(r#"{"name":"sgd","lr":0.1,"mom":0.9}"#).is_err());
    }
}

//! Learning-rate schedules, evaluated per optimiser step (`schedule: {kind: cosine, warmup_steps: 100}`).
//!
//! All positions are in optimiser steps (batches), counted from 0 over the whole run, so a schedule is a pure
//! function of (step, total steps). Every kind takes an optional linear warm-up: during the first `warmup_steps` the
//! rate ramps from `base/warmup_steps` up to `base`; the decay then runs over the remaining steps.

use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    Constant {
        /// Steps of linear warm-up from 0 to the base rate.
        #[serde(default)]
        warmup_steps: usize,
    },
    /// Multiply by `gamma` every `every` steps after warm-up.
    Step {
        /// Steps between decays.
        every: usize,
        /// Factor the rate is multiplied by at each decay.
        gamma: f64,
        /// Steps of linear warm-up from 0 to the base rate.
        #[serde(default)]
        warmup_steps: usize,
    },
    /// Half-cosine from the base rate down to `min_lr` at the last step.
    Cosine {
        /// The rate at the last step.
        #[serde(default)]
        min_lr: f64,
        /// Steps of linear warm-up from 0 to the base rate.
        #[serde(default)]
        warmup_steps: usize,
    },
}

impl Default for LrSchedule {
    fn default() -> Self {
        LrSchedule::Constant { warmup_steps: 0 }
    }
}

impl LrSchedule {
    pub fn warmup_steps(&self) -> usize {
        match *self {
            LrSchedule::Constant { warmup_steps }
            | LrSchedule::Step { warmup_steps, .. }
            | LrSchedule::Cosine { warmup_steps, .. } => warmup_steps,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        match *self {
            LrSchedule::Step { every: 0, .. } => Err("schedule.every: must be positive, got 0".into()),
            LrSchedule::Step { gamma, .. } if !(gamma > 0.0 && gamma.is_finite()) => {
                Err(format!("schedule.gamma: must be positive, got {gamma}"))
            }
            LrSchedule::Cosine { min_lr, .. } if !(min_lr >= 0.0 && min_lr.is_finite()) => {
                Err(format!("schedule.min_lr: must be non-negative, got {min_lr}"))
            }
            _ => Ok(()),
        }
    }

    /// The rate for 0-based `step` of `total_steps`.
    pub fn lr_at(&self, base_lr: f64, step: usize, total_steps: usize) -> f64 {
        let warmup = self.warmup_steps();
        if step < warmup {
            return base_lr * (step + 1) as f64 / warmup as f64;
        }
        let t = step - warmup;
        match *self {
            LrSchedule::Constant { .. } => base_lr,
            LrSchedule::Step { every, gamma, .. } => base_lr * gamma.powi((t / every.max(1)) as i32),
            LrSchedule::Cosine { min_lr, .. } => {
                // Reaches min_lr exactly at the last step (t = span).
                let span = total_steps.saturating_sub(warmup + 1);
                if span == 0 {
                    return base_lr;
                }
                let frac = (t.min(span) as f64) / span as f64;
                min_lr + (base_lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn constant_and_warmup() {
        let s = LrSchedule::default();
        assert_eq!(s.lr_at(0.1, 0, 10), 0.1);
        let s = LrSchedule::Constant { warmup_steps: 4 };
        let v: Vec<f64> = (0..6).map(|i| s.lr_at(1.0, i, 10)).collect();
        assert_eq!(v, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn step_decay() {
        let s = LrSchedule::Step { every: 3, gamma: 0.5, warmup_steps: 0 };
        let v: Vec<f64> = (0..7).map(|i| s.lr_at(1.0, i, 10)).collect();
        assert_eq!(v, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]);
        let s = LrSchedule::Step { every: 2, gamma: 0.1, warmup_steps: 2 };
        assert_eq!(s.lr_at(1.0, 0, 10), 0.5);
        assert_eq!(s.lr_at(1.0, 3, 10), 1.0);
        assert!(close(s.lr_at(1.0, 4, 10), 0.1));
    }

    #[test]
    fn cosine_endpoints_and_midpoint() {
        let s = LrSchedule::Cosine { min_lr: 0.0, warmup_steps: 0 };
        assert_eq!(s.lr_at(1.0, 0, 11), 1.0);
        assert!(close(s.lr_at(1.0, 5, 11), 0.5));
        assert!(close(s.lr_at(1.0, 10, 11), 0.0));
        let s = LrSchedule::Cosine { min_lr: 0.1, warmup_steps: 2 };
        assert_eq!(s.lr_at(1.0, 0, 13), 0.5);
        assert_eq!(s.lr_at(1.0, 2, 13), 1.0);
        assert!(close(s.lr_at(1.0, 7, 13), 0.55));
        assert!(close(s.lr_at(1.0, 12, 13), 0.1));
    }

    #[test]
    fn parses() {
        let s: LrSchedule = serde_json::from_str(r#"{"kind":"cosine"}"#).unwrap();
        assert_eq!(s, LrSchedule::Cosine { min_lr: 0.0, warmup_steps: 0 });
        let s: LrSchedule = serde_json::from_str(r#"{"kind":"constant"}"#).unwrap();
        assert_eq!(s, LrSchedule::default());
        assert!(serde_json::from_str::<LrSchedule>(r#"{"kind":"step","every":0,"gamma":0.5}"#)
            .unwrap()
            .validate()
            .is_err());
        assert!(serde_json::from_str::<LrSchedule>(r#"{"kind":"cosine","warmup":3}"#).is_err());
    }
}

//! The lockfile: `<workflow>.lock` beside the workflow (or `--lock PATH`), YAML in a stable order, saying what
//! produced what. Every field is deterministic except those declared otherwise ([`Lockfile::without_measurements`]
//! clears them): two runs of one workflow on CPU write the same lockfile up to those.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::store::{write_atomic_if_changed, Manifest};
use crate::graph::{KeyEnv, KeyIngredients, StepKey};

/// 2: keys name files as the workflow writes them and hold step and format versions; `params`, `timings`.
pub const LOCKFILE_VERSION: u32 = 2;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lockfile {
    pub version: u32,
    pub workflow: String,
    pub engine: String,
    pub libtorch: String,
    /// The CPU code paths (`avx2`: the same bits on any x86_64 CPU; `native`: this CPU's).
    #[serde(default)]
    pub cpu: String,
    pub seed: u64,
    /// The workflow's parameters as run (after `--set`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
    /// In the workflow's topological order.
    pub steps: Vec<LockedStep>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockedStep {
    pub id: String,
    pub key: StepKey,
    #[serde(flatten)]
    pub ingredients: KeyIngredients,
    /// Output name → blake3 of its files.
    pub outputs: BTreeMap<String, String>,
    /// Wall-clock time of the step: declared non-deterministic, like `timings`.
    pub seconds: f64,
    pub device: String,
    pub threads: usize,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// What the step measured of the machine (latency, throughput): declared non-deterministic.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub timings: serde_json::Map<String, serde_json::Value>,
}

impl LockedStep {
    pub fn new(id: &str, key: &StepKey, ingredients: &KeyIngredients, manifest: &Manifest) -> Self {
        LockedStep {
            id: id.to_string(),
            key: key.clone(),
            ingredients: ingredients.clone(),
            outputs: manifest.outputs.iter().map(|(k, v)| (k.clone(), v.hash.clone())).collect(),
            seconds: manifest.seconds,
            device: manifest.device.clone(),
            threads: manifest.threads,
            metrics: manifest.metrics.clone(),
            timings: manifest.timings.clone(),
        }
    }
}

impl Lockfile {
    pub fn new(workflow: &str, seed: u64, params: BTreeMap<String, serde_json::Value>, env: &KeyEnv) -> Self {
        Lockfile {
            version: LOCKFILE_VERSION,
            workflow: workflow.to_string(),
            engine: env.engine.clone(),
            libtorch: env.libtorch.clone(),
            cpu: env.cpu.clone(),
            seed,
            params,
            steps: Vec::new(),
        }
    }

    /// The lockfile without the fields declared non-deterministic: each step's wall-clock `seconds` and its
    /// `timings` (what it measured of the machine). Everything else two CPU runs of one workflow must agree on.
    pub fn without_measurements(&self) -> Lockfile {
        let mut lock = self.clone();
        for step in &mut lock.steps {
            step.seconds = 0.0;
            step.timings.clear();
        }
        lock
    }

    /// The lockfile's text, as [`write`](Self::write) writes it.
    pub fn to_text(&self) -> anyhow::Result<String> {
        let mut text =
            String::from("# Written by anbiq: what produced each step's outputs. Commit it to share provenance.\n");
        text.push_str(&serde_yaml::to_string(self)?);
        Ok(text)
    }

    /// Reads a lockfile; `Ok(None)` if there is none.
    pub fn read(path: &Path) -> anyhow::Result<Option<Lockfile>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let lock: Lockfile =
            serde_yaml::from_str(&text).with_context(|| format!("{}: not a valid lockfile", path.display()))?;
        Ok(Some(lock))
    }

    /// Writes the lockfile atomically (readers see the old one or the new one), unless it already says this.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        write_atomic_if_changed(path, self.to_text()?.as_bytes())
            .with_context(|| format!("writing the lockfile {}", path.display()))
    }

    pub fn step(&self, id: &str) -> Option<&LockedStep> {
        self.steps.iter().find(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests {
    /// Every f64 a lockfile or manifest holds comes back bit-identical: YAML (the lockfile) and JSON (manifests,
    /// store roots, histories) both round-trip exactly, including values whose shortest form is 17 digits.
    #[test]
    fn floats_round_trip_bit_identically_through_yaml_and_json() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut values: Vec<f64> = vec![0.9805013927576601, 0.1 + 0.2, 1e-300, 5e-324, f64::MAX, -0.0, 1.0 / 3.0];
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let x = f64::from_bits(state);
            if x.is_finite() {
                values.push(x);
            }
            values.push((state >> 11) as f64 / (1u64 << 53) as f64); // the [0, 1) values metrics are made of
        }
        let json: Vec<f64> = serde_json::from_str(&serde_json::to_string(&values).unwrap()).unwrap();
        let yaml: Vec<f64> = serde_yaml::from_str(&serde_yaml::to_string(&values).unwrap()).unwrap();
        // Metrics travel as `serde_json::Value`s inside YAML.
        let as_values: Vec<serde_json::Value> = values.iter().map(|&x| serde_json::json!(x)).collect();
        let yaml_values: Vec<serde_json::Value> =
            serde_yaml::from_str(&serde_yaml::to_string(&as_values).unwrap()).unwrap();
        for (((x, j), y), v) in values.iter().zip(&json).zip(&yaml).zip(&yaml_values) {
            assert_eq!(x.to_bits(), j.to_bits(), "JSON changed {x:e} into {j:e}");
            assert_eq!(x.to_bits(), y.to_bits(), "YAML changed {x:e} into {y:e}");
            assert_eq!(x.to_bits(), v.as_f64().unwrap().to_bits(), "YAML via a JSON value changed {x:e} into {v}");
        }
    }
}

//! The lockfile: `<workflow>.lock` beside the workflow, YAML in a stable order, saying what produced what.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::store::{write_atomic, Manifest};
use crate::graph::{KeyEnv, KeyIngredients, StepKey};

pub const LOCKFILE_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lockfile {
    pub version: u32,
    pub workflow: String,
    pub engine: String,
    pub libtorch: String,
    pub seed: u64,
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
    pub seconds: f64,
    pub device: String,
    pub threads: usize,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metrics: serde_json::Map<String, serde_json::Value>,
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
        }
    }
}

impl Lockfile {
    pub fn new(workflow: &str, seed: u64, env: &KeyEnv) -> Self {
        Lockfile {
            version: LOCKFILE_VERSION,
            workflow: workflow.to_string(),
            engine: env.engine.clone(),
            libtorch: env.libtorch.clone(),
            seed,
            steps: Vec::new(),
        }
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

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut text =
            String::from("# Written by anbiq: what produced each step's outputs. Commit it to share provenance.\n");
        text.push_str(&serde_yaml::to_string(self)?);
        write_atomic(path, text.as_bytes())
    }

    pub fn step(&self, id: &str) -> Option<&LockedStep> {
        self.steps.iter().find(|s| s.id == id)
    }
}

//! Teacher logits as stored by `infer` and read by `filter` and `distill`.
//!
//! Files: `logits.safetensors` with either `logits` [N, C] (f32 or f16), or, for top-k storage, `logprobs` [N, k]
//! (the teacher's log-probabilities at T = 1 for its k most likely classes), `indices` [N, k] and `rest` [N] (the
//! probability mass outside the top k); always `predictions` [N]. `meta.json` says which dataset artifact the rows
//! belong to, so consumers can check alignment.
//!
//! Top-k storage rebuilds a full distribution by spreading the leftover mass evenly over the other classes: exact
//! for the top k and for the total, an approximation only inside the tail.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

const FILE: &str = "logits.safetensors";
const META: &str = "meta.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoreDtype {
    F32,
    #[default]
    F16,
}

impl StoreDtype {
    pub fn kind(self) -> Kind {
        match self {
            StoreDtype::F32 => Kind::Float,
            StoreDtype::F16 => Kind::Half,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LogitsMeta {
    /// The plain dataset artifact the rows belong to, relative to the store root.
    pub dataset: PathBuf,
    pub samples: i64,
    pub classes: i64,
    pub dtype: StoreDtype,
    pub top_k: Option<i64>,
    /// The model that produced them, as referenced in the workflow.
    pub model: String,
}

pub enum StoredLogits {
    Full(Tensor),
    TopK { logprobs: Tensor, indices: Tensor, rest: Tensor },
}

pub struct LogitsArtifact {
    pub meta: LogitsMeta,
    pub stored: StoredLogits,
    /// Teacher's top-1 class per row (i64).
    pub predictions: Tensor,
}

/// Class ids fit in 16 bits for any classifier and most vocabularies: a quarter of the bytes of i64 on disk.
fn class_id_kind(classes: i64) -> Kind {
    if classes <= i16::MAX as i64 {
        Kind::Int16
    } else {
        Kind::Int
    }
}

impl LogitsArtifact {
    /// Builds the artifact from f32 logits [N, C], converting to the storage form.
    pub fn from_logits(logits: &Tensor, meta: LogitsMeta) -> LogitsArtifact {
        let predictions = logits.argmax(-1, false);
        let stored = match meta.top_k {
            None => StoredLogits::Full(logits.to_kind(meta.dtype.kind())),
            Some(k) => {
                let logp = logits.log_softmax(-1, Kind::Float);
                let (values, indices) = logp.topk(k, -1, true, true);
                let mass: Tensor = values.exp().sum_dim_intlist(-1, false, Kind::Float);
                let rest = (-mass + 1.0).clamp_min(0.0);
                StoredLogits::TopK {
                    logprobs: values.to_kind(meta.dtype.kind()),
                    indices: indices.to_kind(class_id_kind(meta.classes)),
                    rest: rest.to_kind(meta.dtype.kind()),
                }
            }
        };
        LogitsArtifact { meta, stored, predictions }
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let predictions = self.predictions.to_kind(class_id_kind(self.meta.classes));
        let mut named: Vec<(&str, &Tensor)> = vec![("predictions", &predictions)];
        match &self.stored {
            StoredLogits::Full(l) => {
                super::check::finite_to_store(l, "logits")?;
                named.push(("logits", l))
            }
            StoredLogits::TopK { logprobs, indices, rest } => {
                super::check::finite_to_store(logprobs, "log-probabilities")?;
                named.extend([("logprobs", logprobs), ("indices", indices), ("rest", rest)])
            }
        }
        Tensor::write_safetensors(&named, dir.join(FILE))
            .with_context(|| format!("writing {}", dir.join(FILE).display()))?;
        std::fs::write(dir.join(META), serde_json::to_string_pretty(&self.meta)? + "\n")?;
        Ok(())
    }

    pub fn read(dir: &Path) -> anyhow::Result<LogitsArtifact> {
        let meta: LogitsMeta = serde_json::from_str(
            &std::fs::read_to_string(dir.join(META))
                .with_context(|| format!("reading {}", dir.join(META).display()))?,
        )?;
        let mut tensors: Vec<(String, Tensor)> =
            crate::nn::weights::safetensors::read(&dir.join(FILE))?.into_iter().collect();
        let mut take = |name: &str| -> anyhow::Result<Tensor> {
            let i = tensors
                .iter()
                .position(|(n, _)| n == name)
                .with_context(|| format!("{}: no tensor `{name}`", dir.display()))?;
            Ok(tensors.swap_remove(i).1)
        };
        let predictions = take("predictions")?.to_kind(Kind::Int64);
        let stored = match meta.top_k {
            None => StoredLogits::Full(take("logits")?),
            Some(_) => StoredLogits::TopK {
                logprobs: take("logprobs")?,
                indices: take("indices")?.to_kind(Kind::Int64),
                rest: take("rest")?.to_kind(Kind::Float),
            },
        };
        if predictions.size()[0] != meta.samples {
            bail!("{}: {} predictions for {} samples", dir.display(), predictions.size()[0], meta.samples);
        }
        let file = dir.join(FILE);
        super::check::ids_below(&predictions, meta.classes, "predictions", &file)?;
        match &stored {
            StoredLogits::Full(logits) => {
                if logits.size() != [meta.samples, meta.classes] {
                    bail!(
                        "{}: logits {:?} for {} samples of {} classes",
                        file.display(),
                        logits.size(),
                        meta.samples,
                        meta.classes
                    );
                }
                super::check::finite(logits, "logits", &file)?;
            }
            StoredLogits::TopK { logprobs, indices, rest } => {
                super::check::finite(logprobs, "logprobs", &file)?;
                super::check::finite(rest, "rest", &file)?;
                super::check::ids_below(indices, meta.classes, "indices", &file)?;
            }
        }
        Ok(LogitsArtifact { meta, stored, predictions })
    }

    /// The stored rows moved to `device`, where lookups then gather them (rows are moved to the store's device).
    pub fn to_device(&self, device: Device) -> Result<LogitsArtifact, tch::TchError> {
        let stored = match &self.stored {
            StoredLogits::Full(l) => StoredLogits::Full(l.f_to_device(device)?),
            StoredLogits::TopK { logprobs, indices, rest } => StoredLogits::TopK {
                logprobs: logprobs.f_to_device(device)?,
                indices: indices.f_to_device(device)?,
                rest: rest.f_to_device(device)?,
            },
        };
        Ok(LogitsArtifact { meta: self.meta.clone(), stored, predictions: self.predictions.shallow_clone() })
    }

    fn device(&self) -> Device {
        match &self.stored {
            StoredLogits::Full(l) => l.device(),
            StoredLogits::TopK { logprobs, .. } => logprobs.device(),
        }
    }

    /// For top-k storage, the stored `(logprobs, indices, rest)` of the given rows.
    pub fn top_k(&self, rows: &Tensor) -> Option<(Tensor, Tensor, Tensor)> {
        let rows = rows.to_device(self.device());
        match &self.stored {
            StoredLogits::Full(_) => None,
            StoredLogits::TopK { logprobs, indices, rest } => {
                Some((logprobs.index_select(0, &rows), indices.index_select(0, &rows), rest.index_select(0, &rows)))
            }
        }
    }

    /// The teacher's log-probabilities at temperature 1 for the given rows, [B, C] f32 (rebuilt from top-k if needed).
    pub fn log_probs(&self, rows: &Tensor) -> Tensor {
        self.dense_logits(rows).log_softmax(-1, Kind::Float)
    }

    /// Logits (up to a per-row constant) for the given rows as f32 [B, C]: softmax(x / T) is the teacher's
    /// distribution at temperature T.
    pub fn dense_logits(&self, rows: &Tensor) -> Tensor {
        let rows = &rows.to_device(self.device());
        match &self.stored {
            StoredLogits::Full(l) => l.index_select(0, rows).to_kind(Kind::Float),
            StoredLogits::TopK { logprobs, indices, rest } => {
                let k = indices.size()[1];
                let others = (self.meta.classes - k).max(1) as f64;
                let top = logprobs.index_select(0, rows).to_kind(Kind::Float);
                let idx = indices.index_select(0, rows);
                // Each class outside the top k gets an equal share of the leftover mass (tiny floor avoids log 0).
                let tail = (rest.index_select(0, rows).clamp_min(1e-12) / others).log().unsqueeze(-1);
                let dense = tail.expand([rows.size()[0], self.meta.classes], false).contiguous();
                dense.scatter(-1, &idx, &top)
            }
        }
    }
}

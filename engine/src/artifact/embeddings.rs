//! A sentence encoder's embeddings of a dataset, as stored by `infer` on an encoder and read by `distill`.
//!
//! Files: `embeddings.safetensors` with `embeddings` `[N, dim]` (f16 by default, or f32) and `embeddings.json`
//! saying which dataset artifact the rows belong to and which model produced them. The artifact is declared as
//! `logits` (what `infer` outputs); its own file names tell it apart ([`is_embeddings`]).
//!
//! With `store.hidden_states`, `hidden_states.safetensors` beside them holds the teacher's hidden states of those
//! layers at every real token ([`StoredStates`]): `lengths` `[N]` (real tokens per sentence, i64) and, per state
//! number `n`, `state.n` `[tokens, d]` — sentence after sentence, each its own tokens in order, no padding stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::logits::StoreDtype;

const FILE: &str = "embeddings.safetensors";
const META: &str = "embeddings.json";
const STATES_FILE: &str = "hidden_states.safetensors";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsMeta {
    /// The plain dataset artifact the rows belong to, relative to the store root.
    pub dataset: PathBuf,
    pub samples: i64,
    /// Width of one embedding.
    pub dim: i64,
    pub dtype: StoreDtype,
    /// The model that produced them, as referenced in the workflow.
    pub model: String,
    /// The hidden states stored beside them, numbered as [`crate::nn::Encoder`]'s (none by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden_states: Vec<usize>,
}

pub struct EmbeddingsArtifact {
    pub meta: EmbeddingsMeta,
    /// `[N, dim]` in the stored dtype.
    pub embeddings: Tensor,
    /// The hidden states of `meta.hidden_states`, if any.
    pub states: Option<StoredStates>,
}

/// A teacher's hidden states at every real token of every sentence, ragged: no padding is stored.
pub struct StoredStates {
    /// Real tokens of each sentence, `[N]` i64.
    lengths: Tensor,
    /// Where each sentence's first token is in the tables, `[N]` i64.
    offsets: Tensor,
    /// Per state number: `[tokens, d]` in the stored dtype.
    tables: BTreeMap<usize, Tensor>,
}

/// Is `dir` an embeddings artifact (rather than logits)?
pub fn is_embeddings(dir: &Path) -> bool {
    dir.join(META).is_file()
}

impl EmbeddingsArtifact {
    /// From f32 embeddings `[N, dim]`, converted to the stored dtype.
    /// From f32 embeddings `[N, dim]`, converted to the stored dtype, with the hidden states `states` (numbers and
    /// per-token tables, see [`StoredStates::new`]) if any.
    pub fn new(
        embeddings: &Tensor,
        dataset: PathBuf,
        dtype: StoreDtype,
        model: String,
        states: Option<StoredStates>,
    ) -> EmbeddingsArtifact {
        let (samples, dim) = embeddings.size2().expect("embeddings [N, dim]");
        let hidden_states = states.as_ref().map(|s| s.numbers()).unwrap_or_default();
        let meta = EmbeddingsMeta { dataset, samples, dim, dtype, model, hidden_states };
        let states = states.map(|s| s.into_kind(dtype.kind()));
        EmbeddingsArtifact { meta, embeddings: embeddings.to_kind(dtype.kind()), states }
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        Tensor::write_safetensors(&[("embeddings", &self.embeddings)], dir.join(FILE))
            .with_context(|| format!("writing {}", dir.join(FILE).display()))?;
        if let Some(states) = &self.states {
            states.write(&dir.join(STATES_FILE))?;
        }
        std::fs::write(dir.join(META), serde_json::to_string_pretty(&self.meta)? + "\n")?;
        Ok(())
    }

    /// Bytes of the stored hidden states (0 without them).
    pub fn state_bytes(&self) -> i64 {
        self.states
            .as_ref()
            .map_or(0, |s| s.tables.values().map(|t| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64).sum())
    }

    /// Reads and checks the artifact: one finite row of `dim` values per sample.
    pub fn read(dir: &Path) -> anyhow::Result<EmbeddingsArtifact> {
        let meta_path = dir.join(META);
        let meta: EmbeddingsMeta = serde_json::from_str(
            &std::fs::read_to_string(&meta_path).with_context(|| format!("reading {}", meta_path.display()))?,
        )
        .with_context(|| format!("{}: not an embeddings description", meta_path.display()))?;
        let path = dir.join(FILE);
        let mut tensors =
            Tensor::read_safetensors(&path).with_context(|| format!("{}: not a safetensors file", path.display()))?;
        let Some(i) = tensors.iter().position(|(n, _)| n == "embeddings") else {
            bail!("{}: no tensor `embeddings`", path.display());
        };
        let embeddings = tensors.swap_remove(i).1;
        if embeddings.size() != [meta.samples, meta.dim] {
            bail!(
                "{}: embeddings {:?}, {META} says [{}, {}]",
                path.display(),
                embeddings.size(),
                meta.samples,
                meta.dim
            );
        }
        let finite = embeddings.to_kind(Kind::Float).isfinite().all().int64_value(&[]) == 1;
        if !finite {
            bail!("{}: embeddings hold NaN or infinite values (a damaged store?)", path.display());
        }
        let states = match meta.hidden_states.is_empty() {
            true => None,
            false => Some(StoredStates::read(&dir.join(STATES_FILE), &meta)?),
        };
        Ok(EmbeddingsArtifact { meta, embeddings, states })
    }

    /// The embeddings of the given rows, f32 `[B, dim]`.
    pub fn rows(&self, rows: &Tensor) -> Tensor {
        self.embeddings.index_select(0, &rows.to_device(self.embeddings.device())).to_kind(Kind::Float)
    }

    /// The embeddings moved to `device`, where lookups then gather them.
    pub fn to_device(&self, device: tch::Device) -> Result<EmbeddingsArtifact, tch::TchError> {
        let states = self.states.as_ref().map(|s| s.to_device(device)).transpose()?;
        Ok(EmbeddingsArtifact { meta: self.meta.clone(), embeddings: self.embeddings.f_to_device(device)?, states })
    }
}

impl StoredStates {
    /// From the real tokens of each sentence `lengths` `[N]` and, per state number, its table `[Σ lengths, d]`.
    pub fn new(lengths: Tensor, tables: BTreeMap<usize, Tensor>) -> StoredStates {
        let offsets = lengths.cumsum(0, Kind::Int64) - &lengths;
        StoredStates { lengths, offsets, tables }
    }

    /// The state numbers held, in order.
    pub fn numbers(&self) -> Vec<usize> {
        self.tables.keys().copied().collect()
    }

    /// Width of the states.
    pub fn width(&self) -> i64 {
        self.tables.values().next().map_or(0, |t| t.size()[1])
    }

    /// Real tokens of each sentence, `[N]`.
    pub fn lengths(&self) -> &Tensor {
        &self.lengths
    }

    /// State `number` of sentences `rows` `[B]`, f32 `[B, t, d]`: each sentence's tokens from position 0, zeros past
    /// its end (`t` at least the longest of them, as the student's batch is cut).
    pub fn padded(&self, number: usize, rows: &Tensor, t: i64) -> Tensor {
        let table = &self.tables[&number];
        let device = table.device();
        let rows = rows.to_device(device);
        let positions = Tensor::arange(t, (Kind::Int64, device)).unsqueeze(0);
        let real = positions.lt_tensor(&self.lengths.index_select(0, &rows).unsqueeze(1));
        let at = (self.offsets.index_select(0, &rows).unsqueeze(1) + positions).where_scalarother(&real, 0);
        let (b, d) = (rows.size()[0], table.size()[1]);
        let gathered = table.index_select(0, &at.view([-1])).view([b, t, d]).to_kind(Kind::Float);
        gathered * real.unsqueeze(-1).to_kind(Kind::Float)
    }

    fn into_kind(self, kind: Kind) -> StoredStates {
        let tables = self.tables.into_iter().map(|(n, t)| (n, t.to_kind(kind))).collect();
        StoredStates { tables, ..self }
    }

    fn to_device(&self, device: tch::Device) -> Result<StoredStates, tch::TchError> {
        let mut tables = BTreeMap::new();
        for (n, t) in &self.tables {
            tables.insert(*n, t.f_to_device(device)?);
        }
        Ok(StoredStates {
            lengths: self.lengths.f_to_device(device)?,
            offsets: self.offsets.f_to_device(device)?,
            tables,
        })
    }

    fn write(&self, path: &Path) -> anyhow::Result<()> {
        let names: Vec<String> = self.tables.keys().map(|n| format!("state.{n}")).collect();
        let mut tensors = vec![("lengths", &self.lengths)];
        tensors.extend(names.iter().map(String::as_str).zip(self.tables.values()));
        Tensor::write_safetensors(&tensors, path).with_context(|| format!("writing {}", path.display()))
    }

    /// Reads and checks the states `meta` lists: one length per sample, tables of `Σ lengths` finite rows.
    fn read(path: &Path, meta: &EmbeddingsMeta) -> anyhow::Result<StoredStates> {
        let mut tensors: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
            .with_context(|| format!("{}: not a safetensors file", path.display()))?
            .into_iter()
            .collect();
        let Some(lengths) = tensors.remove("lengths") else {
            bail!("{}: no tensor `lengths`", path.display());
        };
        if lengths.size() != [meta.samples] || lengths.kind() != Kind::Int64 {
            bail!(
                "{}: `lengths` is {:?} {:?}, not [{}] i64",
                path.display(),
                lengths.kind(),
                lengths.size(),
                meta.samples
            );
        }
        let tokens = lengths.sum(Kind::Int64).int64_value(&[]);
        let mut tables = BTreeMap::new();
        for &n in &meta.hidden_states {
            let Some(table) = tensors.remove(&format!("state.{n}")) else {
                bail!("{}: no tensor `state.{n}` ({META} lists it)", path.display());
            };
            if table.dim() != 2 || table.size()[0] != tokens {
                bail!(
                    "{}: `state.{n}` is {:?}, not [{tokens}, d] (the sentences' real tokens)",
                    path.display(),
                    table.size()
                );
            }
            if table.to_kind(Kind::Float).isfinite().all().int64_value(&[]) != 1 {
                bail!("{}: `state.{n}` holds NaN or infinite values (a damaged store?)", path.display());
            }
            tables.insert(n, table);
        }
        Ok(StoredStates::new(lengths, tables))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_states_come_back_padded_per_batch() {
        // Three sentences of 2, 1 and 3 tokens; width 2; the value of token j of sentence i is (10i + j, -(10i + j)).
        let lengths = Tensor::from_slice(&[2i64, 1, 3]);
        let values: Vec<f32> = [(0, 2), (1, 1), (2, 3)]
            .iter()
            .flat_map(|&(i, n)| (0..n).flat_map(move |j| [(10 * i + j) as f32, -((10 * i + j) as f32)]))
            .collect();
        let table = Tensor::from_slice(&values).view([6, 2]);
        let states = StoredStates::new(lengths, [(4, table)].into());
        let got = states.padded(4, &Tensor::from_slice(&[2i64, 0]), 3);
        let expected = Tensor::from_slice(&[20.0f32, -20.0, 21.0, -21.0, 22.0, -22.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0])
            .view([2, 3, 2]);
        assert!(got.equal(&expected), "{got:?}");
    }
}

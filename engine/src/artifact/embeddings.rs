//! A sentence encoder's embeddings of a dataset, as stored by `infer` on an encoder and read by `distill`.
//!
//! Files: `embeddings.safetensors` with `embeddings` `[N, dim]` (f16 by default, or f32) and `embeddings.json`
//! saying which dataset artifact the rows belong to and which model produced them. The artifact is declared as
//! `logits` (what `infer` outputs); its own file names tell it apart ([`is_embeddings`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::logits::StoreDtype;

const FILE: &str = "embeddings.safetensors";
const META: &str = "embeddings.json";

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
}

pub struct EmbeddingsArtifact {
    pub meta: EmbeddingsMeta,
    /// `[N, dim]` in the stored dtype.
    pub embeddings: Tensor,
}

/// Is `dir` an embeddings artifact (rather than logits)?
pub fn is_embeddings(dir: &Path) -> bool {
    dir.join(META).is_file()
}

impl EmbeddingsArtifact {
    /// From f32 embeddings `[N, dim]`, converted to the stored dtype.
    pub fn new(embeddings: &Tensor, dataset: PathBuf, dtype: StoreDtype, model: String) -> EmbeddingsArtifact {
        let (samples, dim) = embeddings.size2().expect("embeddings [N, dim]");
        let meta = EmbeddingsMeta { dataset, samples, dim, dtype, model };
        EmbeddingsArtifact { meta, embeddings: embeddings.to_kind(dtype.kind()) }
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        Tensor::write_safetensors(&[("embeddings", &self.embeddings)], dir.join(FILE))
            .with_context(|| format!("writing {}", dir.join(FILE).display()))?;
        std::fs::write(dir.join(META), serde_json::to_string_pretty(&self.meta)? + "\n")?;
        Ok(())
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
        Ok(EmbeddingsArtifact { meta, embeddings })
    }

    /// The embeddings of the given rows, f32 `[B, dim]`.
    pub fn rows(&self, rows: &Tensor) -> Tensor {
        self.embeddings.index_select(0, &rows.to_device(self.embeddings.device())).to_kind(Kind::Float)
    }

    /// The embeddings moved to `device`, where lookups then gather them.
    pub fn to_device(&self, device: tch::Device) -> Result<EmbeddingsArtifact, tch::TchError> {
        Ok(EmbeddingsArtifact { meta: self.meta.clone(), embeddings: self.embeddings.f_to_device(device)? })
    }
}

//! Dataset views, and datasets or views as step inputs.
//!
//! A view is a dataset artifact that holds only indices into another (base) dataset artifact — a filter's output —
//! so later steps use the kept samples without copying them. `view.json` names the base by its path inside the
//! store; `indices.safetensors` holds the i64 indices. Views always point at a plain dataset (a view of a view is
//! flattened when written), so one hop resolves any input.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::artifact::dataset::read_dataset;
use crate::data::Dataset;

pub const VIEW_FILE: &str = "view.json";
const INDICES_FILE: &str = "indices.safetensors";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ViewMeta {
    /// The base dataset artifact, relative to the store root.
    pub base: PathBuf,
    pub samples: usize,
}

/// A dataset input, with where its rows come from.
pub struct LoadedData {
    pub dataset: Dataset,
    /// The plain dataset artifact the rows live in (the input itself, or a view's base), relative to the store.
    pub base: PathBuf,
    /// For a view: row i of `dataset` is row `base_indices[i]` of the base. `None` means the identity.
    pub base_indices: Option<Tensor>,
}

impl LoadedData {
    /// Indices into the base of the rows `idx` of this dataset.
    pub fn base_rows(&self, idx: &Tensor) -> Tensor {
        match &self.base_indices {
            Some(b) => b.index_select(0, idx),
            None => idx.shallow_clone(),
        }
    }
}

/// Loads the dataset (or view) in `dir`, a directory of the store at `store_root`.
pub fn load_dir(store_root: &Path, dir: &Path) -> anyhow::Result<LoadedData> {
    let view_path = dir.join(VIEW_FILE);
    if !view_path.exists() {
        let dataset = read_dataset(dir)?;
        let base = dir
            .strip_prefix(store_root)
            .with_context(|| format!("{} is not inside the store {}", dir.display(), store_root.display()))?;
        return Ok(LoadedData { dataset, base: base.to_path_buf(), base_indices: None });
    }
    let meta: ViewMeta = serde_json::from_str(&std::fs::read_to_string(&view_path)?)
        .with_context(|| format!("reading {}", view_path.display()))?;
    let indices = read_indices(dir)?;
    let base = read_dataset(&store_root.join(&meta.base))?;
    Ok(LoadedData { dataset: base.select(&indices), base: meta.base, base_indices: Some(indices) })
}

/// Writes a view selecting `rows` (indices into `of`'s rows) of the dataset `of`.
pub fn write_view(dir: &Path, of: &LoadedData, rows: &Tensor) -> anyhow::Result<()> {
    let base_rows = of.base_rows(rows);
    let meta = ViewMeta { base: of.base.clone(), samples: base_rows.size()[0] as usize };
    Tensor::write_safetensors(&[("indices", &base_rows)], dir.join(INDICES_FILE))?;
    std::fs::write(dir.join(VIEW_FILE), serde_json::to_string_pretty(&meta)? + "\n")?;
    // A view is also readable as a dataset on its own: its meta travels with it.
    std::fs::write(dir.join("meta.json"), serde_json::to_string_pretty(&of.dataset.meta)? + "\n")?;
    Ok(())
}

fn read_indices(dir: &Path) -> anyhow::Result<Tensor> {
    let path = dir.join(INDICES_FILE);
    let tensors = Tensor::read_safetensors(&path).with_context(|| format!("reading {}", path.display()))?;
    tensors.into_iter().find(|(n, _)| n == "indices").map(|(_, t)| t).context("view without `indices`")
}

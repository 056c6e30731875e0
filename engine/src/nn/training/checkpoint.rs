//! Training checkpoints: everything needed to continue a [`Learner`](super::learner::Learner) run and end with the
//! same weights as an uninterrupted one — weights, optimiser buffers, both random streams, the position in the data
//! and the history so far.
//!
//! With `keep: best …` it also holds the best epoch's weights, so a resumed run ends with the same kept weights.
//!
//! A checkpoint directory holds `current/` (the newest complete checkpoint); a new one is written to `next/`, then
//! swapped in with renames, so a crash at any moment leaves a complete checkpoint (`current/` or `previous/`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;

use super::learner::History;
use super::optimizer::Optimizer;

/// Where a run is in its loop.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Position {
    /// The epoch in progress (1-based).
    pub epoch: usize,
    /// Batches of that epoch already done.
    pub batch: usize,
    pub global_step: usize,
    /// Sum over the epoch's done batches of loss × batch size.
    pub loss_sum: f64,
    /// The same sum for each term of a loss of several ([`History::terms`]).
    #[serde(default)]
    pub term_sums: Vec<f64>,
    /// The shuffling stream as it was at the start of `epoch` (it regenerates the epoch's order).
    pub shuffle_rng: [u64; 4],
    pub step_rng: [u64; 4],
    pub history: History,
}

pub struct Checkpoint {
    dir: PathBuf,
}

const STATE: &str = "state.json";
const WEIGHTS: &str = "weights.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";
const BEST: &str = "best.safetensors";

impl Checkpoint {
    pub fn new(dir: impl Into<PathBuf>) -> Checkpoint {
        Checkpoint { dir: dir.into() }
    }

    /// Saves a complete checkpoint (with the best epoch's weights, when the run keeps them), replacing the previous
    /// one only once the new one is on disk.
    pub fn save(
        &self,
        vs: &VarStore,
        opt: &Optimizer,
        position: &Position,
        best: Option<&[(String, Tensor)]>,
    ) -> anyhow::Result<()> {
        let next = self.dir.join("next");
        if next.exists() {
            fs::remove_dir_all(&next)?;
        }
        fs::create_dir_all(&next).with_context(|| format!("creating {}", next.display()))?;
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let named: Vec<(String, Tensor)> =
            named.into_iter().map(|(n, t)| (n, t.detach().to_device(tch::Device::Cpu).contiguous())).collect();
        Tensor::write_safetensors(&named, next.join(WEIGHTS))?;
        opt.save(&next.join(OPTIMIZER))?;
        let mut files = vec![WEIGHTS, OPTIMIZER, STATE];
        if let Some(best) = best {
            let on_cpu: Vec<(&str, Tensor)> =
                best.iter().map(|(n, t)| (n.as_str(), t.to_device(tch::Device::Cpu).contiguous())).collect();
            Tensor::write_safetensors(&on_cpu, next.join(BEST))?;
            files.push(BEST);
        }
        fs::write(next.join(STATE), serde_json::to_string(position)?)?;
        for f in files {
            fs::File::open(next.join(f))?.sync_all()?;
        }
        let current = self.dir.join("current");
        let previous = self.dir.join("previous");
        if previous.exists() {
            fs::remove_dir_all(&previous)?;
        }
        if current.exists() {
            fs::rename(&current, &previous)?;
        }
        fs::rename(&next, &current)?;
        if previous.exists() {
            fs::remove_dir_all(&previous)?;
        }
        Ok(())
    }

    /// Loads the newest complete checkpoint into `vs` and `opt`, with the best epoch's weights when it holds them
    /// (on `vs`'s device); `None` when there is none.
    pub fn load(&self, vs: &VarStore, opt: &mut Optimizer) -> anyhow::Result<Option<(Position, Option<Weights>)>> {
        let Some((dir, position)) = self.newest()? else { return Ok(None) };
        load_weights(vs, &dir.join(WEIGHTS))?;
        opt.load(&dir.join(OPTIMIZER))?;
        let best = dir.join(BEST);
        let best = best
            .exists()
            .then(|| Tensor::read_safetensors(&best).with_context(|| format!("reading {}", best.display())))
            .transpose()?
            .map(|named| named.into_iter().map(|(n, t)| (n, t.to_device(vs.device()))).collect());
        Ok(Some((position, best)))
    }
}

impl Checkpoint {
    /// Where the newest complete checkpoint would resume (`None`: there is none), without loading it.
    pub fn position(&self) -> anyhow::Result<Option<Position>> {
        Ok(self.newest()?.map(|(_, position)| position))
    }

    fn newest(&self) -> anyhow::Result<Option<(PathBuf, Position)>> {
        let Some(dir) = ["current", "previous"].iter().map(|d| self.dir.join(d)).find(|d| d.join(STATE).exists())
        else {
            return Ok(None);
        };
        let position: Position = serde_json::from_str(&fs::read_to_string(dir.join(STATE))?)
            .with_context(|| format!("reading {}", dir.join(STATE).display()))?;
        Ok(Some((dir, position)))
    }
}

/// Tensors by name.
pub type Weights = Vec<(String, Tensor)>;

fn load_weights(vs: &VarStore, path: &Path) -> anyhow::Result<()> {
    let saved = Tensor::read_safetensors(path).with_context(|| format!("reading {}", path.display()))?;
    let variables = vs.variables();
    if saved.len() != variables.len() {
        anyhow::bail!("{}: {} tensors for a model with {}", path.display(), saved.len(), variables.len());
    }
    tch::no_grad(|| {
        for (name, t) in saved {
            let mut v = variables
                .get(&name)
                .with_context(|| format!("{}: unknown tensor `{name}`", path.display()))?
                .shallow_clone();
            v.copy_(&t);
        }
        Ok(())
    })
}

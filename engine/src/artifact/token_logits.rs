//! A language model's per-token teacher logits, as stored by `infer` on text data and read by `distill`.
//!
//! Every position of every window keeps its top-k log-probabilities (at T = 1), their token ids and the leftover
//! probability mass outside them, in shards written as inference goes so memory stays bounded by one shard
//! whatever the corpus size:
//! - `tokens.json`: [`TokenLogitsMeta`] (windows, positions, vocabulary size, k, dtype, windows per shard);
//! - `shard-00000.safetensors`, …: `logprobs` [n, T, k] f16/f32, `indices` [n, T, k] u16 (u32 past 65,536 tokens),
//!   `rest` [n, T] f16/f32, `predictions` [n, T] (the teacher's most likely next token, u16/u32): with f16 values,
//!   4k + 4 bytes per token.
//!
//! Reading rebuilds dense logits like the classifier store ([`super::logits`]): exact for the top k and for the total
//! mass. The store does not know how the leftover mass is spread, so two rebuilds are offered (`distill`'s
//! `top_k_tail`):
//! - [`expand`] (`even`): spread evenly over the other tokens, i.e. the teacher's tail is assumed flat;
//! - [`expand_like`] (`student`): spread like the student's own current distribution over those tokens. Forward KL
//!   against that target is exactly the KL between the (k + 1)-bucket distributions — the top k tokens and "all
//!   the others" — and so is its gradient: the student is asked to put the right total mass outside the teacher's
//!   top k and nothing about how to spread it, which is all the store knows (exact at temperature 1).
//!
//! `k` should cover most of the mass either way; the `rest_mean` metric of `infer` says how much is left.
//!
//! A sampled store ([`sample`], `store.sample`) has the same layout: its slots hold tokens drawn from the teacher's
//! distribution with their empirical probabilities, and no leftover mass.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::ids::Stored;
use super::logits::StoreDtype;

pub const META: &str = "tokens.json";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenLogitsMeta {
    /// The plain dataset artifact the windows belong to, relative to the store root.
    pub dataset: PathBuf,
    pub windows: i64,
    /// Positions per window.
    pub time: i64,
    /// Vocabulary size.
    pub classes: i64,
    /// Slots per position: the top k, or the draws of a sampled store.
    pub top_k: i64,
    /// A sampled store ([`sample`]): the `top_k` slots hold the most drawn of tokens drawn from the distribution, not
    /// its top k.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sampled: bool,
    pub dtype: StoreDtype,
    /// The model that produced them, as referenced in the workflow.
    pub model: String,
    /// Windows in each shard, in order.
    pub shards: Vec<i64>,
}

fn shard_file(i: usize) -> String {
    format!("shard-{i:05}.safetensors")
}

/// Is `dir` a per-token logits artifact (rather than a classifier's)?
pub fn is_token_logits(dir: &Path) -> bool {
    dir.join(META).is_file()
}

/// One compressed batch: top-k log-probabilities, their ids, the leftover mass, the arg-max.
pub struct TopK {
    pub logprobs: Tensor,
    pub indices: Tensor,
    pub rest: Tensor,
    pub predictions: Tensor,
}

/// Top-k compression of logits `[.., V]` (any leading shape), computed in f32 and stored in `dtype`.
pub fn compress(logits: &Tensor, k: i64, dtype: StoreDtype) -> TopK {
    let logp = logits.to_kind(Kind::Float).log_softmax(-1, Kind::Float);
    let (values, indices) = logp.topk(k, -1, true, true);
    let rest = (-values.exp().sum_dim_intlist(-1, false, Kind::Float) + 1.0).clamp_min(0.0);
    let index_kind =
        if logits.size().last().copied().unwrap_or(0) <= i16::MAX as i64 { Kind::Int16 } else { Kind::Int };
    TopK {
        predictions: indices.select(-1, 0),
        logprobs: values.to_kind(dtype.kind()),
        indices: indices.to_kind(index_kind),
        rest: rest.to_kind(dtype.kind()),
    }
}

/// What a store keeps of each position's distribution (`infer`'s `store.top_k`, or `store.sample` and `slots`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sparse {
    /// The k most likely tokens and the leftover mass.
    TopK(i64),
    /// `draws` tokens drawn from the distribution, the `slots` most drawn kept ([`sample`]).
    Sample { draws: i64, slots: i64 },
}

/// Random-sampling compression of logits `[B, T, V]` (Anshumann et al., 2025, "Sparse Logit Sampling"): at every
/// position `draws` tokens are drawn from the teacher's distribution (at T = 1); the `slots` most drawn distinct
/// tokens are kept (ties: the lower id), each with log(its count / `draws`), and the draws of the tokens that did not
/// fit are the leftover mass `rest` (0 when `slots` = `draws`: every draw fits). Slots left over when fewer tokens
/// were drawn repeat a kept token with its value, so rebuilding ([`expand`], [`expand_like`]) scatters consistent
/// values. The target is then the empirical distribution of the draws — an unbiased estimate of the teacher's, so the
/// student's gradient `q − p̂` is the full-distribution gradient `q − p` in expectation, where a top k is biased
/// towards the head. More draws than slots buy a lower-variance estimate of the head for the same bytes but drop the
/// rarer draws — a top k's bias again (on SmolLM2, 64 draws into 16 slots distilled worse than 16 into 16). Window `w` of the batch draws from uniforms seeded by `seeds[w]`, so what a window stores
/// depends on neither the batch nor the shard it is in. Returns the compression and the number of distinct tokens
/// drawn, summed over positions.
pub fn sample(logits: &Tensor, draws: i64, slots: i64, seeds: &[u64], dtype: StoreDtype) -> (TopK, f64) {
    let (b, t, v) = logits.size3().expect("logits [B, T, V]");
    assert_eq!(seeds.len() as i64, b, "one seed per window");
    assert!((1..=draws).contains(&slots), "1 to {draws} slots");
    let logp = logits.to_kind(Kind::Float).log_softmax(-1, Kind::Float);
    let cdf = logp.exp().cumsum(-1, Kind::Float);
    let uniforms: Vec<Tensor> =
        seeds.iter().map(|&seed| crate::nn::runtime::random::uniform(seed, &[1, t, draws], logits.device())).collect();
    // Uniforms on [0, total): the cumulative sum's last entry is 1 up to rounding.
    let u = Tensor::cat(&uniforms, 0) * cdf.narrow(-1, v - 1, 1);
    let drawn = u.searchsorted(&cdf, false, true, "right", None::<Tensor>).clamp_max(v - 1);
    // same[.., i, j]: draws i and j drew the same token. counts[.., i]: how many draws drew draw i's token.
    let same = drawn.unsqueeze(-1).eq_tensor(&drawn.unsqueeze(-2));
    let counts = same.sum_dim_intlist(-1, false, Kind::Float);
    let distinct = counts.reciprocal().sum(Kind::Double).double_value(&[]);
    // A draw is its token's first when no earlier draw drew it. Rank first draws by count, then by lower id (in f64,
    // so count × (V + 1) − id is exact for any vocabulary); repeats rank last.
    let first = first_of_equal(&same);
    let rank = counts.to_kind(Kind::Double) * (v + 1) as f64 - drawn.to_kind(Kind::Double);
    let key = rank.where_self(&first, &Tensor::from(-1.0f64));
    let (_, order) = key.topk(slots, -1, true, true);
    let (kept, kept_counts) = (drawn.gather(-1, &order, false), counts.gather(-1, &order, false));
    // The mass of the kept tokens, each counted once (a repeated slot is not its token's first).
    let kept_first = first.gather(-1, &order, false).to_kind(Kind::Float);
    let kept_mass = (&kept_counts * kept_first).sum_dim_intlist(-1, false, Kind::Float) / draws as f64;
    let index_kind = if v <= i16::MAX as i64 { Kind::Int16 } else { Kind::Int };
    let batch = TopK {
        predictions: logp.argmax(-1, false),
        logprobs: (kept_counts / draws as f64).log().to_kind(dtype.kind()),
        indices: kept.to_kind(index_kind),
        rest: (-kept_mass + 1.0).clamp_min(0.0).to_kind(dtype.kind()),
    };
    (batch, distinct)
}

/// Whether each slot `i` is the first of its value, from `same` `[.., k, k]` (`same[.., i, j]`: slots i and j hold the
/// same id): true unless an earlier slot holds it.
pub fn first_of_equal(same: &Tensor) -> Tensor {
    let k = same.size().last().copied().unwrap_or(0);
    let earlier = Tensor::ones([k, k], (Kind::Bool, same.device())).tril(-1);
    same.logical_and(&earlier).any_dim(-1, false).logical_not()
}

/// Dense logits `[.., V]` from a top-k compression: log-probabilities for the top k, an even share of the leftover
/// mass for every other token (a tiny floor avoids log 0).
pub fn expand(logprobs: &Tensor, indices: &Tensor, rest: &Tensor, classes: i64) -> Tensor {
    let k = indices.size().last().copied().unwrap_or(0);
    let others = (classes - k).max(1) as f64;
    let tail = (rest.to_kind(Kind::Float).clamp_min(1e-12) / others).log().unsqueeze(-1);
    let mut shape = rest.size();
    shape.push(classes);
    tail.expand(&shape, false).contiguous().scatter(-1, &indices.to_kind(Kind::Int64), &logprobs.to_kind(Kind::Float))
}

/// Dense logits `[.., V]` whose tail follows `student` `[.., V]` (see the module docs): top k exact, the leftover mass
/// shared by the other tokens in proportion to the student's probabilities (detached: a target, not a path for
/// gradients).
pub fn expand_like(logprobs: &Tensor, indices: &Tensor, rest: &Tensor, student: &Tensor) -> Tensor {
    let log_q = student.detach().to_kind(Kind::Float).log_softmax(-1, Kind::Float);
    let idx = indices.to_kind(Kind::Int64);
    let outside = Tensor::ones_like(&log_q).scatter_value(-1, &idx, 0.0);
    let q_outside = (log_q.exp() * &outside).sum_dim_intlist(-1, true, Kind::Float).clamp_min(1e-12);
    let tail = rest.to_kind(Kind::Float).clamp_min(1e-12).log().unsqueeze(-1) + &log_q - q_outside.log();
    tail.scatter(-1, &idx, &logprobs.to_kind(Kind::Float))
}

/// Writes shards of at most `shard_windows` windows as batches arrive.
pub struct ShardWriter {
    dir: PathBuf,
    top_k: i64,
    dtype: StoreDtype,
    shard_windows: i64,
    pending: Vec<TopK>,
    pending_windows: i64,
    shards: Vec<i64>,
    /// The vocabulary size: the range of the ids stored.
    classes: i64,
}

impl ShardWriter {
    pub fn new(dir: &Path, top_k: i64, dtype: StoreDtype, shard_windows: i64, classes: i64) -> Self {
        ShardWriter {
            dir: dir.to_path_buf(),
            classes,
            top_k,
            dtype,
            shard_windows: shard_windows.max(1),
            pending: Vec::new(),
            pending_windows: 0,
            shards: Vec::new(),
        }
    }

    /// Adds the logits `[b, T, V]` of the next `b` windows as their top k; returns the sum of their leftover masses.
    pub fn push(&mut self, logits: &Tensor) -> anyhow::Result<f64> {
        self.push_compressed(compress(logits, self.top_k, self.dtype))
    }

    /// Adds the next windows, compressed already ([`compress`], [`sample`]) with this writer's k slots; returns the
    /// sum of their leftover masses.
    pub fn push_compressed(&mut self, batch: TopK) -> anyhow::Result<f64> {
        anyhow::ensure!(batch.indices.size().last() == Some(&self.top_k), "a batch of {} slots", self.top_k);
        super::check::finite_to_store(&batch.logprobs, "log-probabilities")?;
        let rest = batch.rest.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
        self.pending_windows += batch.rest.size()[0];
        self.pending.push(batch);
        if self.pending_windows >= self.shard_windows {
            self.flush()?;
        }
        Ok(rest)
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let cat = |f: fn(&TopK) -> &Tensor| Tensor::cat(&self.pending.iter().map(f).collect::<Vec<_>>(), 0);
        // Token ids in the narrowest unsigned type the vocabulary needs (u16 up to 65,536 tokens).
        let named = [
            ("logprobs", Stored::values(&cat(|b| &b.logprobs))?),
            ("indices", Stored::ids(&cat(|b| &b.indices), self.classes)?),
            ("rest", Stored::values(&cat(|b| &b.rest))?),
            ("predictions", Stored::ids(&cat(|b| &b.predictions), self.classes)?),
        ];
        let path = self.dir.join(shard_file(self.shards.len()));
        super::ids::write(&path, &named)?;
        self.shards.push(self.pending_windows);
        self.pending.clear();
        self.pending_windows = 0;
        Ok(())
    }

    /// Writes the last shard and `tokens.json`; `meta.shards` and `meta.windows` are filled in here.
    pub fn finish(mut self, mut meta: TokenLogitsMeta) -> anyhow::Result<TokenLogitsMeta> {
        self.flush()?;
        meta.windows = self.shards.iter().sum();
        meta.shards = self.shards;
        std::fs::write(self.dir.join(META), serde_json::to_string_pretty(&meta)? + "\n")?;
        Ok(meta)
    }
}

/// The whole store in memory, still compressed (f16 values, i16 ids: ≈ 4k+4 bytes per token); batches are expanded
/// on demand.
pub struct TokenLogits {
    pub meta: TokenLogitsMeta,
    logprobs: Tensor,
    indices: Tensor,
    rest: Tensor,
}

impl TokenLogits {
    pub fn read(dir: &Path) -> anyhow::Result<TokenLogits> {
        let meta_path = dir.join(META);
        let meta: TokenLogitsMeta = serde_json::from_str(
            &std::fs::read_to_string(&meta_path).with_context(|| format!("reading {}", meta_path.display()))?,
        )
        .with_context(|| format!("parsing {}", meta_path.display()))?;
        let (mut logprobs, mut indices, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for (i, &windows) in meta.shards.iter().enumerate() {
            let path = dir.join(shard_file(i));
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let file = safetensors::SafeTensors::deserialize(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: not a safetensors file ({e:?})", path.display()))?;
            // Ids held as i16 while they fit (half the memory of i32), as `compress` makes them.
            let id_kind = if meta.classes <= i16::MAX as i64 { Kind::Int16 } else { Kind::Int };
            let take = |name: &str| super::ids::read(&file, name, id_kind).with_context(|| path.display().to_string());
            let lp = take("logprobs")?;
            if lp.size() != [windows, meta.time, meta.top_k] {
                bail!(
                    "{}: logprobs {:?}, tokens.json says [{windows}, {}, {}]",
                    path.display(),
                    lp.size(),
                    meta.time,
                    meta.top_k
                );
            }
            let (ids, left) = (take("indices")?, take("rest")?);
            super::check::finite(&lp, "logprobs", &path)?;
            super::check::finite(&left, "rest", &path)?;
            super::check::ids_below(&ids, meta.classes, "indices", &path)?;
            logprobs.push(lp);
            indices.push(ids);
            rest.push(left);
        }
        if logprobs.is_empty() {
            bail!("{}: no shards", dir.display());
        }
        Ok(TokenLogits {
            meta,
            logprobs: Tensor::cat(&logprobs, 0),
            indices: Tensor::cat(&indices, 0),
            rest: Tensor::cat(&rest, 0),
        })
    }

    /// The stored `(logprobs, indices, rest)` of the windows `rows`.
    pub fn top_k(&self, rows: &Tensor) -> (Tensor, Tensor, Tensor) {
        let rows = rows.to_device(self.logprobs.device());
        (self.logprobs.index_select(0, &rows), self.indices.index_select(0, &rows), self.rest.index_select(0, &rows))
    }

    /// Dense f32 logits `[B, T, V]` (log-probabilities) for the windows `rows`.
    pub fn dense_logits(&self, rows: &Tensor) -> Tensor {
        let (logprobs, indices, rest) = self.top_k(rows);
        expand(&logprobs, &indices, &rest, self.meta.classes)
    }

    /// The stored windows moved to `device`, where lookups then gather them (rows are moved to the store's device).
    pub fn to_device(&self, device: tch::Device) -> Result<TokenLogits, tch::TchError> {
        Ok(TokenLogits {
            meta: self.meta.clone(),
            logprobs: self.logprobs.f_to_device(device)?,
            indices: self.indices.f_to_device(device)?,
            rest: self.rest.f_to_device(device)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_round_trip_and_rebuild_the_distribution() {
        let dir = tempfile::tempdir().unwrap();
        let logits = crate::nn::runtime::random::uniform(5, &[7, 3, 10], tch::Device::Cpu) * 6.0;
        let mut writer = ShardWriter::new(dir.path(), 4, StoreDtype::F32, 3, 10);
        for start in [0, 2, 4, 6] {
            writer.push(&logits.narrow(0, start, if start == 6 { 1 } else { 2 })).unwrap();
        }
        let meta = TokenLogitsMeta {
            dataset: "d".into(),
            windows: 0,
            time: 3,
            classes: 10,
            top_k: 4,
            sampled: false,
            dtype: StoreDtype::F32,
            model: "m".into(),
            shards: vec![],
        };
        let meta = writer.finish(meta).unwrap();
        assert_eq!((meta.windows, meta.shards.clone()), (7, vec![4, 3]));
        let store = TokenLogits::read(dir.path()).unwrap();
        let rows = Tensor::from_slice(&[6i64, 0, 3]);
        let p = store.dense_logits(&rows).exp();
        let truth = logits.index_select(0, &rows).softmax(-1, Kind::Float);
        // The top 4 are exact, the total is 1, and the other 6 share what is left equally.
        assert!((p.sum_dim_intlist(-1, false, Kind::Float) - 1.0).abs().max().double_value(&[]) < 1e-5);
        let (top, idx) = truth.topk(4, -1, true, true);
        assert!(p.gather(-1, &idx, false).allclose(&top, 1e-5, 1e-6, false));
        let tail = (truth.sum_dim_intlist(-1, false, Kind::Float) - top.sum_dim_intlist(-1, false, Kind::Float)) / 6.0;
        let rebuilt_tail = p.scatter_value(-1, &idx, -1.0).max_dim(-1, false).0;
        assert!(rebuilt_tail.allclose(&tail, 1e-5, 1e-6, false));
    }

    /// Draws follow the teacher's distribution; a window's draws depend on its seed only; slots that drew the same
    /// token agree; the rebuilt target is the empirical distribution, with no leftover mass.
    #[test]
    fn sampled_slots_estimate_the_distribution_without_bias() {
        let logits = Tensor::from_slice(&[2.0f32, 0.0, 1.0, -1.0, 0.5, -3.0]).view([1, 1, 6]).repeat([2, 3, 1]);
        let truth = logits.softmax(-1, Kind::Float);
        let draws = 4096;
        let (batch, distinct) = sample(&logits, draws, draws, &[7, 8], StoreDtype::F32);
        assert_eq!(batch.indices.size(), [2, 3, draws]);
        assert_eq!(batch.rest.abs().sum(Kind::Float).double_value(&[]), 0.0);
        let idx = batch.indices.to_kind(Kind::Int64);
        let p = Tensor::zeros([2, 3, 6], (Kind::Float, tch::Device::Cpu)).scatter(-1, &idx, &batch.logprobs.exp());
        // Each slot's value is its token's share of the draws, so scattering them rebuilds the empirical
        // distribution, within sampling error (4096 draws: σ ≤ 0.008) of the truth.
        assert!((p.sum_dim_intlist(-1, false, Kind::Float) - 1.0).abs().max().double_value(&[]) < 1e-5);
        let worst = (&p - &truth).abs().max().double_value(&[]);
        assert!(worst < 0.03, "empirical vs true probabilities: {worst}");
        // 4096 draws find all 6 tokens (the rarest has p ≈ 0.004) at each of the 6 positions.
        assert!((distinct - 36.0).abs() < 1e-3, "distinct tokens over 6 positions: {distinct}");
        // The second window alone, with its seed, draws the same tokens.
        let (alone, _) = sample(&logits.narrow(0, 1, 1), draws, draws, &[8], StoreDtype::F32);
        assert!(alone.indices.equal(&batch.indices.narrow(0, 1, 1)));
        assert!(!batch.indices.get(0).equal(&batch.indices.get(1)), "other seeds, other draws");
        assert_eq!(batch.predictions.int64_value(&[0, 0]), 0, "the arg-max, as a top-k store has it");

        // Fewer slots than draws: the most drawn tokens, most drawn first, their shares of the same draws, and the
        // draws of the others as the leftover mass.
        let (few, _) = sample(&logits, draws, 3, &[7, 8], StoreDtype::F32);
        assert_eq!(few.indices.size(), [2, 3, 3]);
        let top: Vec<i64> = Vec::try_from(few.indices.get(0).get(0).to_kind(Kind::Int64)).unwrap();
        assert_eq!(top, [0, 2, 4], "the three most likely tokens are the three most drawn");
        let shares = few.logprobs.exp();
        let from_all = p.gather(-1, &few.indices.to_kind(Kind::Int64), false);
        assert!(shares.allclose(&from_all, 1e-6, 1e-6, false), "shares of all the draws, as with every slot");
        let total = shares.sum_dim_intlist(-1, false, Kind::Float) + &few.rest;
        assert!((total - 1.0).abs().max().double_value(&[]) < 1e-5, "the kept shares and the rest make 1");
    }

    #[test]
    fn a_real_vocabulary_is_stored_as_u16_and_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let vocab = 49_152;
        let logits = crate::nn::runtime::random::uniform(11, &[2, 5, vocab], tch::Device::Cpu) * 20.0;
        let mut writer = ShardWriter::new(dir.path(), 8, StoreDtype::F16, 16, vocab);
        writer.push(&logits).unwrap();
        let meta = TokenLogitsMeta {
            dataset: "d".into(),
            windows: 0,
            time: 5,
            classes: vocab,
            top_k: 8,
            sampled: false,
            dtype: StoreDtype::F16,
            model: "m".into(),
            shards: vec![],
        };
        writer.finish(meta).unwrap();
        let bytes = std::fs::read(dir.path().join(shard_file(0))).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(file.tensor("indices").unwrap().dtype(), safetensors::Dtype::U16, "49,152 ids fit in u16");
        assert_eq!(file.tensor("predictions").unwrap().dtype(), safetensors::Dtype::U16);
        // 8 f16 values + 8 u16 ids + f16 rest + u16 prediction = 36 bytes per token, plus the header.
        let data: usize =
            ["logprobs", "indices", "rest", "predictions"].iter().map(|n| file.tensor(n).unwrap().data().len()).sum();
        assert_eq!(data, 10 * 36);
        let store = TokenLogits::read(dir.path()).unwrap();
        let (_, idx, _) = store.top_k(&Tensor::from_slice(&[0i64, 1]));
        let (_, want) = logits.topk(8, -1, true, true);
        assert!(idx.to_kind(Kind::Int64).equal(&want), "ids above 32767 survive exactly");
    }
}

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
//! A sampled store ([`sample`], `store.sample`) holds tokens drawn from the teacher's distribution with their
//! empirical probabilities. With `slots` it has the same layout, the most drawn tokens in k slots and the draws that
//! did not fit as the leftover mass. Without, every draw is kept in the ragged [`Layout::Counts`]: at each position
//! only the distinct tokens drawn, with how often each was drawn — `distinct` `[n, T]`, `ids` and `counts`
//! `[Σ distinct]` (window, position, most drawn first), `predictions` `[n, T]`: with u8 counts and u16 ids 3 bytes a
//! position and 3 a distinct token, where fixed slots pay 4 for every draw (16 draws of SmolLM2 on Shakespeare find
//! 9.3 distinct tokens a position: 31 bytes/token instead of 68). Reading pads each batch to the store's widest
//! position by repeating a kept token, as [`sample`] fills its slots, so the readers see one form.

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
    /// How the shards lay the slots out ([`Layout::Counts`]: `top_k` is the number of draws).
    #[serde(default, skip_serializing_if = "Layout::is_slots")]
    pub layout: Layout,
    /// The values' type in [`Layout::Slots`] (a [`Layout::Counts`] store rebuilds them exactly from its counts).
    pub dtype: StoreDtype,
    /// The model that produced them, as referenced in the workflow.
    pub model: String,
    /// Windows in each shard, in order.
    pub shards: Vec<i64>,
}

/// How a store's shards hold each position's slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `top_k` slots at every position: `logprobs` and `indices` `[n, T, k]`, `rest` `[n, T]`.
    #[default]
    Slots,
    /// A sampled store that keeps every draw, ragged: each position's distinct drawn tokens and their counts out of
    /// `top_k` draws (see the module docs); no leftover mass.
    Counts,
}

impl Layout {
    fn is_slots(&self) -> bool {
        *self == Layout::Slots
    }
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
    TopK {
        predictions: indices.select(-1, 0),
        logprobs: values.to_kind(dtype.kind()),
        indices: indices.to_kind(id_kind(logits.size().last().copied().unwrap_or(0))),
        rest: rest.to_kind(dtype.kind()),
    }
}

/// What a store keeps of each position's distribution (`infer`'s `store.top_k`, or `store.sample` and `slots`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sparse {
    /// The k most likely tokens and the leftover mass.
    TopK(i64),
    /// `draws` tokens drawn from the distribution ([`sample`]): the `slots` most drawn kept in fixed slots, or, with
    /// no `slots`, every draw as the distinct tokens drawn and their counts ([`Layout::Counts`]).
    Sample { draws: i64, slots: Option<i64> },
}

/// A batch of draws ([`sample`]): the kept tokens in fixed slots, and how they were counted.
pub struct Draws {
    /// `slots` per position, the most drawn first; slots with no token of their own repeat a kept one.
    pub top: TopK,
    /// `[B, T, slots]` i64: how many draws drew each slot's token.
    pub counts: Tensor,
    /// `[B, T]` i64: how many different tokens were drawn at each position (the first `min(distinct, slots)` slots
    /// hold them).
    pub distinct: Tensor,
    pub draws: i64,
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
/// depends on neither the batch nor the shard it is in.
pub fn sample(logits: &Tensor, draws: i64, slots: i64, seeds: &[u64], dtype: StoreDtype) -> Draws {
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
    // A draw is its token's first when no earlier draw drew it. Rank first draws by count, then by lower id (in f64,
    // so count × (V + 1) − id is exact for any vocabulary); repeats rank last.
    let first = first_of_equal(&same);
    let distinct = first.sum_dim_intlist(-1, false, Kind::Int64);
    let rank = counts.to_kind(Kind::Double) * (v + 1) as f64 - drawn.to_kind(Kind::Double);
    let key = rank.where_self(&first, &Tensor::from(-1.0f64));
    let (_, order) = key.topk(slots, -1, true, true);
    let (kept, kept_counts) = (drawn.gather(-1, &order, false), counts.gather(-1, &order, false));
    // The mass of the kept tokens, each counted once (a repeated slot is not its token's first).
    let kept_first = first.gather(-1, &order, false).to_kind(Kind::Float);
    let kept_mass = (&kept_counts * kept_first).sum_dim_intlist(-1, false, Kind::Float) / draws as f64;
    let top = TopK {
        predictions: logp.argmax(-1, false),
        logprobs: share_logprobs(&kept_counts, draws).to_kind(dtype.kind()),
        indices: kept.to_kind(id_kind(v)),
        rest: (-kept_mass + 1.0).clamp_min(0.0).to_kind(dtype.kind()),
    };
    Draws { top, counts: kept_counts.to_kind(Kind::Int64), distinct, draws }
}

/// log(count / draws) in f32: a drawn token's value, computed the same way when a slot is filled and when a
/// [`Layout::Counts`] store is read, so both forms give the same bits.
fn share_logprobs(counts: &Tensor, draws: i64) -> Tensor {
    (counts.to_kind(Kind::Float) / draws as f64).log()
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
    /// Slots per position, or draws per position in [`Layout::Counts`].
    top_k: i64,
    layout: Layout,
    dtype: StoreDtype,
    shard_windows: i64,
    pending: Vec<Pending>,
    pending_windows: i64,
    shards: Vec<i64>,
    /// The vocabulary size: the range of the ids stored.
    classes: i64,
}

/// Windows waiting for their shard, in the writer's layout.
enum Pending {
    Slots(TopK),
    /// `distinct` and `predictions` `[b, T]`; `ids` and `counts` `[Σ distinct]`.
    Counts {
        distinct: Tensor,
        ids: Tensor,
        counts: Tensor,
        predictions: Tensor,
    },
}

impl ShardWriter {
    /// A writer of `top_k` fixed slots a position ([`Layout::Slots`]).
    pub fn new(dir: &Path, top_k: i64, dtype: StoreDtype, shard_windows: i64, classes: i64) -> Self {
        ShardWriter {
            dir: dir.to_path_buf(),
            classes,
            top_k,
            layout: Layout::Slots,
            dtype,
            shard_windows: shard_windows.max(1),
            pending: Vec::new(),
            pending_windows: 0,
            shards: Vec::new(),
        }
    }

    /// A writer of every one of `draws` draws a position, as distinct tokens and counts ([`Layout::Counts`]).
    pub fn for_draws(dir: &Path, draws: i64, shard_windows: i64, classes: i64) -> Self {
        ShardWriter { layout: Layout::Counts, ..ShardWriter::new(dir, draws, StoreDtype::F16, shard_windows, classes) }
    }

    /// Adds the logits `[b, T, V]` of the next `b` windows as their top k; returns the sum of their leftover masses.
    pub fn push(&mut self, logits: &Tensor) -> anyhow::Result<f64> {
        self.push_compressed(compress(logits, self.top_k, self.dtype))
    }

    /// Adds the next windows, compressed already ([`compress`], [`sample`]) with this writer's k slots; returns the
    /// sum of their leftover masses.
    pub fn push_compressed(&mut self, batch: TopK) -> anyhow::Result<f64> {
        anyhow::ensure!(self.layout == Layout::Slots, "a store of counts takes draws, not slots");
        anyhow::ensure!(batch.indices.size().last() == Some(&self.top_k), "a batch of {} slots", self.top_k);
        super::check::finite_to_store(&batch.logprobs, "log-probabilities")?;
        let rest = batch.rest.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
        self.add(batch.rest.size()[0], Pending::Slots(batch))?;
        Ok(rest)
    }

    /// Adds the next windows' draws ([`sample`]): in fixed slots, or every draw as its distinct tokens and their
    /// counts ([`ShardWriter::for_draws`], whose draws must fill a slot each); returns the sum of the leftover masses.
    pub fn push_draws(&mut self, batch: Draws) -> anyhow::Result<f64> {
        if self.layout == Layout::Slots {
            return self.push_compressed(batch.top);
        }
        anyhow::ensure!(batch.draws == self.top_k, "a batch of {} draws", self.top_k);
        anyhow::ensure!(batch.top.indices.size().last() == Some(&batch.draws), "every draw in a slot");
        // The first `distinct` slots of a position hold its tokens, most drawn first; the others repeat them.
        let slot = Tensor::arange(batch.draws, (Kind::Int64, batch.distinct.device()));
        let kept = slot.lt_tensor(&batch.distinct.unsqueeze(-1));
        let pending = Pending::Counts {
            ids: batch.top.indices.masked_select(&kept),
            counts: batch.counts.masked_select(&kept),
            predictions: batch.top.predictions,
            distinct: batch.distinct,
        };
        let windows = kept.size()[0];
        self.add(windows, pending)?;
        Ok(0.0)
    }

    fn add(&mut self, windows: i64, batch: Pending) -> anyhow::Result<()> {
        self.pending_windows += windows;
        self.pending.push(batch);
        if self.pending_windows >= self.shard_windows {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let cat = |name: &str| Tensor::cat(&self.pending.iter().filter_map(|b| b.part(name)).collect::<Vec<_>>(), 0);
        // Token ids in the narrowest unsigned type the vocabulary needs (u16 up to 65,536 tokens); counts and
        // distinct tokens, at most the number of draws, in one byte each up to 255 draws.
        let named = match self.layout {
            Layout::Slots => vec![
                ("logprobs", Stored::values(&cat("logprobs"))?),
                ("indices", Stored::ids(&cat("indices"), self.classes)?),
                ("rest", Stored::values(&cat("rest"))?),
                ("predictions", Stored::ids(&cat("predictions"), self.classes)?),
            ],
            Layout::Counts => vec![
                ("distinct", Stored::counts(&cat("distinct"), self.top_k)?),
                ("ids", Stored::ids(&cat("ids"), self.classes)?),
                ("counts", Stored::counts(&cat("counts"), self.top_k)?),
                ("predictions", Stored::ids(&cat("predictions"), self.classes)?),
            ],
        };
        let path = self.dir.join(shard_file(self.shards.len()));
        super::ids::write(&path, &named)?;
        self.shards.push(self.pending_windows);
        self.pending.clear();
        self.pending_windows = 0;
        Ok(())
    }

    /// Writes the last shard and `tokens.json`; `meta.shards`, `meta.windows` and `meta.layout` are filled in here.
    pub fn finish(mut self, mut meta: TokenLogitsMeta) -> anyhow::Result<TokenLogitsMeta> {
        self.flush()?;
        meta.windows = self.shards.iter().sum();
        meta.shards = self.shards;
        meta.layout = self.layout;
        std::fs::write(self.dir.join(META), serde_json::to_string_pretty(&meta)? + "\n")?;
        Ok(meta)
    }
}

impl Pending {
    /// The tensor a shard stores as `name`, if this layout has it.
    fn part(&self, name: &str) -> Option<&Tensor> {
        match (self, name) {
            (Pending::Slots(b), "logprobs") => Some(&b.logprobs),
            (Pending::Slots(b), "indices") => Some(&b.indices),
            (Pending::Slots(b), "rest") => Some(&b.rest),
            (Pending::Slots(b), "predictions") => Some(&b.predictions),
            (Pending::Counts { distinct, .. }, "distinct") => Some(distinct),
            (Pending::Counts { ids, .. }, "ids") => Some(ids),
            (Pending::Counts { counts, .. }, "counts") => Some(counts),
            (Pending::Counts { predictions, .. }, "predictions") => Some(predictions),
            _ => None,
        }
    }
}

/// The whole store in memory, still compressed (fixed slots: f16 values, i16 ids, ≈ 4k+4 bytes per token; counts:
/// as on disk); batches are expanded on demand.
pub struct TokenLogits {
    pub meta: TokenLogitsMeta,
    rows: Rows,
}

/// The stored windows, in their layout.
enum Rows {
    Slots {
        logprobs: Tensor,
        indices: Tensor,
        rest: Tensor,
    },
    Counts {
        /// `[n, T]` u8 or wider.
        distinct: Tensor,
        /// `[n]` i64: where each window's entries start in `ids` and `counts`.
        starts: Tensor,
        /// The most distinct tokens at any position: every batch is padded to it (no read-back of each batch's).
        width: i64,
        ids: Tensor,
        counts: Tensor,
    },
}

impl TokenLogits {
    pub fn read(dir: &Path) -> anyhow::Result<TokenLogits> {
        let meta_path = dir.join(META);
        let meta: TokenLogitsMeta = serde_json::from_str(
            &std::fs::read_to_string(&meta_path).with_context(|| format!("reading {}", meta_path.display()))?,
        )
        .with_context(|| format!("parsing {}", meta_path.display()))?;
        let mut parts: Vec<Vec<Tensor>> = Vec::new();
        for (i, &windows) in meta.shards.iter().enumerate() {
            let path = dir.join(shard_file(i));
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let file = safetensors::SafeTensors::deserialize(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: not a safetensors file ({e:?})", path.display()))?;
            let take = |name: &str| {
                super::ids::read(&file, name, id_kind(meta.classes)).with_context(|| path.display().to_string())
            };
            let shard = match meta.layout {
                Layout::Slots => read_slots(&take, &meta, windows, &path)?,
                Layout::Counts => read_counts(&take, &meta, windows, &path)?,
            };
            parts.resize_with(shard.len(), Vec::new);
            for (all, part) in parts.iter_mut().zip(shard) {
                all.push(part);
            }
        }
        if meta.shards.is_empty() {
            bail!("{}: no shards", dir.display());
        }
        let mut whole = parts.iter().map(|p| Tensor::cat(p, 0));
        let mut next = || whole.next().expect("a part per tensor");
        let rows = match meta.layout {
            Layout::Slots => Rows::Slots { logprobs: next(), indices: next(), rest: next() },
            Layout::Counts => {
                let distinct = next();
                let per_window = distinct.sum_dim_intlist(-1, false, Kind::Int64);
                let starts = per_window.cumsum(0, Kind::Int64) - &per_window;
                let width = distinct.max().int64_value(&[]);
                Rows::Counts { distinct, starts, width, ids: next(), counts: next() }
            }
        };
        Ok(TokenLogits { meta, rows })
    }

    /// The stored `(logprobs, indices, rest)` of the windows `rows`: `[B, T, k]`, `[B, T, k]`, `[B, T]`. A store of
    /// counts gives k = the most distinct tokens at any of its positions, padding a position by repeating its last.
    pub fn top_k(&self, rows: &Tensor) -> (Tensor, Tensor, Tensor) {
        match &self.rows {
            Rows::Slots { logprobs, indices, rest } => {
                let rows = rows.to_device(logprobs.device());
                (logprobs.index_select(0, &rows), indices.index_select(0, &rows), rest.index_select(0, &rows))
            }
            Rows::Counts { distinct, starts, width, ids, counts } => {
                let rows = rows.to_device(distinct.device());
                let d = distinct.index_select(0, &rows).to_kind(Kind::Int64);
                // Each position's first entry: its window's start and the entries of the positions before it.
                let first = starts.index_select(0, &rows).unsqueeze(-1) + d.cumsum(-1, Kind::Int64) - &d;
                let slot = Tensor::arange(*width, (Kind::Int64, d.device()));
                let at = first.unsqueeze(-1) + slot.minimum(&(d.unsqueeze(-1) - 1));
                let take = |t: &Tensor| t.index_select(0, &at.flatten(0, -1)).view_as(&at);
                let logprobs = share_logprobs(&take(counts), self.meta.top_k);
                let rest = Tensor::zeros(d.size(), (Kind::Float, d.device()));
                (logprobs, take(ids), rest)
            }
        }
    }

    /// Dense f32 logits `[B, T, V]` (log-probabilities) for the windows `rows`.
    pub fn dense_logits(&self, rows: &Tensor) -> Tensor {
        let (logprobs, indices, rest) = self.top_k(rows);
        expand(&logprobs, &indices, &rest, self.meta.classes)
    }

    /// The stored windows moved to `device`, where lookups then gather them (rows are moved to the store's device).
    pub fn to_device(&self, device: tch::Device) -> Result<TokenLogits, tch::TchError> {
        let rows = match &self.rows {
            Rows::Slots { logprobs, indices, rest } => Rows::Slots {
                logprobs: logprobs.f_to_device(device)?,
                indices: indices.f_to_device(device)?,
                rest: rest.f_to_device(device)?,
            },
            Rows::Counts { distinct, starts, width, ids, counts } => Rows::Counts {
                distinct: distinct.f_to_device(device)?,
                starts: starts.f_to_device(device)?,
                width: *width,
                ids: ids.f_to_device(device)?,
                counts: counts.f_to_device(device)?,
            },
        };
        Ok(TokenLogits { meta: self.meta.clone(), rows })
    }
}

/// Ids of `classes` classes in memory: i16 while they fit (half the memory of i32), in the store as on reading.
fn id_kind(classes: i64) -> Kind {
    if classes <= i16::MAX as i64 {
        Kind::Int16
    } else {
        Kind::Int
    }
}

/// A fixed-slot shard's `logprobs`, `indices`, `rest` (read by `take`), checked.
fn read_slots(
    take: &dyn Fn(&str) -> anyhow::Result<Tensor>,
    meta: &TokenLogitsMeta,
    windows: i64,
    path: &Path,
) -> anyhow::Result<Vec<Tensor>> {
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
    super::check::finite(&lp, "logprobs", path)?;
    super::check::finite(&left, "rest", path)?;
    super::check::ids_below(&ids, meta.classes, "indices", path)?;
    Ok(vec![lp, ids, left])
}

/// A shard of counts' `distinct`, `ids`, `counts` (read by `take`), checked: every position drew `top_k` times, at least one token,
/// each entry at least once.
fn read_counts(
    take: &dyn Fn(&str) -> anyhow::Result<Tensor>,
    meta: &TokenLogitsMeta,
    windows: i64,
    path: &Path,
) -> anyhow::Result<Vec<Tensor>> {
    let (distinct, ids, counts) = (take("distinct")?, take("ids")?, take("counts")?);
    if distinct.size() != [windows, meta.time] {
        bail!("{}: distinct {:?}, tokens.json says [{windows}, {}]", path.display(), distinct.size(), meta.time);
    }
    let d = distinct.to_kind(Kind::Int64).flatten(0, -1);
    let entries = d.sum(Kind::Int64).int64_value(&[]);
    if ids.size() != [entries] || counts.size() != [entries] {
        bail!("{}: {entries} distinct tokens, but ids {:?} and counts {:?}", path.display(), ids.size(), counts.size());
    }
    let draws = meta.top_k;
    if d.numel() > 0 && (d.min().int64_value(&[]) < 1 || d.max().int64_value(&[]) > draws) {
        bail!("{}: a position with no token or more than its {draws} draws", path.display());
    }
    let c = counts.to_kind(Kind::Int64);
    let position =
        Tensor::arange(d.numel() as i64, (Kind::Int64, d.device())).repeat_interleave_self_tensor(&d, 0, None);
    let drawn = Tensor::zeros([d.numel() as i64], (Kind::Int64, d.device())).index_add(0, &position, &c);
    if entries > 0 && (c.min().int64_value(&[]) < 1 || drawn.ne(draws).any().int64_value(&[]) != 0) {
        bail!("{}: counts that do not add up to {draws} draws at every position", path.display());
    }
    super::check::ids_below(&ids, meta.classes, "ids", path)?;
    Ok(vec![distinct, ids, counts])
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
            layout: Layout::Slots,
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
        let drawn = sample(&logits, draws, draws, &[7, 8], StoreDtype::F32);
        let (batch, distinct) = (&drawn.top, drawn.distinct.sum(Kind::Double).double_value(&[]));
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
        let alone = sample(&logits.narrow(0, 1, 1), draws, draws, &[8], StoreDtype::F32).top;
        assert!(alone.indices.equal(&batch.indices.narrow(0, 1, 1)));
        assert!(!batch.indices.get(0).equal(&batch.indices.get(1)), "other seeds, other draws");
        assert_eq!(batch.predictions.int64_value(&[0, 0]), 0, "the arg-max, as a top-k store has it");

        // Fewer slots than draws: the most drawn tokens, most drawn first, their shares of the same draws, and the
        // draws of the others as the leftover mass.
        let few = sample(&logits, draws, 3, &[7, 8], StoreDtype::F32).top;
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
            layout: Layout::Slots,
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

    /// A store of counts keeps every draw in 3 bytes a position and 3 a distinct token, and reads back as the same
    /// distribution, bit for bit, as the same draws in fixed f32 slots — so a student learns the same from either.
    #[test]
    fn counts_keep_every_draw_in_fewer_bytes_and_read_back_as_the_slots() {
        let (vocab, draws, time) = (49_152, 16, 5);
        // A flat tail and three likely tokens (9 in 10 of the draws, ids past i16's range among them): repeats.
        let peaks = Tensor::from_slice(&[3i64, 40_000, 49_151]);
        let logits = (crate::nn::runtime::random::uniform(3, &[3, time, vocab], tch::Device::Cpu) * 2.0).index_add(
            -1,
            &peaks,
            &Tensor::full([3, time, 3], 12.0, (Kind::Float, tch::Device::Cpu)),
        );
        let seeds = [21, 22, 23];
        let meta = |layout| TokenLogitsMeta {
            dataset: "d".into(),
            windows: 0,
            time,
            classes: vocab,
            top_k: draws,
            sampled: true,
            layout,
            dtype: StoreDtype::F32,
            model: "m".into(),
            shards: vec![],
        };
        let (slots_dir, counts_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut slots = ShardWriter::new(slots_dir.path(), draws, StoreDtype::F32, 2, vocab);
        // Two windows a shard: the second shard's entries start where the first's end.
        let mut counts = ShardWriter::for_draws(counts_dir.path(), draws, 2, vocab);
        let (mut distinct, mut widest) = (0, 0);
        for (start, len) in [(0, 2), (2, 1)] {
            let window = logits.narrow(0, start, len);
            let seeds = &seeds[start as usize..(start + len) as usize];
            slots.push_draws(sample(&window, draws, draws, seeds, StoreDtype::F32)).unwrap();
            let drawn = sample(&window, draws, draws, seeds, StoreDtype::F32);
            distinct += drawn.distinct.sum(Kind::Int64).int64_value(&[]);
            widest = widest.max(drawn.distinct.max().int64_value(&[]));
            assert_eq!(counts.push_draws(drawn).unwrap(), 0.0, "no draw is left out");
        }
        slots.finish(meta(Layout::Slots)).unwrap();
        let written = counts.finish(meta(Layout::Slots)).unwrap();
        assert_eq!((written.layout, written.shards.clone()), (Layout::Counts, vec![2, 1]));

        let data_bytes = |dir: &Path, i: usize| {
            let bytes = std::fs::read(dir.join(shard_file(i))).unwrap();
            let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            file.tensors().iter().map(|(_, t)| t.data().len()).sum::<usize>()
        };
        let stored = data_bytes(counts_dir.path(), 0) + data_bytes(counts_dir.path(), 1);
        // A u8 count of distinct tokens and a u16 prediction a position, a u16 id and a u8 count a distinct token.
        assert_eq!(stored as i64, 3 * 3 * time + 3 * distinct);
        assert!(distinct < 3 * time * draws / 2, "the likely tokens are drawn again and again");

        let (a, b) = (TokenLogits::read(slots_dir.path()).unwrap(), TokenLogits::read(counts_dir.path()).unwrap());
        let rows = Tensor::from_slice(&[2i64, 0, 1]);
        let (la, ia, ra) = a.top_k(&rows);
        let (lb, ib, rb) = b.top_k(&rows);
        assert_eq!(lb.size()[2], widest, "padded to the store's widest position, not to the draws");
        assert!(widest < draws);
        assert!(ra.equal(&rb), "no leftover mass either way");
        // The same tokens with the same values; the padding repeats a kept token, which readers count once.
        let scatter = |l: &Tensor, i: &Tensor| {
            Tensor::zeros([3, time, vocab], (Kind::Float, tch::Device::Cpu)).scatter(
                -1,
                &i.to_kind(Kind::Int64),
                &l.exp(),
            )
        };
        assert!(scatter(&la, &ia).equal(&scatter(&lb, &ib)));
        // Rebuilt densely, tokens never drawn share the empty tail's floor (1e-12) over V − k, k being the width.
        let gap = (a.dense_logits(&rows).exp() - b.dense_logits(&rows).exp()).abs().max().double_value(&[]);
        assert!(gap < 1e-15, "dense rebuilds differ by {gap}");
    }

    #[test]
    fn a_store_of_counts_that_does_not_add_up_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(shard_file(0));
        let meta = TokenLogitsMeta {
            dataset: "d".into(),
            windows: 1,
            time: 2,
            classes: 10,
            top_k: 4,
            sampled: true,
            layout: Layout::Counts,
            dtype: StoreDtype::F16,
            model: "m".into(),
            shards: vec![1],
        };
        std::fs::write(dir.path().join(META), serde_json::to_string(&meta).unwrap()).unwrap();
        let write = |counts: &[i64]| {
            let named = [
                ("distinct", Stored::counts(&Tensor::from_slice(&[1i64, 2]).view([1, 2]), 4).unwrap()),
                ("ids", Stored::ids(&Tensor::from_slice(&[3i64, 1, 2]), 10).unwrap()),
                ("counts", Stored::counts(&Tensor::from_slice(counts), 4).unwrap()),
                ("predictions", Stored::ids(&Tensor::from_slice(&[3i64, 1]).view([1, 2]), 10).unwrap()),
            ];
            super::super::ids::write(&path, &named).unwrap();
            TokenLogits::read(dir.path()).map(|_| ())
        };
        write(&[4, 3, 1]).unwrap();
        let err = write(&[4, 2, 1]).unwrap_err().to_string();
        assert!(err.contains("shard-00000.safetensors") && err.contains("add up to 4 draws"), "{err}");
    }
}

//! Running a sentence encoder over many sentences: sorted by length and batched, so each batch is padded only to
//! its own longest sentence (the encoder cuts a batch to its longest, [`crate::nn::arch::bert`]), then put back in
//! the original order.

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};

use super::runtime::precision::Precision;
use super::{Encoder, Mode, Model};

/// Embeddings of a set of sentences and what batching them cost.
pub struct Encoded {
    /// `[N, dim]` f32 on the CPU, row i the embedding of sentence i.
    pub embeddings: Tensor,
    /// Real tokens, and padding tokens the batches carried beside them.
    pub tokens: i64,
    pub padding: i64,
    /// With [`embed_sentences_with_states`]: the real tokens of each sentence `[N]`, and per state number the
    /// states of every real token `[tokens, d]`, sentence 0's first, in `StatesWanted::kind`.
    pub states: Option<(Tensor, BTreeMap<usize, Tensor>)>,
}

/// Which hidden states to keep beside the embeddings ([`Encoder`]'s numbering), and in which kind.
pub struct StatesWanted<'a> {
    pub encoder: &'a dyn Encoder,
    pub numbers: &'a [usize],
    pub kind: Kind,
}

/// The real tokens of each sentence of `ids` `[N, T]` (right-padded with `pad`), `[N]`.
pub fn lengths(ids: &Tensor, pad: i64) -> Tensor {
    ids.ne(pad).sum_dim_intlist(1, false, Kind::Int64)
}

/// The order that sorts sentences `ids` `[N, T]` (right-padded with `pad`) by length, and their lengths.
pub fn by_length(ids: &Tensor, pad: i64) -> (Tensor, Tensor) {
    let lengths = lengths(ids, pad);
    // Stable, so equal lengths keep their order and the batches are a function of the data alone.
    let (_, order) = lengths.sort_stable(true, 0, false);
    (order, lengths)
}

/// Embeddings of `ids` `[N, T]` (right-padded with `pad`) by `model`, `batch_size` sentences of similar length at a
/// time, without autograd, at `precision` on `device`.
pub fn embed_sentences(
    model: &dyn Model,
    ids: &Tensor,
    pad: i64,
    batch_size: usize,
    on: (Device, Precision),
    bar: &indicatif::ProgressBar,
) -> Encoded {
    embed_sentences_with_states(model, None, ids, pad, batch_size, on, bar)
}

/// [`embed_sentences`], keeping the hidden states `wanted` (if any) of every real token as well: the same batches,
/// so the same embeddings.
pub fn embed_sentences_with_states(
    model: &dyn Model,
    wanted: Option<StatesWanted>,
    ids: &Tensor,
    pad: i64,
    batch_size: usize,
    (device, precision): (Device, Precision),
    bar: &indicatif::ProgressBar,
) -> Encoded {
    let n = ids.size()[0];
    let (order, lengths) = by_length(ids, pad);
    let sorted_lengths = lengths.index_select(0, &order);
    let (mut chunks, mut padding) = (Vec::new(), 0);
    // Per state number, each sentence's `[length, d]` states, by sentence.
    let mut per_sentence: Vec<Vec<Option<Tensor>>> =
        wanted.iter().flat_map(|w| w.numbers).map(|_| (0..n).map(|_| None).collect()).collect();
    tch::no_grad(|| {
        let mut start = 0;
        while start < n {
            let len = (batch_size as i64).min(n - start);
            let rows = order.narrow(0, start, len);
            let batch_lengths = sorted_lengths.narrow(0, start, len);
            let longest = batch_lengths.max().int64_value(&[]).max(1);
            let batch = ids.index_select(0, &rows).narrow(1, 0, longest).to_device(device);
            padding += len * longest - batch_lengths.sum(Kind::Int64).int64_value(&[]);
            let embeddings = match &wanted {
                None => precision.forward(model, &batch, Mode::Eval),
                Some(w) => {
                    let out = precision.run(device, || w.encoder.embed_with_states(&batch, w.numbers));
                    let (rows, batch_lengths) = (Vec::<i64>::try_from(&rows), Vec::<i64>::try_from(&batch_lengths));
                    let (rows, batch_lengths) = (rows.expect("i64 rows"), batch_lengths.expect("i64 lengths"));
                    for (slots, states) in per_sentence.iter_mut().zip(&out.states) {
                        let states = states.to_device(Device::Cpu).to_kind(w.kind);
                        for (j, (&row, &length)) in rows.iter().zip(&batch_lengths).enumerate() {
                            slots[row as usize] = Some(states.get(j as i64).narrow(0, 0, length));
                        }
                    }
                    out.embeddings
                }
            };
            chunks.push(embeddings.to_device(Device::Cpu).to_kind(Kind::Float));
            start += len;
            bar.inc(len as u64);
        }
    });
    let sorted = Tensor::cat(&chunks, 0);
    let embeddings = sorted.zeros_like().index_copy(0, &order, &sorted);
    let states = wanted.map(|w| {
        let tables = w
            .numbers
            .iter()
            .zip(per_sentence)
            .map(|(&number, slots)| {
                let slots: Vec<Tensor> = slots.into_iter().map(|s| s.expect("every sentence is encoded")).collect();
                (number, Tensor::cat(&slots, 0))
            })
            .collect();
        (lengths.shallow_clone(), tables)
    });
    Encoded { embeddings, tokens: lengths.sum(Kind::Int64).int64_value(&[]), padding, states }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in encoder: the mean of each row's real ids (pad 0), so any mix-up of rows shows.
    struct MeanOfIds;
    impl Model for MeanOfIds {
        fn forward(&self, x: &Tensor, _mode: Mode<'_>) -> Tensor {
            let mask = x.ne(0).to_kind(Kind::Float);
            (x.to_kind(Kind::Float) * &mask).sum_dim_intlist(1, true, Kind::Float)
                / mask.sum_dim_intlist(1, true, Kind::Float)
        }
    }

    #[test]
    fn sorted_batches_give_every_row_its_own_embedding_and_count_the_padding() {
        let rows: [&[i64]; 5] = [&[5, 6, 7, 0], &[3, 0, 0, 0], &[9, 9, 0, 0], &[1, 2, 3, 4], &[8, 0, 0, 0]];
        let ids = Tensor::from_slice(&rows.concat()).view([5, 4]);
        let bar = indicatif::ProgressBar::hidden();
        let got = embed_sentences(&MeanOfIds, &ids, 0, 2, (Device::Cpu, Precision::F32), &bar);
        let expected = Tensor::from_slice(&[6.0f32, 3.0, 9.0, 2.5, 8.0]).view([5, 1]);
        assert!(got.embeddings.equal(&expected), "{:?}", got.embeddings);
        // Lengths 3 1 2 4 1 sort to 1 1 | 2 3 | 4: padding 0 + 1 + 0.
        assert_eq!((got.tokens, got.padding), (11, 1));
    }
}

//! The language-model side of the general steps: what `infer`, `evaluate` and `generate` do differently when the
//! data is text (`meta.vocab` set, windows of token ids). `dataset`, `train` and `distill` need no separate path: a
//! text dataset is a dataset whose labels are `[N, T]`, and losses see one row per token (see
//! [`crate::nn::tokens`]).

pub mod infer;
pub mod metrics;

use crate::artifact::model::LoadedModel;
use crate::data::{Dataset, Vocab};
use crate::rng::Rng;

/// The vocabulary of text data, or an error naming the field that needed it.
pub fn vocab<'a>(data: &'a Dataset, field: &str) -> anyhow::Result<&'a Vocab> {
    data.meta.vocab.as_ref().ok_or_else(|| {
        anyhow::anyhow!("field `{field}`: needs text data (a `dataset` with `source: text`), got {}", data.meta.source)
    })
}

/// The longest input a model takes: its training window length.
pub fn context(model: &LoadedModel) -> i64 {
    model.spec.input_shape.first().copied().unwrap_or(1)
}

/// `options.count` texts of `options.length` new tokens after `options.prompt`, decoded (prompt included).
pub fn samples(
    model: &LoadedModel,
    vocab: &Vocab,
    options: &crate::steps::evaluate::SampleOptions,
    rng: &mut Rng,
    device: tch::Device,
) -> anyhow::Result<Vec<String>> {
    let ids = vocab.encode(&options.prompt).map_err(|e| anyhow::anyhow!("field `samples.prompt`: {e}"))?;
    let prompt = tch::Tensor::from_slice(&ids).unsqueeze(0).repeat([options.count, 1]);
    let out = crate::nn::sample::generate(
        model.model.as_ref(),
        &prompt,
        options.length,
        context(model),
        &options.sampling,
        rng,
        device,
    );
    Ok((0..options.count).map(|i| vocab.decode(&Vec::<i64>::try_from(&out.get(i)).expect("i64 tokens"))).collect())
}

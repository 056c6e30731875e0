//! Sentence-encoder throughput, measured: all-MiniLM-L6-v2 (or any `bert` directory) embedding sentences through
//! `Bert` and [`embed_sentences`], the code `infer` and `evaluate` run. Beside it `scripts/bench/encoder_bench.py`
//! does the same with `transformers`' `BertModel` and mean pooling; `scripts/bench-encoder.sh` runs both.
//!
//! ```sh
//! cargo run --release --example encoder_bench -- MODEL_DIR LINES_FILE [threads] [seconds]
//! ```
//! Two workloads, each f32 and bf16 (autocast), one JSON line each:
//! - `blocks`: batches of 32 rows of exactly 32 tokens (`[CLS]`, 30 tokens of the text, `[SEP]`), no padding — the
//!   reference figure of the issue (transformers, 1 thread: ≈ 127 sentences/s f32, ≈ 242 bf16);
//! - `lines`: the first 2048 lines of LINES_FILE as real sentences, 64 a batch, in file order (each batch padded to
//!   its longest, as a plain loop does) and sorted by length (what anbiq does); with the padding tokens each carried.

use std::time::Instant;

use anbiq::data::tokenizer::TextTokenizer;
use anbiq::nn::arch::bert::Bert;
use anbiq::nn::encode::{embed_sentences, lengths};
use anbiq::nn::runtime::precision::Precision;
use anbiq::nn::weights::hf;
use anbiq::nn::weights::source::WeightSource;
use anbiq::nn::Mode;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Runs `f` (which embeds `n` sentences) repeatedly for about `seconds` after one warm-up run; sentences/s.
fn rate(n: i64, seconds: f64, mut f: impl FnMut()) -> f64 {
    f();
    let (started, mut done) = (Instant::now(), 0);
    while done == 0 || started.elapsed().as_secs_f64() < seconds {
        f();
        done += n;
    }
    done as f64 / started.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, lines) = match (args.get(1), args.get(2)) {
        (Some(d), Some(l)) => (std::path::PathBuf::from(d), std::path::PathBuf::from(l)),
        _ => anyhow::bail!("usage: encoder_bench MODEL_DIR LINES_FILE [threads] [seconds]"),
    };
    let threads: i32 = args.get(3).map_or(Ok(1), |s| s.parse())?;
    let seconds: f64 = args.get(4).map_or(Ok(5.0), |s| s.parse())?;
    tch::set_num_threads(threads);
    let (config, mut weights) = hf::load_bert(&dir)?;
    let vs = VarStore::new(Device::Cpu);
    let model = Bert::new(&config, &vs.root(), &mut WeightSource::Load(&mut weights))?;
    let tokenizer = TextTokenizer::from_dir(&dir)?;
    let pad = i64::from(tokenizer.special().pad.unwrap_or(0));
    let text = std::fs::read_to_string(&lines)?;
    let ids = |s: &str| -> anyhow::Result<Vec<i64>> {
        Ok(tokenizer.encode(s, true).map_err(anyhow::Error::msg)?.into_iter().map(i64::from).collect())
    };

    // Blocks: the text's tokens in rows of 30 between [CLS] and [SEP].
    let frame = ids("")?; // [CLS, SEP]
    let stream: Vec<i64> =
        text.lines().take(4000).flat_map(|l| ids(l).unwrap_or_default()).filter(|t| !frame.contains(t)).collect();
    let rows = 32i64;
    let block: Vec<i64> = stream
        .chunks(30)
        .take(rows as usize)
        .flat_map(|c| [frame[0]].into_iter().chain(c.iter().copied()).chain([frame[1]]))
        .collect();
    let block = Tensor::from_slice(&block).view([rows, 32]);

    // Lines: 2048 real sentences, padded to the longest of all.
    let sentences: Vec<Vec<i64>> =
        text.lines().filter(|l| !l.trim().is_empty()).take(2048).map(ids).collect::<Result<_, _>>()?;
    let longest = sentences.iter().map(Vec::len).max().unwrap_or(1);
    let flat: Vec<i64> =
        sentences.iter().flat_map(|s| s.iter().copied().chain(std::iter::repeat(pad)).take(longest)).collect();
    let all = Tensor::from_slice(&flat).view([sentences.len() as i64, longest as i64]);
    let n = all.size()[0];
    let lengths = lengths(&all, pad);
    let tokens = lengths.sum(Kind::Int64).int64_value(&[]);
    let bar = indicatif::ProgressBar::hidden();

    for precision in [Precision::F32, Precision::Bf16] {
        let blocks = tch::no_grad(|| {
            rate(rows, seconds, || {
                let _ = precision.forward(&model, &block, Mode::Eval);
            })
        });
        // In file order: each batch cut to its own longest (Bert does it), no sorting.
        let mut in_order_padding = 0;
        let mut start = 0;
        while start < n {
            let len = 64.min(n - start);
            let l = lengths.narrow(0, start, len);
            in_order_padding += len * l.max().int64_value(&[]) - l.sum(Kind::Int64).int64_value(&[]);
            start += len;
        }
        let in_order = tch::no_grad(|| {
            rate(n, seconds, || {
                let mut start = 0;
                while start < n {
                    let len = 64.min(n - start);
                    let _ = precision.forward(&model, &all.narrow(0, start, len), Mode::Eval);
                    start += len;
                }
            })
        });
        let mut sorted_padding = 0;
        let sorted = rate(n, seconds, || {
            sorted_padding = embed_sentences(&model, &all, pad, 64, (Device::Cpu, precision), &bar).padding;
        });
        println!(
            "{}",
            serde_json::json!({"impl": "anbiq", "precision": precision, "threads": threads,
                "blocks_32x32_sentences_per_s": blocks,
                "lines": n, "line_tokens": tokens,
                "lines_in_order_sentences_per_s": in_order, "lines_in_order_padding_tokens": in_order_padding,
                "lines_sorted_sentences_per_s": sorted, "lines_sorted_padding_tokens": sorted_padding})
        );
    }
    Ok(())
}

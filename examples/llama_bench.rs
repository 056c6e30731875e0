//! Tokens per second of a pretrained Llama forward pass (SmolLM2-135M from its GGUF), beside
//! `scripts/bench/llama_bench.py` (transformers eager on the same file, same threads): run both with
//! `scripts/bench-llama.sh`. One JSON line per precision: f32 weights, and bf16 weights (a frozen teacher held in
//! bf16, as transformers' `dtype=torch.bfloat16`); then greedy generation through the key/value cache (f32) at
//! batch 1 and 16: 64 new tokens after a 16-token prompt, new tokens per second.
//!
//! ```sh
//! cargo run --release --example llama_bench -- GGUF [batch] [tokens] [runs]
//! ```

use std::time::Instant;

use anbiq::nn::arch::llama::Llama;
use anbiq::nn::weights::gguf::{llama, Gguf};
use anbiq::nn::weights::source::WeightSource;
use anbiq::nn::{Mode, Model};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("usage: llama_bench GGUF [batch] [tokens] [runs]");
    let batch: i64 = args.get(2).map_or(8, |s| s.parse().expect("batch"));
    let tokens: i64 = args.get(3).map_or(256, |s| s.parse().expect("tokens"));
    let runs: usize = args.get(4).map_or(3, |s| s.parse().expect("runs"));
    tch::set_num_threads(1);
    let gguf = Gguf::open(path.as_ref()).expect("a GGUF file");
    let (config, mut weights) = llama::load(&gguf, tch::Kind::Float).expect("a llama GGUF");
    let mut vs = VarStore::new(Device::Cpu);
    let vocab = config.vocab_size.expect("vocab");
    let model = Llama::new(&config, &vs.root(), vocab, &mut WeightSource::Load(&mut weights)).expect("builds");
    vs.freeze();
    tch::manual_seed(0);
    let x = Tensor::randint(vocab, [batch, tokens], (Kind::Int64, Device::Cpu));
    generation(&model, vocab, runs);
    for precision in ["f32", "bf16"] {
        if precision == "bf16" {
            vs.bfloat16();
        }
        let forward = || tch::no_grad(|| model.forward(&x, Mode::Eval).sum(Kind::Float).double_value(&[]));
        forward(); // warm-up: allocator, kernels
        let mut seconds: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                forward();
                t.elapsed().as_secs_f64()
            })
            .collect();
        seconds.sort_by(f64::total_cmp);
        let median = seconds[seconds.len() / 2];
        println!(
            "{{\"impl\": \"anbiq\", \"precision\": \"{precision}\", \"batch\": {batch}, \"tokens\": {tokens}, \"threads\": 1, \
             \"runs\": {runs}, \"seconds\": {median:.4}, \"tokens_per_s\": {:.1}}}",
            (batch * tokens) as f64 / median
        );
    }
}

/// Greedy decoding with the key/value cache, as `transformers.generate(do_sample=False)`: new tokens per second.
fn generation(model: &Llama, vocab: i64, runs: usize) {
    let (prompt_len, new_tokens) = (16, 64);
    let greedy = anbiq::nn::sample::Sampling { temperature: 0.0, top_k: None, top_p: None };
    for batch in [1i64, 16] {
        let prompt = Tensor::randint(vocab, [batch, prompt_len], (Kind::Int64, Device::Cpu));
        let generate = || {
            let mut rng = anbiq::rng::Rng::new(0);
            tch::no_grad(|| {
                anbiq::nn::sample::generate(model, &prompt, new_tokens, 8192, &greedy, &mut rng, Device::Cpu)
            })
        };
        let _ = generate(); // warm-up
        let mut seconds: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let out = generate();
                assert_eq!(out.size(), [batch, prompt_len + new_tokens]);
                t.elapsed().as_secs_f64()
            })
            .collect();
        seconds.sort_by(f64::total_cmp);
        let median = seconds[seconds.len() / 2];
        println!(
            "{{\"impl\": \"anbiq\", \"generate\": true, \"precision\": \"f32\", \"batch\": {batch}, \"prompt\": {prompt_len}, \
             \"new_tokens\": {new_tokens}, \"threads\": 1, \"runs\": {runs}, \"seconds\": {median:.4}, \"tokens_per_s\": {:.1}}}",
            (batch * new_tokens) as f64 / median
        );
    }
}

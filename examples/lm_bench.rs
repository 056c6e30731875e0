//! Tokens per second of anbiq's language-model paths, single-threaded, beside `scripts/bench/lm_bench.py` (the same models
//! and steps in PyTorch eager): run both with `scripts/bench-lm.sh`.
//!
//! - `infer`: the teacher's forward pass over windows, no autograd, then top-k compression (what `infer` does);
//! - `distill_offline`: rebuild dense teacher logits from a top-k batch, student forward, KD loss, backward, Adam;
//! - `distill_online`: the same with the teacher's forward pass in the loop instead of the stored top-k.
//!
//! ```sh
//! cargo run --example lm_bench -- [batch] [seconds]
//! ```

use std::time::Instant;

use anbiq::artifact::logits::StoreDtype;
use anbiq::artifact::token_logits::{compress, expand};
use anbiq::loss::{DistillLoss, KdLoss, LossInput, Target, Temperature};
use anbiq::nn::arch::GptConfig;
use anbiq::nn::training::optimizer::Optimizer;
use anbiq::nn::training::optimizer_config::OptimizerConfig;
use anbiq::nn::{tokens, ArchConfig, Mode, Model};
use anbiq::rng::Rng;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const VOCAB: i64 = 84;
const CONTEXT: i64 = 128;
const TOP_K: i64 = 8;

fn gpt(layers: i64, d_model: i64, seed: u64) -> (VarStore, Box<dyn Model>) {
    let vs = VarStore::new(Device::Cpu);
    let c = ArchConfig::Gpt(GptConfig {
        layers,
        heads: 4,
        d_model,
        context: CONTEXT,
        dropout: 0.0,
        tied: true,
        d_ff: None,
    });
    let model = anbiq::nn::build(&c, &vs.root(), &[CONTEXT], VOCAB, &mut Rng::new(seed)).expect("gpt builds");
    (vs, model)
}

/// Runs `f` for at least `seconds` after one warm-up call; returns calls per second.
fn rate(seconds: f64, mut f: impl FnMut()) -> f64 {
    f();
    let (start, mut calls) = (Instant::now(), 0);
    while calls < 3 || start.elapsed().as_secs_f64() < seconds {
        f();
        calls += 1;
    }
    calls as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let batch: i64 = args.next().map_or(16, |a| a.parse().expect("batch"));
    let seconds: f64 = args.next().map_or(10.0, |a| a.parse().expect("seconds"));
    tch::set_num_threads(1);
    let (_tvs, teacher) = gpt(4, 192, 1);
    let (svs, student) = gpt(2, 80, 2);
    let x =
        (anbiq::nn::runtime::random::uniform(3, &[batch, CONTEXT], Device::Cpu) * VOCAB as f64).to_kind(Kind::Int64);
    let y = x.roll([-1], [1]);
    let stored = compress(&tch::no_grad(|| teacher.forward(&x, Mode::Eval)), TOP_K, StoreDtype::F16);
    let loss = KdLoss { temperature: Temperature::Constant(1.0), alpha: 0.5 };
    let mut opt =
        Optimizer::new(&OptimizerConfig::Adam { lr: 1e-3, betas: [0.9, 0.999], weight_decay: 0.0, eps: 1e-8 }, &svs);
    let mut rng = Rng::new(4);
    let mut step = |teacher_logits: Tensor| {
        let s = tokens::rows(&student.forward(&x, Mode::Train(&mut rng)));
        let t = tokens::rows(&teacher_logits);
        let l = loss
            .loss(&LossInput {
                student: &s,
                teacher: Target::Dense(&t),
                labels: &tokens::labels(&y),
                progress: 0.0,
                sequence_len: None,
                features: None,
            })
            .unwrap();
        opt.zero_grad();
        l.backward();
        opt.step();
    };
    let tokens_per_call = (batch * CONTEXT) as f64;
    let infer = rate(seconds, || {
        let logits = tch::no_grad(|| teacher.forward(&x, Mode::Eval));
        let _ = compress(&logits, TOP_K, StoreDtype::F16);
    });
    let offline = rate(seconds, || step(expand(&stored.logprobs, &stored.indices, &stored.rest, VOCAB)));
    let online = rate(seconds, || step(tch::no_grad(|| teacher.forward(&x, Mode::Eval))));
    for (name, calls) in [("infer", infer), ("distill_offline", offline), ("distill_online", online)] {
        println!("anbiq {name} {:.0}", calls * tokens_per_call);
    }
}

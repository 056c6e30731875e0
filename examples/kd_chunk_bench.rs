//! One chunk of a language model's top-k forward KL, forward and backward: rebuilding the dense teacher (`dense`,
//! what `distill` did before version 5) beside reading the stored top k (`sparse`, [`TopKTeacher::forward_kl`]),
//! alternating in the same run. SmolLM2's shape by default: 341 positions (the chunk of 2^24 / 49,152) × 49,152.
//!
//! ```sh
//! cargo run --example kd_chunk_bench -- [positions] [vocab] [k] [rounds] [even|student]
//! ```
//! Prints one JSON line: milliseconds per chunk of each, and their ratio.

use std::time::Instant;

use anbiq::artifact::logits::StoreDtype;
use anbiq::artifact::token_logits::compress;
use anbiq::loss::{soft_kl, TopKTail, TopKTeacher};
use anbiq::nn::runtime::random::uniform;
use tch::Device;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).map_or(default, |s| s.parse().unwrap_or_else(|_| panic!("argument {i}: {s}")))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (n, v, k, rounds) = (arg(&args, 1, 341i64), arg(&args, 2, 49152i64), arg(&args, 3, 8i64), arg(&args, 4, 10));
    let tail = match args.get(5).map_or("even", String::as_str) {
        "student" => TopKTail::Student,
        _ => TopKTail::Even,
    };
    let top = compress(&(uniform(1, &[n, v], Device::Cpu) * 12.0), k, StoreDtype::F16);
    let student = (uniform(2, &[n, v], Device::Cpu) * 12.0).set_requires_grad(true);
    let time = |sparse: bool| {
        let start = Instant::now();
        let teacher = TopKTeacher::new(&top.logprobs, &top.indices, &top.rest, v, tail);
        let loss = match sparse {
            true => teacher.forward_kl(&student, 1.0).expect("T = 1"),
            false => soft_kl(&student, teacher.dense(&student), 1.0),
        };
        loss.backward();
        let _ = student.grad().zero_();
        start.elapsed().as_secs_f64() * 1e3
    };
    let (mut dense, mut sparse) = (Vec::new(), Vec::new());
    for round in 0..=rounds {
        let (d, s) = (time(false), time(true));
        if round > 0 {
            dense.push(d);
            sparse.push(s);
        }
    }
    let median = |mut x: Vec<f64>| {
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let (dense, sparse) = (median(dense), median(sparse));
    println!(
        "{}",
        serde_json::json!({
            "positions": n, "vocab": v, "top_k": k, "tail": format!("{tail:?}").to_lowercase(),
            "threads": tch::get_num_threads(), "dense_ms": dense, "sparse_ms": sparse, "speedup": dense / sparse,
        })
    );
}

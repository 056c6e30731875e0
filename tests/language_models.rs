//! Language models on a tiny corpus: the tokenizer round-trips, the gpt never sees the future, the per-token top-k
//! store rebuilds the teacher's probabilities (top k exact, leftover mass spread over the rest), token-level KD and
//! reverse KL have the right gradient (finite differences, and KD's closed form), generation is deterministic for
//! a seed, and a whole teacher → logits → KD (offline, with either tail; online reverse KL) / sequence-level KD →
//! evaluate workflow runs and repeats bit for bit.
//!
//! Everything runs on a few hundred characters with `threads: 1`, so the file takes seconds.

use std::collections::BTreeMap;
use std::path::Path;

use anbiq::artifact::logits::StoreDtype;
use anbiq::artifact::token_logits::{expand_like, ShardWriter, TokenLogits, TokenLogitsMeta};
use anbiq::data::text::{tokenize, windows, Tokenizer};
use anbiq::data::Vocab;
use anbiq::loss::{DistillLoss, KdLoss, LossInput, ReverseKl, Target, Temperature};
use anbiq::nn::arch::GptConfig;
use anbiq::nn::sample::{generate, Sampling};
use anbiq::nn::{tokens, ArchConfig, Mode};
use anbiq::rng::Rng;
use anbiq::run::{self, Lockfile, RunOptions, Store};
use anbiq::steps::Progress;
use anbiq::workflow;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const CORPUS: &str = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n\
First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n\
First Citizen:\nFirst, you know Caius Marcius is chief enemy to the people.\n\nAll:\nWe know't, we know't.\n";

fn f64s(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn tiny_gpt(context: i64, vocab: i64, seed: u64) -> (VarStore, Box<dyn anbiq::nn::Model>) {
    let vs = VarStore::new(Device::Cpu);
    let config =
        ArchConfig::Gpt(GptConfig { layers: 2, heads: 2, d_model: 16, context, dropout: 0.0, tied: true, d_ff: None });
    let model = anbiq::nn::build(&config, &vs.root(), &[context], vocab, &mut Rng::new(seed)).unwrap();
    (vs, model)
}

#[test]
fn tokenizers_round_trip_and_windows_are_the_text() {
    let text = format!("{CORPUS}Ünïcode — too.\n");
    for tokenizer in [Tokenizer::Char, Tokenizer::Byte] {
        let (vocab, ids) = tokenize(&text, tokenizer).unwrap();
        let split = windows(&ids, &vocab, 16, &[("test".into(), 0.2)], "t").unwrap();
        let vocab = split[0].1.meta.vocab.clone().unwrap();
        assert_eq!(vocab.decode(&vocab.encode(&text).unwrap()), text, "{tokenizer:?}");
        // The windows of all parts, in order, are the token stream (minus each part's tail shorter than a window).
        let train = &split[0].1;
        let first: Vec<i64> = Vec::try_from(&train.x.flatten(0, -1)).unwrap();
        let all = vocab.encode(&text).unwrap();
        assert_eq!(first, all[..first.len()]);
        let next: Vec<i64> = Vec::try_from(&train.y.flatten(0, -1)).unwrap();
        assert_eq!(next, all[1..first.len() + 1]);
    }
    let chars = Vocab::chars_of(&text);
    assert_eq!(chars.size() as usize, {
        let mut c: Vec<char> = text.chars().collect();
        c.sort();
        c.dedup();
        c.len()
    });
    assert!(chars.encode("xyz\u{1F600}").is_err(), "a character outside the corpus is an error");
}

#[test]
fn a_token_never_sees_the_future() {
    let (_vs, model) = tiny_gpt(24, 30, 1);
    let x = Tensor::from_slice(&(0..24).map(|i| (i * 7 % 30) as i64).collect::<Vec<_>>()).view([1, 24]);
    for changed_at in [0, 11, 23] {
        let y = x.copy();
        let _ = y.get(0).get(changed_at).fill_((x.int64_value(&[0, changed_at]) + 1) % 30);
        let (a, b) = tch::no_grad(|| (model.forward(&x, Mode::Eval), model.forward(&y, Mode::Eval)));
        assert!(a.narrow(1, 0, changed_at).equal(&b.narrow(1, 0, changed_at)), "logits before {changed_at} moved");
        assert!(!a.narrow(1, changed_at, 1).equal(&b.narrow(1, changed_at, 1)), "the changed position must move");
    }
}

/// Teacher logits `[2, 3, 10]` stored with k = 3 in shards of one window.
fn stored(dir: &Path, logits: &Tensor, k: i64) -> TokenLogits {
    let (n, t, v) = logits.size3().unwrap();
    let mut writer = ShardWriter::new(dir, k, StoreDtype::F32, 1, v);
    for i in 0..n {
        writer.push(&logits.narrow(0, i, 1)).unwrap();
    }
    let meta = TokenLogitsMeta {
        dataset: "d".into(),
        windows: 0,
        time: t,
        classes: v,
        top_k: k,
        sampled: false,
        layout: Default::default(),
        dtype: StoreDtype::F32,
        model: "teacher".into(),
        shards: vec![],
    };
    assert_eq!(writer.finish(meta).unwrap().shards, vec![1; n as usize]);
    TokenLogits::read(dir).unwrap()
}

#[test]
fn top_k_store_rebuilds_probabilities_and_leftover_mass() {
    let dir = tempfile::tempdir().unwrap();
    let logits = anbiq::nn::runtime::random::uniform(11, &[2, 3, 10], Device::Cpu) * 8.0 - 4.0;
    let store = stored(dir.path(), &logits, 3);
    let rebuilt = store.dense_logits(&Tensor::from_slice(&[0i64, 1])).exp();
    let p = logits.softmax(-1, Kind::Float);
    let (p, rebuilt) = (f64s(&p), f64s(&rebuilt));
    for row in 0..6 {
        let (truth, got) = (&p[row * 10..row * 10 + 10], &rebuilt[row * 10..row * 10 + 10]);
        let mut order: Vec<usize> = (0..10).collect();
        order.sort_by(|&a, &b| truth[b].total_cmp(&truth[a]));
        let rest: f64 = order[3..].iter().map(|&i| truth[i]).sum();
        for &i in &order[..3] {
            assert!((got[i] - truth[i]).abs() < 1e-6, "top-k probability of token {i} in row {row}");
        }
        for &i in &order[3..] {
            assert!((got[i] - rest / 7.0).abs() < 1e-6, "token {i} of row {row} gets an even share of the rest");
        }
        assert!((got.iter().sum::<f64>() - 1.0).abs() < 1e-6, "row {row} sums to 1");
    }
}

#[test]
fn token_level_kd_and_reverse_kl_gradients_match_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    let (b, t, v) = (2i64, 3i64, 6i64);
    let teacher_logits = anbiq::nn::runtime::random::uniform(3, &[b, t, v], Device::Cpu) * 6.0 - 3.0;
    let store = stored(dir.path(), &teacher_logits, 2);
    // The teacher exactly as distill sees it: rebuilt from the top-k store, one row per token.
    let teacher = tokens::rows(&store.dense_logits(&Tensor::from_slice(&[0i64, 1]))).to_kind(Kind::Double);
    let student0 = (anbiq::nn::runtime::random::uniform(4, &[b, t, v], Device::Cpu) * 4.0 - 2.0).to_kind(Kind::Double);
    let labels = tokens::labels(&Tensor::from_slice(&[1i64, 0, 5, 2, 2, 3]).view([b, t]));
    let (temp, alpha) = (2.0, 0.7);
    let losses: Vec<(&str, Box<dyn DistillLoss>)> = vec![
        ("kd", Box::new(KdLoss { temperature: Temperature::Constant(temp), alpha })),
        ("reverse_kl", Box::new(ReverseKl { temperature: Temperature::Constant(temp), alpha })),
    ];
    for (name, loss) in &losses {
        let value = |s: &Tensor| {
            let s = tokens::rows(s);
            loss.loss(&LossInput {
                student: &s,
                teacher: Target::Dense(&teacher),
                labels: &labels,
                progress: 0.0,
                sequence_len: None,
                features: None,
            })
            .unwrap()
        };
        let s = student0.copy().set_requires_grad(true);
        value(&s).backward();
        let autograd = f64s(&s.grad());
        let base = f64s(&student0);
        // The label term (tch's cross_entropy_for_logits) runs in f32 whatever the input kind: a step of 1e-2 keeps
        // rounding and truncation errors near 1e-5.
        let eps = 1e-2;
        for i in 0..base.len() {
            let at = |d: f64| {
                let mut w = base.clone();
                w[i] += d;
                value(&Tensor::from_slice(&w).view([b, t, v])).double_value(&[])
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (numeric - autograd[i]).abs() < 2e-5,
                "{name} [{i}]: finite difference {numeric}, autograd {}",
                autograd[i]
            );
        }
        if *name == "kd" {
            // Closed form per token: α·T·(q_T − p_T)/N + (1−α)·(q − onehot)/N with N = B·T tokens and p the rebuilt
            // teacher, so the leftover mass pulls the student's tail towards the even share.
            let n = (b * t) as f64;
            let q_t = f64s(&(tokens::rows(&student0) / temp).softmax(-1, Kind::Double));
            let p_t = f64s(&(&teacher / temp).softmax(-1, Kind::Double));
            let q = f64s(&tokens::rows(&student0).softmax(-1, Kind::Double));
            let y: Vec<i64> = Vec::try_from(&labels).unwrap();
            for i in 0..base.len() {
                let onehot = if y[i / v as usize] == (i % v as usize) as i64 { 1.0 } else { 0.0 };
                let closed = alpha * temp * (q_t[i] - p_t[i]) / n + (1.0 - alpha) * (q[i] - onehot) / n;
                assert!((closed - autograd[i]).abs() < 1e-7, "kd closed form [{i}]");
            }
        }
    }
}

/// With the tail shaped like the student (`top_k_tail: student`), forward KL is exactly the KL between the
/// (k + 1)-bucket distributions "each of the teacher's top k, and everything else" — value and gradient.
#[test]
fn a_student_shaped_tail_makes_kd_the_exact_top_k_plus_rest_kl() {
    let dir = tempfile::tempdir().unwrap();
    let (b, t, v, k) = (2i64, 3i64, 7i64, 3i64);
    let store = stored(dir.path(), &(anbiq::nn::runtime::random::uniform(8, &[b, t, v], Device::Cpu) * 6.0 - 3.0), k);
    let (logprobs, indices, rest) = store.top_k(&Tensor::from_slice(&[0i64, 1]));
    let student0 = anbiq::nn::runtime::random::uniform(9, &[b, t, v], Device::Cpu) * 4.0 - 2.0;
    let kd = KdLoss { temperature: Temperature::Constant(1.0), alpha: 1.0 };
    let labels = tokens::labels(&Tensor::zeros([b, t], (Kind::Int64, Device::Cpu)));

    // Through distill's path: rebuild the teacher like the student, then the ordinary KD loss.
    let s = student0.copy().set_requires_grad(true);
    let teacher = tokens::rows(&expand_like(&logprobs, &indices, &rest, &s));
    let p: Vec<f64> = f64s(&teacher.exp());
    let kd_value = kd.loss(&LossInput {
        student: &tokens::rows(&s),
        teacher: Target::Dense(&teacher),
        labels: &labels,
        progress: 0.0,
        sequence_len: None,
        features: None,
    });
    let kd_value = kd_value.unwrap();
    kd_value.backward();
    let kd_grad = f64s(&s.grad());

    // By hand: buckets = top k tokens + "the rest"; KL(p ‖ q) over buckets, averaged over tokens.
    let s2 = student0.copy().set_requires_grad(true);
    let log_q = s2.log_softmax(-1, Kind::Float);
    let idx = indices.to_kind(Kind::Int64);
    let q_top = log_q.gather(-1, &idx, false).exp();
    let q_rest = -q_top.sum_dim_intlist(-1, false, Kind::Float) + 1.0;
    let p_top = logprobs.to_kind(Kind::Float).exp();
    let rest = rest.to_kind(Kind::Float);
    let bucket_kl = (&p_top * (p_top.log() - q_top.log())).sum_dim_intlist(-1, false, Kind::Float)
        + &rest * (rest.log() - q_rest.log());
    let by_hand = bucket_kl.mean(Kind::Float);
    by_hand.backward();
    assert!((kd_value.double_value(&[]) - by_hand.double_value(&[])).abs() < 1e-6);
    for (i, (a, h)) in kd_grad.iter().zip(f64s(&s2.grad())).enumerate() {
        assert!((a - h).abs() < 1e-6, "gradient [{i}]: kd {a}, buckets {h}");
    }
    // The rebuilt teacher keeps the top k and the total, and its tail follows the student.
    for row in 0..(b * t) as usize {
        assert!((p[row * v as usize..(row + 1) * v as usize].iter().sum::<f64>() - 1.0).abs() < 1e-5);
    }
}

#[test]
fn generation_is_deterministic_for_a_seed() {
    let (_vs, model) = tiny_gpt(16, 20, 5);
    let prompt = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6]).view([2, 3]);
    let sampling = Sampling { temperature: 1.2, top_k: Some(10), top_p: Some(0.95) };
    let run = |seed: u64, context: i64| {
        generate(model.as_ref(), &prompt, 12, context, &sampling, &mut Rng::derive(seed, "g"), Device::Cpu)
    };
    let a = run(1, 16);
    assert_eq!(a.size(), [2, 15]);
    assert!(a.narrow(1, 0, 3).equal(&prompt), "the prompt is kept");
    assert!(a.equal(&run(1, 16)), "same seed, same text");
    assert!(!a.equal(&run(2, 16)), "another seed, other text");
    // Past the context (no cache, sliding window) it is just as deterministic.
    assert!(run(3, 8).equal(&run(3, 8)));
    let greedy = Sampling { temperature: 0.0, ..Default::default() };
    let g = |seed| generate(model.as_ref(), &prompt, 5, 16, &greedy, &mut Rng::derive(seed, "g"), Device::Cpu);
    assert!(g(1).equal(&g(2)), "greedy ignores the seed");
}

/// `corpus` is relative to the workflow, so both runs have the same config (and cache keys).
fn workflow_yaml(corpus: &str) -> String {
    format!(
        "name: lm-tiny
seed: 3
threads: 1
steps:
  text: {{kind: dataset, source: text, path: {corpus}, context: 16, split: {{test: 0.2}}}}
  teacher:
    kind: train
    data: text.train
    model: {{arch: gpt, layers: 2, heads: 2, d_model: 32, context: 16, dropout: 0.1}}
    epochs: 30
    batch_size: 8
    optimizer: {{name: adam, lr: 0.003}}
  logits: {{kind: infer, model: teacher, data: text.train, store: {{top_k: 4, shard_windows: 16}}, batch_size: 8}}
  kd:
    kind: distill
    teacher: logits
    data: text.train
    model: {{arch: gpt, layers: 1, heads: 1, d_model: 8, context: 16}}
    loss: {{kd: {{temperature: 1, alpha: 0.5}}}}
    epochs: 5
    batch_size: 8
  online:
    kind: distill
    teacher: teacher
    data: text.train
    model: {{arch: gpt, layers: 1, heads: 1, d_model: 8, context: 16}}
    loss: {{reverse_kl: {{temperature: 1}}}}
    epochs: 2
    batch_size: 8
  tail:
    kind: distill
    teacher: logits
    data: text.train
    model: {{arch: gpt, layers: 1, heads: 1, d_model: 8, context: 16}}
    loss: {{kd: {{temperature: 1, alpha: 0.5}}}}
    top_k_tail: student
    epochs: 2
    batch_size: 8
  transfer: {{kind: generate, model: teacher, data: text.train, count: 6, prompt_tokens: 4, batch_size: 4}}
  seqkd: {{kind: train, data: transfer, model: {{arch: gpt, layers: 1, heads: 1, d_model: 8, context: 16}}, epochs: 5, batch_size: 8}}
  report:
    kind: evaluate
    data: text.test
    models: [teacher, kd, seqkd, online, tail]
    reference: teacher
    timing: false
    samples: {{prompt: \"All:\", length: 20, count: 1}}
",
    )
}

#[test]
fn a_language_model_workflow_runs_and_repeats_bit_for_bit() {
    // One directory, two stores: cache keys hash input files by path, so the runs must share the corpus' path.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("corpus.txt"), CORPUS.repeat(3)).unwrap();
    std::fs::write(dir.path().join("wf.yaml"), workflow_yaml("corpus.txt")).unwrap();
    let wf = workflow::load(&dir.path().join("wf.yaml"), &[]).unwrap_or_else(|d| panic!("{d}"));
    type Metrics = BTreeMap<String, BTreeMap<String, f64>>;
    let runs: Vec<(Lockfile, Metrics, String)> = ["store1", "store2"]
        .iter()
        .map(|name| {
            let store = dir.path().join(name);
            let options =
                RunOptions { jobs: 2, store: store.clone(), progress: Progress::hidden(), ..Default::default() };
            let report = run::run(&wf, &options).unwrap();
            let failures: Vec<_> = report.failures().collect();
            assert!(failures.is_empty(), "{failures:?}");
            let lock = Lockfile::read(&wf.lockfile_path()).unwrap().unwrap();
            let out = Store::open(&store).unwrap().step_dir(&lock.step("report").unwrap().key).join("report");
            let metrics = serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
            (lock, metrics, std::fs::read_to_string(out.join("report.md")).unwrap())
        })
        .collect();
    let (lock, metrics, report) = &runs[0];
    let outputs = |l: &Lockfile| -> Vec<_> { l.steps.iter().map(|s| (s.id.clone(), s.outputs.clone())).collect() };
    assert_eq!(outputs(lock), outputs(&runs[1].0), "same seed, bit-identical outputs");
    for model in ["teacher", "kd", "seqkd", "online", "tail"] {
        let m = &metrics[model];
        let (nll, bpc, ppl) = (m["nll"], m["bits_per_char"], m["perplexity"]);
        assert!(nll.is_finite() && nll > 0.0, "{model}: nll {nll}");
        assert!((bpc - nll / std::f64::consts::LN_2).abs() < 1e-9, "{model}: char vocabulary, bpc = nll / ln 2");
        assert!((ppl - nll.exp()).abs() < 1e-9 * ppl);
        assert!(m.contains_key("agreement") && m.contains_key("kl_from_reference"));
    }
    assert_eq!(metrics["teacher"]["agreement"], 1.0);
    // The teacher memorises three repetitions of a short text: far better than uniform over its characters.
    let uniform_bits = (metrics["teacher"]["tokens"] > 0.0).then(|| 33f64.log2()).unwrap();
    assert!(metrics["teacher"]["bits_per_char"] < uniform_bits - 1.0, "{:?}", metrics["teacher"]);
    assert!(report.contains("## Samples from `kd`") && report.contains("All:"), "{report}");
    let logits = lock.step("logits").unwrap();
    assert!(logits.metrics["shards"].as_i64().unwrap() > 1, "{:?}", logits.metrics);
}

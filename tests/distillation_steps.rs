//! The distillation steps on real data and on tiny hand-made cases: teachers learn (digits, an MNIST slice), the KD
//! loss has the right gradient, the filter keeps exactly what its rule says, evaluate's numbers match a hand
//! computation, top-k logits keep the top-k mass exactly, offline distillation reads logits through a view's indices,
//! and bad configs fail with messages that name the step and field.
//!
//! Workflows run with `threads: 1`, so the tests can share two cores. MNIST tests need `scripts/fetch-data.sh mnist`
//! (or `ANBIQ_MNIST_DIR` pointing at a directory of IDX files) and are skipped with a note otherwise.

use std::path::{Path, PathBuf};

use anbiq::artifact::logits::StoreDtype;
use anbiq::artifact::{LogitsArtifact, LogitsMeta};
use anbiq::loss::{CeTeacherLabels, DistillLoss, KdLoss, LossInput, MseLogits, Target, Temperature};
use anbiq::run::{Outcome, RunReport};
use anbiq::steps::evaluate::quality;
use anbiq::steps::filter::{select, KeepRule, Score, Scores};
use anbiq::workflow;
use tch::{Kind, Tensor};

mod common;
use common::Project;

// ---------------------------------------------------------------------------------------------------------------
// Helpers

fn failure<'a>(report: &'a RunReport, step: &str) -> &'a str {
    match &report.results.iter().find(|r| r.id == step).unwrap().outcome {
        Outcome::Failed { error } => error,
        other => panic!("step `{step}` should have failed, got {other:?}"),
    }
}

/// Real MNIST when present: `ANBIQ_MNIST_DIR`, else the repository's `data/mnist`.
fn mnist_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ANBIQ_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist"));
    if dir.join("train-images-idx3-ubyte").is_file() {
        Some(dir)
    } else {
        eprintln!("skipping: no MNIST in {} (scripts/fetch-data.sh mnist, or set ANBIQ_MNIST_DIR)", dir.display());
        None
    }
}

fn f64s(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn i64s(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.to_kind(Kind::Int64).flatten(0, -1)).unwrap()
}

fn rows(values: &[&[f64]]) -> Tensor {
    let cols = values[0].len() as i64;
    Tensor::from_slice(&values.concat()).reshape([values.len() as i64, cols])
}

fn assert_close(got: f64, want: f64, tol: f64, what: &str) {
    assert!((got - want).abs() <= tol, "{what}: got {got}, want {want} (±{tol})");
}

// ---------------------------------------------------------------------------------------------------------------
// Real learning, end to end

/// Digits: a teacher, its logits, a filter, an offline KD student on the filtered view, an online KD student, a
/// student trained only on the teacher's hard labels over a scattered view, and an evaluate over all of them.
const DIGITS: &str = "\
seed: 11
threads: 1
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.2}, normalize: standardize}
  teacher:
    kind: train
    data: digits.train
    model: {arch: mlp, hidden: [64]}
    epochs: 20
    optimizer: {name: adam, lr: 0.003}
  logits: {kind: infer, model: teacher, data: digits.train, store: {dtype: f32}}
  kept: {kind: filter, data: logits, keep: {min_confidence: 0.9, agree_with_label: true}}
  scattered: {kind: filter, data: logits, keep: {top_fraction: 0.5, by: margin, balance: true}}
  offline:
    kind: distill
    teacher: logits
    data: kept
    model: {arch: mlp, hidden: [32]}
    loss: {kd: {temperature: 4, alpha: 0.9}}
    epochs: 20
    optimizer: {name: adam, lr: 0.003}
  online:
    kind: distill
    teacher: teacher
    data: digits.train
    model: {arch: mlp, hidden: [32]}
    loss: [{kd: {temperature: {from: 8, to: 2}, alpha: 1.0}, weight: 1.0}, {mse_logits: {}, weight: 0.01}]
    epochs: 10
    optimizer: {name: adam, lr: 0.003}
  pseudo:
    kind: distill
    teacher: logits
    data: scattered
    model: {arch: mlp, hidden: [32]}
    loss: {ce_teacher_labels: {}}
    epochs: 30
    optimizer: {name: adam, lr: 0.003}
  report:
    kind: evaluate
    data: digits.test
    models: [teacher, offline, online, pseudo]
    reference: teacher
    timing: false
";

/// Floors for the digits workflow above (measured: teacher 0.97–0.98, students 0.93–0.97).
const DIGITS_TEACHER_FLOOR: f64 = 0.95;
const DIGITS_STUDENT_FLOOR: f64 = 0.90;

#[test]
fn digits_teacher_learns_and_students_distil_offline_online_and_through_a_view() {
    let p = Project::new(DIGITS);
    let started = std::time::Instant::now();
    p.run(&[]);
    eprintln!("digits workflow: {:.1}s", started.elapsed().as_secs_f64());
    let m = p.metrics("report");

    let teacher = &m["teacher"];
    eprintln!("digits teacher accuracy {:.4}", teacher["accuracy"]);
    assert!(teacher["accuracy"] >= DIGITS_TEACHER_FLOOR, "teacher accuracy {}", teacher["accuracy"]);
    // 64 inputs → 64 hidden → 10 classes.
    assert_eq!(teacher["parameters"], (64 * 64 + 64 + 64 * 10 + 10) as f64);
    assert_eq!(teacher["agreement"], 1.0);
    assert_close(teacher["kl_from_reference"], 0.0, 1e-12, "KL of the reference with itself");
    for student in ["offline", "online", "pseudo"] {
        let s = &m[student];
        eprintln!("{student}: accuracy {:.4}, agreement {:.4}", s["accuracy"], s["agreement"]);
        // `pseudo` learns from about half the training set and the teacher's hard labels only: a lower floor.
        let floor = if student == "pseudo" { 0.85 } else { DIGITS_STUDENT_FLOOR };
        assert!(s["accuracy"] >= floor, "{student} accuracy {}", s["accuracy"]);
        assert!(s["kl_from_reference"] > 0.0);
    }

    // `pseudo` never saw a true label: it learnt the teacher's predictions for the rows of a scattered view. Had
    // distill looked logits up by view position instead of base row, it would have paired each image with another
    // image's teacher label, and its agreement with the teacher would be near chance (0.1).
    let view = p.output("scattered", "data");
    let indices = i64s(&Tensor::read_safetensors(view.join("indices.safetensors")).unwrap().remove(0).1);
    let displaced = indices.iter().enumerate().filter(|(i, &b)| *i as i64 != b).count();
    assert!(displaced * 10 >= indices.len() * 9, "the view must move most rows: {displaced} of {}", indices.len());
    assert!(m["pseudo"]["agreement"] >= 0.88, "pseudo agreement {}", m["pseudo"]["agreement"]);

    // Each filter's view holds exactly the rows its rule selects from the stored logits.
    let logits = LogitsArtifact::read(&p.output("logits", "logits")).unwrap();
    let base = anbiq::artifact::dataset::read_dataset(&p.store().join(&logits.meta.dataset)).unwrap();
    let all = Tensor::arange(logits.meta.samples, (Kind::Int64, tch::Device::Cpu));
    let scores = Scores::from_log_probs(&logits.log_probs(&all));
    for (step, rule) in [
        ("kept", KeepRule { min_confidence: Some(0.9), agree_with_label: true, ..Default::default() }),
        ("scattered", KeepRule { top_fraction: Some(0.5), by: Score::Margin, balance: true, ..Default::default() }),
    ] {
        let dir = p.output(step, "data");
        let stored = i64s(&Tensor::read_safetensors(dir.join("indices.safetensors")).unwrap().remove(0).1);
        let want = i64s(&select(&rule, &scores, &base.y, base.meta.classes));
        assert_eq!(stored, want, "{step}");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("filter.json")).unwrap()).unwrap();
        assert_eq!(report["kept"], want.len());
        let per_class: Vec<i64> = serde_json::from_value(report["kept_per_class"].clone()).unwrap();
        let labels = i64s(&base.y);
        for (c, &n) in per_class.iter().enumerate() {
            assert_eq!(n, want.iter().filter(|&&i| labels[i as usize] == c as i64).count() as i64, "{step} class {c}");
        }
        // Every kept row really passes the rule (a check of `select` against the scores themselves).
        if step == "kept" {
            let conf = f64s(&scores.confidence);
            let pred = i64s(&scores.prediction);
            let expected: Vec<i64> =
                (0..labels.len()).filter(|&i| conf[i] >= 0.9 && pred[i] == labels[i]).map(|i| i as i64).collect();
            assert_eq!(stored, expected);
        }
        if step == "scattered" {
            assert!(per_class.iter().all(|&n| n == per_class[0]), "balanced: {per_class:?}");
        }
    }
}

/// `precision: bf16` on a teacher, its inference and an online student; the same in f32 beside them.
const BF16: &str = "\
seed: 4
threads: 1
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.2}, normalize: standardize}
  teacher: {kind: train, data: digits.train, model: {arch: mlp, hidden: [64]}, epochs: 15, optimizer: {name: adam, lr: 0.003}}
  teacher_bf16: {kind: train, data: digits.train, model: {arch: mlp, hidden: [64]}, epochs: 15, optimizer: {name: adam, lr: 0.003}, precision: bf16}
  f32: {kind: infer, model: teacher, data: digits.train, store: {dtype: f32}}
  bf16: {kind: infer, model: teacher, data: digits.train, store: {dtype: f32}, precision: bf16}
  student_bf16: {kind: distill, teacher: teacher, data: digits.train, model: {arch: mlp, hidden: [32]}, loss: {kd: {}}, epochs: 10, optimizer: {name: adam, lr: 0.003}, precision: bf16}
  report: {kind: evaluate, data: digits.test, models: [teacher, teacher_bf16, student_bf16], timing: false}
";

#[test]
fn bf16_precision_trains_infers_and_distils_close_to_f32_deterministically() {
    let (a, b) = (Project::new(BF16), Project::new(BF16));
    a.run(&[]);
    b.run(&[]);
    let outputs =
        |p: &Project| -> Vec<_> { p.lock().steps.iter().map(|s| (s.id.clone(), s.outputs.clone())).collect() };
    assert_eq!(outputs(&a), outputs(&b), "bf16 steps are deterministic on the CPU");

    // The same teacher's logits through bf16 autocast: close to f32, but not equal (bf16 really ran).
    let dense = |step: &str| {
        let logits = LogitsArtifact::read(&a.output(step, "logits")).unwrap();
        logits.dense_logits(&Tensor::arange(logits.meta.samples, (Kind::Int64, tch::Device::Cpu)))
    };
    let (full, half) = (dense("f32"), dense("bf16"));
    let err = (&half - &full).abs().max().double_value(&[]);
    let scale = full.abs().max().double_value(&[]);
    assert!(err > 0.0 && err < 0.05 * scale, "bf16 logits differ from f32 by {err} (largest |logit| {scale})");
    let agree = half.argmax(-1, false).eq_tensor(&full.argmax(-1, false)).to_kind(Kind::Float).mean(Kind::Float);
    assert!(agree.double_value(&[]) >= 0.99, "bf16 and f32 predictions agree on {agree}");

    let m = a.metrics("report");
    for model in ["teacher_bf16", "student_bf16"] {
        let floor = if model == "teacher_bf16" { DIGITS_TEACHER_FLOOR } else { DIGITS_STUDENT_FLOOR };
        assert!(m[model]["accuracy"] >= floor, "{model} accuracy {}", m[model]["accuracy"]);
    }
    // f32 is the default and stays out of the canonical config, so existing cache keys are unchanged.
    let lock = a.lock();
    assert!(lock.step("f32").unwrap().ingredients.config.get("precision").is_none());
    assert_eq!(lock.step("bf16").unwrap().ingredients.config["precision"], "bf16");
}

#[test]
fn mnist_slice_cnn_teacher_learns_and_an_mlp_distils_from_it() {
    let Some(dir) = mnist_dir() else { return };
    let yaml = format!(
        "\
seed: 5
threads: 1
steps:
  mnist: {{kind: dataset, source: mnist, path: '{}', limit: 3000, normalize: standardize}}
  teacher:
    kind: train
    data: mnist.train
    model: {{arch: cnn, channels: [8, 16], kernel: 5, hidden: [64]}}
    epochs: 6
    optimizer: {{name: adam, lr: 0.002}}
  logits: {{kind: infer, model: teacher, data: mnist.train, store: {{dtype: f16, top_k: 3}}}}
  student:
    kind: distill
    teacher: logits
    data: mnist.train
    model: {{arch: mlp, hidden: [64]}}
    loss: {{kd: {{temperature: 4, alpha: 0.7}}}}
    epochs: 10
    optimizer: {{name: adam, lr: 0.002}}
  report: {{kind: evaluate, data: mnist.test, models: [teacher, student], reference: teacher, timing: false}}
",
        dir.display()
    );
    let p = Project::new(&yaml);
    let started = std::time::Instant::now();
    p.run(&[]);
    eprintln!("mnist slice workflow: {:.1}s", started.elapsed().as_secs_f64());
    let m = p.metrics("report");
    eprintln!("mnist slice: teacher {:.4}, student {:.4}", m["teacher"]["accuracy"], m["student"]["accuracy"]);
    // Measured: teacher 0.926, student 0.888 (3000 training images, 6 and 10 epochs).
    assert!(m["teacher"]["accuracy"] >= 0.90, "cnn teacher on 3000 MNIST images: {}", m["teacher"]["accuracy"]);
    assert!(m["student"]["accuracy"] >= 0.85, "mlp student: {}", m["student"]["accuracy"]);
    assert!(m["teacher"].contains_key("top5_accuracy"));
}

// ---------------------------------------------------------------------------------------------------------------
// Losses

fn loss_value(loss: &dyn DistillLoss, student: &Tensor, teacher: &Tensor, labels: &Tensor) -> f64 {
    loss.loss(&LossInput::new(student, teacher, labels)).unwrap().double_value(&[])
}

/// KD's gradient with respect to the student's logits, three ways: autograd, central finite differences, and the
/// closed form `α·T·(q_T − p_T)/B + (1−α)·(q_1 − onehot(y))/B`.
#[test]
fn kd_loss_gradient_matches_finite_differences_and_the_closed_form() {
    let student = rows(&[&[0.3, -1.2, 2.0, 0.5], &[1.5, 0.2, -0.7, 0.0], &[-0.4, 0.9, 0.1, -2.2]]);
    let teacher = rows(&[&[2.5, -0.5, 1.0, 0.0], &[0.1, 3.0, -1.0, 0.4], &[-1.0, 0.0, 0.5, 1.5]]);
    let labels = Tensor::from_slice(&[2i64, 1, 3]);
    let (b, t, alpha) = (3.0, 3.0, 0.8);
    let kd = KdLoss { temperature: Temperature::Constant(t), alpha };

    let s = Tensor::from_slice(&f64s(&student)).reshape([3, 4]).set_requires_grad(true);
    kd.loss(&LossInput {
        student: &s,
        teacher: Target::Dense(&teacher),
        labels: &labels,
        progress: 0.0,
        sequence_len: None,
        features: None,
    })
    .unwrap()
    .backward();
    let autograd = f64s(&s.grad());

    // The loss is evaluated in f32 (see below): a step of 1e-2 keeps rounding (~1e-5) and truncation (~1e-5) small.
    let eps = 1e-2;
    let mut numeric = Vec::new();
    for i in 0..12 {
        let bump = |d: f64| {
            let mut v = f64s(&student);
            v[i] += d;
            Tensor::from_slice(&v).reshape([3, 4])
        };
        let up = loss_value(&kd, &bump(eps), &teacher, &labels);
        let down = loss_value(&kd, &bump(-eps), &teacher, &labels);
        numeric.push((up - down) / (2.0 * eps));
    }

    let q_t = f64s(&(&student / t).softmax(-1, Kind::Double));
    let p_t = f64s(&(&teacher / t).softmax(-1, Kind::Double));
    let q_1 = f64s(&student.softmax(-1, Kind::Double));
    let y = i64s(&labels);
    let closed: Vec<f64> = (0..12)
        .map(|i| {
            let onehot = if y[i / 4] == (i % 4) as i64 { 1.0 } else { 0.0 };
            alpha * t * (q_t[i] - p_t[i]) / b + (1.0 - alpha) * (q_1[i] - onehot) / b
        })
        .collect();
    // `loss::kd` computes its softmaxes in f32 whatever the input kind, so agreement is to f32 precision.
    for i in 0..12 {
        assert_close(autograd[i], closed[i], 1e-6, &format!("autograd vs closed form [{i}]"));
        assert_close(numeric[i], closed[i], 1e-4, &format!("finite difference vs closed form [{i}]"));
    }

    // The value itself: α·T²·mean_b KL(p_T ‖ q_T) + (1−α)·mean_b CE.
    let log_q_t = f64s(&(&student / t).log_softmax(-1, Kind::Double));
    let log_p_t = f64s(&(&teacher / t).log_softmax(-1, Kind::Double));
    let log_q_1 = f64s(&student.log_softmax(-1, Kind::Double));
    let kl: f64 = (0..12).map(|i| p_t[i] * (log_p_t[i] - log_q_t[i])).sum::<f64>() / b;
    let ce: f64 = (0..3).map(|r| -log_q_1[r * 4 + y[r] as usize]).sum::<f64>() / b;
    assert_close(loss_value(&kd, &student, &teacher, &labels), alpha * t * t * kl + (1.0 - alpha) * ce, 1e-6, "kd");
    let soft = KdLoss { temperature: Temperature::Constant(t), alpha: 1.0 };
    assert_close(loss_value(&soft, &student, &teacher, &labels), t * t * kl, 1e-6, "soft term alone (alpha 1)");
}

#[test]
fn mse_logits_and_ce_teacher_labels_by_hand() {
    // Row means are removed first: [1, 2, 3] − 2 = [−1, 0, 1]; [0, 0, 3] − 1 = [−1, −1, 2]; squared differences
    // 0, 1, 1 → mean over 3 elements (one row) = 2/3. A per-row constant added to either side changes nothing.
    let student = rows(&[&[1.0, 2.0, 3.0]]);
    let teacher = rows(&[&[0.0, 0.0, 3.0]]);
    let labels = Tensor::from_slice(&[0i64]);
    assert_close(loss_value(&MseLogits {}, &student, &teacher, &labels), 2.0 / 3.0, 1e-6, "mse");
    assert_close(loss_value(&MseLogits {}, &(&student + 7.0), &(&teacher - 3.0), &labels), 2.0 / 3.0, 1e-6, "shifted");

    // Pseudo-labels are the teacher's arg-max (2 and 0), whatever the true labels say.
    let student = rows(&[&[0.0, 2f64.ln(), 0.0], &[3f64.ln(), 0.0, 0.0]]); // p = [.25, .5, .25], [.6, .2, .2]
    let teacher = rows(&[&[0.0, 1.0, 5.0], &[9.0, 1.0, 0.0]]);
    let labels = Tensor::from_slice(&[1i64, 1]);
    let want = -(0.25f64.ln() + 0.6f64.ln()) / 2.0;
    assert_close(loss_value(&CeTeacherLabels {}, &student, &teacher, &labels), want, 1e-6, "ce_teacher_labels");
}

// ---------------------------------------------------------------------------------------------------------------
// Filter

/// Seven samples, three classes. Scores by hand (entropy in nats):
///
/// | row | p                 | y | pred | conf | margin | entropy |
/// |-----|-------------------|---|------|------|--------|---------|
/// | 0   | .90 .05 .05       | 0 | 0    | .90  | .85    | .394    |
/// | 1   | .50 .40 .10       | 1 | 0    | .50  | .10    | .943    |
/// | 2   | .20 .70 .10       | 1 | 1    | .70  | .50    | .802    |
/// | 3   | .02 .38 .60       | 2 | 2    | .60  | .22    | .752    |
/// | 4   | .21 .21 .58       | 2 | 2    | .58  | .37    | .971    |
/// | 5   | .001 .439 .56     | 2 | 2    | .56  | .121   | .693    |
/// | 6   | .60 .30 .10       | 0 | 0    | .60  | .30    | .898    |
///
/// In class 2, row 3 is the most confident, row 4 has the largest margin and row 5 the lowest entropy.
fn filter_case() -> (Scores, Tensor) {
    let p = rows(&[
        &[0.90, 0.05, 0.05],
        &[0.50, 0.40, 0.10],
        &[0.20, 0.70, 0.10],
        &[0.02, 0.38, 0.60],
        &[0.21, 0.21, 0.58],
        &[0.001, 0.439, 0.56],
        &[0.60, 0.30, 0.10],
    ])
    .to_kind(Kind::Float);
    (Scores::from_log_probs(&p.log()), Tensor::from_slice(&[0i64, 1, 1, 2, 2, 2, 0]))
}

#[test]
fn filter_scores_are_the_hand_computed_ones() {
    let (scores, _) = filter_case();
    let close = |got: Vec<f64>, want: &[f64], what: &str| {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_close(*g, *w, 1e-3, &format!("{what}[{i}]"));
        }
    };
    close(f64s(&scores.confidence), &[0.90, 0.50, 0.70, 0.60, 0.58, 0.56, 0.60], "confidence");
    close(f64s(&scores.margin), &[0.85, 0.10, 0.50, 0.22, 0.37, 0.121, 0.30], "margin");
    close(f64s(&scores.entropy), &[0.394, 0.943, 0.802, 0.752, 0.971, 0.693, 0.898], "entropy");
    assert_eq!(i64s(&scores.prediction), [0, 0, 1, 2, 2, 2, 0]);
}

#[test]
fn filter_keeps_exactly_the_samples_its_rule_says() {
    let (scores, labels) = filter_case();
    let keep = |rule: KeepRule| i64s(&select(&rule, &scores, &labels, 3));
    let rule = KeepRule::default;
    assert_eq!(keep(rule()), [0, 1, 2, 3, 4, 5, 6], "no rule keeps everything");
    assert_eq!(keep(KeepRule { min_confidence: Some(0.59), ..rule() }), [0, 2, 3, 6]);
    assert_eq!(keep(KeepRule { max_entropy: Some(0.78), ..rule() }), [0, 3, 5]);
    assert_eq!(keep(KeepRule { min_margin: Some(0.35), ..rule() }), [0, 2, 4]);
    assert_eq!(keep(KeepRule { agree_with_label: true, ..rule() }), [0, 2, 3, 4, 5, 6]);
    // top_fraction 0.4 per class: round(0.4·2) = 1 of classes 0 and 1, round(0.4·3) = 1 of class 2.
    let top = |by| KeepRule { top_fraction: Some(0.4), by, ..rule() };
    assert_eq!(keep(top(Score::Confidence)), [0, 2, 3]);
    assert_eq!(keep(top(Score::Margin)), [0, 2, 4]);
    assert_eq!(keep(top(Score::Entropy)), [0, 2, 5]);
    // balance: as many per class as the smallest class (2), the best by confidence.
    assert_eq!(keep(KeepRule { balance: true, ..rule() }), [0, 1, 2, 3, 4, 6]);
    // Rules combine: candidates first (rows 0, 2, 3, 4, 5, 6 agree), then balance to the rarest class (1: row 2).
    assert_eq!(keep(KeepRule { agree_with_label: true, balance: true, ..rule() }), [0, 2, 3]);
    assert_eq!(keep(KeepRule { agree_with_label: true, balance: true, by: Score::Entropy, ..rule() }), [0, 2, 5]);
    assert_eq!(
        keep(KeepRule { min_confidence: Some(0.55), min_margin: Some(0.2), max_entropy: Some(0.9), ..rule() }),
        [0, 2, 3, 6]
    );
    assert!(keep(KeepRule { min_confidence: Some(0.95), ..rule() }).is_empty());
    assert!(keep(KeepRule { min_confidence: Some(0.95), balance: true, top_fraction: Some(0.5), ..rule() }).is_empty());
}

// ---------------------------------------------------------------------------------------------------------------
// Evaluate

#[test]
fn evaluate_quality_matches_a_hand_computation() {
    // Logits = log p, so softmax gives p back. Confidences .50 .62 .70 .85 .83 fall into the 15 bins (k/15, (k+1)/15]
    // numbered 7, 9, 10, 12, 12 — away from bin edges.
    let p: [&[f64]; 5] = [
        &[0.50, 0.25, 0.25], // y 0: right
        &[0.19, 0.62, 0.19], // y 1: right
        &[0.10, 0.20, 0.70], // y 0: wrong
        &[0.85, 0.05, 0.10], // y 0: right
        &[0.83, 0.07, 0.10], // y 2: wrong
    ];
    let logits = rows(&p).log();
    let labels = Tensor::from_slice(&[0i64, 1, 0, 0, 2]);
    let m = quality(&logits, &labels, 3);
    assert_eq!(m.keys().collect::<Vec<_>>(), ["accuracy", "ece", "errors", "nll"], "no top-5 with 3 classes");
    assert_close(m["accuracy"], 0.6, 1e-12, "accuracy");
    assert_eq!(m["errors"], 2.0);
    let nll = -(0.50f64.ln() + 0.62f64.ln() + 0.10f64.ln() + 0.85f64.ln() + 0.10f64.ln()) / 5.0;
    assert_close(m["nll"], nll, 1e-9, "nll");
    // Bins: {.50 ✓} |1 − .50|, {.62 ✓} |1 − .62|, {.70 ✗} |0 − .70|, {.85 ✓, .83 ✗} |.5 − .84|·2; each weighted 1/5.
    let ece = (0.50 + 0.38 + 0.70 + 0.34 * 2.0) / 5.0;
    assert_close(m["ece"], ece, 1e-9, "ece");
    // With one bin, ECE is |accuracy − mean confidence|.
    let mean_conf = (0.50 + 0.62 + 0.70 + 0.85 + 0.83) / 5.0;
    assert_close(
        anbiq::nn::training::metrics::ece(&logits, &labels, 1),
        (0.6f64 - mean_conf).abs(),
        1e-9,
        "ece, one bin",
    );

    // Agreement and KL against a reference that predicts 0, 1, 2, 0, 2: the model's arg-maxes are 0, 1, 2, 0, 0.
    let reference = rows(&[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0], &[0.0, 0.0, 1.0], &[2.0, 1.0, 0.0], &[0.0, 1.0, 2.0]]);
    assert_close(anbiq::nn::training::metrics::agreement(&reference, &logits), 0.8, 1e-12, "agreement");
    let r = f64s(&reference.softmax(-1, Kind::Double));
    let pv: Vec<f64> = p.concat();
    let kl: f64 = (0..15).map(|i| r[i] * (r[i].ln() - pv[i].ln())).sum::<f64>() / 5.0;
    assert_close(anbiq::nn::training::metrics::kl(&reference, &logits), kl, 1e-9, "kl(reference ‖ model)");

    // Top-5 with 7 classes: the label ranks 5th in row 0 (hit) and 6th in row 1 (miss).
    let seven = rows(&[&[7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0], &[7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]]);
    let m = quality(&seven, &Tensor::from_slice(&[4i64, 5]), 7);
    assert_eq!((m["top5_accuracy"], m["accuracy"]), (0.5, 0.0));
}

// ---------------------------------------------------------------------------------------------------------------
// Logits storage

fn sample_logits() -> Tensor {
    // Deterministic, spread over about ±6, no ties.
    let v: Vec<f64> = (0..60).map(|i| 6.0 * ((i as f64) * 0.77 + 0.3).sin() + 0.01 * i as f64).collect();
    Tensor::from_slice(&v).reshape([6, 10]).to_kind(Kind::Float)
}

fn meta(dtype: StoreDtype, top_k: Option<i64>) -> LogitsMeta {
    LogitsMeta { dataset: "x".into(), samples: 6, classes: 10, dtype, top_k, model: "t".into() }
}

#[test]
fn top_k_logits_keep_the_top_k_probabilities_and_the_total_mass_exactly() {
    let logits = sample_logits();
    let dir = tempfile::tempdir().unwrap();
    LogitsArtifact::from_logits(&logits, meta(StoreDtype::F32, Some(3))).write(dir.path()).unwrap();
    let back = LogitsArtifact::read(dir.path()).unwrap();
    let all = Tensor::arange(6, (Kind::Int64, tch::Device::Cpu));
    let p = logits.to_kind(Kind::Double).softmax(-1, Kind::Double);
    let q = back.dense_logits(&all).to_kind(Kind::Double).softmax(-1, Kind::Double);
    assert_eq!(i64s(&back.predictions), i64s(&logits.argmax(-1, false)));
    let (top_p, top_i) = p.topk(3, -1, true, true);
    let q_at_top = q.gather(-1, &top_i, false);
    for (a, b) in f64s(&top_p).iter().zip(f64s(&q_at_top)) {
        assert_close(b, *a, 1e-6, "top-k probability");
    }
    for (row, total) in f64s(&q.sum_dim_intlist(-1, false, Kind::Double)).iter().enumerate() {
        assert_close(*total, 1.0, 1e-6, &format!("total mass, row {row}"));
    }
    // The rest is spread evenly over the 7 other classes.
    let rest = 1.0 - top_p.sum_dim_intlist(-1, false, Kind::Double);
    let q_rest = q.sum_dim_intlist(-1, false, Kind::Double) - q_at_top.sum_dim_intlist(-1, false, Kind::Double);
    for (a, b) in f64s(&rest).iter().zip(f64s(&q_rest)) {
        assert_close(b, *a, 1e-6, "leftover mass");
    }
    let tail_mask = Tensor::ones([6, 10], (Kind::Bool, tch::Device::Cpu)).scatter_value(-1, &top_i, 0);
    let tail = f64s(&q.masked_select(&tail_mask).reshape([6, 7]));
    let rest = f64s(&rest);
    for (i, t) in tail.iter().enumerate() {
        assert_close(*t, rest[i / 7] / 7.0, 1e-6, "tail share");
    }
    // Rows are looked up by index: rows [4, 1] of the artifact are rows 4 and 1 of the logits.
    let picked = back.dense_logits(&Tensor::from_slice(&[4i64, 1])).softmax(-1, Kind::Double);
    assert!(picked.allclose(&q.index_select(0, &Tensor::from_slice(&[4i64, 1])), 1e-9, 1e-9, false));
}

#[test]
fn f16_logits_round_trip_within_half_precision() {
    let logits = sample_logits();
    let dir = tempfile::tempdir().unwrap();
    LogitsArtifact::from_logits(&logits, meta(StoreDtype::F16, None)).write(dir.path()).unwrap();
    let back = LogitsArtifact::read(dir.path()).unwrap();
    let all = Tensor::arange(6, (Kind::Int64, tch::Device::Cpu));
    let got = f64s(&back.dense_logits(&all));
    // Round to nearest with an 11-bit significand: relative error at most 2⁻¹¹.
    for (g, x) in got.iter().zip(f64s(&logits)) {
        assert!((g - x).abs() <= x.abs() * 2f64.powi(-11) + 1e-7, "{g} vs {x}");
    }
    // Probabilities then move by at most exp(2·6·2⁻¹¹) − 1 ≈ 0.6 % relative.
    let p = f64s(&logits.softmax(-1, Kind::Double));
    let q = f64s(&back.log_probs(&all).exp());
    for (a, b) in p.iter().zip(&q) {
        assert!((a - b).abs() <= a * 0.006 + 1e-9, "{b} vs {a}");
    }

    // f16 top-k: log-probabilities within 2⁻¹¹ relative, the total mass still 1 up to f16 rounding of `rest`.
    LogitsArtifact::from_logits(&logits, meta(StoreDtype::F16, Some(4))).write(dir.path()).unwrap();
    let back = LogitsArtifact::read(dir.path()).unwrap();
    let log_p = logits.to_kind(Kind::Double).log_softmax(-1, Kind::Double);
    let (top, idx) = log_p.topk(4, -1, true, true);
    let stored = back.dense_logits(&all).to_kind(Kind::Double).gather(-1, &idx, false);
    for (g, x) in f64s(&stored).iter().zip(f64s(&top)) {
        assert!((g - x).abs() <= x.abs() * 2f64.powi(-11) + 1e-7, "{g} vs {x}");
    }
    let total = back.log_probs(&all).exp().sum_dim_intlist(-1, false, Kind::Double);
    for t in f64s(&total) {
        assert_close(t, 1.0, 1e-6, "normalised");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Bad configs

fn parse_error(yaml: &str) -> String {
    match workflow::parse(Path::new("wf.yaml"), yaml, &[]) {
        Ok(_) => panic!("should not parse:\n{yaml}"),
        Err(d) => d.to_string(),
    }
}

const HEAD: &str = "steps:\n  digits: {kind: dataset, source: digits, split: {test: 0.2}}\n";

#[test]
fn bad_configs_fail_before_training_naming_the_step_and_field() {
    let teacher = |model: &str, optimizer: &str| {
        format!(
            "{HEAD}  teacher: {{kind: train, data: digits.train, model: {model}, epochs: 1, optimizer: {optimizer}}}\n"
        )
    };
    let adam = "{name: adam, lr: 0.01}";
    let err = parse_error(&teacher("{arch: transformer}", adam));
    assert!(err.starts_with("wf.yaml:3:") && err.contains("step `teacher`"), "{err}");
    assert!(
        err.contains("step `teacher`: `model`: unknown variant `transformer`, expected one of `mlp`, `cnn`, `gpt`"),
        "{err}"
    );
    let err = parse_error(&teacher("{arch: mlp, hiden: [8]}", adam));
    assert!(err.contains("step `teacher`: `model`: unknown field `hiden`"), "{err}");

    let err = parse_error(&teacher("{arch: mlp, hidden: [32, 0]}", adam));
    assert!(err.contains("step `teacher`: `model.hidden[1]`: must be positive, got 0"), "{err}");

    let err = parse_error(&teacher("{arch: mlp, hidden: [32]}", "{name: sgd, lr: 0}"));
    assert!(err.contains("step `teacher`: `optimizer.lr`: must be positive, got 0"), "{err}");
    let err = parse_error(&teacher("{arch: mlp, hidden: [32]}", "{name: adam, lr: -0.1}"));
    assert!(err.contains("step `teacher`: `optimizer.lr`: must be positive, got -0.1"), "{err}");

    let err = parse_error(&format!(
        "{HEAD}  s: {{kind: distill, teacher: digits.train, data: digits.train, model: {{arch: mlp, hidden: [0]}}, \
         loss: {{kd: {{temperature: 0}}}}, epochs: 1}}\n"
    ));
    assert!(err.contains("step `s`: `model.hidden[0]`"), "{err}");
    assert!(err.contains("step `s`: `loss.kd.temperature`: must be positive"), "{err}");

    let err = parse_error(&format!("{HEAD}  f: {{kind: filter, data: digits.train, keep: {{min_confidence: 1.5}}}}\n"));
    assert!(err.contains("step `f`: `keep.min_confidence`: must be in [0, 1], got 1.5"), "{err}");
}

#[test]
fn shape_mismatches_and_empty_filters_fail_at_run_time_naming_the_step_and_field() {
    let csv = "a,b,c,d,label\n0.1,0.2,0.3,0.4,0\n0.9,0.8,0.7,0.6,1\n0.2,0.1,0.3,0.2,0\n0.8,0.9,0.6,0.7,1\n";
    let yaml = "\
threads: 1
steps:
  table: {kind: dataset, source: csv, path: t.csv}
  digits: {kind: dataset, source: digits, split: {test: 0.2}, limit: 300}
  cnn: {kind: train, data: table.train, model: {arch: cnn, channels: [4]}, epochs: 1}
  teacher: {kind: train, data: digits.train, model: {arch: mlp, hidden: [8]}, epochs: 1}
  wrong_data: {kind: evaluate, data: table.train, models: [teacher], timing: false}
  wrong_infer: {kind: infer, model: teacher, data: table.train}
  wrong_online: {kind: distill, teacher: teacher, data: table.train, model: {arch: mlp, hidden: [4]}, loss: {kd: {}}, epochs: 1}
  logits: {kind: infer, model: teacher, data: digits.train}
  nothing: {kind: filter, data: logits, keep: {min_confidence: 1.0, min_margin: 1.0}}
  wrong_logits: {kind: distill, teacher: logits, data: digits.test, model: {arch: mlp, hidden: [4]}, loss: {kd: {}}, epochs: 1}
";
    let p = Project::new(yaml);
    p.write("t.csv", csv);
    let report = p.run_report(&[]);
    let err = failure(&report, "cnn");
    assert!(err.contains("field `model`") && err.contains("[4]"), "{err}");
    let err = failure(&report, "wrong_data");
    assert!(err.contains("field `models[0]`") && err.contains("`teacher` takes samples of shape [1, 8, 8]"), "{err}");
    let err = failure(&report, "wrong_infer");
    assert!(err.contains("field `model`") && err.contains("[1, 8, 8]"), "{err}");
    let err = failure(&report, "wrong_online");
    assert!(err.contains("field `teacher`: `teacher` takes samples of shape [1, 8, 8], the data's are [4]"), "{err}");
    let err = failure(&report, "nothing");
    assert!(err.contains("field `keep`: the rule keeps no samples out of 240"), "{err}");
    let err = failure(&report, "wrong_logits");
    assert!(err.contains("field `teacher`") && err.contains("were computed on"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------------
// Import

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

/// `tests/fixtures/tiny_mlp.pt` and what PyTorch computed with it (scripts/make-torchscript-fixture.py).
fn tiny_mlp_reference() -> (Tensor, Tensor, i64) {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny_mlp.json")).unwrap()).unwrap();
    let floats = |key: &str| -> Vec<f32> { serde_json::from_value(json[key].clone()).unwrap() };
    let inputs = Tensor::from_slice(&floats("inputs")).reshape([-1, 1, 8, 8]);
    let logits = Tensor::from_slice(&floats("logits")).reshape([-1, 10]);
    (inputs, logits, json["parameters"].as_i64().unwrap())
}

#[test]
fn torchscript_import_gives_the_modules_own_logits_and_feeds_infer_evaluate_and_distill() {
    let p = Project::new(
        "\
threads: 1
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.2}, limit: 400}
  teacher: {kind: import, torchscript: tiny_mlp.pt, input_shape: [1, 8, 8], classes: 10}
  logits: {kind: infer, model: teacher, data: digits.train, store: {dtype: f32}}
  online: {kind: distill, teacher: teacher, data: digits.train, model: {arch: mlp, hidden: [16]}, loss: {kd: {temperature: 2}}, epochs: 2}
  offline: {kind: distill, teacher: logits, data: digits.train, model: {arch: mlp, hidden: [16]}, loss: {mse_logits: {}}, epochs: 2}
  report: {kind: evaluate, data: digits.test, models: [teacher, online, offline], reference: teacher, latency_runs: 5}
",
    )
    .with_files([fixture("tiny_mlp.pt")]);
    p.run(&[]);

    let (inputs, reference, parameters) = tiny_mlp_reference();
    let imported =
        anbiq::artifact::model::ModelArtifact::load(&p.output("teacher", "model"), tch::Device::Cpu).unwrap();
    let own = tch::CModule::load(fixture("tiny_mlp.pt")).unwrap().forward_ts(&[&inputs]).unwrap();
    let ours = tch::no_grad(|| imported.model.forward(&inputs, anbiq::nn::Mode::Eval));
    assert!(ours.equal(&own), "the imported model must compute exactly what the module computes");
    let diff = (&ours - &reference).abs().max().double_value(&[]);
    assert!(diff <= 1e-6, "PyTorch's reference logits differ by {diff}");
    assert_eq!(imported.spec.parameters, parameters);
    assert_eq!((imported.spec.input_shape.clone(), imported.spec.classes), (vec![1, 8, 8], 10));

    // infer's cached logits are the module's logits for the training rows.
    let logits = LogitsArtifact::read(&p.output("logits", "logits")).unwrap();
    let train = anbiq::artifact::dataset::read_dataset(&p.output("digits", "train")).unwrap();
    let own = tch::CModule::load(fixture("tiny_mlp.pt")).unwrap().forward_ts(&[&train.x]).unwrap();
    let all = Tensor::arange(train.len() as i64, (Kind::Int64, tch::Device::Cpu));
    let diff = (logits.dense_logits(&all) - own).abs().max().double_value(&[]);
    assert!(diff <= 1e-6, "cached logits differ by {diff}");

    let m = p.metrics("report");
    assert_eq!(m["teacher"]["parameters"], parameters as f64);
    assert_eq!(m["teacher"]["weight_bytes"], std::fs::metadata(fixture("tiny_mlp.pt")).unwrap().len() as f64);
    assert_eq!(m["teacher"]["agreement"], 1.0);
    // Latency measures the machine: it is in the lockfile's `timings`, never in the hashed report.
    assert!(!m["teacher"].contains_key("latency_ms"));
    let timings = p.lock().step("report").unwrap().timings.clone();
    let latency = |model: &str| timings[model]["latency_ms"].as_f64().unwrap();
    assert!(latency("teacher") > 0.0 && latency("online") > 0.0, "{timings:?}");

    // The file's bytes are in the key: another module under the same name makes the import (and what follows) stale.
    assert_eq!(p.plan(&[]).to_run().count(), 0);
    let mut bytes = std::fs::read(fixture("tiny_mlp.pt")).unwrap();
    bytes.extend_from_slice(b"\0");
    p.write("tiny_mlp.pt", bytes);
    let stale: Vec<String> = p.plan(&[]).to_run().map(|e| e.id.clone()).collect();
    assert_eq!(stale, ["teacher", "logits", "online", "offline", "report"]);
}

#[test]
fn safetensors_weights_import_into_a_built_in_architecture() {
    // Weights made outside any workflow, named as anbiq names them.
    let arch: anbiq::nn::ArchConfig = serde_json::from_str(r#"{"arch":"mlp","hidden":[12]}"#).unwrap();
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let model = anbiq::nn::build(&arch, &vs.root(), &[1, 8, 8], 10, &mut anbiq::rng::Rng::new(9)).unwrap();
    let named: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(n, t)| (n, t.detach().to_kind(Kind::Double))).collect();
    let p = Project::new(
        "\
threads: 1
steps:
  digits: {kind: dataset, source: digits, split: {test: 0.2}, limit: 200}
  mine: {kind: import, weights: w.safetensors, model: {arch: mlp, hidden: [12]}, input_shape: [1, 8, 8], classes: 10}
  wrong: {kind: import, weights: w.safetensors, model: {arch: mlp, hidden: [13]}, input_shape: [1, 8, 8], classes: 10}
  report: {kind: evaluate, data: digits.test, models: [mine], timing: false}
",
    );
    Tensor::write_safetensors(&named, p.path("w.safetensors")).unwrap();
    let report = p.run_report(&[]);
    let err = failure(&report, "wrong");
    assert!(err.contains("field `weights`: hidden.0.bias has shape [12], the architecture expects [13]"), "{err}");
    assert!(report.results.iter().find(|r| r.id == "report").is_some_and(|r| matches!(r.outcome, Outcome::Ran { .. })));

    let imported = anbiq::artifact::model::ModelArtifact::load(&p.output("mine", "model"), tch::Device::Cpu).unwrap();
    let test = anbiq::artifact::dataset::read_dataset(&p.output("digits", "test")).unwrap();
    let ours = tch::no_grad(|| imported.model.forward(&test.x, anbiq::nn::Mode::Eval));
    let theirs = tch::no_grad(|| model.forward(&test.x, anbiq::nn::Mode::Eval));
    assert!(ours.allclose(&theirs, 1e-6, 1e-6, false));
    let m = p.metrics("report");
    assert_close(m["mine"]["accuracy"], anbiq::nn::training::metrics::accuracy(&theirs, &test.y), 1e-12, "accuracy");
    assert_eq!(m["mine"]["parameters"], (64 * 12 + 12 + 12 * 10 + 10) as f64);
}

#[test]
fn bad_imports_fail_naming_the_field() {
    let step = |body: &str| format!("{HEAD}  t: {{kind: import, {body}}}\n");
    let err = parse_error(&step("torchscript: a.pt, model: {arch: mlp, hidden: [4]}, input_shape: [64], classes: 10"));
    assert!(err.contains("step `t`: `model`: `torchscript` brings its own architecture"), "{err}");
    let err = parse_error(&step("weights: a.safetensors, input_shape: [64], classes: 10"));
    assert!(err.contains("step `t`: `weights`: needs `model`"), "{err}");
    let err = parse_error(&step("input_shape: [64], classes: 10"));
    assert!(err.contains("step `t`: needs one of `torchscript: file.pt`, `weights` with `model`, `gguf"), "{err}");
    let err = parse_error(&step("torchscript: a.pt, gguf: b.gguf, input_shape: [64], classes: 10"));
    assert!(err.contains("step `t`: `gguf`: give one source of the model, not `torchscript` and `gguf`"), "{err}");
    let err = parse_error(&step("torchscript: a.pt, input_shape: [0, 8], classes: 0"));
    assert!(err.contains("step `t`: `input_shape`: must list positive sizes, got [0, 8]"), "{err}");
    assert!(err.contains("step `t`: `classes`: must be positive, got 0"), "{err}");

    let p = Project::new(
        "\
threads: 1
steps:
  shape: {kind: import, torchscript: tiny_mlp.pt, input_shape: [1, 28, 28], classes: 10}
  classes: {kind: import, torchscript: tiny_mlp.pt, input_shape: [1, 8, 8], classes: 3}
  garbage: {kind: import, torchscript: wf.yaml, input_shape: [1, 8, 8], classes: 10}
",
    )
    .with_files([fixture("tiny_mlp.pt")]);
    let report = p.run_report(&[]);
    let err = failure(&report, "shape");
    assert!(
        err.ends_with(
            "field `input_shape`: the model does not accept [1, 1, 28, 28]: \
             RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x784 and 64x16)"
        ),
        "{err}"
    );
    let err = failure(&report, "classes");
    assert!(err.contains("field `classes`: the model maps one sample to shape [1, 10], expected [1, 3]"), "{err}");
    let err = failure(&report, "garbage");
    assert!(
        err.contains("step `garbage` (import): field `torchscript`: ")
            && err.contains("wf.yaml is not a TorchScript file"),
        "{err}"
    );
}

#[test]
fn shipped_workflows_parse() {
    for name in ["quickstart.yaml", "mnist-cnn-to-mlp.yaml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows").join(name);
        let wf = workflow::load(&path, &[]).unwrap_or_else(|d| panic!("{d}"));
        assert!(anbiq::graph::Dag::build(&wf).is_ok(), "{name}");
    }
}

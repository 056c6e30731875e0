//! A teacher known by its top k alone — per row the k largest log-probabilities, their classes and the mass left
//! outside them, as `infer` stores a language model's — and forward KL read straight from them.
//!
//! The stored top k stands for a whole distribution once the leftover mass is spread over the other classes
//! ([`TopKTail`], rebuilt by [`expand`] and [`expand_like`]). Rebuilding it densely to score a chunk of a language
//! model's positions costs several passes over `n × V` floats (V = 49,152 for SmolLM2) besides the student's own:
//! the dense teacher, its log-softmax, the KL's terms and their gradients. [`TopKTeacher::forward_kl`] gives the same
//! value and gradient (to f32 rounding) from the student's log-softmax, a gather of it at the k classes, its row sum
//! (even tail) or its mass outside the k (student tail) — the sparse KD a plain PyTorch loop writes.

use std::cell::OnceCell;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::artifact::token_logits::{expand, expand_like, first_of_equal};

/// How a top-k teacher's leftover mass is spread over the classes outside its top k.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TopKTail {
    /// Evenly: the teacher's tail is assumed flat.
    #[default]
    Even,
    /// Like the student's own distribution there: forward KL is then exactly the KL over "each of the top k and
    /// the rest".
    Student,
}

/// One chunk's rows of a top-k teacher.
pub struct TopKTeacher {
    /// `[n, k]` f32.
    logprobs: Tensor,
    /// `[n, k]` i64.
    indices: Tensor,
    /// `[n]` f32: the probability outside the top k.
    rest: Tensor,
    classes: i64,
    tail: TopKTail,
    /// The rebuilt `[n, V]` logits, for a loss that needs them (built once, on the first ask).
    dense: OnceCell<Tensor>,
}

impl TopKTeacher {
    /// `logprobs` and `indices` `[n, k]` (any float and integer kinds), `rest` `[n]`, over `classes` classes.
    pub fn new(logprobs: &Tensor, indices: &Tensor, rest: &Tensor, classes: i64, tail: TopKTail) -> Self {
        TopKTeacher {
            logprobs: logprobs.to_kind(Kind::Float),
            indices: indices.to_kind(Kind::Int64),
            rest: rest.to_kind(Kind::Float),
            classes,
            tail,
            dense: OnceCell::new(),
        }
    }

    /// Dense teacher logits `[n, V]`, the tail spread as `tail` says (the student's logits `student` `[n, V]` shape
    /// it for [`TopKTail::Student`]).
    pub fn dense(&self, student: &Tensor) -> &Tensor {
        self.dense.get_or_init(|| match self.tail {
            TopKTail::Even => expand(&self.logprobs, &self.indices, &self.rest, self.classes),
            TopKTail::Student => expand_like(&self.logprobs, &self.indices, &self.rest, student),
        })
    }

    /// `T²·KL(p_T ‖ softmax(student / T))` averaged over rows, where `p_T` is the rebuilt teacher at temperature T —
    /// the value and gradient of [`super::kd::soft_kl`] against [`TopKTeacher::dense`], without building it. `None`
    /// for the student tail at T ≠ 1, where the rebuilt tail's normaliser needs the dense form.
    pub fn forward_kl(&self, student: &Tensor, t: f64) -> Option<Tensor> {
        let kl = match self.tail {
            TopKTail::Even => self.even_tail_kl(student, t),
            TopKTail::Student if t == 1.0 => self.student_tail_kl(student),
            TopKTail::Student => return None,
        };
        Some(kl.sum(Kind::Float) * (t * t / student.size()[0] as f64))
    }

    /// A slot is its class's first unless an earlier slot holds the same class (a sampled store repeats a kept
    /// token in the slots it did not fill; the rebuilt distribution counts it once).
    fn first_slots(&self) -> Tensor {
        first_of_equal(&self.indices.unsqueeze(-1).eq_tensor(&self.indices.unsqueeze(-2)))
    }

    /// The teacher's top-k log-probabilities and probabilities `[n, k]` (0 at repeated slots, `first`), and the log
    /// of its normaliser `[n]`, from its top-k logits `a` (0 at repeated slots) and the log of its tail's total
    /// unnormalised mass `tail_mass` `[n]`.
    fn normalised_top(a: &Tensor, first: &Tensor, tail_mass: &Tensor) -> (Tensor, Tensor, Tensor) {
        let masked = a.where_self(first, &Tensor::from(f64::NEG_INFINITY).to_kind(Kind::Float));
        let log_z = Tensor::cat(&[masked, tail_mass.unsqueeze(-1)], -1).logsumexp([-1], false);
        let log_p_top = a - log_z.unsqueeze(-1);
        let p_top = log_p_top.exp().where_self(first, &Tensor::zeros([], (Kind::Float, a.device())));
        (log_p_top, p_top, log_z)
    }

    /// Per-row KL with the leftover mass spread evenly: each of the V − k' classes outside the k' distinct top
    /// classes has logit `c = log(rest / (V − k))` (as [`expand`] writes it).
    fn even_tail_kl(&self, student: &Tensor, t: f64) -> Tensor {
        let log_q = (student / t).log_softmax(-1, Kind::Float);
        let first = self.first_slots();
        let a = (&self.logprobs / t).where_self(&first, &Tensor::zeros([], (Kind::Float, student.device())));
        let k = self.indices.size()[1];
        let c = (self.rest.clamp_min(1e-12) / (self.classes - k).max(1) as f64).log() / t;
        let outside = -first.sum_dim_intlist(-1, false, Kind::Float) + self.classes as f64;
        // The log of the tail's total unnormalised mass: −∞ when the top k covers every class.
        let (log_p_top, p_top, log_z) = Self::normalised_top(&a, &first, &(&c + outside.log()));
        let log_p_tail = &c - &log_z;
        let p_tail = log_p_tail.exp() * outside.gt(0.0).to_kind(Kind::Float);
        let top_log_q = log_q.gather(-1, &self.indices, false);
        let tail_log_q = log_q.sum_dim_intlist(-1, false, Kind::Float)
            - (&top_log_q * first.to_kind(Kind::Float)).sum_dim_intlist(-1, false, Kind::Float);
        // Σ p (log p − log q), the top k and the tail apart.
        let top = (&p_top * (log_p_top - &top_log_q)).sum_dim_intlist(-1, false, Kind::Float);
        let tail = &p_tail * (log_p_tail * outside - tail_log_q);
        top + tail
    }

    /// Per-row KL at T = 1 with the leftover mass spread like the student: the KL between the (k + 1)-bucket
    /// distributions, "each top class" and "all the others", whose gradient is the dense loss's.
    fn student_tail_kl(&self, student: &Tensor) -> Tensor {
        let log_q = student.log_softmax(-1, Kind::Float);
        let first = self.first_slots();
        let a = self.logprobs.where_self(&first, &Tensor::zeros([], (Kind::Float, student.device())));
        let log_rest = self.rest.clamp_min(1e-12).log();
        let (log_p_top, p_top, log_z) = Self::normalised_top(&a, &first, &log_rest);
        let log_p_rest = log_rest - &log_z;
        // The student's mass outside the top k, in log space (stable when the top k holds nearly all of it).
        let log_q_outside = log_q.scatter_value(-1, &self.indices, f64::NEG_INFINITY).logsumexp([-1], false);
        let top =
            (&p_top * (log_p_top - log_q.gather(-1, &self.indices, false))).sum_dim_intlist(-1, false, Kind::Float);
        top + log_p_rest.exp() * (log_p_rest - log_q_outside)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::kd::soft_kl;

    /// Value and gradient with respect to the student of the sparse and the dense loss.
    fn both(teacher: &TopKTeacher, student: &Tensor, t: f64) -> ((f64, Tensor), (f64, Tensor)) {
        let run = |sparse: bool| {
            let s = student.detach().set_requires_grad(true);
            let loss = if sparse { teacher.forward_kl(&s, t).unwrap() } else { soft_kl(&s, teacher.dense(&s), t) };
            loss.backward();
            (loss.double_value(&[]), s.grad())
        };
        (run(true), run(false))
    }

    fn assert_same(teacher: &TopKTeacher, student: &Tensor, t: f64) {
        let ((sparse, g_sparse), (dense, g_dense)) = both(teacher, student, t);
        assert!((sparse - dense).abs() < 1e-5 * dense.abs().max(1.0), "value: sparse {sparse}, dense {dense}");
        let diff = (&g_sparse - &g_dense).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "gradient differs by {diff}");
        assert!(g_dense.abs().max().double_value(&[]) > 1e-4, "a gradient to compare");
    }

    fn random(seed: u64, shape: &[i64]) -> Tensor {
        crate::nn::runtime::random::uniform(seed, shape, tch::Device::Cpu)
    }

    /// A teacher's top k of random logits over `v` classes (with its true leftover mass), and a student.
    fn case(seed: u64, n: i64, v: i64, k: i64, tail: TopKTail) -> (TopKTeacher, Tensor) {
        let logits = random(seed, &[n, v]) * 8.0;
        let top = crate::artifact::token_logits::compress(&logits, k, crate::artifact::logits::StoreDtype::F32);
        let student = random(seed + 1, &[n, v]) * 6.0 - 3.0;
        (TopKTeacher::new(&top.logprobs, &top.indices, &top.rest, v, tail), student)
    }

    #[test]
    fn even_tail_matches_the_dense_loss_at_any_temperature() {
        for t in [1.0, 2.0, 0.5] {
            let (teacher, student) = case(3, 6, 50, 5, TopKTail::Even);
            assert_same(&teacher, &student, t);
        }
    }

    #[test]
    fn student_tail_matches_the_dense_loss_at_temperature_one() {
        let (teacher, student) = case(7, 6, 50, 5, TopKTail::Student);
        assert_same(&teacher, &student, 1.0);
        assert!(teacher.forward_kl(&student, 2.0).is_none(), "T ≠ 1 needs the dense form");
    }

    #[test]
    fn repeated_slots_count_once_and_a_full_top_k_has_no_tail() {
        // Row 0 repeats class 2 in its last slot (as a sampled store fills slots it has no token for); row 1 has
        // no leftover mass at all.
        let logprobs = Tensor::from_slice(&[-0.5f32, -1.5, -2.0, -2.0, -0.1, -3.0, -3.5, -4.0]).view([2, 4]);
        let indices = Tensor::from_slice(&[4i64, 0, 2, 2, 1, 3, 0, 5]).view([2, 4]);
        let rest = Tensor::from_slice(&[0.05f32, 0.0]);
        let student = random(11, &[2, 6]) * 4.0;
        for tail in [TopKTail::Even, TopKTail::Student] {
            assert_same(&TopKTeacher::new(&logprobs, &indices, &rest, 6, tail), &student, 1.0);
        }
        // Every class in the top k: nothing outside it.
        let (teacher, student) = case(5, 4, 6, 6, TopKTail::Even);
        assert_same(&teacher, &student, 2.0);
    }
}

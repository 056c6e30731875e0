//! Classification metrics on logits `[N, C]` and integer labels `[N]`, returned as plain `f64`.
//!
//! Computed in double precision under `no_grad`, so they can be called on training outputs without touching autograd.

use tch::{Kind, Tensor};

fn scalar(t: Tensor) -> f64 {
    t.double_value(&[])
}

/// Fraction of samples whose arg-max equals the label.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> f64 {
    tch::no_grad(|| scalar(logits.argmax(-1, false).eq_tensor(labels).to_kind(Kind::Double).mean(Kind::Double)))
}

/// Fraction of samples whose label is among the `k` highest logits.
pub fn top_k_accuracy(logits: &Tensor, labels: &Tensor, k: i64) -> f64 {
    tch::no_grad(|| {
        let k = k.clamp(1, logits.size()[1]);
        let (_, top) = logits.topk(k, -1, true, true);
        let hit = top.eq_tensor(&labels.unsqueeze(1)).any_dim(1, false);
        scalar(hit.to_kind(Kind::Double).mean(Kind::Double))
    })
}

/// Mean negative log-likelihood (cross-entropy) of the labels, in nats.
pub fn nll(logits: &Tensor, labels: &Tensor) -> f64 {
    tch::no_grad(|| scalar(logits.to_kind(Kind::Double).log_softmax(-1, Kind::Double).nll_loss(labels)))
}

/// Expected calibration error with `bins` equal-width confidence bins (Guo et al. 2017; 15 bins is customary):
/// Σ_b (n_b / N) · |accuracy_b − mean confidence_b|, confidence = max softmax probability, bins (lo, hi].
pub fn ece(logits: &Tensor, labels: &Tensor, bins: usize) -> f64 {
    let (conf, correct) = tch::no_grad(|| {
        let probs = logits.to_kind(Kind::Double).softmax(-1, Kind::Double);
        let (conf, pred) = probs.max_dim(-1, false);
        (to_vec_f64(&conf), to_vec_f64(&pred.eq_tensor(labels).to_kind(Kind::Double)))
    });
    let n = conf.len();
    if n == 0 || bins == 0 {
        return 0.0;
    }
    let mut count = vec![0usize; bins];
    let mut sum_conf = vec![0.0; bins];
    let mut sum_acc = vec![0.0; bins];
    for (&c, &a) in conf.iter().zip(&correct) {
        let b = ((c * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        count[b] += 1;
        sum_conf[b] += c;
        sum_acc[b] += a;
    }
    (0..bins).filter(|&b| count[b] > 0).map(|b| (sum_acc[b] - sum_conf[b]).abs() / n as f64).sum()
}

/// Fraction of samples on which two models' arg-max predictions agree.
pub fn agreement(a_logits: &Tensor, b_logits: &Tensor) -> f64 {
    tch::no_grad(|| {
        let same = a_logits.argmax(-1, false).eq_tensor(&b_logits.argmax(-1, false));
        scalar(same.to_kind(Kind::Double).mean(Kind::Double))
    })
}

/// KL(p ‖ q) = Σ_c p_c (log p_c − log q_c) between the softmaxes of `p_ref_logits` (the reference, e.g. the teacher)
/// and `q_logits`, averaged over samples, in nats.
pub fn kl(p_ref_logits: &Tensor, q_logits: &Tensor) -> f64 {
    tch::no_grad(|| {
        let log_p = p_ref_logits.to_kind(Kind::Double).log_softmax(-1, Kind::Double);
        let log_q = q_logits.to_kind(Kind::Double).log_softmax(-1, Kind::Double);
        let per_sample = (log_p.exp() * (&log_p - log_q)).sum_dim_intlist(-1, false, Kind::Double);
        scalar(per_sample.mean(Kind::Double))
    })
}

fn to_vec_f64(t: &Tensor) -> Vec<f64> {
    let t = t.to_kind(Kind::Double).to_device(tch::Device::Cpu).contiguous();
    Vec::<f64>::try_from(&t.flatten(0, -1)).expect("double tensor")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t2(rows: &[[f64; 3]]) -> Tensor {
        Tensor::from_slice(&rows.concat()).reshape([rows.len() as i64, 3])
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn accuracy_top_k_agreement() {
        let logits = t2(&[[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]]);
        let labels = Tensor::from_slice(&[0i64, 2, 1, 1]);
        assert_eq!(accuracy(&logits, &labels), 0.25);
        // top-2: {0,1}∋0 ✓, {1,2}∋2 ✓, {2,1}∋1 ✓, {0,2}∌1 ✗
        assert_eq!(top_k_accuracy(&logits, &labels, 2), 0.75);
        assert_eq!(top_k_accuracy(&logits, &labels, 3), 1.0);
        let other = t2(&[[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [3.0, 0.0, 0.0], [0.0, 3.0, 0.0]]);
        assert_eq!(agreement(&logits, &other), 0.5);
    }

    #[test]
    fn nll_by_hand() {
        // Uniform logits: -log(1/3) per sample.
        let logits = t2(&[[0.0, 0.0, 0.0], [5.0, 5.0, 5.0]]);
        assert!(close(nll(&logits, &Tensor::from_slice(&[0i64, 2])), 3f64.ln()));
        // [ln 1, ln 2, ln 1] → p = [0.25, 0.5, 0.25]; label 1 → ln 2.
        let logits = t2(&[[0.0, 2f64.ln(), 0.0]]);
        assert!(close(nll(&logits, &Tensor::from_slice(&[1i64])), 2f64.ln()));
    }

    #[test]
    fn kl_by_hand() {
        let p = t2(&[[0.0, 2f64.ln(), 0.0]]); // [0.25, 0.5, 0.25]
        let q = t2(&[[0.0, 0.0, 0.0]]); // uniform
        let want = 0.25 * (0.75f64).ln() * 2.0 + 0.5 * (1.5f64).ln();
        assert!(close(kl(&p, &q), want));
        assert!(close(kl(&p, &p), 0.0));
        // Mean over samples: second sample contributes 0.
        let p2 = t2(&[[0.0, 2f64.ln(), 0.0], [1.0, 1.0, 1.0]]);
        let q2 = t2(&[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]);
        assert!(close(kl(&p2, &q2), want / 2.0));
    }

    #[test]
    fn ece_by_hand() {
        // Two classes for easy numbers.
        let l = |a: f64, b: f64| [a, b];
        let rows = [l(0.0, 0.0), l(0.0, 0.0), l(3f64.ln(), 0.0), l(3f64.ln(), 0.0)];
        let logits = Tensor::from_slice(&rows.concat()).reshape([4, 2]);
        // conf: 0.5, 0.5, 0.75, 0.75; pred: 0, 0, 0, 0; labels 0,1,0,0 → bin(0.5): acc 0.5, conf 0.5 → 0;
        // bin(0.75): acc 1.0, conf 0.75 → 0.25 · 2/4.
        let labels = Tensor::from_slice(&[0i64, 1, 0, 0]);
        assert!(close(ece(&logits, &labels, 15), 0.125));
        // Everything in one bin: |0.75 − 0.625| = 0.125 too.
        assert!(close(ece(&logits, &labels, 1), 0.125));
        let labels = Tensor::from_slice(&[1i64, 1, 1, 1]);
        assert!(close(ece(&logits, &labels, 15), 0.625));
    }
}

//! How well one sentence embedder keeps another's geometry, and how well it retrieves paraphrases — the label-free
//! metrics `evaluate` reports for encoders. Embeddings are `[N, d]` f32; similarities are cosines.

use tch::{Kind, Tensor};

/// Rows scaled to unit length (a zero row stays zero).
pub fn unit_rows(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
}

/// Cosine similarities `[N, N]` of every row with every row.
pub fn cosine_matrix(x: &Tensor) -> Tensor {
    let u = unit_rows(x);
    u.matmul(&u.tr())
}

/// Mean cosine between row i of `a` and row i of `b` (same width).
pub fn mean_cosine(a: &Tensor, b: &Tensor) -> f64 {
    (unit_rows(a) * unit_rows(b)).sum_dim_intlist(1, false, Kind::Float).mean(Kind::Float).double_value(&[])
}

/// The values of `m` `[N, N]` above the diagonal: one per unordered pair.
fn upper_triangle(m: &Tensor) -> Tensor {
    let n = m.size()[0];
    let mask = Tensor::ones([n, n], (Kind::Bool, m.device())).triu(1);
    m.masked_select(&mask)
}

/// Ranks 0..n of `v`'s values (ties broken by position; the cosines compared here are continuous).
fn ranks(v: &Tensor) -> Tensor {
    let order = v.argsort_stable(true, 0, false);
    let positions = Tensor::arange(v.size()[0], (Kind::Double, v.device()));
    positions.zeros_like().index_copy(0, &order, &positions)
}

/// Spearman's rank correlation of two vectors of equal length.
pub fn spearman(a: &Tensor, b: &Tensor) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let (ca, cb) = (&ra - ra.mean(Kind::Double), &rb - rb.mean(Kind::Double));
    let num = (&ca * &cb).sum(Kind::Double);
    let den = ((&ca * &ca).sum(Kind::Double) * (&cb * &cb).sum(Kind::Double)).sqrt();
    (num / den).double_value(&[])
}

/// Spearman correlation between `a`'s and `b`'s cosine similarities over every pair of the N sentences: 1 when `a`
/// orders all pairs as `b` does, whatever the widths of the two.
pub fn similarity_spearman(a: &Tensor, b: &Tensor) -> f64 {
    spearman(&upper_triangle(&cosine_matrix(a)), &upper_triangle(&cosine_matrix(b)))
}

/// The `k` nearest other rows of each row `[N, k]`, nearest first (a row is never its own neighbour).
fn neighbours(x: &Tensor, k: i64) -> Tensor {
    let n = x.size()[0];
    let sims = cosine_matrix(x) - Tensor::eye(n, (Kind::Float, x.device())) * 4.0;
    sims.topk(k, 1, true, true).1
}

/// Nearest-neighbour agreement of `a` with `b` over the N sentences: the share of sentences whose nearest other
/// sentence is the same under both, and the mean share of `b`'s 10 nearest that are among `a`'s 10 nearest.
pub fn neighbour_agreement(a: &Tensor, b: &Tensor) -> (f64, f64) {
    let k = 10.min(a.size()[0] - 1);
    let (na, nb) = (neighbours(a, k), neighbours(b, k));
    let top1 = na.select(1, 0).eq_tensor(&nb.select(1, 0)).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    // [N, k, 1] == [N, 1, k]: each of b's neighbours found among a's.
    let found = nb.unsqueeze(2).eq_tensor(&na.unsqueeze(1)).any_dim(2, false);
    let recall = found.to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    (top1, recall)
}

/// Paraphrase retrieval: query i's answer is candidate i among all N candidates, ranked by cosine. Returns
/// (accuracy@1, mean reciprocal rank); a tie with the answer counts against it.
pub fn retrieval(queries: &Tensor, candidates: &Tensor) -> (f64, f64) {
    let sims = unit_rows(queries).matmul(&unit_rows(candidates).tr());
    let answer = sims.diagonal(0, 0, 1).unsqueeze(1);
    // Rank 1 + the candidates scoring at least as high as the answer, other than the answer itself.
    let rank = sims.ge_tensor(&answer).sum_dim_intlist(1, false, Kind::Double);
    let accuracy = rank.eq(1.0).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    let mrr = rank.reciprocal().mean(Kind::Double).double_value(&[]);
    (accuracy, mrr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rows: &[&[f32]]) -> Tensor {
        let n = rows.len() as i64;
        Tensor::from_slice(&rows.concat()).view([n, -1])
    }

    #[test]
    fn spearman_of_monotone_and_reversed() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0]);
        assert!((spearman(&a, &(&a * 3.0 + 1.0).exp()) - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &-&a) + 1.0).abs() < 1e-12);
        // One swap of neighbours among 5: 1 − 6·2 / (5·24) = 0.9.
        let b = Tensor::from_slice(&[2.0f32, 1.0, 3.0, 4.0, 5.0]);
        assert!((spearman(&a, &b) - 0.9).abs() < 1e-12);
    }

    #[test]
    fn geometry_is_kept_by_rotation_and_scale() {
        let a = t(&[&[1.0, 0.0], &[0.8, 0.6], &[0.0, 1.0], &[-0.6, 0.8], &[-1.0, 0.1]]);
        // A rotation by 90° and scaling of each row keeps every cosine.
        let rotated = t(&[&[0.0, 2.0], &[-0.6, 0.8], &[-3.0, 0.0], &[-0.8, -0.6], &[-0.1, -1.0]]);
        assert!((similarity_spearman(&a, &rotated) - 1.0).abs() < 1e-12);
        assert_eq!(neighbour_agreement(&a, &rotated), (1.0, 1.0));
        assert!(mean_cosine(&a, &a) > 0.999_999);
    }

    #[test]
    fn retrieval_ranks_the_answer() {
        let queries = t(&[&[1.0, 0.0], &[0.0, 1.0], &[1.0, 1.0]]);
        // Query 0 finds its answer first, query 1 second (candidate 2 is closer), query 2 third.
        let candidates = t(&[&[1.0, 0.1], &[0.3, 1.0], &[0.05, 1.0]]);
        let (acc, mrr) = retrieval(&queries, &candidates);
        assert!((acc - 1.0 / 3.0).abs() < 1e-12, "{acc}");
        let sims = unit_rows(&queries).matmul(&unit_rows(&candidates).tr());
        let third = sims.double_value(&[2, 2]) < sims.double_value(&[2, 0]).min(sims.double_value(&[2, 1]));
        assert!(third, "the fixture puts query 2's answer last");
        assert!((mrr - (1.0 + 0.5 + 1.0 / 3.0) / 3.0).abs() < 1e-12, "{mrr}");
    }
}

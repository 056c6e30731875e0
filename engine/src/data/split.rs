//! Seeded train/validation/test splits as index tensors (apply them with [`Dataset::select`](super::Dataset::select)).

use std::collections::BTreeMap;

use tch::Tensor;

use super::{DataError, Result};
use crate::rng::Rng;

const EPS: f64 = 1e-9;

/// Splits `0..n` into named parts of the given fractions.
///
/// Rules:
/// - every fraction is in (0, 1] and they sum to at most 1; names are unique;
/// - if they sum to less than 1 and no part is named "train", a "train" part takes the remainder (appended last);
///   if "train" is listed, the remainder is left out (a way to subsample);
/// - sizes come from rounding the cumulative fractions (`round(n·(f1+…+fk))` are the boundaries), so each part is
///   within ±1 of `f·n` and, when the fractions cover everything, the last part takes exactly the rest;
/// - with `stratify_by` (labels `[n]`) that rule applies within each class, so every part keeps the class
///   proportions to ±1 sample per class (part totals may then differ from `f·n` by up to about half the class count);
/// - parts are disjoint, each in random order, and the whole result depends only on `seed`.
pub fn split_indices(
    n: usize,
    parts: &[(String, f64)],
    seed: u64,
    stratify_by: Option<&Tensor>,
) -> Result<Vec<(String, Tensor)>> {
    let parts = with_remainder(parts)?;
    let fractions: Vec<f64> = parts.iter().map(|(_, f)| *f).collect();
    let mut rng = Rng::derive(seed, "data/split");
    let mut out: Vec<Vec<i64>> = vec![Vec::new(); parts.len()];
    match stratify_by {
        None => distribute(&rng.permutation(n), &fractions, &mut out),
        Some(labels) => {
            let labels = Vec::<i64>::try_from(&labels.flatten(0, -1))?;
            if labels.len() != n {
                return Err(DataError::Invalid(format!("stratify_by has {} labels for n = {n}", labels.len())));
            }
            let mut by_class: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
            for (i, c) in labels.iter().enumerate() {
                by_class.entry(*c).or_default().push(i as i64);
            }
            for members in by_class.values_mut() {
                rng.shuffle(members);
                distribute(members, &fractions, &mut out);
            }
            // Interleave classes so a part read in order is not sorted by class.
            out.iter_mut().for_each(|p| rng.shuffle(p));
        }
    }
    Ok(parts.into_iter().zip(out).map(|((name, _), idx)| (name, Tensor::from_slice(&idx))).collect())
}

fn with_remainder(parts: &[(String, f64)]) -> Result<Vec<(String, f64)>> {
    if parts.is_empty() {
        return Err(DataError::Invalid("split needs at least one part".into()));
    }
    for (i, (name, f)) in parts.iter().enumerate() {
        if !(*f > 0.0 && *f <= 1.0) {
            return Err(DataError::Invalid(format!("split part {name:?}: fraction {f} must be in (0, 1]")));
        }
        if parts[..i].iter().any(|(other, _)| other == name) {
            return Err(DataError::Invalid(format!("split part {name:?} is listed twice")));
        }
    }
    let sum: f64 = parts.iter().map(|(_, f)| f).sum();
    if sum > 1.0 + EPS {
        return Err(DataError::Invalid(format!("split fractions sum to {sum}, more than 1")));
    }
    let mut parts = parts.to_vec();
    if sum < 1.0 - EPS && !parts.iter().any(|(name, _)| name == "train") {
        parts.push(("train".into(), 1.0 - sum));
    }
    Ok(parts)
}

/// Appends consecutive runs of `items` to `out[k]`, sized by cumulative rounding.
fn distribute(items: &[i64], fractions: &[f64], out: &mut [Vec<i64>]) {
    let m = items.len();
    let total: f64 = fractions.iter().sum();
    let (mut cum, mut start) = (0.0, 0usize);
    for (k, f) in fractions.iter().enumerate() {
        cum += f;
        let end =
            if k + 1 == fractions.len() && total >= 1.0 - EPS { m } else { ((cum * m as f64).round() as usize).min(m) };
        out[k].extend_from_slice(&items[start..end.max(start)]);
        start = end.max(start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(spec: &[(&str, f64)]) -> Vec<(String, f64)> {
        spec.iter().map(|(n, f)| (n.to_string(), *f)).collect()
    }

    fn vecs(split: &[(String, Tensor)]) -> Vec<(String, Vec<i64>)> {
        split.iter().map(|(n, t)| (n.clone(), Vec::<i64>::try_from(t).unwrap())).collect()
    }

    #[test]
    fn disjoint_sized_and_deterministic() {
        let s = vecs(&split_indices(1000, &parts(&[("val", 0.1), ("test", 0.15)]), 3, None).unwrap());
        let names: Vec<&str> = s.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["val", "test", "train"]);
        let sizes: Vec<usize> = s.iter().map(|(_, v)| v.len()).collect();
        assert_eq!(sizes, [100, 150, 750]);
        let mut all: Vec<i64> = s.iter().flat_map(|(_, v)| v.clone()).collect();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(s, vecs(&split_indices(1000, &parts(&[("val", 0.1), ("test", 0.15)]), 3, None).unwrap()));
        assert_ne!(s, vecs(&split_indices(1000, &parts(&[("val", 0.1), ("test", 0.15)]), 4, None).unwrap()));

        // "train" listed: the remainder is left out; odd sizes round.
        let s = vecs(&split_indices(11, &parts(&[("train", 0.5), ("val", 0.2)]), 1, None).unwrap());
        assert_eq!(s.iter().map(|(_, v)| v.len()).collect::<Vec<_>>(), [6, 2]);
        let mut all: Vec<i64> = s.iter().flat_map(|(_, v)| v.clone()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 8);
    }

    #[test]
    fn rejects_bad_fractions() {
        assert!(split_indices(10, &parts(&[("a", 0.7), ("b", 0.4)]), 0, None).is_err());
        assert!(split_indices(10, &parts(&[("a", 0.0)]), 0, None).is_err());
        assert!(split_indices(10, &parts(&[("a", 0.2), ("a", 0.2)]), 0, None).is_err());
        assert!(split_indices(10, &[], 0, None).is_err());
    }

    #[test]
    fn stratified_keeps_class_proportions() {
        // Imbalanced: 600 of class 0, 300 of class 1, 97 of class 2, shuffled.
        let mut labels: Vec<i64> = [vec![0; 600], vec![1; 300], vec![2; 97]].concat();
        Rng::new(9).shuffle(&mut labels);
        let y = Tensor::from_slice(&labels);
        let fr = [("val", 0.2), ("test", 0.3)];
        let s = vecs(&split_indices(labels.len(), &parts(&fr), 5, Some(&y)).unwrap());
        let mut seen = vec![false; labels.len()];
        for (name, idx) in &s {
            let f = if name == "train" { 0.5 } else { fr.iter().find(|(n, _)| n == name).unwrap().1 };
            for (c, n_c) in [(0, 600.0), (1, 300.0), (2, 97.0)] {
                let got = idx.iter().filter(|&&i| labels[i as usize] == c).count() as f64;
                assert!((got - f * n_c).abs() <= 1.0, "{name} class {c}: {got} vs {}", f * n_c);
            }
            for &i in idx {
                assert!(!std::mem::replace(&mut seen[i as usize], true), "index {i} twice");
            }
        }
        assert!(seen.iter().all(|&s| s));
    }
}

//! The UCI 8×8 handwritten digits (1797 samples), compiled into smartcore: the default dataset, needs no download.

use tch::Tensor;

use super::{Dataset, DatasetMeta};

/// The ten digits.
pub const CLASSES: i64 = 10;

/// Digits as `[1797, 1, 8, 8]` images (one channel, so image models and MLPs both apply), pixels scaled from
/// 0..16 to [0, 1].
pub fn load() -> Dataset {
    let raw = smartcore::dataset::digits::load_dataset();
    let n = raw.num_samples as i64;
    assert_eq!(raw.num_features, 64, "smartcore digits should have 64 features");
    let x = Tensor::from_slice(&raw.data).view([n, 1, 8, 8]) / 16.0;
    let labels: Vec<i64> = raw.target.iter().map(|&t| t as i64).collect();
    let meta = DatasetMeta {
        sample_shape: vec![1, 8, 8],
        classes: CLASSES,
        class_names: None,
        source: "digits".into(),
        vocab: None,
    };
    Dataset::new(x, Tensor::from_slice(&labels), meta).expect("embedded digits are well-formed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_has_1797_samples_in_unit_range() {
        let ds = load();
        assert_eq!(ds.len(), 1797);
        assert_eq!(ds.x.size(), vec![1797, 1, 8, 8]);
        assert_eq!(ds.meta.classes, 10);
        assert_eq!(ds.x.min().double_value(&[]), 0.0);
        assert_eq!(ds.x.max().double_value(&[]), 1.0);
        let counts = ds.class_counts();
        assert_eq!(counts.iter().sum::<i64>(), 1797);
        // Classes are roughly balanced (174..=183 each in the UCI set).
        assert!(counts.iter().all(|&c| (170..=190).contains(&c)), "{counts:?}");
    }
}

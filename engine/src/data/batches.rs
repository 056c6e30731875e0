//! Mini-batch index tensors for one epoch. Indices, not data: the caller gathers rows with
//! [`Dataset::batch`](super::Dataset::batch), one `index_select` per tensor.

use tch::Tensor;

use crate::rng::Rng;

/// Iterator over `[b]` i64 index tensors covering `0..n` once (in random order when shuffled).
pub struct Batches {
    order: Tensor,
    batch_size: usize,
    end: usize,
    pos: usize,
}

impl Batches {
    /// The last partial batch is kept unless `drop_last`. Panics if `batch_size` is 0.
    pub fn new(n: usize, batch_size: usize, shuffle: Option<&mut Rng>, drop_last: bool) -> Batches {
        assert!(batch_size > 0, "batch_size must be positive");
        let order: Vec<i64> = match shuffle {
            Some(rng) => rng.permutation(n),
            None => (0..n as i64).collect(),
        };
        let end = if drop_last { n - n % batch_size } else { n };
        Batches { order: Tensor::from_slice(&order), batch_size, end, pos: 0 }
    }
}

impl Iterator for Batches {
    type Item = Tensor;

    fn next(&mut self) -> Option<Tensor> {
        if self.pos >= self.end {
            return None;
        }
        let len = self.batch_size.min(self.end - self.pos);
        // A narrow of a contiguous 1-D tensor is itself contiguous: no copy.
        let batch = self.order.narrow(0, self.pos as i64, len as i64);
        self.pos += len;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.end - self.pos).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches {}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(b: Batches) -> Vec<i64> {
        b.flat_map(|t| Vec::<i64>::try_from(&t).unwrap()).collect()
    }

    #[test]
    fn every_index_once_per_epoch() {
        let b = Batches::new(10, 4, None, false);
        assert_eq!(b.len(), 3);
        let sizes: Vec<i64> = Batches::new(10, 4, None, false).map(|t| t.size()[0]).collect();
        assert_eq!(sizes, [4, 4, 2]);
        assert_eq!(flat(b), (0..10).collect::<Vec<_>>());
        assert_eq!(Batches::new(10, 4, None, true).len(), 2);
        assert_eq!(flat(Batches::new(10, 4, None, true)), (0..8).collect::<Vec<_>>());

        let mut r = Rng::new(1);
        let mut got = flat(Batches::new(1000, 64, Some(&mut r), false));
        assert_ne!(got, (0..1000).collect::<Vec<_>>());
        got.sort();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn shuffles_differ_by_rng_and_repeat_by_seed() {
        let a = flat(Batches::new(100, 8, Some(&mut Rng::new(1)), false));
        let b = flat(Batches::new(100, 8, Some(&mut Rng::new(2)), false));
        assert_ne!(a, b);
        assert_eq!(a, flat(Batches::new(100, 8, Some(&mut Rng::new(1)), false)));
    }

    #[test]
    fn batch_gathers_rows() {
        let ds = crate::data::digits::load();
        let idx = Batches::new(ds.len(), 32, Some(&mut Rng::new(3)), false).next().unwrap();
        let (x, y) = ds.batch(&idx);
        assert_eq!((x.size(), y.size()), (vec![32, 1, 8, 8], vec![32]));
        let i = idx.int64_value(&[5]);
        assert!(x.get(5).equal(&ds.x.get(i)));
        assert_eq!(y.int64_value(&[5]), ds.y.int64_value(&[i]));
    }
}

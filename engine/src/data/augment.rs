//! Training-time augmentation. `jitter` is the ±2 px random translation Hinton et al. use on MNIST for distillation.

use tch::Tensor;

use crate::rng::Rng;

/// Translates each image of `x` `[B, C, H, W]` by its own random integer offset in `[-max_shift, max_shift]²`,
/// filling uncovered pixels with zeros. Offsets come from `rng` (two draws per sample, in order), so the result is
/// deterministic given the rng. `max_shift == 0` returns `x` itself (a shallow clone).
///
/// Cost: one pad, then per *distinct* offset (at most (2·max_shift+1)², 25 for ±2) one `index_select`, a narrowed view
/// and one `index_copy_` — no per-sample or per-pixel Rust loops over data.
pub fn jitter(x: &Tensor, max_shift: i64, rng: &mut Rng) -> Tensor {
    let size = x.size();
    assert_eq!(size.len(), 4, "jitter expects [B, C, H, W], got {size:?}");
    assert!(max_shift >= 0, "max_shift must be >= 0");
    let (b, h, w) = (size[0], size[2], size[3]);
    if max_shift == 0 || b == 0 {
        return x.shallow_clone();
    }
    let m = max_shift;
    let span = (2 * m + 1) as usize;
    let mut groups: Vec<Vec<i64>> = vec![Vec::new(); span * span];
    for i in 0..b {
        let dy = rng.below(span as u64) as usize;
        let dx = rng.below(span as u64) as usize;
        groups[dy * span + dx].push(i);
    }
    let padded = x.constant_pad_nd([m, m, m, m]);
    let mut out = x.zeros_like();
    for (g, members) in groups.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
        // Offset (dy, dx) = (g / span - m, g % span - m): output (i, j) reads input (i - dy, j - dx), which is padded
        // row i - dy + m, so the window starts at m - dy = span - 1 - g / span.
        let (top, left) = ((span - 1 - g / span) as i64, (span - 1 - g % span) as i64);
        let idx = Tensor::from_slice(members).to_device(x.device());
        let patch = padded.index_select(0, &idx).narrow(2, top, h).narrow(3, left, w);
        let _ = out.index_copy_(0, &idx, &patch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn one_hot_images(b: i64, side: i64, at: (i64, i64)) -> Tensor {
        let x = Tensor::zeros([b, 1, side, side], (Kind::Float, Device::Cpu));
        let _ = x.narrow(2, at.0, 1).narrow(3, at.1, 1).fill_(1.0);
        x
    }

    /// (row, col) of each image's single lit pixel, or None if it was shifted out.
    fn positions(x: &Tensor) -> Vec<Option<(i64, i64)>> {
        let side = x.size()[3];
        (0..x.size()[0])
            .map(|i| {
                let img = x.get(i).flatten(0, -1);
                let k = img.argmax(0, false).int64_value(&[]);
                (img.double_value(&[k]) == 1.0).then_some((k / side, k % side))
            })
            .collect()
    }

    #[test]
    fn zero_shift_is_identity() {
        let x = Tensor::rand([4, 3, 5, 5], (Kind::Float, Device::Cpu));
        assert!(jitter(&x, 0, &mut Rng::new(1)).equal(&x));
    }

    #[test]
    fn one_hot_pixel_moves_at_most_max_shift() {
        let x = one_hot_images(200, 9, (4, 4));
        let y = jitter(&x, 2, &mut Rng::new(7));
        assert_eq!(y.size(), x.size());
        assert_eq!(y.sum(Kind::Float).double_value(&[]), 200.0); // nothing lost, nothing duplicated
        let pos = positions(&y);
        let mut offsets = std::collections::BTreeSet::new();
        for p in &pos {
            let (r, c) = p.expect("centre pixel stays inside for ±2");
            assert!((r - 4).abs() <= 2 && (c - 4).abs() <= 2, "moved to {r},{c}");
            offsets.insert((r - 4, c - 4));
        }
        assert_eq!(offsets.len(), 25, "all 25 offsets should occur in 200 samples");
        assert!(y.equal(&jitter(&x, 2, &mut Rng::new(7))));
        assert!(!y.equal(&jitter(&x, 2, &mut Rng::new(8))));
    }

    #[test]
    fn pixels_shifted_out_are_zero_filled() {
        // A corner pixel leaves the image for about half the offsets; the rest of each image stays zero.
        let y = jitter(&one_hot_images(100, 6, (0, 0)), 1, &mut Rng::new(3));
        let kept = positions(&y).iter().flatten().count() as f64;
        assert_eq!(y.sum(Kind::Float).double_value(&[]), kept);
        assert!(kept > 20.0 && kept < 80.0, "{kept}");
    }
}

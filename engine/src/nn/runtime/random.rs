//! Random tensors computed by libtorch from a seed, without libtorch's global generator.
//!
//! A counter-based generator: element i of the output is a hash (SplitMix64's finaliser) of `seed + i·γ`, evaluated
//! with integer tensor ops. It runs where the tensor lives (no host-to-device copy of a mask per batch), is as fast as
//! any elementwise op, and integer arithmetic makes it bit-identical on every device and thread count.
//!
//! ```
//! use anbiq::nn::runtime::random::uniform;
//! let a = uniform(42, &[3, 4], tch::Device::Cpu);
//! assert!(a.equal(&uniform(42, &[3, 4], tch::Device::Cpu)));
//! assert!(!a.equal(&uniform(43, &[3, 4], tch::Device::Cpu)));
//! ```

use tch::{Device, Kind, Tensor};

const GAMMA: i64 = 0x9E37_79B9_7F4A_7C15_u64 as i64;
const M1: i64 = 0xBF58_476D_1CE4_E5B9_u64 as i64;
const M2: i64 = 0x94D0_49BB_1331_11EB_u64 as i64;

/// Logical right shift of int64 lanes (libtorch's `>>` on int64 is arithmetic).
fn shr(x: &Tensor, k: i64) -> Tensor {
    x.bitwise_right_shift_tensor_scalar(k).bitwise_and((1i64 << (64 - k)) - 1)
}

/// Uniform floats in [0, 1) (24 random bits each, exact in f32) of the given shape on `device`.
pub fn uniform(seed: u64, shape: &[i64], device: Device) -> Tensor {
    let n: i64 = shape.iter().product();
    // Wrapping int64 arithmetic: libtorch multiplies in two's complement, like the u64 reference.
    let mut z = Tensor::arange(n, (Kind::Int64, device)) * GAMMA + seed as i64;
    z = z.bitwise_xor_tensor(&shr(&z, 30)) * M1;
    z = z.bitwise_xor_tensor(&shr(&z, 27)) * M2;
    z = z.bitwise_xor_tensor(&shr(&z, 31));
    (shr(&z, 40).to_kind(Kind::Float) * (1.0 / (1u64 << 24) as f64)).reshape(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same hash in plain u64 arithmetic.
    fn reference(seed: u64, i: u64) -> f32 {
        let mut z = i.wrapping_mul(GAMMA as u64).wrapping_add(seed);
        z = (z ^ (z >> 30)).wrapping_mul(M1 as u64);
        z = (z ^ (z >> 27)).wrapping_mul(M2 as u64);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }

    #[test]
    fn matches_the_scalar_hash_and_is_uniform() {
        let t = uniform(7, &[1000], Device::Cpu);
        let v: Vec<f32> = Vec::try_from(&t).unwrap();
        for (i, x) in v.iter().enumerate().take(50) {
            assert_eq!(*x, reference(7, i as u64), "element {i}");
        }
        let big = uniform(9, &[200_000], Device::Cpu);
        let mean = big.mean(Kind::Double).double_value(&[]);
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        assert!(big.min().double_value(&[]) >= 0.0 && big.max().double_value(&[]) < 1.0);
    }
}

//! Inverted dropout whose mask comes from an anbiq [`Rng`](crate::rng::Rng), not libtorch's global generator.
//!
//! In training each element is zeroed with probability `p` and the survivors are scaled by `1/(1-p)`, so the expected
//! activation is unchanged and evaluation is the identity.
//!
//! ```
//! use anbiq::nn::{layers::Dropout, Mode};
//! use anbiq::rng::Rng;
//! use tch::{Device, Kind, Tensor};
//!
//! let x = Tensor::ones([4, 100], (Kind::Float, Device::Cpu));
//! let drop = Dropout::new(0.5);
//! assert!(drop.forward(&x, &mut Mode::Eval).equal(&x));
//! let mut rng = Rng::derive(0, "dropout");
//! let y = drop.forward(&x, &mut Mode::Train(&mut rng));
//! // Every element is either dropped or doubled.
//! let kept = y.eq(2.0).sum(Kind::Int64).int64_value(&[]);
//! let dropped = y.eq(0.0).sum(Kind::Int64).int64_value(&[]);
//! assert_eq!(kept + dropped, 400);
//! ```

use crate::nn::Mode;
use tch::Tensor;

#[derive(Debug, Clone, Copy)]
pub struct Dropout {
    pub p: f64,
}

impl Dropout {
    /// `p` in [0, 1); validated by the architecture configs.
    pub fn new(p: f64) -> Self {
        Dropout { p }
    }

    pub fn forward(&self, x: &Tensor, mode: &mut Mode<'_>) -> Tensor {
        let rng = match mode {
            Mode::Train(rng) if self.p > 0.0 => rng,
            _ => return x.shallow_clone(),
        };
        // One draw from the step's stream seeds a mask computed where `x` lives.
        let mask = crate::nn::runtime::random::uniform(rng.next_u64(), &x.size(), x.device()).ge(self.p);
        x * mask.to_kind(x.kind()) * (1.0 / (1.0 - self.p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use tch::{Device, Kind};

    #[test]
    fn eval_is_identity_and_train_scales_survivors() {
        let x = Tensor::ones([50, 200], (Kind::Float, Device::Cpu));
        let d = Dropout::new(0.25);
        assert!(d.forward(&x, &mut Mode::Eval).equal(&x));
        let mut rng = Rng::derive(1, "d");
        let y = d.forward(&x, &mut Mode::Train(&mut rng));
        let scale = 1.0 / 0.75;
        let kept = y.eq(scale).sum(Kind::Int64).int64_value(&[]);
        let dropped = y.eq(0.0).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(kept + dropped, 10_000);
        let frac = dropped as f64 / 10_000.0;
        assert!((frac - 0.25).abs() < 0.02, "dropped fraction {frac}");
        // The mean is preserved in expectation.
        let mean = y.mean(Kind::Float).double_value(&[]);
        assert!((mean - 1.0).abs() < 0.03, "mean {mean}");
        // Same stream → same mask.
        let y2 = d.forward(&x, &mut Mode::Train(&mut Rng::derive(1, "d")));
        assert!(y.equal(&y2));
    }

    #[test]
    fn p_zero_is_identity_in_train() {
        let x = Tensor::ones([3, 3], (Kind::Float, Device::Cpu));
        let mut rng = Rng::derive(1, "d");
        assert!(Dropout::new(0.0).forward(&x, &mut Mode::Train(&mut rng)).equal(&x));
    }
}

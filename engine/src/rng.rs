//! Seeded randomness that anbiq owns, so results never depend on libtorch's global generator.
//!
//! Steps may run concurrently on different threads; libtorch's default generator is process-global, so any random op
//! drawn from it (init, shuffling, dropout) would depend on scheduling. Every random number anbiq uses comes from an
//! [`Rng`] derived from the workflow seed and a label (the step id, then "init", "shuffle/3", ...), which makes runs
//! bit-identical across `--jobs` settings.
//!
//! ```
//! use anbiq::rng::Rng;
//! let mut a = Rng::derive(7, "teacher/init");
//! let mut b = Rng::derive(7, "teacher/init");
//! assert_eq!(a.next_u64(), b.next_u64());
//! assert_ne!(Rng::derive(7, "x").next_u64(), Rng::derive(8, "x").next_u64());
//! ```

/// xoshiro256** seeded through SplitMix64: fast, small state, statistically strong for simulation use.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    /// An independent stream for `label` under `seed` (e.g. the workflow seed and "student/shuffle").
    pub fn derive(seed: u64, label: &str) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"anbiq-rng-v1\0");
        h.update(&seed.to_le_bytes());
        h.update(label.as_bytes());
        let bytes = h.finalize();
        Rng::new(u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes")))
    }

    /// The generator's state, for checkpoints.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// A generator continuing exactly where the one whose [`state`](Self::state) this is stopped.
    pub fn from_state(s: [u64; 4]) -> Self {
        Rng { s }
    }

    /// A child stream, derived without disturbing this one's sequence.
    pub fn fork(&self, label: &str) -> Self {
        Rng::derive(self.s[0] ^ self.s[3].rotate_left(17), label)
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 24 bits of precision (exactly representable as f32).
    pub fn uniform_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    pub fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller; one of the pair is discarded to keep the stream position simple).
    pub fn normal_f64(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform_f64(); // (0, 1]: ln is finite
        let u2 = self.uniform_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Uniform integer in [0, n) without modulo bias (Lemire's method). `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// A random permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<i64> {
        let mut p: Vec<i64> = (0..n as i64).collect();
        self.shuffle(&mut p);
        p
    }

    /// `n` samples uniform in [lo, hi).
    pub fn uniform_vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| lo + (hi - lo) * self.uniform_f32()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation_and_seeded() {
        let p = Rng::new(1).permutation(1000);
        let mut sorted = p.clone();
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<i64>>());
        assert_eq!(p, Rng::new(1).permutation(1000));
        assert_ne!(p, Rng::new(2).permutation(1000));
    }

    #[test]
    fn uniform_and_normal_have_the_right_moments() {
        let mut r = Rng::new(3);
        let n = 200_000;
        let u: f64 = (0..n).map(|_| r.uniform_f32() as f64).sum::<f64>() / n as f64;
        assert!((u - 0.5).abs() < 0.005, "mean of uniform {u}");
        let xs: Vec<f64> = (0..n).map(|_| r.normal_f64()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "normal mean {mean} var {var}");
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::new(5);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            seen[r.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }
}

//! `exp` and `ln` for dense losses (no libm in `no_std`): f64, accurate to a few ulps, deterministic.

const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01;
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
const INV_LN2: f64 = 1.442_695_040_888_963_387_00;

/// e^x.
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.78 {
        return f64::INFINITY;
    }
    if x < -745.13 {
        return 0.0;
    }
    // x = k·ln2 + r, |r| ≤ ln2/2; e^r by its Taylor series to r^13 (error < 1e-17 on that range).
    let k = round(x * INV_LN2);
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut i = 1.0;
    while i < 14.0 {
        term *= r / i;
        sum += term;
        i += 1.0;
    }
    scale(sum, k as i32)
}

/// Natural logarithm; NaN below 0, −∞ at 0.
pub fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    // x = m·2^e with m in [√½, √2); ln m = 2·atanh(s), s = (m−1)/(m+1), |s| < 0.1716.
    let (mut m, mut e) = frexp(x);
    if m < core::f64::consts::FRAC_1_SQRT_2 {
        m *= 2.0;
        e -= 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    let mut n = 1.0;
    while n < 40.0 {
        sum += term / n;
        term *= s2;
        n += 2.0;
    }
    2.0 * sum + e as f64 * LN2_HI + e as f64 * LN2_LO
}

fn round(x: f64) -> f64 {
    let t = x as i64 as f64;
    let d = x - t;
    if d >= 0.5 {
        t + 1.0
    } else if d <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// x · 2^k.
fn scale(mut x: f64, mut k: i32) -> f64 {
    while k > 1000 {
        x *= f64::from_bits(0x7e70_0000_0000_0000); // 2^1000
        k -= 1000;
    }
    while k < -1000 {
        x *= f64::from_bits(0x0170_0000_0000_0000); // 2^-1000
        k += 1000;
    }
    x * f64::from_bits(((k + 1023) as u64) << 52)
}

/// (m, e) with x = m·2^e, m in [0.5, 1), for finite positive x.
fn frexp(x: f64) -> (f64, i32) {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale up first.
        let (m, e) = frexp(x * f64::from_bits(0x4350_0000_0000_0000)); // 2^54
        return (m, e - 54);
    }
    let m = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (m, exp - 1022)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn matches_std() {
        let mut x = -700.0;
        while x < 700.0 {
            let (a, b) = (exp(x), std::primitive::f64::exp(x));
            assert!(((a - b) / b).abs() < 1e-14, "exp({x}): {a} vs {b}");
            x += 0.731;
        }
        let mut y = 1e-300;
        while y < 1e300 {
            let (a, b) = (ln(y), std::primitive::f64::ln(y));
            assert!((a - b).abs() <= 1e-14 * b.abs().max(1.0), "ln({y}): {a} vs {b}");
            y *= 3.7;
        }
    }
}

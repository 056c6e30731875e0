//! ggml's tensor types and their dequantisation to f32, bit for bit as the `gguf` Python package's `dequantize`
//! computes it (`gguf/quants.py`: same element order, same f32 operations in the same order; Rust does not fuse
//! `a * b + c` into an FMA, numpy does not either).
//!
//! Block layouts (ggml-common.h): 32 values per block for the legacy types, 256 (`QK_K`) for the k-quants; `d`,
//! `m`, `dmin` are f16.

use half::f16;

/// A ggml tensor type, by its GGUF id (named as ggml names them).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4_K,
    Q5_K,
    Q6_K,
}

const QK_K: usize = 256;

impl GgmlType {
    /// The type with GGUF id `id`; `Err` names the type when it is one anbiq does not read.
    pub fn from_id(id: u32) -> Result<GgmlType, String> {
        Ok(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4_K,
            13 => GgmlType::Q5_K,
            14 => GgmlType::Q6_K,
            30 => GgmlType::BF16,
            other => {
                let name = match other {
                    9 => "Q8_1",
                    10 => "Q2_K",
                    11 => "Q3_K",
                    15 => "Q8_K",
                    16..=23 => "an IQ type",
                    24 => "I8",
                    25 => "I16",
                    26 => "I32",
                    27 => "I64",
                    28 => "F64",
                    29 => "IQ1_M",
                    34 | 35 => "a TQ type",
                    39 => "MXFP4",
                    _ => "unknown",
                };
                return Err(format!(
                    "tensor type {other} ({name}) is not supported (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, \
                     Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)"
                ));
            }
        })
    }

    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
            GgmlType::BF16 => 30,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q5_K => "Q5_K",
            GgmlType::Q6_K => "Q6_K",
        }
    }

    /// Values per block.
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => 32,
            GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4_K => 144,
            GgmlType::Q5_K => 176,
            GgmlType::Q6_K => 210,
        }
    }

    /// Bytes of `elements` values, or `None` when they do not fill whole blocks.
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let block = self.block_size() as u64;
        elements.is_multiple_of(block).then(|| elements / block * self.block_bytes() as u64)
    }
}

fn half(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Dequantises `bytes` (whole blocks of `ty`) into `out`, which holds exactly their values.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    let (bs, bb) = (ty.block_size(), ty.block_bytes());
    debug_assert_eq!(bytes.len() / bb * bs, out.len());
    for (block, out) in bytes.chunks_exact(bb).zip(out.chunks_exact_mut(bs)) {
        match ty {
            GgmlType::F32 => out[0] = f32::from_le_bytes(block.try_into().expect("4 bytes")),
            GgmlType::F16 => out[0] = half(block, 0),
            GgmlType::BF16 => out[0] = f32::from_bits((u16::from_le_bytes([block[0], block[1]]) as u32) << 16),
            GgmlType::Q4_0 => q4_0(block, out),
            GgmlType::Q4_1 => q4_1(block, out),
            GgmlType::Q5_0 => q5_0(block, out),
            GgmlType::Q5_1 => q5_1(block, out),
            GgmlType::Q8_0 => q8_0(block, out),
            GgmlType::Q4_K => q4_k(block, out),
            GgmlType::Q5_K => q5_k(block, out),
            GgmlType::Q6_K => q6_k(block, out),
        }
    }
}

/// The low nibbles of a block's 16 bytes are values 0..16, the high nibbles 16..32.
fn nibble(qs: &[u8], i: usize) -> u8 {
    (qs[i % 16] >> (4 * (i / 16))) & 0x0F
}

fn q4_0(b: &[u8], out: &mut [f32]) {
    let d = half(b, 0);
    for (i, y) in out.iter_mut().enumerate() {
        *y = d * (nibble(&b[2..], i) as i8 - 8) as f32;
    }
}

fn q4_1(b: &[u8], out: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    for (i, y) in out.iter_mut().enumerate() {
        *y = d * nibble(&b[4..], i) as f32 + m;
    }
}

/// Value `i` of a Q5 block: a nibble and bit `i` of the little-endian `qh`.
fn five_bits(qh: u32, qs: &[u8], i: usize) -> u8 {
    nibble(qs, i) | ((((qh >> i) & 1) as u8) << 4)
}

fn q5_0(b: &[u8], out: &mut [f32]) {
    let d = half(b, 0);
    let qh = u32::from_le_bytes(b[2..6].try_into().expect("4 bytes"));
    for (i, y) in out.iter_mut().enumerate() {
        *y = d * (five_bits(qh, &b[6..], i) as i8 - 16) as f32;
    }
}

fn q5_1(b: &[u8], out: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qh = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes"));
    for (i, y) in out.iter_mut().enumerate() {
        *y = d * five_bits(qh, &b[8..], i) as f32 + m;
    }
}

fn q8_0(b: &[u8], out: &mut [f32]) {
    let d = half(b, 0);
    for (i, y) in out.iter_mut().enumerate() {
        *y = (b[2 + i] as i8) as f32 * d;
    }
}

/// The 8 six-bit scales and mins packed into a k-quant block's 12 bytes (`get_scale_min`).
fn scales_and_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 0x3F;
        mn[j] = s[4 + j] & 0x3F;
        sc[4 + j] = (s[8 + j] & 0x0F) | ((s[j] >> 2) & 0x30);
        mn[4 + j] = (s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30);
    }
    (sc, mn)
}

/// Sub-block `k` (of 8, 32 values each) of a Q4_K/Q5_K block takes the low (`k` even) or high nibbles of the 32
/// quant bytes `32 * (k / 2)..`.
fn k_nibble(qs: &[u8], k: usize, j: usize) -> u8 {
    (qs[32 * (k / 2) + j] >> (4 * (k % 2))) & 0x0F
}

fn q4_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let (sc, mn) = scales_and_mins(&b[4..16]);
    let qs = &b[16..144];
    for k in 0..8 {
        let (scale, min) = (d * sc[k] as f32, dmin * mn[k] as f32);
        for j in 0..32 {
            out[32 * k + j] = scale * k_nibble(qs, k, j) as f32 - min;
        }
    }
}

fn q5_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let (sc, mn) = scales_and_mins(&b[4..16]);
    let (qh, qs) = (&b[16..48], &b[48..176]);
    for k in 0..8 {
        let (scale, min) = (d * sc[k] as f32, dmin * mn[k] as f32);
        for j in 0..32 {
            let q = k_nibble(qs, k, j) | (((qh[j] >> k) & 1) << 4);
            out[32 * k + j] = scale * q as f32 - min;
        }
    }
}

fn q6_k(b: &[u8], out: &mut [f32]) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = half(b, 208);
    for (i, y) in out.iter_mut().enumerate() {
        // Halves of 128 values; in each, 64-value runs take the low then high nibbles of `ql`, and 32-value runs
        // the four 2-bit fields of `qh`.
        let (a, r) = (i / 128, i % 128);
        let low = (ql[64 * a + r % 64] >> (4 * (r / 64))) & 0x0F;
        let high = (qh[32 * a + r % 32] >> (2 * (r / 32))) & 0x03;
        let q = (low | (high << 4)) as i8 - 32;
        *y = (d * (scales[i / 16] as i8) as f32) * q as f32;
    }
}

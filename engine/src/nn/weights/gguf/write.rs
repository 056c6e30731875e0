//! Writing GGUF v3 files: metadata, the tensor directory, then each tensor's data at the next multiple of the
//! alignment (32), encoded as it is written — f32, f16 (round to nearest even, as numpy's `astype(float16)`), or
//! Q8_0 (llama.cpp's `quantize_row_q8_0_ref`: per block of 32, d = max|x| / 127, q = round(x / d) half away from
//! zero, d stored as f16) — so the file is never held in memory.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{ensure, Context as _, Result};
use tch::{Kind, Tensor};

use super::{GgmlType, MetaValue};

pub const ALIGNMENT: usize = 32;

/// One tensor to write: its values (f32 or bf16, row-major; PyTorch's shape) and the type to store them in.
pub struct OutTensor {
    pub name: String,
    pub values: Tensor,
    pub ty: GgmlType,
}

impl OutTensor {
    /// GGUF's dimensions, innermost first.
    fn dims(&self) -> Vec<u64> {
        self.values.size().iter().rev().map(|&d| d as u64).collect()
    }

    fn bytes(&self) -> u64 {
        let elements = self.values.numel() as u64;
        self.ty.bytes_for(elements).expect("types are chosen to fill whole blocks")
    }
}

/// The types a tensor can be written in.
pub fn can_store(ty: GgmlType, row: i64) -> bool {
    match ty {
        GgmlType::F32 | GgmlType::F16 => true,
        GgmlType::Q8_0 => row % 32 == 0,
        _ => false,
    }
}

/// Writes `metadata` and `tensors` as a GGUF v3 file at `path` (through a temporary file beside it, renamed at the
/// end, so a failed export leaves nothing that looks like a model).
pub fn write(path: &Path, metadata: &[(String, MetaValue)], tensors: &[OutTensor]) -> Result<()> {
    for t in tensors {
        let row = t.values.size().last().copied().unwrap_or(1);
        ensure!(can_store(t.ty, row), "tensor `{}`: rows of {row} cannot be stored as {}", t.name, t.ty.name());
    }
    let tmp = path.with_extension("gguf.partial");
    let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = write_to(&mut BufWriter::new(file), metadata, tensors);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

fn write_to(out: &mut BufWriter<std::fs::File>, metadata: &[(String, MetaValue)], tensors: &[OutTensor]) -> Result<()> {
    let mut header = Vec::new();
    header.extend_from_slice(b"GGUF");
    header.extend_from_slice(&3u32.to_le_bytes());
    header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        string(&mut header, key);
        header.extend_from_slice(&type_id(value).to_le_bytes());
        encode(&mut header, value);
    }
    let mut offset = 0u64;
    for t in tensors {
        string(&mut header, &t.name);
        let dims = t.dims();
        header.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            header.extend_from_slice(&d.to_le_bytes());
        }
        header.extend_from_slice(&t.ty.id().to_le_bytes());
        header.extend_from_slice(&offset.to_le_bytes());
        offset = (offset + t.bytes()).next_multiple_of(ALIGNMENT as u64);
    }
    header.resize(header.len().next_multiple_of(ALIGNMENT), 0);
    out.write_all(&header)?;
    for t in tensors {
        let mut bytes = encode_tensor(t)?;
        bytes.resize(bytes.len().next_multiple_of(ALIGNMENT), 0);
        out.write_all(&bytes)?;
    }
    out.flush()?;
    Ok(())
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn type_id(value: &MetaValue) -> u32 {
    match value {
        MetaValue::U8(_) => 0,
        MetaValue::I8(_) => 1,
        MetaValue::U16(_) => 2,
        MetaValue::I16(_) => 3,
        MetaValue::U32(_) => 4,
        MetaValue::I32(_) => 5,
        MetaValue::F32(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::String(_) => 8,
        MetaValue::Array(_) => 9,
        MetaValue::U64(_) => 10,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 12,
    }
}

fn encode(out: &mut Vec<u8>, value: &MetaValue) {
    match value {
        MetaValue::U8(v) => out.push(*v),
        MetaValue::I8(v) => out.push(*v as u8),
        MetaValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::Bool(v) => out.push(u8::from(*v)),
        MetaValue::String(s) => string(out, s),
        MetaValue::Array(items) => {
            // An empty array's element type is irrelevant to readers; strings are the common case.
            let ty = items.first().map_or(8, type_id);
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                encode(out, item);
            }
        }
        MetaValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}

fn encode_tensor(t: &OutTensor) -> Result<Vec<u8>> {
    let values: Vec<f32> = Vec::try_from(&t.values.to_kind(Kind::Float).contiguous().flatten(0, -1))
        .with_context(|| format!("reading tensor `{}`", t.name))?;
    Ok(match t.ty {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        GgmlType::Q8_0 => quantize_q8_0(&values),
        other => anyhow::bail!("tensor `{}`: writing {} is not supported", t.name, other.name()),
    })
}

/// llama.cpp's reference Q8_0 quantisation of whole blocks of 32 values.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 32 * 34);
    for block in values.chunks_exact(32) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|&v| (v * id).round() as i8 as u8));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::weights::gguf::{quants, Gguf};

    #[test]
    fn written_files_read_back_with_their_metadata_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gguf");
        let w = Tensor::arange(64 * 3, (Kind::Float, tch::Device::Cpu)).reshape([3, 64]) / 7.0 - 10.0;
        let norm = Tensor::from_slice(&[1.0f32, -2.5, 3.25]);
        let metadata = vec![
            ("general.architecture".to_string(), MetaValue::String("test".into())),
            (
                "test.list".to_string(),
                MetaValue::Array(vec![MetaValue::String("a".into()), MetaValue::String("b".into())]),
            ),
            ("test.eps".to_string(), MetaValue::F32(1e-5)),
        ];
        let tensors = [
            OutTensor { name: "w.f16".into(), values: w.shallow_clone(), ty: GgmlType::F16 },
            OutTensor { name: "w.q8".into(), values: w.shallow_clone(), ty: GgmlType::Q8_0 },
            OutTensor { name: "norm".into(), values: norm.shallow_clone(), ty: GgmlType::F32 },
        ];
        write(&path, &metadata, &tensors).unwrap();
        let g = Gguf::open(&path).unwrap();
        assert_eq!(g.metadata["test.list"], metadata[1].1);
        assert_eq!(g.metadata["test.eps"], MetaValue::F32(1e-5));
        let read = |name: &str| Tensor::from_slice(&g.dequantize(g.tensor(name).unwrap()));
        assert_eq!(g.tensor("w.f16").unwrap().shape(), [3, 64]);
        let f16 = read("w.f16");
        assert!(f16.equal(&w.to_kind(Kind::Half).to_kind(Kind::Float).flatten(0, -1)), "f16: round to nearest even");
        let q8 = read("w.q8");
        let err = (&q8 - w.flatten(0, -1)).abs().max().double_value(&[]);
        let step = w.abs().max().double_value(&[]) / 127.0;
        assert!(err > 0.0 && err <= step, "Q8_0 error {err} within one step of max|x|/127 = {step}");
        assert!(read("norm").equal(&norm));
        // Round to nearest: every value within half a step (max|x| / 127 / 2, the step itself rounded to f16).
        let block: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) * 0.5).collect();
        let mut back = vec![0f32; 32];
        quants::dequantize(GgmlType::Q8_0, &quantize_q8_0(&block), &mut back);
        let worst = block.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 8.0 / 127.0 / 2.0 * 1.01, "{worst}");
        assert_eq!(back[16], 0.0, "zero stays zero");
    }
}

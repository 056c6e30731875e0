//! Integer ids (token ids, class ids) on disk in the narrowest unsigned type their range needs — `U16` up to 65,536
//! values (SmolLM2's 49,152-token vocabulary fits), else `U32` — which numpy and PyTorch read as `uint16`/`uint32`.
//! libtorch has no unsigned 16-bit type, so they are written from bytes and widened to a signed type on load.

use std::borrow::Cow;

use anyhow::{bail, Context as _, Result};
use tch::{Kind, Tensor};

/// A tensor as safetensors bytes: compact ids, or any other tensor's own bytes.
pub struct Stored {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Stored {
    /// Ids in `0..range` (the caller's invariant), as U16 or U32.
    pub fn ids(t: &Tensor, range: i64) -> Result<Stored> {
        let ids: Vec<i64> = Vec::try_from(&t.to_kind(Kind::Int64).flatten(0, -1)).context("reading ids")?;
        let narrow = range <= 1 << 16;
        let mut bytes = Vec::with_capacity(ids.len() * if narrow { 2 } else { 4 });
        for id in ids {
            if narrow {
                bytes.extend_from_slice(&(id as u16).to_le_bytes());
            } else {
                bytes.extend_from_slice(&(id as u32).to_le_bytes());
            }
        }
        let dtype = if narrow { safetensors::Dtype::U16 } else { safetensors::Dtype::U32 };
        Ok(Stored { dtype, shape: t.size().iter().map(|&d| d as usize).collect(), bytes })
    }

    /// Counts in `0..=max` (the caller's invariant), as U8 up to 255, else U16 or U32.
    pub fn counts(t: &Tensor, max: i64) -> Result<Stored> {
        if max > u8::MAX as i64 {
            return Stored::ids(t, max + 1);
        }
        let counts: Vec<i64> = Vec::try_from(&t.to_kind(Kind::Int64).flatten(0, -1)).context("reading counts")?;
        let bytes = counts.into_iter().map(|c| c as u8).collect();
        Ok(Stored { dtype: safetensors::Dtype::U8, shape: t.size().iter().map(|&d| d as usize).collect(), bytes })
    }

    /// A tensor's own values (f16, f32, …), copied.
    pub fn values(t: &Tensor) -> Result<Stored> {
        let t = t.contiguous();
        let dtype = safetensors::Dtype::try_from(t.kind()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut bytes = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
        t.copy_data_u8(&mut bytes, t.numel());
        Ok(Stored { dtype, shape: t.size().iter().map(|&d| d as usize).collect(), bytes })
    }
}

impl safetensors::tensor::View for &Stored {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Writes `tensors` as one safetensors file.
pub fn write(path: &std::path::Path, tensors: &[(&str, Stored)]) -> Result<()> {
    let views: Vec<(&str, &Stored)> = tensors.iter().map(|(n, s)| (*n, s)).collect();
    safetensors::tensor::serialize_to_file(views, &None, path).with_context(|| format!("writing {}", path.display()))
}

/// Tensor `name` of a parsed safetensors file: ids (U16, U32, or the signed types of older stores) widened to
/// `id_kind`, any other type as it is.
pub fn read(file: &safetensors::SafeTensors, name: &str, id_kind: Kind) -> Result<Tensor> {
    let view = file.tensor(name).map_err(|_| anyhow::anyhow!("no tensor named `{name}`"))?;
    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    let data = view.data();
    let widened: Vec<i64> = match view.dtype() {
        safetensors::Dtype::U16 => data.chunks_exact(2).map(|b| i64::from(u16::from_le_bytes([b[0], b[1]]))).collect(),
        safetensors::Dtype::U32 => {
            data.chunks_exact(4).map(|b| i64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect()
        }
        dtype => {
            let kind = Kind::try_from(dtype).map_err(|_| anyhow::anyhow!("tensor `{name}`: dtype {dtype:?}"))?;
            if kind == Kind::Bool {
                bail!("tensor `{name}`: bool is not a stored type");
            }
            return Ok(Tensor::from_data_size(data, &shape, kind));
        }
    };
    Ok(Tensor::from_slice(&widened).view(shape.as_slice()).to_kind(id_kind))
}

//! Reading safetensors files tensor by tensor, straight into each tensor's own memory.
//!
//! `tch::Tensor::read_safetensors` reads the whole file into memory and then copies every tensor out of it, so
//! loading a model takes twice its size (measured: importing SmolLM2-135M peaked at 2.4× its 538 MB of f32
//! weights). Here the header is parsed, each tensor allocated once and its bytes read from the file into it, so the
//! peak is the model plus nothing.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use tch::{Device, Kind, Tensor};

/// Every tensor of the file, by name, on the CPU.
pub fn read(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let bad = |what: String| anyhow::anyhow!("{}: not a readable safetensors file: {what}", path.display());
    let mut file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let file_len = file.metadata()?.len();
    if file.metadata()?.is_dir() {
        bail!("{}: is a directory, not a safetensors file", path.display());
    }
    if file_len < 8 {
        return Err(bad(if file_len == 0 { "empty".into() } else { format!("{file_len} bytes") }));
    }
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|_| bad("shorter than its header".into()))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > 100 << 20 || 8 + header_len > file_len {
        return Err(bad(format!("its first 8 bytes give a header of {header_len} bytes in a file of {file_len}")));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|_| bad("truncated header".into()))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON ({e})")))?;
    let data_start = 8 + header_len;
    let mut tensors = BTreeMap::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype: safetensors::Dtype = serde_json::from_value(info["dtype"].clone())
            .map_err(|_| bad(format!("tensor `{name}`: dtype {} is not a safetensors dtype", info["dtype"])))?;
        // tch's own mapping; bool is refused, since a byte other than 0 or 1 would be an invalid bool.
        let kind = Kind::try_from(dtype)
            .ok()
            .filter(|k| *k != Kind::Bool)
            .ok_or_else(|| bad(format!("tensor `{name}`: dtype {dtype:?} is not supported")))?;
        let shape: Vec<i64> = serde_json::from_value(info["shape"].clone())
            .map_err(|_| bad(format!("tensor `{name}`: no valid `shape`")))?;
        let offsets: [u64; 2] = serde_json::from_value(info["data_offsets"].clone())
            .map_err(|_| bad(format!("tensor `{name}`: no valid `data_offsets`")))?;
        let bytes = shape.iter().try_fold(kind.elt_size_in_bytes() as u64, |acc, &d| {
            u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
        });
        if bytes.is_none() || offsets[1] < offsets[0] || Some(offsets[1] - offsets[0]) != bytes {
            bail!(
                "{}: tensor `{name}`: shape {shape:?} of {dtype:?} does not match its {} bytes",
                path.display(),
                offsets[1].saturating_sub(offsets[0])
            );
        }
        let bytes = bytes.expect("checked above");
        if data_start.checked_add(offsets[1]).is_none_or(|end| end > file_len) {
            return Err(bad(format!("tensor `{name}` runs past the end of the file (truncated?)")));
        }
        // Zeroed first, so the slice below never covers uninitialised memory.
        let tensor = Tensor::zeros(shape.as_slice(), (kind, Device::Cpu));
        if bytes > 0 {
            // SAFETY: `tensor` is a fresh contiguous CPU tensor of exactly `bytes` initialised bytes, written only
            // here; every bit pattern is a valid value of the kinds read (bool is not one of them).
            let memory = unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr() as *mut u8, bytes as usize) };
            file.read_exact_at(memory, data_start + offsets[0]).map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        }
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}

/// Writes tensors (contiguous, on the CPU) as a safetensors file, straight from their memory: the same bytes as
/// `tch::Tensor::write_safetensors` (same order, no metadata), without its copy of each tensor.
pub fn write(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(name, t)| {
            anyhow::ensure!(
                t.device() == Device::Cpu && t.is_contiguous(),
                "tensor `{name}` is not contiguous on the CPU"
            );
            let dtype = safetensors::Dtype::try_from(t.kind()).map_err(|e| anyhow::anyhow!("tensor `{name}`: {e}"))?;
            Ok((name.as_str(), Borrowed { tensor: t, shape: t.size().iter().map(|&d| d as usize).collect(), dtype }))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::tensor::serialize_to_file(views, &None, path).with_context(|| format!("writing {}", path.display()))
}

/// A tensor's own bytes, as the safetensors writer reads them.
struct Borrowed<'a> {
    tensor: &'a Tensor,
    shape: Vec<usize>,
    dtype: safetensors::Dtype,
}

impl safetensors::tensor::View for Borrowed<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        let len = self.data_len();
        if len == 0 {
            return std::borrow::Cow::Borrowed(&[]);
        }
        // SAFETY: a contiguous CPU tensor (checked in `write`) of `len` bytes, alive for the borrow.
        std::borrow::Cow::Borrowed(unsafe { std::slice::from_raw_parts(self.tensor.data_ptr() as *const u8, len) })
    }

    fn data_len(&self) -> usize {
        self.tensor.numel() * self.tensor.kind().elt_size_in_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_tch_writes_and_refuses_a_truncated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let a = Tensor::arange(12, (Kind::Float, Device::Cpu)).reshape([3, 4]);
        let b = Tensor::from_slice(&[1i64, -2, 3]);
        let h = Tensor::from_slice(&[0.5f32, 2.0]).to_kind(Kind::BFloat16);
        Tensor::write_safetensors(&[("a", &a), ("b", &b), ("h", &h)], &path).unwrap();
        let ours = dir.path().join("ours.safetensors");
        write(
            &ours,
            &[("a".into(), a.shallow_clone()), ("b".into(), b.shallow_clone()), ("h".into(), h.shallow_clone())],
        )
        .unwrap();
        assert_eq!(std::fs::read(&ours).unwrap(), std::fs::read(&path).unwrap(), "the same bytes as tch writes");
        let read = read(&path).unwrap();
        assert!(read["a"].equal(&a) && read["b"].equal(&b) && read["h"].equal(&h));
        assert_eq!(read["h"].kind(), Kind::BFloat16);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let err = super::read(&path).unwrap_err().to_string();
        assert!(err.contains("runs past the end of the file"), "{err}");
        std::fs::write(&path, b"garbage").unwrap();
        assert!(super::read(&path).unwrap_err().to_string().contains("not a readable safetensors file"));
    }
}

//! A dataset on disk as a step output: `data.safetensors` (x, y) beside `meta.json` (shape, classes, names, source).
//! Plain writes: the engine writes step outputs into a temp dir and renames it, which gives atomicity.
//!
//! Text datasets keep their token ids as `u16` when the vocabulary fits (SmolLM2's 49,152 tokens do), else `u32`:
//! a quarter or half of i64, and what numpy and PyTorch read as `uint16`/`uint32`. They become i64 again on load.

use std::path::Path;

use tch::{Kind, Tensor};

use crate::data::{tensors::read_xy, DataError, Dataset, DatasetMeta, Result};

pub const DATA_FILE: &str = "data.safetensors";
pub const META_FILE: &str = "meta.json";

pub fn write_dataset(dir: &Path, ds: &Dataset) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    if ds.meta.vocab.is_some() {
        write_token_ids(&dir.join(DATA_FILE), ds)?;
    } else {
        // safetensors needs contiguous data; a no-op for datasets built through `Dataset::new`.
        Tensor::write_safetensors(&[("x", &ds.x.contiguous()), ("y", &ds.y.contiguous())], dir.join(DATA_FILE))?;
    }
    let meta = serde_json::to_vec_pretty(&ds.meta).expect("meta serialises");
    let p = dir.join(META_FILE);
    std::fs::write(&p, meta).map_err(|e| DataError::io(&p, e))
}

pub fn read_dataset(dir: &Path) -> Result<Dataset> {
    let mp = dir.join(META_FILE);
    let text = std::fs::read(&mp).map_err(|e| DataError::io(&mp, e))?;
    let meta: DatasetMeta = serde_json::from_slice(&text).map_err(|e| DataError::format(&mp, e.to_string()))?;
    let dp = dir.join(DATA_FILE);
    let (x, y) = if meta.vocab.is_some() { read_token_ids(&dp)? } else { read_xy(&dp)? };
    Dataset::new(x, y, meta).map_err(|e| DataError::format(dir, e.to_string()))
}

/// One token-id tensor in its compact on-disk form.
struct Ids {
    shape: Vec<usize>,
    dtype: safetensors::Dtype,
    bytes: Vec<u8>,
}

impl safetensors::tensor::View for &Ids {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn write_token_ids(path: &Path, ds: &Dataset) -> Result<()> {
    let wide = ds.meta.classes > 1 << 16;
    let compact = |t: &Tensor| -> Result<Ids> {
        let ids: Vec<i64> =
            Vec::try_from(&t.flatten(0, -1)).map_err(|e: tch::TchError| DataError::Invalid(e.to_string()))?;
        let mut bytes = Vec::with_capacity(ids.len() * if wide { 4 } else { 2 });
        for id in ids {
            // Ids lie in 0..classes (checked by `Dataset::new`), so the narrowing is exact.
            if wide {
                bytes.extend_from_slice(&(id as u32).to_le_bytes());
            } else {
                bytes.extend_from_slice(&(id as u16).to_le_bytes());
            }
        }
        let dtype = if wide { safetensors::Dtype::U32 } else { safetensors::Dtype::U16 };
        Ok(Ids { shape: t.size().iter().map(|&d| d as usize).collect(), dtype, bytes })
    };
    let (x, y) = (compact(&ds.x)?, compact(&ds.y)?);
    safetensors::tensor::serialize_to_file([("x", &x), ("y", &y)], &None, path)
        .map_err(|e| DataError::format(path, e.to_string()))
}

fn read_token_ids(path: &Path) -> Result<(Tensor, Tensor)> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| DataError::format(path, format!("not a safetensors file ({e:?})")))?;
    let widen = |name: &str| -> Result<Tensor> {
        let view = file.tensor(name).map_err(|_| DataError::format(path, format!("no tensor named {name:?}")))?;
        let data = view.data();
        let ids: Vec<i64> = match view.dtype() {
            safetensors::Dtype::U16 => {
                data.chunks_exact(2).map(|b| i64::from(u16::from_le_bytes([b[0], b[1]]))).collect()
            }
            safetensors::Dtype::U32 => {
                data.chunks_exact(4).map(|b| i64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect()
            }
            other => return Err(DataError::format(path, format!("token ids `{name}` are {other:?}, not U16 or U32"))),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        Ok(Tensor::from_slice(&ids).to_kind(Kind::Int64).view(shape.as_slice()))
    };
    Ok((widen("x")?, widen("y")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_tensors_and_meta() {
        let dir = tempfile::tempdir().unwrap();
        let x = Tensor::from_slice(&[0.5f32, 1.5, 2.5, 3.5]).view([2, 2]);
        let meta = DatasetMeta {
            sample_shape: vec![2],
            classes: 2,
            class_names: Some(vec!["a".into(), "b".into()]),
            source: "t".into(),
            vocab: None,
        };
        let ds = Dataset::new(x, Tensor::from_slice(&[1i64, 0]), meta).unwrap();
        write_dataset(&dir.path().join("out"), &ds).unwrap();
        let back = read_dataset(&dir.path().join("out")).unwrap();
        assert_eq!(back.meta, ds.meta);
        assert!(back.x.equal(&ds.x) && back.y.equal(&ds.y));
        assert!(read_dataset(dir.path()).unwrap_err().to_string().contains("meta.json"));
    }

    #[test]
    fn token_ids_are_stored_as_u16_or_u32_and_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        for (classes, dtype, width) in [(256i64, "U16", 2usize), (70_000, "U32", 4)] {
            let ids = Tensor::from_slice(&[0i64, 1, classes - 1, 7, 300 % classes, 2]).view([2, 3]);
            let meta = DatasetMeta {
                sample_shape: vec![3],
                classes,
                class_names: None,
                source: "t".into(),
                vocab: Some(crate::data::Vocab::Byte),
            };
            let ds = Dataset::new(ids.shallow_clone(), ids.flip([1]), meta).unwrap();
            let out = dir.path().join(dtype);
            write_dataset(&out, &ds).unwrap();
            let bytes = std::fs::read(out.join(DATA_FILE)).unwrap();
            let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            assert_eq!(format!("{:?}", file.tensor("x").unwrap().dtype()), dtype);
            assert_eq!(file.tensor("x").unwrap().data().len(), 6 * width);
            let back = read_dataset(&out).unwrap();
            assert!(back.x.equal(&ds.x) && back.y.equal(&ds.y) && back.x.kind() == Kind::Int64);
        }
    }
}

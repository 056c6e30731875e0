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
    if x.is_floating_point() {
        super::check::finite(&x, "x", &dp).map_err(|e| DataError::Invalid(format!("{e:#}")))?;
    }
    Dataset::new(x, y, meta).map_err(|e| DataError::format(dir, e.to_string()))
}

fn write_token_ids(path: &Path, ds: &Dataset) -> Result<()> {
    let stored =
        |t: &Tensor| super::ids::Stored::ids(t, ds.meta.classes).map_err(|e| DataError::format(path, e.to_string()));
    super::ids::write(path, &[("x", stored(&ds.x)?), ("y", stored(&ds.y)?)])
        .map_err(|e| DataError::format(path, format!("{e:#}")))
}

fn read_token_ids(path: &Path) -> Result<(Tensor, Tensor)> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| DataError::format(path, format!("not a safetensors file ({e:?})")))?;
    let read =
        |name: &str| super::ids::read(&file, name, Kind::Int64).map_err(|e| DataError::format(path, e.to_string()));
    Ok((read("x")?, read("y")?))
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

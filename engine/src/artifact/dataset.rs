//! A dataset on disk as a step output: `data.safetensors` (x, y) beside `meta.json` (shape, classes, names, source).
//! Plain writes: the engine writes step outputs into a temp dir and renames it, which gives atomicity.

use std::path::Path;

use tch::Tensor;

use crate::data::{tensors::read_xy, DataError, Dataset, DatasetMeta, Result};

pub const DATA_FILE: &str = "data.safetensors";
pub const META_FILE: &str = "meta.json";

pub fn write_dataset(dir: &Path, ds: &Dataset) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    // safetensors needs contiguous data; a no-op for datasets built through `Dataset::new`.
    Tensor::write_safetensors(&[("x", &ds.x.contiguous()), ("y", &ds.y.contiguous())], dir.join(DATA_FILE))?;
    let meta = serde_json::to_vec_pretty(&ds.meta).expect("meta serialises");
    let p = dir.join(META_FILE);
    std::fs::write(&p, meta).map_err(|e| DataError::io(&p, e))
}

pub fn read_dataset(dir: &Path) -> Result<Dataset> {
    let mp = dir.join(META_FILE);
    let text = std::fs::read(&mp).map_err(|e| DataError::io(&mp, e))?;
    let meta: DatasetMeta = serde_json::from_slice(&text).map_err(|e| DataError::format(&mp, e.to_string()))?;
    let dp = dir.join(DATA_FILE);
    let (x, y) = read_xy(&dp)?;
    Dataset::new(x, y, meta).map_err(|e| DataError::format(dir, e.to_string()))
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
}

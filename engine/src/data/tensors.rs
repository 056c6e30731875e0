//! A dataset prepared elsewhere (e.g. in Python) as a safetensors file with tensors `x` `[N, ...]` and `y` `[N]`.

use std::path::Path;

use tch::Tensor;

use super::{DataError, Dataset, DatasetMeta, Result};

/// Loads `x` (any float dtype, converted to f32) and `y` (any integer dtype, converted to i64). Classes = max label + 1.
pub fn load(path: &Path) -> Result<Dataset> {
    let (x, y) = read_xy(path)?;
    if !x.is_floating_point() {
        return Err(DataError::format(path, format!("x must have a float dtype, found {:?}", x.kind())));
    }
    let classes = if y.numel() == 0 { 0 } else { y.max().int64_value(&[]) + 1 };
    let meta = DatasetMeta {
        sample_shape: x.size()[1..].to_vec(),
        classes,
        class_names: None,
        source: format!("safetensors:{}", path.display()),
        vocab: None,
    };
    Dataset::new(x, y, meta).map_err(|e| DataError::format(path, e.to_string()))
}

/// The `x` and `y` tensors of a safetensors file, with dtype and shape checks that name the file (`x` may hold
/// integer token ids: text datasets store them so).
pub(crate) fn read_xy(path: &Path) -> Result<(Tensor, Tensor)> {
    if !path.is_file() {
        return Err(DataError::format(path, "no such file"));
    }
    let mut named = Tensor::read_safetensors(path)?;
    let mut take = |name: &str| {
        let i = named.iter().position(|(n, _)| n == name);
        i.map(|i| named.swap_remove(i).1)
            .ok_or_else(|| DataError::format(path, format!("no tensor named {name:?} (need x [N, ...] and y [N])")))
    };
    let (x, y) = (take("x")?, take("y")?);
    if y.is_floating_point() || y.kind() == tch::Kind::Bool {
        return Err(DataError::format(path, format!("y must have an integer dtype, found {:?}", y.kind())));
    }
    let (xs, ys) = (x.size(), y.size());
    if xs.is_empty() || ys.is_empty() || xs[0] != ys[0] {
        return Err(DataError::format(path, format!("x {xs:?} and y {ys:?} do not match (need [N, ...] and [N])")));
    }
    Ok((x, y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn loads_and_converts_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.safetensors");
        let x = Tensor::arange(12, (Kind::Half, tch::Device::Cpu)).view([3, 2, 2]);
        let y = Tensor::from_slice(&[2u8, 0, 1]);
        Tensor::write_safetensors(&[("x", &x), ("y", &y)], &p).unwrap();
        let ds = load(&p).unwrap();
        assert_eq!(
            (ds.x.kind(), ds.y.kind(), ds.meta.sample_shape.clone(), ds.meta.classes),
            (Kind::Float, Kind::Int64, vec![2, 2], 3)
        );
        assert_eq!(ds.x.double_value(&[2, 1, 1]), 11.0);

        Tensor::write_safetensors(&[("x", &x), ("y", &Tensor::from_slice(&[1i64, 0]))], &p).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(msg.contains("d.safetensors") && msg.contains("do not match"), "{msg}");
        Tensor::write_safetensors(&[("x", &x)], &p).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("no tensor named \"y\""));
        Tensor::write_safetensors(&[("x", &x), ("y", &x.select(1, 0).select(1, 0).contiguous())], &p).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("integer dtype"));
    }
}

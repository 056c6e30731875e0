//! A dataset prepared elsewhere (e.g. in Python) as a safetensors file with tensors `x` `[N, ...]` and `y` `[N]`.

use std::path::Path;

use tch::Tensor;

use super::{DataError, Dataset, DatasetMeta, DeclaredClasses, Result};

/// Loads `x` (any float dtype, converted to f32; every value finite) and `y` (any integer dtype, converted to i64;
/// class indices, checked as [`super::classes::of_indices`] says).
pub fn load(path: &Path, declared: Option<&DeclaredClasses>) -> Result<Dataset> {
    let (x, y) = read_xy(path)?;
    if !x.is_floating_point() {
        return Err(DataError::format(path, format!("x must have a float dtype, found {:?}", x.kind())));
    }
    if let Some((first, value)) = first_non_finite(&x) {
        let per_sample = (x.numel() / x.size()[0] as usize).max(1) as i64;
        return Err(DataError::format(
            path,
            format!(
                "x holds {value} (sample {}, element {}): values must be finite",
                first / per_sample,
                first % per_sample
            ),
        ));
    }
    let ids = Vec::<i64>::try_from(y.to_kind(tch::Kind::Int64).flatten(0, -1))?;
    let place = |i: usize| format!("{}: y[{i}]", path.display());
    let classes = super::classes::of_indices(&ids, declared, place, &path.display().to_string())?;
    let meta = DatasetMeta {
        sample_shape: x.size()[1..].to_vec(),
        classes,
        class_names: declared.and_then(|d| d.names()).map(<[String]>::to_vec),
        source: format!("safetensors:{}", path.display()),
        vocab: None,
    };
    Dataset::new(x, y, meta).map_err(|e| DataError::format(path, e.to_string()))
}

/// The flat index and value of the first NaN or infinite element of `t`, if any (one pass when there is none).
pub fn first_non_finite(t: &Tensor) -> Option<(i64, f64)> {
    let finite = t.isfinite();
    if finite.all().to_kind(tch::Kind::Int64).int64_value(&[]) != 0 {
        return None;
    }
    let at = finite.flatten(0, -1).logical_not().nonzero().int64_value(&[0, 0]);
    Some((at, t.flatten(0, -1).double_value(&[at])))
}

/// The `x` and `y` tensors of a safetensors file, with dtype and shape checks that name the file (`x` may hold
/// integer token ids: text datasets store them so).
pub(crate) fn read_xy(path: &Path) -> Result<(Tensor, Tensor)> {
    // The weight reader's checks name the file and what is wrong with it (not the parser's `HeaderTooLarge`).
    let mut named: Vec<(String, Tensor)> = crate::nn::weights::safetensors::read(path)
        .map_err(|e| DataError::Invalid(format!("{e:#}")))?
        .into_iter()
        .collect();
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
        let ds = load(&p, None).unwrap();
        assert_eq!(
            (ds.x.kind(), ds.y.kind(), ds.meta.sample_shape.clone(), ds.meta.classes),
            (Kind::Float, Kind::Int64, vec![2, 2], 3)
        );
        assert_eq!(ds.x.double_value(&[2, 1, 1]), 11.0);

        Tensor::write_safetensors(&[("x", &x), ("y", &Tensor::from_slice(&[1i64, 0]))], &p).unwrap();
        let msg = load(&p, None).unwrap_err().to_string();
        assert!(msg.contains("d.safetensors") && msg.contains("do not match"), "{msg}");
        Tensor::write_safetensors(&[("x", &x)], &p).unwrap();
        assert!(load(&p, None).unwrap_err().to_string().contains("no tensor named \"y\""));
        Tensor::write_safetensors(&[("x", &x), ("y", &x.select(1, 0).select(1, 0).contiguous())], &p).unwrap();
        assert!(load(&p, None).unwrap_err().to_string().contains("integer dtype"));
    }
}

//! Per-feature normalisation fitted on training data only, then applied unchanged to validation/test data and at
//! inference. The stats are plain numbers (serde) so a step can save them beside its dataset artifact.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::{DataError, Dataset, Result};

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    #[default]
    None,
    /// `(x - mean) / std` per feature (population std).
    Standardize,
    /// `(x - min) / (max - min)` per feature, into [0, 1] on the training data.
    MinMax,
}

/// `x ↦ (x - shift) / scale`, elementwise over one sample's shape.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NormStats {
    pub method: Normalization,
    pub sample_shape: Vec<i64>,
    pub shift: Vec<f32>,
    pub scale: Vec<f32>,
}

/// Below this a feature is treated as constant and only shifted: dividing by ~0 would blow up, e.g. MNIST's always-
/// black border pixels.
const MIN_SCALE: f64 = 1e-6;

/// Fits stats on `train` (per feature: every element of the sample shape).
pub fn fit(train: &Dataset, method: Normalization) -> Result<NormStats> {
    let shape = train.meta.sample_shape.clone();
    let feats: i64 = shape.iter().product();
    if method != Normalization::None && train.is_empty() {
        return Err(DataError::Invalid("cannot fit normalisation on an empty dataset".into()));
    }
    // f64 accumulation: sums over 60k samples in f32 lose digits.
    let x = train.x.view([-1, feats]).to_kind(Kind::Double);
    let (shift, scale) = match method {
        Normalization::None => (
            Tensor::zeros([feats], (Kind::Double, tch::Device::Cpu)),
            Tensor::ones([feats], (Kind::Double, tch::Device::Cpu)),
        ),
        Normalization::Standardize => (x.mean_dim(0, false, Kind::Double), x.std_dim(0, false, false)),
        Normalization::MinMax => {
            let lo = x.amin(0, false);
            let range = x.amax(0, false) - &lo;
            (lo, range)
        }
    };
    let scale = scale.where_self(&scale.ge(MIN_SCALE), &scale.ones_like());
    Ok(NormStats {
        method,
        sample_shape: shape,
        shift: Vec::<f32>::try_from(&shift.to_kind(Kind::Float))?,
        scale: Vec::<f32>::try_from(&scale.to_kind(Kind::Float))?,
    })
}

impl NormStats {
    /// Normalises a batch `[B, ..sample_shape]` (any device; the result keeps `x`'s device).
    pub fn apply_tensor(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        if size.len() != self.sample_shape.len() + 1 || size[1..] != self.sample_shape[..] {
            return Err(DataError::Invalid(format!(
                "normalisation fitted for samples {:?}, got a batch {size:?}",
                self.sample_shape
            )));
        }
        if self.method == Normalization::None {
            return Ok(x.shallow_clone());
        }
        let shape: Vec<i64> = std::iter::once(1).chain(self.sample_shape.iter().copied()).collect();
        let shift = Tensor::from_slice(&self.shift).view(&shape[..]).to_device(x.device());
        let scale = Tensor::from_slice(&self.scale).view(&shape[..]).to_device(x.device());
        Ok((x - shift) / scale)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).expect("stats serialise");
        std::fs::write(path, text).map_err(|e| DataError::io(path, e))
    }

    pub fn load(path: &Path) -> Result<NormStats> {
        let text = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        serde_json::from_slice(&text).map_err(|e| DataError::format(path, e.to_string()))
    }
}

/// Normalises a whole dataset in place.
pub fn apply(ds: &mut Dataset, stats: &NormStats) -> Result<()> {
    ds.x = stats.apply_tensor(&ds.x)?.contiguous();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::digits;

    #[test]
    fn standardized_train_has_zero_mean_unit_std() {
        let mut ds = digits::load();
        let stats = fit(&ds, Normalization::Standardize).unwrap();
        apply(&mut ds, &stats).unwrap();
        let x = ds.x.view([ds.len() as i64, -1]).to_kind(Kind::Double);
        let mean = x.mean_dim(0, false, Kind::Double);
        let std = x.std_dim(0, false, false);
        assert!(mean.abs().max().double_value(&[]) < 1e-5);
        // Constant features (digits has a few always-zero pixels) stay 0 rather than becoming NaN.
        let std = Vec::<f64>::try_from(&std).unwrap();
        assert!(std.iter().all(|s| (s - 1.0).abs() < 1e-4 || *s == 0.0), "{std:?}");
        assert!(std.iter().filter(|s| (*s - 1.0).abs() < 1e-4).count() > 55);
    }

    #[test]
    fn min_max_and_json_round_trip() {
        let mut ds = digits::load();
        let stats = fit(&ds, Normalization::MinMax).unwrap();
        let dir = tempfile::tempdir().unwrap();
        stats.save(&dir.path().join("norm.json")).unwrap();
        assert_eq!(NormStats::load(&dir.path().join("norm.json")).unwrap(), stats);
        apply(&mut ds, &stats).unwrap();
        assert!(ds.x.min().double_value(&[]) >= 0.0 && ds.x.max().double_value(&[]) <= 1.0 + 1e-6);
        let wrong = Tensor::zeros([2, 64], (Kind::Float, tch::Device::Cpu));
        assert!(stats.apply_tensor(&wrong).is_err());
        let none: Normalization = serde_json::from_str("\"min_max\"").unwrap();
        assert_eq!(none, Normalization::MinMax);
    }
}

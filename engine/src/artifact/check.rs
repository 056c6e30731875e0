//! Checks of stored tensors when they are read. The store's digests catch a changed byte only when someone runs
//! `anbiq verify`; a damaged or hand-edited artifact read as is gives "loss is NaN" (blaming the learning rate) or an
//! index error deep in libtorch. These are one pass over each tensor, small beside what reads them.

use std::path::Path;

use anyhow::bail;
use tch::{Kind, Tensor};

use crate::data::tensors::first_non_finite;

const HINT: &str =
    "the artifact is damaged (`anbiq verify` lists changed artifacts; `anbiq run --force STEP` remakes it)";

/// Every value of `t` is finite.
pub fn finite(t: &Tensor, what: &str, file: &Path) -> anyhow::Result<()> {
    if let Some((at, value)) = first_non_finite(t) {
        bail!("{}: `{what}` holds {value} at element {at} of {:?}: {HINT}", file.display(), t.size());
    }
    Ok(())
}

/// Every value a step is about to store is finite: else the model produced NaN/inf, or (f16) a value beyond ±65504.
pub fn finite_to_store(t: &Tensor, what: &str) -> anyhow::Result<()> {
    if let Some((at, value)) = first_non_finite(t) {
        bail!(
            "the teacher's {what} hold {value} (element {at}) as stored in {:?}: the model outputs NaN or inf, or, in \
             f16, a value beyond ±65504 (`store: {{dtype: f32}}` keeps large ones)",
            t.kind()
        );
    }
    Ok(())
}

/// Every id in `t` lies in `0..classes`.
pub fn ids_below(t: &Tensor, classes: i64, what: &str, file: &Path) -> anyhow::Result<()> {
    if t.numel() == 0 {
        return Ok(());
    }
    let t = t.to_kind(Kind::Int64);
    let (lo, hi) = (t.min().int64_value(&[]), t.max().int64_value(&[]));
    if lo < 0 || hi >= classes {
        let id = if lo < 0 { lo } else { hi };
        bail!("{}: `{what}` holds class id {id}, outside 0..{classes}: {HINT}", file.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_and_ids_out_of_range_are_found() {
        let p = Path::new("s/logits.safetensors");
        assert!(finite(&Tensor::from_slice(&[1.0f32, -2.0]), "logits", p).is_ok());
        let e = finite(&Tensor::from_slice(&[1.0f32, f32::NAN, 3.0]), "logits", p).unwrap_err().to_string();
        assert!(e.starts_with("s/logits.safetensors: `logits` holds NaN at element 1 of [3]"), "{e}");
        assert!(ids_below(&Tensor::from_slice(&[0i16, 9]), 10, "indices", p).is_ok());
        let e = ids_below(&Tensor::from_slice(&[0i16, 32000]), 10, "indices", p).unwrap_err().to_string();
        assert!(e.contains("class id 32000, outside 0..10"), "{e}");
    }
}

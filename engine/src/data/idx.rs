//! The IDX format of the MNIST files: magic `00 00 <type> <ndim>`, `ndim` big-endian u32 dimensions, then the data.
//! Only type 0x08 (unsigned byte) is supported; it is what every IDX image/label set we use contains.

use std::path::Path;

use super::error::read_uncompressed;
use super::{DataError, Result};

/// A u8 IDX array: row-major `data` with shape `dims`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an uncompressed IDX file.
pub fn read(path: &Path) -> Result<IdxArray> {
    parse(&read_uncompressed(path)?, path)
}

/// Parses IDX bytes; `path` only names the source in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    let err = |msg: String| DataError::format(path, msg);
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(err(format!(
            "not an IDX file (magic {:02x?}, expected 00 00 <type> <ndim>)",
            &bytes[..bytes.len().min(4)]
        )));
    }
    if bytes[2] != 0x08 {
        return Err(err(format!("IDX element type 0x{:02x} is not supported (only 0x08, unsigned byte)", bytes[2])));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(err(format!("truncated IDX header: expected {header} bytes, found {}", bytes.len())));
    }
    let dims: Vec<usize> =
        bytes[4..header].chunks_exact(4).map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")) as usize).collect();
    // Checked: a corrupt header could claim dims whose product overflows.
    let total = (dims.iter())
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_add(header))
        .ok_or_else(|| err(format!("IDX dims {dims:?} are too large")))?;
    if bytes.len() < total {
        return Err(err(format!(
            "truncated IDX data for dims {dims:?}: expected {total} bytes, found {}",
            bytes.len()
        )));
    }
    if bytes.len() > total {
        return Err(err(format!(
            "{} trailing bytes after the IDX data for dims {dims:?} (expected {total} bytes, found {})",
            bytes.len() - total,
            bytes.len()
        )));
    }
    Ok(IdxArray { dims, data: bytes[header..].to_vec() })
}

/// Writes a u8 IDX file (used by tests and for exporting small sets in the MNIST layout).
pub fn write(path: &Path, dims: &[usize], data: &[u8]) -> Result<()> {
    if dims.iter().product::<usize>() != data.len() || dims.len() > 255 {
        return Err(DataError::Invalid(format!("IDX dims {dims:?} do not match {} data bytes", data.len())));
    }
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| DataError::Invalid(format!("IDX dim {d} exceeds u32")))?;
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    std::fs::write(path, out).map_err(|e| DataError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("small-idx3-ubyte");
        let data: Vec<u8> = (0..24).collect();
        write(&p, &[2, 3, 4], &data).unwrap();
        let a = read(&p).unwrap();
        assert_eq!(a, IdxArray { dims: vec![2, 3, 4], data });
    }

    #[test]
    fn truncated_and_trailing_name_file_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut-idx1-ubyte");
        let mut bytes = vec![0, 0, 8, 1, 0, 0, 0, 10];
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&p, &bytes).unwrap();
        let msg = read(&p).unwrap_err().to_string();
        assert!(msg.contains("cut-idx1-ubyte") && msg.contains("expected 18 bytes, found 11"), "{msg}");
        bytes.extend_from_slice(&[0; 9]);
        std::fs::write(&p, &bytes).unwrap();
        let msg = read(&p).unwrap_err().to_string();
        assert!(msg.contains("2 trailing bytes"), "{msg}");
    }

    #[test]
    fn wrong_magic_type_and_gzip() {
        let p = Path::new("x.idx");
        let msg = parse(&[1, 2, 8, 1, 0, 0, 0, 0], p).unwrap_err().to_string();
        assert!(msg.contains("x.idx") && msg.contains("not an IDX file"), "{msg}");
        let msg = parse(&[0, 0, 0x0d, 1, 0, 0, 0, 0], p).unwrap_err().to_string();
        assert!(msg.contains("0x0d is not supported"), "{msg}");
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("train-labels-idx1-ubyte.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
        let msg = read(&gz).unwrap_err().to_string();
        assert!(msg.contains("gzip") && msg.contains("train-labels-idx1-ubyte.gz"), "{msg}");
    }
}

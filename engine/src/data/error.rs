use std::path::Path;

/// Errors from loading or transforming data. Messages always name the file (and line, for text formats).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// The file exists but its contents are not what the loader expects.
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
    /// Bad arguments or inconsistent tensors (not tied to one file).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io { path: path.display().to_string(), source }
    }

    pub(crate) fn format(path: &Path, msg: impl Into<String>) -> Self {
        DataError::Format { path: path.display().to_string(), msg: msg.into() }
    }
}

/// Reads a whole file, refusing gzip up front: we carry no decompressor, and a gzip stream would otherwise surface as a
/// confusing "wrong magic" or "not a number" error.
pub(crate) fn read_uncompressed(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(DataError::format(
            path,
            "is gzip-compressed; anbiq reads uncompressed files only (run `gunzip` on it first)",
        ));
    }
    Ok(bytes)
}

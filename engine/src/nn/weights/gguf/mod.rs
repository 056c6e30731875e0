//! GGUF files (llama.cpp, Ollama): a small reader of our own — header, metadata, tensor directory — over a memory
//! map, and dequantisation of every common ggml type ([`quants`]).
//!
//! Format (GGUF v2/v3, little-endian): magic `GGUF`, version u32, tensor count u64, metadata count u64; metadata as
//! (string key, u32 type, value); per tensor its name, dimension count u32, dimensions u64 (innermost first), ggml
//! type u32 and data offset u64; then the tensor data, starting at the next multiple of `general.alignment` (32).
//! Every read is bounds-checked: a truncated or corrupt file is an error naming the file and the byte offset.

pub mod llama;
pub mod quants;
pub mod tokenizer;
pub mod write;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

pub use quants::GgmlType;

/// What is wrong with a GGUF file, and where.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct GgufError {
    pub file: PathBuf,
    pub message: String,
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// An integer value of any width, if it is one (and fits).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// Like [`as_f64`](Self::as_f64), but an f32 becomes the f64 of its shortest decimal form (`1e-6`, not
    /// `9.999999974752427e-7`): what a config file written by hand says, and the same f32 when read back.
    pub fn as_decimal(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => v.to_string().parse().ok(),
            _ => self.as_f64(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(items) => Some(items),
            _ => None,
        }
    }
}

impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::String(s) => write!(f, "{s:?}"),
            MetaValue::Array(items) => write!(f, "[{} items]", items.len()),
            MetaValue::Bool(b) => write!(f, "{b}"),
            MetaValue::F32(v) => write!(f, "{v}"),
            MetaValue::F64(v) => write!(f, "{v}"),
            other => write!(f, "{}", other.as_u64().map(|v| v.to_string()).unwrap_or_else(|| format!("{other:?}"))),
        }
    }
}

/// One tensor of the directory.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// As stored: innermost dimension first (`[576, 192]` for a PyTorch `[192, 576]` weight).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Where its data starts in the file.
    pub start: usize,
    pub bytes: usize,
}

impl TensorInfo {
    /// The shape as PyTorch writes it (outermost first).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    pub fn elements(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }
}

/// An open GGUF file.
pub struct Gguf {
    path: PathBuf,
    map: memmap2::Mmap,
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    /// In file order.
    pub tensors: Vec<TensorInfo>,
}

impl fmt::Debug for Gguf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gguf").field("path", &self.path).field("tensors", &self.tensors.len()).finish()
    }
}

const MAGIC: &[u8; 4] = b"GGUF";

impl Gguf {
    /// Opens and checks a file: the header, every metadata entry, and that each tensor's data lies inside the file.
    pub fn open(path: &Path) -> Result<Gguf, GgufError> {
        let err = |message: String| GgufError { file: path.to_path_buf(), message };
        let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        // SAFETY: the map is read-only; anbiq never writes model files, and the bytes are validated before use.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| err(format!("cannot map: {e}")))?;
        let mut r = Reader { bytes: &map, at: 0 };
        let magic = r.take(4).map_err(&err)?;
        if magic != MAGIC {
            return Err(err(format!(
                "not a GGUF file (magic {:?}, expected \"GGUF\")",
                String::from_utf8_lossy(magic)
            )));
        }
        let version = r.u32().map_err(&err)?;
        if !(2..=3).contains(&version) {
            return Err(err(format!("GGUF version {version} is not supported (2 and 3 are)")));
        }
        let tensor_count = r.u64().map_err(&err)?;
        let kv_count = r.u64().map_err(&err)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = r.string().map_err(&err)?;
            let ty = r.u32().map_err(&err)?;
            let value = r.value(ty, 0).map_err(|m| err(format!("metadata `{key}`: {m}")))?;
            metadata.insert(key, value);
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a as usize,
                _ => return Err(err(format!("metadata `general.alignment`: {v} is not a power of two"))),
            },
        };
        let mut raw = Vec::new();
        for _ in 0..tensor_count {
            let name = r.string().map_err(&err)?;
            let n_dims = r.u32().map_err(&err)?;
            if n_dims > 4 {
                return Err(err(format!("tensor `{name}`: {n_dims} dimensions (ggml has at most 4)")));
            }
            let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>, _>>().map_err(&err)?;
            let ty = r.u32().map_err(&err)?;
            let offset = r.u64().map_err(&err)?;
            raw.push((name, dims, ty, offset));
        }
        let data_start = r.at.div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, ty, offset) in raw {
            let ty = GgmlType::from_id(ty).map_err(|m| err(format!("tensor `{name}`: {m}")))?;
            let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            let bytes = elements.and_then(|n| ty.bytes_for(n)).ok_or_else(|| {
                err(format!("tensor `{name}`: dimensions {dims:?} do not fill whole {} blocks", ty.name()))
            })?;
            let start = (data_start as u64).checked_add(offset);
            let end = start.and_then(|s| s.checked_add(bytes));
            match (start, end) {
                (Some(start), Some(end)) if end <= map.len() as u64 => {
                    tensors.push(TensorInfo { name, dims, ty, start: start as usize, bytes: bytes as usize })
                }
                _ => {
                    return Err(err(format!(
                        "tensor `{name}`: its data ({bytes} bytes at offset {offset}) runs past the end of the file \
                         ({} bytes): truncated?",
                        map.len()
                    )))
                }
            }
        }
        Ok(Gguf { path: path.to_path_buf(), map, version, metadata, tensors })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor (blocks of its type).
    pub fn data(&self, info: &TensorInfo) -> &[u8] {
        &self.map[info.start..info.start + info.bytes]
    }

    /// A tensor's values as f32, in storage order (row-major for [`TensorInfo::shape`]).
    pub fn dequantize(&self, info: &TensorInfo) -> Vec<f32> {
        let mut out = vec![0f32; info.elements()];
        quants::dequantize(info.ty, self.data(info), &mut out);
        self.release(info);
        out
    }

    /// A tensor dequantised straight into a new f32 tensor's memory (flat; no intermediate buffer).
    pub fn dequantize_tensor(&self, info: &TensorInfo) -> tch::Tensor {
        let tensor = tch::Tensor::zeros([info.elements() as i64], (tch::Kind::Float, tch::Device::Cpu));
        if info.elements() > 0 {
            // SAFETY: a fresh, zeroed, contiguous CPU f32 tensor of exactly `elements` values, written only here.
            let out = unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr() as *mut f32, info.elements()) };
            quants::dequantize(info.ty, self.data(info), out);
            self.release(info);
        }
        tensor
    }

    /// A tensor dequantised into a new tensor of `kind` (flat), a slice of blocks at a time: converting to bf16 never
    /// holds the whole tensor in f32 (SmolLM2's embedding alone is 113 MB of f32).
    pub fn dequantize_tensor_as(&self, info: &TensorInfo, kind: tch::Kind) -> tch::Tensor {
        if kind == tch::Kind::Float {
            return self.dequantize_tensor(info);
        }
        const CHUNK_BLOCKS: usize = 1 << 14;
        let tensor = tch::Tensor::zeros([info.elements() as i64], (kind, tch::Device::Cpu));
        let (per_block, block_bytes) = (info.ty.block_size(), info.ty.block_bytes());
        let data = self.data(info);
        let mut buffer = vec![0f32; CHUNK_BLOCKS * per_block];
        let mut start = 0usize;
        for bytes in data.chunks(CHUNK_BLOCKS * block_bytes) {
            let n = bytes.len() / block_bytes * per_block;
            quants::dequantize(info.ty, bytes, &mut buffer[..n]);
            tensor.narrow(0, start as i64, n as i64).copy_(&tch::Tensor::from_slice(&buffer[..n]));
            start += n;
        }
        self.release(info);
        tensor
    }

    /// Lets the kernel drop a tensor's mapped pages once it is dequantised, so that the file does not stay resident
    /// beside the weights made from it.
    fn release(&self, info: &TensorInfo) {
        // SAFETY: the map is a read-only, shared mapping of a file: after MADV_DONTNEED a later read refaults the
        // same bytes from the file, so no reader can observe a change.
        let _ = unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, info.start, info.bytes) };
    }

    /// A metadata value, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&MetaValue, GgufError> {
        self.metadata.get(key).ok_or_else(|| self.error(format!("metadata `{key}` is missing")))
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        let v = self.require("general.architecture")?;
        v.as_str().ok_or_else(|| self.error(format!("metadata `general.architecture` is {v}, not a string")))
    }

    pub fn error(&self, message: String) -> GgufError {
        GgufError { file: self.path.clone(), message }
    }
}

/// A bounds-checked little-endian cursor; errors say what was being read and at which byte.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Deeper array nesting than any real file uses is corruption, not data.
const MAX_NESTING: usize = 4;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        match self.at.checked_add(n) {
            Some(end) if end <= self.bytes.len() => {
                let out = &self.bytes[self.at..end];
                self.at = end;
                Ok(out)
            }
            _ => {
                Err(format!("truncated: {n} more bytes needed at byte {}, the file has {}", self.at, self.bytes.len()))
            }
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, String> {
        let at = self.at;
        let len = self.u64()?;
        let len = usize::try_from(len).map_err(|_| format!("string length {len} at byte {at}"))?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("the string at byte {at} is not UTF-8"))
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<MetaValue, String> {
        Ok(match ty {
            0 => MetaValue::U8(self.array::<1>()?[0]),
            1 => MetaValue::I8(self.array::<1>()?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array()?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array()?)),
            4 => MetaValue::U32(self.u32()?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array()?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(format!("bool byte {b} at byte {}", self.at - 1)),
            },
            8 => MetaValue::String(self.string()?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err(format!("arrays nested deeper than {MAX_NESTING} at byte {}", self.at));
                }
                let item = self.u32()?;
                let at = self.at;
                let count = self.u64()?;
                // Every item takes at least one byte: a count beyond what is left is corruption, not a huge file.
                if count > (self.bytes.len() - self.at) as u64 {
                    return Err(format!("array of {count} items at byte {at} is longer than the file"));
                }
                let items = (0..count).map(|_| self.value(item, depth + 1)).collect::<Result<_, _>>()?;
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64()?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array()?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(format!("unknown value type {other} at byte {}", self.at - 4)),
        })
    }
}

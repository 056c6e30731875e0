//! Weight I/O with the ecosystem's formats: GGUF files in ([`gguf`]), safetensors out ([`convert`]).

pub mod convert;
pub mod gguf;

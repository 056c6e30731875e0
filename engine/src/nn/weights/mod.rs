//! Weight I/O with the ecosystem's formats: GGUF files ([`gguf`]) and Hugging Face directories ([`hf`]) in,
//! safetensors out ([`convert`]).

pub mod convert;
pub mod gguf;
pub mod hf;

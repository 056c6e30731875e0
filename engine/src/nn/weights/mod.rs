//! Weight I/O with the ecosystem's formats: GGUF files ([`gguf`]) and Hugging Face directories ([`hf`]) in,
//! safetensors and Hugging Face directories out ([`convert`], [`export`]).

pub mod convert;
pub mod export;
pub mod gguf;
pub mod hf;
pub mod safetensors;
pub mod source;

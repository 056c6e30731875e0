//! `anbiq convert FILE.gguf OUT_DIR`: a GGUF file's tensors, dequantised, as safetensors (see `nn::weights::convert`).

use super::args::ConvertArgs;
use super::{CliError, EXIT_OK};
use crate::nn::weights::convert::gguf_to_safetensors;

pub fn convert(args: ConvertArgs) -> Result<i32, CliError> {
    let done = gguf_to_safetensors(&args.file, &args.out_dir)?;
    let names = if done.hf_names { "Hugging Face names" } else { "llama.cpp's names (no Hugging Face mapping for it)" };
    println!("{} tensors of a `{}` model, dequantised to f32, under {names}:", done.tensors, done.architecture);
    for file in &done.files {
        println!("  {}", file.display());
    }
    Ok(EXIT_OK)
}

//! The GGUF reader against the `gguf` Python package (llama.cpp's own; fixtures from scripts/reference/run.sh):
//! every supported type dequantises bit-identically, the real SmolLM2-135M file reads whole, `anbiq convert` gives
//! Hugging Face's tensors, and broken files are one-line errors naming the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anbiq::nn::weights::convert::gguf_to_safetensors;
use anbiq::nn::weights::gguf::{GgmlType, Gguf, MetaValue};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/gguf").join(name)
}

fn f32s(path: &Path) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn every_supported_type_dequantises_bit_identically_to_the_gguf_package() {
    let gguf = Gguf::open(&fixture("types.gguf")).unwrap();
    let mut seen = Vec::new();
    for info in gguf.tensors.iter().filter(|t| t.name.starts_with("types.")) {
        let expected = f32s(&fixture(&format!("types/{}.f32", info.ty.name())));
        let got = gguf.dequantize(info);
        assert_eq!(got.len(), expected.len(), "{}", info.name);
        assert!(bits(&got) == bits(&expected), "{}: not bit-identical to gguf.quants.dequantize", info.name);
        seen.push(info.ty);
    }
    use GgmlType::*;
    assert_eq!(seen, [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K]);
    // Straight to bf16, a slice of blocks at a time: the same values as rounding the f32 result.
    for info in gguf.tensors.iter().filter(|t| t.name.starts_with("types.")) {
        let direct = gguf.dequantize_tensor_as(info, tch::Kind::BFloat16);
        assert!(direct.equal(&gguf.dequantize_tensor(info).to_kind(tch::Kind::BFloat16)), "{}", info.name);
    }
}

fn smollm2() -> PathBuf {
    let path = repo().join("data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "{} is missing: scripts/fetch-data.sh smollm2 fetches it", path.display());
    path
}

#[test]
fn smollm2_reads_whole_and_every_tensor_equals_the_reference_dequantisation() {
    let gguf = Gguf::open(&smollm2()).unwrap();
    assert_eq!(gguf.version, 3);
    assert_eq!(gguf.architecture().unwrap(), "llama");
    let int = |k: &str| gguf.metadata[k].as_u64().unwrap();
    assert_eq!(
        [int("llama.block_count"), int("llama.embedding_length"), int("llama.attention.head_count")],
        [30, 576, 9]
    );
    assert_eq!(int("llama.attention.head_count_kv"), 3);
    assert_eq!(gguf.metadata["tokenizer.ggml.model"], MetaValue::String("gpt2".into()));
    assert_eq!(gguf.metadata["tokenizer.ggml.tokens"].as_array().unwrap().len(), 49152);
    let mut types: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &gguf.tensors {
        *types.entry(t.ty.name()).or_default() += 1;
    }
    assert_eq!(types, BTreeMap::from([("F32", 61), ("Q4_1", 210), ("Q8_0", 1)]));
    assert_eq!(gguf.tensor("blk.0.attn_k.weight").unwrap().shape(), [192, 576]);

    let reference: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(fixture("smollm2.json")).unwrap()).unwrap();
    assert_eq!(reference.len(), gguf.tensors.len());
    for info in &gguf.tensors {
        let values = gguf.dequantize(info);
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), reference[&info.name], "{}", info.name);
    }
}

#[test]
fn convert_writes_hugging_face_tensors_and_config() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("hf");
    let done = gguf_to_safetensors(&fixture("llama.gguf"), &dir).unwrap();
    assert!(done.hf_names && done.architecture == "llama");
    let tensors: BTreeMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(dir.join("model.safetensors")).unwrap().into_iter().collect();
    // The llama.cpp permutation of Q and K is undone: every weight is the one `transformers` holds, bit for bit.
    let originals = std::fs::read_dir(fixture("llama")).unwrap();
    let mut checked = 0;
    for entry in originals {
        let path = entry.unwrap().path();
        let key = path.file_stem().unwrap().to_str().unwrap().to_string();
        let got = &tensors[&key];
        assert_eq!(got.kind(), tch::Kind::Float, "{key}");
        let got: Vec<f32> = got.flatten(0, -1).try_into().unwrap();
        assert!(bits(&got) == bits(&f32s(&path)), "{key}");
        checked += 1;
    }
    assert_eq!(checked, 11);
    assert_eq!(tensors["model.layers.0.self_attn.k_proj.weight"].size(), [16, 32]);
    assert_eq!(tensors.len(), 11);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "llama");
    assert_eq!(config["num_attention_heads"], 4);
    assert_eq!(config["num_key_value_heads"], 2);
    assert_eq!(config["head_dim"], 8);
    assert_eq!(config["rope_parameters"]["rope_theta"], 50000.0);
    assert_eq!(config["rms_norm_eps"], 1e-6);
    assert_eq!(config["tie_word_embeddings"], true);
    // A second conversion into the same directory refuses rather than mixing files.
    let again = gguf_to_safetensors(&fixture("llama.gguf"), &dir).unwrap_err().to_string();
    assert!(again.contains("is not empty"), "{again}");
    // An architecture without a Hugging Face mapping keeps llama.cpp's names and shapes.
    let generic = out.path().join("generic");
    let done = gguf_to_safetensors(&fixture("types.gguf"), &generic).unwrap();
    assert!(!done.hf_names && done.architecture == "test" && done.files.len() == 1);
    let tensors = tch::Tensor::read_safetensors(generic.join("model.safetensors")).unwrap();
    assert_eq!(tensors.len(), 11);
    let q6 = &tensors.iter().find(|(n, _)| n == "types.Q6_K").unwrap().1;
    let q6: Vec<f32> = q6.flatten(0, -1).try_into().unwrap();
    assert!(bits(&q6) == bits(&f32s(&fixture("types/Q6_K.f32"))));
}

/// A broken copy of the fixture: `edit` changes its bytes.
fn broken(edit: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.gguf");
    let mut bytes = std::fs::read(fixture("types.gguf")).unwrap();
    edit(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn open_error(path: &Path) -> String {
    let message = Gguf::open(path).unwrap_err().to_string();
    assert!(message.starts_with(&format!("{}: ", path.display())), "names the file: {message}");
    assert!(!message.contains('\n'), "one line: {message}");
    message
}

/// Byte offset of the ggml type field of the tensor named `name` in the tensor directory.
fn type_field(bytes: &[u8], name: &str) -> usize {
    let needle = [&(name.len() as u64).to_le_bytes()[..], name.as_bytes()].concat();
    let at = bytes.windows(needle.len()).position(|w| w == needle).unwrap() + needle.len();
    let dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    at + 4 + 8 * dims
}

#[test]
fn broken_files_are_one_line_errors_naming_the_file() {
    let (_d, path) = broken(|b| b[0] = b'X');
    assert!(open_error(&path).contains("not a GGUF file"));
    let (_d, path) = broken(|b| b[4..8].copy_from_slice(&1u32.to_le_bytes()));
    assert!(open_error(&path).contains("GGUF version 1 is not supported"));
    let (_d, path) = broken(|b| b.truncate(b.len() - 100));
    assert!(open_error(&path).contains("runs past the end of the file"), "{}", open_error(&path));
    let (_d, path) = broken(|b| b.truncate(200));
    assert!(open_error(&path).contains("truncated"));
    let (_d, path) = broken(|b| {
        let at = type_field(b, "types.Q4_K");
        b[at..at + 4].copy_from_slice(&10u32.to_le_bytes());
    });
    let message = open_error(&path);
    assert!(message.contains("tensor `types.Q4_K`: tensor type 10 (Q2_K) is not supported"), "{message}");
    let (_d, path) = broken(|b| {
        let at = type_field(b, "types.Q8_0") - 8; // the innermost dimension
        b[at..at + 8].copy_from_slice(&33u64.to_le_bytes());
    });
    assert!(open_error(&path).contains("do not fill whole Q8_0 blocks"));
    let missing = repo().join("no/such.gguf");
    assert!(open_error(&missing).contains("cannot open"));
}

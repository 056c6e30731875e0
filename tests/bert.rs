//! The bert architecture against `transformers`' BertModel (fixtures from scripts/reference/bert.sh): a tiny random
//! BERT loaded from its Hugging Face directory (with and without a `bert.` prefix), and all-MiniLM-L6-v2 imported
//! from its sentence-transformers directory, whose embeddings must be sentence-transformers' own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anbiq::artifact::model::ModelArtifact;
use anbiq::nn::arch::bert::{Bert, Pooling};
use anbiq::nn::weights::hf;
use anbiq::nn::weights::source::WeightSource;
use anbiq::nn::{Mode, Model};
use serde_json::Value;
use tch::{nn::VarStore, Device, Kind, Tensor};

mod common;
use common::Project;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn reference(dir: &str) -> Value {
    let path = repo().join("tests/fixtures").join(dir).join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Rows of ids, right-padded with 0 (`[PAD]`) to the longest.
fn padded(rows: &[Vec<i64>]) -> Tensor {
    let longest = rows.iter().map(Vec::len).max().unwrap();
    let flat: Vec<i64> =
        rows.iter().flat_map(|r| r.iter().copied().chain(std::iter::repeat(0)).take(longest)).collect();
    Tensor::from_slice(&flat).reshape([rows.len() as i64, longest as i64])
}

fn floats(v: &Value) -> Tensor {
    let values: Vec<f32> = v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    Tensor::from_slice(&values)
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn tiny_bert(weights: &mut BTreeMap<String, Tensor>, pooling: Pooling, normalize: bool) -> (VarStore, Bert) {
    let (mut config, _) = hf::load_bert(&repo().join("tests/fixtures/tiny-bert")).unwrap();
    (config.pooling, config.normalize) = (pooling, normalize);
    let vs = VarStore::new(Device::Cpu);
    let model = Bert::new(&config, &vs.root(), &mut WeightSource::Load(weights)).unwrap();
    assert!(weights.is_empty(), "every weight is used: {:?}", weights.keys().collect::<Vec<_>>());
    (vs, model)
}

#[test]
fn tiny_bert_matches_transformers() {
    let r = reference("tiny-bert");
    let rows: Vec<Vec<i64>> = serde_json::from_value(r["ids"].clone()).unwrap();
    let ids = padded(&rows);
    let (_, mut weights) = hf::load_bert(&repo().join("tests/fixtures/tiny-bert")).unwrap();
    assert!(weights.contains_key("pooler.dense.weight"), "the pooler is kept");
    let (_vs, model) = tiny_bert(&mut weights, Pooling::Mean, true);
    let (hidden, mask) = tch::no_grad(|| model.hidden_states(&ids));
    let expected = floats(&r["hidden"]).reshape(hidden.size());
    eprintln!("tiny BERT: last_hidden_state max |Δ| {:e}", max_abs(&hidden, &expected));
    // Padded positions are computed too (as transformers does); their states matter to nothing downstream.
    assert!(max_abs(&hidden, &expected) <= 1e-5, "last_hidden_state: {}", max_abs(&hidden, &expected));
    let mask_expected = Tensor::from_slice(
        &r["mask"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_i64().unwrap() == 1).collect::<Vec<_>>())
            .collect::<Vec<bool>>(),
    );
    assert!(mask.flatten(0, -1).equal(&mask_expected));
    let embeddings = tch::no_grad(|| model.forward(&ids, Mode::Eval));
    let expected = floats(&r["embeddings"]).reshape(embeddings.size());
    assert!(max_abs(&embeddings, &expected) <= 1e-5, "pooled: {}", max_abs(&embeddings, &expected));

    // Extra padding changes nothing: each batch is cut to its longest sequence, and masked keys weigh nothing.
    let wider = Tensor::cat(&[&ids, &Tensor::zeros([2, 6], (Kind::Int64, Device::Cpu))], 1);
    let again = tch::no_grad(|| model.forward(&wider, Mode::Eval));
    assert!(again.equal(&embeddings), "right padding is free and exact");

    // A `bert.`-prefixed checkpoint with a pretraining head (BertForMaskedLM) loads to the same encoder.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("tests/fixtures/tiny-bert/config.json"), dir.path().join("config.json")).unwrap();
    let mut renamed: Vec<(String, Tensor)> = hf::read_weights(&repo().join("tests/fixtures/tiny-bert"))
        .unwrap()
        .into_iter()
        .map(|(k, t)| (format!("bert.{k}"), t))
        .collect();
    renamed.push(("cls.predictions.bias".into(), Tensor::zeros([120], (Kind::Float, Device::Cpu))));
    anbiq::nn::weights::safetensors::write(&dir.path().join("model.safetensors"), &renamed).unwrap();
    let (_, mut weights) = hf::load_bert(dir.path()).unwrap();
    let (_vs, prefixed) = tiny_bert(&mut weights, Pooling::Mean, true);
    assert!(tch::no_grad(|| prefixed.forward(&ids, Mode::Eval)).equal(&embeddings));
}

#[test]
fn minilm_imports_and_embeds_like_sentence_transformers() {
    let p = Project::new("steps:\n  encoder: {kind: import, hf: minilm, input_shape: [128]}\n");
    std::os::unix::fs::symlink(repo().join("data/minilm"), p.path("minilm")).expect("scripts/fetch-data.sh minilm");
    p.run(&[]);
    let loaded = ModelArtifact::load(&p.output("encoder", "model"), Device::Cpu).unwrap();
    assert_eq!((loaded.spec.classes, loaded.spec.parameters), (384, 22_713_216));
    let r = reference("minilm");
    let rows: Vec<Vec<i64>> = serde_json::from_value(r["ids"].clone()).unwrap();
    assert_eq!(rows.len(), 64);
    // The ids themselves come from the model's own tokenizer, which the import carried into the store.
    let tok = anbiq::data::tokenizer::TextTokenizer::from_dir(&p.output("encoder", "model")).unwrap();
    for (row, sentence) in rows.iter().zip(r["sentences"].as_array().unwrap()) {
        let ids: Vec<i64> = tok.encode(sentence.as_str().unwrap(), true).unwrap().into_iter().map(i64::from).collect();
        assert_eq!(&ids, row);
    }
    let got = tch::no_grad(|| loaded.model.forward(&padded(&rows), Mode::Eval));
    let bytes = std::fs::read(repo().join("tests/fixtures/minilm/embeddings.f32")).unwrap();
    let expected: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let expected = Tensor::from_slice(&expected).reshape([64, 384]);
    let cosine = (&got * &expected).sum_dim_intlist(1, false, Kind::Float)
        / (got.norm_scalaropt_dim(2, [1], false) * expected.norm_scalaropt_dim(2, [1], false));
    let worst = cosine.min().double_value(&[]);
    eprintln!("MiniLM: lowest cosine to sentence-transformers over 64 sentences {worst:.9}");
    assert!(worst >= 0.99999, "lowest cosine to sentence-transformers: {worst}");
    let norms = got.norm_scalaropt_dim(2, [1], false);
    assert!(max_abs(&norms, &norms.ones_like()) < 1e-5, "normalised, as modules.json says");

    // Export writes a sentence-transformers directory; importing it again gives the same bytes in the store.
    let out = p.path("exported");
    p.export("encoder", &out, &["--format", "hf"]);
    for (file, original) in [("modules.json", true), ("1_Pooling/config.json", true), ("tokenizer.json", true)] {
        let ours: Value = serde_json::from_slice(&std::fs::read(out.join(file)).unwrap()).unwrap();
        let theirs: Value =
            serde_json::from_slice(&std::fs::read(repo().join("data/minilm").join(file)).unwrap()).unwrap();
        assert_eq!(ours == theirs, original, "{file}");
    }
    p.write(
        "wf.yaml",
        "steps:\n  encoder: {kind: import, hf: minilm, input_shape: [128]}\n  \
                        again: {kind: import, hf: exported, input_shape: [128]}\n",
    );
    assert_eq!(p.run(&[]).ran(), ["again"]);
    let lock = p.lock();
    assert_eq!(
        lock.step("again").unwrap().outputs,
        lock.step("encoder").unwrap().outputs,
        "export → import is the identity"
    );
}

#[test]
fn a_broken_bert_directory_is_a_located_error() {
    let p = Project::new("steps:\n  m: {kind: import, hf: broken, input_shape: [16]}\n");
    std::fs::create_dir(p.path("broken")).unwrap();
    std::fs::copy(repo().join("tests/fixtures/tiny-bert/model.safetensors"), p.path("broken/model.safetensors"))
        .unwrap();
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("tests/fixtures/tiny-bert/config.json")).unwrap())
            .unwrap();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: [(&str, Edit, &str); 4] = [
        (
            "missing field",
            Box::new(|c: &mut Value| c.as_object_mut().unwrap().remove("hidden_size").map(|_| ()).unwrap()),
            "hidden_size: missing",
        ),
        (
            "heads",
            Box::new(|c: &mut Value| c["num_attention_heads"] = 5.into()),
            "5 heads do not divide hidden_size 32",
        ),
        (
            "model type",
            Box::new(|c: &mut Value| c["model_type"] = "roberta".into()),
            "`roberta` is not supported (supported: llama, mistral, qwen2, bert)",
        ),
        ("window", Box::new(|c: &mut Value| c["max_position_embeddings"] = 8.into()), "T ≤ 8"),
    ];
    for (what, edit, message) in cases {
        let mut c = config.clone();
        edit(&mut c);
        p.write("broken/config.json", c.to_string());
        let err = p.try_load(&[]).unwrap_err();
        assert!(err.contains("wf.yaml:2:") && err.contains("broken/config.json") || what == "window", "{what}: {err}");
        assert!(err.contains(message), "{what}: {err}");
    }
    p.write("broken/config.json", config.to_string());
    std::fs::create_dir_all(p.path("broken/1_Pooling")).unwrap();
    p.write("broken/1_Pooling/config.json", r#"{"pooling_mode_max_tokens": true}"#);
    let err = p.try_load(&[]).unwrap_err();
    assert!(err.contains("pooling [\"pooling_mode_max_tokens\"] is not supported"), "{err}");
    assert!(!p.store().exists() || std::fs::read_dir(p.store()).unwrap().next().is_none(), "nothing entered a store");
}

#[test]
fn sentences_are_rows_padded_for_an_encoder() {
    let lines = ["To be, or not to be: that is the question.", "", "Now is the winter of our discontent.", "Hi."];
    let p = Project::new(
        "steps:\n  encoder: {kind: import, hf: minilm, input_shape: [16]}\n  \
         lines: {kind: dataset, source: sentences, path: lines.txt, tokenizer: {model: encoder}, context: 16}\n",
    );
    std::os::unix::fs::symlink(repo().join("data/minilm"), p.path("minilm")).unwrap();
    p.write("lines.txt", lines.join("\n") + "\n");
    p.run(&[]);
    let ds = anbiq::artifact::dataset::read_dataset(&p.output("lines", "train")).unwrap();
    assert_eq!(ds.x.size(), [3, 16], "one row per non-blank line");
    let tok = anbiq::data::tokenizer::TextTokenizer::from_dir(&p.output("encoder", "model")).unwrap();
    let encoder = ModelArtifact::load(&p.output("encoder", "model"), Device::Cpu).unwrap();
    for (row, line) in [lines[0], lines[2], lines[3]].iter().enumerate() {
        let ids: Vec<i64> = tok.encode(line, true).unwrap().into_iter().map(i64::from).collect();
        let stored: Vec<i64> = Vec::try_from(&ds.x.get(row as i64)).unwrap();
        assert_eq!(&stored[..ids.len()], &ids[..], "{line}");
        assert!(stored[ids.len()..].iter().all(|&t| t == 0), "right-padded with [PAD]");
        // Padding changes nothing: the padded row embeds exactly like the sentence alone.
        let alone = tch::no_grad(|| encoder.model.forward(&Tensor::from_slice(&ids).unsqueeze(0), Mode::Eval));
        let padded = tch::no_grad(|| encoder.model.forward(&ds.x.narrow(0, row as i64, 1), Mode::Eval));
        assert!(alone.equal(&padded), "{line}");
    }

    // Too long: refused with the file and line, unless asked to cut.
    p.write("lines.txt", format!("short\n{}\n", "word ".repeat(40)));
    let err = p.failures(&[]);
    let err = err.join("\n");
    assert!(err.contains("lines.txt: line 2: 42 tokens, more than `context: 16`"), "{err}");
    let yaml = std::fs::read_to_string(p.workflow_path()).unwrap();
    p.write("wf.yaml", yaml.replace("context: 16}", "context: 16, truncate: true}"));
    p.run(&[]);
    assert_eq!(p.lock().step("lines").unwrap().metrics["truncated"], serde_json::json!(1));
}

/// A sentence-transformers model with a `Dense` module between Pooling and Normalize (LaBSE's layout), as
/// sentence-transformers saved it (tests/fixtures/minilm-dense, scripts/reference/st_dense_fixture.py, on MiniLM's
/// encoder): imported, it embeds as sentence-transformers does; exported, it keeps the module order; imported again,
/// it is the same model.
#[test]
fn a_dense_head_imports_and_exports_in_its_module_order() {
    let p = Project::new("steps:\n  encoder: {kind: import, hf: st, input_shape: [128]}\n");
    let st = p.path("st");
    std::fs::create_dir_all(st.join("1_Pooling")).unwrap();
    let minilm = repo().join("data/minilm");
    for file in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "1_Pooling/config.json"]
    {
        std::os::unix::fs::symlink(minilm.join(file), st.join(file)).expect("scripts/fetch-data.sh minilm");
    }
    let fixture = repo().join("tests/fixtures/minilm-dense");
    std::fs::create_dir_all(st.join("2_Dense")).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join("2_Dense").join(file), st.join("2_Dense").join(file)).unwrap();
    }
    std::fs::copy(fixture.join("modules.json"), st.join("modules.json")).unwrap();
    p.run(&[]);
    let loaded = ModelArtifact::load(&p.output("encoder", "model"), Device::Cpu).unwrap();
    assert_eq!(loaded.spec.classes, 128);
    let rows: Vec<Vec<i64>> = serde_json::from_value(reference("minilm")["ids"].clone()).unwrap();
    let got = tch::no_grad(|| loaded.model.forward(&padded(&rows), Mode::Eval));
    let bytes = std::fs::read(fixture.join("embeddings.f32")).unwrap();
    let expected: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let expected = Tensor::from_slice(&expected).reshape([64, 128]);
    let worst = Tensor::cosine_similarity(&got, &expected, 1, 1e-12).min().double_value(&[]);
    eprintln!("MiniLM + Dense(384→128) + Normalize: lowest cosine to sentence-transformers {worst:.9}");
    assert!(worst >= 0.99999, "lowest cosine to sentence-transformers: {worst}");

    let out = p.path("exported");
    p.export("encoder", &out, &["--format", "hf"]);
    let modules: Value = serde_json::from_slice(&std::fs::read(out.join("modules.json")).unwrap()).unwrap();
    let order: Vec<(&str, &str)> = modules
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["type"].as_str().unwrap().rsplit('.').next().unwrap(), m["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        order,
        [("Transformer", ""), ("Pooling", "1_Pooling"), ("Dense", "2_Dense"), ("Normalize", "3_Normalize")]
    );
    p.write(
        "wf.yaml",
        "steps:\n  encoder: {kind: import, hf: st, input_shape: [128]}\n  \
                        again: {kind: import, hf: exported, input_shape: [128]}\n",
    );
    assert_eq!(p.run(&[]).ran(), ["again"]);
    let lock = p.lock();
    assert_eq!(lock.step("again").unwrap().outputs, lock.step("encoder").unwrap().outputs, "export → import");
}

/// The PCA of `prune … pca` against numpy's (scripts/reference/pca_fixture.py: LAPACK's SVD in float64) on
/// all-MiniLM-L6-v2's real embeddings of the 64 reference sentences: the same 16 directions, signed the same way,
/// and the same share of the squared length kept.
#[test]
fn principal_directions_of_real_embeddings_equal_numpy_s() {
    let bytes = std::fs::read(repo().join("tests/fixtures/minilm/embeddings.f32")).unwrap();
    let embeddings: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let x = Tensor::from_slice(&embeddings).reshape([64, 384]);
    let path = repo().join("tests/fixtures/minilm/pca16.json");
    let numpy: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let k = numpy["k"].as_i64().unwrap();
    let expected: Vec<f64> = serde_json::from_value(numpy["directions"].clone()).unwrap();
    let expected = Tensor::from_slice(&expected).reshape([k, 384]);
    let (directions, kept) = anbiq::nn::prune::principal_directions(&x, k).unwrap();
    let worst = max_abs(&directions, &expected);
    assert!(worst < 1e-7, "directions differ from numpy's by up to {worst}");
    assert!((kept - numpy["kept"].as_f64().unwrap()).abs() < 1e-12, "kept {kept} vs numpy's {}", numpy["kept"]);
}

//! The llama architecture against `transformers` (fixtures from scripts/reference/llama.sh): a tiny random model with
//! every option the family has, loaded from its Hugging Face directory, and SmolLM2-135M-Instruct loaded from its
//! Q4_1 GGUF file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anbiq::artifact::model::ModelArtifact;
use anbiq::nn::arch::llama::{Llama, LlamaConfig};
use anbiq::nn::weights::gguf::{llama as gguf_llama, Gguf};
use anbiq::nn::weights::hf;
use anbiq::nn::weights::source::WeightSource;
use anbiq::nn::{Decoder, KvCache, Mode, Model};
use anbiq::run::Outcome;
use serde_json::Value;

mod common;
use common::Project;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn reference(dir: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures").join(dir).join("reference.json")).unwrap(),
    )
    .unwrap()
}

fn ids(v: &Value) -> Tensor {
    let rows: Vec<Vec<i64>> = serde_json::from_value(v.clone()).unwrap();
    let (b, t) = (rows.len() as i64, rows[0].len() as i64);
    Tensor::from_slice(&rows.concat()).reshape([b, t])
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn build(config: &LlamaConfig, mut weights: BTreeMap<String, Tensor>) -> (VarStore, Llama) {
    let vs = VarStore::new(Device::Cpu);
    let vocab = config.vocab_size.unwrap();
    let model = Llama::new(config, &vs.root(), vocab, &mut WeightSource::Load(&mut weights)).unwrap();
    assert!(weights.is_empty(), "every weight is used: {:?}", weights.keys().collect::<Vec<_>>());
    (vs, model)
}

/// Greedy decoding through the key/value cache: `count` tokens after `prompt`.
fn greedy(model: &dyn Decoder, prompt: &[i64], count: usize) -> Vec<i64> {
    let mut cache = KvCache::default();
    let mut logits = tch::no_grad(|| model.decode(&Tensor::from_slice(prompt).unsqueeze(0), &mut cache));
    let mut out = Vec::new();
    for _ in 0..count {
        let next = logits.select(1, -1).argmax(-1, false).int64_value(&[0]);
        out.push(next);
        logits = tch::no_grad(|| model.decode(&Tensor::from_slice(&[next]).unsqueeze(0), &mut cache));
    }
    out
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn a_tiny_llama_with_every_option_gives_transformers_logits_and_greedy_tokens() {
    let dir = repo().join("tests/fixtures/tiny-llama");
    let (config, weights) = hf::load_llama(&dir).unwrap();
    assert_eq!((config.kv_heads(), config.head_dim()), (2, 16), "GQA, and head_dim ≠ hidden / heads");
    assert!(config.attention_bias && !config.tie_word_embeddings && config.rope_scaling.is_some());
    let (_vs, model) = build(&config, weights);
    let r = reference("tiny-llama");
    let expected = Tensor::from_slice(&floats(&r["logits"])).reshape([2, 12, 97]);
    let logits = tch::no_grad(|| model.forward(&ids(&r["ids"]), Mode::Eval));
    let diff = max_abs(&logits, &expected);
    eprintln!("tiny llama: max |anbiq − transformers| logit {diff:.2e}");
    assert!(diff <= 1e-5, "max |anbiq − transformers| = {diff}");
    // Decoding through the cache gives what the full forward gives, and transformers' greedy continuation.
    let prompt: Vec<i64> = serde_json::from_value(r["prompt"].clone()).unwrap();
    let want: Vec<i64> = serde_json::from_value(r["greedy"].clone()).unwrap();
    assert_eq!(greedy(&model, &prompt, want.len()), want);
}

#[test]
fn smollm2_from_its_gguf_matches_transformers_loading_the_same_file() {
    let path = repo().join("data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "{} is missing: scripts/fetch-data.sh smollm2 fetches it", path.display());
    let gguf = Gguf::open(&path).unwrap();
    let (config, weights) = gguf_llama::load(&gguf, tch::Kind::Float).unwrap();
    assert_eq!((config.num_hidden_layers, config.hidden_size, config.kv_heads()), (30, 576, 3));
    assert!(config.tie_word_embeddings);
    let (_vs, model) = build(&config, weights);
    let r = reference("smollm2");
    let x = ids(&r["ids"]);
    let logits = tch::no_grad(|| model.forward(&x, Mode::Eval));
    let (b, t) = (x.size()[0], x.size()[1]);
    let head = Tensor::from_slice(&floats(&r["logits_head"])).reshape([b, t, 1024]);
    let diff = max_abs(&logits.narrow(-1, 0, 1024), &head);
    eprintln!("SmolLM2 from GGUF: max |anbiq − transformers| logit {diff:.2e}");
    assert!(diff <= 1e-4, "max |anbiq − transformers| over the first 1024 logits of every position = {diff}");
    let lse = Tensor::from_slice(&floats(&r["logsumexp"])).reshape([b, t]);
    let diff = max_abs(&logits.logsumexp([-1], false), &lse);
    assert!(diff <= 1e-4, "logsumexp over all 49152 logits differs by {diff}");
    let argmax: Vec<Vec<i64>> = serde_json::from_value(r["argmax"].clone()).unwrap();
    assert_eq!(Vec::<i64>::try_from(logits.argmax(-1, false).flatten(0, -1)).unwrap(), argmax.concat());

    let prompt: Vec<i64> = serde_json::from_value(r["prompt"].clone()).unwrap();
    let want: Vec<i64> = serde_json::from_value(r["greedy"].clone()).unwrap();
    assert_eq!(greedy(&model, &prompt, want.len()), want, "transformers continued with {}", r["greedy_text"]);

    // Perplexity of 256 tokens of Hamlet within 0.1 % of transformers'.
    let hamlet: Vec<i64> = serde_json::from_value(r["hamlet_ids"].clone()).unwrap();
    let input = Tensor::from_slice(&hamlet[..hamlet.len() - 1]).unsqueeze(0);
    let target = Tensor::from_slice(&hamlet[1..]);
    let logits = tch::no_grad(|| model.forward(&input, Mode::Eval)).squeeze_dim(0);
    let nll = logits.cross_entropy_for_logits(&target).double_value(&[]);
    let want = r["hamlet_nll"].as_f64().unwrap();
    assert!(((nll.exp() / want.exp()) - 1.0).abs() < 1e-3, "perplexity {} vs transformers {}", nll.exp(), want.exp());
    eprintln!("SmolLM2: perplexity {:.4} (transformers {:.4})", nll.exp(), want.exp());
}

#[test]
fn smollm2_held_in_bf16_takes_half_the_bytes_and_keeps_its_perplexity() {
    let path = repo().join("data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let p = Project::new(&format!(
        "steps:\n  smol: {{kind: import, gguf: {}, input_shape: [256], dtype: bf16}}\n",
        path.display()
    ));
    p.run(&[]);
    let dir = p.output("smol", "model");
    let bytes = std::fs::metadata(dir.join("weights.safetensors")).unwrap().len();
    assert!(bytes < 134_515_008 * 2 + (1 << 20), "bf16 weights: {bytes} bytes");
    let smol = ModelArtifact::load(&dir, Device::Cpu).unwrap();
    assert!(smol.vs.trainable_variables().iter().all(|t| t.kind() == Kind::BFloat16), "held in bf16");
    let r = reference("smollm2");
    let hamlet: Vec<i64> = serde_json::from_value(r["hamlet_ids"].clone()).unwrap();
    let input = Tensor::from_slice(&hamlet[..hamlet.len() - 1]).unsqueeze(0);
    let logits = tch::no_grad(|| smol.model.forward(&input, Mode::Eval)).squeeze_dim(0);
    assert_eq!(logits.kind(), Kind::Float, "logits leave in f32");
    let nll = logits.cross_entropy_for_logits(&Tensor::from_slice(&hamlet[1..])).double_value(&[]);
    let want = r["hamlet_nll"].as_f64().unwrap();
    eprintln!("SmolLM2 in bf16: perplexity {:.4} (transformers f32 {:.4})", nll.exp(), want.exp());
    assert!(((nll.exp() / want.exp()) - 1.0).abs() < 0.01, "perplexity {} vs f32 {}", nll.exp(), want.exp());
}

/// Perplexity of the reference's Hamlet tokens under `model`.
fn hamlet_perplexity(model: &dyn Model) -> f64 {
    let hamlet: Vec<i64> = serde_json::from_value(reference("smollm2")["hamlet_ids"].clone()).unwrap();
    let input = Tensor::from_slice(&hamlet[..hamlet.len() - 1]).unsqueeze(0);
    let logits = tch::no_grad(|| model.forward(&input, Mode::Eval)).squeeze_dim(0);
    logits.cross_entropy_for_logits(&Tensor::from_slice(&hamlet[1..])).double_value(&[]).exp()
}

#[test]
fn smollm2_exports_to_gguf_f16_and_q8_0_and_reads_back() {
    let original = repo().join("data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let p =
        Project::new(&format!("steps:\n  smol: {{kind: import, gguf: {}, input_shape: [64]}}\n", original.display()));
    p.run(&[]);
    let stored = anbiq::nn::weights::safetensors::read(&p.output("smol", "model").join("weights.safetensors")).unwrap();
    let f32_ppl =
        hamlet_perplexity(ModelArtifact::load(&p.output("smol", "model"), Device::Cpu).unwrap().model.as_ref());
    for (quant, tolerance) in [("f16", 0.002), ("q8_0", 0.01)] {
        let out = p.path(&format!("smol-{quant}.gguf"));
        p.export("smol", &out, &["--format", "gguf", "--quant", quant]);
        let gguf = Gguf::open(&out).unwrap();
        // The tokenizer survives the round trip: the same tokenizer files as from the original file.
        let tokenizer = anbiq::nn::weights::gguf::tokenizer::tokenizer_files;
        assert_eq!(tokenizer(&gguf).unwrap(), tokenizer(&Gguf::open(&original).unwrap()).unwrap(), "{quant}");
        let (config, weights) = gguf_llama::load(&gguf, Kind::Float).unwrap();
        assert_eq!(config, gguf_llama::load_config(&Gguf::open(&original).unwrap()).unwrap());
        for (key, w) in &weights {
            let want = &stored[key];
            if quant == "f16" || w.dim() == 1 {
                let rounded =
                    if w.dim() == 1 { want.shallow_clone() } else { want.to_kind(Kind::Half).to_kind(Kind::Float) };
                assert!(w.equal(&rounded), "{quant} {key}: the stored weight rounded to f16 (vectors exact)");
            } else {
                let step = want.abs().max().double_value(&[]) / 127.0;
                assert!(max_abs(w, want) <= step, "{quant} {key}: within one Q8_0 step");
            }
        }
        let (_vs, model) = build(&config, weights);
        let ppl = hamlet_perplexity(&model);
        eprintln!("SmolLM2 exported to GGUF {quant}: perplexity {ppl:.4} (f32 {f32_ppl:.4})");
        assert!((ppl / f32_ppl - 1.0).abs() < tolerance, "{quant}: perplexity {ppl} vs {f32_ppl}");
    }
}

#[test]
fn config_problems_name_the_field_and_the_file() {
    let base = hf::read_config(&repo().join("tests/fixtures/tiny-llama")).unwrap();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut json = base.clone();
        edit(&mut json);
        LlamaConfig::from_hf_json(&json).unwrap_err()
    };
    assert_eq!(
        with(&|j| {
            j.as_object_mut().unwrap().remove("hidden_size");
        }),
        "hidden_size: missing"
    );
    assert!(with(&|j| j["num_key_value_heads"] = 3.into()).starts_with("num_key_value_heads: 3 does not divide"));
    assert!(with(&|j| j["model_type"] = "bert".into()).contains("not a Llama-family model"));
    assert!(with(&|j| j["rope_parameters"]["rope_type"] = "yarn".into()).contains("`yarn` is not supported"));

    // A weight file missing, a shape that contradicts the config, an index naming a missing shard.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.json"), base.to_string()).unwrap();
    let err = hf::load_llama(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("no model.safetensors"), "{err}");
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        r#"{"weight_map": {"a": "model-00001-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let err = hf::load_llama(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("names") && err.contains("model-00001-of-00002.safetensors"), "{err}");
    std::fs::remove_file(tmp.path().join("model.safetensors.index.json")).unwrap();
    std::fs::write(tmp.path().join("model.safetensors"), b"not safetensors").unwrap();
    let err = hf::load_llama(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("model.safetensors: not a readable safetensors file"), "{err}");

    let (config, mut weights) = hf::load_llama(&repo().join("tests/fixtures/tiny-llama")).unwrap();
    weights.insert("model.norm.weight".into(), Tensor::ones([7], (Kind::Float, Device::Cpu)));
    let vs = VarStore::new(Device::Cpu);
    let err = Llama::new(&config, &vs.root(), 97, &mut WeightSource::Load(&mut weights)).err().unwrap().to_string();
    assert_eq!(err, "weight `model.norm.weight` has shape [7], the config needs [48]");
    let mut weights = hf::load_llama(&repo().join("tests/fixtures/tiny-llama")).unwrap().1;
    weights.remove("lm_head.weight");
    let vs = VarStore::new(Device::Cpu);
    let err = Llama::new(&config, &vs.root(), 97, &mut WeightSource::Load(&mut weights)).err().unwrap().to_string();
    assert_eq!(err, "weight `lm_head.weight` is missing");
}

#[test]
fn import_brings_a_hugging_face_directory_and_a_gguf_file_into_the_store() {
    let smollm2 = repo().join("data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let p = Project::new(&format!(
        "steps:\n  tiny: {{kind: import, hf: tiny-llama, input_shape: [12]}}\n  \
         smol: {{kind: import, gguf: {}, input_shape: [5]}}\n",
        smollm2.display()
    ));
    std::fs::create_dir(p.path("tiny-llama")).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(repo().join("tests/fixtures/tiny-llama").join(file), p.path("tiny-llama").join(file)).unwrap();
    }
    p.run(&[]);
    assert!(p.run(&[]).ran().is_empty(), "a second import is cached");
    let lock = p.lock();
    assert!(lock.step("tiny").unwrap().ingredients.files.contains_key("tiny-llama"), "the directory's bytes are keyed");

    // What the store holds loads (without random initialisation) into the model transformers computes.
    let tiny = ModelArtifact::load(&p.output("tiny", "model"), Device::Cpu).unwrap();
    let r = reference("tiny-llama");
    let expected = Tensor::from_slice(&floats(&r["logits"])).reshape([2, 12, 97]);
    let logits = tch::no_grad(|| tiny.model.forward(&ids(&r["ids"]), Mode::Eval));
    assert!(max_abs(&logits, &expected) <= 1e-5);
    // Export is the identity: the exported directory imports to the same bytes in the store.
    let out = p.path("tiny-exported");
    p.export("tiny", &out, &["--format", "hf"]);
    for file in ["config.json", "generation_config.json", "model.safetensors"] {
        assert!(out.join(file).exists(), "{file}");
    }
    let exported = hf::read_weights(&out).unwrap();
    let original = hf::read_weights(&repo().join("tests/fixtures/tiny-llama")).unwrap();
    assert_eq!(exported.keys().collect::<Vec<_>>(), original.keys().collect::<Vec<_>>());
    assert!(exported.iter().all(|(k, t)| t.equal(&original[k])), "bit-identical weights");
    assert_eq!(
        LlamaConfig::from_hf_json(&hf::read_config(&out).unwrap()).unwrap(),
        LlamaConfig::from_hf_json(&hf::read_config(&repo().join("tests/fixtures/tiny-llama")).unwrap()).unwrap()
    );
    let yaml = std::fs::read_to_string(p.workflow_path()).unwrap();
    p.write("wf.yaml", format!("{yaml}  again: {{kind: import, hf: tiny-exported, input_shape: [12]}}\n"));
    assert_eq!(p.run(&[]).ran(), ["again"]);
    let lock = p.lock();
    assert_eq!(
        lock.step("again").unwrap().outputs,
        lock.step("tiny").unwrap().outputs,
        "export → import is the identity"
    );

    let smol = ModelArtifact::load(&p.output("smol", "model"), Device::Cpu).unwrap();
    assert_eq!((smol.spec.classes, smol.spec.parameters), (49152, 134_515_008));
    let r = reference("smollm2");
    let x = ids(&r["ids"]);
    let logits = tch::no_grad(|| smol.model.forward(&x, Mode::Eval));
    let head = Tensor::from_slice(&floats(&r["logits_head"])).reshape([x.size()[0], x.size()[1], 1024]);
    assert!(max_abs(&logits.narrow(-1, 0, 1024), &head) <= 1e-4);
}

#[test]
fn a_broken_or_unsupported_model_file_is_a_located_error_and_nothing_enters_the_store() {
    let p = Project::new("steps:\n  m: {kind: import, hf: missing, input_shape: [8]}\n");
    let err = p.try_load(&[]).unwrap_err();
    assert!(err.contains("wf.yaml:2:") && err.contains("`hf`") && err.contains("config.json: cannot read"), "{err}");
    p.write("wf.yaml", "steps:\n  m: {kind: import, gguf: wf.yaml, input_shape: [8]}\n");
    let err = p.try_load(&[]).unwrap_err();
    assert!(err.contains("`gguf`") && err.contains("not a GGUF file"), "{err}");
    let smollm2 = repo().join("data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    p.write("wf.yaml", format!("steps:\n  m: {{kind: import, gguf: {}, input_shape: [9000]}}\n", smollm2.display()));
    let err = p.try_load(&[]).unwrap_err();
    assert!(err.contains("T ≤ 8192 (its context"), "{err}");
    p.write(
        "wf.yaml",
        format!("steps:\n  m: {{kind: import, gguf: {}, input_shape: [8], classes: 10}}\n", smollm2.display()),
    );
    assert!(p.try_load(&[]).unwrap_err().contains("the model's vocabulary has 49152 tokens"));
    let types = repo().join("tests/fixtures/gguf/types.gguf");
    // A GGUF of an architecture anbiq cannot run: refused before anything runs.
    p.write("wf.yaml", format!("steps:\n  m: {{kind: import, gguf: {}, input_shape: [8]}}\n", types.display()));
    let err = p.try_load(&[]).unwrap_err();
    assert!(err.contains("architecture `test` is not supported (supported: llama)"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    // A llama GGUF with a tensor no llama has: the same.
    let mut bytes = std::fs::read(repo().join("tests/fixtures/gguf/llama.gguf")).unwrap();
    let at = bytes.windows(13).position(|w| w == b"ffn_down.weig").unwrap();
    bytes[at..at + 8].copy_from_slice(b"ffn_dowx"); // blk.0.ffn_dowx.weight
    p.write("odd.gguf", bytes);
    p.write("wf.yaml", "steps:\n  m: {kind: import, gguf: odd.gguf, input_shape: [8]}\n");
    let err = p.try_load(&[]).unwrap_err();
    assert!(err.contains("tensor `blk.0.ffn_dowx.weight` has no counterpart in a llama model"), "{err}");
    // A directory whose weights do not fit its config fails the step, and nothing enters the store.
    std::fs::create_dir(p.path("bad")).unwrap();
    let config = std::fs::read_to_string(repo().join("tests/fixtures/tiny-llama/config.json")).unwrap();
    std::fs::write(p.path("bad/config.json"), config.replace("\"intermediate_size\": 96", "\"intermediate_size\": 64"))
        .unwrap();
    std::fs::copy(repo().join("tests/fixtures/tiny-llama/model.safetensors"), p.path("bad/model.safetensors")).unwrap();
    p.write("wf.yaml", "steps:\n  m: {kind: import, hf: bad, input_shape: [8]}\n");
    let report = p.run_report(&[]);
    match &report.results[0].outcome {
        Outcome::Failed { error } => assert!(
            error.contains("field `hf`")
                && error.contains("mlp.gate_proj.weight` has shape [96, 48], the config needs [64, 48]"),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(std::fs::read_dir(p.store().join("steps")).unwrap().next().is_none());
}

//! Sentence-embedding distillation on the real all-MiniLM-L6-v2: the shipped `workflows/minilm-distill.yaml` cut
//! to a few hundred sentences (teacher embeddings, pruned and PCA-reduced students, MSE distillation, evaluation on
//! modern/First Folio line pairs), the sentence-transformers export of a PCA student read back bit for bit, a loss
//! plugin on embeddings against the built-in loss, and the mistakes a user can make.

use std::path::{Path, PathBuf};

use anbiq::artifact::model::{ModelArtifact, WEIGHTS_FILE};
use anbiq::nn::Mode;
use tch::{Device, Tensor};

mod common;
use common::Project;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn with_data(p: &Project) {
    std::os::unix::fs::symlink(repo().join("data"), p.path("data")).expect("scripts/fetch-data.sh minilm folio");
}

fn embed(dir: &Path, ids: &Tensor) -> Tensor {
    let m = ModelArtifact::load(dir, Device::Cpu).unwrap();
    tch::no_grad(|| m.model.forward(ids, Mode::Eval))
}

#[test]
fn the_shipped_sentence_workflow_runs_on_minilm() {
    let yaml = std::fs::read_to_string(repo().join("workflows/minilm-distill.yaml")).unwrap();
    let edit = common::edit_workflow;
    let small = edit(yaml, "../data/", "data/", 3);
    let small = edit(small, "\n  sentences: 10000 ", "\n  sentences: 256 ", 1);
    let small = edit(small, "\n  calibration: 2000 ", "\n  calibration: 256 ", 1);
    let small = edit(small, "\n  eval_share: 0.04 ", "\n  eval_share: 0.003 ", 1);
    let small = edit(small, "\n  epochs: 3\n", "\n  epochs: 1\n", 1);
    let small = edit(small, "    reference: teacher\n", "    reference: teacher\n    timing: false\n", 1);
    let p = Project::new(&small);
    with_data(&p);
    let report = p.run(&[]);
    assert_eq!(report.failures().count(), 0);

    let metrics = p.metrics("eval");
    let models =
        ["teacher", "pruned_3", "student_3", "pruned_2", "student_2", "teacher_256", "pruned_3_256", "student_3_256"];
    for model in models {
        let m = &metrics[model];
        for key in
            ["similarity_spearman", "neighbour_top1", "neighbour_recall_at_10", "retrieval_accuracy", "retrieval_mrr"]
        {
            let v = m[key];
            assert!((0.0..=1.0 + 1e-9).contains(&v), "{model}.{key} = {v}");
        }
        let dim = if model.ends_with("_256") { 256.0 } else { 384.0 };
        assert_eq!(m["dim"], dim, "{model}");
        assert_eq!(m.contains_key("cosine_to_reference"), dim == 384.0, "{model}: cosine only at the teacher's width");
    }
    let teacher = &metrics["teacher"];
    assert!((teacher["similarity_spearman"] - 1.0).abs() < 1e-9 && (teacher["cosine_to_reference"] - 1.0).abs() < 1e-6);
    assert_eq!((teacher["neighbour_top1"], teacher["neighbour_recall_at_10"]), (1.0, 1.0));
    assert!(teacher["retrieval_accuracy"] > 0.5, "MiniLM finds most Folio twins: {}", teacher["retrieval_accuracy"]);
    assert_eq!(metrics["pruned_3"]["parameters"], metrics["student_3"]["parameters"]);
    assert!(metrics["pruned_2"]["parameters"] < metrics["pruned_3"]["parameters"]);
    assert!(metrics["pruned_3"]["parameters"] < teacher["parameters"]);
    // 256 of 384 principal directions (here fitted on only 256 sentences) keep nearly all of the teacher's geometry.
    assert!(metrics["teacher_256"]["similarity_spearman"] > 0.98, "{:?}", metrics["teacher_256"]);
    let lock = p.lock();
    let energy = lock.step("teacher_256").unwrap().metrics["pca_energy_kept"].as_f64().unwrap();
    assert!(energy > 0.9 && energy <= 1.0 + 1e-9, "{energy}");
    assert_eq!(lock.step("targets").unwrap().metrics["dim"], serde_json::json!(384));

    // The PCA student out as a sentence-transformers directory (Transformer, Pooling, Normalize, Dense), and back.
    let out = p.path("exported");
    p.export("student_3_256", &out, &["--format", "hf"]);
    let modules: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("modules.json")).unwrap()).unwrap();
    let kinds: Vec<&str> = modules.as_array().unwrap().iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["Transformer", "Pooling", "Normalize", "Dense"].map(|k| format!("sentence_transformers.models.{k}")),
    );
    let dense: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("3_Dense/config.json")).unwrap()).unwrap();
    assert_eq!((dense["in_features"].as_i64(), dense["out_features"].as_i64()), (Some(384), Some(256)));
    assert!(out.join("3_Dense/model.safetensors").is_file() && out.join("config_sentence_transformers.json").is_file());
    let again = Project::new("steps:\n  st: {kind: import, hf: exported, input_shape: [64]}\n");
    std::os::unix::fs::symlink(&out, again.path("exported")).unwrap();
    again.run(&[]);
    let x = anbiq::artifact::dataset::read_dataset(&p.output("pairs", "test")).unwrap().x.select(1, 1);
    let stored = embed(&p.output("student_3_256", "model"), &x);
    assert_eq!(stored.size(), [x.size()[0], 256]);
    assert!(embed(&again.output("st", "model"), &x).equal(&stored), "export → import is the identity");
}

/// A small distillation of a 1-layer MiniLM on 48 sentences, with `loss` filled in.
fn tiny_distill(loss: &str) -> String {
    format!(
        "seed: 3\nsteps:\n  teacher: {{kind: import, hf: data/minilm, input_shape: [32]}}\n  \
         lines: {{kind: dataset, source: sentences, path: data/folio/train.txt, tokenizer: {{model: teacher}}, \
         context: 32, truncate: true, limit: 48}}\n  \
         targets: {{kind: infer, model: teacher, data: lines.train}}\n  \
         pruned: {{kind: prune, model: teacher, data: lines.train, layers: {{keep: [0]}}}}\n  \
         student: {{kind: distill, teacher: targets, data: lines.train, init: pruned, loss: {loss}, epochs: 1, \
         batch_size: 16, optimizer: {{name: adamw, lr: 0.0001}}}}\n"
    )
}

#[test]
fn an_embedding_plugin_trains_the_student_the_built_in_loss_trains() {
    let wasm = repo().join("plugins/build/cosine_embedding.wasm");
    if !wasm.is_file() {
        eprintln!("note: {} is not built (run scripts/build-plugins.sh); skipped", wasm.display());
        return;
    }
    let read = |p: &Project, step: &str| {
        anbiq::nn::weights::safetensors::read(&p.output(step, "model").join(WEIGHTS_FILE)).unwrap()
    };
    let run = |loss: &str| {
        let p = Project::new(&tiny_distill(loss));
        with_data(&p);
        std::fs::copy(&wasm, p.path("cos.wasm")).unwrap();
        p.run(&[]);
        (read(&p, "student"), read(&p, "pruned"))
    };
    let ((built_in, start), (plugin, _)) = (run("{cosine_embedding: {}}"), run("{plugin: {path: cos.wasm}}"));
    assert_eq!(built_in.keys().collect::<Vec<_>>(), plugin.keys().collect::<Vec<_>>());
    let mut moved = 0.0f64;
    for (name, a) in &built_in {
        let diff = (a - &plugin[name]).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{name}: built-in and plugin differ by {diff}");
        moved = moved.max((a - &start[name]).abs().max().double_value(&[]));
    }
    assert!(moved > 1e-5, "training moved the weights ({moved})");
}

#[test]
fn sentence_distillation_mistakes_are_one_clear_line() {
    let failure = |loss: &str, extra: &str| {
        let p = Project::new(&(tiny_distill(loss) + extra));
        with_data(&p);
        let failures = p.failures(&[]);
        assert!(!failures.is_empty(), "{loss} {extra} should fail");
        failures.join("\n")
    };
    let kd = failure("{kd: {temperature: 2}}", "");
    assert!(kd.contains("`kd` compares a teacher's distributions") && kd.contains("mse_embedding"), "{kd}");
    let top_k =
        failure("{mse_embedding: {}}", "  topk: {kind: infer, model: teacher, data: lines.train, store: {top_k: 5}}\n");
    assert!(top_k.contains("store.top_k") && top_k.contains("stored whole"), "{top_k}");
    let narrow = failure(
        "{mse_embedding: {}}",
        "  narrow: {kind: prune, model: teacher, data: lines.train, layers: {keep: [0]}, pca: {size: 16}}\n  \
         wrong: {kind: distill, teacher: targets, data: lines.train, init: narrow, loss: {mse_embedding: {}}, epochs: 1}\n",
    );
    assert!(narrow.contains("16 dimensions, the teacher's 384"), "{narrow}");
    let train =
        failure("{mse_embedding: {}}", "  trained: {kind: train, data: lines.train, init: pruned, epochs: 1}\n");
    assert!(train.contains("no labels"), "{train}");
}

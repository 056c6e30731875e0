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

/// A teacher, 48 sentences and `students` (YAML lines under `steps:`) distilled from the teacher online.
fn online_distill(students: &str) -> String {
    format!(
        "seed: 3\nsteps:\n  teacher: {{kind: import, hf: data/minilm, input_shape: [32]}}\n  \
         lines: {{kind: dataset, source: sentences, path: data/folio/train.txt, tokenizer: {{model: teacher}}, \
         context: 32, truncate: true, limit: 48}}\n  \
         pruned: {{kind: prune, model: teacher, data: lines.train, layers: {{keep: [0, 3]}}}}\n{students}"
    )
}

fn weights(p: &Project, step: &str) -> std::collections::BTreeMap<String, Tensor> {
    anbiq::nn::weights::safetensors::read(&p.output(step, "model").join(WEIGHTS_FILE)).unwrap().into_iter().collect()
}

#[test]
fn hidden_state_terms_train_students_of_any_width_and_stay_out_of_the_saved_model() {
    let common = "teacher: teacher, data: lines.train, epochs: 2, batch_size: 16, optimizer: {name: adamw, lr: 0.001}";
    let students = format!(
        "  plain: {{kind: distill, {common}, init: pruned, loss: {{mse_embedding: {{}}}}}}\n  \
         featured: {{kind: distill, {common}, init: pruned, \
         loss: [{{mse_embedding: {{}}}}, {{hidden: {{map: {{1: 2, 2: 6}}, loss: cosine}}, weight: 0.5}}]}}\n  \
         grouped: {{kind: distill, {common}, init: pruned, loss: {{mse_embedding: {{}}}}, group_by_length: true}}\n  \
         narrow: {{kind: distill, {common}, loss: {{hidden: {{map: {{0: 0, 2: 6}}}}}}, \
         model: {{arch: bert, vocab_size: 30522, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, \
         intermediate_size: 64, max_position_embeddings: 512, pooling: mean, normalize: true}}}}\n"
    );
    let p = Project::new(&online_distill(&students));
    with_data(&p);
    assert_eq!(p.run(&[]).failures().count(), 0);
    let (start, plain, featured) = (weights(&p, "pruned"), weights(&p, "plain"), weights(&p, "featured"));
    // The feature term changed what the student learned; the saved models hold only the model's own weights.
    assert_eq!(featured.keys().collect::<Vec<_>>(), start.keys().collect::<Vec<_>>());
    let differ = featured.iter().any(|(name, w)| !w.equal(&plain[name]));
    assert!(differ, "the hidden term left the student as the embedding term alone trains it");
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.output("featured", "model").join("history.json")).unwrap()).unwrap();
    assert!(history.to_string().contains("hidden × 0.5"), "each term's share is recorded: {history}");

    // Batches of like lengths are other batches: another student, trained as well (a finite loss that fell).
    let grouped = weights(&p, "grouped");
    assert!(grouped.iter().any(|(name, w)| !w.equal(&plain[name])), "group_by_length changed nothing");
    for student in ["plain", "grouped"] {
        let history: serde_json::Value =
            serde_json::from_slice(&std::fs::read(p.output(student, "model").join("history.json")).unwrap()).unwrap();
        let losses: Vec<f64> =
            history["epochs"].as_array().unwrap().iter().map(|e| e["train_loss"].as_f64().unwrap()).collect();
        assert!(losses[1] < losses[0], "{student}: {losses:?}");
    }

    // A 32-wide student learns through projections to the teacher's 384; none of them is saved or counted.
    let narrow = weights(&p, "narrow");
    assert!(narrow.keys().all(|k| !k.starts_with("training_only")), "{:?}", narrow.keys().collect::<Vec<_>>());
    let loaded = ModelArtifact::load(&p.output("narrow", "model"), Device::Cpu).unwrap();
    let counted: i64 = narrow.values().map(|t| t.numel() as i64).sum();
    assert_eq!(loaded.spec.parameters, counted);
    let ids = anbiq::artifact::dataset::read_dataset(&p.output("lines", "train")).unwrap().x.narrow(0, 0, 4);
    assert_eq!(embed(&p.output("narrow", "model"), &ids).size(), [4, 32]);
    let lock = p.lock();
    let metrics = &lock.step("narrow").unwrap().metrics;
    assert!(metrics["train_loss"].as_f64().unwrap().is_finite(), "{metrics:?}");

    // Seeded throughout, the projections included: a second project trains the same narrow student bit for bit.
    let again = Project::new(&online_distill(&students));
    with_data(&again);
    again.run(&[]);
    let second = weights(&again, "narrow");
    assert!(narrow.iter().all(|(name, w)| w.equal(&second[name])), "a rerun differs");
}

#[test]
fn hidden_state_mistakes_name_the_field() {
    let failure = |student: &str| {
        let p = Project::new(&online_distill(&format!(
            "  targets: {{kind: infer, model: teacher, data: lines.train}}\n  student: {{kind: distill, \
             data: lines.train, init: pruned, epochs: 1, {student}}}\n"
        )));
        with_data(&p);
        let failures = p.failures(&[]);
        assert!(!failures.is_empty(), "{student} should fail");
        failures.join("\n")
    };
    let stored = failure("teacher: targets, loss: [{mse_embedding: {}}, {hidden: {map: {1: 2}}}]");
    assert!(stored.contains("loss[1].hidden") && stored.contains("name the teacher encoder"), "{stored}");
    let deep = failure("teacher: teacher, loss: {hidden: {map: {1: 7}}}");
    assert!(deep.contains("loss.hidden") && deep.contains("hidden states 0 to 6") && deep.contains("not 7"), "{deep}");
    let student = failure("teacher: teacher, loss: {hidden: {map: {3: 2}}}");
    assert!(student.contains("the student has hidden states 0 to 2"), "{student}");
}

fn losses(p: &Project, step: &str) -> Vec<f64> {
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.output(step, "model").join("history.json")).unwrap()).unwrap();
    history["epochs"].as_array().unwrap().iter().map(|e| e["train_loss"].as_f64().unwrap()).collect()
}

#[test]
fn stored_hidden_states_are_the_teachers_and_train_a_student_as_the_online_teacher_does() {
    // One batch of all 48 sentences: the first epoch's loss is that of the start, before any update.
    let common = "data: lines.train, init: pruned, epochs: 2, batch_size: 48, optimizer: {name: adamw, lr: 0.001}, \
                  loss: [{mse_embedding: {}}, {hidden: {map: {1: 2, 2: 6}, loss: mse}}]";
    let p = Project::new(&online_distill(&format!(
        "  states: {{kind: infer, model: teacher, data: lines.train, batch_size: 8, \
         store: {{dtype: f32, hidden_states: [6, 2]}}}}\n  \
         plain: {{kind: infer, model: teacher, data: lines.train, batch_size: 8, store: {{dtype: f32}}}}\n  \
         online: {{kind: distill, teacher: teacher, {common}}}\n  \
         stored: {{kind: distill, teacher: states, {common}}}\n"
    )));
    with_data(&p);
    assert_eq!(p.run(&[]).failures().count(), 0);

    // The stored states are the teacher's own at every real token, whatever batch they were computed in.
    let ids = anbiq::artifact::dataset::read_dataset(&p.output("lines", "train")).unwrap().x;
    let stored = anbiq::artifact::embeddings::EmbeddingsArtifact::read(&p.output("states", "logits")).unwrap();
    let plain = anbiq::artifact::embeddings::EmbeddingsArtifact::read(&p.output("plain", "logits")).unwrap();
    assert!(stored.embeddings.equal(&plain.embeddings), "storing states changed the embeddings");
    assert_eq!(stored.meta.hidden_states, [2, 6]);
    let teacher = ModelArtifact::load(&p.output("teacher", "model"), Device::Cpu).unwrap();
    let rows = Tensor::from_slice(&[5i64, 0, 17, 40]);
    let online =
        tch::no_grad(|| teacher.model.encoder().unwrap().embed_with_states(&ids.index_select(0, &rows), &[2, 6]));
    let states = stored.states.as_ref().unwrap();
    let t = online.mask.size()[1];
    for (number, state) in [2, 6].into_iter().zip(&online.states) {
        let real = online.mask.unsqueeze(-1).to_kind(tch::Kind::Float);
        let diff = (states.padded(number, &rows, t) - state * &real).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "state {number}: stored and online differ by {diff}");
    }
    let tokens = states.lengths().sum(tch::Kind::Int64).int64_value(&[]);
    let lock = p.lock();
    let bytes = lock.step("states").unwrap().metrics["hidden_state_bytes"].as_i64().unwrap();
    assert_eq!(bytes, tokens * 384 * 4 * 2);
    assert!(!lock.step("plain").unwrap().metrics.contains_key("hidden_state_bytes"));

    // Trained on them, a student sees the loss it sees with the teacher run online (up to the rounding of other
    // batch shapes), and learns: the loss falls.
    let (online, stored) = (losses(&p, "online"), losses(&p, "stored"));
    assert!((online[0] - stored[0]).abs() < 1e-5 * online[0], "online {online:?}, stored {stored:?}");
    assert!(stored[1] < stored[0], "{stored:?}");
}

/// A 32-wide fresh student of the 384-wide teacher, with `projection: {how}`.
fn narrow_student(name: &str, how: &str) -> String {
    format!(
        "  {name}: {{kind: distill, teacher: teacher, data: lines.train, epochs: 2, batch_size: 16, \
         optimizer: {{name: adamw, lr: 0.003}}, loss: {{cosine_embedding: {{}}}}, projection: {how}, \
         model: {{arch: bert, vocab_size: 30522, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, \
         intermediate_size: 64, max_position_embeddings: 512, pooling: mean, normalize: true}}}}\n"
    )
}

#[test]
fn a_narrow_student_learns_through_a_projection_it_keeps_or_drops() {
    let p = Project::new(&online_distill(&(narrow_student("kept", "keep") + &narrow_student("dropped", "drop"))));
    with_data(&p);
    assert_eq!(p.run(&[]).failures().count(), 0);
    let ids = anbiq::artifact::dataset::read_dataset(&p.output("lines", "train")).unwrap().x.narrow(0, 0, 4);
    for student in ["kept", "dropped"] {
        let l = losses(&p, student);
        assert!(l[1] < l[0], "{student}: {l:?}");
        let w = weights(&p, student);
        assert!(w.keys().all(|k| !k.starts_with("training_only")), "{student}: {:?}", w.keys().collect::<Vec<_>>());
        let loaded = ModelArtifact::load(&p.output(student, "model"), Device::Cpu).unwrap();
        assert_eq!(loaded.spec.parameters, w.values().map(|t| t.numel() as i64).sum::<i64>(), "{student}");
    }
    // `keep`: a final dense layer to the teacher's width, part of the model; `drop`: the student's own 32.
    let kept = weights(&p, "kept");
    assert_eq!(kept["dense.linear.weight"].size(), [384, 32]);
    assert_eq!(embed(&p.output("kept", "model"), &ids).size(), [4, 384]);
    assert!(!weights(&p, "dropped").contains_key("dense.linear.weight"));
    assert_eq!(embed(&p.output("dropped", "model"), &ids).size(), [4, 32]);

    // The kept layer exports as sentence-transformers' Dense between Pooling and Normalize, and reads back the same.
    // Trained from scratch on the teacher's tokenizer, the student carries it (and exports with it).
    let read = |dir: &Path| anbiq::data::tokenizer::TextTokenizer::from_dir(dir).unwrap();
    assert_eq!(read(&p.output("kept", "model")), read(&repo().join("data/minilm")));
    let tokenizer = std::fs::read(p.output("kept", "model").join("tokenizer.json")).unwrap();
    let out = p.path("exported");
    p.export("kept", &out, &["--format", "hf"]);
    assert_eq!(std::fs::read(out.join("tokenizer.json")).unwrap(), tokenizer);
    let modules: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("modules.json")).unwrap()).unwrap();
    let kinds: Vec<&str> = modules.as_array().unwrap().iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["Transformer", "Pooling", "Dense", "Normalize"].map(|k| format!("sentence_transformers.models.{k}"))
    );
    let again = Project::new("steps:\n  st: {kind: import, hf: exported, input_shape: [32]}\n");
    std::os::unix::fs::symlink(&out, again.path("exported")).unwrap();
    again.run(&[]);
    assert!(embed(&again.output("st", "model"), &ids).equal(&embed(&p.output("kept", "model"), &ids)));
}

#[test]
fn projection_mistakes_are_one_clear_line() {
    let failure = |students: &str| {
        let p = Project::new(&online_distill(students));
        with_data(&p);
        let failures = p.failures(&[]);
        assert!(!failures.is_empty(), "{students} should fail");
        failures.join("\n")
    };
    let missing = failure(&narrow_student("s", "keep").replace(", projection: keep", ""));
    assert!(missing.contains("32 dimensions, the teacher's 384") && missing.contains("projection: keep"), "{missing}");
    let same = failure(
        "  s: {kind: distill, teacher: teacher, data: lines.train, init: pruned, epochs: 1, \
         loss: {mse_embedding: {}}, projection: drop}\n",
    );
    assert!(same.contains("field `projection`") && same.contains("already have the teacher's 384"), "{same}");
    let kind = Project::new(&online_distill(&narrow_student("s", "shrink"))).try_load(&[]).err().unwrap_or_default();
    assert!(kind.contains("projection") && kind.contains("keep") && kind.contains("drop"), "{kind}");
    let twice = Project::new(&online_distill(
        "  states: {kind: infer, model: teacher, data: lines.train, store: {hidden_states: [2, 4, 2]}}\n",
    ));
    let load = twice.try_load(&[]).err().unwrap_or_default();
    assert!(load.contains("store.hidden_states[2]") && load.contains("lists state 2 twice"), "{load}");
    let missing_state = failure(
        "  states: {kind: infer, model: teacher, data: lines.train, store: {hidden_states: [2]}}\n  \
         s: {kind: distill, teacher: states, data: lines.train, init: pruned, epochs: 1, \
         loss: [{mse_embedding: {}}, {hidden: {map: {1: 2, 2: 6}}}]}\n",
    );
    assert!(
        missing_state.contains("loss[1].hidden") && missing_state.contains("holds hidden states [2], not 6"),
        "{missing_state}"
    );
}

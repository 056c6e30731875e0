//! Distillation of a language model at LLM scale, on a tiny Llama trained here on bytes of text: the loss computed a
//! chunk of positions at a time (the output projection inside the chunk) trains the same student as the loss over the
//! whole batch, for both top-k tails, a sampled store in fixed slots and one of counts, an online teacher and
//! label-only training; recomputed activations train bit-identical students.

use std::collections::BTreeMap;

use tch::Tensor;

mod common;
use common::Project;

const TEXT: &str = "To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer \
The slings and arrows of outrageous fortune, Or to take arms against a sea of troubles ";

const LLAMA: &str = "{arch: llama, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 3, \
num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64}";

/// Teacher, its top-k logits, a pruned start, and students whose loss is chunked by `chunk` positions.
fn workflow(chunk: i64) -> String {
    format!(
        "seed: 5\nsteps:\n  \
         text: {{kind: dataset, source: text, path: text.txt, tokenizer: byte, context: 16, split: {{val: 0.1}}}}\n  \
         teacher: {{kind: train, data: text.train, epochs: 1, batch_size: 16, model: {LLAMA}}}\n  \
         logits: {{kind: infer, model: teacher, data: text.train, store: {{top_k: 8}}}}\n  \
         pruned: {{kind: prune, model: teacher, data: text.train, calibration: 16, layers: {{count: 2, by: block_influence}}}}\n  \
         even: {{kind: distill, teacher: logits, data: text.train, init: pruned, loss: {{kd: {{temperature: 2, alpha: 0.5}}}}, epochs: 1, batch_size: 8, loss_chunk: {chunk}}}\n  \
         shaped: {{kind: distill, teacher: logits, data: text.train, init: pruned, top_k_tail: student, loss: {{kd: {{temperature: 1, alpha: 1}}}}, epochs: 1, batch_size: 8, loss_chunk: {chunk}}}\n  \
         online: {{kind: distill, teacher: teacher, data: text.train, init: pruned, loss: [{{reverse_kl: {{}}, weight: 0.5}}, {{mse_logits: {{}}, weight: 0.1}}], epochs: 1, batch_size: 8, loss_chunk: {chunk}}}\n  \
         labels: {{kind: train, data: text.train, init: pruned, epochs: 1, batch_size: 8, loss_chunk: {chunk}}}\n  \
         sampled: {{kind: infer, model: teacher, data: text.train, store: {{sample: 12, slots: 8}}}}\n  \
         drawn: {{kind: distill, teacher: sampled, data: text.train, init: pruned, top_k_tail: student, loss: {{kd: {{temperature: 1, alpha: 1}}}}, epochs: 1, batch_size: 8, loss_chunk: {chunk}}}\n  \
         counted: {{kind: infer, model: teacher, data: text.train, store: {{sample: 12}}}}\n  \
         tallied: {{kind: distill, teacher: counted, data: text.train, init: pruned, loss: {{kd: {{temperature: 1, alpha: 1}}}}, epochs: 1, batch_size: 8, loss_chunk: {chunk}}}\n"
    )
}

fn weights(p: &Project, step: &str) -> BTreeMap<String, Tensor> {
    anbiq::nn::weights::safetensors::read(&p.output(step, "model").join("weights.safetensors")).unwrap()
}

#[test]
fn a_loss_in_chunks_of_positions_trains_the_student_the_whole_batch_trains() {
    let run = |chunk: i64| {
        let p = Project::new(&workflow(chunk));
        p.write("text.txt", TEXT.repeat(12));
        p.run(&[]);
        p
    };
    // 16 positions a window, 8 windows a batch: 7 splits windows and leaves a short last chunk; 4096 is one chunk.
    let (chunked, whole) = (run(7), run(4096));
    let start = weights(&chunked, "pruned");
    for step in ["even", "shaped", "online", "labels", "drawn", "tallied"] {
        let (a, b) = (weights(&chunked, step), weights(&whole, step));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        let worst = a.iter().map(|(k, w)| (w - &b[k]).abs().max().double_value(&[])).fold(0.0, f64::max);
        assert!(worst < 1e-5, "{step}: weights differ by {worst}");
        let moved = a.iter().map(|(k, w)| (w - &start[k]).abs().max().double_value(&[]));
        assert!(moved.fold(0.0, f64::max) > 1e-3, "{step}: training changed the weights");
    }
    // A window's draws come from its own stream: the same store whatever the batches.
    let outputs = |p: &Project, step: &str| p.lock().step(step).unwrap().outputs.clone();
    let (stored, student) = (outputs(&chunked, "sampled"), outputs(&chunked, "drawn"));
    let yaml = common::edit_workflow(workflow(7), "slots: 8}}", "slots: 8}, batch_size: 3}", 1);
    chunked.write("wf.yaml", yaml);
    assert_eq!(chunked.run(&[]).ran(), ["sampled", "drawn"], "a new batch size is a new key, and so its student's");
    assert_eq!((outputs(&chunked, "sampled"), outputs(&chunked, "drawn")), (stored, student));
}

/// `recompute_activations` changes memory and time, not results: bit for bit the same students (a Llama distilled
/// offline and online and trained on labels, a GPT with dropout trained on labels), every block recomputed or all but
/// the last, and the same lockfile, so turning it on or off reuses what is cached. A model without blocks is refused,
/// naming the field, and so is keeping every block.
#[test]
fn recomputed_activations_train_the_same_students_bit_for_bit() {
    let gpt = "  gpt: {kind: train, data: text.train, epochs: 1, batch_size: 8, loss_chunk: 7, model: {arch: gpt, \
               layers: 2, heads: 2, d_model: 16, context: 16, dropout: 0.2}}\n";
    let plain = workflow(7) + gpt;
    let recomputing =
        common::edit_workflow(plain.clone(), "loss_chunk: 7", "loss_chunk: 7, recompute_activations: true", 7);
    let run = |yaml: &str| {
        let p = Project::new(yaml);
        p.write("text.txt", TEXT.repeat(12));
        p.run(&[]);
        p
    };
    let keeping_one =
        common::edit_workflow(plain.clone(), "loss_chunk: 7", "loss_chunk: 7, recompute_activations: {keep: 1}", 7);
    let a = run(&plain);
    for (variant, yaml) in [("every block recomputed", &recomputing), ("the last block kept", &keeping_one)] {
        let b = run(yaml);
        for step in ["even", "shaped", "online", "labels", "drawn", "tallied", "gpt"] {
            let (wa, wb) = (weights(&a, step), weights(&b, step));
            assert_eq!(wa.keys().collect::<Vec<_>>(), wb.keys().collect::<Vec<_>>());
            for (key, w) in &wa {
                assert!(w.equal(&wb[key]), "{step}: {key} differs with {variant}");
            }
        }
        assert_eq!(a.lock().without_measurements(), b.lock().without_measurements(), "{variant}");
    }
    // Recomputation switched on where the plain run ran: nothing to do.
    a.write("wf.yaml", &recomputing);
    assert!(a.run(&[]).ran().is_empty(), "switching recomputation on reruns nothing");

    let mlp = "seed: 1\nsteps:\n  digits: {kind: dataset, source: digits, split: {test: 0.2}}\n  \
               m: {kind: train, data: digits.train, model: {arch: mlp, hidden: [8]}, epochs: 1, recompute_activations: true}\n";
    let failures = Project::new(mlp).failures(&[]);
    let refused = "step `m` (train): field `recompute_activations`: recomputes the blocks of a language model \
                   (`llama`, `gpt`); `mlp` has none";
    assert!(failures.len() == 1 && failures[0].ends_with(refused), "{failures:?}");

    let keeping_all =
        common::edit_workflow(plain, "loss_chunk: 7", "loss_chunk: 7, recompute_activations: {keep: 2}", 7);
    let p = Project::new(&keeping_all);
    p.write("text.txt", TEXT.repeat(12));
    let failures = p.failures(&[]);
    let refused = "step `gpt` (train): field `recompute_activations`: keeps 2 of the model's 2 blocks, so none is \
                   recomputed: keep fewer, or leave the field out";
    assert!(failures.iter().any(|f| f.ends_with(refused)), "{failures:?}");
}

/// The shipped `workflows/smollm2-prune-distill.yaml` end to end on the real SmolLM2-135M, cut to a few windows:
/// import, tokenised Shakespeare and Milton, top-8 logits, pruning to 20 layers by block influence, the three
/// trained students, both evaluations; then the KD student exported to Hugging Face and GGUF, each imported again
/// giving the logits anbiq gives.
#[test]
fn the_shipped_prune_and_distil_workflow_runs_on_smollm2() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let yaml = std::fs::read_to_string(repo.join("workflows/smollm2-prune-distill.yaml")).unwrap();
    // A few windows, and no timing (it measures the machine, for minutes).
    let edit = common::edit_workflow;
    let small = edit(yaml, "../data/", "data/", 4);
    let small = edit(small, "\n  windows: 128 ", "\n  windows: 4 ", 1);
    let small = edit(small, "\n  eval_windows: 8 ", "\n  eval_windows: 1 ", 1);
    let small = edit(small, "\n  batch_size: 4\n", "\n  batch_size: 2\n", 1);
    let small = edit(small, "    reference: teacher\n", "    reference: teacher\n    timing: false\n", 2);
    let p = Project::new(&small);
    std::os::unix::fs::symlink(repo.join("data"), p.path("data")).unwrap();
    let report = p.run(&[]);
    assert_eq!(report.failures().count(), 0);
    let models =
        ["teacher", "pruned", "student_labels", "student_kd", "student_sampled", "student_full", "student_random"];
    for eval in ["eval_shakespeare", "eval_milton"] {
        let metrics = p.metrics(eval);
        for model in models {
            let m = &metrics[model];
            for key in ["perplexity", "bits_per_byte", "accuracy", "agreement", "kl_from_reference", "parameters"] {
                assert!(m.get(key).is_some_and(|v| v.is_finite()), "{eval}: {model}.{key} in {m:?}");
            }
        }
        assert_eq!(metrics["teacher"]["kl_from_reference"], 0.0);
        assert!(metrics["pruned"]["parameters"] < metrics["teacher"]["parameters"]);
        assert_eq!(metrics["pruned"]["parameters"], metrics["student_kd"]["parameters"]);
    }
    let lock = p.lock();
    assert_eq!(lock.step("pruned").unwrap().metrics["layers"], serde_json::json!(20));
    for store in ["logits", "logits_sampled"] {
        assert!(lock.step(store).unwrap().metrics["bytes_per_token"].as_f64().unwrap() <= 70.0, "{store}");
    }
    let distinct = lock.step("logits_sampled").unwrap().metrics["distinct_mean"].as_f64().unwrap();
    assert!(distinct > 1.0 && distinct <= 16.0, "16 draws find {distinct} tokens a position");

    // The KD student out and in again, both ways: the same logits.
    let x = anbiq::artifact::dataset::read_dataset(&p.output("heldout", "test")).unwrap().x;
    let logits = |dir: &std::path::Path| {
        let m = anbiq::artifact::model::ModelArtifact::load(dir, tch::Device::Cpu).unwrap();
        tch::no_grad(|| m.model.forward(&x, anbiq::nn::Mode::Eval))
    };
    let student = logits(&p.output("student_kd", "model"));
    p.export("student_kd", &p.path("hf"), &["--format", "hf"]);
    p.export("student_kd", &p.path("student.gguf"), &["--format", "gguf", "--quant", "f16"]);
    let again = Project::new(
        "steps:\n  hf: {kind: import, hf: hf, input_shape: [256]}\n  \
         gguf: {kind: import, gguf: student.gguf, input_shape: [256]}\n",
    );
    std::os::unix::fs::symlink(p.path("hf"), again.path("hf")).unwrap();
    std::os::unix::fs::symlink(p.path("student.gguf"), again.path("student.gguf")).unwrap();
    again.run(&[]);
    assert!(logits(&again.output("hf", "model")).equal(&student), "HF export → import: the same model");
    // f16 weights: logits within 1 % of their range, the same next token almost everywhere.
    let gguf = logits(&again.output("gguf", "model"));
    let (diff, scale) = ((&gguf - &student).abs().max().double_value(&[]), student.abs().max().double_value(&[]));
    let same =
        gguf.argmax(-1, false).eq_tensor(&student.argmax(-1, false)).to_kind(tch::Kind::Float).mean(tch::Kind::Float);
    let same = same.double_value(&[]);
    assert!(
        diff < 0.01 * scale && same > 0.98,
        "GGUF f16 export → import: max |Δ| {diff} of {scale}, {same} same tokens"
    );
}

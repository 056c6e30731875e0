//! `kind: prune` on a tiny Llama trained here on bytes of text: keeping every layer gives the teacher back, a layer
//! made the identity (its output projections zeroed) has block influence 0 and is the one dropped — by either score —
//! with the teacher's logits unchanged; width pruning keeps whole GQA groups and the chosen channels, copied; targets
//! that cannot be met are errors naming the field. The same for a tiny GPT, and for the real all-MiniLM-L6-v2 and
//! SmolLM2-135M.

use std::collections::BTreeMap;
use std::path::Path;

use anbiq::artifact::model::ModelArtifact;
use anbiq::nn::arch::ArchConfig;
use anbiq::nn::Mode;
use serde_json::Value;
use tch::{Device, Tensor};

mod common;
use common::Project;

const TEXT: &str = "To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer \
The slings and arrows of outrageous fortune, Or to take arms against a sea of troubles ";

const LLAMA: &str = "{arch: llama, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 4, \
num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64}";

fn workflow(prune: &str) -> String {
    workflow_of(LLAMA, prune)
}

/// A teacher of architecture `model` trained on the text, and `pruned` from it by `prune`.
fn workflow_of(model: &str, prune: &str) -> String {
    format!(
        "seed: 3\nsteps:\n  text: {{kind: dataset, source: text, path: text.txt, tokenizer: byte, context: 16, split: {{val: 0.1}}}}\n  \
         teacher:\n    kind: train\n    data: text.train\n    epochs: 1\n    batch_size: 16\n    model: {model}\n  \
         pruned: {{kind: prune, model: teacher, data: text.train, calibration: 16, {prune}}}\n"
    )
}

fn project(prune: &str) -> Project {
    project_of(&workflow(prune))
}

fn project_of(yaml: &str) -> Project {
    let p = Project::new(yaml);
    p.write("text.txt", TEXT.repeat(12));
    p
}

fn weights(dir: &Path) -> BTreeMap<String, Tensor> {
    anbiq::nn::weights::safetensors::read(&dir.join("weights.safetensors")).unwrap()
}

fn logits(dir: &Path, x: &Tensor) -> Tensor {
    let m = ModelArtifact::load(dir, Device::Cpu).unwrap();
    tch::no_grad(|| m.model.forward(x, Mode::Eval))
}

fn windows(p: &Project) -> Tensor {
    anbiq::artifact::dataset::read_dataset(&p.output("text", "val")).unwrap().x
}

fn report(p: &Project) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p.output("pruned", "model").join("prune.json")).unwrap()).unwrap()
}

#[test]
fn keeping_every_layer_gives_the_teacher_back() {
    let p = project("layers: {keep: [0, 1, 2, 3]}");
    p.run(&[]);
    let x = windows(&p);
    assert!(logits(&p.output("pruned", "model"), &x).equal(&logits(&p.output("teacher", "model"), &x)));
    let (t, s) = (weights(&p.output("teacher", "model")), weights(&p.output("pruned", "model")));
    assert_eq!(t.keys().collect::<Vec<_>>(), s.keys().collect::<Vec<_>>());
    assert!(t.iter().all(|(k, w)| w.equal(&s[k])), "every weight copied");
    let r = report(&p);
    let influence: Vec<f64> = serde_json::from_value(r["layers"]["block_influence"].clone()).unwrap();
    assert!(influence.len() == 4 && influence.iter().all(|&b| b > 0.0 && b < 2.0), "{influence:?}");
    assert_eq!(r["loss"]["teacher"], r["loss"]["pruned"]);
}

#[test]
fn an_identity_layer_has_no_influence_and_is_the_one_dropped() {
    for by in ["block_influence", "loss"] {
        let p = project(&format!("layers: {{count: 3, by: {by}}}"));
        p.run(&[]);
        // Layer 2 made the identity: with its attention and MLP output projections zero, it adds nothing.
        let teacher = p.output("teacher", "model");
        let mut w = weights(&teacher);
        for key in ["model.layers.2.self_attn.o_proj.weight", "model.layers.2.mlp.down_proj.weight"] {
            w.insert(key.into(), w[key].zeros_like());
        }
        let identity = p.path("identity");
        std::fs::create_dir(&identity).unwrap();
        let named: Vec<(String, Tensor)> = w.into_iter().collect();
        anbiq::nn::weights::safetensors::write(&identity.join("weights.safetensors"), &named).unwrap();
        std::fs::copy(teacher.join("model.json"), identity.join("model.json")).unwrap();
        let spec = ModelArtifact::spec(&identity).unwrap();
        let yaml = workflow(&format!("layers: {{count: 3, by: {by}}}")).replace(
            "  teacher:\n    kind: train\n    data: text.train\n    epochs: 1\n    batch_size: 16\n    model:",
            "  trained:\n    kind: train\n    data: text.train\n    epochs: 1\n    batch_size: 16\n    model:",
        );
        let Some(ArchConfig::Llama(_)) = spec.arch else { panic!("a llama") };
        // The identity teacher enters as an import of its weights.
        let yaml = yaml.replace(
            "  pruned:",
            &format!(
                "  teacher: {{kind: import, weights: identity/weights.safetensors, model: {}, input_shape: [16], classes: 256}}\n  pruned:",
                serde_json::to_string(&spec.arch.unwrap()).unwrap()
            ),
        );
        p.write("wf.yaml", yaml);
        p.run(&[]);
        let r = report(&p);
        assert_eq!(r["layers"]["kept"], serde_json::json!([0, 1, 3]), "{by}: {}", r["layers"]);
        let influence: Vec<f64> = serde_json::from_value(r["layers"]["block_influence"].clone()).unwrap();
        assert!(influence[2].abs() < 1e-12, "{by}: block influence of the identity layer {}", influence[2]);
        let x = windows(&p);
        let (teacher, pruned) = (logits(&p.output("teacher", "model"), &x), logits(&p.output("pruned", "model"), &x));
        let diff = (&teacher - &pruned).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{by}: dropping the identity layer changes logits by {diff}");
        // Kept layers are the teacher's, renumbered: layer 3 is now layer 2.
        let (t, s) = (weights(&p.output("teacher", "model")), weights(&p.output("pruned", "model")));
        assert!(t["model.layers.3.mlp.up_proj.weight"].equal(&s["model.layers.2.mlp.up_proj.weight"]));
        assert!(!s.contains_key("model.layers.3.mlp.up_proj.weight"));
    }
}

#[test]
fn width_pruning_keeps_whole_groups_and_the_chosen_channels() {
    let p = project("mlp: {size: 40}, heads: {kv_groups: 1}");
    p.run(&[]);
    let dir = p.output("pruned", "model");
    let spec = ModelArtifact::spec(&dir).unwrap();
    let Some(ArchConfig::Llama(c)) = spec.arch else { panic!("a llama") };
    assert_eq!((c.intermediate_size, c.num_attention_heads, c.kv_heads(), c.head_dim()), (40, 2, 1, 8));
    let r = report(&p);
    let (t, s) = (weights(&p.output("teacher", "model")), weights(&dir));
    for layer in 0..4 {
        let channels: Vec<i64> = serde_json::from_value(r["mlp"]["kept"][layer].clone()).unwrap();
        let scores: Vec<f64> = serde_json::from_value(r["mlp"]["scores"][layer].clone()).unwrap();
        let lowest_kept = channels.iter().map(|&c| scores[c as usize]).fold(f64::INFINITY, f64::min);
        let dropped = (0..64).filter(|c| !channels.contains(c)).map(|c| scores[c as usize]).fold(0.0, f64::max);
        assert!(lowest_kept >= dropped, "layer {layer}: the highest-scoring channels stay");
        let up = format!("model.layers.{layer}.mlp.up_proj.weight");
        assert!(s[&up].equal(&t[&up].index_select(0, &Tensor::from_slice(&channels))));
        let down = format!("model.layers.{layer}.mlp.down_proj.weight");
        assert!(s[&down].equal(&t[&down].index_select(1, &Tensor::from_slice(&channels))));
        // The kept group's key rows, and its two query heads' rows.
        let group = r["heads"]["kv_groups_kept"][layer][0].as_i64().unwrap();
        let k = format!("model.layers.{layer}.self_attn.k_proj.weight");
        assert!(s[&k].equal(&t[&k].narrow(0, group * 8, 8)));
        let q = format!("model.layers.{layer}.self_attn.q_proj.weight");
        assert!(s[&q].equal(&t[&q].narrow(0, group * 16, 16)));
    }
    let out = logits(&dir, &windows(&p));
    assert_eq!(out.size()[2], 256);
}

/// A `gpt` (anbiq's own language model, dropout and all) pruned in depth — by block influence and by loss — and in
/// MLP width: the kept blocks and channels are the teacher's, renumbered and sliced; keeping everything gives the
/// teacher back; the narrower model trains from `init`; `heads` is refused, naming the field.
#[test]
fn a_gpt_is_pruned_in_depth_and_mlp_width() {
    const GPT: &str = "{arch: gpt, layers: 3, heads: 2, d_model: 16, context: 16, dropout: 0.1}";
    let all = project_of(&workflow_of(GPT, "layers: {keep: [0, 1, 2]}"));
    all.run(&[]);
    let x = windows(&all);
    let (teacher, pruned) = (all.output("teacher", "model"), all.output("pruned", "model"));
    assert!(logits(&pruned, &x).equal(&logits(&teacher, &x)), "nothing pruned: the teacher");
    let (t, s) = (weights(&teacher), weights(&pruned));
    assert!(t.len() == s.len() && t.iter().all(|(k, w)| w.equal(&s[k])), "every weight copied");

    let student = "  student: {kind: train, data: text.train, init: pruned, epochs: 1, batch_size: 8}\n";
    let p = project_of(&(workflow_of(GPT, "layers: {count: 2, by: block_influence}, mlp: {size: 40}") + student));
    p.run(&[]);
    let dir = p.output("pruned", "model");
    let Some(ArchConfig::Gpt(c)) = ModelArtifact::spec(&dir).unwrap().arch else { panic!("a gpt") };
    assert_eq!((c.layers, c.d_ff()), (2, 40));
    let r = report(&p);
    let kept: Vec<usize> = serde_json::from_value(r["layers"]["kept"].clone()).unwrap();
    let influence: Vec<f64> = serde_json::from_value(r["layers"]["block_influence"].clone()).unwrap();
    let dropped = (0..3).find(|l| !kept.contains(l)).unwrap();
    assert!(
        kept.iter().all(|&l| influence[l] >= influence[dropped]),
        "the least influential block goes: {influence:?}"
    );
    let (t, s) = (weights(&p.output("teacher", "model")), weights(&dir));
    for (new, &old) in kept.iter().enumerate() {
        let channels: Vec<i64> = serde_json::from_value(r["mlp"]["kept"][new].clone()).unwrap();
        let channels = Tensor::from_slice(&channels);
        let (block, teacher_block) = (format!("blocks.{new}."), format!("blocks.{old}."));
        assert!(
            s[&format!("{block}fc.weight")].equal(&t[&format!("{teacher_block}fc.weight")].index_select(0, &channels))
        );
        assert!(s[&format!("{block}fc.bias")].equal(&t[&format!("{teacher_block}fc.bias")].index_select(0, &channels)));
        assert!(s[&format!("{block}out.weight")]
            .equal(&t[&format!("{teacher_block}out.weight")].index_select(1, &channels)));
        for part in ["qkv.weight", "proj.weight", "ln1.weight", "out.bias"] {
            assert!(s[&format!("{block}{part}")].equal(&t[&format!("{teacher_block}{part}")]), "{block}{part}");
        }
    }
    assert!(!s.contains_key("blocks.2.fc.weight") && s["wte.weight"].equal(&t["wte.weight"]));
    assert!(p.lock().step("student").unwrap().metrics["train_loss"].as_f64().unwrap().is_finite());

    let by_loss = project_of(&workflow_of(GPT, "layers: {count: 2, by: loss}"));
    by_loss.run(&[]);
    let r = report(&by_loss);
    assert_eq!(r["layers"]["removed_by_loss"].as_array().unwrap().len(), 1, "{}", r["layers"]);

    let heads = project_of(&workflow_of(GPT, "heads: {kv_groups: 1}")).failures(&[]);
    assert!(heads.len() == 1 && heads[0].contains("field `heads`: a GPT keeps all its heads"), "{heads:?}");
}

#[test]
fn impossible_targets_name_the_field() {
    for (prune, message) in [
        ("layers: {count: 9, by: block_influence}", "field `layers.count`: 9 layers asked, the model has 4"),
        ("layers: {keep: [0, 7]}", "field `layers.keep`: layer 7 does not exist"),
        ("mlp: {size: 65}", "field `mlp.size`: 65 channels asked, the model has 64"),
        ("heads: {kv_groups: 3}", "field `heads.kv_groups`: 3 groups asked, the model has 2"),
    ] {
        let p = project(prune);
        let errors = p.failures(&[]);
        assert_eq!(errors.len(), 1, "{prune}: {errors:?}");
        assert!(errors[0].contains(message), "{prune}: {}", errors[0]);
    }
    let p = project("layers: {count: 2}");
    let err = p.try_load(&[]).unwrap_err();
    assert!(err.contains("give `{keep: [..]}` or `{count: N, by: block_influence | loss}`"), "{err}");
}

#[test]
fn training_starts_from_a_pruned_model_with_init() {
    let p = Project::new(
        &(workflow("layers: {keep: [0, 3]}")
            + "  student: {kind: train, data: text.train, init: pruned, epochs: 1, batch_size: 16, \
           optimizer: {name: sgd, lr: 1.0e-9}}\n  \
           wrong: {kind: train, data: text.train, init: pruned, epochs: 1, model: {arch: mlp, hidden: [8]}}\n  \
           kd: {kind: distill, teacher: teacher, data: text.train, init: pruned, epochs: 1, batch_size: 16, \
           loss: {kd: {temperature: 2, alpha: 1.0}}}\n"),
    );
    p.write("text.txt", TEXT.repeat(12));
    let failed = p.failures(&[]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].starts_with("wrong:") && failed[0].contains("differs from the architecture of `init`"),
        "{}",
        failed[0]
    );
    // The architecture comes from `init`, and the weights too: a vanishing learning rate leaves them as they were.
    let (pruned, student) = (p.output("pruned", "model"), p.output("student", "model"));
    assert_eq!(ModelArtifact::spec(&student).unwrap().arch, ModelArtifact::spec(&pruned).unwrap().arch);
    assert_eq!(ModelArtifact::spec(&p.output("kd", "model")).unwrap().arch, ModelArtifact::spec(&pruned).unwrap().arch);
    let (a, b) = (weights(&pruned), weights(&student));
    let worst = a.iter().map(|(k, w)| (w - &b[k]).abs().max().double_value(&[])).fold(0.0, f64::max);
    assert!(worst < 1e-6, "started from the pruned weights (max change {worst})");
    let err = Project::new("steps:\n  t: {kind: train, data: d, epochs: 1}\n  d: {kind: dataset, source: digits}\n")
        .try_load(&[])
        .unwrap_err();
    assert!(err.contains("needs `model` (an architecture) or `init`"), "{err}");
}

/// The real all-MiniLM-L6-v2 (6 layers, `scripts/fetch-data.sh minilm`) pruned on sentences: keeping every layer
/// gives the encoder back; by block influence the scores equal a hand computation — the cosine between the last
/// hidden states of the encoder cut after layer i − 1 and after layer i, over real tokens — and the kept layers and
/// MLP channels are the teacher's, copied; the export loads again as the same encoder. Not `loss`, not `heads`.
#[test]
fn an_encoder_is_pruned_by_block_influence_and_its_mlp() {
    use anbiq::nn::arch::bert::Bert;
    use anbiq::nn::weights::source::WeightSource;
    let lines = [
        "To be, or not to be: that is the question.",
        "Now is the winter of our discontent made glorious summer by this sun of York.",
        "Friends, Romans, countrymen, lend me your ears.",
        "All the world's a stage, and all the men and women merely players.",
        "The quality of mercy is not strained.",
        "Is this a dagger which I see before me?",
    ];
    let yaml = |prune: &str| {
        format!(
            "steps:\n  encoder: {{kind: import, hf: minilm, input_shape: [24]}}\n  \
             lines: {{kind: dataset, source: sentences, path: lines.txt, tokenizer: {{model: encoder}}, context: 24}}\n  \
             pruned: {{kind: prune, model: encoder, data: lines.train, calibration: 6, batch_size: 4, {prune}}}\n"
        )
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let project = |prune: &str| {
        let p = Project::new(&yaml(prune));
        std::os::unix::fs::symlink(repo.join("data/minilm"), p.path("minilm")).unwrap();
        p.write("lines.txt", lines.join("\n") + "\n");
        p
    };
    let embed = |dir: &Path, x: &Tensor| {
        let m = ModelArtifact::load(dir, Device::Cpu).unwrap();
        tch::no_grad(|| m.model.forward(x, Mode::Eval))
    };

    let p = project("layers: {keep: [0, 1, 2, 3, 4, 5]}");
    p.run(&[]);
    let x = anbiq::artifact::dataset::read_dataset(&p.output("lines", "train")).unwrap().x;
    assert!(embed(&p.output("pruned", "model"), &x).equal(&embed(&p.output("encoder", "model"), &x)));
    assert!((p.lock().step("pruned").unwrap().metrics["calibration_cosine"].as_f64().unwrap() - 1.0).abs() < 1e-6);

    let p = project("layers: {count: 3, by: block_influence}, mlp: {size: 1000}");
    p.run(&[]);
    let r = report(&p);
    let influence: Vec<f64> = serde_json::from_value(r["layers"]["block_influence"].clone()).unwrap();
    let kept: Vec<usize> = serde_json::from_value(r["layers"]["kept"].clone()).unwrap();
    let teacher = p.output("encoder", "model");
    let Some(ArchConfig::Bert(config)) = ModelArtifact::spec(&teacher).unwrap().arch else { panic!("a bert") };
    let t = weights(&teacher);
    // The last hidden states after the first `n` layers: the encoder cut there.
    let states = |n: i64| {
        let cut = anbiq::nn::arch::BertConfig { num_hidden_layers: n, ..config.clone() };
        let mut w: BTreeMap<String, Tensor> = t.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let bert = Bert::new(&cut, &vs.root(), &mut WeightSource::Load(&mut w)).unwrap();
        tch::no_grad(|| bert.hidden_states(&x))
    };
    for layer in 1..6 {
        let ((before, mask), (after, _)) = (states(layer), states(layer + 1));
        let cos =
            Tensor::cosine_similarity(&before.to_kind(tch::Kind::Double), &after.to_kind(tch::Kind::Double), -1, 1e-8);
        let m = mask.to_kind(tch::Kind::Double);
        let expected = 1.0 - ((cos * &m).sum(tch::Kind::Double) / m.sum(tch::Kind::Double)).double_value(&[]);
        assert!(
            (influence[layer as usize] - expected).abs() < 1e-5,
            "layer {layer}: {} vs {expected}",
            influence[layer as usize]
        );
    }
    let mut order: Vec<usize> = (0..6).collect();
    order.sort_by(|&a, &b| influence[b].total_cmp(&influence[a]));
    let mut top: Vec<usize> = order[..3].to_vec();
    top.sort();
    assert_eq!(kept, top, "the three most influential layers stay");
    let s = weights(&p.output("pruned", "model"));
    for (new, &old) in kept.iter().enumerate() {
        let channels: Vec<i64> = serde_json::from_value(r["mlp"]["kept"][new].clone()).unwrap();
        let key = |i: usize, part: &str| format!("encoder.layer.{i}.{part}");
        assert!(s[&key(new, "attention.self.query.weight")].equal(&t[&key(old, "attention.self.query.weight")]));
        let rows = Tensor::from_slice(&channels);
        assert!(s[&key(new, "intermediate.dense.weight")]
            .equal(&t[&key(old, "intermediate.dense.weight")].index_select(0, &rows)));
        assert!(s[&key(new, "intermediate.dense.bias")]
            .equal(&t[&key(old, "intermediate.dense.bias")].index_select(0, &rows)));
        assert!(s[&key(new, "output.dense.weight")].equal(&t[&key(old, "output.dense.weight")].index_select(1, &rows)));
    }
    assert!(!s.contains_key("encoder.layer.3.attention.self.query.weight"));
    let cosine = p.lock().step("pruned").unwrap().metrics["calibration_cosine"].as_f64().unwrap();
    eprintln!("MiniLM, layers {kept:?} of 6 and 1000 of 1536 channels: calibration cosine {cosine:.4}");
    assert!(cosine > 0.3 && cosine < 1.0, "half the layers gone: embeddings near but not at the teacher's ({cosine})");

    // Exported as a Hugging Face / sentence-transformers directory and imported again: the same encoder.
    let out = p.path("exported");
    p.export("pruned", &out, &["--format", "hf"]);
    let again = Project::new("steps:\n  again: {kind: import, hf: exported, input_shape: [24]}\n");
    std::os::unix::fs::symlink(&out, again.path("exported")).unwrap();
    again.run(&[]);
    assert!(embed(&again.output("again", "model"), &x).equal(&embed(&p.output("pruned", "model"), &x)));

    for (prune, message) in [
        ("layers: {count: 3, by: loss}", "field `layers.by`: `loss` ranks by a language model's next-token loss"),
        ("heads: {kv_groups: 6}", "field `heads`: a BERT keeps all its heads"),
    ] {
        let errors = project(prune).failures(&[]);
        assert!(errors.len() == 1 && errors[0].contains(message), "{prune}: {errors:?}");
    }
}

/// SmolLM2-135M (its real GGUF) pruned to the 20 layers the shipped workflow keeps gives the logits transformers
/// gives with the other ten decoder layers deleted (`scripts/reference/pruned_fixture.py`).
#[test]
fn a_depth_pruned_smollm2_matches_transformers_with_the_same_layers_deleted() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(repo.join("tests/fixtures/smollm2/pruned-reference.json")).unwrap(),
    )
    .unwrap();
    let keep = serde_json::to_string(&r["keep"]).unwrap();
    let p = Project::new(&format!(
        "steps:\n  teacher: {{kind: import, gguf: smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, input_shape: [32]}}\n  \
         text: {{kind: dataset, source: text, path: smollm2/text.txt, tokenizer: {{model: teacher}}, context: 32}}\n  \
         pruned: {{kind: prune, model: teacher, data: text.train, calibration: 1, layers: {{keep: {keep}}}}}\n"
    ));
    std::fs::create_dir(p.path("smollm2")).unwrap();
    std::os::unix::fs::symlink(
        repo.join("data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        p.path("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    )
    .unwrap();
    p.write("smollm2/text.txt", TEXT.repeat(4));
    p.run(&[]);
    let rows: Vec<Vec<i64>> = serde_json::from_value(r["ids"].clone()).unwrap();
    let ids = Tensor::from_slice2(&rows);
    let out = logits(&p.output("pruned", "model"), &ids).narrow(2, 0, 1024);
    let want: Vec<f32> = serde_json::from_value(r["logits_head"].clone()).unwrap();
    let want = Tensor::from_slice(&want).view(out.size().as_slice());
    let diff = (out - want).abs().max().double_value(&[]);
    eprintln!("pruned SmolLM2 vs transformers: max |Δ| {diff:.2e}");
    assert!(diff < 1e-4, "pruned SmolLM2 vs transformers: max |Δ| {diff}");
}

//! `kind: prune` on a tiny Llama trained here on bytes of text: keeping every layer gives the teacher back, a layer
//! made the identity (its output projections zeroed) has block influence 0 and is the one dropped — by either score —
//! with the teacher's logits unchanged; width pruning keeps whole GQA groups and the chosen channels, copied; targets
//! that cannot be met are errors naming the field.

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

fn workflow(prune: &str) -> String {
    format!(
        "seed: 3\nsteps:\n  text: {{kind: dataset, source: text, path: text.txt, tokenizer: byte, context: 16, split: {{val: 0.1}}}}\n  \
         teacher:\n    kind: train\n    data: text.train\n    epochs: 1\n    batch_size: 16\n    \
         model: {{arch: llama, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 4, num_attention_heads: 4, \
         num_key_value_heads: 2, max_position_embeddings: 64}}\n  \
         pruned: {{kind: prune, model: teacher, data: text.train, calibration: 16, {prune}}}\n"
    )
}

fn project(prune: &str) -> Project {
    let p = Project::new(&workflow(prune));
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

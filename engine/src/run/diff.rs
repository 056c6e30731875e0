//! `anbiq diff A.lock B.lock`: why two runs of a workflow may differ, and how their metrics moved.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::json_diff::diff_json;
use super::lockfile::{LockedStep, Lockfile};

/// One line per difference, most general first (versions, seed), then per step in A's order.
pub fn diff(a: &Lockfile, b: &Lockfile) -> Vec<String> {
    let mut out = Vec::new();
    let mut header = |what: &str, x: &str, y: &str| {
        if x != y {
            out.push(format!("{what}: {x} → {y}"));
        }
    };
    header("workflow", &a.workflow, &b.workflow);
    header("engine", &a.engine, &b.engine);
    header("libtorch", &a.libtorch, &b.libtorch);
    header("cpu kernels", &a.cpu, &b.cpu);
    header("seed", &a.seed.to_string(), &b.seed.to_string());
    header("lockfile version", &a.version.to_string(), &b.version.to_string());
    diff_json("parameter", "", &serde_json::json!(a.params), &serde_json::json!(b.params), &mut out);
    let ids_b: BTreeSet<&str> = b.steps.iter().map(|s| s.id.as_str()).collect();
    for sa in &a.steps {
        match b.step(&sa.id) {
            None => out.push(format!("step `{}`: only in the first lockfile", sa.id)),
            Some(sb) => step_diff(sa, sb, &mut out),
        }
    }
    for sb in b.steps.iter().filter(|s| a.step(&s.id).is_none()) {
        debug_assert!(ids_b.contains(sb.id.as_str()));
        out.push(format!("step `{}`: only in the second lockfile", sb.id));
    }
    out
}

fn step_diff(a: &LockedStep, b: &LockedStep, out: &mut Vec<String>) {
    let id = &a.id;
    let mut why = Vec::new();
    if a.ingredients.kind != b.ingredients.kind {
        why.push(format!("kind: {} → {}", a.ingredients.kind, b.ingredients.kind));
    }
    if a.ingredients.version != b.ingredients.version {
        why.push(format!("`{}` version: {} → {}", a.ingredients.kind, a.ingredients.version, b.ingredients.version));
    }
    if a.ingredients.formats != b.ingredients.formats {
        why.push(format!("stored formats: {:?} → {:?}", a.ingredients.formats, b.ingredients.formats));
    }
    if a.ingredients.seed != b.ingredients.seed {
        why.push("seed changed".into());
    }
    diff_json("config", "", &a.ingredients.config, &b.ingredients.config, &mut why);
    diff_entries("input", &a.ingredients.inputs, &b.ingredients.inputs, &mut why);
    diff_entries("file", &a.ingredients.files, &b.ingredients.files, &mut why);
    if a.key != b.key && why.is_empty() {
        why.push("cache key differs (libtorch version or CPU kernels)".into());
    }
    if a.device != b.device {
        why.push(format!("device: {} → {}", a.device, b.device));
    }
    if a.threads != b.threads {
        why.push(format!("threads: {} → {}", a.threads, b.threads));
    }
    let moved = metric_changes(a, b).len();
    if moved > 0 {
        why.push(if moved == 1 {
            "1 metric differs (below)".into()
        } else {
            format!("{moved} metrics differ (below)")
        });
    }
    for (name, hash) in &a.outputs {
        match b.outputs.get(name) {
            Some(h) if h == hash => {}
            Some(_) if a.key == b.key => {
                why.push(format!("output `{name}` differs although every input is the same (non-deterministic step?)"))
            }
            Some(_) => why.push(format!("output `{name}` differs")),
            None => why.push(format!("output `{name}` missing in the second")),
        }
    }
    out.extend(why.into_iter().map(|w| format!("step `{id}`: {w}")));
}

/// One metric of one step in two runs: what `anbiq diff` tabulates (like `dvc metrics diff`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricChange {
    pub step: String,
    /// As the lockfile names it: `model.metric` for an evaluate step, else the step's own metric.
    pub metric: String,
    pub a: Option<serde_json::Value>,
    pub b: Option<serde_json::Value>,
    /// `b − a` when both are numbers.
    pub delta: Option<f64>,
}

/// Every metric of steps in both lockfiles whose value differs (or exists in one only), in A's step order and each
/// step's metric order.
pub fn metric_changes_all(a: &Lockfile, b: &Lockfile) -> Vec<MetricChange> {
    a.steps.iter().filter_map(|sa| b.step(&sa.id).map(|sb| metric_changes(sa, sb))).flatten().collect()
}

fn metric_changes(a: &LockedStep, b: &LockedStep) -> Vec<MetricChange> {
    let names = a.metrics.keys().chain(b.metrics.keys().filter(|k| !a.metrics.contains_key(*k)));
    names
        .filter_map(|name| {
            let (x, y) = (a.metrics.get(name), b.metrics.get(name));
            if x == y {
                return None;
            }
            let delta = x.and_then(|x| x.as_f64()).zip(y.and_then(|y| y.as_f64())).map(|(x, y)| y - x);
            Some(MetricChange { step: a.id.clone(), metric: name.clone(), a: x.cloned(), b: y.cloned(), delta })
        })
        .collect()
}

/// "NOUN `k` differs / only in the first / only in the second" for every key of either map whose values differ.
fn diff_entries(noun: &str, a: &BTreeMap<String, String>, b: &BTreeMap<String, String>, why: &mut Vec<String>) {
    for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(_), Some(_)) => why.push(format!("{noun} `{k}` differs")),
            (Some(_), None) => why.push(format!("{noun} `{k}` only in the first")),
            _ => why.push(format!("{noun} `{k}` only in the second")),
        }
    }
}

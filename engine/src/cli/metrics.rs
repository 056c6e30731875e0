//! `anbiq metrics`: the results of every report-producing step, as tables or JSON `{step: {model: {metric: value}}}`.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde_json::Value;

use super::args::MetricsArgs;
use super::{load, CliError, EXIT_OK};
use crate::graph::{compute_keys, Dag, KeyEnv};
use crate::run::Store;
use crate::steps::ArtifactKind;

/// The file a report output keeps its metrics in: `{model: {metric: value}}`.
pub const REPORT_METRICS_FILE: &str = "metrics.json";

/// The results of the workflow *as loaded* (with its `--set`): each report step's entry is found in the store by the
/// key those parameters give, so results of other parameters, or of runs against other stores, never show.
pub fn metrics(args: MetricsArgs) -> Result<i32, CliError> {
    let wf = load(&args.workflow.workflow, &args.workflow.overrides)?;
    let dag = Dag::build(&wf)?;
    let store = Store::open(&args.workflow.store)?;
    let keys = compute_keys(&wf, &dag, &KeyEnv::current())?;
    let mut all: BTreeMap<String, Value> = BTreeMap::new();
    let mut not_run = Vec::new();
    for &i in dag.order() {
        let step = &wf.steps[i];
        let reports: Vec<String> =
            step.step.outputs().into_iter().filter(|o| o.kind == ArtifactKind::Report).map(|o| o.name).collect();
        if reports.is_empty() {
            continue;
        }
        let key = &keys[i].0;
        let Some(manifest) = store.complete(key) else {
            not_run.push(step.id.as_str());
            continue;
        };
        for name in &reports {
            let path = store.step_dir(key).join(name).join(REPORT_METRICS_FILE);
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut value: Value =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            merge_timings(&mut value, &manifest.timings);
            let order = model_order(&step.step.canonical_config());
            all.insert(step.id.clone(), shape(value, &order, &args.columns));
        }
    }
    for id in &not_run {
        let set = if args.workflow.overrides.is_empty() { "" } else { " with these --set values" };
        eprintln!(
            "step `{id}` has not run{set} against the store {} (`anbiq run {}` computes it)",
            store.root().display(),
            wf.path.display()
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all).map_err(anyhow::Error::from)?);
    } else if all.is_empty() && not_run.is_empty() {
        println!("no evaluation results: {} has no evaluate step", wf.path.display());
    } else {
        for (step, models) in &all {
            print_table(step, models, args.sort.as_deref());
        }
    }
    Ok(EXIT_OK)
}

/// Adds what the step measured of the machine (`timings`: `{model: {metric: value}}`) to its report's metrics.
fn merge_timings(report: &mut Value, timings: &serde_json::Map<String, Value>) {
    for (model, measured) in timings {
        if let (Some(row), Some(measured)) =
            (report.get_mut(model).and_then(Value::as_object_mut), measured.as_object())
        {
            row.extend(measured.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
}

/// The models of an evaluate step as its configuration lists them, its `reference` (the teacher) first.
fn model_order(config: &Value) -> Vec<String> {
    let mut order: Vec<String> =
        config.get("reference").and_then(Value::as_str).map(String::from).into_iter().collect();
    for model in config.get("models").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if !order.iter().any(|m| m == model) {
            order.push(model.to_string());
        }
    }
    order
}

/// A report's `{model: {metric: value}}` with the models in `order` (others after, by name), only `columns` when
/// some are given (in their order), and counts as integers.
fn shape(report: Value, order: &[String], columns: &[String]) -> Value {
    let Value::Object(mut models) = report else { return report };
    let mut names: Vec<String> = order.iter().filter(|m| models.contains_key(*m)).cloned().collect();
    names.extend(models.keys().filter(|k| !order.contains(k)).cloned().collect::<Vec<_>>());
    let rows = names.into_iter().filter_map(|name| {
        let Value::Object(metrics) = models.remove(&name)? else { return None };
        let picked: serde_json::Map<String, Value> = if columns.is_empty() {
            metrics
                .into_iter()
                .map(|(k, v)| {
                    let v = as_count(&k, v);
                    (k, v)
                })
                .collect()
        } else {
            columns.iter().filter_map(|c| metrics.get(c).map(|v| (c.clone(), as_count(c, v.clone())))).collect()
        };
        Some((name, Value::Object(picked)))
    });
    Value::Object(rows.collect())
}

/// Metrics that count something (`errors`, `parameters`, `weight_bytes`, …) are stored as f64: shown as integers.
fn as_count(metric: &str, value: Value) -> Value {
    let counts = matches!(metric, "errors" | "parameters" | "weight_bytes" | "tokens" | "dim" | "padding_tokens");
    match value.as_f64() {
        Some(x) if counts && x.fract() == 0.0 && x.abs() < 9.0e15 => Value::from(x as i64),
        _ => value,
    }
}

/// Metrics where smaller is better.
fn lower_is_better(metric: &str) -> bool {
    matches!(metric, "nll" | "ece" | "errors" | "latency_ms" | "weight_bytes" | "parameters")
        || metric.starts_with("kl")
}

fn print_table(step: &str, models: &Value, sort: Option<&str>) {
    let Some(models) = models.as_object() else { return };
    let mut rows: Vec<(&String, &Value)> = models.iter().collect();
    if let Some(metric) = sort {
        let key = |v: &Value| v.get(metric).and_then(Value::as_f64).unwrap_or(f64::NAN);
        rows.sort_by(|a, b| {
            let (x, y) = (key(a.1), key(b.1));
            // Models without the metric go last; ties keep name order.
            let ord = if lower_is_better(metric) { x.total_cmp(&y) } else { y.total_cmp(&x) };
            x.is_nan().cmp(&y.is_nan()).then(ord)
        });
    }
    let mut columns: Vec<&str> = Vec::new();
    for metrics in models.values().filter_map(Value::as_object) {
        for k in metrics.keys() {
            if !columns.contains(&k.as_str()) {
                columns.push(k);
            }
        }
    }
    let width = models.keys().map(String::len).max().unwrap_or(5).max(5);
    println!("{step}");
    print!("  {:<width$}", "model");
    for c in &columns {
        print!("  {c:>12}");
    }
    println!();
    for (model, metrics) in rows {
        print!("  {model:<width$}");
        for c in &columns {
            match metrics.get(*c) {
                Some(Value::Number(n)) => print!("  {:>12}", format_number(n.as_f64().unwrap_or(f64::NAN))),
                Some(v) => print!("  {:>12}", v.to_string()),
                None => print!("  {:>12}", "-"),
            }
        }
        println!();
    }
}

pub(super) fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e12 {
        format!("{x:.0}")
    } else if x.abs() >= 1000.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.4}")
    }
}

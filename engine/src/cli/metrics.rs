//! `anbiq metrics`: the results of every report-producing step, as tables or JSON `{step: {model: {metric: value}}}`.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde_json::Value;

use super::args::MetricsArgs;
use super::{load, CliError, EXIT_OK};
use crate::run::{Lockfile, Store};
use crate::steps::ArtifactKind;

/// The file a report output keeps its metrics in: `{model: {metric: value}}`.
pub const REPORT_METRICS_FILE: &str = "metrics.json";

pub fn metrics(args: MetricsArgs) -> Result<i32, CliError> {
    let wf = load(&args.workflow.workflow, &args.workflow.overrides)?;
    let lock_path = wf.lockfile_path();
    let lock = Lockfile::read(&lock_path)?
        .ok_or_else(|| anyhow::anyhow!("no lockfile {}: run the workflow first", lock_path.display()))?;
    let store = Store::open(&args.workflow.store)?;
    let mut all: BTreeMap<String, Value> = BTreeMap::new();
    for step in &lock.steps {
        let Some(manifest) = store.manifest(&step.key) else { continue };
        for (name, output) in &manifest.outputs {
            if output.kind != ArtifactKind::Report {
                continue;
            }
            let path = store.step_dir(&step.key).join(name).join(REPORT_METRICS_FILE);
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let value: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            all.insert(step.id.clone(), value);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all).map_err(anyhow::Error::from)?);
    } else if all.is_empty() {
        println!(
            "no evaluation results in {} (does the workflow have an evaluate step, and has it run?)",
            lock_path.display()
        );
    } else {
        for (step, models) in &all {
            print_table(step, models, args.sort.as_deref());
        }
    }
    Ok(EXIT_OK)
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

fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e12 {
        format!("{x:.0}")
    } else if x.abs() >= 1000.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.4}")
    }
}

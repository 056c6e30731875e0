//! `anbiq metrics`: the results of every report-producing step, as tables or JSON `{step: {model: {metric: value}}}`.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde_json::Value;

use super::args::MetricsArgs;
use super::{load, CliError, EXIT_OK};
use crate::graph::{compute_keys, Dag, KeyEnv};
use crate::report::results::{
    format_number, lower_is_better, merge_timings, metric_columns, model_order, shape, REPORT_METRICS_FILE,
};
use crate::run::Store;
use crate::steps::ArtifactKind;

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
    let columns = metric_columns(models);
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

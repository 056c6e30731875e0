//! `anbiq diff A.lock B.lock`: what differs between two recorded runs — why (configs, inputs, versions), and the
//! metrics side by side with their deltas, like `dvc metrics diff`.

use anyhow::Context as _;

use super::args::DiffArgs;
use super::{CliError, EXIT_FAILED, EXIT_OK};
use crate::run::{self, Lockfile, MetricChange};

pub fn diff(args: DiffArgs) -> Result<i32, CliError> {
    let read = |p: &std::path::Path| -> anyhow::Result<Lockfile> {
        Lockfile::read(p)?.with_context(|| format!("{}: no such lockfile", p.display()))
    };
    let (a, b) = (read(&args.a)?, read(&args.b)?);
    let lines = run::diff(&a, &b);
    let metrics = run::metric_changes_all(&a, &b);
    if args.json {
        let json = serde_json::json!({"differences": lines, "metrics": metrics});
        println!("{}", serde_json::to_string_pretty(&json).map_err(anyhow::Error::from)?);
    } else if lines.is_empty() {
        println!("no differences");
    } else {
        for line in &lines {
            println!("{line}");
        }
        print_metrics(&metrics, (&args.a.display().to_string(), &args.b.display().to_string()));
    }
    // Like diff(1): 1 means "they differ", so scripts can test for it.
    Ok(if lines.is_empty() { EXIT_OK } else { EXIT_FAILED })
}

/// A table per step: metric, A, B, delta.
fn print_metrics(changes: &[MetricChange], (a, b): (&str, &str)) {
    let mut steps: Vec<&str> = changes.iter().map(|c| c.step.as_str()).collect();
    steps.dedup();
    for step in steps {
        let rows: Vec<&MetricChange> = changes.iter().filter(|c| c.step == step).collect();
        let width = rows.iter().map(|c| c.metric.len()).max().unwrap_or(6).max(6);
        let value = |v: &Option<serde_json::Value>| match v {
            Some(serde_json::Value::Number(n)) => crate::report::results::format_number(n.as_f64().unwrap_or(f64::NAN)),
            Some(other) => other.to_string(),
            None => "-".into(),
        };
        println!("\nmetrics of `{step}`  (A = {a}, B = {b})");
        println!("  {:<width$}  {:>12}  {:>12}  {:>12}", "metric", "A", "B", "B − A");
        for c in rows {
            let delta = c.delta.map(|d| format!("{d:+.4}")).unwrap_or_else(|| "-".into());
            println!("  {:<width$}  {:>12}  {:>12}  {delta:>12}", c.metric, value(&c.a), value(&c.b));
        }
    }
}

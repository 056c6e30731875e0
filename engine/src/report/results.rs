//! Reading what evaluation steps wrote: their `{model: {metric: value}}` tables, in the order a person expects (the
//! reference model first, then as the step lists them), and which metric heads them. Shared by `anbiq metrics`, the
//! run summary and the HTML report.

use serde_json::Value;

/// The file a report output keeps its metrics in: `{model: {metric: value}}`.
pub const REPORT_METRICS_FILE: &str = "metrics.json";

/// Adds what the step measured of the machine (`timings`: `{model: {metric: value}}`) to its report's metrics.
pub fn merge_timings(report: &mut Value, timings: &serde_json::Map<String, Value>) {
    for (model, measured) in timings {
        if let (Some(row), Some(measured)) =
            (report.get_mut(model).and_then(Value::as_object_mut), measured.as_object())
        {
            row.extend(measured.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
}

/// The models of an evaluate step as its configuration lists them, its `reference` (the teacher) first.
pub fn model_order(config: &Value) -> Vec<String> {
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
pub fn shape(report: Value, order: &[String], columns: &[String]) -> Value {
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
pub fn as_count(metric: &str, value: Value) -> Value {
    let counts = matches!(metric, "errors" | "parameters" | "weight_bytes" | "tokens" | "dim" | "padding_tokens");
    match value.as_f64() {
        Some(x) if counts && x.fract() == 0.0 && x.abs() < 9.0e15 => Value::from(x as i64),
        _ => value,
    }
}

/// Metrics where smaller is better.
pub fn lower_is_better(metric: &str) -> bool {
    matches!(metric, "nll" | "ece" | "errors" | "latency_ms" | "weight_bytes" | "parameters")
        || metric.starts_with("kl")
}

/// A metric as a table shows it: integers as integers, large values with one decimal, others with four.
pub fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e12 {
        format!("{x:.0}")
    } else if x.abs() >= 1000.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.4}")
    }
}

/// The first of bits per character, Spearman (encoders) and accuracy that a step recorded in its lockfile metrics
/// (`model.metric`), per model in record order.
pub fn headline(metrics: &serde_json::Map<String, Value>) -> Option<(&'static str, Vec<(String, f64)>)> {
    HEADLINE_METRICS.into_iter().find_map(|metric| {
        let values: Vec<(String, f64)> = metrics
            .iter()
            .filter_map(|(k, v)| {
                let (model, m) = k.rsplit_once('.')?;
                (m == metric).then(|| v.as_f64().map(|v| (model.to_string(), v))).flatten()
            })
            .collect();
        (!values.is_empty()).then_some((metric, values))
    })
}

/// Every metric any model of a `{model: {metric: value}}` table has, in order of first appearance: a table's columns.
pub fn metric_columns(models: &serde_json::Map<String, Value>) -> Vec<&str> {
    let mut columns: Vec<&str> = Vec::new();
    for metrics in models.values().filter_map(Value::as_object) {
        for k in metrics.keys() {
            if !columns.contains(&k.as_str()) {
                columns.push(k);
            }
        }
    }
    columns
}

/// The metrics that head an evaluation, in order of preference.
pub const HEADLINE_METRICS: [&str; 3] = ["bits_per_char", "similarity_spearman", "accuracy"];

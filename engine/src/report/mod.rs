//! `anbiq report`: one self-contained HTML page of a workflow's results, read from the store by the keys the workflow
//! (with its `--set`) gives: the step graph coloured by status, training curves, evaluation tables and bar charts
//! with the share of the teacher–baseline gap each student closes, sweeps as lines over each swept parameter, text
//! samples, and the provenance needed to reproduce it.
//!
//! Gathering ([`build`]) is separate from drawing ([`charts`], [`dag`]) and from the page, which is the template
//! `template.html` filled by minijinja. The page loads nothing: the charts are inline SVG, the style is inline.

pub mod charts;
pub mod dag;
pub mod results;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;

use self::charts::{Bar, Role, Series};
use self::results::{format_number, merge_timings, model_order, shape, HEADLINE_METRICS, REPORT_METRICS_FILE};
use crate::graph::{compute_keys, Dag, KeyEnv};
use crate::nn::training::learner::History;
use crate::run::{Lockfile, Store};
use crate::workflow::Workflow;

/// How a step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Ran in the run that wrote the report.
    Ran,
    /// Its outputs are in the store (from this run's cache, or an earlier run).
    Cached,
    Failed,
    /// Not run because a step it needs failed.
    Skipped,
    NotRun,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Ran => "ran",
            Status::Cached => "cached",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::NotRun => "not run",
        }
    }
}

/// What the report is built from besides the workflow.
pub struct Sources<'a> {
    pub store: &'a Store,
    /// The lockfile whose provenance the page shows (absent: the keys computed now).
    pub lockfile: PathBuf,
    /// Each step's status in the run that just ended; `None` for a report of the store as it is.
    pub statuses: Option<BTreeMap<String, Status>>,
    /// The `--set NAME=VALUE` arguments, for the command that reproduces the results.
    pub overrides: Vec<String>,
}

/// Everything the page shows.
#[derive(Serialize)]
pub struct Page {
    pub title: String,
    pub workflow: String,
    pub command: String,
    pub dag: DagView,
    pub steps: Vec<Section>,
    pub provenance: Provenance,
    /// The jobs of the workflow's last `run --executor slurm` against this store, if any.
    pub slurm: Option<Table>,
}

#[derive(Serialize)]
pub struct DagView {
    pub svg: String,
    pub width: u32,
    pub height: u32,
    pub boxes: Vec<dag::NodeBox>,
}

/// One step's part of the page.
#[derive(Serialize)]
pub struct Section {
    pub id: String,
    pub kind: String,
    pub status: Status,
    pub status_word: &'static str,
    pub summary: &'static str,
    pub seconds: Option<f64>,
    pub error: Option<String>,
    pub notes: Vec<String>,
    pub charts: Vec<Chart>,
    pub tables: Vec<Table>,
    pub samples: Vec<Samples>,
}

#[derive(Serialize)]
pub struct Chart {
    /// `curve` (per epoch), `bars` (per model), `sweep` (over a swept parameter).
    pub kind: &'static str,
    pub title: String,
    pub svg: String,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Table {
    pub caption: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Serialize)]
pub struct Samples {
    pub model: String,
    pub texts: Vec<String>,
}

#[derive(Serialize)]
pub struct Provenance {
    pub engine: String,
    pub libtorch: String,
    pub cpu: String,
    pub seed: u64,
    pub device: String,
    pub lockfile: Option<String>,
    pub params: Vec<(String, String)>,
    pub keys: Vec<KeyRow>,
}

#[derive(Serialize)]
pub struct KeyRow {
    pub id: String,
    pub kind: String,
    pub key: String,
    pub device: String,
    pub seconds: Option<f64>,
}

/// Reads every step's outputs from the store and lays out the page.
pub fn build(wf: &Workflow, sources: &Sources) -> anyhow::Result<Page> {
    let dag = Dag::build(wf).map_err(|d| anyhow::anyhow!("{d}"))?;
    let env = KeyEnv::current();
    let keys = compute_keys(wf, &dag, &env)?;
    let store = sources.store;
    let order = dag.order();
    let position: BTreeMap<usize, usize> = order.iter().enumerate().map(|(pos, &i)| (i, pos)).collect();
    // A model reference names a step, or a step's output (`student.model`).
    let step_of = |reference: &str| wf.step_index(reference.split('.').next().unwrap_or(reference));
    let kind_of = |reference: &str| step_of(reference).map(|i| wf.steps[i].kind);

    let mut sections = Vec::new();
    let mut nodes = Vec::new();
    for &i in order {
        let decl = &wf.steps[i];
        let key = &keys[i].0;
        let manifest = store.complete(key);
        let failure = store.last_failure(key);
        let status = match sources.statuses.as_ref().and_then(|s| s.get(&decl.id)) {
            Some(&s) => s,
            None if manifest.is_some() => Status::Cached,
            None if failure.is_some() => Status::Failed,
            None => Status::NotRun,
        };
        nodes.push(dag::Node {
            id: &decl.id,
            kind: decl.kind,
            status,
            inputs: dag.dependencies(i).iter().map(|j| position[j]).collect(),
        });
        let mut section = Section {
            id: decl.id.clone(),
            kind: decl.kind.to_string(),
            status,
            status_word: status.word(),
            summary: crate::steps::find_kind(decl.kind).map_or("", |k| k.summary),
            seconds: manifest.as_ref().map(|m| m.seconds),
            error: failure.filter(|_| status == Status::Failed),
            notes: Vec::new(),
            charts: Vec::new(),
            tables: Vec::new(),
            samples: Vec::new(),
        };
        if let Some(manifest) = &manifest {
            let dir = store.step_dir(key);
            match decl.kind {
                "train" | "distill" => training_section(&mut section, &dir)?,
                "evaluate" => {
                    let config = decl.step.canonical_config();
                    let models = model_order(&config);
                    let reference = config.get("reference").and_then(Value::as_str);
                    let roles = roles(&models, reference, &kind_of);
                    let histories =
                        models.iter().map(|m| history_of(wf, store, &keys, m)).collect::<anyhow::Result<Vec<_>>>()?;
                    let report = read_report(&dir, &manifest.timings)?;
                    let variants: Vec<(String, BTreeMap<String, Value>)> = models
                        .iter()
                        .filter_map(|m| step_of(m).map(|j| (m.clone(), wf.steps[j].matrix.clone())))
                        .filter(|(_, matrix)| !matrix.is_empty())
                        .collect();
                    evaluation_section(&mut section, shape(report.clone(), &models, &[]), &models, &roles, &histories)?;
                    sweep_section(&mut section, &variants, &report)?;
                    section.samples = read_samples(&dir.join("report").join("report.md"));
                }
                "filter" => {
                    facts_section(&mut section, manifest);
                    filter_section(&mut section, &dir.join("data"))?;
                }
                _ => facts_section(&mut section, manifest),
            }
        }
        sections.push(section);
    }
    let picture = dag::draw(&nodes)?;
    let lock = Lockfile::read(&sources.lockfile).ok().flatten();
    let provenance = Provenance {
        engine: lock.as_ref().map_or(env.engine.clone(), |l| l.engine.clone()),
        libtorch: lock.as_ref().map_or(env.libtorch.clone(), |l| l.libtorch.clone()),
        cpu: lock.as_ref().map_or(env.cpu.clone(), |l| l.cpu.clone()),
        seed: wf.seed,
        device: wf.device.clone(),
        lockfile: lock.as_ref().map(|_| sources.lockfile.display().to_string()),
        params: wf.params.iter().map(|(k, v)| (k.clone(), v.to_json().to_string())).collect(),
        keys: order
            .iter()
            .map(|&i| {
                let locked = lock.as_ref().and_then(|l| l.step(&wf.steps[i].id));
                KeyRow {
                    id: wf.steps[i].id.clone(),
                    kind: wf.steps[i].kind.to_string(),
                    key: keys[i].0.to_string(),
                    device: locked.map_or_else(String::new, |l| l.device.clone()),
                    seconds: locked.map(|l| l.seconds),
                }
            })
            .collect(),
    };
    let mut command = format!("anbiq run {}", wf.path.display());
    for o in &sources.overrides {
        command += &format!(" --set {o}");
    }
    let slurm = crate::run::slurm::read_record(store, wf)?.map(|record| {
        let seconds = |step: &str| {
            wf.step_index(step)
                .and_then(|i| store.complete(&keys[i].0))
                .map_or_else(|| "–".to_string(), |m| format!("{:.1}", m.seconds))
        };
        let rows = record
            .jobs
            .iter()
            .map(|j| {
                let role = match j.role {
                    crate::run::slurm::Role::Step => "step".to_string(),
                    crate::run::slurm::Role::Shards => format!("shards {}", j.array.as_deref().unwrap_or("")),
                };
                vec![j.job.clone(), j.step.clone(), role, seconds(&j.step), j.log.display().to_string()]
            })
            .collect();
        Table {
            caption: "Slurm jobs of the last submission (step seconds as the step recorded them)".into(),
            columns: ["job", "step", "role", "step seconds", "log"].map(String::from).into(),
            rows,
        }
    });
    Ok(Page {
        slurm,
        title: format!("{} — anbiq report", wf.name),
        workflow: wf.path.display().to_string(),
        command,
        dag: DagView { svg: picture.svg, width: picture.width, height: picture.height, boxes: picture.boxes },
        steps: sections,
        provenance,
    })
}

/// The page as HTML.
pub fn render(page: &Page) -> anyhow::Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", include_str!("template.html")).context("the report template")?;
    let template = env.get_template("report.html").context("the report template")?;
    template.render(minijinja::context! { page => page }).context("filling the report template")
}

/// Builds, renders and writes the report to `path` (atomically).
pub fn write(wf: &Workflow, sources: &Sources, path: &Path) -> anyhow::Result<()> {
    let html = render(&build(wf, sources)?)?;
    crate::run::store::write_atomic(path, html.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// What each model is in a comparison: the `reference` (else the first) is the teacher, models a `train` step
/// produced from labels are baselines, the rest students.
pub fn roles(models: &[String], reference: Option<&str>, kind_of: &dyn Fn(&str) -> Option<&'static str>) -> Vec<Role> {
    let teacher = reference.or(models.first().map(String::as_str));
    models
        .iter()
        .map(|m| {
            if Some(m.as_str()) == teacher {
                Role::Teacher
            } else if kind_of(m) == Some("train") {
                Role::Baseline
            } else {
                Role::Student
            }
        })
        .collect()
}

/// The share of the teacher–baseline gap a student closes: 0 at the baseline, 1 at the teacher (beyond 1: better
/// than the teacher). `None` when teacher and baseline are level.
pub fn gap_closed(teacher: f64, baseline: f64, student: f64) -> Option<f64> {
    let gap = teacher - baseline;
    (gap.abs() > 1e-12).then(|| (student - baseline) / gap)
}

/// Training loss, validation accuracy and learning rate per epoch.
pub fn curves(history: &History) -> [Vec<(f64, f64)>; 3] {
    let per = |f: &dyn Fn(&crate::nn::training::learner::EpochRecord) -> Option<f64>| {
        history.epochs.iter().filter_map(|e| f(e).map(|v| (e.epoch as f64, v))).collect::<Vec<_>>()
    };
    [per(&|e| Some(e.train_loss)), per(&|e| e.val_accuracy), per(&|e| Some(e.lr))]
}

/// The training loss as lines: one, or with a loss of several terms the total (drawn dark) and each term's share.
pub fn loss_lines(history: &History, step: &str) -> Vec<Series> {
    let [total, ..] = curves(history);
    if history.terms.is_empty() {
        return vec![Series { name: step.into(), role: Role::Student, points: total }];
    }
    let mut lines = vec![Series { name: "total".into(), role: Role::Teacher, points: total }];
    for (i, name) in history.terms.iter().enumerate() {
        let points = history.epochs.iter().filter_map(|e| e.terms.get(i).map(|&v| (e.epoch as f64, v))).collect();
        lines.push(Series { name: name.clone(), role: Role::Student, points });
    }
    lines
}

fn read_history(dir: &Path) -> anyhow::Result<Option<History>> {
    let path = dir.join("model").join("history.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?))
}

/// The training history of the step a model reference names, when it trained and is in the store.
fn history_of(
    wf: &Workflow,
    store: &Store,
    keys: &[(crate::graph::StepKey, crate::graph::KeyIngredients)],
    model: &str,
) -> anyhow::Result<Option<History>> {
    let step = model.split('.').next().unwrap_or(model);
    let Some(i) = wf.step_index(step) else { return Ok(None) };
    if !matches!(wf.steps[i].kind, "train" | "distill") || !store.is_complete(&keys[i].0) {
        return Ok(None);
    }
    read_history(&store.step_dir(&keys[i].0))
}

fn training_section(section: &mut Section, dir: &Path) -> anyhow::Result<()> {
    let Some(history) = read_history(dir)? else { return Ok(()) };
    let [_, val, lr] = curves(&history);
    let one = |points| vec![Series { name: section.id.clone(), role: Role::Student, points }];
    let title = if history.terms.is_empty() { "training loss" } else { "training loss, total and per term" };
    section.charts.push(Chart {
        kind: "curve",
        title: title.into(),
        svg: charts::lines("epoch", "loss", &loss_lines(&history, &section.id))?,
    });
    if !val.is_empty() {
        let svg = charts::lines("epoch", "validation accuracy", &one(val))?;
        section.charts.push(Chart { kind: "curve", title: "validation accuracy".into(), svg });
    }
    section.charts.push(Chart {
        kind: "curve",
        title: "learning rate".into(),
        svg: charts::lines("epoch", "lr", &one(lr))?,
    });
    if let Some(best) = history.kept().filter(|_| history.best_epoch.is_some()) {
        let score =
            best.val_accuracy.map_or_else(String::new, |a| format!(" (validation accuracy {})", format_number(a)));
        section.notes.push(format!("kept the weights of epoch {}{score}", best.epoch));
    }
    if let Some(epoch) = history.stopped_after {
        section.notes.push(format!("stopped early after epoch {epoch}"));
    }
    Ok(())
}

fn read_report(dir: &Path, timings: &serde_json::Map<String, Value>) -> anyhow::Result<Value> {
    let path = dir.join("report").join(REPORT_METRICS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut value: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    merge_timings(&mut value, timings);
    Ok(value)
}

/// The first headline metric any model has.
fn headline_of(report: &Value) -> Option<&'static str> {
    let rows = report.as_object()?;
    HEADLINE_METRICS.into_iter().find(|m| rows.values().any(|r| r.get(*m).is_some()))
}

fn metric_of(report: &Value, model: &str, metric: &str) -> Option<f64> {
    report.get(model)?.get(metric)?.as_f64()
}

/// The metrics table (with the share of the gap each student closes, when there is one baseline) and bar charts
/// of the headline metric, parameters and latency; validation curves of the compared models on one chart.
pub fn evaluation_section(
    section: &mut Section,
    report: Value,
    models: &[String],
    roles: &[Role],
    histories: &[Option<History>],
) -> anyhow::Result<()> {
    let headline = headline_of(&report);
    let teacher = roles.iter().position(|r| *r == Role::Teacher).map(|i| &models[i]);
    let baselines: Vec<&String> =
        models.iter().zip(roles).filter(|(_, r)| **r == Role::Baseline).map(|(m, _)| m).collect();
    let gap = match (headline, teacher, baselines.as_slice()) {
        (Some(metric), Some(t), [b]) => match (metric_of(&report, t, metric), metric_of(&report, b, metric)) {
            (Some(t), Some(b)) => Some((metric, t, b)),
            _ => None,
        },
        _ => None,
    };
    let columns: Vec<String> =
        report.as_object().map(results::metric_columns).unwrap_or_default().into_iter().map(String::from).collect();
    let mut rows = Vec::new();
    for (model, role) in models.iter().zip(roles) {
        let Some(row) = report.get(model) else { continue };
        let mut cells = vec![model.clone(), format!("{role:?}").to_lowercase()];
        cells.extend(columns.iter().map(|c| row.get(c).and_then(Value::as_f64).map_or("–".into(), format_number)));
        if let Some((metric, t, b)) = gap {
            let share = match role {
                Role::Student => metric_of(&report, model, metric).and_then(|s| gap_closed(t, b, s)),
                _ => None,
            };
            cells.push(share.map_or("–".into(), |s| format!("{:.0} %", s * 100.0)));
        }
        rows.push(cells);
    }
    let mut header = vec!["model".to_string(), "role".to_string()];
    header.extend(columns.iter().cloned());
    if let Some((metric, ..)) = gap {
        header.push(format!("gap closed ({metric})"));
    }
    section.tables.push(Table { caption: "metrics".into(), columns: header, rows });

    for metric in headline.into_iter().chain(["parameters", "latency_ms"]) {
        let bars: Vec<Bar> = models
            .iter()
            .zip(roles)
            .filter_map(|(m, &role)| metric_of(&report, m, metric).map(|value| Bar { label: m.clone(), role, value }))
            .collect();
        if !bars.is_empty() {
            section.charts.push(Chart {
                kind: "bars",
                title: metric.replace('_', " "),
                svg: charts::bars(metric, &bars)?,
            });
        }
    }
    let overlaid: Vec<Series> = models
        .iter()
        .zip(roles)
        .zip(histories)
        .filter_map(|((m, &role), h)| {
            let points = curves(h.as_ref()?)[1].clone();
            (!points.is_empty()).then(|| Series { name: m.clone(), role, points })
        })
        .collect();
    if overlaid.len() > 1 {
        let svg = charts::lines("epoch", "validation accuracy", &overlaid)?;
        section.charts.push(Chart { kind: "curve", title: "validation accuracy of the compared models".into(), svg });
    }
    Ok(())
}

/// For each swept parameter: one line per combination of the other parameters, the headline metric against it.
pub fn sweep_series(
    variants: &[(String, BTreeMap<String, Value>)],
    report: &Value,
    metric: &str,
) -> Vec<(String, Vec<Series>)> {
    let params: Vec<&String> = variants.first().map(|(_, m)| m.keys().collect()).unwrap_or_default();
    let mut out = Vec::new();
    for &param in &params {
        let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (model, values) in variants {
            let (Some(x), Some(y)) = (values.get(param).and_then(Value::as_f64), metric_of(report, model, metric))
            else {
                continue;
            };
            let others: Vec<String> =
                values.iter().filter(|(k, _)| *k != param).map(|(k, v)| format!("{k}={v}")).collect();
            let name = if others.is_empty() { metric.to_string() } else { others.join(", ") };
            lines.entry(name).or_default().push((x, y));
        }
        let series: Vec<Series> = lines
            .into_iter()
            .map(|(name, mut points)| {
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series { name, role: Role::Student, points }
            })
            .filter(|s| s.points.len() > 1)
            .collect();
        if !series.is_empty() {
            out.push((param.clone(), series));
        }
    }
    out
}

fn sweep_section(
    section: &mut Section,
    variants: &[(String, BTreeMap<String, Value>)],
    report: &Value,
) -> anyhow::Result<()> {
    let Some(metric) = headline_of(report) else { return Ok(()) };
    for (param, series) in sweep_series(variants, report, metric) {
        let svg = charts::lines(&param, metric, &series)?;
        section.charts.push(Chart { kind: "sweep", title: format!("{} over {param}", metric.replace('_', " ")), svg });
    }
    Ok(())
}

/// What other steps recorded, and the bytes per sample (and per token) of what they stored.
fn facts_section(section: &mut Section, manifest: &crate::run::store::Manifest) {
    let mut rows: Vec<Vec<String>> = manifest
        .metrics
        .iter()
        .map(|(k, v)| vec![k.clone(), v.as_f64().map_or_else(|| v.to_string(), format_number)])
        .collect();
    let bytes: u64 = manifest.outputs.values().map(|o| o.bytes).sum();
    rows.push(vec!["stored bytes".into(), bytes.to_string()]);
    for unit in ["samples", "tokens"] {
        if let Some(n) = manifest.metrics.get(unit).and_then(Value::as_f64).filter(|n| *n > 0.0) {
            rows.push(vec![format!("bytes per {}", unit.trim_end_matches('s')), format!("{:.1}", bytes as f64 / n)]);
        }
    }
    section.tables.push(Table { caption: "recorded".into(), columns: vec!["what".into(), "value".into()], rows });
}

/// A filter's kept samples per class (from its `filter.json`), beside how many each class had; classes by name when
/// the data name them (the view's `meta.json`), else by index.
fn filter_section(section: &mut Section, view: &Path) -> anyhow::Result<()> {
    let path = view.join("filter.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
    let counts: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let per = |key: &str| -> Vec<f64> {
        counts.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_f64).collect()
    };
    let (kept, total) = (per("kept_per_class"), per("total_per_class"));
    if kept.is_empty() {
        return Ok(());
    }
    let names = class_names(&view.join(crate::artifact::dataset::META_FILE))?;
    let name = |class: usize| names.get(class).cloned().unwrap_or_else(|| class.to_string());
    let bars: Vec<Bar> =
        kept.iter().enumerate().map(|(class, &value)| Bar { label: name(class), role: Role::Student, value }).collect();
    section.charts.push(Chart {
        kind: "bars",
        title: "kept samples per class".into(),
        svg: charts::bars("kept", &bars)?,
    });
    let rows = kept
        .iter()
        .zip(total.iter().chain(std::iter::repeat(&f64::NAN)))
        .enumerate()
        .map(|(class, (k, t))| vec![name(class), format_number(*k), format_number(*t)])
        .collect();
    section.tables.push(Table {
        caption: "kept per class".into(),
        columns: vec!["class".into(), "kept".into(), "of".into()],
        rows,
    });
    Ok(())
}

/// The class names a dataset's `meta.json` declares; none when it has no names (or no such file).
fn class_names(meta: &Path) -> anyhow::Result<Vec<String>> {
    let Ok(text) = std::fs::read_to_string(meta) else { return Ok(Vec::new()) };
    let meta: crate::data::DatasetMeta =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", meta.display()))?;
    Ok(meta.class_names.unwrap_or_default())
}

/// The generated texts in an evaluation's `report.md`: its "## Samples from `MODEL`" sections, each text fenced.
pub fn read_samples(path: &Path) -> Vec<Samples> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    parse_samples(&text)
}

fn parse_samples(markdown: &str) -> Vec<Samples> {
    let mut out: Vec<Samples> = Vec::new();
    let mut fence: Option<String> = None;
    for line in markdown.lines() {
        if let Some(text) = fence.as_mut() {
            if line == "```" {
                let done = fence.take().unwrap_or_default();
                if let Some(last) = out.last_mut() {
                    last.texts.push(done);
                }
            } else {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(line);
            }
        } else if let Some(model) = line.strip_prefix("## Samples from `").and_then(|r| r.strip_suffix('`')) {
            out.push(Samples { model: model.to_string(), texts: Vec::new() });
        } else if line == "```text" && !out.is_empty() {
            fence = Some(String::new());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::training::learner::EpochRecord;

    #[test]
    fn the_reference_is_the_teacher_trained_models_are_baselines() {
        let models: Vec<String> = ["student", "teacher", "labels_only"].map(String::from).into();
        let kind = |m: &str| match m {
            "labels_only" | "teacher" => Some("train"),
            _ => Some("distill"),
        };
        assert_eq!(roles(&models, Some("teacher"), &kind), [Role::Student, Role::Teacher, Role::Baseline]);
        assert_eq!(roles(&models, None, &kind)[0], Role::Teacher);
    }

    #[test]
    fn the_gap_closed_is_measured_from_the_baseline_either_way_up() {
        let near = |x: Option<f64>, y: f64| x.is_some_and(|x| (x - y).abs() < 1e-12);
        assert!(near(gap_closed(0.9, 0.8, 0.85), 0.5));
        assert!(near(gap_closed(0.9, 0.8, 0.92), 1.2), "beyond the teacher");
        // Bits per character: lower is better, and the same formula holds.
        assert!(near(gap_closed(2.0, 3.0, 2.5), 0.5));
        assert_eq!(gap_closed(0.9, 0.9, 0.95), None);
    }

    #[test]
    fn curves_come_from_the_history_and_skip_epochs_without_validation() {
        let e = |epoch, val| EpochRecord {
            epoch,
            train_loss: 1.0 / epoch as f64,
            val_accuracy: val,
            lr: 0.1,
            terms: Vec::new(),
        };
        let history = History { epochs: vec![e(1, None), e(2, Some(0.5))], ..History::default() };
        let [loss, val, lr] = curves(&history);
        assert_eq!(loss, [(1.0, 1.0), (2.0, 0.5)]);
        assert_eq!(val, [(2.0, 0.5)]);
        assert_eq!(lr.len(), 2);
        let lines = loss_lines(&history, "student");
        assert_eq!((lines.len(), lines[0].name.as_str(), &lines[0].points), (1, "student", &loss));
    }

    #[test]
    fn a_loss_of_several_terms_draws_the_total_and_each_term() {
        let e = |epoch: usize, terms: [f64; 2]| EpochRecord {
            epoch,
            train_loss: terms.iter().sum(),
            val_accuracy: None,
            lr: 0.1,
            terms: terms.into(),
        };
        let history = History {
            terms: vec!["kd".into(), "mse_logits × 0.1".into()],
            epochs: vec![e(1, [2.0, 0.5]), e(2, [1.0, 0.25])],
            ..History::default()
        };
        let lines = loss_lines(&history, "student");
        let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["total", "kd", "mse_logits × 0.1"]);
        assert_eq!(lines[0].points, [(1.0, 2.5), (2.0, 1.25)]);
        assert_eq!(lines[2].points, [(1.0, 0.5), (2.0, 0.25)]);
        assert_eq!(lines[0].role, Role::Teacher);
    }

    #[test]
    fn the_table_shows_every_metric_and_the_gap_each_student_closes() {
        let report = serde_json::json!({
            "teacher": {"accuracy": 0.9, "parameters": 100.0},
            "student": {"accuracy": 0.88, "parameters": 10.0},
            "baseline": {"accuracy": 0.8, "parameters": 10.0},
        });
        let models: Vec<String> = ["teacher", "student", "baseline"].map(String::from).into();
        let roles = [Role::Teacher, Role::Student, Role::Baseline];
        let mut section = empty_section("report", "evaluate");
        evaluation_section(&mut section, report, &models, &roles, &[None, None, None]).unwrap();
        let table = &section.tables[0];
        assert_eq!(table.columns, ["model", "role", "accuracy", "parameters", "gap closed (accuracy)"]);
        assert_eq!(table.rows[1], ["student", "student", "0.8800", "10", "80 %"]);
        assert_eq!(table.rows[2][4], "–");
        // Accuracy and parameters as bars; no latency recorded, no curves to overlay.
        let titles: Vec<&str> = section.charts.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(titles, ["accuracy", "parameters"]);
    }

    /// A cached step's section with nothing in it yet.
    fn empty_section(id: &str, kind: &str) -> Section {
        Section {
            id: id.into(),
            kind: kind.into(),
            status: Status::Cached,
            status_word: "cached",
            summary: "",
            seconds: None,
            error: None,
            notes: vec![],
            charts: vec![],
            tables: vec![],
            samples: vec![],
        }
    }

    #[test]
    fn filter_counts_name_the_classes_when_the_data_do() {
        let view = tempfile::tempdir().unwrap();
        let counts = serde_json::json!({"kept_per_class": [3, 0, 5], "total_per_class": [4, 2, 5]});
        std::fs::write(view.path().join("filter.json"), counts.to_string()).unwrap();
        let section = |names: Option<&[&str]>| {
            let meta = crate::data::DatasetMeta {
                sample_shape: vec![2],
                classes: 3,
                class_names: names.map(|n| n.iter().map(|s| s.to_string()).collect()),
                source: "csv".into(),
                vocab: None,
            };
            std::fs::write(view.path().join("meta.json"), serde_json::to_string(&meta).unwrap()).unwrap();
            let mut section = empty_section("kept", "filter");
            filter_section(&mut section, view.path()).unwrap();
            section
        };
        let named = section(Some(&["cat", "dog", "emu"]));
        assert_eq!(named.tables[0].rows[1], ["dog", "0", "2"]);
        assert!(named.charts[0].svg.contains("emu"));
        assert_eq!(section(None).tables[0].rows[2], ["2", "5", "5"]);
    }

    #[test]
    fn a_sweep_gives_one_line_per_combination_of_the_other_parameters() {
        let v = |t: f64, a: f64| {
            BTreeMap::from([("alpha".to_string(), Value::from(a)), ("temperature".to_string(), Value::from(t))])
        };
        let variants = vec![
            ("s-t1-a0p5".to_string(), v(1.0, 0.5)),
            ("s-t4-a0p5".to_string(), v(4.0, 0.5)),
            ("s-t1-a0p9".to_string(), v(1.0, 0.9)),
            ("s-t4-a0p9".to_string(), v(4.0, 0.9)),
        ];
        let report = serde_json::json!({
            "s-t1-a0p5": {"accuracy": 0.1}, "s-t4-a0p5": {"accuracy": 0.2},
            "s-t1-a0p9": {"accuracy": 0.3}, "s-t4-a0p9": {"accuracy": 0.4},
        });
        let sweeps = sweep_series(&variants, &report, "accuracy");
        let over: Vec<&str> = sweeps.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(over, ["alpha", "temperature"]);
        let temperature = &sweeps[1].1;
        assert_eq!(temperature.len(), 2);
        assert_eq!(temperature[0].name, "alpha=0.5");
        assert_eq!(temperature[0].points, [(1.0, 0.1), (4.0, 0.2)]);
    }

    #[test]
    fn samples_are_read_back_from_the_markdown_report() {
        let md = "# r\n\n## Samples from `teacher`\n\n```text\nROMEO:\nhi\n```\n\n```text\nx\n```\n\n## Samples from `s`\n\n```text\ny\n```\n";
        let samples = parse_samples(md);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].texts, ["ROMEO:\nhi", "x"]);
        assert_eq!(samples[1].model, "s");
    }
}

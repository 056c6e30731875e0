//! Workflow files: read, interpolate `${params.x}`, parse each step through the step registry, check references.
//!
//! Everything wrong with a file is reported at once, each problem as `file:line:col: message`. Cycles are the graph
//! layer's business ([`crate::graph`]), since finding them needs the DAG.
//!
//! ```no_run
//! let wf = anbiq::workflow::load("workflows/quickstart.yaml".as_ref(), &[]).unwrap();
//! for step in &wf.steps {
//!     println!("{} ({})", step.id, step.kind);
//! }
//! ```

mod facts;
mod files;
mod header;
mod matrix;
mod overrides;
mod recover;
mod references;
mod resources;
pub mod schema;
mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::config::{self, Diagnostic, Diagnostics, Located, Node, Span};
use crate::steps::{self, OutputDecl, ParseEnv, Step};

pub use overrides::Override;
pub use resources::Resources;

/// A parsed and checked workflow.
#[derive(Debug)]
pub struct Workflow {
    pub path: PathBuf,
    pub name: String,
    pub seed: u64,
    /// `cpu`, `cuda`, `cuda:N` or `auto`, resolved when the run starts.
    pub device: String,
    /// libtorch threads per step; `None` lets the runner divide the machine's cores among parallel steps.
    pub threads: Option<usize>,
    /// Top-level `resources:`, the defaults already merged into every step's.
    pub resources: Resources,
    /// Parameters after `--set` overrides.
    pub params: BTreeMap<String, Node>,
    /// In file order.
    pub steps: Vec<StepDecl>,
}

/// One step as declared in the file.
#[derive(Debug)]
pub struct StepDecl {
    pub id: String,
    pub kind: &'static str,
    /// Where the step's id is written.
    pub span: Span,
    /// The step's configuration after interpolation (for locating errors found later).
    pub node: Node,
    pub step: Box<dyn Step>,
    /// Explicit ordering edges (`after: [a, b]`), with their locations.
    pub after: Vec<(String, Span)>,
    /// The name the step's seed derives from: its `seed:` if it has one, else its own id, or its template's for a
    /// sweep variant (variants differ only in what the matrix changes).
    pub seed_id: String,
    /// For a sweep variant, its matrix values.
    pub matrix: BTreeMap<String, serde_json::Value>,
    /// What the step asks a cluster scheduler for (`resources:`, over the workflow's defaults).
    pub resources: Resources,
}

impl Workflow {
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    /// The index of a step named on the command line, or a message listing the workflow's steps.
    pub fn require_step(&self, id: &str) -> Result<usize, String> {
        self.step_index(id).ok_or_else(|| {
            let known: Vec<&str> = self.steps.iter().map(|s| s.id.as_str()).collect();
            format!("no step `{id}` in {} (steps: {})", self.path.display(), known.join(", "))
        })
    }

    /// The output a reference denotes, or `None` if the step has no such output.
    pub fn resolve_output(&self, step: usize, output: Option<&str>) -> Option<OutputDecl> {
        let outputs = self.steps[step].step.outputs();
        match output {
            None => outputs.into_iter().next(),
            Some(name) => outputs.into_iter().find(|o| o.name == name),
        }
    }

    /// Formats a problem found after loading (e.g. a cycle) at a step's location.
    pub fn diagnostic(&self, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { file: self.path.clone(), span: Some(span), message: message.into() }
    }

    /// The lockfile path: beside the workflow, `<file stem>.lock`.
    pub fn lockfile_path(&self) -> PathBuf {
        let stem = self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| self.name.clone());
        self.path.with_file_name(format!("{stem}.lock"))
    }
}

/// Reads, parses and checks a workflow file, applying `--set` overrides.
pub fn load(path: &Path, overrides: &[Override]) -> Result<Workflow, Diagnostics> {
    let whole_file = |message: String| Diagnostics(vec![Diagnostic::whole_file(path, message)]);
    if path.is_dir() {
        return Err(whole_file("is a directory, not a workflow file".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| whole_file(format!("cannot read: {e}")))?;
    let text = text::decode(&bytes).map_err(|e| Diagnostics::from_located(path, vec![e]))?;
    parse(path, text, overrides)
}

/// Parses workflow text; `path` names the file in messages and anchors relative paths.
pub fn parse(path: &Path, text: &str, overrides: &[Override]) -> Result<Workflow, Diagnostics> {
    let fail = |errors: Vec<Located>| Diagnostics::from_located(path, errors);
    let text = text::check(text).map_err(|e| fail(vec![e]))?;
    match config::parse_yaml(text) {
        Ok(root) => build(path, &root, overrides, BTreeSet::new()).map_err(fail),
        Err(syntax) => Err(fail(after_syntax_error(path, text, syntax, overrides))),
    }
}

/// The syntax errors, and the file's other problems found with the step(s) around the first one cut out
/// ([`recover`]), where that makes the rest parse.
fn after_syntax_error(path: &Path, text: &str, mut syntax: Vec<Located>, overrides: &[Override]) -> Vec<Located> {
    let mut text = text.to_string();
    let mut cut = BTreeSet::new();
    let mut line = syntax.iter().map(|e| e.span.line as usize).min().unwrap_or(1);
    // Each further syntax error (in another step) is reported too, and cut in turn, a few times at most.
    for _ in 0..4 {
        let Some((shorter, ids)) = recover::cut_step(&text, line) else { break };
        text = shorter;
        cut.extend(ids);
        match config::parse_yaml(&text) {
            Ok(root) => {
                if let Err(others) = build(path, &root, overrides, cut) {
                    // Cutting every step leaves `steps:` empty: not a problem of the file.
                    syntax.extend(others.into_iter().filter(|e| !e.message.starts_with("`steps`")));
                }
                break;
            }
            Err(again) => {
                line = again.iter().map(|e| e.span.line as usize).min().unwrap_or(1);
                syntax.extend(again);
            }
        }
    }
    syntax
}

/// A workflow from its YAML tree; `broken`: ids of steps already reported (see [`recover`]).
fn build(
    path: &Path,
    root: &Node,
    overrides: &[Override],
    mut broken: BTreeSet<String>,
) -> Result<Workflow, Vec<Located>> {
    let mut errors: Vec<Located> = Vec::new();
    let header = header::read(root, &mut errors);
    let mut params = header.params;
    overrides::apply(&mut params, overrides, &mut errors);

    let env = ParseEnv { workflow_dir: path.parent().map(Path::to_path_buf).unwrap_or_default() };
    let mut steps = Vec::new();
    // Steps declared but not valid: their errors are reported once, not again at every reference to them.
    if let Some(steps_node) = header.steps {
        steps = parse_steps(steps_node, &params, &env, &mut broken, &mut errors);
    }
    for step in &mut steps {
        // `nodes` spreads a data-parallel step's ranks: as a default it reaches those steps only, at most one node
        // per rank.
        let mut defaults = header.resources.clone();
        defaults.nodes = match step.step.distributed() {
            Some(d) => defaults.nodes.map(|n| n.min(d.ranks as u32)),
            None => None,
        };
        step.resources = step.resources.or(&defaults);
    }

    let mut workflow = Workflow {
        path: path.to_path_buf(),
        name: header.name.unwrap_or_else(|| default_name(path)),
        seed: header.seed,
        device: header.device,
        threads: header.threads,
        resources: header.resources,
        params,
        steps,
    };
    references::check(&workflow, &broken, &mut errors);
    files::check(&workflow, &mut errors);
    if errors.is_empty() {
        facts::check(&workflow, &mut errors);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    workflow.steps.shrink_to_fit();
    Ok(workflow)
}

fn default_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "workflow".into())
}

/// Keys every step may have whatever its kind; the rest belongs to the kind's parser.
const COMMON_STEP_KEYS: &[&str] = &["kind", "after", "matrix", "resources", "seed"];

fn parse_steps(
    steps_node: &Node,
    params: &BTreeMap<String, Node>,
    env: &ParseEnv,
    broken: &mut BTreeSet<String>,
    errors: &mut Vec<Located>,
) -> Vec<StepDecl> {
    let Some(entries) = steps_node.as_map() else {
        errors.push(located(
            steps_node.span,
            format!("`steps` must be a mapping of step id to step, found {}", steps_node.kind_name()),
        ));
        return Vec::new();
    };
    if entries.is_empty() {
        errors.push(located(steps_node.span, "`steps` is empty: a workflow needs at least one step"));
    }
    let mut steps = Vec::new();
    let mut templates = matrix::Templates::new();
    for (key, body) in entries {
        let Some(id) = key.as_str() else {
            errors.push(located(key.span, format!("a step id must be a string, found {}", key.kind_name())));
            continue;
        };
        if !steps::is_identifier(id) {
            errors.push(located(key.span, format!("step id `{id}` may contain only letters, digits, `_` and `-`")));
            continue;
        }
        let Some(matrix_node) = body.get("matrix") else {
            let (body, es) = matrix::interpolate(body, params, None);
            errors.extend(es);
            match parse_step(id, id, key.span, &body, env, errors) {
                Some(step) => steps.push(step),
                None => _ = broken.insert(id.to_string()),
            }
            continue;
        };
        let before = errors.len();
        let variants = matrix::combinations(id, matrix_node, errors);
        if errors.len() > before {
            // A bad matrix is reported once; its variants would only repeat it in other words.
            broken.insert(id.to_string());
            continue;
        }
        for variant in &variants {
            let (body, es) = matrix::interpolate(body, params, Some(variant));
            errors.extend(es);
            match parse_step(&variant.id, id, key.span, &body, env, errors) {
                Some(mut step) => {
                    step.matrix = variant.values.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
                    steps.push(step);
                }
                None => broken.extend([id.to_string(), variant.id.clone()]),
            }
        }
        templates.insert(id.to_string(), variants);
    }
    if !templates.is_empty() {
        matrix::propagate(&mut steps, &mut templates, env, errors);
    }
    steps
}

fn parse_step(
    id: &str,
    seed_id: &str,
    span: Span,
    body: &Node,
    env: &ParseEnv,
    errors: &mut Vec<Located>,
) -> Option<StepDecl> {
    let Some(entries) = body.as_map() else {
        errors.push(located(
            body.span,
            format!("step `{id}` must be a mapping with a `kind`, found {}", body.kind_name()),
        ));
        return None;
    };
    let Some(kind_node) = body.get("kind") else {
        errors.push(located(span, format!("step `{id}` has no `kind` (one of: {})", kind_names())));
        return None;
    };
    let Some(kind_name) = kind_node.as_str() else {
        errors.push(located(kind_node.span, format!("`kind` must be a string, found {}", kind_node.kind_name())));
        return None;
    };
    let Some(kind) = steps::find_kind(kind_name) else {
        errors.push(located(kind_node.span, format!("unknown step kind `{kind_name}` (known: {})", kind_names())));
        return None;
    };

    let after = match body.get("after") {
        None => Vec::new(),
        Some(node) => read_after(node, errors),
    };
    let resources = body.get("resources").map(|node| resources::read(node, errors)).unwrap_or_default();
    // `seed: NAME` names the streams outright: steps (and sweeps) that name the same one draw the same numbers. A bad
    // one is reported like a bad `after` or `resources`, and the rest of the step is still checked.
    let seed_id = match body.get("seed") {
        None => seed_id,
        Some(node) => node.as_str().filter(|name| !name.is_empty()).unwrap_or_else(|| {
            errors.push(located(
                node.span,
                format!(
                    "step `{id}`: `seed` names the streams the step draws from (a non-empty string), found {}",
                    node.kind_name()
                ),
            ));
            seed_id
        }),
    };
    // The kind's parser sees only its own keys, so its `deny_unknown_fields` stays exact.
    let own: Vec<(Node, Node)> =
        entries.iter().filter(|(k, _)| !k.as_str().is_some_and(|k| COMMON_STEP_KEYS.contains(&k))).cloned().collect();
    let config_node = Node { value: config::Value::Map(own), span: body.span };
    match (kind.parse)(&config_node, env) {
        Ok(step) => {
            check_nodes(body, &resources, step.as_ref(), id, errors);
            Some(StepDecl {
                id: id.to_string(),
                kind: kind.name,
                span,
                node: config_node,
                step,
                after,
                seed_id: seed_id.to_string(),
                matrix: BTreeMap::new(),
                resources,
            })
        }
        Err(mut es) => {
            for e in &mut es {
                e.message = format!("step `{id}`: {}", e.message);
            }
            errors.extend(es);
            None
        }
    }
}

/// A step's own `resources.nodes` needs a data-parallel step with at least as many ranks.
fn check_nodes(body: &Node, resources: &Resources, step: &dyn Step, id: &str, errors: &mut Vec<Located>) {
    let (Some(nodes), Some(node)) = (resources.nodes, body.get("resources").and_then(|r| r.get("nodes"))) else {
        return;
    };
    let message = match step.distributed() {
        None => "a step runs as one task on one node unless it is data-parallel (`distributed: {ranks: N}`)".into(),
        Some(d) if nodes as usize > d.ranks => {
            format!("{nodes} nodes for {} ranks: at most one node per rank", d.ranks)
        }
        Some(_) => return,
    };
    errors.push(located(node.span, format!("step `{id}`: `resources.nodes`: {message}")));
}

fn read_after(node: &Node, errors: &mut Vec<Located>) -> Vec<(String, Span)> {
    let items: Vec<&Node> = match node.as_seq() {
        Some(seq) => seq.iter().collect(),
        None => vec![node],
    };
    let mut after = Vec::new();
    for item in items {
        match item.as_str() {
            Some(s) => after.push((s.to_string(), item.span)),
            None => errors.push(located(item.span, format!("`after` lists step ids, found {}", item.kind_name()))),
        }
    }
    after
}

fn kind_names() -> String {
    steps::registry().iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

pub(crate) fn located(span: Span, message: impl Into<String>) -> Located {
    Located { span, message: message.into() }
}

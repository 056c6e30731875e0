//! Sweeps: `matrix:` on a step expands it into one variant per combination of values.
//!
//! ```yaml
//! student:
//!   kind: distill
//!   matrix: {temperature: [1, 4], alpha: [0.5, 0.9]}
//!   loss: {kd: {temperature: "${matrix.temperature}", alpha: "${matrix.alpha}"}}
//!   ...
//! report: {kind: evaluate, data: digits.test, models: [teacher, student]}
//! ```
//! gives steps `student-temperature1-alpha0p5`, …, `student-temperature4-alpha0p9` (readable ids: `.` becomes `p`,
//! a leading `-` becomes `m`). References to the swept step then
//! - **collect** where the field is a list (`models: [teacher, student]` lists every variant), and
//! - **fan out** where the field takes one reference: the referencing step is itself expanded, one variant per
//!   upstream variant (`logits_of_student` → `logits_of_student-temperature1-alpha0p5`, …), and so on downstream.
//!
//! Every variant keeps its template's seed, so variants differ only in what the matrix changes.

use std::collections::{BTreeMap, HashMap};

use super::{located, StepDecl};
use crate::config::{self, Located, Node, Value};
use crate::steps::{self, ParseEnv};

/// The variants of a swept (or fanned-out) step: their ids and matrix values.
pub(super) type Templates = HashMap<String, Vec<Variant>>;

#[derive(Clone, Debug)]
pub(super) struct Variant {
    pub id: String,
    /// `-temperature4-alpha0p9`: appended to downstream ids that fan out over this variant.
    pub suffix: String,
    pub values: BTreeMap<String, Node>,
}

/// The combinations of a `matrix:` node, in key order (first key varies slowest).
pub(super) fn combinations(id: &str, matrix: &Node, errors: &mut Vec<Located>) -> Vec<Variant> {
    let Some(entries) = matrix.as_map() else {
        errors.push(located(
            matrix.span,
            format!("`matrix` must map names to lists of values, found {}", matrix.kind_name()),
        ));
        return Vec::new();
    };
    let mut axes: Vec<(String, Vec<Node>)> = Vec::new();
    for (key, values) in entries {
        let Some(name) = key.as_str().filter(|k| steps::is_identifier(k)) else {
            errors.push(located(key.span, "matrix names use letters, digits, `_` and `-`"));
            continue;
        };
        match values.as_seq() {
            Some(items) if !items.is_empty() => {
                for item in items {
                    if item.scalar_text().is_none() {
                        errors
                            .push(located(item.span, format!("matrix values are scalars, found {}", item.kind_name())));
                    }
                }
                axes.push((name.to_string(), items.to_vec()));
            }
            _ => errors.push(located(values.span, format!("matrix `{name}` must be a non-empty list of values"))),
        }
    }
    if axes.is_empty() {
        if errors.is_empty() {
            errors.push(located(matrix.span, "`matrix` is empty"));
        }
        return Vec::new();
    }
    let mut variants = vec![Variant { id: id.to_string(), suffix: String::new(), values: BTreeMap::new() }];
    for (name, items) in &axes {
        variants = variants
            .into_iter()
            .flat_map(|v| {
                items.iter().map(move |item| {
                    let mut values = v.values.clone();
                    values.insert(name.clone(), item.clone());
                    let suffix = format!("{}-{name}{}", v.suffix, id_text(item));
                    Variant { id: format!("{id}{suffix}"), suffix, values }
                })
            })
            .collect();
    }
    variants
}

/// A value as it can appear in a step id.
fn id_text(value: &Node) -> String {
    let text = value.scalar_text().unwrap_or_default();
    text.chars()
        .enumerate()
        .map(|(i, c)| match c {
            '.' => 'p',
            '-' if i == 0 => 'm',
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => c,
            _ => '_',
        })
        .collect()
}

/// Rewrites references to swept steps: list fields collect every variant, single fields fan the step out.
/// Runs until no reference names a template (bounded, so a cycle through templates stops and is reported by the
/// graph layer).
pub(super) fn propagate(
    steps: &mut Vec<StepDecl>,
    templates: &mut Templates,
    env: &ParseEnv,
    errors: &mut Vec<Located>,
) {
    for _round in 0..=steps.len() {
        let mut changed = false;
        let mut next = Vec::with_capacity(steps.len());
        for decl in steps.drain(..) {
            let inputs = decl.step.inputs();
            let swept: Vec<_> = inputs.iter().filter(|i| templates.contains_key(&i.reference.step)).collect();
            if swept.is_empty() {
                next.push(decl);
                continue;
            }
            changed = true;
            // Collect: list elements (`models[1]`) become one element per variant, highest index first so earlier
            // indices stay valid.
            let mut node = decl.node.clone();
            let mut lists: Vec<(&str, usize, &crate::steps::InputDecl)> =
                swept.iter().filter_map(|i| list_role(&i.role).map(|(field, index)| (field, index, *i))).collect();
            lists.sort_by_key(|l| std::cmp::Reverse(l.1));
            for (field, index, input) in &lists {
                let refs = variant_refs(&templates[&input.reference.step], &input.reference);
                replace_list_element(&mut node, field, *index, refs);
            }
            // Fan out: one copy per combination of the singly-referenced templates' variants (a template named in two
            // fields stays on the same variant in both).
            let single: Vec<_> = swept.iter().filter(|i| list_role(&i.role).is_none()).collect();
            let mut copies = vec![Copy { id: decl.id.clone(), suffix: String::new(), node, chosen: HashMap::new() }];
            let known: &Templates = templates;
            for input in &single {
                let template = input.reference.step.as_str();
                copies = copies
                    .into_iter()
                    .flat_map(|copy| {
                        let choices: Vec<usize> = match copy.chosen.get(template) {
                            Some(&i) => vec![i],
                            None => (0..known[template].len()).collect(),
                        };
                        let fresh = !copy.chosen.contains_key(template);
                        choices.into_iter().map(move |i| {
                            let v = &known[template][i];
                            let mut c = copy.clone();
                            set_field(&mut c.node, &input.role, &with_step(&input.reference, &v.id));
                            if fresh {
                                c.id.push_str(&v.suffix);
                                c.suffix.push_str(&v.suffix);
                                c.chosen.insert(template.to_string(), i);
                            }
                            c
                        })
                    })
                    .collect();
            }
            if single.is_empty() {
                let copy = copies.pop().expect("one copy");
                if let Some(d) = reparse(&decl, copy.id, copy.node, env, errors) {
                    next.push(d);
                }
                continue;
            }
            let mut variants = Vec::new();
            for copy in copies {
                if let Some(d) = reparse(&decl, copy.id.clone(), copy.node, env, errors) {
                    variants.push(Variant { id: copy.id, suffix: copy.suffix, values: BTreeMap::new() });
                    next.push(d);
                }
            }
            templates.insert(decl.id.clone(), variants);
        }
        *steps = next;
        if !changed {
            return;
        }
    }
}

/// One fanned-out copy of a step being rewritten.
#[derive(Clone)]
struct Copy {
    id: String,
    suffix: String,
    node: Node,
    /// Template id → index of the variant this copy uses.
    chosen: HashMap<String, usize>,
}

/// `models[2]` → ("models", 2).
fn list_role(role: &str) -> Option<(&str, usize)> {
    let (field, rest) = role.split_once('[')?;
    Some((field, rest.strip_suffix(']')?.parse().ok()?))
}

fn with_step(reference: &steps::StepRef, step: &str) -> String {
    match &reference.output {
        Some(o) => format!("{step}.{o}"),
        None => step.to_string(),
    }
}

fn variant_refs(variants: &[Variant], reference: &steps::StepRef) -> Vec<String> {
    variants.iter().map(|v| with_step(reference, &v.id)).collect()
}

fn replace_list_element(node: &mut Node, field: &str, index: usize, refs: Vec<String>) {
    let Some(list) = node.get_mut(field) else { return };
    if let Value::Seq(items) = &mut list.value {
        if index < items.len() {
            let span = items[index].span;
            let new: Vec<Node> = refs.into_iter().map(|r| Node::new(Value::Str(r), span)).collect();
            items.splice(index..=index, new);
        }
    }
}

/// Sets the string at a dotted field path (`teacher`, `loss.kd.teacher`).
fn set_field(node: &mut Node, path: &str, value: &str) {
    let mut current = node;
    for part in path.split('.') {
        match current.get_mut(part) {
            Some(next) => current = next,
            None => return,
        }
    }
    current.value = Value::Str(value.to_string());
}

fn reparse(template: &StepDecl, id: String, node: Node, env: &ParseEnv, errors: &mut Vec<Located>) -> Option<StepDecl> {
    let kind = steps::find_kind(template.kind).expect("kind was found at first parse");
    match (kind.parse)(&node, env) {
        Ok(step) => Some(StepDecl {
            id,
            kind: template.kind,
            span: template.span,
            node,
            step,
            after: template.after.clone(),
            seed_id: template.seed_id.clone(),
            matrix: template.matrix.clone(),
            resources: template.resources.clone(),
        }),
        Err(es) => {
            errors.extend(es.into_iter().map(|mut e| {
                e.message = format!("step `{}`: {}", template.id, e.message);
                e
            }));
            None
        }
    }
}

/// Substitutes `${params.*}` and, for a variant, `${matrix.*}` in a step body.
pub(super) fn interpolate(
    body: &Node,
    params: &BTreeMap<String, Node>,
    variant: Option<&Variant>,
) -> (Node, Vec<Located>) {
    let mut node = body.clone();
    let errors = match variant {
        Some(v) => config::interpolate_scopes(&mut node, &[("params", params), ("matrix", &v.values)]),
        None => config::interpolate(&mut node, params),
    };
    (node, errors)
}

//! Files a step reads from outside the store must be there before anything runs, so that `validate` (not a step an
//! hour into a run) finds a missing one, at the field that names it.

use std::collections::BTreeSet;

use super::{located, Workflow};
use crate::config::{Located, Node, Span, Value};

pub(super) fn check(wf: &Workflow, errors: &mut Vec<Located>) {
    // Sweep variants share their template's fields: one error per field and file.
    let mut reported = BTreeSet::new();
    for decl in &wf.steps {
        for file in decl.step.files() {
            if file.path.exists() {
                continue;
            }
            let written = file.written.to_string_lossy();
            let span = scalar_span(&decl.node, &written).unwrap_or(decl.span);
            if !reported.insert((span, file.path.clone())) {
                continue;
            }
            let looked = if file.path == file.written {
                String::new()
            } else {
                format!(" (looked for {}: paths are relative to the workflow file)", file.path.display())
            };
            errors.push(located(span, format!("step `{}`: `{written}` does not exist{looked}", decl.id)));
        }
    }
}

/// Where the string `value` is written in `node` (the first such scalar, in file order).
fn scalar_span(node: &Node, value: &str) -> Option<Span> {
    match &node.value {
        Value::Str(s) if s == value => Some(node.span),
        Value::Seq(items) => items.iter().find_map(|n| scalar_span(n, value)),
        Value::Map(entries) => entries.iter().find_map(|(_, v)| scalar_span(v, value)),
        _ => None,
    }
}

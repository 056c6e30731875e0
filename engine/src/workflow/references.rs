//! Every reference names a step that exists, an output that step has, and a kind the field accepts.

use std::collections::{BTreeSet, HashMap};

use super::{located, Workflow};
use crate::config::Located;

/// `broken`: ids of steps declared with errors of their own; references to them are not reported again.
pub(super) fn check(wf: &Workflow, broken: &BTreeSet<String>, errors: &mut Vec<Located>) {
    let index: HashMap<&str, usize> = wf.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    for decl in &wf.steps {
        for input in decl.step.inputs() {
            let span = crate::steps::field_span(&decl.node, &input.role).unwrap_or(decl.span);
            let r = &input.reference;
            let Some(&target) = index.get(r.step.as_str()) else {
                if broken.contains(&r.step) {
                    continue;
                }
                errors.push(located(
                    span,
                    format!(
                        "step `{}`: `{}` refers to unknown step `{}`{}",
                        decl.id,
                        input.role,
                        r.step,
                        suggest(&r.step, &index)
                    ),
                ));
                continue;
            };
            let Some(output) = wf.resolve_output(target, r.output.as_deref()) else {
                let names: Vec<String> = wf.steps[target].step.outputs().into_iter().map(|o| o.name).collect();
                errors.push(located(
                    span,
                    format!(
                        "step `{}`: `{}` refers to `{r}`, but step `{}` has no output `{}` (its outputs: {})",
                        decl.id,
                        input.role,
                        r.step,
                        r.output.as_deref().unwrap_or(""),
                        names.join(", ")
                    ),
                ));
                continue;
            };
            if !input.accepts.contains(&output.kind) {
                let wanted: Vec<String> = input.accepts.iter().map(|k| k.to_string()).collect();
                errors.push(located(
                    span,
                    format!(
                        "step `{}`: `{}` expects {}, but `{r}` is {}",
                        decl.id,
                        input.role,
                        wanted.join(" or "),
                        output.kind
                    ),
                ));
            }
        }
        for (after, span) in &decl.after {
            if !index.contains_key(after.as_str()) && !broken.contains(after) {
                errors.push(located(
                    *span,
                    format!("step `{}`: `after` names unknown step `{after}`{}", decl.id, suggest(after, &index)),
                ));
            }
        }
    }
}

/// " (did you mean `x`?)" when a known id is one or two edits away.
fn suggest(name: &str, index: &HashMap<&str, usize>) -> String {
    index
        .keys()
        .filter(|k| edit_distance(name, k) <= 2)
        .min_by_key(|k| edit_distance(name, k))
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

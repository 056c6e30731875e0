//! `${params.NAME}` (and `${matrix.NAME}`) substitution in string scalars.
//!
//! Runs on the tree before typed deserialisation, so a whole-string reference
//! takes the parameter's type: `"${params.temperature}"` becomes the integer
//! 4 and then deserialises into a `u32` field.

use super::{Located, Node, Value};
use std::collections::BTreeMap;

/// Substitutes parameters in every string scalar of `node` (map keys are left
/// alone) and returns all problems found. Nodes with errors are left unchanged.
pub fn interpolate(node: &mut Node, params: &BTreeMap<String, Node>) -> Vec<Located> {
    interpolate_scopes(node, &[("params", params)])
}

/// Substitutes `${NAMESPACE.NAME}` for each `(namespace, values)` given, in one
/// pass (so `$${` escapes are undone exactly once).
pub fn interpolate_scopes(node: &mut Node, scopes: &[(&str, &BTreeMap<String, Node>)]) -> Vec<Located> {
    let mut errors = Vec::new();
    walk(node, &Scope { scopes }, &mut errors);
    errors
}

struct Scope<'a> {
    scopes: &'a [(&'a str, &'a BTreeMap<String, Node>)],
}

impl Scope<'_> {
    fn expected(&self) -> String {
        let forms: Vec<String> = self.scopes.iter().map(|(ns, _)| format!("`${{{ns}.NAME}}`")).collect();
        forms.join(" or ")
    }
}

fn walk(node: &mut Node, params: &Scope, errors: &mut Vec<Located>) {
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| walk(n, params, errors)),
        Value::Map(entries) => entries.iter_mut().for_each(|(_, v)| walk(v, params, errors)),
        Value::Str(s) => {
            if !s.contains('$') {
                return;
            }
            let before = errors.len();
            let replacement = substitute(s, params, &mut |msg| {
                errors.push(Located::new(node.span, msg));
            });
            if errors.len() == before {
                // The top node keeps the string's span: errors point at the reference.
                node.value = replacement;
            }
        }
        _ => {}
    }
}

/// Whole-string `${params.x}` → the parameter's value; otherwise the string
/// with each reference rendered as text and `$${` turned into `${`.
fn substitute(s: &str, params: &Scope, error: &mut dyn FnMut(String)) -> Value {
    if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        if !inner.contains('}') {
            return match lookup(inner, params, error) {
                Some(param) => param.value.clone(),
                None => Value::Null,
            };
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                error(format!("unterminated `{tail}`: expected `${{params.NAME}}` (write `$${{` for a literal `${{`)"));
                break;
            };
            if let Some(param) = lookup(&after[..end], params, error) {
                match param.scalar_text() {
                    Some(text) => out.push_str(&text),
                    None => error(format!(
                        "`{}` is a {} and can only be used as a whole value, not inside a longer string",
                        after[..end].trim(),
                        param.kind_name()
                    )),
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Value::Str(out)
}

/// Resolves the text between `${` and `}`.
fn lookup<'p>(inner: &str, scope: &Scope<'p>, error: &mut dyn FnMut(String)) -> Option<&'p Node> {
    let trimmed = inner.trim();
    let found = trimmed
        .split_once('.')
        .and_then(|(ns, name)| scope.scopes.iter().find(|(n, _)| *n == ns).map(|(ns, values)| (*ns, name, *values)));
    let Some((namespace, name, values)) = found.filter(|(_, name, _)| !name.is_empty()) else {
        let hint =
            if trimmed.starts_with("matrix.") { " (`${matrix.…}` works only in a step with `matrix:`)" } else { "" };
        error(format!(
            "malformed reference `${{{inner}}}`: expected {}{hint} (write `$${{` for a literal `${{`)",
            scope.expected()
        ));
        return None;
    };
    let value = values.get(name);
    if value.is_none() {
        let noun = if namespace == "params" { "parameter" } else { "matrix value" };
        let known = if values.is_empty() {
            format!("no {noun}s are defined")
        } else {
            let names: Vec<&str> = values.keys().map(String::as_str).collect();
            format!("known: {}", names.join(", "))
        };
        error(format!("unknown {noun} `{name}` ({known})"));
    }
    value
}

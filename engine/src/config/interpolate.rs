//! `${params.NAME}` substitution in string scalars.
//!
//! Runs on the tree before typed deserialisation, so a whole-string reference
//! takes the parameter's type: `"${params.temperature}"` becomes the integer
//! 4 and then deserialises into a `u32` field.

use super::{Located, Node, Value};
use std::collections::BTreeMap;

const PREFIX: &str = "params.";

/// Substitutes parameters in every string scalar of `node` (map keys are left
/// alone) and returns all problems found. Nodes with errors are left unchanged.
pub fn interpolate(node: &mut Node, params: &BTreeMap<String, Node>) -> Vec<Located> {
    let mut errors = Vec::new();
    walk(node, params, &mut errors);
    errors
}

fn walk(node: &mut Node, params: &BTreeMap<String, Node>, errors: &mut Vec<Located>) {
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
fn substitute(s: &str, params: &BTreeMap<String, Node>, error: &mut dyn FnMut(String)) -> Value {
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
                        "parameter `{}` is a {} and can only be used as a whole value, not inside a longer string",
                        param_name(&after[..end]),
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

fn param_name(inner: &str) -> &str {
    let inner = inner.trim();
    inner.strip_prefix(PREFIX).unwrap_or(inner)
}

/// Resolves the text between `${` and `}`.
fn lookup<'p>(inner: &str, params: &'p BTreeMap<String, Node>, error: &mut dyn FnMut(String)) -> Option<&'p Node> {
    let trimmed = inner.trim();
    let Some(name) = trimmed.strip_prefix(PREFIX).filter(|n| !n.is_empty()) else {
        error(format!(
            "malformed reference `${{{inner}}}`: expected `${{params.NAME}}` (write `$${{` for a literal `${{`)"
        ));
        return None;
    };
    let found = params.get(name);
    if found.is_none() {
        let known = if params.is_empty() {
            "no parameters are defined".to_string()
        } else {
            let names: Vec<&str> = params.keys().map(String::as_str).collect();
            format!("known: {}", names.join(", "))
        };
        error(format!("unknown parameter `{name}` ({known})"));
    }
    found
}

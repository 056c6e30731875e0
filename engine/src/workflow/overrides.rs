//! `--set name=value` on the command line: replaces a declared parameter before interpolation.

use std::collections::BTreeMap;
use std::str::FromStr;

use super::located;
use crate::config::{self, Located, Node, Span};

/// One `name=value` override; the value is read as a YAML scalar (`8` is an integer, `"8"` a string).
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub name: String,
    pub value: String,
}

impl FromStr for Override {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                Ok(Override { name: name.trim().to_string(), value: value.to_string() })
            }
            _ => Err(format!("expected name=value, found `{s}`")),
        }
    }
}

pub(super) fn apply(params: &mut BTreeMap<String, Node>, overrides: &[Override], errors: &mut Vec<Located>) {
    for o in overrides {
        // Errors here have no place in the file: they are reported at 1:1 and name the flag.
        let at = Span { line: 1, col: 1 };
        if !params.contains_key(&o.name) {
            let known: Vec<&str> = params.keys().map(String::as_str).collect();
            errors.push(located(
                at,
                format!("--set {}: the workflow has no parameter `{}` (known: {})", o.name, o.name, known.join(", ")),
            ));
            continue;
        }
        match config::parse_yaml(&o.value) {
            // A mapping on the command line is almost always a typo (`--set a=b: c`); scalars and [lists] are fine.
            Ok(value) if value.as_map().is_some() => {
                errors.push(located(at, format!("--set {}: value must be a scalar or a [list]", o.name)))
            }
            Ok(mut value) => {
                value.span = params[&o.name].span;
                params.insert(o.name.clone(), value);
            }
            Err(es) => errors.push(located(
                at,
                format!(
                    "--set {}: cannot read `{}`: {}",
                    o.name,
                    o.value,
                    es.first().map(|e| e.message.as_str()).unwrap_or("?")
                ),
            )),
        }
    }
}

//! The workflow's top-level keys: `name`, `seed`, `device`, `threads`, `resources`, `params`, `steps`.

use std::collections::BTreeMap;

use super::{located, resources, Resources};
use crate::config::{Located, Node, Value};

pub(super) struct Header<'a> {
    pub name: Option<String>,
    pub seed: u64,
    pub device: String,
    pub threads: Option<usize>,
    /// Defaults for every step's `resources:`.
    pub resources: Resources,
    pub params: BTreeMap<String, Node>,
    pub steps: Option<&'a Node>,
}

pub(super) const KEYS: &[&str] = &["name", "description", "seed", "device", "threads", "resources", "params", "steps"];
const DEFAULT_SEED: u64 = 0;

pub(super) fn read<'a>(root: &'a Node, errors: &mut Vec<Located>) -> Header<'a> {
    let mut header = Header {
        name: None,
        seed: DEFAULT_SEED,
        device: "auto".into(),
        threads: None,
        resources: Resources::default(),
        params: BTreeMap::new(),
        steps: None,
    };
    let Some(entries) = root.as_map() else {
        errors.push(located(root.span, format!("a workflow is a mapping with `steps`, found {}", root.kind_name())));
        return header;
    };
    for (key, value) in entries {
        let Some(k) = key.as_str() else {
            errors.push(located(key.span, format!("top-level keys are strings, found {}", key.kind_name())));
            continue;
        };
        match k {
            "name" => match value.as_str() {
                Some(s) if !s.is_empty() => header.name = Some(s.to_string()),
                _ => errors.push(located(value.span, "`name` must be a non-empty string")),
            },
            "description" => {
                if value.as_str().is_none() {
                    errors.push(located(value.span, "`description` must be a string"));
                }
            }
            "seed" => match value.value {
                Value::Int(i) if i >= 0 => header.seed = i as u64,
                _ => errors.push(located(
                    value.span,
                    format!("`seed` must be a non-negative integer, found {}", value.kind_name()),
                )),
            },
            "device" => match value.as_str() {
                Some(d) if is_device(d) => header.device = d.to_string(),
                _ => errors.push(located(value.span, "`device` must be one of cpu, cuda, cuda:N, auto")),
            },
            "threads" => match value.value {
                Value::Int(i) if i > 0 => header.threads = Some(i as usize),
                _ => errors.push(located(value.span, "`threads` must be a positive integer")),
            },
            "resources" => header.resources = resources::read(value, errors),
            "params" => read_params(value, &mut header.params, errors),
            "steps" => header.steps = Some(value),
            other => errors.push(located(
                key.span,
                format!("unknown top-level key `{other}` (expected one of: {})", KEYS.join(", ")),
            )),
        }
    }
    if header.steps.is_none() {
        errors.push(located(root.span, "the workflow has no `steps`"));
    }
    header
}

fn read_params(node: &Node, params: &mut BTreeMap<String, Node>, errors: &mut Vec<Located>) {
    let Some(entries) = node.as_map() else {
        errors.push(located(node.span, format!("`params` must be a mapping, found {}", node.kind_name())));
        return;
    };
    for (key, value) in entries {
        match key.as_str() {
            Some(k) => {
                params.insert(k.to_string(), value.clone());
            }
            None => errors.push(located(key.span, "parameter names must be strings")),
        }
    }
}

/// Syntax only; whether the device exists is decided when the run starts.
pub(crate) fn is_device(d: &str) -> bool {
    matches!(d, "cpu" | "cuda" | "auto") || d.strip_prefix("cuda:").is_some_and(|n| n.parse::<u32>().is_ok())
}

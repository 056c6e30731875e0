//! `resources:` — what a step asks a cluster scheduler for, per step beside `kind`, with workflow-level defaults:
//!
//! ```yaml
//! resources: {cpus: 2, mem: 4G}                  # top level: defaults for every step
//! steps:
//!   teacher: {kind: train, ..., resources: {gpus: 1, mem: 16G, time: "02:00:00"}}
//! ```
//! Only the Slurm executor reads them (`cpus` → `--cpus-per-task`, `gpus` → `--gres=gpu:N`, `mem` → `--mem`,
//! `time` → `--time`; a data-parallel step's `gpus` → `--gpus-per-task` and `nodes` → `--nodes`); they are not part
//! of any cache key, since they do not change what a step computes.

use serde::Serialize;

use super::located;
use crate::config::{Located, Node, Value};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Resources {
    /// CPU cores for the step's job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// GPUs for the step's job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// Memory per node in Slurm's syntax: a number of megabytes, or with a K, M, G or T suffix (`16G`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// Time limit in Slurm's syntax: minutes, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Nodes a data-parallel step's ranks spread over (`--nodes`); other steps run as one task on one node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u32>,
}

pub(super) const KEYS: &[&str] = &["cpus", "gpus", "mem", "time", "nodes"];

impl Resources {
    /// Each field from `self`, else from `defaults`.
    pub fn or(&self, defaults: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.or(defaults.cpus),
            gpus: self.gpus.or(defaults.gpus),
            mem: self.mem.clone().or_else(|| defaults.mem.clone()),
            time: self.time.clone().or_else(|| defaults.time.clone()),
            nodes: self.nodes.or(defaults.nodes),
        }
    }
}

/// Reads a `resources:` mapping, reporting every problem at its value.
pub(super) fn read(node: &Node, errors: &mut Vec<Located>) -> Resources {
    let mut r = Resources::default();
    let Some(entries) = node.as_map() else {
        errors.push(located(
            node.span,
            format!("`resources` must be a mapping like {{cpus: 4, gpus: 1, mem: 16G}}, found {}", node.kind_name()),
        ));
        return r;
    };
    for (key, value) in entries {
        let Some(k) = key.as_str() else {
            errors.push(located(key.span, "`resources` keys are strings"));
            continue;
        };
        match k {
            "cpus" => match value.as_i64() {
                Some(n) if n >= 1 && n <= u32::MAX as i64 => r.cpus = Some(n as u32),
                _ => errors.push(located(value.span, "`resources.cpus` must be a positive integer")),
            },
            "gpus" => match value.as_i64() {
                Some(n) if n >= 0 && n <= u32::MAX as i64 => r.gpus = Some(n as u32),
                _ => errors.push(located(value.span, "`resources.gpus` must be a non-negative integer")),
            },
            "nodes" => match value.as_i64() {
                Some(n) if n >= 1 && n <= u32::MAX as i64 => r.nodes = Some(n as u32),
                _ => errors.push(located(value.span, "`resources.nodes` must be a positive integer")),
            },
            "mem" => match scalar(value) {
                Some(m) if is_mem(&m) => r.mem = Some(m),
                _ => errors.push(located(
                    value.span,
                    "`resources.mem` must be megabytes or a size with a K, M, G or T suffix, like 16G",
                )),
            },
            "time" => match scalar(value) {
                Some(t) if is_time(&t) => r.time = Some(t),
                _ => errors.push(located(
                    value.span,
                    "`resources.time` must be minutes or \"HH:MM:SS\" (also MM:SS, D-HH, D-HH:MM, D-HH:MM:SS)",
                )),
            },
            other => errors.push(located(
                key.span,
                format!("unknown key `{other}` in `resources` (expected one of: {})", KEYS.join(", ")),
            )),
        }
    }
    r
}

fn scalar(node: &Node) -> Option<String> {
    match &node.value {
        Value::Int(i) if *i >= 0 => Some(i.to_string()),
        Value::Str(s) => Some(s.trim().to_string()),
        _ => None,
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_mem(s: &str) -> bool {
    let number = s.strip_suffix(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']).unwrap_or(s);
    digits(number) && number.parse::<u64>().is_ok_and(|n| n > 0)
}

fn is_time(s: &str) -> bool {
    if matches!(s, "UNLIMITED" | "INFINITE") {
        return true;
    }
    let (days, rest) = match s.split_once('-') {
        Some((d, rest)) => (Some(d), rest),
        None => (None, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    days.is_none_or(digits) && parts.iter().all(|p| digits(p)) && (1..=3).contains(&parts.len())
}

#[cfg(test)]
mod tests {
    use super::{is_mem, is_time};

    #[test]
    fn slurm_sizes_and_times() {
        for ok in ["16G", "512", "4096M", "1T", "64k"] {
            assert!(is_mem(ok), "{ok}");
        }
        for bad in ["", "G", "16GB", "1.5G", "0", "-1G"] {
            assert!(!is_mem(bad), "{bad}");
        }
        for ok in ["30", "02:00:00", "10:00", "1-00", "1-12:00", "2-00:00:00", "INFINITE"] {
            assert!(is_time(ok), "{ok}");
        }
        for bad in ["", "2h", "1:2:3:4", "a-01", "-1", "01::00"] {
            assert!(!is_time(bad), "{bad}");
        }
    }
}

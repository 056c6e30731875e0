//! Field-level differences between two JSON values (configs, parameters, metrics), for `plan` and `diff` messages.

use serde_json::Value;

/// Appends "NOUN `a.b`: old → new" for each leaf that differs (`noun` says what the values are: `config`, …).
pub fn diff_json(noun: &str, path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) => diff_json(noun, &join(k), va, vb, out),
                    None => out.push(format!("{noun} `{}` removed (was {va})", join(k))),
                }
            }
            for (k, vb) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                out.push(format!("{noun} `{}` added: {vb}", join(k)));
            }
        }
        _ if old != new => out.push(format!("{noun} `{}`: {old} → {new}", if path.is_empty() { "." } else { path })),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_changed_leaves() {
        let mut out = Vec::new();
        let old = json!({"a": 1, "m": {"h": [1, 2]}, "gone": true});
        let new = json!({"a": 1, "m": {"h": [3]}, "new": 2});
        diff_json("config", "", &old, &new, &mut out);
        assert_eq!(out, vec!["config `m.h`: [1,2] → [3]", "config `gone` removed (was true)", "config `new` added: 2"]);
    }
}

//! `anbiq_describe`: the plugin's own account of itself (name, kind, call style, parameters), and binding the
//! parameters a workflow gives against it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The JSON a plugin's `anbiq_describe` returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Describe {
    pub name: String,
    /// Only `loss` for now.
    pub kind: String,
    pub style: Style,
    /// What the loss compares: `logits` (default) or `embeddings` (a sentence encoder's).
    #[serde(default)]
    pub inputs: Inputs,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub params: Vec<ParamSpec>,
}

/// How the host calls the plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// `anbiq_loss(student, teacher, labels) -> handle`, computing with host tensor functions.
    Tensor,
    /// `anbiq_loss_dense(student, teacher, labels, batch, classes, grad) -> f32` on copies in guest memory.
    Dense,
}

/// What a loss plugin is handed as `student` and `teacher`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Inputs {
    /// Logits `[B, C]` (or `[B, T, V]`) and labels.
    #[default]
    Logits,
    /// Sentence embeddings `[B, d]`, and an empty `[0]` labels tensor.
    Embeddings,
}

impl Style {
    pub fn export(self) -> &'static str {
        match self {
            Style::Tensor => "anbiq_loss",
            Style::Dense => "anbiq_loss_dense",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// Absent: the parameter is required.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Float,
    Int,
    Bool,
}

impl ParamSpec {
    /// The value as the f64 the plugin reads through `anbiq::param`.
    fn value(&self, v: &serde_json::Value) -> Result<f64, String> {
        let x = match (self.ty, v) {
            (ParamType::Bool, serde_json::Value::Bool(b)) => return Ok(if *b { 1.0 } else { 0.0 }),
            (ParamType::Float, serde_json::Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            (ParamType::Int, serde_json::Value::Number(n)) => match n.as_i64() {
                Some(i) if i.unsigned_abs() < (1 << 53) => i as f64,
                _ => return Err(format!("must be an integer, got {v}")),
            },
            (ty, _) => return Err(format!("must be {}, got {v}", ty.article())),
        };
        if !x.is_finite() {
            return Err(format!("must be finite, got {v}"));
        }
        if let Some(min) = self.min {
            if x < min {
                return Err(format!("must be at least {min}, got {v}"));
            }
        }
        if let Some(max) = self.max {
            if x > max {
                return Err(format!("must be at most {max}, got {v}"));
            }
        }
        Ok(x)
    }
}

impl ParamType {
    fn article(self) -> &'static str {
        match self {
            ParamType::Float => "a number",
            ParamType::Int => "an integer",
            ParamType::Bool => "true or false",
        }
    }
}

impl Describe {
    pub fn parse(json: &[u8]) -> Result<Describe, String> {
        let d: Describe = serde_json::from_slice(json).map_err(|e| format!("malformed describe JSON: {e}"))?;
        d.check()?;
        Ok(d)
    }

    /// Internal consistency: a kind the host knows, names that are names, defaults of the declared type.
    fn check(&self) -> Result<(), String> {
        let is_name = |s: &str| {
            !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !is_name(&self.name) {
            return Err(format!("describe: `name` {:?} is not a name (letters, digits, `_`, `-`)", self.name));
        }
        if self.kind != "loss" {
            return Err(format!("describe: `kind` is {:?}; this host runs `loss` plugins", self.kind));
        }
        if self.inputs == Inputs::Embeddings && self.style != Style::Tensor {
            return Err("describe: `inputs: embeddings` goes with `style: tensor`".into());
        }
        for (i, p) in self.params.iter().enumerate() {
            if !is_name(&p.name) {
                return Err(format!("describe: parameter name {:?} is not a name", p.name));
            }
            if self.params[..i].iter().any(|q| q.name == p.name) {
                return Err(format!("describe: parameter `{}` is declared twice", p.name));
            }
            if let Some(d) = &p.default {
                p.value(d).map_err(|e| format!("describe: the default of parameter `{}` {e}", p.name))?;
            }
        }
        Ok(())
    }

    /// The parameter values for a call: the given ones, checked, and defaults for the rest. Errors name the
    /// parameter (or are about the whole map, with an empty name).
    pub fn bind(&self, given: &BTreeMap<String, serde_json::Value>) -> Result<Vec<(String, f64)>, (String, String)> {
        for name in given.keys() {
            if !self.params.iter().any(|p| &p.name == name) {
                let known: Vec<_> = self.params.iter().map(|p| format!("`{}`", p.name)).collect();
                let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
                return Err((
                    name.clone(),
                    format!("plugin `{}` has no parameter `{name}` (it has {known})", self.name),
                ));
            }
        }
        self.params
            .iter()
            .map(|p| {
                let v = match (given.get(&p.name), &p.default) {
                    (Some(v), _) | (None, Some(v)) => p.value(v).map_err(|e| (p.name.clone(), e))?,
                    (None, None) => {
                        return Err((p.name.clone(), format!("plugin `{}` needs parameter `{}`", self.name, p.name)))
                    }
                };
                Ok((p.name.clone(), v))
            })
            .collect()
    }
}

impl Describe {
    /// Every declared parameter with its value for `given` (defaults filled in), typed as declared: a float `2` and
    /// `2.0` are one value, so they are one cache key.
    pub fn canonical(
        &self,
        given: &BTreeMap<String, serde_json::Value>,
    ) -> Result<BTreeMap<String, serde_json::Value>, (String, String)> {
        let bound = self.bind(given)?;
        Ok(self
            .params
            .iter()
            .zip(bound)
            .map(|(spec, (name, x))| {
                let value = match spec.ty {
                    ParamType::Float => serde_json::json!(x),
                    ParamType::Int => serde_json::json!(x as i64),
                    ParamType::Bool => serde_json::json!(x != 0.0),
                };
                (name, value)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kd() -> Describe {
        Describe::parse(
            br#"{"name":"kd","kind":"loss","style":"tensor","params":[
                {"name":"temperature","type":"float","default":4,"min":0.0001},
                {"name":"alpha","type":"float","default":0.9,"min":0,"max":1}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn binds_defaults_and_given_values() {
        let d = kd();
        let given: BTreeMap<String, serde_json::Value> = [("temperature".to_string(), serde_json::json!(2))].into();
        assert_eq!(d.bind(&given).unwrap(), [("temperature".to_string(), 2.0), ("alpha".to_string(), 0.9)]);
        let bad: BTreeMap<String, serde_json::Value> = [("alpha".to_string(), serde_json::json!(2))].into();
        assert_eq!(d.bind(&bad).unwrap_err().1, "must be at most 1, got 2");
        let unknown: BTreeMap<String, serde_json::Value> = [("beta".to_string(), serde_json::json!(1))].into();
        assert!(d.bind(&unknown).unwrap_err().1.contains("has no parameter `beta` (it has `temperature`, `alpha`)"));
    }

    #[test]
    fn canonical_params_fill_defaults_and_normalise_numbers() {
        let d = kd();
        let none = BTreeMap::new();
        let int: BTreeMap<String, serde_json::Value> = [("temperature".to_string(), serde_json::json!(4))].into();
        let float: BTreeMap<String, serde_json::Value> = [("temperature".to_string(), serde_json::json!(4.0))].into();
        let all = d.canonical(&none).unwrap();
        assert_eq!(serde_json::to_string(&all).unwrap(), r#"{"alpha":0.9,"temperature":4.0}"#);
        assert_eq!(d.canonical(&int).unwrap(), all);
        assert_eq!(d.canonical(&float).unwrap(), all);
    }

    #[test]
    fn rejects_lies_and_garbage() {
        assert!(Describe::parse(b"{not json").unwrap_err().contains("malformed describe JSON"));
        let wrong_default =
            br#"{"name":"x","kind":"loss","style":"dense","params":[{"name":"t","type":"int","default":"four"}]}"#;
        assert!(Describe::parse(wrong_default).unwrap_err().contains("default of parameter `t` must be an integer"));
        assert!(Describe::parse(br#"{"name":"x","kind":"metric","style":"dense"}"#).unwrap_err().contains("kind"));
    }
}

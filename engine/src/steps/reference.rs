//! `digits.train`, `teacher`: how one step's config names another step's output.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A reference to a step's output: `step` alone means the step's default (first) output.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepRef {
    pub step: String,
    pub output: Option<String>,
}

impl StepRef {
    pub fn parse(text: &str) -> Result<StepRef, String> {
        let (step, output) = match text.split_once('.') {
            Some((s, o)) => (s, Some(o)),
            None => (text, None),
        };
        if !is_identifier(step) {
            return Err(format!(
                "`{text}` is not a step reference: expected `step` or `step.output` (letters, digits, `_`, `-`)"
            ));
        }
        if let Some(o) = output {
            if !is_identifier(o) {
                return Err(format!("`{text}` is not a step reference: `{o}` is not an output name"));
            }
        }
        Ok(StepRef { step: step.to_string(), output: output.map(str::to_string) })
    }
}

/// Step ids and output names: non-empty, ASCII letters, digits, `_` and `-` (dots separate step from output).
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl fmt::Display for StepRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.output {
            Some(o) => write!(f, "{}.{}", self.step, o),
            None => f.write_str(&self.step),
        }
    }
}

impl<'de> Deserialize<'de> for StepRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        StepRef::parse(&text).map_err(de::Error::custom)
    }
}

impl schemars::JsonSchema for StepRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StepRef".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)?$",
            "description": "Another step's output: `step` (its first output) or `step.output` (`digits.train`)."
        })
    }
}

impl Serialize for StepRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_step_and_output() {
        assert_eq!(
            StepRef::parse("digits.train").unwrap(),
            StepRef { step: "digits".into(), output: Some("train".into()) }
        );
        assert_eq!(StepRef::parse("teacher").unwrap().output, None);
        assert!(StepRef::parse("a.b.c").is_err());
        assert!(StepRef::parse("").is_err());
        assert!(StepRef::parse("has space").is_err());
    }
}

/// A field that takes one reference or a list of them (`teacher: t` or `teacher: [t1, t2]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OneOrMany {
    One(StepRef),
    Many(Vec<StepRef>),
}

impl OneOrMany {
    /// Each reference with its role: `field` alone, or `field[i]` for a list.
    pub fn roles(&self, field: &str) -> Vec<(String, &StepRef)> {
        match self {
            OneOrMany::One(r) => vec![(field.to_string(), r)],
            OneOrMany::Many(rs) => rs.iter().enumerate().map(|(i, r)| (format!("{field}[{i}]"), r)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            OneOrMany::One(_) => 1,
            OneOrMany::Many(rs) => rs.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a step reference or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                StepRef::parse(v).map(OneOrMany::One).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut refs = Vec::new();
                while let Some(r) = seq.next_element::<StepRef>()? {
                    refs.push(r);
                }
                Ok(OneOrMany::Many(refs))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl schemars::JsonSchema for OneOrMany {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OneOrMany".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let one = generator.subschema_for::<StepRef>();
        schemars::json_schema!({
            "anyOf": [one, {"type": "array", "items": one}],
            "description": "One step reference or a list of them."
        })
    }
}

impl Serialize for OneOrMany {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OneOrMany::One(r) => r.serialize(s),
            OneOrMany::Many(rs) => rs.serialize(s),
        }
    }
}

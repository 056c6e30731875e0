//! The error type of the [`Node`] deserializer and how it finds its position.

use super::{Node, Span, Value};
use serde::de::{self, Expected, Unexpected};
use std::fmt;

/// A deserialisation error. `span` is filled in by the innermost node that
/// sees the error; `hint` lets an enclosing node find the culprit when the
/// error was raised while serde replayed buffered content, away from any node.
#[derive(Debug)]
pub(super) struct Error {
    pub span: Option<Span>,
    pub message: String,
    hint: Option<Hint>,
}

/// What the error is about, in terms that can be searched for in a subtree.
#[derive(Debug)]
enum Hint {
    /// A mapping key (unknown field).
    Key(String),
    /// A string used as a key or a value (unknown variant).
    Name(String),
    /// A scalar with this value (wrong type or value).
    Scalar(Value),
}

impl Error {
    pub fn at(span: Span, message: impl Into<String>) -> Self {
        Error { span: Some(span), message: message.into(), hint: None }
    }

    fn hinted(message: String, hint: Option<Hint>) -> Self {
        Error { span: None, message, hint }
    }

    /// Gives the error a position inside `node` unless it already has one:
    /// the single node in the subtree matching the hint, or else `node` itself.
    pub fn locate_in(mut self, node: &Node) -> Self {
        if self.span.is_none() {
            let found = self.hint.as_ref().and_then(|hint| {
                let mut spans = Vec::new();
                find(node, hint, &mut spans);
                (spans.len() == 1).then(|| spans[0])
            });
            self.span = Some(found.unwrap_or(node.span));
        }
        self
    }
}

fn find(node: &Node, hint: &Hint, out: &mut Vec<Span>) {
    let hit = match hint {
        Hint::Scalar(v) => node.value == *v,
        Hint::Name(name) => node.as_str() == Some(name),
        Hint::Key(_) => false,
    };
    if hit {
        out.push(node.span);
    }
    match &node.value {
        Value::Seq(items) => items.iter().for_each(|n| find(n, hint, out)),
        Value::Map(entries) => {
            for (k, v) in entries {
                match hint {
                    Hint::Key(name) if k.as_str() == Some(name) => out.push(k.span),
                    Hint::Key(_) => {}
                    _ => find(k, hint, out),
                }
                find(v, hint, out);
            }
        }
        _ => {}
    }
}

fn scalar_hint(unexp: &Unexpected) -> Option<Hint> {
    let value = match *unexp {
        Unexpected::Bool(b) => Value::Bool(b),
        Unexpected::Signed(i) => Value::Int(i),
        Unexpected::Unsigned(u) => Value::Int(i64::try_from(u).ok()?),
        Unexpected::Float(f) => Value::Float(f),
        Unexpected::Str(s) => Value::Str(s.to_string()),
        Unexpected::Char(c) => Value::Str(c.to_string()),
        Unexpected::Unit => Value::Null,
        _ => return None,
    };
    Some(Hint::Scalar(value))
}

/// YAML words for what serde calls "unit value" and "map".
fn describe(unexp: &Unexpected) -> String {
    match unexp {
        Unexpected::Unit => "null".to_string(),
        Unexpected::Map => "mapping".to_string(),
        other => other.to_string(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::hinted(msg.to_string(), None)
    }

    // "expected X, found Y" reads better in a config file than serde's
    // "invalid type: Y, expected X".
    fn invalid_type(unexp: Unexpected, exp: &dyn Expected) -> Self {
        let message = format!("expected {exp}, found {}", describe(&unexp));
        Error::hinted(message, scalar_hint(&unexp))
    }

    fn invalid_value(unexp: Unexpected, exp: &dyn Expected) -> Self {
        Self::invalid_type(unexp, exp)
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let e: serde::de::value::Error = de::Error::unknown_field(field, expected);
        Error::hinted(e.to_string(), Some(Hint::Key(field.to_string())))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let e: serde::de::value::Error = de::Error::unknown_variant(variant, expected);
        Error::hinted(e.to_string(), Some(Hint::Name(variant.to_string())))
    }
}

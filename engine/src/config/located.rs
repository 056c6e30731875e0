//! An error message tied to a position in the source.

use super::Span;
use std::fmt;

/// A message at a [`Span`]; displays as `line:col: message`.
///
/// The file name is added later by [`Diagnostic`](super::Diagnostic), because
/// parsing and deserialisation only ever see text.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub span: Span,
    pub message: String,
}

impl Located {
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Located { span, message: message.into() }
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.span, self.message)
    }
}

impl std::error::Error for Located {}

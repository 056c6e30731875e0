//! Source positions.

use std::fmt;

/// A 1-based `line:col` position in a YAML source file.
///
/// Ordering is (line, col), so diagnostics sort in reading order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Span {
    pub line: u32,
    pub col: u32,
}

impl Span {
    pub const fn new(line: u32, col: u32) -> Self {
        Span { line, col }
    }

    /// Converts a yaml-rust2 marker (1-based line, 0-based column) to a span.
    pub(crate) fn from_marker(m: &yaml_rust2::scanner::Marker) -> Self {
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Span::new(clamp(m.line().max(1)), clamp(m.col()).saturating_add(1))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

//! File-qualified diagnostics, the form in which problems reach the user.

use super::{Located, Span};
use std::fmt;
use std::path::PathBuf;

/// One problem in one file: `file:line:col: message`, or `file: message`
/// when the problem has no position (e.g. the file could not be read).
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub span: Option<Span>,
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at the position of `located`.
    pub fn at(file: impl Into<PathBuf>, located: Located) -> Self {
        Diagnostic { file: file.into(), span: Some(located.span), message: located.message }
    }

    /// A diagnostic about the file as a whole.
    pub fn whole_file(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Diagnostic { file: file.into(), span: None, message: message.into() }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.span {
            Some(span) => write!(f, "{}:{}: {}", self.file.display(), span, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for Diagnostic {}

/// All problems found, so a user can fix a workflow in one round trip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_located(file: impl Into<PathBuf>, located: Vec<Located>) -> Self {
        let file = file.into();
        Diagnostics(located.into_iter().map(|l| Diagnostic::at(file.clone(), l)).collect())
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub fn extend(&mut self, diagnostics: impl IntoIterator<Item = Diagnostic>) {
        self.0.extend(diagnostics);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// `Ok(())` when empty, so callers can write `diags.into_result()?`.
    pub fn into_result(self) -> Result<(), Diagnostics> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// Display order: files in the order first reported, then by position
    /// (whole-file messages first). Stable, so equal positions keep their order.
    fn sorted(&self) -> Vec<&Diagnostic> {
        let mut files: Vec<&PathBuf> = Vec::new();
        for d in &self.0 {
            if !files.contains(&&d.file) {
                files.push(&d.file);
            }
        }
        let rank = |d: &Diagnostic| files.iter().position(|f| **f == d.file).unwrap_or(0);
        let mut out: Vec<&Diagnostic> = self.0.iter().collect();
        out.sort_by_key(|d| (rank(d), d.span));
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.sorted().into_iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Vec<Diagnostic>> for Diagnostics {
    fn from(v: Vec<Diagnostic>) -> Self {
        Diagnostics(v)
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl Extend<Diagnostic> for Diagnostics {
    fn extend<I: IntoIterator<Item = Diagnostic>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_sorts_by_position_within_file() {
        let mut d = Diagnostics::from_located(
            "wf.yaml",
            vec![Located::new(Span::new(7, 2), "late"), Located::new(Span::new(3, 9), "early")],
        );
        d.push(Diagnostic::whole_file("wf.yaml", "general"));
        d.push(Diagnostic::at("b.yaml", Located::new(Span::new(1, 1), "other")));
        assert_eq!(d.len(), 4);
        assert_eq!(d.to_string(), "wf.yaml: general\nwf.yaml:3:9: early\nwf.yaml:7:2: late\nb.yaml:1:1: other");
    }
}

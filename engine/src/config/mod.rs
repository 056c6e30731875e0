//! Workflow configuration: YAML with positions, typed via serde, errors as
//! `file:line:col: message`.

mod diagnostic;
mod located;
mod span;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use located::Located;
pub use span::Span;

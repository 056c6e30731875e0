//! Workflow configuration: YAML with positions, typed via serde, errors as
//! `file:line:col: message`.

mod de;
mod de_error;
mod diagnostic;
mod located;
mod node;
mod parse;
mod span;

pub use de::from_node;
pub use diagnostic::{Diagnostic, Diagnostics};
pub use located::Located;
pub use node::{Node, Value};
pub use parse::parse_yaml;
pub use span::Span;

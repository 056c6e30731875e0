//! Workflow configuration: YAML with positions, typed via serde, errors as
//! `file:line:col: message`.
//!
//! serde_yaml stops at the first error and reports no positions for semantic
//! errors, so loading is split in three steps:
//!
//! 1. [`parse_yaml`] turns text into a [`Node`] tree where every value (and
//!    every mapping key) carries its [`Span`]. Syntax errors and all duplicate
//!    keys are reported together.
//! 2. [`interpolate`] substitutes `${params.NAME}` in string scalars.
//! 3. [`from_node`] deserialises any `serde::Deserialize` type from the tree; its
//!    error points at the innermost node involved (the key of an unknown field,
//!    the value of a wrong type, the mapping missing a field).
//!
//! Callers attach the file name with [`Diagnostic`] and collect problems from
//! several steps or files in [`Diagnostics`].
//!
//! ```
//! use anbiq::config::{from_node, interpolate, parse_yaml, Diagnostics};
//! use std::collections::BTreeMap;
//!
//! #[derive(serde::Deserialize, Debug)]
//! #[serde(deny_unknown_fields)]
//! struct Train { epochs: u32, temperature: f64 }
//!
//! let mut node = parse_yaml("epochs: 3\ntemperature: \"${params.t}\"\n").unwrap();
//! let params = BTreeMap::from([("t".to_string(), parse_yaml("4").unwrap())]);
//! assert!(interpolate(&mut node, &params).is_empty());
//! let train: Train = from_node(&node).unwrap();
//! assert_eq!(train.temperature, 4.0);
//!
//! let bad = parse_yaml("epochs: 3\ntemperature: 2\nlr: 0.1\n").unwrap();
//! let err = from_node::<Train>(&bad).unwrap_err();
//! let diags = Diagnostics::from_located("train.yaml", vec![err]);
//! assert_eq!(
//!     diags.to_string(),
//!     "train.yaml:3:1: unknown field `lr`, expected `epochs` or `temperature`"
//! );
//! ```

mod de;
mod de_error;
mod diagnostic;
mod interpolate;
mod located;
mod node;
mod parse;
mod span;

#[cfg(test)]
mod tests;

pub use de::from_node;
pub use diagnostic::{Diagnostic, Diagnostics};
pub use interpolate::{interpolate, interpolate_scopes};
pub use located::Located;
pub use node::{Node, Value};
pub use parse::parse_yaml;
pub use span::Span;

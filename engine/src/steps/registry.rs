//! The name-keyed table of step kinds: YAML's `kind: train` is looked up here, nowhere else.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::Step;
use crate::config::{from_node, Located, Node, Span, Value};

/// What a step's parser may know about the workflow around it.
#[derive(Clone, Debug)]
pub struct ParseEnv {
    /// Directory of the workflow file: relative paths in step configs are resolved against it.
    pub workflow_dir: PathBuf,
}

impl ParseEnv {
    /// Resolves a path written in a workflow file.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.workflow_dir.join(path)
        }
    }
}

/// A step kind: its YAML name, a one-line summary for `--help`, and the parser that builds a [`Step`] from the step's
/// configuration node (without the `kind` and `after` keys, which the workflow layer owns).
pub struct StepKind {
    pub name: &'static str,
    /// Enters the key of every step of this kind. Bump it whenever what the kind writes for the same inputs can
    /// change (numerics, defaults, what it stores): stores built before then rerun exactly these steps and their
    /// dependants instead of serving outputs the current code would not write. `tests/golden/` catches a change that
    /// forgot to.
    pub version: u32,
    pub summary: &'static str,
    pub parse: ParseFn,
    /// The JSON Schema of the kind's own keys ([`schema_of`] its config type), for `anbiq schema`.
    pub schema: SchemaFn,
}

/// The schema of a kind's configuration, its nested types added to the generator's definitions.
pub type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

/// The [`SchemaFn`] of a kind whose parser deserialises `C` ([`parse_config`]): the schema is derived from the same
/// type, so it cannot drift from what the parser accepts.
pub fn schema_of<C: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    C::json_schema(generator)
}

/// Builds a step from its configuration node, or says everything wrong with it.
pub type ParseFn = fn(&Node, &ParseEnv) -> Result<Box<dyn Step>, Vec<Located>>;

/// Every step kind anbiq knows.
const KINDS: &[StepKind] = &[
    super::dataset::KIND,
    super::train::KIND,
    super::import::KIND,
    super::infer::KIND,
    super::filter::KIND,
    super::distill::KIND,
    super::evaluate::KIND,
    super::generate::KIND,
    super::prune::KIND,
];

pub fn registry() -> &'static [StepKind] {
    KINDS
}

pub fn find_kind(name: &str) -> Option<&'static StepKind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The usual parser: deserialise the config with located errors, then let the config check itself. An error inside
/// a field's value names the field (`` `model`: unknown variant `transformer` ``): serde's own messages do not.
pub fn parse_config<C: DeserializeOwned>(node: &Node) -> Result<C, Vec<Located>> {
    from_node(node).map_err(|mut e| {
        if let Some(field) = field_containing(node, e.span) {
            e.message = format!("`{field}`: {}", e.message);
        }
        vec![e]
    })
}

/// The top-level key whose value holds the node at `span`.
fn field_containing(node: &Node, span: Span) -> Option<&str> {
    fn contains(n: &Node, span: Span) -> bool {
        n.span == span
            || match &n.value {
                Value::Seq(items) => items.iter().any(|i| contains(i, span)),
                Value::Map(entries) => entries.iter().any(|(k, v)| k.span == span || contains(v, span)),
                _ => false,
            }
    }
    node.as_map()?.iter().find(|(_, v)| contains(v, span)).and_then(|(k, _)| k.as_str())
}

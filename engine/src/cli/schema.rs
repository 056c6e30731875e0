//! `anbiq schema`: the workflow format's JSON Schema, for editors.

use anyhow::Context as _;

use super::args::SchemaArgs;
use super::{CliError, EXIT_OK};

pub fn schema(args: SchemaArgs) -> Result<i32, CliError> {
    let text = crate::workflow::schema::to_text();
    match &args.output {
        Some(path) => crate::run::store::write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(EXIT_OK)
}

//! `anbiq graph`: DOT or Mermaid on stdout.

use super::args::GraphArgs;
use super::{load, CliError, EXIT_OK};
use crate::graph::{render, Dag};

pub fn graph(args: GraphArgs) -> Result<i32, CliError> {
    let wf = load(&args.workflow, &[])?;
    let dag = Dag::build(&wf)?;
    print!("{}", render::render(&wf, &dag, args.format));
    Ok(EXIT_OK)
}

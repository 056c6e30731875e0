//! `anbiq diff A.lock B.lock`: what differs between two recorded runs.

use anyhow::Context as _;

use super::args::DiffArgs;
use super::{CliError, EXIT_FAILED, EXIT_OK};
use crate::run::{self, Lockfile};

pub fn diff(args: DiffArgs) -> Result<i32, CliError> {
    let read = |p: &std::path::Path| -> anyhow::Result<Lockfile> {
        Lockfile::read(p)?.with_context(|| format!("{}: no such lockfile", p.display()))
    };
    let (a, b) = (read(&args.a)?, read(&args.b)?);
    let lines = run::diff(&a, &b);
    if lines.is_empty() {
        println!("no differences");
        return Ok(EXIT_OK);
    }
    for line in &lines {
        println!("{line}");
    }
    // Like diff(1): 1 means "they differ", so scripts can test for it.
    Ok(EXIT_FAILED)
}

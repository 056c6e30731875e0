//! `anbiq gc`: keep what registered lockfiles reference, delete the rest.

use super::args::GcArgs;
use super::{CliError, EXIT_OK};

pub fn gc(args: GcArgs) -> Result<i32, CliError> {
    let report = crate::run::gc(&args.store, args.dry_run)?;
    for root in &report.roots {
        println!("root: {}", root.display());
    }
    let verb = if args.dry_run { "would remove" } else { "removed" };
    println!(
        "kept {} entries, {verb} {} ({:.1} MiB freed)",
        report.kept,
        report.removed,
        report.bytes_freed as f64 / (1 << 20) as f64
    );
    Ok(EXIT_OK)
}

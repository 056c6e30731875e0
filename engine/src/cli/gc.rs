//! `anbiq gc`: keep what the runs recorded in this store reference, delete the rest.

use super::args::GcArgs;
use super::{CliError, EXIT_OK};

pub fn gc(args: GcArgs) -> Result<i32, CliError> {
    let report = crate::run::gc(&args.store, args.dry_run)?;
    for root in &report.roots {
        println!("root: {}", root.display());
    }
    let verb = if args.dry_run { "would remove" } else { "removed" };
    let freed = if args.dry_run {
        String::new()
    } else {
        format!(", {:.1} MiB freed", report.bytes_freed as f64 / (1 << 20) as f64)
    };
    println!(
        "kept {} entries, {verb} {} and {} checkpoint(s) of unfinished steps{freed}",
        report.kept, report.removed, report.removed_unfinished
    );
    Ok(EXIT_OK)
}

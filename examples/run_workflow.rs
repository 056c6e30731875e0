//! Running a workflow from Rust: load (with a parameter override), plan, run, read the results.
//!
//! ```sh
//! cargo run --example run_workflow -- workflows/quickstart.yaml temperature=8
//! ```

use std::path::PathBuf;

use anbiq::run::{run, Outcome, RunOptions};
use anbiq::workflow::Override;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().unwrap_or_else(|| "workflows/quickstart.yaml".into()));
    let overrides: Vec<Override> = args.map(|a| a.parse()).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?;

    // Errors come back as `file:line:col: message`, every problem of the file at once.
    let wf = anbiq::workflow::load(&path, &overrides).map_err(|d| anyhow::anyhow!("{d}"))?;
    println!("{}: {} steps, seed {}", wf.name, wf.steps.len(), wf.seed);

    let report = run(&wf, &RunOptions::default())?;
    for result in &report.results {
        let what = match &result.outcome {
            Outcome::Cached => "cached".to_string(),
            Outcome::Ran { seconds } => format!("ran in {seconds:.2}s"),
            Outcome::Failed { error } => format!("failed: {error}"),
            Outcome::Skipped { because } => format!("skipped: {because}"),
            Outcome::NotSelected => "not selected".to_string(),
        };
        println!("  {:<10} {what}", result.id);
    }
    println!("provenance: {}", report.lockfile.display());
    anyhow::ensure!(report.failures().next().is_none(), "some steps failed");
    Ok(())
}

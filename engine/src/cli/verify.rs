//! `anbiq verify`: do the stored outputs still hash to what the lockfile recorded?

use super::args::VerifyArgs;
use super::{load, CliError, EXIT_FAILED, EXIT_OK};
use crate::run::{self, Lockfile};

pub fn verify(args: VerifyArgs) -> Result<i32, CliError> {
    let wf = load(&args.workflow.workflow, &args.workflow.overrides)?;
    let path = wf.lockfile_path();
    let lock = Lockfile::read(&path)?
        .ok_or_else(|| anyhow::anyhow!("no lockfile {}: run the workflow first", path.display()))?;
    let problems = run::verify(&lock, &args.workflow.store)?;
    for p in &problems {
        println!("step `{}`: {}", p.step, p.message);
    }
    if problems.is_empty() {
        let outputs: usize = lock.steps.iter().map(|s| s.outputs.len()).sum();
        println!("ok: {outputs} outputs of {} steps match {}", lock.steps.len(), path.display());
        Ok(EXIT_OK)
    } else {
        eprintln!("error: {} problem(s) found", problems.len());
        Ok(EXIT_FAILED)
    }
}

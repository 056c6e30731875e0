//! `anbiq verify`: are the workflow's outputs in the store, whole, and the bytes that were committed (and that the
//! lockfile records)?

use super::args::VerifyArgs;
use super::{load, CliError, EXIT_FAILED, EXIT_OK};
use crate::run::{self, Lockfile, Store};

pub fn verify(args: VerifyArgs) -> Result<i32, CliError> {
    let wf = load(&args.workflow.workflow, &args.workflow.overrides)?;
    let store = Store::open(&args.workflow.store)?;
    let lock_path = args.workflow.lockfile_path(&wf);
    let lock = Lockfile::read(&lock_path)?;
    let verified = run::verify(&wf, &store, lock.as_ref())?;
    let problems = verified.problems;
    for p in &problems {
        println!("step `{}`: {}", p.step, p.message);
    }
    if problems.is_empty() {
        let compared = match &lock {
            Some(_) => {
                format!("; they match {} ({} steps compared)", lock_path.display(), verified.compared_with_lockfile)
            }
            None => format!("; no lockfile {} to compare with", lock_path.display()),
        };
        println!(
            "ok: the outputs of all {} steps are in {} and intact{compared}",
            wf.steps.len(),
            store.root().display()
        );
        Ok(EXIT_OK)
    } else {
        eprintln!("error: {} problem(s) found", problems.len());
        Ok(EXIT_FAILED)
    }
}

//! `anbiq run-step` (hidden plumbing): one step against the store, what each Slurm job runs.

use super::args::RunStepArgs;
use super::{load, CliError, EXIT_OK};
use crate::run::{run_one, StepDone, StepOptions};
use crate::steps::Progress;

pub fn run_step(args: RunStepArgs) -> Result<i32, CliError> {
    // A training step checkpoints and stops on Ctrl-C (the ranks of a data-parallel step together).
    crate::interrupt::install_handler();
    let wf = load(&args.workflow.workflow, &args.workflow.overrides)?;
    crate::graph::Dag::build(&wf)?;
    wf.require_step(&args.step).map_err(CliError::Usage)?;
    let options = StepOptions {
        store: args.workflow.store,
        step: args.step.clone(),
        shard: args.shard,
        expect_key: args.key,
        force: args.force,
        progress: Progress::default(),
    };
    match run_one(&wf, &options)? {
        StepDone::Ran(m) => println!("{}: ran in {:.1}s, key {}", args.step, m.seconds, m.key.short()),
        StepDone::AlreadyStored(m) => println!("{}: already in the store, key {}", args.step, m.key.short()),
        StepDone::Shard { index, count } => println!("{}: shard {index} of {count} stored", args.step),
    }
    Ok(EXIT_OK)
}

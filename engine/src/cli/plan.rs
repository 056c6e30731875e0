//! `anbiq plan`: the run order and, per step, cached or will run and why.

use super::args::PlanArgs;
use super::{load, CliError, EXIT_OK};
use crate::graph::{Dag, KeyEnv};
use crate::run::{self, PlanOptions, Status, Store};

pub fn plan(args: PlanArgs) -> Result<i32, CliError> {
    let wf = load(&args.workflow.workflow, &args.workflow.overrides)?;
    let dag = Dag::build(&wf)?;
    let store = Store::open(&args.workflow.store)?;
    let recorded = run::roots::read(&store, &wf)?;
    let previous = run::previous_lockfile(recorded.as_ref(), &args.workflow.lockfile_path(&wf))?;
    let options = PlanOptions { force: args.select.force, only: args.select.only };
    let plan = run::plan(&wf, &dag, &store, previous.as_ref(), &KeyEnv::current(), &options)
        .map_err(|e| CliError::Usage(format!("{e:#}")))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan).map_err(anyhow::Error::from)?);
        return Ok(EXIT_OK);
    }
    let width = plan.entries.iter().map(|e| e.id.len()).max().unwrap_or(0);
    for (n, e) in plan.entries.iter().enumerate() {
        let head = format!("{:>2}. {:<width$}  {:<9} {}", n + 1, e.id, e.kind, e.key.short());
        match &e.status {
            Status::Cached => println!("{head}  cached"),
            Status::NotSelected => println!("{head}  not selected (--only)"),
            Status::Run(reasons) => {
                println!("{head}  will run: {}", reasons[0]);
                for r in &reasons[1..] {
                    println!("{:>w$}  {r}", "", w = head.len() + 10);
                }
            }
        }
    }
    let to_run = plan.to_run().count();
    println!("{to_run} of {} steps will run", plan.entries.len());
    Ok(EXIT_OK)
}

//! `anbiq validate`: every problem in every file, then exit 2 if there was any.

use super::args::ValidateArgs;
use super::{CliError, EXIT_OK};
use crate::config::Diagnostics;
use crate::graph::Dag;

pub fn validate(args: ValidateArgs) -> Result<i32, CliError> {
    let mut problems = Diagnostics::default();
    for path in &args.workflows {
        match crate::workflow::load(path, &[]).and_then(|wf| Dag::build(&wf).map(|_| wf)) {
            Ok(wf) => {
                let n = wf.steps.len();
                println!("{}: ok ({n} step{})", path.display(), if n == 1 { "" } else { "s" })
            }
            Err(d) => problems.extend(d),
        }
    }
    if problems.is_empty() {
        Ok(EXIT_OK)
    } else {
        Err(CliError::Invalid(problems))
    }
}

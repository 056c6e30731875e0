//! Terminal progress bars for every loop over data, hidden when stderr is not a terminal (logs, Slurm, CI).
//!
//! All bars of a run hang off one `MultiProgress`, so steps running in parallel draw on separate lines instead of
//! tearing each other's output.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress bars go; clones share the same set of lines.
#[derive(Clone, Debug)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Visible iff stderr is a terminal.
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            Progress { multi: Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())) }
        } else {
            Progress::hidden()
        }
    }

    pub fn hidden() -> Self {
        Progress { multi: None }
    }

    /// A bar of `len` steps labelled `prefix` (the step: `teacher: train`), with its rate and an ETA from indicatif's
    /// moving estimate of it (not the first batches' pace).
    pub fn bar(&self, len: u64, prefix: &str) -> ProgressBar {
        let Some(multi) = &self.multi else { return ProgressBar::hidden() };
        let style = ProgressStyle::with_template(
            "{prefix:>20} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        let bar = multi.add(ProgressBar::new(len).with_style(style).with_prefix(prefix.to_string()));
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::auto()
    }
}

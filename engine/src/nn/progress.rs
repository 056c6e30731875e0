//! Terminal progress bars for training loops, hidden when stderr is not a terminal (logs, Slurm, CI).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Whether and how to draw progress; cheap to copy into each loop.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    visible: bool,
}

impl Progress {
    /// Visible iff stderr is a terminal.
    pub fn auto() -> Self {
        Progress {
            visible: std::io::stderr().is_terminal(),
        }
    }

    pub fn hidden() -> Self {
        Progress { visible: false }
    }

    /// A bar of `len` steps labelled `prefix`, with rate and ETA.
    pub fn bar(&self, len: u64, prefix: &str) -> ProgressBar {
        let target = if self.visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        let style = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} {msg}",
        )
        .expect("valid template");
        bar.set_style(style);
        bar.set_prefix(prefix.to_string());
        bar
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::auto()
    }
}

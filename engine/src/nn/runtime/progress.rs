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
    /// Report every bar's state as [`ProgressLine`]s on stdout instead of drawing it (rank 0 of a data-parallel
    /// step, whose launcher draws the bar).
    lines: bool,
}

/// Set (to anything) in a process whose bars should be reported as [`ProgressLine`]s.
pub const LINES_VAR: &str = "ANBIQ_PROGRESS_LINES";

impl Progress {
    /// Visible iff stderr is a terminal; reported as lines when [`LINES_VAR`] is set.
    pub fn auto() -> Self {
        if std::env::var_os(LINES_VAR).is_some() {
            Progress { multi: None, lines: true }
        } else if std::io::stderr().is_terminal() {
            Progress { multi: Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())), lines: false }
        } else {
            Progress::hidden()
        }
    }

    pub fn hidden() -> Self {
        Progress { multi: None, lines: false }
    }

    /// A bar of `len` steps labelled `prefix` (the step: `teacher: train`), with its rate and an ETA from indicatif's
    /// moving estimate of it (not the first batches' pace).
    pub fn bar(&self, len: u64, prefix: &str) -> ProgressBar {
        if self.lines {
            return reported_bar(len);
        }
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

/// A hidden bar whose state a thread prints as a [`ProgressLine`] five times a second, until it finishes or is
/// dropped.
fn reported_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::hidden();
    bar.set_length(len);
    let weak = bar.downgrade();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut last = None;
        while let Some(bar) = weak.upgrade().filter(|b| !b.is_finished()) {
            let line = ProgressLine { pos: bar.position(), len: bar.length().unwrap_or(0), message: bar.message() };
            drop(bar);
            if last.as_ref() != Some(&line) {
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{}", line.format()).and_then(|()| out.flush()).is_err() {
                    return;
                }
                last = Some(line);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    bar
}

/// A bar's state as one line of text, from a rank to its launcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressLine {
    pub pos: u64,
    pub len: u64,
    pub message: String,
}

const LINE_TAG: &str = "anbiq-progress";

impl ProgressLine {
    pub fn format(&self) -> String {
        format!("{LINE_TAG} {} {} {}", self.pos, self.len, self.message.replace('\n', " "))
    }

    /// `None` for any other line.
    pub fn parse(line: &str) -> Option<ProgressLine> {
        let mut parts = line.strip_prefix(LINE_TAG)?.strip_prefix(' ')?.splitn(3, ' ');
        let pos = parts.next()?.parse().ok()?;
        let len = parts.next()?.parse().ok()?;
        Some(ProgressLine { pos, len, message: parts.next().unwrap_or("").to_string() })
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::auto()
    }
}

#[cfg(test)]
mod tests {
    use super::ProgressLine;

    #[test]
    fn progress_lines_round_trip() {
        let line = ProgressLine { pos: 3, len: 40, message: "epoch 1/2 · loss 0.5".into() };
        assert_eq!(ProgressLine::parse(&line.format()), Some(line));
        let bare = ProgressLine { pos: 0, len: 0, message: String::new() };
        assert_eq!(ProgressLine::parse(&bare.format()), Some(bare));
        assert_eq!(ProgressLine::parse("student: ran in 1.0s"), None);
    }
}

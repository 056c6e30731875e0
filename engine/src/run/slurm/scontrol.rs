//! Talking to Slurm: `sbatch --parsable`, `scontrol show job -o` (works without accounting, unlike `sacct`; finished
//! jobs stay visible for `MinJobAge` seconds), `scancel`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

/// One line of `scontrol show job -o`: a job, or one task of an array (pending tasks may share a line).
#[derive(Clone, Debug, PartialEq)]
pub struct JobInfo {
    pub id: String,
    pub state: String,
    pub reason: String,
    pub exit_code: String,
    pub stdout: Option<PathBuf>,
    pub array_task: Option<String>,
}

/// What a job's state means for the step it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Running,
    Completed,
    Failed,
    /// Cancelled because a job it depends on failed.
    DependencyFailed,
}

impl JobInfo {
    pub fn phase(&self) -> Phase {
        match self.state.as_str() {
            "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" | "SUSPENDED"
            | "STOPPED" | "SPECIAL_EXIT" => {
                if self.reason == "DependencyNeverSatisfied" {
                    Phase::DependencyFailed
                } else {
                    Phase::Waiting
                }
            }
            "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" | "RESIZING" => Phase::Running,
            "COMPLETED" => Phase::Completed,
            "CANCELLED" if self.reason == "DependencyNeverSatisfied" || self.reason == "Dependency" => {
                Phase::DependencyFailed
            }
            _ => Phase::Failed, // FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, BOOT_FAIL, DEADLINE, PREEMPTED
        }
    }
}

/// Parses `scontrol show job -o` output: one job per line of `Key=Value` words.
pub fn parse_jobs(text: &str) -> Vec<JobInfo> {
    text.lines()
        .filter(|l| l.contains("JobId="))
        .map(|line| {
            let fields: BTreeMap<&str, &str> = line.split_whitespace().filter_map(|w| w.split_once('=')).collect();
            let get = |k: &str| fields.get(k).map(|v| v.to_string()).unwrap_or_default();
            JobInfo {
                id: get("JobId"),
                state: get("JobState"),
                reason: get("Reason"),
                exit_code: get("ExitCode"),
                stdout: fields.get("StdOut").filter(|v| !v.is_empty()).map(PathBuf::from),
                array_task: fields.get("ArrayTaskId").map(|v| v.to_string()),
            }
        })
        .collect()
}

/// The job's lines (every task of an array), or `None` when Slurm no longer knows it (finished more than
/// `MinJobAge` ago, or purged).
pub fn show_job(id: &str) -> anyhow::Result<Option<Vec<JobInfo>>> {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", id])
        .output()
        .context("running `scontrol show job` (is Slurm installed and on PATH?)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("Invalid job id") {
            return Ok(None);
        }
        bail!("`scontrol show job -o {id}` failed: {}", stderr.trim());
    }
    let jobs = parse_jobs(&String::from_utf8_lossy(&out.stdout));
    Ok(if jobs.is_empty() { None } else { Some(jobs) })
}

/// Submits a batch script; returns the job id.
pub fn sbatch(script: &Path, extra: &[String]) -> anyhow::Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(extra)
        .arg(script)
        .output()
        .context("running `sbatch` (is Slurm installed and on PATH?)")?;
    if !out.status.success() {
        bail!("sbatch {} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    parse_parsable(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("sbatch printed no job id: {}", String::from_utf8_lossy(&out.stdout).trim()))
}

/// `sbatch --parsable` prints `jobid` or `jobid;cluster`.
pub fn parse_parsable(stdout: &str) -> Option<String> {
    let id = stdout.trim().split(';').next()?.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
}

/// Cancels jobs (ids of finished jobs are ignored by Slurm).
pub fn scancel(ids: &[String]) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let out = Command::new("scancel").args(ids).output().context("running `scancel`")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Jobs that already finished are not an error for us.
        if !stderr.lines().all(|l| l.contains("Invalid job id") || l.contains("already completed") || l.is_empty()) {
            bail!("scancel failed: {}", stderr.trim());
        }
    }
    Ok(())
}

/// Whether a Slurm controller answers (`scontrol ping`).
pub fn available() -> bool {
    Command::new("scontrol").arg("ping").output().is_ok_and(|o| o.status.success())
}

/// What to show of a failed job's log: its `error:` lines (the last few), else its last lines.
pub fn log_error(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return format!("(no log at {})", log.display());
    };
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("error:") || l.contains(" error: ") || l.contains("ERROR"))
        .collect();
    let chosen: Vec<&str> = if errors.is_empty() {
        lines[lines.len().saturating_sub(3)..].to_vec()
    } else {
        errors[errors.len().saturating_sub(3)..].to_vec()
    };
    chosen.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "JobId=1 ArrayJobId=1 ArrayTaskId=1 JobName=t.sh UserId=root(0) JobState=COMPLETED Reason=None \
        Dependency=(null) ExitCode=0:0 RunTime=00:00:00 StdErr=/tmp/t-1_1.out StdIn=/dev/null StdOut=/tmp/t-1_1.out Power=\n\
        JobId=3 ArrayJobId=1 ArrayTaskId=0 JobName=t.sh JobState=FAILED Reason=NonZeroExitCode ExitCode=1:0 StdOut=/tmp/t-1_0.out\n\
        JobId=4 JobName=x JobState=PENDING Reason=DependencyNeverSatisfied Dependency=afterok:3(failed) ExitCode=0:0\n";

    #[test]
    fn parses_scontrol_one_liners() {
        let jobs = parse_jobs(SHOW);
        assert_eq!(jobs.len(), 3);
        assert_eq!(jobs[0].id, "1");
        assert_eq!(jobs[0].phase(), Phase::Completed);
        assert_eq!(jobs[0].stdout.as_deref(), Some(Path::new("/tmp/t-1_1.out")));
        assert_eq!(jobs[1].array_task.as_deref(), Some("0"));
        assert_eq!(jobs[1].phase(), Phase::Failed);
        assert_eq!(jobs[1].exit_code, "1:0");
        assert_eq!(jobs[2].phase(), Phase::DependencyFailed);
        assert_eq!(jobs[2].stdout, None);
    }

    #[test]
    fn phases() {
        let job = |state: &str, reason: &str| JobInfo {
            id: "1".into(),
            state: state.into(),
            reason: reason.into(),
            exit_code: String::new(),
            stdout: None,
            array_task: None,
        };
        assert_eq!(job("PENDING", "Dependency").phase(), Phase::Waiting);
        assert_eq!(job("PENDING", "Priority").phase(), Phase::Waiting);
        assert_eq!(job("RUNNING", "None").phase(), Phase::Running);
        assert_eq!(job("CANCELLED", "DependencyNeverSatisfied").phase(), Phase::DependencyFailed);
        assert_eq!(job("CANCELLED", "None").phase(), Phase::Failed);
        assert_eq!(job("TIMEOUT", "TimeLimit").phase(), Phase::Failed);
        assert_eq!(job("OUT_OF_MEMORY", "OutOfMemory").phase(), Phase::Failed);
    }

    #[test]
    fn parsable_output() {
        assert_eq!(parse_parsable("42\n").as_deref(), Some("42"));
        assert_eq!(parse_parsable("42;cluster\n").as_deref(), Some("42"));
        assert_eq!(parse_parsable("sbatch: error\n"), None);
    }

    #[test]
    fn a_logs_errors_are_what_is_shown() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        std::fs::write(&log, " INFO step: running\nerror: step `kept` (filter): nothing kept\n").unwrap();
        assert_eq!(log_error(&log), "error: step `kept` (filter): nothing kept");
        std::fs::write(&log, "a\nb\nc\nd\n").unwrap();
        assert_eq!(log_error(&log), "b\nc\nd");
        assert!(log_error(&dir.path().join("none.log")).starts_with("(no log at"));
    }
}

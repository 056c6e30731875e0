//! The local executor's launcher for a data-parallel step (`distributed: {ranks: N}`): N processes of this binary,
//! each `anbiq run-step` with its rank in the environment, meeting at a TCP store on 127.0.0.1. Rank 0 commits the
//! step's outputs to the store (this run holds the store's lock for them) and reports its progress on stdout, which
//! becomes this run's one bar. When a rank fails or dies, the others are stopped and the step fails with that
//! rank's error.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::executor::Shared;
use super::plan::PlanEntry;
use super::store::Manifest;
use crate::nn::distributed::DistributedConfig;
use crate::nn::runtime::progress::{self, ProgressLine};
use crate::nn::training::checkpoint::Checkpoint;

/// Set for the ranks this run launches: the run holds the store's lock on their behalf.
pub const PARENT_HOLDS_LOCK: &str = "ANBIQ_PARENT_HOLDS_LOCK";

/// How long the other ranks get to stop by themselves once one has failed (their next collective fails).
const GRACE: Duration = Duration::from_secs(3);

pub(crate) fn launch(ctx: &Shared, entry: &PlanEntry, config: &DistributedConfig) -> anyhow::Result<Manifest> {
    config.check_device(ctx.device)?;
    let exe = match ctx.rank_binary {
        Some(exe) => exe.to_path_buf(),
        None => rank_binary()?,
    };
    let decl = &ctx.wf.steps[entry.index];
    let checkpoint = ctx.store.checkpoint_dir(&entry.key);
    // Every rank resumes from rank 0's checkpoint; say so here, where the user looks.
    if let Some(at) = Checkpoint::new(&checkpoint).position()? {
        tracing::info!(step = %decl.id, epoch = at.epoch, batch = at.batch, "resuming from a checkpoint");
    }
    let logs = checkpoint.join("ranks");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let port = free_port()?;
    let workflow = std::fs::canonicalize(&ctx.wf.path).unwrap_or_else(|_| ctx.wf.path.clone());
    tracing::info!(step = %decl.id, ranks = config.ranks, port, "launching ranks");

    let mut ranks: Vec<Rank> = Vec::new();
    for rank in 0..config.ranks {
        let log = logs.join(format!("rank-{rank}.log"));
        let file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(&exe);
        command.arg("run-step").arg(&workflow).arg("--store").arg(ctx.store.root()).args([
            "--step",
            &decl.id,
            "--key",
            &entry.key.0,
            "--force",
        ]);
        for o in ctx.overrides {
            command.arg("--set").arg(format!("{}={}", o.name, o.value));
        }
        command
            .env("ANBIQ_MASTER_ADDR", "127.0.0.1")
            .env("ANBIQ_MASTER_PORT", port.to_string())
            .env("ANBIQ_RANK", rank.to_string())
            .env("ANBIQ_WORLD_SIZE", config.ranks.to_string())
            .env(PARENT_HOLDS_LOCK, "1")
            .stdin(Stdio::null())
            .stdout(if rank == 0 { Stdio::piped() } else { Stdio::null() })
            .stderr(file);
        if rank == 0 {
            command.env(progress::LINES_VAR, "1");
        }
        let child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                stop(&mut ranks);
                bail!("starting rank {rank} ({}): {e}", exe.display());
            }
        };
        ranks.push(Rank { rank, child, log, exit: None });
    }

    let bar = ctx.progress.bar(0, &format!("{}: {} ×{}", decl.id, decl.kind, config.ranks));
    let stdout = ranks[0].child.stdout.take().context("rank 0's stdout is piped")?;
    let reader = std::thread::spawn({
        let bar = bar.clone();
        move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(p) = ProgressLine::parse(&line) {
                    bar.set_length(p.len);
                    bar.set_position(p.pos);
                    bar.set_message(p.message);
                }
            }
        }
    });

    let outcome = supervise(&mut ranks, config.ranks, config.timeout());
    let _ = reader.join();
    bar.finish_and_clear();
    outcome?;
    ctx.store.complete(&entry.key).with_context(|| {
        format!("the {} ranks ended but rank 0 stored no outputs (see {})", config.ranks, logs.display())
    })
}

struct Rank {
    rank: usize,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

/// Waits for every rank; the first to fail is the step's error. Forwards an interruption (Ctrl-C) to the ranks, which
/// checkpoint and stop together. Ranks still running `timeout` after another ended cleanly are stopped (they have
/// nothing left to agree on with it).
fn supervise(ranks: &mut [Rank], world: usize, timeout: Duration) -> anyhow::Result<()> {
    let mut failure: Option<(String, Instant)> = None;
    let mut first_done: Option<Instant> = None;
    let mut forwarded = false;
    loop {
        // Of the ranks that failed since the last look, the likeliest cause: one that was killed, else one whose
        // error is not a lost connection to another rank.
        let mut failed: Vec<(u8, String)> = Vec::new();
        for r in ranks.iter_mut().filter(|r| r.exit.is_none()) {
            if let Some(status) = r.child.try_wait().context("waiting for a rank")? {
                r.exit = Some(status);
                first_done.get_or_insert_with(Instant::now);
                if !status.success() {
                    let message = describe(r.rank, world, status, &r.log);
                    let lost_peer = ["Connection reset", "Connection closed", "Timed out", "timed out"]
                        .iter()
                        .any(|m| message.contains(m));
                    let rank = if status.signal().is_some() {
                        0
                    } else if lost_peer {
                        2
                    } else {
                        1
                    };
                    failed.push((rank, message));
                }
            }
        }
        failed.sort_by_key(|(rank, _)| *rank);
        if let Some((_, message)) = failed.into_iter().next().filter(|_| failure.is_none()) {
            if !crate::interrupt::requested() {
                failure = Some((message, Instant::now()));
            }
        }
        if ranks.iter().all(|r| r.exit.is_some()) {
            break;
        }
        if crate::interrupt::requested() && !forwarded {
            for r in ranks.iter().filter(|r| r.exit.is_none()) {
                // SAFETY: signalling a child we spawned and have not reaped.
                unsafe { libc::kill(r.child.id() as libc::pid_t, libc::SIGINT) };
            }
            forwarded = true;
        }
        let failed_long_ago = failure.as_ref().is_some_and(|(_, at)| at.elapsed() > GRACE);
        if failed_long_ago || first_done.is_some_and(|at| at.elapsed() > timeout) {
            stop(ranks);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some((message, _)) = failure {
        bail!("{message}");
    }
    if crate::interrupt::requested() {
        return Err(crate::interrupt::Interrupted.into());
    }
    Ok(())
}

/// Kills the ranks still running.
fn stop(ranks: &mut [Rank]) {
    for r in ranks.iter_mut().filter(|r| r.exit.is_none()) {
        let _ = r.child.kill();
        r.exit = r.child.wait().ok();
    }
}

/// One line on why a rank ended: its signal, or the error it printed (without the step's location, which the
/// launcher's error gives once).
fn describe(rank: usize, world: usize, status: ExitStatus, log: &Path) -> String {
    if let Some(signal) = status.signal() {
        return format!("rank {rank} of {world} was killed by signal {signal} (log: {})", log.display());
    }
    let text = super::slurm::scontrol::log_error(log);
    let last = text.lines().last().unwrap_or("").trim();
    let last = last.strip_prefix("error:").unwrap_or(last).trim();
    let marker = format!(", rank {rank}: ");
    let reason = last.split_once(&marker).map_or(last, |(_, r)| r);
    format!("rank {rank} of {world} failed: {reason}")
}

/// The binary the ranks run when the run names none: this one when it is the anbiq CLI, else `ANBIQ_EXE` (embedders
/// that run workflows through the library).
fn rank_binary() -> anyhow::Result<PathBuf> {
    if let Some(exe) = std::env::var_os("ANBIQ_EXE") {
        return Ok(PathBuf::from(exe));
    }
    let exe = std::env::current_exe().context("finding the anbiq binary for the ranks")?;
    let is_cli = exe.file_stem().is_some_and(|s| s == "anbiq");
    anyhow::ensure!(
        is_cli,
        "a data-parallel step runs its ranks as `anbiq run-step`, and this program ({}) is not anbiq: set ANBIQ_EXE \
         to the anbiq binary",
        exe.display()
    );
    Ok(exe)
}

/// A port no one listens on now (the OS picks it; rank 0 binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port for the ranks")?;
    Ok(listener.local_addr()?.port())
}

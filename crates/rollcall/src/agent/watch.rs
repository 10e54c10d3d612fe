//! What `rollcall agent` watches besides its own loop: a process by pid (`--watch-pid`) or a
//! command it starts itself (`-- COMMAND ARGS`). When that process ends, the agent tells the
//! monitors at once (an exit report) instead of leaving them to notice the silence.

use anyhow::Context;
use rollcall_core::wire::ExitStatus;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::process::{Child, Command};

/// How long a command gets to exit after SIGTERM when the agent itself is stopped.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The watched process.
pub enum Watch {
    /// A process the agent did not start, through a pidfd: the kernel makes it readable when
    /// that very process exits, so a pid reused after the exit cannot be mistaken for it. Its
    /// exit status belongs to its parent: the report carries none.
    Pid { pid: i32, fd: AsyncFd<OwnedFd> },
    /// A command the agent started (and can start again), waited for as its child.
    Command { argv: Vec<String>, child: Child },
}

impl Watch {
    /// Watches the running process `pid`.
    pub fn pid(pid: i32) -> anyhow::Result<Watch> {
        let raw = rustix::process::Pid::from_raw(pid).context("--watch-pid must be a positive process id")?;
        let fd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())
            .with_context(|| format!("cannot watch process {pid} (pidfd_open)"))?;
        // Deprecated because a type whose descriptor can change under the reactor makes it
        // unsound, and its replacement is `unsafe`, which the workspace forbids. An `OwnedFd`
        // moved into the `AsyncFd` is open, and the same, for the `AsyncFd`'s whole life.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(fd, Interest::READABLE).context("cannot register the pidfd")?;
        Ok(Watch::Pid { pid, fd })
    }

    /// Starts `argv` and watches it.
    pub fn spawn(argv: Vec<String>) -> anyhow::Result<Watch> {
        let child = start(&argv)?;
        Ok(Watch::Command { argv, child })
    }

    /// The watched process's id (`None` once a command was reaped).
    pub fn id(&self) -> Option<u32> {
        match self {
            Watch::Pid { pid, .. } => u32::try_from(*pid).ok(),
            Watch::Command { child, .. } => child.id(),
        }
    }

    /// Completes when the watched process has exited, with what is known of how. Cancel-safe:
    /// dropped before that, it can be called again.
    pub async fn exited(&mut self) -> ExitStatus {
        match self {
            Watch::Pid { pid, fd } => {
                // Readable means exited; there is nothing to read and nothing to clear.
                if let Err(error) = fd.readable().await {
                    tracing::warn!(%error, pid = *pid, "cannot poll the watched process; taking it as exited");
                }
                ExitStatus::default()
            }
            Watch::Command { child, .. } => match child.wait().await {
                Ok(status) => ExitStatus { code: status.code(), signal: status.signal() },
                Err(error) => {
                    tracing::warn!(%error, "cannot wait for the command; taking it as exited");
                    ExitStatus::default()
                }
            },
        }
    }

    /// Starts the command again after it exited (`--restart`). A pid cannot be restarted.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        match self {
            Watch::Pid { .. } => anyhow::bail!("a process watched by pid cannot be restarted"),
            Watch::Command { argv, child } => {
                *child = start(argv)?;
                Ok(())
            }
        }
    }

    /// The agent is stopping on purpose: a command it started gets SIGTERM, then SIGKILL
    /// after [`STOP_GRACE`], so that no orphan outlives its agent. A process watched by pid is
    /// not the agent's to stop.
    pub async fn stop(&mut self) {
        let Watch::Command { child, .. } = self else { return };
        let Some(id) = child.id() else { return };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(id).expect("Linux pids fit in i32"));
        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok()
            && tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok()
        {
            return;
        }
        if let Err(error) = child.kill().await {
            tracing::warn!(%error, pid = id, "cannot kill the command");
        }
    }
}

/// Labels of an exit report: the status as the wire carries it (docs/PROTOCOL.md).
pub fn status_labels(status: &ExitStatus) -> Vec<(&'static str, String)> {
    use rollcall_core::wire::{EXIT_CODE_LABEL, EXIT_SIGNAL_LABEL};
    let mut labels = Vec::new();
    if let Some(code) = status.code {
        labels.push((EXIT_CODE_LABEL, code.to_string()));
    }
    if let Some(signal) = status.signal {
        labels.push((EXIT_SIGNAL_LABEL, signal.to_string()));
    }
    labels
}

/// The agent's own exit code after its command exited: the command's, or 128 + the signal
/// that killed it, as a shell reports it.
pub fn exit_code(status: &ExitStatus) -> u8 {
    match (status.code, status.signal) {
        (Some(code), _) => u8::try_from(code & 0xff).expect("masked to a byte"),
        (None, Some(signal)) => u8::try_from((128 + signal) & 0xff).expect("masked to a byte"),
        (None, None) => 0,
    }
}

fn start(argv: &[String]) -> anyhow::Result<Child> {
    let (program, args) = argv.split_first().context("no command after `--`")?;
    Command::new(program)
        .args(args)
        // An agent that fails with an error leaves no orphan behind (a clean stop goes
        // through `Watch::stop`, which lets the command exit on SIGTERM first).
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start the command {program:?}"))
}

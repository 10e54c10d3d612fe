//! `rollcall lease run` processes, for tests/leases.rs.

use super::{Child, DEADLINE, Monitor, Sandbox, bin};
use nix::sys::signal::Signal;
use std::process::{Command, ExitStatus, Stdio};

/// A running `rollcall lease run`.
pub struct LeaseRun {
    child: Child,
    pub holder: String,
}

impl LeaseRun {
    /// Starts `rollcall lease run --api http://MONITOR --holder HOLDER ARGS... -- COMMAND...`.
    pub fn start(
        sandbox: &Sandbox,
        monitor: &Monitor,
        holder: &str,
        args: &[&str],
        command: &[&str],
    ) -> LeaseRun {
        let mut process = Command::new(bin());
        process
            .args(["lease", "run", "--api", &format!("http://{}", monitor.http), "--holder", holder])
            .args(args)
            .arg("--")
            .args(command)
            .stdout(Stdio::null());
        LeaseRun {
            child: Child::spawn(sandbox, &format!("lease-{holder}"), &mut process),
            holder: holder.to_string(),
        }
    }

    /// Sends `signal` to the `lease run` process itself (not its command).
    pub fn signal(&self, signal: Signal) {
        self.child.signal(signal);
    }

    pub fn pid(&self) -> u32 {
        self.child.process.id()
    }

    /// Waits (with [`DEADLINE`]) until it exits.
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.child.wait_exit(DEADLINE)
    }

    pub fn stderr_tail(&self) -> String {
        self.child.stderr_tail()
    }
}

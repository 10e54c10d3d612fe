//! The exec sink: runs a command (argv, no shell) with the alert in `ROLLCALL_*` environment
//! variables; exit status 0 means delivered.
//!
//! The command runs in its own process group, so that a timeout (or the caller dropping the
//! attempt) kills everything it started with SIGKILL, not only the first process.

use super::{DeliveryError, SinkConfig, SinkTarget};
use crate::alerts::model::StoredAlert;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

/// How much of stdout and of stderr is kept for the error message.
const OUTPUT_BYTES: usize = 4096;

#[derive(Debug, Clone)]
pub struct ExecSink {
    config: SinkConfig,
    command: Vec<String>,
}

impl ExecSink {
    /// # Panics
    /// If `config` is not an exec sink's ([`super::Sink::new`] dispatches on the kind).
    pub fn new(config: SinkConfig) -> ExecSink {
        let SinkTarget::Exec { command } = &config.target else {
            panic!("ExecSink::new called with a {} sink's config", config.kind());
        };
        assert!(!command.is_empty(), "parse_sinks refuses an empty command");
        let command = command.clone();
        ExecSink { config, command }
    }

    pub fn config(&self) -> &SinkConfig {
        &self.config
    }

    /// Runs the command once; it must exit 0 within the timeout.
    pub async fn deliver(&self, stored: &StoredAlert) -> Result<(), DeliveryError> {
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        let mut command = Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // The command sees exactly the documented ROLLCALL_* variables, none inherited.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|key| key.starts_with("ROLLCALL_")) {
                command.env_remove(key);
            }
        }
        command.envs(environment(stored));
        let mut child =
            command.spawn().map_err(|error| DeliveryError::Spawn(format!("{}: {error}", self.command[0])))?;
        let mut group = GroupGuard(child.id());
        let stdout = tokio::spawn(capture(child.stdout.take().expect("stdout is piped")));
        let stderr = tokio::spawn(capture(child.stderr.take().expect("stderr is piped")));
        let status = match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(Ok(status)) => status,
            outcome => {
                group.kill();
                // kill() also reaps the child, so no zombie is left behind.
                let _ = child.kill().await;
                stdout.abort();
                stderr.abort();
                return Err(match outcome {
                    Ok(Err(error)) => DeliveryError::Io(format!("waiting for {}: {error}", self.command[0])),
                    _ => DeliveryError::Timeout(self.config.timeout),
                });
            }
        };
        // The child is reaped: its process group id may be reused, so it must not be signalled.
        group.disarm();
        if status.success() {
            stdout.abort();
            stderr.abort();
            return Ok(());
        }
        let output = collect_output(deadline, stdout, stderr).await;
        Err(match (status.code(), status.signal()) {
            (Some(code), _) => DeliveryError::ExitStatus(code, output),
            (None, Some(signal)) => DeliveryError::Signal(signal, output),
            (None, None) => {
                DeliveryError::Io(format!("{} ended without a status: {output}", self.command[0]))
            }
        })
    }
}

/// The environment variables describing an alert (documented in docs/ALERTS.md);
/// `ROLLCALL_ALERT_JSON` holds the stored document as it is, like the webhook's body.
pub fn environment(stored: &StoredAlert) -> Vec<(String, String)> {
    let alert = &stored.alert;
    let transition = alert.transition.as_ref();
    let field = |value: Option<&String>| value.cloned().unwrap_or_default();
    let word = |value: Option<&str>| value.unwrap_or_default().to_owned();
    let mut vars = vec![
        ("ROLLCALL_KIND".to_owned(), alert.kind.as_str().to_owned()),
        ("ROLLCALL_SEVERITY".to_owned(), alert.severity.as_str().to_owned()),
        ("ROLLCALL_SUBJECT_KIND".to_owned(), alert.subject.kind.as_str().to_owned()),
        ("ROLLCALL_SUBJECT".to_owned(), alert.subject.id.clone()),
        ("ROLLCALL_NODES".to_owned(), alert.nodes.join(",")),
        ("ROLLCALL_NODE_COUNT".to_owned(), alert.node_count.to_string()),
        ("ROLLCALL_INCIDENT".to_owned(), alert.incident.id.to_string()),
        ("ROLLCALL_IDEMPOTENCY_KEY".to_owned(), alert.idempotency_key.clone()),
        ("ROLLCALL_FROM".to_owned(), word(transition.map(|t| t.from.as_str()))),
        ("ROLLCALL_TO".to_owned(), word(transition.map(|t| t.to.as_str()))),
        ("ROLLCALL_REASON".to_owned(), word(transition.map(|t| t.reason.as_str()))),
        ("ROLLCALL_AT".to_owned(), field(transition.map(|t| &t.at))),
        ("ROLLCALL_STARTED_AT".to_owned(), alert.incident.started_at.clone()),
        ("ROLLCALL_RESOLVED_AT".to_owned(), field(alert.incident.resolved_at.as_ref())),
        ("ROLLCALL_SUMMARY".to_owned(), alert.summary.clone()),
    ];
    if let Some(token) = alert.fencing_token {
        vars.push(("ROLLCALL_FENCING_TOKEN".to_owned(), token.to_string()));
    }
    for (key, value) in &alert.labels {
        vars.push((label_variable(key), value.clone()));
    }
    vars.push(("ROLLCALL_ALERT_JSON".to_owned(), stored.payload.clone()));
    // A NUL byte cannot be passed in the environment; dropping it beats failing every retry.
    for (_, value) in &mut vars {
        value.retain(|c| c != '\0');
    }
    vars
}

/// `ROLLCALL_LABEL_` and the key uppercased, with every character other than ASCII letters and
/// digits replaced by `_`.
pub fn label_variable(key: &str) -> String {
    let key: String =
        key.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("ROLLCALL_LABEL_{key}")
}

/// Kills the command's whole process group with SIGKILL when dropped armed, which covers an
/// attempt abandoned mid-way (its future dropped); `kill_on_drop` only reaches the first process.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(id) = self.0.take() {
            // The group id is the child's pid (process_group(0)); the child is not reaped yet, so
            // the id still names our group. ESRCH (already gone) is fine.
            let _ = killpg(Pid::from_raw(id as i32), Signal::SIGKILL);
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `pipe` to its end, keeping the first [`OUTPUT_BYTES`]; the rest is drained so the
/// command never blocks on a full pipe.
async fn capture(mut pipe: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(read @ 1..) = pipe.read(&mut buffer).await {
        let room = OUTPUT_BYTES - kept.len();
        kept.extend_from_slice(&buffer[..read.min(room)]);
    }
    kept
}

/// The start of stderr and stdout, for the error message. A background process that keeps the
/// pipes open past the deadline leaves the output out rather than delaying the answer.
async fn collect_output(
    deadline: tokio::time::Instant,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
) -> String {
    let (out_abort, err_abort) = (stdout.abort_handle(), stderr.abort_handle());
    match tokio::time::timeout_at(deadline, async { (stdout.await, stderr.await) }).await {
        Ok((Ok(out), Ok(err))) => {
            let (out, err) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
            format!("stderr: {:?}; stdout: {:?}", err.trim(), out.trim())
        }
        _ => {
            out_abort.abort();
            err_abort.abort();
            "(output not collected: something the command started kept its pipes open)".to_owned()
        }
    }
}

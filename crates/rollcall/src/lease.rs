//! The CLI's side of leases: `rollcall leases` (a table, or `--json`) and `rollcall lease
//! run`, which campaigns for a lease and runs a command only while it holds it.
//!
//! `lease run` is the safe side of a lease (docs/LEASES.md): it counts its tenure on its own
//! monotonic clock from when it *sent* the last request the monitor acknowledged, so
//! whatever the network does (a lost answer, a partition, a monitor paused or killed), the
//! command is stopped by the end of that tenure, before the monitor can give the lease to
//! anyone else. It never waits for a callback or an answer to stop the command.

use crate::cli::{ClientArgs, LeaseRunArgs};
use crate::client::{http_agent, print_table};
use anyhow::{Context, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::Duration;
use tokio::time::Instant;

/// How often a contender asks for a lease someone else holds: failover waits at most this
/// long after the monitor frees the lease.
const CAMPAIGN_RETRY: Duration = Duration::from_millis(250);
/// Longest a single request may take (a renewal's own bound is shorter: see `renewal`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `rollcall leases`.
pub fn list(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let api = LeaseApi::new(&args);
    let (status, leases) = api.call("GET", "/v1/leases", None, REQUEST_TIMEOUT)?;
    if !(200..300).contains(&status) {
        bail!("{}", message(&leases, status));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&leases).context("cannot print JSON")?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = leases
        .as_array()
        .into_iter()
        .flatten()
        .map(|lease| {
            vec![
                text(&lease["name"]),
                text(&lease["holder"]),
                text(&lease["node"]),
                text(&lease["token"]),
                text(&lease["since"]),
                format!("{:.1} s", lease["expires_in_ms"].as_f64().unwrap_or(0.0) / 1000.0),
            ]
        })
        .collect();
    print_table(&["LEASE", "HOLDER", "NODE", "TOKEN", "SINCE", "EXPIRES IN"], rows);
    Ok(ExitCode::SUCCESS)
}

/// `rollcall lease run`.
pub fn run(args: LeaseRunArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    // Signal handlers need the runtime: the runner is made inside it.
    runtime.block_on(async { Runner::new(args)?.run().await })
}

/// What ended a tenure.
enum Ended {
    /// The tenure ran out, or the monitor said we no longer hold the lease.
    Lost(String),
    /// The command exited by itself, with this code.
    Exited(u8),
    /// We were asked to stop (SIGTERM, SIGINT).
    Stopped,
}

struct Runner {
    api: LeaseApi,
    name: String,
    node: String,
    holder: String,
    ttl: Duration,
    grace: Duration,
    margin: Duration,
    command: Vec<String>,
    signals: Signals,
}

impl Runner {
    fn new(args: LeaseRunArgs) -> anyhow::Result<Runner> {
        let ttl = args.ttl;
        if !(rollcall_core::leases::MIN_TTL..=rollcall_core::leases::MAX_TTL).contains(&ttl) {
            bail!("--ttl must be between 1s and 1h");
        }
        let grace = args.grace.unwrap_or((ttl / 4).min(Duration::from_secs(5)));
        if grace >= ttl / 2 {
            bail!(
                "--grace must be under half the TTL, so that the command is stopped before the tenure ends"
            );
        }
        let holder = args.holder.clone().unwrap_or_else(|| {
            let node: String = args
                .node
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || "._-:".contains(c) { c } else { '_' })
                .take(100)
                .collect();
            format!("{node}-{}", std::process::id())
        });
        Ok(Runner {
            api: LeaseApi::new(&args.client).with_others(&args.also_api),
            name: args.name,
            node: args.node,
            holder,
            ttl,
            grace,
            margin: drift_margin(ttl),
            command: args.command,
            signals: Signals::new()?,
        })
    }

    async fn run(mut self) -> anyhow::Result<ExitCode> {
        loop {
            let Some((token, tenure_end)) = self.campaign().await? else { return Ok(ExitCode::SUCCESS) };
            // Through the guard (this same binary), which kills the command if this process
            // dies without stopping it: SIGKILL cannot be caught, and a command left running
            // would run without the lease.
            let me = std::env::current_exe().context("cannot find the rollcall binary for the guard")?;
            let mut child = tokio::process::Command::new(me)
                .args(["lease-guard", "--parent", &std::process::id().to_string(), "--"])
                .args(&self.command)
                .env("ROLLCALL_FENCING_TOKEN", token.to_string())
                .env("ROLLCALL_LEASE_NAME", &self.name)
                .env("ROLLCALL_LEASE_HOLDER", &self.holder)
                // Its own process group, so that stopping it stops whatever it started.
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot run {:?}", self.command[0]))?;
            eprintln!(
                "rollcall: lease {} held by {} with token {token}; running the command",
                self.name, self.holder
            );
            let (ended, tenure_end) = self.hold(token, tenure_end, &mut child).await;
            match ended {
                Ended::Exited(code) => {
                    self.release(token).await;
                    return Ok(ExitCode::from(code));
                }
                Ended::Stopped => {
                    stop(&mut child, self.grace, tenure_end).await;
                    self.release(token).await;
                    return Ok(ExitCode::SUCCESS);
                }
                Ended::Lost(why) => {
                    eprintln!("rollcall: lease {} lost ({why}); stopping the command", self.name);
                    stop(&mut child, self.grace, tenure_end).await;
                    // Given back so that the next tenure, ours or another's, is a new token
                    // (a lease the monitor still holds for us would otherwise come back with
                    // the same one).
                    self.release(token).await;
                    eprintln!("rollcall: command stopped; campaigning again");
                }
            }
        }
    }

    /// Asks for the lease until it is granted: the token and the end of the tenure, or
    /// `None` when we were asked to stop meanwhile.
    async fn campaign(&mut self) -> anyhow::Result<Option<(u64, Instant)>> {
        let mut said = String::new();
        loop {
            let sent = Instant::now();
            let body =
                json!({ "node": self.node, "holder": self.holder, "ttl_ms": self.ttl.as_millis() as u64 });
            let path = format!("/v1/leases/{}/acquire", self.name);
            let request = self.api.spawn_call("POST", path, Some(body), REQUEST_TIMEOUT);
            let answer = tokio::select! {
                answer = request => answer.unwrap_or_else(|error| Err(anyhow::anyhow!("{error}"))),
                _ = self.signals.recv() => return Ok(None),
            };
            let note = match answer {
                Ok((200, lease)) => {
                    let token = lease["token"].as_u64().context("the monitor's grant has no token")?;
                    let tenure_end = sent + self.ttl - self.margin;
                    // A grant that took most of the tenure to arrive is not worth starting on.
                    if Instant::now() + self.grace < tenure_end {
                        return Ok(Some((token, tenure_end)));
                    }
                    "the grant arrived too late to use".to_string()
                }
                Ok((status @ (400 | 401 | 403), error)) => bail!("{}", message(&error, status)),
                Ok((status, error)) => message(&error, status),
                Err(error) => format!("{error:#}"),
            };
            if note != said && !note.contains("is held by") {
                eprintln!("rollcall: waiting for lease {}: {note}", self.name);
            }
            said = note;
            tokio::select! {
                _ = tokio::time::sleep(CAMPAIGN_RETRY) => {}
                _ = self.signals.recv() => return Ok(None),
            }
        }
    }

    /// Renews every TTL/3 until the tenure ends (by our clock), the monitor refuses a
    /// renewal, the command exits, or we are told to stop. Returns why, and the end of the
    /// tenure as last extended.
    async fn hold(
        &mut self,
        token: u64,
        mut tenure_end: Instant,
        child: &mut tokio::process::Child,
    ) -> (Ended, Instant) {
        let every = self.ttl / 3;
        let mut next_renewal = Instant::now() + every;
        // The renewal in flight, with when it was sent.
        let mut renewal: Option<(Instant, Call)> = None;
        loop {
            // SIGTERM goes out `grace` before the end, so SIGKILL lands at the end at the latest.
            let stop_at = tenure_end - self.grace;
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(stop_at) => {
                    return (Ended::Lost("no renewal acknowledged in time".into()), tenure_end);
                }
                status = child.wait() => {
                    let code = status.ok().and_then(|status| status.code()).unwrap_or(1);
                    return (Ended::Exited(code.clamp(0, 255) as u8), tenure_end);
                }
                _ = self.signals.recv() => return (Ended::Stopped, tenure_end),
                answer = async { (&mut renewal.as_mut().expect("guarded by is_some").1).await }, if renewal.is_some() => {
                    let (sent, _) = renewal.take().expect("guarded by is_some");
                    match answer.unwrap_or_else(|error| Err(anyhow::anyhow!("{error}"))) {
                        Ok((200, _)) => {
                            tenure_end = tenure_end.max(sent + self.ttl - self.margin);
                            next_renewal = sent + every;
                        }
                        Ok((status @ 409, error)) | Ok((status @ 404, error)) | Ok((status @ 400, error)) => {
                            return (Ended::Lost(message(&error, status)), tenure_end);
                        }
                        Ok((status, error)) => {
                            eprintln!("rollcall: renewal of lease {} failed: {}", self.name, message(&error, status));
                            next_renewal = Instant::now() + CAMPAIGN_RETRY;
                        }
                        Err(error) => {
                            eprintln!("rollcall: renewal of lease {} failed: {error:#}", self.name);
                            next_renewal = Instant::now() + CAMPAIGN_RETRY;
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_renewal), if renewal.is_none() => {
                    let body = json!({ "holder": self.holder, "token": token });
                    let path = format!("/v1/leases/{}/renew", self.name);
                    // A renewal that has not come back within a third of the TTL is not
                    // waited for: the next one goes out (the tenure counts from its sending).
                    renewal = Some((Instant::now(), self.api.spawn_call("POST", path, Some(body), every)));
                }
            }
        }
    }

    /// Gives the lease back (best effort: if this fails, it expires at its TTL).
    async fn release(&self, token: u64) {
        let body = json!({ "holder": self.holder, "token": token });
        let path = format!("/v1/leases/{}/release", self.name);
        let _ = self.api.spawn_call("POST", path, Some(body), REQUEST_TIMEOUT).await;
    }
}

/// How often the guard checks that its `lease run` is alive: how long a command may outlive
/// a `lease run` killed by SIGKILL.
const GUARD_POLL: Duration = Duration::from_millis(20);

/// `rollcall lease-guard --parent PID -- COMMAND`: runs COMMAND in its own process group (the
/// guard's, which `lease run` made) and exits with its code; kills the group the moment its
/// parent is no longer `PID` (the `lease run` died). SIGTERM and SIGINT reach the command
/// through the group; the guard itself waits for the command to end.
pub fn guard(args: crate::cli::LeaseGuardArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let mut signals = Signals::new()?;
        let mut child = tokio::process::Command::new(&args.command[0])
            .args(&args.command[1..])
            .spawn()
            .with_context(|| format!("cannot run {:?}", args.command[0]))?;
        let mut poll = tokio::time::interval(GUARD_POLL);
        loop {
            tokio::select! {
                status = child.wait() => {
                    let status = status.context("cannot wait for the command")?;
                    let code = status.code().unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(9));
                    return Ok(ExitCode::from(code.clamp(0, 255) as u8));
                }
                _ = poll.tick() => {
                    if nix::unistd::getppid().as_raw() as u32 != args.parent {
                        // The whole group, this guard included.
                        let _ = killpg(nix::unistd::getpgrp(), Signal::SIGKILL);
                    }
                }
                // The group got it too: the command decides what to do; we wait for it.
                _ = signals.recv() => {}
            }
        }
    })
}

/// How much earlier than the monitor the holder ends its tenure: the two monotonic clocks
/// may run at slightly different rates (NTP slews a clock by at most 500 ppm; we allow
/// 1000 ppm), plus 50 ms for the kill to be delivered and the process to die.
pub fn drift_margin(ttl: Duration) -> Duration {
    ttl / 1000 + Duration::from_millis(50)
}

/// Stops the command's process group: SIGTERM now, SIGKILL after `grace` or at
/// `tenure_end`, whichever is first, and waits for it.
async fn stop(child: &mut tokio::process::Child, grace: Duration, tenure_end: Instant) {
    let Some(pid) = child.id() else { return };
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let kill_at = (Instant::now() + grace).min(tenure_end);
    if tokio::time::timeout_at(kill_at, child.wait()).await.is_err() {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Whatever else the command started in its group goes too.
    let _ = killpg(group, Signal::SIGKILL);
}

/// SIGTERM and SIGINT, as one stream.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// A request running off the runtime's thread: its status and JSON answer.
type Call = tokio::task::JoinHandle<anyhow::Result<(u16, Value)>>;

/// The monitor's API, from blocking requests run off the runtime's thread.
#[derive(Clone)]
struct LeaseApi {
    /// The monitors to ask, the first given first; `current` moves on when one cannot be
    /// reached.
    bases: std::sync::Arc<Vec<String>>,
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    token: Option<String>,
}

impl LeaseApi {
    fn new(args: &ClientArgs) -> LeaseApi {
        LeaseApi {
            bases: std::sync::Arc::new(vec![args.api.trim_end_matches('/').to_string()]),
            current: Default::default(),
            token: args.token.clone(),
        }
    }

    fn with_others(mut self, others: &[String]) -> LeaseApi {
        let mut bases = (*self.bases).clone();
        bases.extend(others.iter().map(|base| base.trim_end_matches('/').to_string()));
        self.bases = std::sync::Arc::new(bases);
        self
    }

    fn spawn_call(&self, method: &'static str, path: String, body: Option<Value>, timeout: Duration) -> Call {
        let api = self.clone();
        tokio::task::spawn_blocking(move || api.call(method, &path, body, timeout))
    }

    /// One request: the status and the JSON answer.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> anyhow::Result<(u16, Value)> {
        use std::sync::atomic::Ordering;
        let index = self.current.load(Ordering::Relaxed) % self.bases.len();
        let url = format!("{}{path}", self.bases[index]);
        let agent = http_agent(Some(timeout));
        let response = match body {
            Some(body) => {
                let mut request = agent.post(&url).header("content-type", "application/json");
                if let Some(token) = &self.token {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                request.send(body.to_string())
            }
            None => {
                debug_assert_eq!(method, "GET");
                let mut request = agent.get(&url);
                if let Some(token) = &self.token {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                request.call()
            }
        };
        let mut response = response.map_err(|error| {
            // The next request goes to the next monitor, if there is another.
            let _ = self.current.compare_exchange(index, index + 1, Ordering::Relaxed, Ordering::Relaxed);
            anyhow::anyhow!("cannot reach the monitor at {url} ({error}); is it running?")
        })?;
        let status = response.status().as_u16();
        let text =
            response.body_mut().read_to_string().with_context(|| format!("{url}: unreadable answer"))?;
        let value = serde_json::from_str(&text).with_context(|| format!("{url}: HTTP {status}, not JSON"))?;
        Ok((status, value))
    }
}

fn message(error: &Value, status: u16) -> String {
    error["message"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"))
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

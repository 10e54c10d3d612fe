//! The harness of the integration tests: real `rollcall` processes on loopback ports chosen
//! by the OS, in a temporary directory per test, observed through the HTTP API.
//!
//! Start with [`Sandbox::new`], then [`Monitor::start`] and [`Agent::start`]; wait for
//! conditions with [`Monitor::wait_until`], never for a fixed time. Every child process is
//! killed when its handle drops, also when a test panics, and its stderr goes to a file in the
//! sandbox so that a failure can show what the processes said.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

mod lease_run;
#[allow(unused_imports)] // only tests/leases.rs runs `lease run`
pub use lease_run::LeaseRun;

pub mod wait;

#[allow(unused_imports)] // not every test file waits outside a `Monitor`
pub use wait::{POLL, wait_until};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rollcall_core::KeyRing;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long any condition may take. Generous on purpose: CI machines are shared and noisy,
/// and a passing test never waits this long.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// How many lines of a process's stderr a failure shows.
const TAIL_LINES: usize = 40;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rollcall")
}

/// A temporary directory holding the shared key file, the data dir, config files and every
/// child's stderr. Cheap to clone; the directory lives until the last clone (and so every
/// child process) is gone, and is kept for inspection when a test panics.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<SandboxDir>,
}

struct SandboxDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    files: AtomicUsize,
}

impl Drop for SandboxDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Some(dir) = self.dir.take() {
            let kept = dir.keep();
            eprintln!("(test failed: kept the sandbox {} for inspection)", kept.display());
        }
    }
}

impl Sandbox {
    /// A new directory with a fresh key file (`rollcall keygen`, key id 1).
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new().prefix("rollcall-it-").tempdir().expect("create a temp dir");
        let path = dir.path().to_path_buf();
        let sandbox =
            Sandbox { inner: Arc::new(SandboxDir { dir: Some(dir), path, files: AtomicUsize::new(0) }) };
        let key = sandbox.keygen(1);
        std::fs::write(sandbox.key_file(), key).expect("write the key file");
        sandbox
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The key file the monitor and the agents share.
    pub fn key_file(&self) -> PathBuf {
        self.path().join("rollcall.key")
    }

    /// The shared key, for crafting datagrams the monitor accepts.
    pub fn key_ring(&self) -> KeyRing {
        let text = std::fs::read_to_string(self.key_file()).expect("read the key file");
        KeyRing::parse(&text).expect("keygen writes a valid key file")
    }

    /// The monitor's data dir (created by the monitor).
    pub fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    /// A new key line from `rollcall keygen --id ID`, not written anywhere.
    pub fn keygen(&self, id: u16) -> String {
        let output = Command::new(bin())
            .args(["keygen", "--id", &id.to_string()])
            .stdin(Stdio::null())
            .output()
            .expect("run rollcall keygen");
        assert!(output.status.success(), "rollcall keygen failed: {output:?}");
        let line = String::from_utf8(output.stdout).expect("keygen prints UTF-8");
        assert_eq!(line.lines().count(), 1, "keygen prints one line, got {line:?}");
        line
    }

    /// Writes `contents` to a new file named after `stem`, returning its path.
    pub fn write_file(&self, stem: &str, extension: &str, contents: &str) -> PathBuf {
        let path = self.unique_path(stem, extension);
        std::fs::write(&path, contents).expect("write a file in the sandbox");
        path
    }

    /// A path in the sandbox that nothing uses yet (processes of one test never share files).
    fn unique_path(&self, stem: &str, extension: &str) -> PathBuf {
        let n = self.inner.files.fetch_add(1, Ordering::Relaxed);
        self.path().join(format!("{stem}-{n}.{extension}"))
    }

    /// Runs the binary with `args` to its exit (with a deadline): for commands that must fail
    /// at start.
    pub fn run_to_exit(&self, args: &[String]) -> Exited {
        self.run_to_exit_under(&[], args)
    }

    /// Like [`Sandbox::run_to_exit`], run by `wrapper` (e.g. `prlimit --nofile=300`).
    pub fn run_to_exit_under(&self, wrapper: &[&str], args: &[String]) -> Exited {
        let stdout_path = self.unique_path("run", "stdout");
        let stderr_path = self.unique_path("run", "stderr");
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(bin());
                command
            }
            None => Command::new(bin()),
        };
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(create(&stdout_path))
            .stderr(create(&stderr_path))
            .spawn()
            .expect("spawn rollcall");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("poll the child") {
                break status;
            }
            if started.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`rollcall {}` still running after {DEADLINE:?}; stderr:\n{}",
                    args.join(" "),
                    tail(&stderr_path, TAIL_LINES)
                );
            }
            std::thread::sleep(POLL);
        };
        Exited {
            status,
            stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
        }
    }
}

/// The arguments of `rollcall monitor` on OS-chosen ports with a data dir, a key file and a
/// config file: for starts that must fail ([`Sandbox::run_to_exit`]).
pub fn monitor_args(data_dir: &Path, key_file: &Path, config: &Path) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    vec![
        "monitor".into(),
        "--udp".into(),
        "127.0.0.1:0".into(),
        "--http".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        path(data_dir),
        "--key-file".into(),
        path(key_file),
        "--config".into(),
        path(config),
    ]
}

/// How a process that ran to its end ended.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A child process that is SIGKILLed and reaped when dropped.
struct Child {
    name: String,
    process: std::process::Child,
    stderr: PathBuf,
    // Keeps the directory holding the stderr file alive as long as the process.
    _sandbox: Sandbox,
}

impl Child {
    fn spawn(sandbox: &Sandbox, name: &str, command: &mut Command) -> Child {
        let stderr = sandbox.unique_path(name, "stderr");
        let process = command
            .stdin(Stdio::null())
            .stderr(create(&stderr))
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {name}: {error}"));
        Child { name: name.to_string(), process, stderr, _sandbox: sandbox.clone() }
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.process.id()).expect("a pid fits in i32"));
        kill(pid, signal).unwrap_or_else(|error| panic!("send {signal} to {}: {error}", self.name));
    }

    fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.process.try_wait().expect("poll the child") {
                return status;
            }
            if started.elapsed() > deadline {
                panic!(
                    "{} did not exit within {deadline:?}; its stderr:\n{}",
                    self.name,
                    tail(&self.stderr, TAIL_LINES)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn stderr_tail(&self) -> String {
        tail(&self.stderr, TAIL_LINES)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SIGKILL works on a stopped process too, so a test that panics while a child is
        // under SIGSTOP leaves no orphan behind.
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
        }
        let _ = self.process.wait();
        if std::thread::panicking() {
            eprintln!("--- {} stderr (last {TAIL_LINES} lines) ---\n{}", self.name, self.stderr_tail());
        }
    }
}

/// A running `rollcall monitor` on `127.0.0.1` ports.
pub struct Monitor {
    child: Child,
    pub udp: SocketAddr,
    pub http: SocketAddr,
    client: ureq::Agent,
}

impl Monitor {
    /// Starts a monitor on OS-chosen ports with the sandbox's data dir and key file, and the
    /// given TOML config, and waits for its listening line.
    pub fn start(sandbox: &Sandbox, config: &str) -> Monitor {
        Monitor::start_on(sandbox, config, "127.0.0.1:0".parse().expect("valid address"))
    }

    /// Like [`Monitor::start`], on a given UDP address (to restart on the same port).
    pub fn start_on(sandbox: &Sandbox, config: &str, udp: SocketAddr) -> Monitor {
        Monitor::spawn(sandbox, config, udp, &[], &[])
    }

    /// Like [`Monitor::start_on`], with extra environment variables (tests/checks_clock.rs
    /// preloads libfaketime this way).
    pub fn start_env(sandbox: &Sandbox, config: &str, udp: SocketAddr, env: &[(&str, String)]) -> Monitor {
        Monitor::spawn(sandbox, config, udp, &[], env)
    }

    /// Like [`Monitor::start`], run by `wrapper` (a command that execs the rest of its command
    /// line, so the PID stays the monitor's: e.g. `prlimit --nofile=512`).
    pub fn start_under(sandbox: &Sandbox, config: &str, wrapper: &[&str]) -> Monitor {
        Monitor::spawn(sandbox, config, "127.0.0.1:0".parse().expect("valid address"), wrapper, &[])
    }

    fn spawn(
        sandbox: &Sandbox,
        config: &str,
        udp: SocketAddr,
        wrapper: &[&str],
        env: &[(&str, String)],
    ) -> Monitor {
        let config_file = sandbox.write_file("monitor", "toml", config);
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(bin());
                command
            }
            None => Command::new(bin()),
        };
        command.envs(env.iter().map(|(name, value)| (*name, value.as_str())));
        command
            .arg("monitor")
            .args(["--udp", &udp.to_string(), "--http", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(sandbox.data_dir())
            .arg("--key-file")
            .arg(sandbox.key_file())
            .arg("--config")
            .arg(&config_file)
            .stdout(Stdio::piped());
        let mut child = Child::spawn(sandbox, "monitor", &mut command);
        let stdout = child.process.stdout.take().expect("stdout is piped");
        let line = first_line(stdout, &mut child);
        let (udp, http) = parse_listening(&line);
        let client = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        Monitor { child, udp, http, client }
    }

    /// Sends `signal` to the monitor's own process.
    pub fn signal(&self, signal: Signal) {
        self.child.signal(signal);
    }

    /// The monitor's process id.
    pub fn pid(&self) -> u32 {
        self.child.process.id()
    }

    /// SIGKILLs the monitor and waits until it is gone (and its ports are free).
    pub fn crash(mut self) {
        self.child.signal(Signal::SIGKILL);
        self.child.wait_exit(DEADLINE);
    }

    /// Stops the monitor with `signal` (SIGINT or SIGTERM) and waits for its exit.
    pub fn stop(mut self, signal: Signal) -> ExitStatus {
        self.child.signal(signal);
        self.child.wait_exit(DEADLINE)
    }

    pub fn stderr_tail(&self) -> String {
        self.child.stderr_tail()
    }

    /// `GET /v1/nodes`.
    pub fn nodes(&self) -> Vec<Node> {
        let (status, body) = self.get("/v1/nodes");
        assert_eq!(status, 200, "GET /v1/nodes: {body}");
        parse_json(&body)
    }

    /// `GET /v1/nodes/{id}`: `None` on 404.
    pub fn node(&self, id: &str) -> Option<Node> {
        let (status, body) = self.get(&format!("/v1/nodes/{id}"));
        match status {
            200 => Some(parse_json(&body)),
            404 => {
                let error: serde_json::Value = parse_json(&body);
                assert_eq!(error["code"], "not_found", "404 body: {body}");
                None
            }
            _ => panic!("GET /v1/nodes/{id}: status {status}: {body}"),
        }
    }

    /// `GET /v1/events?node=ID`: one node's transitions, oldest first.
    pub fn events(&self, node: &str) -> Vec<Event> {
        let (status, body) = self.get(&format!("/v1/events?node={node}&limit=1000"));
        assert_eq!(status, 200, "GET /v1/events: {body}");
        parse_json(&body)
    }

    /// `GET /v1/events`: every transition, oldest first.
    pub fn all_events(&self) -> Vec<Event> {
        let (status, body) = self.get("/v1/events?limit=1000");
        assert_eq!(status, 200, "GET /v1/events: {body}");
        parse_json(&body)
    }

    /// `GET /metrics`, parsed.
    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        Metrics::parse(&body)
    }

    /// Polls `probe` every 50 ms until it returns `Ok`, for at most `deadline`. `probe`
    /// returns `Err(what it saw)`; on timeout the panic shows that, the nodes and the tail of
    /// the monitor's stderr.
    pub fn wait_until<T>(
        &self,
        deadline: Duration,
        what: &str,
        probe: impl FnMut() -> Result<T, String>,
    ) -> T {
        wait::wait_until(deadline, what, probe, || {
            let nodes = match self.try_get("/v1/nodes") {
                Ok((_, body)) => body,
                Err(error) => format!("(unavailable: {error})"),
            };
            format!("nodes: {nodes}\nmonitor stderr (last {TAIL_LINES} lines):\n{}", self.stderr_tail())
        })
    }

    /// Waits until node `id` is `state` (and returns it).
    pub fn wait_for_state(&self, id: &str, state: &str) -> Node {
        self.wait_until(DEADLINE, &format!("{id} is {state}"), || match self.node(id) {
            Some(node) if node.state == state => Ok(node),
            Some(node) => Err(format!("{id} is {} (sequence {})", node.state, node.sequence)),
            None => Err(format!("{id} is unknown")),
        })
    }

    /// Waits until node `id` is up and has sent at least `sequence` heartbeats.
    pub fn wait_for_up(&self, id: &str, sequence: u64) -> Node {
        self.wait_until(DEADLINE, &format!("{id} is up at sequence {sequence}"), || match self.node(id) {
            Some(node) if node.state == "up" && node.sequence >= sequence => Ok(node),
            Some(node) => Err(format!("{id} is {} at sequence {}", node.state, node.sequence)),
            None => Err(format!("{id} is unknown")),
        })
    }

    /// Waits until node `id`'s history holds at least `count` transitions, and returns it.
    ///
    /// `/v1/nodes` shows the core's state at once, while `/v1/events` reads the store, which
    /// the monitor writes a moment later: a test that saw a state waits for its transition.
    pub fn wait_for_events(&self, id: &str, count: usize) -> Vec<Event> {
        self.wait_until(DEADLINE, &format!("{id} has {count} transitions stored"), || {
            let events = self.events(id);
            if events.len() >= count { Ok(events) } else { Err(format!("{:?}", history(&events))) }
        })
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path)
            .unwrap_or_else(|error| panic!("GET {path}: {error}\nmonitor stderr:\n{}", self.stderr_tail()))
    }

    fn try_get(&self, path: &str) -> Result<(u16, String), ureq::Error> {
        let mut response = self.client.get(format!("http://{}{path}", self.http)).call()?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string()?;
        Ok((status, body))
    }
}

/// A running `rollcall agent` sending to one monitor.
pub struct Agent {
    child: Child,
    pub name: String,
}

impl Agent {
    /// Starts an agent for node `name` with the sandbox's key file.
    pub fn start(
        sandbox: &Sandbox,
        name: &str,
        monitor_udp: SocketAddr,
        interval: Duration,
        labels: &[(&str, &str)],
    ) -> Agent {
        Agent::start_with(sandbox, name, monitor_udp, interval, labels, &[])
    }

    /// Like [`Agent::start`], with more arguments for `rollcall agent`.
    pub fn start_with(
        sandbox: &Sandbox,
        name: &str,
        monitor_udp: SocketAddr,
        interval: Duration,
        labels: &[(&str, &str)],
        extra: &[&str],
    ) -> Agent {
        let mut command = Command::new(bin());
        command
            .args(["agent", "--node", name, "--monitor", &monitor_udp.to_string()])
            .arg("--key-file")
            .arg(sandbox.key_file())
            .args(["--interval", &format!("{}ms", interval.as_millis())])
            .stdout(Stdio::null());
        for (key, value) in labels {
            command.args(["--label", &format!("{key}={value}")]);
        }
        // Last, so that `extra` may end with `-- COMMAND ARGS`.
        command.args(extra);
        Agent { child: Child::spawn(sandbox, &format!("agent-{name}"), &mut command), name: name.to_string() }
    }

    /// Sends `signal` to the agent's own process.
    pub fn signal(&self, signal: Signal) {
        self.child.signal(signal);
    }

    /// Waits (with [`DEADLINE`]) until the agent exits.
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.child.wait_exit(DEADLINE)
    }

    /// The agent's process id (tests/leases.rs stops a whole "host": agent and holder).
    pub fn pid(&self) -> u32 {
        self.child.process.id()
    }
}

/// A quick detector for tests that want a crash noticed: at 200 ms a silent node is suspect
/// after about 1 s and down after about 1.2 s (mean 200 ms + pause 500 ms + about 5.2
/// standard deviations of 100 ms for phi 8).
pub const QUICK: &str = r#"
[phi]
acceptable_pause = "500ms"
"#;

/// A patient detector for tests where nobody must be suspected: down after about 2.7 s of
/// silence, far beyond what a live sender every 200 ms is late by on a busy machine.
pub const PATIENT: &str = r#"
[phi]
acceptable_pause = "2s"
"#;

/// The [`QUICK`] detector and one webhook sink `hook` posting to `url` that pages at once
/// (`group_wait = "0s"`): the start of a config for tests that wait for a page.
pub fn quick_pages_to(url: &str) -> String {
    format!(
        r#"{QUICK}
[alerts]
group_wait = "0s"

[[sink]]
name = "hook"
kind = "webhook"
url = "{url}"
timeout = "2s"
"#
    )
}

/// A node as `GET /v1/nodes` shows it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Node {
    pub id: String,
    pub state: String,
    pub generation: u64,
    pub sequence: u64,
    pub labels: BTreeMap<String, String>,
    pub interval_ms: u64,
    pub last_heartbeat_age_ms: Option<u64>,
    pub phi: Option<f64>,
    pub level: f64,
    pub deadline_in_ms: Option<i64>,
    pub addr: Option<String>,
}

/// A transition as `GET /v1/events` shows it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub node: String,
    pub generation: u64,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub at: String,
    pub noticed_at: String,
}

impl Event {
    /// `from -> to (reason)`, as the monitor logs it.
    pub fn summary(&self) -> String {
        format!("{} -> {} ({})", self.from, self.to, self.reason)
    }
}

/// Summaries of `events`, for comparing histories in one readable assertion.
pub fn history(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::summary).collect()
}

/// `/metrics` as a map from series (`name{labels}` exactly as written) to value.
#[derive(Clone, Debug)]
pub struct Metrics {
    series: BTreeMap<String, f64>,
}

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let series = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (name, value) =
                    line.rsplit_once(' ').unwrap_or_else(|| panic!("metrics line without a value: {line:?}"));
                let value =
                    value.parse().unwrap_or_else(|_| panic!("metrics value is not a number: {line:?}"));
                (name.to_string(), value)
            })
            .collect();
        Metrics { series }
    }

    /// The value of one series; panics (listing what exists) if the monitor does not export it.
    pub fn get(&self, series: &str) -> f64 {
        match self.series.get(series) {
            Some(&value) => value,
            None => panic!("no series {series:?} in /metrics; have: {:#?}", self.series.keys()),
        }
    }

    /// `rollcall_heartbeats_rejected_total{reason="REASON"}`.
    pub fn rejected(&self, reason: &str) -> u64 {
        self.get(&format!("rollcall_heartbeats_rejected_total{{reason=\"{reason}\"}}")) as u64
    }

    /// Every rejection counter, by reason.
    pub fn rejections(&self) -> BTreeMap<String, u64> {
        const PREFIX: &str = "rollcall_heartbeats_rejected_total{reason=\"";
        self.series
            .iter()
            .filter_map(|(name, &value)| {
                let reason = name.strip_prefix(PREFIX)?.strip_suffix("\"}")?;
                Some((reason.to_string(), value as u64))
            })
            .collect()
    }
}

/// Creates (truncating) a file for a child's output.
fn create(path: &Path) -> std::fs::File {
    std::fs::File::create(path).unwrap_or_else(|error| panic!("create {}: {error}", path.display()))
}

/// The last `lines` lines of a file, or a note that it cannot be read.
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

/// Reads the first line a child prints on `stdout`, with [`DEADLINE`]; a reader thread keeps
/// draining the pipe afterwards so that the child never blocks on a full pipe.
fn first_line(stdout: std::process::ChildStdout, child: &mut Child) -> String {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                // Nobody listens any more: keep reading to EOF to keep the pipe drained.
                continue;
            }
        }
    });
    let started = Instant::now();
    loop {
        match receiver.recv_timeout(POLL) {
            Ok(line) => return line,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.process.wait().expect("reap the child");
                panic!(
                    "{} exited ({status}) before printing its listening line; stderr:\n{}",
                    child.name,
                    child.stderr_tail()
                );
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if started.elapsed() > DEADLINE => {
                panic!(
                    "{} printed no listening line within {DEADLINE:?}; stderr:\n{}",
                    child.name,
                    child.stderr_tail()
                );
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Parses `rollcall monitor listening udp=ADDR http=ADDR`.
fn parse_listening(line: &str) -> (SocketAddr, SocketAddr) {
    let parse = || -> Option<(SocketAddr, SocketAddr)> {
        let rest = line.strip_prefix("rollcall monitor listening ")?;
        let (udp, http) = rest.split_once(' ')?;
        Some((udp.strip_prefix("udp=")?.parse().ok()?, http.strip_prefix("http=")?.parse().ok()?))
    };
    parse().unwrap_or_else(|| panic!("unexpected listening line: {line:?}"))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &str) -> T {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("bad JSON ({error}): {body}"))
}

// Added for the alerting tests (tests/alerts.rs): raw access to the API, for endpoints the
// typed helpers above do not cover and for requests that must fail.
impl Monitor {
    /// `GET path`: the status and the body parsed as JSON (`Null` if it is not JSON).
    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get(path);
        (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
    }

    /// `POST path` with `Authorization: Bearer TOKEN` when `token` is given and a JSON `body`
    /// when one is given: the status and the body as text.
    pub fn post(&self, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
        let url = format!("http://{}{path}", self.http);
        let mut request = self.client.post(&url);
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let result = match body {
            Some(body) => request.header("Content-Type", "application/json").send(body),
            None => request.send_empty(),
        };
        let mut response = result
            .unwrap_or_else(|error| panic!("POST {path}: {error}\nmonitor stderr:\n{}", self.stderr_tail()));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, text)
    }
}

// Added for tests/operators.rs.
impl Monitor {
    /// `GET path`: the status and the body as text.
    pub fn get_text(&self, path: &str) -> (u16, String) {
        self.get(path)
    }
}

// Added for tests/peer.rs: `rollcall peer` processes, started from a command line the test
// builds (possibly behind `ip netns exec`, which execs the peer: the PID stays the peer's).
/// A running `rollcall peer`.
pub struct PeerProcess {
    child: Child,
    pub name: String,
    pub udp: SocketAddr,
    pub http: SocketAddr,
}

impl PeerProcess {
    /// Spawns `command` (one that runs `rollcall peer ...`) and waits for its listening line.
    pub fn spawn(sandbox: &Sandbox, name: &str, mut command: Command) -> PeerProcess {
        command.stdout(Stdio::piped());
        let mut child = Child::spawn(sandbox, &format!("peer-{name}"), &mut command);
        let stdout = child.process.stdout.take().expect("stdout is piped");
        let line = first_line(stdout, &mut child);
        let parse = || -> Option<(SocketAddr, SocketAddr)> {
            let rest = line.strip_prefix("rollcall peer listening ")?;
            let (udp, http) = rest.split_once(' ')?;
            Some((udp.strip_prefix("udp=")?.parse().ok()?, http.strip_prefix("http=")?.parse().ok()?))
        };
        let (udp, http) = parse().unwrap_or_else(|| panic!("unexpected listening line: {line:?}"));
        PeerProcess { child, name: name.to_string(), udp, http }
    }

    /// Sends `signal` to the peer's own process.
    pub fn signal(&self, signal: Signal) {
        self.child.signal(signal);
    }

    /// SIGKILLs the peer and waits until it is gone (and its ports are free).
    pub fn crash(mut self) {
        self.child.signal(Signal::SIGKILL);
        self.child.wait_exit(DEADLINE);
    }

    /// Stops the peer with `signal` (SIGINT or SIGTERM) and waits for its exit.
    pub fn stop(mut self, signal: Signal) -> ExitStatus {
        self.child.signal(signal);
        self.child.wait_exit(DEADLINE)
    }

    pub fn stderr_tail(&self) -> String {
        self.child.stderr_tail()
    }
}

/// `promtool check metrics` (Debian's `prometheus` package) accepts `text`, with no remark
/// (its lint problems count as failures too).
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian's prometheus package; `cargo xtask test` installs it)");
    child.stdin.take().expect("piped").write_all(text.as_bytes()).expect("write to promtool");
    let output = child.wait_with_output().expect("wait for promtool");
    let report =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool check metrics failed:\n{report}\n--- metrics ---\n{text}");
    assert!(report.trim().is_empty(), "promtool has remarks (lint problems):\n{report}");
}

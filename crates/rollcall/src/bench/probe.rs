//! What the benchmark observes from outside the monitor: the child process itself (/proc:
//! CPU, memory), the kernel's socket table (drops), the HTTP API (metrics, the event stream)
//! and a local webhook receiver for alerts.

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Clock ticks per second of /proc/PID/stat times: 100 on every Linux this runs on (the
/// kernel's USER_HZ), which `getconf CLK_TCK` confirms.
const CLOCK_TICKS: f64 = 100.0;

/// A monitor child process, killed when dropped.
pub struct MonitorProcess {
    child: Child,
    pub udp: SocketAddr,
    pub http: SocketAddr,
    /// From spawning to the "listening" line.
    pub ready_after: Duration,
}

impl MonitorProcess {
    /// Starts `rollcall monitor --config CONFIG` (under `taskset -c CPUS` when `cpus` is
    /// given: `taskset` execs it, so the PID is the monitor's) and waits (bounded) for its
    /// ready line.
    pub fn start(config: &Path, stderr: &Path, cpus: Option<&str>) -> anyhow::Result<MonitorProcess> {
        let started = Instant::now();
        let exe = std::env::current_exe().context("cannot find the rollcall binary")?;
        let log = std::fs::File::create(stderr).context("cannot create the monitor's log file")?;
        let mut command = match cpus {
            Some(cpus) => {
                let mut command = Command::new("taskset");
                command.args(["-c", cpus]).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        let mut child = command
            .arg("monitor")
            .arg("--config")
            .arg(config)
            .env("ROLLCALL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start the monitor")?;
        let stdout = child.stdout.take().context("the monitor has no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("rollcall monitor listening") {
                    let _ = tx.send(line);
                }
            }
        });
        // A million nodes restore in seconds; a minute is a failure, not a slow start.
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(stderr).unwrap_or_default();
                bail!("the monitor did not become ready; its log:\n{log}");
            }
        };
        let ready_after = started.elapsed();
        let field = |name: &str| -> anyhow::Result<SocketAddr> {
            let value = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix(name))
                .with_context(|| format!("no {name} in {line:?}"))?;
            Ok(value.parse()?)
        };
        Ok(MonitorProcess { udp: field("udp=")?, http: field("http=")?, child, ready_after })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits (bounded) for a clean exit; returns how long the shutdown took.
    pub fn stop(mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
            .context("cannot signal the monitor")?;
        let deadline = started + Duration::from_secs(120);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("the monitor did not stop within two minutes of SIGTERM")
    }
}

impl Drop for MonitorProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU seconds (user + system) a process has used so far, all its threads together.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// CPU seconds (user + system) one thread of this process has used so far: the same
/// accounting as [`cpu_seconds`], so that a thread inside the benchmark (the raw receiver)
/// and the monitor's process are measured alike.
pub fn thread_cpu_seconds(tid: i32) -> Option<f64> {
    stat_cpu_seconds(&format!("/proc/self/task/{tid}/stat"))
}

/// CPU seconds each live thread of process `pid` has used so far, by thread id, with the
/// thread's name.
pub fn cpu_seconds_by_thread(pid: u32) -> BTreeMap<u32, (String, f64)> {
    let mut by_tid = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return by_tid };
    for task in tasks.filter_map(Result::ok) {
        let Some(tid) = task.file_name().to_str().and_then(|name| name.parse().ok()) else { continue };
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default().trim().to_string();
        if let Some(cpu) = stat_cpu_seconds(&path.join("stat").to_string_lossy()) {
            by_tid.insert(tid, (name, cpu));
        }
    }
    by_tid
}

/// What each thread name used between two [`cpu_seconds_by_thread`] readings of a process
/// that used `process_used` seconds in all, summed by name (tokio's workers share one).
///
/// Differences are taken thread by thread: a thread that exits in between (tokio's idle
/// blocking threads do, after ten seconds) would otherwise take its whole past out of its
/// name's sum. What the process used beyond the threads alive at the end, the part of the
/// exited threads, is reported as [`EXITED_THREADS`].
pub fn cpu_used_by_thread_name(
    before: &BTreeMap<u32, (String, f64)>,
    after: &BTreeMap<u32, (String, f64)>,
    process_used: f64,
) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let mut live = 0.0;
    for (tid, (name, cpu)) in after {
        let used = cpu - before.get(tid).map_or(0.0, |(_, earlier)| *earlier);
        live += used;
        *by_name.entry(name.clone()).or_insert(0.0) += used;
    }
    // Ticks are counted per thread and per process separately: allow one tick of each live
    // thread before calling the rest an exited thread's.
    let exited = process_used - live;
    if exited > after.len() as f64 / CLOCK_TICKS {
        by_name.insert(EXITED_THREADS.to_string(), exited);
    }
    by_name
}

/// The name [`cpu_used_by_thread_name`] gives what threads that exited used.
pub const EXITED_THREADS: &str = "(exited threads)";

/// utime + stime of a `/proc/.../stat` file, in seconds.
fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS)
}

/// (current RSS, peak RSS) in bytes, from /proc/PID/status.
pub fn rss_bytes(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The kernel's drop count of the UDP sockets bound to `port` (loopback benchmarks bind
/// ports the OS chose, so a port names one socket, or the monitor's SO_REUSEPORT group).
pub fn udp_drops_by_port(port: u16) -> Option<u64> {
    let local = format!(":{port:04X}");
    // Every socket bound to the port counts: the monitor's receive threads each have one.
    let mut found = None;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1).is_some_and(|address| address.ends_with(&local))
                && let Some(drops) = fields.last().and_then(|drops| drops.parse::<u64>().ok())
            {
                found = Some(found.unwrap_or(0) + drops);
            }
        }
    }
    found
}

/// An HTTP client for the monitor's API.
pub struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    pub fn new(http: SocketAddr) -> Api {
        Api {
            base: format!("http://{http}"),
            agent: crate::client::http_agent(Some(Duration::from_secs(30))),
        }
    }

    /// `/metrics` as (name with labels, value) pairs.
    pub fn metrics(&self) -> anyhow::Result<Vec<(String, f64)>> {
        let mut response = self.agent.get(format!("{}/metrics", self.base)).call()?;
        let text = response.body_mut().with_config().limit(64 << 20).read_to_string()?;
        Ok(text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect())
    }

    /// One series of `/metrics`, or the sum of a family's series when `series` is a prefix
    /// ending in `{`.
    pub fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let metrics = self.metrics()?;
        Ok(if series.ends_with('{') {
            metrics.iter().filter(|(name, _)| name.starts_with(series)).map(|(_, value)| value).sum()
        } else {
            metrics.iter().find(|(name, _)| name == series).map_or(0.0, |(_, value)| *value)
        })
    }

    /// True once the API answers.
    pub fn serving(&self) -> bool {
        self.agent.get(format!("{}/healthz", self.base)).call().is_ok_and(|r| r.status() == 200)
    }
}

/// A transition seen on the event stream, with when the benchmark received it.
#[derive(Clone, Debug)]
pub struct SeenTransition {
    pub node: String,
    pub to: String,
    pub at_ms: i64,
    pub noticed_ms: i64,
    pub received_ms: i64,
}

/// Follows `/v1/events/stream` on a thread, collecting transitions until closed.
///
/// It speaks HTTP/1.1 over a plain socket so that [`EventStream::close`] can end the
/// connection: the monitor's graceful shutdown waits for open connections.
pub struct EventStream {
    pub seen: Arc<Mutex<Vec<SeenTransition>>>,
    socket: Option<std::net::TcpStream>,
}

impl EventStream {
    pub fn follow(http: SocketAddr) -> anyhow::Result<EventStream> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let mut socket = std::net::TcpStream::connect(http).context("cannot reach the event stream")?;
        socket.write_all(
            b"GET /v1/events/stream?kind=node HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n",
        )?;
        let reader = socket.try_clone()?;
        // The thread ends when the connection closes (`close`, or the monitor stopping).
        std::thread::spawn(move || read_stream(reader, &sink));
        Ok(EventStream { seen, socket: Some(socket) })
    }

    pub fn snapshot(&self) -> Vec<SeenTransition> {
        self.seen.lock().map(|list| list.clone()).unwrap_or_default()
    }

    /// How many transitions seen so far match, without copying them.
    pub fn count(&self, matches: impl Fn(&SeenTransition) -> bool) -> usize {
        self.seen.lock().map(|list| list.iter().filter(|t| matches(t)).count()).unwrap_or(0)
    }

    pub fn close(&mut self) {
        if let Some(socket) = self.socket.take() {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.close();
    }
}

/// Reads the response head, then the chunked body, line by line; each `data:` line is one
/// transition.
fn read_stream(socket: std::net::TcpStream, sink: &Mutex<Vec<SeenTransition>>) {
    let mut reader = BufReader::new(socket);
    let mut line = String::new();
    // The head: status line and headers, up to the empty line.
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line.trim_end().is_empty() {
            break;
        }
    }
    let mut pending = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let Ok(size) = usize::from_str_radix(line.trim(), 16) else { return };
        if size == 0 {
            return;
        }
        let mut chunk = vec![0u8; size + 2];
        if reader.read_exact(&mut chunk).is_err() {
            return;
        }
        pending.extend_from_slice(&chunk[..size]);
        while let Some(end) = pending.iter().position(|&byte| byte == b'\n') {
            let text: Vec<u8> = pending.drain(..=end).collect();
            if let Some(seen) = std::str::from_utf8(&text).ok().and_then(parse_event)
                && let Ok(mut list) = sink.lock()
            {
                list.push(seen);
            }
        }
    }
}

fn parse_event(line: &str) -> Option<SeenTransition> {
    let data = line.strip_prefix("data:")?;
    let event = serde_json::from_str::<serde_json::Value>(data.trim()).ok()?;
    let time = |key: &str| event[key].as_str().and_then(parse_rfc3339_ms);
    Some(SeenTransition {
        node: event["node"].as_str()?.to_string(),
        to: event["to"].as_str()?.to_string(),
        at_ms: time("at")?,
        noticed_ms: time("noticed_at")?,
        received_ms: wall_ms(),
    })
}

/// An alert received by the webhook receiver: the transition's deadline and when it came.
#[derive(Clone, Debug)]
pub struct ReceivedAlert {
    pub kind: String,
    pub at_ms: Option<i64>,
    pub received_ms: i64,
}

/// A minimal HTTP server on loopback that answers 200 to every POST and records alerts.
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    pub alerts: Arc<Mutex<Vec<ReceivedAlert>>>,
}

impl WebhookReceiver {
    pub fn start() -> anyhow::Result<WebhookReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let alerts = Arc::new(Mutex::new(Vec::new()));
        let sink = alerts.clone();
        // The thread lives as long as the process: the benchmark exits when done.
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let sink = sink.clone();
                std::thread::spawn(move || serve_webhook(stream, &sink));
            }
        });
        Ok(WebhookReceiver { addr, alerts })
    }

    pub fn len(&self) -> usize {
        self.alerts.lock().map_or(0, |list| list.len())
    }

    pub fn snapshot(&self) -> Vec<ReceivedAlert> {
        self.alerts.lock().map(|list| list.clone()).unwrap_or_default()
    }
}

/// Serves one keep-alive connection: requests with a Content-Length body, each answered 200.
fn serve_webhook(stream: std::net::TcpStream, sink: &Mutex<Vec<ReceivedAlert>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    // Bounded: each request is read whole or the connection ends.
    for _ in 0..100_000 {
        let mut length = 0usize;
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length.min(1 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let received_ms = wall_ms();
        if let Ok(alert) = serde_json::from_slice::<serde_json::Value>(&body) {
            let at_ms = alert["transition"]["at"].as_str().and_then(parse_rfc3339_ms);
            let kind = alert["kind"].as_str().unwrap_or_default().to_string();
            if let Ok(mut list) = sink.lock() {
                list.push(ReceivedAlert { kind, at_ms, received_ms });
            }
        }
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer).is_err() {
            return;
        }
    }
}

pub fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64)
}

fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339(text).ok()?;
    Some(time.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_exits_does_not_take_its_past_out_of_its_name() {
        let threads = |rows: &[(u32, &str, f64)]| -> BTreeMap<u32, (String, f64)> {
            rows.iter().map(|&(tid, name, cpu)| (tid, (name.to_string(), cpu))).collect()
        };
        // Worker 2 (5 s used before the phase) exits during it, worker 4 starts.
        let before =
            threads(&[(1, "tokio-rt-worker", 10.0), (2, "tokio-rt-worker", 5.0), (3, "rollcall-store", 2.0)]);
        let after =
            threads(&[(1, "tokio-rt-worker", 12.0), (3, "rollcall-store", 2.5), (4, "tokio-rt-worker", 0.3)]);
        let used = cpu_used_by_thread_name(&before, &after, 3.5);
        let close = |name: &str, want: f64| (used[name] - want).abs() < 1e-9;
        assert!(close("tokio-rt-worker", 2.3), "{used:?}");
        assert!(close("rollcall-store", 0.5), "{used:?}");
        assert!(close(EXITED_THREADS, 0.7), "{used:?}");
        // Nothing exited: no such row, though the two clocks differ by a tick.
        let used =
            cpu_used_by_thread_name(&before, &threads(&[(1, "w", 10.5), (2, "w", 5.0), (3, "s", 2.0)]), 0.51);
        assert!(!used.contains_key(EXITED_THREADS), "{used:?}");
    }
}

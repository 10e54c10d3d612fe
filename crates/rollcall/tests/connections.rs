//! Connection floods against the real HTTP servers (issue #11, B4): more connections than the
//! cap, idle ones and ones that sent half a request head. The server closes them (at once over
//! the cap, after its header or idle timeout under it), keeps the file descriptors that alert
//! delivery needs (a crash during the flood is paged), and serves a new client once the idle
//! connections are gone; `/metrics` counts what was closed and why.
//!
//! Nothing sleeps to let things settle: every wait is for a condition, with a deadline.

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use nix::sys::signal::Signal;
use receiver::Receiver;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Agent, Monitor, PeerProcess, Sandbox, bin, promtool_check};

/// How long any condition may take. Generous: a passing test never waits this long.
const PATIENCE: Duration = Duration::from_secs(30);
/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(50);
/// The monitor's open files limit (set with `prlimit`): the flood below would take every
/// descriptor of a server without a cap, and with them alert delivery's.
const MONITOR_FILES: usize = 512;
/// Connections the monitor's flood opens: more than its whole descriptor limit.
const FLOOD: usize = 600;
/// The monitor's cap.
const CAP: usize = 64;
/// Half a request head: no blank line ends it.
const HALF_HEAD: &[u8] = b"GET /v1/nodes HTTP/1.1\r\nHost: flood\r\n";

/// A webhook sink that pages at once, a quick detector, and small HTTP limits.
fn monitor_config(receiver: &Receiver) -> String {
    format!(
        r#"{pages}

[api]
max_connections = {CAP}
header_timeout = "2s"
idle_timeout = "2s"
"#,
        pages = support::quick_pages_to(&receiver.url())
    )
}

#[test]
fn a_connection_flood_neither_stops_alerts_nor_locks_clients_out() {
    raise_own_fd_limit(FLOOD + 256);
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let nofile = format!("--nofile={MONITOR_FILES}");
    let monitor = Monitor::start_under(&sandbox, &monitor_config(&receiver), &["prlimit", &nofile]);
    let mut agent = Agent::start(&sandbox, "victim", monitor.udp, Duration::from_millis(200), &[]);
    monitor.wait_for_up("victim", 3);

    // The flood stays open on this side until the end of the test.
    let mut flood = Flood::open(monitor.http, FLOOD);
    agent.signal(Signal::SIGKILL);
    agent.wait_exit();
    receiver.wait_for(1, PATIENCE);
    let firing = receiver.unique_alerts().remove(0);
    assert_eq!(firing["kind"], "firing", "{firing}");
    assert_eq!(firing["subject"], serde_json::json!({"kind": "node", "id": "victim"}), "{firing}");

    flood.wait_all_closed();
    assert!(flood.refusals > 0, "connections over the cap are told why they are closed (503)");
    wait_served(monitor.http);

    let metrics = monitor.metrics();
    let closed = |reason: &str| {
        metrics.get(&format!("rollcall_http_connections_closed_total{{reason=\"{reason}\"}}")) as usize
    };
    // Each flood connection was refused at the cap or timed out under it (how many of each
    // depends on how fast the flood opened: the first ones time out while it is opening).
    let refused = closed("max_connections");
    let timed_out = closed("header_timeout") + closed("idle_timeout");
    assert!(refused > 0, "the cap of {CAP} was reached by {FLOOD} connections");
    assert!(refused + timed_out >= FLOOD, "{refused} refused, {timed_out} timed out, of {FLOOD}");
    assert_eq!(metrics.get("rollcall_http_connections_max"), CAP as f64);
    monitor.wait_until(PATIENCE, "only the scrape itself is open", || {
        let open = monitor.metrics().get("rollcall_http_connections_open");
        if open == 1.0 { Ok(()) } else { Err(format!("{open} open")) }
    });
    promtool_check(&monitor.get_text("/metrics").1);
}

#[test]
fn a_peer_closes_a_connection_flood_and_serves_again() {
    const PEER_CAP: usize = 8;
    const PEER_FLOOD: usize = 24;
    let sandbox = Sandbox::new();
    let mut command = Command::new(bin());
    command
        .args(["peer", "--name", "solo", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--key-file")
        .arg(sandbox.key_file())
        .args(["--max-connections", &PEER_CAP.to_string(), "--header-timeout", "2s", "--idle-timeout", "2s"]);
    let peer = PeerProcess::spawn(&sandbox, "solo", command);

    let mut flood = Flood::open(peer.http, PEER_FLOOD);
    flood.wait_all_closed();
    assert!(flood.refusals > 0, "connections over the cap are told why they are closed (503)");
    wait_served(peer.http);

    let (status, text) = get(peer.http, "/metrics").unwrap_or_else(|error| panic!("GET /metrics: {error}"));
    assert_eq!(status, 200, "{text}");
    let closed = |reason: &str| {
        series(&text, &format!("rollcall_peer_http_connections_closed_total{{reason=\"{reason}\"}}")) as usize
    };
    let refused = closed("max_connections");
    let timed_out = closed("header_timeout") + closed("idle_timeout");
    assert!(refused > 0, "the cap of {PEER_CAP} was reached by {PEER_FLOOD} connections:\n{text}");
    assert!(refused + timed_out >= PEER_FLOOD, "{refused} refused, {timed_out} timed out:\n{text}");
    assert_eq!(series(&text, "rollcall_peer_http_connections_max"), PEER_CAP as f64);
    promtool_check(&text);
}

#[test]
fn a_cap_that_leaves_too_few_descriptors_is_refused_at_start() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_file("monitor", "toml", &format!("[api]\nmax_connections = {CAP}\n"));
    let args = ["monitor", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--config"]
        .iter()
        .map(|arg| arg.to_string())
        .chain([config.display().to_string(), "--key-file".into(), sandbox.key_file().display().to_string()])
        .chain(["--data-dir".into(), sandbox.data_dir().display().to_string()])
        .collect::<Vec<_>>();
    // 64 connections and 256 descriptors kept free need 320.
    let exited = sandbox.run_to_exit_under(&["prlimit", "--nofile=300"], &args);
    assert!(!exited.status.success(), "{exited:?}");
    let expected = "api.max_connections = 64 leaves fewer than 256 of the 300 file descriptors";
    assert!(exited.stderr.contains(expected), "{:?} does not say {expected:?}", exited.stderr);
    assert_eq!(exited.stderr.trim().lines().count(), 1, "one sentence: {:?}", exited.stderr);
}

/// Connections opened by a flood: every other one sends half a request head, the others
/// nothing at all.
struct Flood {
    open: Vec<TcpStream>,
    /// Connections that read a `503` before they were closed.
    refusals: usize,
}

impl Flood {
    fn open(server: SocketAddr, count: usize) -> Flood {
        let mut open = Vec::with_capacity(count);
        for index in 0..count {
            // Only this test's own side can fail here (a server that stopped accepting leaves
            // the kernel's queue full, and the connect then times out); that is not a verdict.
            let Ok(mut stream) = TcpStream::connect_timeout(&server, Duration::from_secs(2)) else {
                continue;
            };
            if index % 2 == 1 {
                // A server that refused the connection may have reset it already.
                let _ = stream.write_all(HALF_HEAD);
            }
            stream.set_nonblocking(true).expect("make a socket non-blocking");
            open.push(stream);
        }
        assert!(open.len() > count / 2, "only {} of {count} connections opened", open.len());
        Flood { open, refusals: 0 }
    }

    /// Waits until the server closed every connection (each reads EOF or a reset).
    fn wait_all_closed(&mut self) {
        let started = Instant::now();
        while !self.open.is_empty() {
            let mut still_open = Vec::with_capacity(self.open.len());
            for mut stream in self.open.drain(..) {
                let mut buf = [0u8; 512];
                match stream.read(&mut buf) {
                    Ok(0) => {}
                    Ok(n) => {
                        if buf[..n].starts_with(b"HTTP/1.1 503") {
                            self.refusals += 1;
                        }
                        still_open.push(stream);
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => still_open.push(stream),
                    Err(_) => {}
                }
            }
            self.open = still_open;
            assert!(
                started.elapsed() < PATIENCE,
                "the server still holds {} flood connections after {PATIENCE:?}",
                self.open.len()
            );
            std::thread::sleep(POLL);
        }
    }
}

/// Waits until a new client gets `200` from `/healthz`, on a new connection each time.
fn wait_served(server: SocketAddr) {
    let started = Instant::now();
    loop {
        let seen = match get(server, "/healthz") {
            Ok((200, _)) => return,
            Ok((status, body)) => format!("{status}: {body}"),
            Err(error) => error,
        };
        assert!(started.elapsed() < PATIENCE, "no 200 from /healthz within {PATIENCE:?}; last: {seen}");
        std::thread::sleep(POLL);
    }
}

/// `GET path` on a new connection that the request closes: the status and the body.
fn get(server: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect_timeout(&server, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("no head: {response:?}"))?;
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok());
    let status = status.ok_or_else(|| format!("no status: {head:?}"))?;
    // The bodies asked for here are small and never chunked.
    Ok((status, body.to_string()))
}

/// The value of one series in a text exposition; panics if it is missing.
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {name} in:\n{text}"))
}

/// Raises this process's soft open files limit to its hard limit, which must allow `needed`.
fn raise_own_fd_limit(needed: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("read RLIMIT_NOFILE");
    assert!(hard >= needed as u64, "this test needs {needed} open files; the hard limit is {hard}");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise RLIMIT_NOFILE to its hard limit");
    }
}

//! Exit reports end to end: an agent watching a process (`-- COMMAND`, `--watch-pid`) tells
//! the monitor the moment that process dies, and the monitor declares the node
//! `down (process-exited)` without waiting for silence. A killed agent is still found by
//! silence, as before.
//!
//! Every wait is for a condition, with [`PATIENCE`]. The one wall-clock assertion is the one
//! the feature exists for: from the kill to the transition's `at`, under a second (the
//! detector here would need about 2.7 s of silence).
//!
//! `figure_kill_to_down` prints the figure of docs/DETECTION.md ("A crashed process") and
//! asserts nothing about it, so it is `#[ignore]`d like tests/ha_figures.rs:
//!
//! ```sh
//! cargo test --release -p rollcall --test process_exit -- --ignored --nocapture
//! ```

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use receiver::Receiver;
use rollcall_core::wire::{Kind, Outgoing, encode};
use rollcall_core::{Key, KeyRing};
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime};
use support::{Agent, Monitor, PATIENT, QUICK, Sandbox, history};

/// How long any condition may take here. Generous: a passing test never waits this long.
const PATIENCE: Duration = Duration::from_secs(20);

const INTERVAL: Duration = Duration::from_millis(200);

/// A detector slow enough that only an exit report can take a node down within a second,
/// and one webhook sink that pages at once.
fn config(detector: &str, receiver: &Receiver) -> String {
    format!(
        r#"{detector}
[alerts]
group_wait = "0s"

[[sink]]
name = "hook"
kind = "webhook"
url = "{url}"
timeout = "2s"
"#,
        url = receiver.url()
    )
}

#[test]
fn a_killed_command_is_down_within_a_second_and_pages() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let monitor = Monitor::start(&sandbox, &config(PATIENT, &receiver));
    let mut agent =
        Agent::start_with(&sandbox, "api-1", monitor.udp, INTERVAL, &[], &["--", "sleep", "1000"]);
    monitor.wait_for_up("api-1", 2);
    let command = Watched::child_of(&agent);

    let killed = SystemTime::now();
    command.kill();
    let events = monitor.wait_for_events("api-1", 2);
    assert_eq!(history(&events), ["new -> up (first-heartbeat)", "up -> down (process-exited)"]);
    let down_at = parse_time(&events[1].at);
    // The monitor maps its monotonic clock to wall time: a transition may read a few
    // milliseconds before the kill, never a second after it.
    let lag = down_at.duration_since(killed).unwrap_or(Duration::ZERO);
    assert!(lag < Duration::from_secs(1), "down {lag:?} after the kill: not from the exit report");

    let page = wait_for_firing(&monitor, &receiver, "api-1");
    assert_eq!(page["transition"]["reason"], "process-exited", "{page:#}");
    // How it ended travels with the page and stays in the node's history.
    assert_eq!(page["transition"]["exit_signal"], 9, "{page:#}");
    assert_eq!(page["summary"], "node api-1 is down: process exited (signal 9, SIGKILL)", "{page:#}");
    let down = latest_in_history(&monitor, "api-1");
    assert_eq!((&down["exit_signal"], &down["exit_code"]), (&Value::from(9), &Value::Null), "{down:#}");
    // Without --restart the agent stops with the command's status, as a shell reports it.
    let status = agent.wait_exit();
    assert_eq!(status.code(), Some(128 + 9), "the agent exits 128 + SIGKILL, got {status}");
    assert_eq!(monitor.node("api-1").expect("still known").state, "down", "no heartbeat after the report");
}

#[test]
fn a_command_that_fails_at_once_is_reported_with_its_status() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let monitor = Monitor::start(&sandbox, &config(PATIENT, &receiver));
    let mut agent =
        Agent::start_with(&sandbox, "job-1", monitor.udp, INTERVAL, &[], &["--", "sh", "-c", "exit 3"]);
    // The agent registers the node before it can see the exit, so even this is reported.
    let events = monitor.wait_for_events("job-1", 2);
    assert_eq!(history(&events), ["new -> up (first-heartbeat)", "up -> down (process-exited)"]);
    assert_eq!(agent.wait_exit().code(), Some(3), "the agent exits with the command's code");
    let page = wait_for_firing(&monitor, &receiver, "job-1");
    assert_eq!(page["transition"]["exit_code"], 3, "{page:#}");
    assert_eq!(page["summary"], "node job-1 is down: process exited (exit code 3)", "{page:#}");
    assert_eq!(latest_in_history(&monitor, "job-1")["exit_code"], 3);

    // The status is stored with the transition: a restarted monitor still shows it.
    monitor.stop(Signal::SIGTERM);
    let monitor = Monitor::start(&sandbox, &config(PATIENT, &receiver));
    let down = latest_in_history(&monitor, "job-1");
    assert_eq!((&down["reason"], &down["exit_code"]), (&Value::from("process-exited"), &Value::from(3)));
}

#[test]
fn a_restarted_command_comes_back_as_a_new_generation() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let monitor = Monitor::start(&sandbox, &config(PATIENT, &receiver));
    let mut agent = Agent::start_with(
        &sandbox,
        "api-1",
        monitor.udp,
        INTERVAL,
        &[],
        &["--restart", "--", "sleep", "1000"],
    );
    let first = monitor.wait_for_up("api-1", 2).generation;
    let command = Watched::child_of(&agent);

    command.kill();
    let events = monitor.wait_until(PATIENCE, "api-1 is back up", || {
        let events = monitor.events("api-1");
        match events.last() {
            Some(last) if last.to == "up" && events.len() >= 3 => Ok(events),
            _ => Err(format!("{:?}", history(&events))),
        }
    });
    assert_eq!(
        history(&events),
        ["new -> up (first-heartbeat)", "up -> down (process-exited)", "down -> up (restart)"]
    );
    assert_eq!(events[1].generation, first, "the report names the generation that died");
    assert!(events[2].generation > first, "the new process is a new generation");
    let again = Watched::child_of(&agent);
    assert_ne!(again.pid, command.pid, "the command was started again");

    // Stopped on purpose, the agent says goodbye before it stops its command: nobody is
    // paged for that exit.
    agent.signal(Signal::SIGTERM);
    assert!(agent.wait_exit().success());
    let events = monitor.wait_for_events("api-1", 4);
    assert_eq!(events[3].summary(), "up -> left (goodbye)");
    again.wait_gone();
    let firing = receiver.unique_alerts().iter().filter(|alert| alert["kind"] == "firing").count();
    assert_eq!(firing, 1, "one page, for the crash: {:?}", receiver.unique_alerts());
}

#[test]
fn a_killed_watched_pid_is_down_at_once() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let monitor = Monitor::start(&sandbox, &config(PATIENT, &receiver));
    let watched = Watched::spawn_sleep();
    let pid = watched.pid.to_string();
    let mut agent = Agent::start_with(&sandbox, "db-1", monitor.udp, INTERVAL, &[], &["--watch-pid", &pid]);
    monitor.wait_for_up("db-1", 2);

    let killed = SystemTime::now();
    watched.kill();
    let events = monitor.wait_for_events("db-1", 2);
    assert_eq!(events[1].summary(), "up -> down (process-exited)");
    let lag = parse_time(&events[1].at).duration_since(killed).unwrap_or(Duration::ZERO);
    assert!(lag < Duration::from_secs(1), "down {lag:?} after the kill");
    assert!(agent.wait_exit().success(), "an agent whose watched pid exited stops with 0");
}

#[test]
fn a_killed_agent_is_still_found_by_silence() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let monitor = Monitor::start(&sandbox, &config(QUICK, &receiver));
    let watched = Watched::spawn_sleep();
    let pid = watched.pid.to_string();
    let agent = Agent::start_with(&sandbox, "db-1", monitor.udp, INTERVAL, &[], &["--watch-pid", &pid]);
    monitor.wait_for_up("db-1", 2);

    agent.signal(Signal::SIGKILL);
    let events = monitor.wait_for_events("db-1", 3);
    assert_eq!(
        history(&events),
        ["new -> up (first-heartbeat)", "up -> suspect (phi)", "suspect -> down (phi)"],
        "the watched process is alive: only the silence says anything"
    );
    let page = wait_for_firing(&monitor, &receiver, "db-1");
    assert_eq!(page["transition"]["reason"], "phi", "{page:#}");
    drop(watched);
}

#[test]
fn a_python_sender_written_from_the_protocol_document_reports_an_exit() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let monitor = Monitor::start(&sandbox, &config(PATIENT, &receiver));
    // The reference sender, exactly as docs/PROTOCOL.md prints it.
    let doc = include_str!("../../../docs/PROTOCOL.md");
    let section = &doc[doc.find("## Reference sender (Python)").expect("the section exists")..];
    let code = section
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("its code block");
    std::fs::write(sandbox.path().join("rollcall_send.py"), code).expect("write the sender");
    // Two heartbeats, then an exit report as the document describes it: kind 8, the status
    // as labels, the next sequence number.
    let script = r##"
import socket, sys
from rollcall_send import datagram
host, port, key_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = [l.strip() for l in open(key_file) if l.strip() and not l.strip().startswith("#")]
key_id, secret = int(lines[-1].split(":")[0]), bytes.fromhex(lines[-1].split(":")[1])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for sequence in (1, 2):
    sock.sendto(datagram(1, key_id, secret, "py-1", 1000, sequence, 200, [("group", "py")]), (host, port))
sock.sendto(datagram(8, key_id, secret, "py-1", 1000, 3, 200, [("code", "3")]), (host, port))
"##;
    let output = std::process::Command::new("python3")
        .current_dir(sandbox.path())
        .args(["-c", script, &monitor.udp.ip().to_string(), &monitor.udp.port().to_string()])
        .arg(sandbox.key_file())
        .output()
        .expect("run python3 (Debian package python3)");
    assert!(output.status.success(), "python3 failed: {}", String::from_utf8_lossy(&output.stderr));
    let events = monitor.wait_for_events("py-1", 2);
    assert_eq!(history(&events), ["new -> up (first-heartbeat)", "up -> down (process-exited)"]);
    let refused: u64 = monitor.metrics().rejections().values().sum();
    assert_eq!(refused, 0, "the monitor refused some of what the sender sent");
    assert_eq!(monitor.metrics().get("rollcall_heartbeats_received_total{kind=\"exit\"}"), 1.0);
}

#[test]
fn forged_replayed_or_stale_exit_reports_are_refused() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let monitor = Monitor::start(&sandbox, &config(PATIENT, &receiver));
    let ring = sandbox.key_ring();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    let send = |ring: &KeyRing, kind: Kind, generation: u64, sequence: u64| {
        let message = Outgoing {
            kind,
            node: "api-1",
            generation,
            sequence,
            interval_ms: 200,
            labels: &[("signal", "9")],
            follows_advice: false,
        };
        let mut bytes = Vec::new();
        encode(&message, ring, &mut bytes).expect("a valid message");
        socket.send_to(&bytes, monitor.udp).expect("send");
    };
    send(&ring, Kind::Heartbeat, 5, 1);
    send(&ring, Kind::Heartbeat, 5, 2);
    monitor.wait_for_up("api-1", 2);

    let stranger = KeyRing::new(&[Key::new(1, [7; 32])]).expect("one key is a ring");
    send(&stranger, Kind::Exit, 5, 3);
    send(&ring, Kind::Exit, 4, 99);
    send(&ring, Kind::Exit, 5, 2);
    monitor.wait_until(PATIENCE, "the three reports are refused", || {
        let refused = monitor.metrics().rejections();
        let counts: Vec<u64> = ["bad_tag", "old_generation", "replay"].iter().map(|r| refused[*r]).collect();
        if counts == [1, 1, 1] { Ok(()) } else { Err(format!("{refused:?}")) }
    });
    assert_eq!(monitor.node("api-1").expect("known").state, "up", "a refused report changes nothing");
    send(&ring, Kind::Exit, 5, 3);
    let events = monitor.wait_for_events("api-1", 2);
    assert_eq!(events[1].summary(), "up -> down (process-exited)");
}

/// Kill rounds for [`figure_kill_to_down`].
const ROUNDS: usize = 100;

#[test]
#[ignore = "a figure for docs/DETECTION.md, not a check; see the module documentation"]
fn figure_kill_to_down() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let monitor = Monitor::start(&sandbox, &config(PATIENT, &receiver));
    let mut lags = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let node = format!("bench-{round:03}");
        let watched = Watched::spawn_sleep();
        let pid = watched.pid.to_string();
        let mut agent =
            Agent::start_with(&sandbox, &node, monitor.udp, INTERVAL, &[], &["--watch-pid", &pid]);
        monitor.wait_for_up(&node, 1);
        let killed = SystemTime::now();
        watched.kill();
        let events = monitor.wait_for_events(&node, 2);
        assert_eq!(events[1].summary(), "up -> down (process-exited)");
        let at = parse_time(&events[1].at);
        // Signed milliseconds: the monitor's wall time is its monotonic clock plus an offset,
        // so a transition may read a hair before the kill.
        let lag_ms = match at.duration_since(killed) {
            Ok(lag) => lag.as_secs_f64() * 1e3,
            Err(early) => -early.duration().as_secs_f64() * 1e3,
        };
        lags.push(lag_ms);
        assert!(agent.wait_exit().success());
    }
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| lags[((q * lags.len() as f64).ceil() as usize).clamp(1, lags.len()) - 1];
    println!(
        "kill to down (process-exited), {ROUNDS} rounds on loopback: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
         (transition `at` at millisecond resolution)",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    println!("slowest five (ms): {:?}", &lags[lags.len() - 5..]);
}

/// A process to watch, killed when the test ends however it ends.
struct Watched {
    pid: i32,
    /// Set when this test started it (`--watch-pid`); a command is the agent's child.
    own: Option<std::process::Child>,
}

impl Watched {
    fn spawn_sleep() -> Watched {
        let child = std::process::Command::new("sleep").arg("1000").spawn().expect("start sleep");
        Watched { pid: i32::try_from(child.id()).expect("Linux pids fit in i32"), own: Some(child) }
    }

    /// The command the agent started: the process whose parent is the agent, read from
    /// `/proc` (a restart replaces it, so this waits for one).
    fn child_of(agent: &Agent) -> Watched {
        let parent = agent.pid();
        let started = Instant::now();
        loop {
            let children: Vec<i32> = std::fs::read_dir("/proc")
                .expect("read /proc")
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| parent_of(*pid) == Some(parent))
                .collect();
            if let [pid] = children[..] {
                return Watched { pid, own: None };
            }
            assert!(started.elapsed() < PATIENCE, "agent {parent} has children {children:?}, not one");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&self) {
        kill(Pid::from_raw(self.pid), Signal::SIGKILL).expect("SIGKILL the watched process");
    }

    /// Waits until the process is gone (reaped by its parent).
    fn wait_gone(&self) {
        let started = Instant::now();
        while std::path::Path::new(&format!("/proc/{}", self.pid)).exists() {
            assert!(started.elapsed() < PATIENCE, "process {} outlived its agent", self.pid);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(child) = self.own.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The parent of `pid`, from `/proc/PID/stat` (the field after the state, after the name's
/// closing parenthesis: a name may contain spaces and parentheses).
fn parent_of(pid: i32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

fn wait_for_firing(monitor: &Monitor, receiver: &Receiver, node: &str) -> Value {
    monitor.wait_until(PATIENCE, &format!("a firing alert for {node} reaches the webhook"), || {
        let alerts = receiver.unique_alerts();
        alerts
            .iter()
            .find(|alert| alert["kind"] == "firing" && alert["subject"]["id"] == node)
            .cloned()
            .ok_or_else(|| format!("{} alerts", alerts.len()))
    })
}

/// The newest transition in `/v1/nodes/{node}`'s history.
fn latest_in_history(monitor: &Monitor, node: &str) -> Value {
    let (status, mut detail) = monitor.get_json(&format!("/v1/nodes/{node}"));
    assert_eq!(status, 200, "{detail}");
    detail["history"][0].take()
}

fn parse_time(text: &str) -> SystemTime {
    humantime::parse_rfc3339_weak(text).unwrap_or_else(|error| panic!("not RFC 3339 ({error}): {text}"))
}

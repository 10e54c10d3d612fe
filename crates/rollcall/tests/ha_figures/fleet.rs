//! What the figures of tests/ha_figures.rs share: `rollcall loadgen` as a child process
//! driven through its stdin, a monitor config for large fleets, counters read from the
//! monitors and from etcd, and percentiles.

use crate::etcd::Etcd;
use crate::support::{self, Monitor, Sandbox};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long `rollcall loadgen` may take to answer a command.
const ANSWER: Duration = Duration::from_secs(10);

/// A monitor config for a fleet of `nodes` impersonated nodes: room for them all, the
/// benchmark's receive buffer, no per-node series, and one webhook sink at `url` with a
/// `group_share` of 5 % (the default, 30 %, would not call 10 % of the fleet a mass failure:
/// each node would be paged on its own) and a `group_wait` of 10 s: nodes that stop together
/// had their last heartbeats spread over one interval (5 s), so their downs are spread as
/// much, and the default 5 s window closed on a fraction of them (a first run paged them one
/// by one).
pub fn fleet_config(url: &str, nodes: usize) -> String {
    format!(
        r#"
[monitor]
max_nodes = {max_nodes}
recv_buffer_bytes = 8388608

[metrics]
per_node_series = 0

[alerts]
group_wait = "10s"
group_share = 0.05

[[sink]]
name = "hook"
kind = "webhook"
url = "{url}"
timeout = "2s"
"#,
        max_nodes = nodes.max(1000)
    )
}

/// A running `rollcall loadgen`; killed when dropped.
pub struct Loadgen {
    process: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Loadgen {
    /// `nodes` nodes sending to every one of `targets` with `sandbox`'s key, every `interval`
    /// (or as fast as they can with `saturate`), for `duration` at most.
    pub fn start(
        sandbox: &Sandbox,
        targets: &[SocketAddr],
        nodes: usize,
        interval: &str,
        saturate: bool,
        duration: &str,
    ) -> Loadgen {
        let mut command = Command::new(support::bin());
        command.arg("loadgen").arg("--key-file").arg(sandbox.key_file());
        for target in targets {
            command.args(["--target", &target.to_string()]);
        }
        command.args(["--nodes", &nodes.to_string(), "--interval", interval, "--for", duration]);
        if saturate {
            command.arg("--saturate");
        }
        let mut process = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rollcall loadgen");
        let stdout = process.stdout.take().expect("stdout is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = process.stdin.take();
        Loadgen { process, stdin, lines }
    }

    /// Sends `line` and waits for the answer; returns when it was sent.
    pub fn command(&mut self, line: &str) -> Instant {
        let sent = Instant::now();
        let stdin = self.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "{line}").expect("write to rollcall loadgen");
        stdin.flush().expect("flush to rollcall loadgen");
        let answer = self
            .lines
            .recv_timeout(ANSWER)
            .unwrap_or_else(|error| panic!("loadgen: no answer to {line:?}: {error}"));
        eprintln!("loadgen: {answer}");
        sent
    }

    /// Waits (at most 60 s) until the run ends; returns how long it sent, as it says.
    pub fn finish(self) -> f64 {
        let line =
            self.lines.recv_timeout(Duration::from_secs(60)).expect("loadgen ends and says what it sent");
        let seconds = line.rsplit_once("seconds=").and_then(|(_, s)| s.parse().ok());
        seconds.unwrap_or_else(|| panic!("unexpected last line from loadgen: {line:?}"))
    }

    /// Waits until every one of `monitors` counts at least `count` nodes in `state`, at most
    /// `deadline`; returns when, or what the monitors counted last.
    pub fn wait_for_count(
        &mut self,
        monitors: &[&Monitor],
        state: &str,
        count: usize,
        deadline: Duration,
    ) -> Result<Instant, String> {
        let started = Instant::now();
        let series = format!("rollcall_nodes{{state=\"{state}\"}}");
        loop {
            let counts: Vec<u64> = monitors.iter().map(|monitor| metric(monitor, &series) as u64).collect();
            if counts.iter().all(|&seen| seen >= count as u64) {
                return Ok(Instant::now());
            }
            if let Ok(Some(status)) = self.process.try_wait() {
                panic!("rollcall loadgen exited ({status}) while waiting for {count} {state}");
            }
            if started.elapsed() > deadline {
                return Err(format!(
                    "{count} {state} not reached within {deadline:?}: the monitors count {counts:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// One series of a monitor's `/metrics` (0 when it is absent).
pub fn metric(monitor: &Monitor, series: &str) -> f64 {
    let (status, text) = monitor.get_text("/metrics");
    assert_eq!(status, 200, "GET /metrics: {text}");
    text.lines().filter_map(|line| line.strip_prefix(series)?.trim().parse().ok()).next().unwrap_or(0.0)
}

/// Heartbeats the monitor accepted so far.
pub fn accepted(monitor: &Monitor) -> u64 {
    metric(monitor, "rollcall_heartbeats_received_total{kind=\"heartbeat\"}") as u64
}

/// CPU time (user + system, every thread) the process `pid` has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').expect("stat has a command name").1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of proc(5), 12 and 13 after the name and state.
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // In USER_HZ, which Linux fixes at 100 for what /proc shows, whatever the kernel's HZ.
    ticks as f64 / 100.0
}

/// [`accepted`] once it stops growing (what was queued has been handled), at most 30 s.
pub fn settle_accepted(monitor: &Monitor) -> u64 {
    let started = Instant::now();
    let mut last = accepted(monitor);
    while started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
        let now = accepted(monitor);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// What etcd's first member says it did (every member applies every write, so one tells).
#[derive(Clone, Copy, Debug, Default)]
pub struct EtcdCounters {
    /// Raft proposals committed: every write to the cluster (puts, deletes, transactions
    /// with writes, lease grants and revocations).
    pub proposals: f64,
    pub txn: f64,
    pub put: f64,
    pub delete: f64,
}

impl EtcdCounters {
    pub fn minus(&self, before: &EtcdCounters) -> EtcdCounters {
        EtcdCounters {
            proposals: self.proposals - before.proposals,
            txn: self.txn - before.txn,
            put: self.put - before.put,
            delete: self.delete - before.delete,
        }
    }
}

impl std::fmt::Display for EtcdCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "proposals committed {:.0}, txns {:.0}, puts {:.0}, deletes {:.0}",
            self.proposals, self.txn, self.put, self.delete
        )
    }
}

/// `GET /metrics` of etcd's first member (etcd 3.4's names).
pub fn etcd_counters(etcd: &Etcd) -> EtcdCounters {
    let endpoints = etcd.endpoints_toml();
    let first = endpoints.split(',').next().expect("an endpoint").trim().trim_matches('"');
    let client: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().into();
    let text = client
        .get(format!("{first}/metrics"))
        .call()
        .and_then(|mut response| response.body_mut().read_to_string())
        .unwrap_or_else(|error| panic!("GET {first}/metrics: {error}"));
    let value = |name: &str| -> f64 {
        text.lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .next()
            .unwrap_or(0.0)
    };
    EtcdCounters {
        proposals: value("etcd_server_proposals_committed_total"),
        txn: value("etcd_mvcc_txn_total"),
        put: value("etcd_mvcc_put_total"),
        delete: value("etcd_mvcc_delete_total"),
    }
}

/// Nearest-rank percentiles of durations.
pub struct Percentiles {
    sorted: Vec<Duration>,
}

impl Percentiles {
    pub fn of(mut samples: Vec<Duration>) -> Percentiles {
        assert!(!samples.is_empty(), "percentiles of no samples");
        samples.sort();
        Percentiles { sorted: samples }
    }

    fn rank(&self, p: f64) -> String {
        let index = ((p * self.sorted.len() as f64).ceil() as usize).clamp(1, self.sorted.len()) - 1;
        format!("{:.2} s", self.sorted[index].as_secs_f64())
    }

    pub fn p50(&self) -> String {
        self.rank(0.50)
    }

    pub fn p99(&self) -> String {
        self.rank(0.99)
    }

    pub fn max(&self) -> String {
        self.rank(1.0)
    }

    pub fn min(&self) -> String {
        format!("{:.2} s", self.sorted[0].as_secs_f64())
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "min {}, p50 {}, p99 {}, max {}", self.min(), self.p50(), self.p99(), self.max())
    }
}

/// Every state transition the monitor made so far (all kinds: to suspect, down, up...).
pub fn transitions(monitor: &Monitor) -> f64 {
    let (status, text) = monitor.get_text("/metrics");
    assert_eq!(status, 200, "GET /metrics: {text}");
    text.lines()
        .filter(|line| line.starts_with("rollcall_transitions_total"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

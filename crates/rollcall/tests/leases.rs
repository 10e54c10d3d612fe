//! Leases with fencing tokens end to end (docs/LEASES.md): a real monitor, real agents, and
//! `rollcall lease run` contenders whose commands are small shell scripts that append
//! `start TOKEN NANOS HOLDER` and `stop TOKEN NANOS HOLDER` lines to one log (wall-clock
//! nanoseconds from `date +%s%N`: every process here reads the same clock). A checker reads
//! the log: tenures never overlap, and tokens only go up.
//!
//! Timing: every wait is for a condition with a deadline. The one fixed pause holds a
//! holder stopped for longer than its TTL, which is what that test is about.

mod support;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{Agent, DEADLINE, LeaseRun, Monitor, Sandbox};

const TOKEN: &str = "lease-token-0123456789";
const INTERVAL: Duration = Duration::from_millis(200);

/// The quick detector (a silent node is down after about 1.2 s) and an API token.
fn config() -> String {
    format!("{}\n[api]\ntoken = \"{TOKEN}\"\n", support::QUICK)
}

/// The command every contender runs: one start line, one stop line on SIGTERM.
const WORKER: &str = r#"#!/bin/sh
log="$1"
echo "start $ROLLCALL_FENCING_TOKEN $(date +%s%N) $ROLLCALL_LEASE_HOLDER $$" >> "$log"
trap 'echo "stop $ROLLCALL_FENCING_TOKEN $(date +%s%N) $ROLLCALL_LEASE_HOLDER $$" >> "$log"; exit 0' TERM
while :; do sleep 0.05; done
"#;

/// Like [`WORKER`], and every 100 ms it writes to a resource that keeps the highest token
/// it has seen and rejects lower ones (the fencing check of docs/LEASES.md).
const FENCED_WORKER: &str = r#"#!/bin/sh
log="$1"; resource="$2"
echo "start $ROLLCALL_FENCING_TOKEN $(date +%s%N) $ROLLCALL_LEASE_HOLDER $$" >> "$log"
trap 'echo "stop $ROLLCALL_FENCING_TOKEN $(date +%s%N) $ROLLCALL_LEASE_HOLDER $$" >> "$log"; exit 0' TERM
while :; do
  flock "$resource.lock" sh -c '
    highest=$(cat "$1" 2>/dev/null || echo 0)
    if [ "$2" -ge "$highest" ]; then
      echo "$2" > "$1"; echo "accept $2" >> "$1.log"
    else
      echo "reject $2" >> "$1.log"
    fi' fence "$resource" "$ROLLCALL_FENCING_TOKEN"
  sleep 0.1
done
"#;

#[derive(Clone, Debug, PartialEq)]
struct Line {
    kind: String,
    token: u64,
    at_ns: u128,
    holder: String,
    pid: i32,
}

fn read_log(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                [kind, token, at, holder, pid] => Some(Line {
                    kind: kind.to_string(),
                    token: token.parse().ok()?,
                    at_ns: at.parse().ok()?,
                    holder: holder.to_string(),
                    pid: pid.parse().ok()?,
                }),
                _ => None,
            }
        })
        .collect()
}

/// The checker: in log order, every start comes after the previous tenure's stop (so no
/// two commands ran at once), and each start has a higher token than the one before.
fn check_tenures(lines: &[Line]) {
    let mut running: Option<&Line> = None;
    let mut last_token = 0;
    for line in lines {
        match line.kind.as_str() {
            "start" => {
                assert!(running.is_none(), "{line:?} started while {running:?} ran\nlog: {lines:#?}");
                assert!(line.token > last_token, "token {} after {last_token}\nlog: {lines:#?}", line.token);
                last_token = line.token;
                running = Some(line);
            }
            "stop" => {
                let start = running.take();
                assert!(
                    start.is_some_and(|start| start.token == line.token && start.at_ns <= line.at_ns),
                    "{line:?} stops what did not run ({start:?})\nlog: {lines:#?}"
                );
            }
            other => panic!("unexpected line kind {other}"),
        }
    }
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos()
}

struct World {
    sandbox: Sandbox,
    monitor: Monitor,
    log: PathBuf,
    worker: PathBuf,
}

impl World {
    fn start(nodes: &[&str]) -> (World, Vec<Agent>) {
        let sandbox = Sandbox::new();
        let monitor = Monitor::start(&sandbox, &config());
        let agents: Vec<Agent> =
            nodes.iter().map(|node| Agent::start(&sandbox, node, monitor.udp, INTERVAL, &[])).collect();
        for node in nodes {
            monitor.wait_for_state(node, "up");
        }
        let log = sandbox.path().join("tenures.log");
        let worker = sandbox.write_file("worker", "sh", WORKER);
        (World { sandbox, monitor, log, worker }, agents)
    }

    fn contender(&self, holder: &str, node: &str, ttl: &str) -> LeaseRun {
        let args = ["--name", "leader", "--node", node, "--ttl", ttl, "--token", TOKEN];
        let worker = self.worker.display().to_string();
        let log = self.log.display().to_string();
        LeaseRun::start(&self.sandbox, &self.monitor, holder, &args, &["sh", &worker, &log])
    }

    /// Waits until the log's latest line is a start (someone runs), and returns it.
    fn running(&self, after_token: u64) -> Line {
        self.monitor.wait_until(DEADLINE, &format!("a command with a token above {after_token} runs"), || {
            let lines = read_log(&self.log);
            match lines.last() {
                Some(line) if line.kind == "start" && line.token > after_token => Ok(line.clone()),
                other => Err(format!("last line {other:?}")),
            }
        })
    }

    fn wait_for_line(&self, what: &str, found: impl Fn(&Line) -> bool) -> Line {
        self.monitor.wait_until(DEADLINE, what, || {
            read_log(&self.log).into_iter().find(|line| found(line)).ok_or_else(|| "not yet".to_string())
        })
    }
}

#[test]
fn two_contenders_never_run_at_once_and_tokens_only_go_up() {
    let (world, _agents) = World::start(&["n1", "n2"]);
    let mut runs = vec![world.contender("a0", "n1", "3s"), world.contender("b0", "n2", "3s")];
    let mut token = 0;
    // Each round stops the holder's `lease run` (it stops its command and releases the lease),
    // lets the other contender take over, and starts a fresh contender in its place.
    for round in 1..=4 {
        let holding = world.running(token);
        token = holding.token;
        let index =
            runs.iter().position(|run| run.holder == holding.holder).expect("a contender of ours holds it");
        let mut stopped = runs.remove(index);
        stopped.signal(Signal::SIGTERM);
        assert!(stopped.wait_exit().success(), "{}", stopped.stderr_tail());
        let node = if holding.holder.starts_with('a') { "n1" } else { "n2" };
        let prefix = &holding.holder[..1];
        runs.push(world.contender(&format!("{prefix}{round}"), node, "3s"));
    }
    world.running(token);
    let lines = read_log(&world.log);
    assert!(lines.iter().filter(|line| line.kind == "start").count() >= 5, "{lines:#?}");
    check_tenures(&lines);
}

#[test]
fn a_holder_whose_agent_dies_loses_the_lease_at_detection_speed_not_at_its_ttl() {
    const TTL: Duration = Duration::from_secs(30);
    let (world, mut agents) = World::start(&["n1", "n2"]);
    let _first = world.contender("a", "n1", "30s");
    let holding = world.running(0);
    assert_eq!(holding.holder, "a");
    let _second = world.contender("b", "n2", "30s");

    let killed = Instant::now();
    agents[0].signal(Signal::SIGKILL);
    agents[0].wait_exit();
    let taken = world.wait_for_line("b runs", |line| line.kind == "start" && line.holder == "b");
    let failover = killed.elapsed();
    assert!(failover < TTL, "b ran {failover:?} after the crash: the lease waited for its TTL");
    assert!(taken.token > holding.token, "{taken:?} after {holding:?}");
    let down = world.monitor.wait_for_events("n1", 3);
    assert!(down.iter().any(|event| event.to == "down"), "{down:?}");
    eprintln!("failover after the agent's SIGKILL: {failover:?} (detection included)");
    // The old holder's next renewal is refused: it stops its command.
    world.wait_for_line("a stops its command", |line| line.kind == "stop" && line.holder == "a");
}

#[test]
fn a_holder_stopped_past_its_ttl_is_fenced_off_when_it_wakes() {
    let (world, agents) = World::start(&["n1", "n2"]);
    let fenced = world.sandbox.write_file("fenced", "sh", FENCED_WORKER);
    let resource = world.sandbox.path().join("resource");
    let contender = |holder: &str, node: &str| {
        let args = ["--name", "leader", "--node", node, "--ttl", "2s", "--token", TOKEN];
        let command =
            [fenced.display().to_string(), world.log.display().to_string(), resource.display().to_string()];
        let command: Vec<&str> = std::iter::once("sh").chain(command.iter().map(String::as_str)).collect();
        LeaseRun::start(&world.sandbox, &world.monitor, holder, &args, &command)
    };
    let first = contender("a", "n1");
    let holding = world.running(0);
    let writes = resource.with_extension("log");
    let accepted = |token: u64| {
        let writes = writes.clone();
        move || {
            let text = std::fs::read_to_string(&writes).unwrap_or_default();
            if text.lines().any(|line| line == format!("accept {token}")) { Ok(()) } else { Err(text) }
        }
    };
    world.monitor.wait_until(DEADLINE, "a's writes are accepted", accepted(holding.token));
    let _second = contender("b", "n2");

    // The holder's whole host stops: its agent, `lease run`, and the command's group.
    let agent = Pid::from_raw(agents[0].pid() as i32);
    let command = Pid::from_raw(holding.pid);
    // The command's process group (its guard's, see `lease run`), stopped and woken whole.
    let group = nix::unistd::getpgid(Some(command)).expect("the command runs");
    kill(agent, Signal::SIGSTOP).expect("stop the agent");
    kill(Pid::from_raw(first.pid() as i32), Signal::SIGSTOP).expect("stop lease run");
    killpg(group, Signal::SIGSTOP).expect("stop the command");
    let stopped = Instant::now();
    let taken = world.wait_for_line("b runs", |line| line.kind == "start" && line.holder == "b");
    world.monitor.wait_until(DEADLINE, "b's writes are accepted", accepted(taken.token));
    // Stopped for longer than the TTL: the point of this test.
    std::thread::sleep(Duration::from_secs(2).saturating_sub(stopped.elapsed()) + Duration::from_millis(500));

    // The command wakes first, before its `lease run` can stop it: its next write is stale.
    killpg(group, Signal::SIGCONT).expect("wake the command");
    let stale = format!("reject {}", holding.token);
    world.monitor.wait_until(DEADLINE, "the stale holder's write is rejected", || {
        let text = std::fs::read_to_string(&writes).unwrap_or_default();
        if text.lines().any(|line| line == stale) { Ok(()) } else { Err(text) }
    });
    kill(Pid::from_raw(first.pid() as i32), Signal::SIGCONT).expect("wake lease run");
    kill(agent, Signal::SIGCONT).expect("wake the agent");
    // Its tenure is long over: `lease run` kills the command at once (no grace is left).
    world.monitor.wait_until(DEADLINE, "a's command is gone", || match kill(command, None) {
        Err(nix::errno::Errno::ESRCH) => Ok(()),
        other => Err(format!("{other:?}")),
    });

    let text = std::fs::read_to_string(&writes).expect("the resource was written");
    let first_of_b =
        text.lines().position(|line| line == format!("accept {}", taken.token)).expect("b wrote");
    for line in text.lines().skip(first_of_b) {
        let token: u64 =
            line.split_whitespace().nth(1).and_then(|t| t.parse().ok()).expect("accept|reject TOKEN");
        assert!(
            line.starts_with("reject") || token >= taken.token,
            "{line} accepted after b's token {}",
            taken.token
        );
    }
}

#[test]
fn a_holder_cut_from_the_monitor_stops_before_anyone_else_starts() {
    const TTL_S: u64 = 3;
    let (world, _agents) = World::start(&["n1", "n2"]);
    let mut first = world.contender("a", "n1", "3s");
    let holding = world.running(0);
    let _second = world.contender("b", "n2", "3s");
    // Every renewal now goes unanswered: the monitor is stopped.
    let cut_at = now_ns();
    world.monitor.signal(Signal::SIGSTOP);
    let stop = read_until(&world.log, |line| line.kind == "stop" && line.holder == "a");
    // `a` would campaign again once the monitor is back: it leaves the field to `b`.
    first.signal(Signal::SIGTERM);
    world.monitor.signal(Signal::SIGCONT);
    assert!(first.wait_exit().success(), "{}", first.stderr_tail());
    assert!(stop.token == holding.token);
    assert!(
        stop.at_ns <= cut_at + u128::from(TTL_S) * 1_000_000_000,
        "a stopped {} ms after its renewals were cut, past its TTL",
        (stop.at_ns - cut_at) / 1_000_000
    );
    let taken = world.wait_for_line("b runs", |line| line.kind == "start" && line.holder == "b");
    assert!(stop.at_ns < taken.at_ns, "a stopped at {} ns, b started at {} ns", stop.at_ns, taken.at_ns);
    check_tenures(&read_log(&world.log));
}

#[test]
fn tokens_are_never_issued_twice_across_fifty_crashes_of_the_monitor() {
    const ROUNDS: usize = 50;
    let sandbox = Sandbox::new();
    let mut monitor = Monitor::start(&sandbox, &config());
    let udp = monitor.udp;
    let _agent = Agent::start(&sandbox, "n1", udp, INTERVAL, &[]);
    let keeper = acquire_when_up(&monitor, "keeper", "k");
    let mut tokens = vec![keeper];
    for round in 0..ROUNDS {
        let token = acquire_when_up(&monitor, &format!("r{round}"), "h");
        tokens.push(token);
        // The keeper renewed in time (every restart gives it a full TTL): it keeps its lease.
        let (status, body) = post(&monitor, "keeper", "renew", json!({ "holder": "k", "token": keeper }));
        assert_eq!(status, 200, "round {round}: {body}");
        monitor.crash();
        monitor = Monitor::start_on(&sandbox, &config(), udp);
    }
    let lease = acquire_when_up(&monitor, "last", "h");
    tokens.push(lease);
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "a token went backwards or repeated: {tokens:?}"
    );
    let (status, held) = monitor.get_json("/v1/leases/keeper");
    assert_eq!((status, held["token"].as_u64()), (200, Some(keeper)), "{held}");
}

#[test]
fn bad_lease_requests_get_clear_json_errors_and_change_nothing() {
    let (world, _agents) = World::start(&["n1"]);
    let monitor = &world.monitor;
    let token = acquire_when_up(monitor, "good", "a");
    let long = "x".repeat(129);
    // (lease, verb, body, API token, status, code)
    type Case<'a> = (&'a str, &'a str, Value, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("good", "acquire", json!({ "node": "ghost", "ttl_ms": 5000 }), Some(TOKEN), 404, "unknown_node"),
        (&long, "acquire", json!({ "node": "n1", "ttl_ms": 5000 }), Some(TOKEN), 400, "bad_request"),
        ("a%20b", "acquire", json!({ "node": "n1", "ttl_ms": 5000 }), Some(TOKEN), 400, "bad_request"),
        (
            "other",
            "acquire",
            json!({ "node": "n1", "holder": "", "ttl_ms": 5000 }),
            Some(TOKEN),
            400,
            "bad_request",
        ),
        ("other", "acquire", json!({ "node": "n1", "ttl_ms": 999 }), Some(TOKEN), 400, "bad_request"),
        ("other", "acquire", json!({ "node": "n1", "ttl_ms": 3_600_001 }), Some(TOKEN), 400, "bad_request"),
        ("other", "acquire", json!({ "node": "n1" }), Some(TOKEN), 400, "bad_request"),
        ("good", "acquire", json!({ "node": "n1", "holder": "b", "ttl_ms": 5000 }), Some(TOKEN), 409, "held"),
        ("good", "renew", json!({ "holder": "b", "token": token }), Some(TOKEN), 409, "not_holder"),
        ("good", "renew", json!({ "holder": "a", "token": token + 1 }), Some(TOKEN), 409, "not_holder"),
        ("good", "release", json!({ "holder": "b", "token": token }), Some(TOKEN), 409, "not_holder"),
        ("good", "release", json!({ "holder": "a", "token": token }), None, 401, "unauthorized"),
        ("", "acquire", json!({ "node": "n1", "ttl_ms": 5000 }), Some(TOKEN), 400, "bad_request"),
    ];
    for (name, verb, body, auth, status, code) in cases {
        let (got, text) = monitor.post(&format!("/v1/leases/{name}/{verb}"), auth, Some(&body.to_string()));
        let error: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{verb} {body}: not JSON: {text}"));
        assert_eq!((got, error["code"].as_str()), (status, Some(code)), "{verb} {name} {body}: {text}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
    }
    let (status, list) = monitor.get_json("/v1/leases");
    assert_eq!(status, 200);
    let held: Vec<(&str, &str, u64)> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|lease| {
            (
                lease["name"].as_str().unwrap_or(""),
                lease["holder"].as_str().unwrap_or(""),
                lease["token"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(held, vec![("good", "a", token)], "nothing changed");
    assert_eq!(acquire_when_up(monitor, "next", "c"), token + 1, "no token was used up by a refusal");
    let (status, _) = monitor.get_json("/v1/leases/nobody");
    assert_eq!(status, 404);
    // An empty name at the end of a path matches no operation: a JSON 404 saying why.
    let (status, empty) = monitor.get_json("/v1/leases/");
    assert_eq!((status, empty["code"].as_str()), (404, Some("not_found")), "{empty}");
    assert!(empty["message"].as_str().is_some_and(|m| m.contains("segment is empty")), "{empty}");
    let metrics = monitor.metrics();
    assert_eq!(metrics.get("rollcall_leases_held"), 2.0);
    assert_eq!(metrics.get("rollcall_lease_grants_total"), 2.0);
    let listed = world.sandbox.run_to_exit(&[
        "leases".into(),
        "--json".into(),
        "--api".into(),
        format!("http://{}", monitor.http),
    ]);
    assert!(listed.status.success(), "{}", listed.stderr);
    assert!(listed.stdout.contains("\"good\"") && listed.stdout.contains("\"next\""), "{}", listed.stdout);
}

/// `POST /v1/leases/{name}/{verb}` with the token.
fn post(monitor: &Monitor, name: &str, verb: &str, body: Value) -> (u16, String) {
    monitor.post(&format!("/v1/leases/{name}/{verb}"), Some(TOKEN), Some(&body.to_string()))
}

/// Acquires `name` for `holder` on node n1 (60 s), waiting for n1 to be up (after a
/// restart, until its first heartbeat): the token.
fn acquire_when_up(monitor: &Monitor, name: &str, holder: &str) -> u64 {
    monitor.wait_until(DEADLINE, &format!("{holder} holds {name}"), || {
        let (status, body) =
            post(monitor, name, "acquire", json!({ "node": "n1", "holder": holder, "ttl_ms": 60_000 }));
        match status {
            200 => serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|lease| lease["token"].as_u64())
                .ok_or(body),
            _ => Err(format!("{status} {body}")),
        }
    })
}

/// Reads the log until a line matches, without the monitor's API (it may be stopped).
fn read_until(log: &Path, found: impl Fn(&Line) -> bool) -> Line {
    let started = Instant::now();
    loop {
        if let Some(line) = read_log(log).into_iter().find(|line| found(line)) {
            return line;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no matching line in {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_lease_run_killed_by_sigkill_takes_its_command_with_it() {
    let (world, _agents) = World::start(&["n1"]);
    let run = world.contender("a", "n1", "10s");
    let holding = world.running(0);
    run.signal(Signal::SIGKILL);
    // SIGKILL cannot be caught: the guard between `lease run` and the command sees its parent
    // gone and kills the command, which must not go on without the lease.
    world.monitor.wait_until(DEADLINE, "the command is gone", || {
        match kill(Pid::from_raw(holding.pid), None) {
            Err(nix::errno::Errno::ESRCH) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

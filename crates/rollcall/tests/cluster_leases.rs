//! Leases with `[cluster]` (docs/LEASES.md, "Several monitors"): a real three-member etcd,
//! two real monitors and real agents. etcd holds the leases, so any monitor answers for
//! them; the token is the etcd revision that created the lease, monotonic across monitors;
//! the leader releases the leases of a node the monitors agree is down, at detection
//! speed; and a `lease run` holder keeps its lease through the death of the monitor it
//! talked to, renewing through another.

#[path = "support/cluster.rs"]
mod cluster_support;
#[path = "support/etcd.rs"]
mod etcd;
mod support;

use cluster_support::{PATIENCE, agent_to, config, wait_for_one_leader};
use etcd::Etcd;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{Monitor, Sandbox};

const TOKEN: &str = "cluster-lease-token-0123456789";
/// Far longer than detection: a lease that ends within it ended at detection speed.
const LONG_TTL_MS: u64 = 60_000;

struct Pair {
    _etcd: Etcd,
    _dir: Sandbox,
    sandboxes: Vec<Sandbox>,
    monitors: Vec<Option<Monitor>>,
}

impl Pair {
    fn start() -> Pair {
        let dir = Sandbox::new();
        let etcd = Etcd::start(dir.path());
        let sandboxes: Vec<Sandbox> = (0..2).map(|_| Sandbox::new()).collect();
        std::fs::copy(sandboxes[0].key_file(), sandboxes[1].key_file()).expect("share the key file");
        let monitors = ["m1", "m2"]
            .iter()
            .zip(&sandboxes)
            .map(|(name, sandbox)| {
                let text = format!(
                    "{}\n[api]\ntoken = \"{TOKEN}\"\n\n{}",
                    support::QUICK,
                    config(&etcd.endpoints_toml(), name)
                );
                Some(Monitor::start(sandbox, &text))
            })
            .collect();
        Pair { _etcd: etcd, _dir: dir, sandboxes, monitors }
    }

    fn monitor(&self, index: usize) -> &Monitor {
        self.monitors[index].as_ref().expect("a live monitor")
    }
}

fn post(monitor: &Monitor, name: &str, verb: &str, body: Value) -> (u16, Value) {
    let (status, text) =
        monitor.post(&format!("/v1/leases/{name}/{verb}"), Some(TOKEN), Some(&body.to_string()));
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {status} {text}")))
}

/// Acquires `name` for `node` (holder = node) through `monitor`, once the node is up there.
fn acquire(monitor: &Monitor, name: &str, node: &str) -> u64 {
    monitor.wait_until(PATIENCE, &format!("{node} holds {name}"), || {
        let (status, lease) = post(monitor, name, "acquire", json!({ "node": node, "ttl_ms": LONG_TTL_MS }));
        match status {
            200 => lease["token"].as_u64().ok_or(format!("no token in {lease}")),
            _ => Err(format!("{status} {lease}")),
        }
    })
}

/// `GET /v1/leases/{name}/watch`: its `data:` lines as they come, from a thread.
fn watch(monitor: &Monitor, name: &str) -> mpsc::Receiver<String> {
    let mut stream = TcpStream::connect(monitor.http).expect("connect to the monitor");
    write!(
        stream,
        "GET /v1/leases/{name}/watch HTTP/1.1\r\nHost: rollcall\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("send the request");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(data) = line.strip_prefix("data:")
                && sender.send(data.trim().to_string()).is_err()
            {
                break;
            }
        }
    });
    lines
}

/// The next watch event whose change is `change`, within [`PATIENCE`].
fn next_change(lines: &mpsc::Receiver<String>, change: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = lines.recv_timeout(left) else { break };
        let event: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if event["change"] == change {
            return event;
        }
    }
    panic!("no {change:?} event on the watch stream within {PATIENCE:?}");
}

fn read(monitor: &Monitor, name: &str) -> (u16, Value) {
    monitor.get_json(&format!("/v1/leases/{name}"))
}

#[test]
fn any_monitor_answers_for_a_lease_and_the_leader_releases_it_when_the_cluster_agrees_its_node_is_down() {
    let mut pair = Pair::start();
    wait_for_one_leader(&[pair.monitor(0), pair.monitor(1)]);
    let targets = [pair.monitor(0).udp, pair.monitor(1).udp];
    let n1 = agent_to(&pair.sandboxes[0], "n1", &targets);
    let _n2 = agent_to(&pair.sandboxes[0], "n2", &targets);

    for monitor in [pair.monitor(0), pair.monitor(1)] {
        for node in ["n1", "n2"] {
            monitor.wait_until(PATIENCE, &format!("{node} up"), || {
                match monitor.get_json(&format!("/v1/nodes/{node}")) {
                    (200, view) if view["state"] == "up" => Ok(()),
                    (status, view) => Err(format!("{status} {view}")),
                }
            });
        }
    }
    // Granted through m1, seen the same through m2: one lease, held in etcd.
    let first = acquire(pair.monitor(0), "db", "n1");
    let (status, seen) = read(pair.monitor(1), "db");
    assert_eq!(status, 200, "{seen}");
    assert_eq!((seen["holder"].as_str(), seen["token"].as_u64()), (Some("n1"), Some(first)), "{seen}");
    let listed = pair.monitor(1).get_json("/v1/leases").1;
    assert!(listed.as_array().is_some_and(|leases| leases.len() == 1), "{listed}");

    // Another holder through the other monitor is refused; the holder renews through it.
    let (status, refused) =
        post(pair.monitor(1), "db", "acquire", json!({ "node": "n2", "ttl_ms": LONG_TTL_MS }));
    assert_eq!((status, refused["code"].as_str()), (409, Some("held")), "{refused}");
    let (status, renewed) = post(pair.monitor(1), "db", "renew", json!({ "holder": "n1", "token": first }));
    assert_eq!((status, renewed["token"].as_u64()), (200, Some(first)), "{renewed}");
    let (status, stale) = post(pair.monitor(1), "db", "renew", json!({ "holder": "n1", "token": first + 1 }));
    assert_eq!((status, stale["code"].as_str()), (409, Some("not_holder")), "{stale}");
    // A retried acquire by the holder is the same tenure.
    assert_eq!(acquire(pair.monitor(1), "db", "n1"), first);

    // A follower's watch stream shows what the leader does in etcd.
    let follower = 1 - wait_for_one_leader(&[pair.monitor(0), pair.monitor(1)]).0;
    let changes = watch(pair.monitor(follower), "db");
    assert_eq!(next_change(&changes, "current")["lease"]["token"].as_u64(), Some(first));
    // n1 dies: both monitors agree it is down, and the leader ends its lease long before
    // the TTL (60 s) would.
    let killed = Instant::now();
    n1.signal(Signal::SIGKILL);
    pair.monitor(1).wait_until(
        Duration::from_secs(20),
        "the lease of the dead node released",
        || match read(pair.monitor(1), "db") {
            (404, _) => Ok(()),
            (status, lease) => Err(format!("{status} {lease}")),
        },
    );
    assert!(killed.elapsed() < Duration::from_millis(LONG_TTL_MS), "released by detection, not by expiry");
    let gone = next_change(&changes, "node-gone");
    assert_eq!(
        (gone["lease"]["holder"].as_str(), gone["lease"]["token"].as_u64()),
        (Some("n1"), Some(first)),
        "{gone}"
    );
    let second = acquire(pair.monitor(1), "db", "n2");
    assert!(second > first, "a new holder gets a higher token: {second} after {first}");
    let granted = next_change(&changes, "granted");
    assert_eq!(granted["lease"]["token"].as_u64(), Some(second), "{granted}");

    // Whichever monitor dies, the leases stay, and tokens keep going up from the survivor.
    let (leader, _) = wait_for_one_leader(&[pair.monitor(0), pair.monitor(1)]);
    let survivor = 1 - leader;
    pair.monitors[leader].take().expect("the leader").stop(Signal::SIGKILL);
    let (status, kept) = read(pair.monitor(survivor), "db");
    assert_eq!(
        (status, kept["holder"].as_str(), kept["token"].as_u64()),
        (200, Some("n2"), Some(second)),
        "{kept}"
    );
    let third = acquire(pair.monitor(survivor), "cache", "n2");
    assert!(third > second, "tokens from another monitor are still higher: {third} after {second}");
    // Releasing by the holder frees it at once, through any monitor.
    let (status, released) =
        post(pair.monitor(survivor), "cache", "release", json!({ "holder": "n2", "token": third }));
    assert_eq!(status, 200, "{released}");
    assert_eq!(read(pair.monitor(survivor), "cache").0, 404);
}

#[test]
fn a_lease_run_holder_keeps_its_lease_through_the_death_of_its_monitor() {
    let mut pair = Pair::start();
    wait_for_one_leader(&[pair.monitor(0), pair.monitor(1)]);
    let targets = [pair.monitor(0).udp, pair.monitor(1).udp];
    let _n1 = agent_to(&pair.sandboxes[0], "n1", &targets);
    let log = pair.sandboxes[0].path().join("tenures.log");
    let script = pair.sandboxes[0].path().join("worker.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"start $ROLLCALL_FENCING_TOKEN\" >> \"$1\"\ntrap 'echo \"stop $ROLLCALL_FENCING_TOKEN\" >> \"$1\"; exit 0' TERM\nwhile :; do sleep 0.05; done\n")
        .expect("write the worker");
    let apis = [format!("http://{}", pair.monitor(0).http), format!("http://{}", pair.monitor(1).http)];
    let mut runner = std::process::Command::new(support::bin())
        .args(["lease", "run", "--name", "billing", "--node", "n1", "--ttl", "3s"])
        .args(["--api", &apis[0], "--also-api", &apis[1], "--token", TOKEN, "--", "sh"])
        .arg(&script)
        .arg(&log)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start rollcall lease run");
    let started = pair.monitor(1).wait_until(PATIENCE, "the command runs", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().next().map(str::to_string).ok_or_else(|| "no start line yet".to_string())
    });
    let token: u64 = started.trim_start_matches("start ").parse().expect("a token in the start line");

    // The monitor it asked first dies: renewals go to the other, through etcd.
    pair.monitors[0].take().expect("m1").stop(Signal::SIGKILL);
    let killed = Instant::now();
    // Three TTLs: a holder that could not renew would have stopped within one.
    pair.monitor(1).wait_until(PATIENCE, "three TTLs after m1 died, the lease still held", || {
        let (status, lease) = read(pair.monitor(1), "billing");
        if status != 200 || lease["token"].as_u64() != Some(token) {
            panic!("the holder lost its lease when its monitor died: {status} {lease}");
        }
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!log.contains("stop"), "the command was stopped: {log}");
        if killed.elapsed() < Duration::from_secs(9) { Err("waiting".to_string()) } else { Ok(()) }
    });
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(runner.id() as i32), Signal::SIGTERM);
    let _ = runner.wait();
}

//! Paging with `[cluster]`: three monitors on a real three-member etcd, real agents sending
//! to all of them, one webhook receiver that every monitor is configured to page.
//!
//! - A crash is paged once, by the leader, with its fencing token and a cluster-wide
//!   idempotency key; a node only one monitor cannot hear is `suspect (unreachable from
//!   ...)` and pages nobody.
//! - Kill -9 of the leader: the next crash is paged by the new leader with a higher token,
//!   and the resolution of an incident the old leader opened still arrives, for the same
//!   incident, without paging it again as new.
//! - A leader paused past its lease while a node dies gets no alert through: every alert
//!   the receiver sees carries the new leader's token.

#[path = "support/cluster.rs"]
mod cluster_support;
#[path = "support/etcd.rs"]
mod etcd;
#[path = "support/receiver.rs"]
mod receiver;
mod support;

use cluster_support::{PATIENCE, agent_to, cluster, config, wait_for_one_leader};
use etcd::Etcd;
use nix::sys::signal::Signal;
use receiver::Receiver;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{Monitor, Sandbox};

const NAMES: [&str; 3] = ["m1", "m2", "m3"];

/// Three monitors sharing one key file, each paging `hook` at once.
struct Trio {
    _etcd: Etcd,
    _dir: Sandbox,
    sandboxes: Vec<Sandbox>,
    monitors: Vec<Option<Monitor>>,
    hook: Receiver,
}

impl Trio {
    fn start() -> Trio {
        let dir = Sandbox::new();
        let etcd = Etcd::start(dir.path());
        let endpoints = etcd.endpoints_toml();
        let hook = Receiver::start();
        let sandboxes: Vec<Sandbox> = NAMES.iter().map(|_| Sandbox::new()).collect();
        for sandbox in &sandboxes[1..] {
            std::fs::copy(sandboxes[0].key_file(), sandbox.key_file()).expect("share the key file");
        }
        let monitors = NAMES
            .iter()
            .zip(&sandboxes)
            .map(|(name, sandbox)| {
                let config = format!("{}{}", support::quick_pages_to(&hook.url()), config(&endpoints, name));
                Some(Monitor::start(sandbox, &config))
            })
            .collect();
        Trio { _etcd: etcd, _dir: dir, sandboxes, monitors, hook }
    }

    fn live(&self) -> Vec<&Monitor> {
        self.monitors.iter().flatten().collect()
    }

    fn udp(&self) -> Vec<SocketAddr> {
        self.live().iter().map(|monitor| monitor.udp).collect()
    }

    fn agent(&self, name: &str) -> support::Agent {
        agent_to(&self.sandboxes[0], name, &self.udp())
    }

    /// Waits until every live monitor judges `node` to be `state`.
    fn wait_for_state(&self, node: &str, state: &str) {
        for monitor in self.live() {
            monitor.wait_for_state(node, state);
        }
    }
}

/// The delivered alerts about `node` of `kind` (`firing`, `resolved`, ...), first deliveries only.
fn alerts_about(hook: &Receiver, node: &str, kind: &str) -> Vec<Value> {
    hook.unique_alerts()
        .into_iter()
        .filter(|alert| {
            alert["kind"] == kind && alert["nodes"].as_array().is_some_and(|n| n.iter().any(|x| x == node))
        })
        .collect()
}

impl Trio {
    /// Waits for the first alert of `kind` about `node`; on failure, says what the receiver
    /// got and what each monitor logged.
    fn wait_for_alert(&self, node: &str, kind: &str, within: Duration) -> Value {
        let started = Instant::now();
        loop {
            if let Some(alert) = alerts_about(&self.hook, node, kind).into_iter().next() {
                return alert;
            }
            if started.elapsed() > within {
                let logs: Vec<String> = self.live().iter().map(|monitor| monitor.stderr_tail()).collect();
                panic!(
                    "no {kind} alert about {node} within {within:?}; the receiver got {:#?}\nlogs:\n{}",
                    self.hook.alerts(),
                    logs.join("\n----\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_crash_is_paged_once_by_the_leader_and_a_node_one_monitor_cannot_hear_pages_nobody() {
    let mut trio = Trio::start();
    let (leader, token) = wait_for_one_leader(&trio.live());
    let mut agents: Vec<support::Agent> =
        ["web-1", "web-2", "web-3"].iter().map(|name| trio.agent(name)).collect();
    for name in ["web-1", "web-2", "web-3"] {
        trio.wait_for_state(name, "up");
    }

    // m3 stops hearing web-3: its agent restarts sending to m1 and m2 only. m3 calls it
    // down; the other two hear it, so the cluster calls it suspect, unreachable from m3.
    agents[2].signal(Signal::SIGKILL);
    agents[2].wait_exit();
    let udp = trio.udp();
    agents[2] = agent_to(&trio.sandboxes[0], "web-3", &udp[..2]);
    let m3 = trio.monitors[2].as_ref().expect("running");
    m3.wait_for_state("web-3", "down");
    let leading = trio.live()[leader];
    leading.wait_until(PATIENCE, "the leader names web-3 in doubt, unreachable from m3", || {
        let view = cluster(leading);
        let expected = serde_json::json!([{ "node": "web-3", "unreachable_from": ["m3"] }]);
        if view["in_doubt"] == expected { Ok(()) } else { Err(view.to_string()) }
    });

    // web-1 crashes: every monitor sees it, the leader pages it once.
    agents[0].signal(Signal::SIGKILL);
    agents[0].wait_exit();
    let firing = trio.wait_for_alert("web-1", "firing", PATIENCE);
    assert_eq!(firing["fencing_token"], token, "paged by the leader, with its token: {firing}");
    let key = firing["idempotency_key"].as_str().expect("a key").to_string();
    assert!(key.starts_with("rollcall-prod-"), "a cluster-wide key: {key}");
    trio.wait_for_state("web-1", "down");

    // web-1 comes back: the same incident resolves, once.
    agents[0] = trio.agent("web-1");
    let resolved = trio.wait_for_alert("web-1", "resolved", PATIENCE);
    assert_eq!(resolved["incident"]["id"], firing["incident"]["id"]);
    assert_eq!(trio.hook.count(&key), 1, "the firing was delivered once, by one monitor");
    assert!(
        alerts_about(&trio.hook, "web-3", "firing").is_empty(),
        "web-3 was never paged: {:#?}",
        trio.hook.alerts()
    );
    let tokens: Vec<Value> = trio.hook.alerts().iter().map(|alert| alert["fencing_token"].clone()).collect();
    assert!(tokens.iter().all(|t| *t == token), "only the leader sent: {tokens:?}");
    for monitor in trio.monitors.iter_mut().flatten() {
        assert_eq!(monitor.metrics().get("rollcall_cluster_fenced_refused_total"), 0.0);
    }
}

#[test]
fn after_kill_9_of_the_leader_the_new_leader_pages_with_a_higher_token_and_resolves_the_old_incident() {
    let mut trio = Trio::start();
    let (leader, token) = wait_for_one_leader(&trio.live());
    let mut agents: Vec<support::Agent> = ["web-1", "web-2"].iter().map(|name| trio.agent(name)).collect();
    trio.wait_for_state("web-1", "up");
    trio.wait_for_state("web-2", "up");

    // web-2 dies under the first leader: paged with its token.
    agents[1].signal(Signal::SIGKILL);
    agents[1].wait_exit();
    let first = trio.wait_for_alert("web-2", "firing", PATIENCE);
    assert_eq!(first["fencing_token"], token);
    trio.wait_for_state("web-2", "down");

    // The leader is killed; then web-1 dies.
    trio.monitors[leader].take().expect("running").crash();
    let killed_at = Instant::now();
    agents[0].signal(Signal::SIGKILL);
    agents[0].wait_exit();
    let second = trio.wait_for_alert("web-1", "firing", PATIENCE);
    eprintln!("web-1 paged {:?} after the leader's kill -9 (lease TTL 3 s)", killed_at.elapsed());
    let new_token = second["fencing_token"].as_i64().expect("a token");
    assert!(new_token > token, "the new leader's token {new_token} is above the old one's {token}");

    // web-2 recovers: the new leader resolves the incident the old one opened.
    agents[1] = agent_to(&trio.sandboxes[0], "web-2", &trio.udp());
    let resolved = trio.wait_for_alert("web-2", "resolved", PATIENCE);
    assert_eq!(resolved["incident"]["id"], first["incident"]["id"], "the same incident: {resolved}");
    assert_eq!(resolved["fencing_token"], new_token);
    let firings = alerts_about(&trio.hook, "web-2", "firing");
    assert_eq!(firings.len(), 1, "web-2 was not paged again as new: {firings:#?}");
}

#[test]
fn a_leader_paused_past_its_lease_while_a_node_dies_gets_no_alert_through() {
    let trio = Trio::start();
    let (leader, token) = wait_for_one_leader(&trio.live());
    let mut agent = trio.agent("web-1");
    trio.wait_for_state("web-1", "up");
    let paused = trio.live()[leader];
    agent.signal(Signal::SIGKILL);
    agent.wait_exit();
    paused.signal(Signal::SIGSTOP);
    let firing = trio.wait_for_alert("web-1", "firing", PATIENCE);
    let new_token = firing["fencing_token"].as_i64().expect("a token");
    assert!(new_token > token, "paged by a new leader: {firing}");
    paused.signal(Signal::SIGCONT);
    paused.wait_until(PATIENCE, "the resumed monitor follows", || {
        let view = cluster(paused);
        if view["role"] == "follower" { Ok(()) } else { Err(view.to_string()) }
    });
    let _back = trio.agent("web-1");
    trio.wait_for_alert("web-1", "resolved", PATIENCE);
    let tokens: Vec<Value> = trio.hook.alerts().iter().map(|alert| alert["fencing_token"].clone()).collect();
    assert!(
        tokens.iter().all(|t| *t == new_token),
        "no alert from the paused leader (token {token}) got through: {tokens:?}"
    );
    eprintln!("fenced writes refused by the resumed leader: {}", cluster(paused)["fenced_refused"]);
}

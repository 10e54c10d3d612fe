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
//! - etcd: one member of three killed changes nothing; two killed (no quorum), each monitor
//!   fails open after `fail_open_after`, says the cluster is degraded, and pages on its own
//!   view labelled `observer`; etcd back, one leader again and the notices resolve.
//! - A monitor restarted with an empty data dir joins and pages nobody for nodes that are fine.

#[path = "support/cluster.rs"]
mod cluster_support;
#[path = "support/etcd.rs"]
mod etcd;
#[path = "support/partition.rs"]
mod partition;
#[path = "support/receiver.rs"]
mod receiver;
mod support;

use cluster_support::{PATIENCE, agent_to, cluster, config, wait_for_one_leader};
use etcd::Etcd;
use nix::sys::signal::Signal;
use partition::Partition;
use receiver::Receiver;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{Monitor, Sandbox};

const NAMES: [&str; 3] = ["m1", "m2", "m3"];

/// Three monitors sharing one key file, each paging `hook` at once.
struct Trio {
    etcd: Etcd,
    _dir: Sandbox,
    sandboxes: Vec<Sandbox>,
    monitors: Vec<Option<Monitor>>,
    configs: Vec<String>,
    hook: Receiver,
}

impl Trio {
    fn start() -> Trio {
        Trio::start_with("")
    }

    /// Three monitors with `extra` added to each one's `[cluster]`.
    fn start_with(extra: &str) -> Trio {
        let dir = Sandbox::new();
        let etcd = Etcd::start(dir.path());
        let endpoints = etcd.endpoints_toml();
        let hook = Receiver::start();
        let sandboxes: Vec<Sandbox> = NAMES.iter().map(|_| Sandbox::new()).collect();
        for sandbox in &sandboxes[1..] {
            std::fs::copy(sandboxes[0].key_file(), sandbox.key_file()).expect("share the key file");
        }
        let configs: Vec<String> = NAMES
            .iter()
            .map(|name| {
                format!("{}{}{extra}", support::quick_pages_to(&hook.url()), config(&endpoints, name))
            })
            .collect();
        let monitors = configs
            .iter()
            .zip(&sandboxes)
            .map(|(config, sandbox)| Some(Monitor::start(sandbox, config)))
            .collect();
        Trio { etcd, _dir: dir, sandboxes, monitors, configs, hook }
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

    // m3 stops hearing web-3 (nftables drops web-3's datagrams to m3 only). m3 calls it
    // down; the other two hear it, so the cluster calls it suspect, unreachable from m3.
    let m3 = trio.monitors[2].as_ref().expect("running");
    let _cut = Partition::udp(m3.udp.port(), Some(partition::udp_port_of(agents[2].pid())));
    m3.wait_for_state("web-3", "down");
    let leading = trio.live()[leader];
    leading.wait_until(PATIENCE, "the leader names web-3 in doubt, unreachable from m3", || {
        let view = cluster(leading);
        let expected = serde_json::json!([{ "node": "web-3", "unreachable_from": ["m3"] }]);
        if view["in_doubt"] == expected { Ok(()) } else { Err(view.to_string()) }
    });
    let api = format!("http://{}", leading.http);
    let shown = trio.sandboxes[0].run_to_exit(&["cluster".into(), "status".into(), "--api".into(), api]);
    assert!(shown.stdout.contains("web-3 suspect (unreachable from m3)"), "{}", shown.stdout);
    assert!(shown.stdout.contains("2 of 3 voting monitor(s) must say down"), "{}", shown.stdout);

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
        let metrics = monitor.metrics();
        assert_eq!(metrics.get("rollcall_cluster_fenced_refused_total"), 0.0);
        assert!(metrics.get("rollcall_cluster_etcd_round_trip_seconds") > 0.0);
        assert!(
            metrics.get("rollcall_cluster_etcd_writes_total") > 0.0,
            "verdicts and incidents were written"
        );
        // The cluster's series pass Prometheus' own checker.
        support::promtool_check(&monitor.get_text("/metrics").1);
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

/// Alerts whose `labels.observer` is set: what monitors paged on their own view.
fn observed(hook: &Receiver, subject: &str) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = hook
        .unique_alerts()
        .iter()
        .filter(|alert| alert["subject"]["id"] == subject)
        .filter_map(|alert| {
            let observer = alert["labels"]["observer"].as_str()?.to_string();
            Some((observer, alert["kind"].as_str().unwrap_or("?").to_string()))
        })
        .collect();
    seen.sort();
    seen
}

#[test]
fn losing_etcd_quorum_fails_open_with_observer_labels_and_its_return_makes_one_leader() {
    let mut trio = Trio::start_with("fail_open_after = \"3s\"\n");
    wait_for_one_leader(&trio.live());
    let mut agents: Vec<support::Agent> = ["web-1", "web-2"].iter().map(|name| trio.agent(name)).collect();
    trio.wait_for_state("web-1", "up");
    trio.wait_for_state("web-2", "up");

    // One etcd member of three dies: the cluster goes on, nobody is paged.
    trio.etcd.kill(0);
    for monitor in trio.live() {
        monitor.wait_until(PATIENCE, "the monitor moved to a live etcd member", || {
            let view = cluster(monitor);
            if view["etcd_errors"].as_u64() > Some(0) && view["etcd_reachable"] == true {
                Ok(())
            } else {
                Err(view.to_string())
            }
        });
    }
    wait_for_one_leader(&trio.live());
    assert!(trio.hook.alerts().is_empty(), "no page for losing one etcd member: {:#?}", trio.hook.alerts());

    // A second one dies: no quorum. After fail_open_after, every monitor says the cluster
    // is degraded and pages on its own view.
    trio.etcd.kill(1);
    let all: Vec<(String, String)> =
        NAMES.iter().map(|name| (name.to_string(), "firing".to_string())).collect();
    trio.live()[0].wait_until(PATIENCE, "every monitor says the cluster is degraded", || {
        let seen = observed(&trio.hook, "cluster-prod");
        if seen == all { Ok(()) } else { Err(format!("{seen:?}")) }
    });
    for monitor in trio.live() {
        assert_eq!(cluster(monitor)["failing_open"], true);
    }
    agents[0].signal(Signal::SIGKILL);
    agents[0].wait_exit();
    trio.live()[0].wait_until(PATIENCE, "every monitor pages web-1 on its own view", || {
        let seen = observed(&trio.hook, "web-1");
        if seen == all { Ok(()) } else { Err(format!("{seen:?}")) }
    });
    assert!(
        alerts_about(&trio.hook, "web-2", "firing").is_empty(),
        "web-2 is fine: {:#?}",
        trio.hook.alerts()
    );

    // etcd comes back: one leader again, and each degraded notice resolves.
    trio.etcd.start_member(0);
    trio.etcd.start_member(1);
    trio.etcd.wait_healthy(&[0, 1, 2]);
    wait_for_one_leader(&trio.live());
    let resolved: Vec<(String, String)> =
        NAMES.iter().map(|name| (name.to_string(), "resolved".to_string())).collect();
    trio.live()[0].wait_until(PATIENCE, "every degraded notice resolves", || {
        let seen: Vec<(String, String)> =
            observed(&trio.hook, "cluster-prod").into_iter().filter(|(_, kind)| kind == "resolved").collect();
        if seen == resolved { Ok(()) } else { Err(format!("{seen:?}")) }
    });
    for monitor in trio.live() {
        assert_eq!(cluster(monitor)["failing_open"], false);
    }
    // The leader adopts web-1's failure (the monitors paged it while failing open) rather
    // than paging it again as new; web-1 comes back, and each monitor that paged it sends
    // its resolution, under its own key.
    let leader = wait_for_one_leader(&trio.live()).0;
    trio.live()[leader].wait_until(PATIENCE, "the cluster agrees web-1 is down", || {
        let view = cluster(trio.live()[leader]);
        if view["agreed_down"] == 1 { Ok(()) } else { Err(view.to_string()) }
    });
    agents[0] = trio.agent("web-1");
    let back: Vec<(String, String)> = NAMES
        .iter()
        .flat_map(|name| {
            [(name.to_string(), "firing".to_string()), (name.to_string(), "resolved".to_string())]
        })
        .collect();
    trio.live()[0].wait_until(PATIENCE, "every monitor that paged web-1 resolves it", || {
        let mut seen = observed(&trio.hook, "web-1");
        seen.dedup();
        if seen == back { Ok(()) } else { Err(format!("{seen:?}")) }
    });
    let firings = alerts_about(&trio.hook, "web-1", "firing");
    assert!(
        firings.iter().all(|alert| alert["labels"]["observer"].is_string()),
        "web-1 was not paged again by the leader under another key: {firings:#?}"
    );
    drop(agents);
}

#[test]
fn a_monitor_restarted_with_an_empty_data_dir_joins_and_pages_nobody_for_nodes_that_are_fine() {
    let mut trio = Trio::start();
    let (leader, _) = wait_for_one_leader(&trio.live());
    let _agents: Vec<support::Agent> = ["web-1", "web-2"].iter().map(|name| trio.agent(name)).collect();
    trio.wait_for_state("web-1", "up");
    trio.wait_for_state("web-2", "up");
    // A follower loses its disk: killed, its data dir wiped, started again on the same
    // ports (the agents keep sending there).
    let follower = (leader + 1) % 3;
    let old = trio.monitors[follower].take().expect("running");
    let udp = old.udp;
    old.crash();
    std::fs::remove_dir_all(trio.sandboxes[follower].data_dir()).expect("wipe the data dir");
    trio.monitors[follower] =
        Some(Monitor::start_on(&trio.sandboxes[follower], &trio.configs[follower], udp));
    let rejoined = trio.monitors[follower].as_ref().expect("running");
    rejoined.wait_for_state("web-1", "up");
    rejoined.wait_for_state("web-2", "up");
    wait_for_one_leader(&trio.live());
    rejoined.wait_until(PATIENCE, "the new monitor is registered and counts", || {
        let view = cluster(rejoined);
        if view["voters"].as_array().map(Vec::len) == Some(3) { Ok(()) } else { Err(view.to_string()) }
    });
    assert!(trio.hook.alerts().is_empty(), "nobody was paged: {:#?}", trio.hook.alerts());
}

/// Issue #12's failover loop: 20 rounds of killing the leader (kill -9), crashing or
/// restarting an agent, and bringing the monitor back. The checker compares every alert the
/// receiver got with the truth the test recorded: every crash paged at least once, the node
/// that never failed never paged, and each failure paged under one key (duplicates only
/// with the same key).
#[test]
fn twenty_rounds_of_killing_the_leader_page_every_failure_once_under_one_key() {
    const ROUNDS: usize = 20;
    let names = ["steady", "n1", "n2", "n3"];
    let mut trio = Trio::start();
    wait_for_one_leader(&trio.live());
    let udp: Vec<SocketAddr> = trio.udp();
    let start = |name: &str| agent_to(&trio.sandboxes[0], name, &udp);
    let mut agents: Vec<Option<support::Agent>> = names.iter().map(|name| Some(start(name))).collect();
    for name in names {
        trio.wait_for_state(name, "up");
    }
    let mut crashes = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..ROUNDS {
        let (leader, token) = wait_for_one_leader(&trio.live());
        let index =
            trio.monitors.iter().enumerate().filter(|(_, m)| m.is_some()).nth(leader).expect("live").0;
        trio.monitors[index].take().expect("running").crash();
        // One agent (never "steady") crashes, or comes back if it is down.
        let victim = 1 + round % 3;
        let name = names[victim];
        match agents[victim].take() {
            Some(mut agent) => {
                agent.signal(Signal::SIGKILL);
                agent.wait_exit();
                *crashes.entry(name.to_string()).or_default() += 1;
                let paged = crashes[name];
                trio.live()[0].wait_until(PATIENCE, "the crash is paged by a new leader", || {
                    let firings = alerts_about(&trio.hook, name, "firing");
                    let newer = firings.iter().filter(|a| a["fencing_token"].as_i64() > Some(token)).count();
                    if firings.len() >= paged && newer > 0 { Ok(()) } else { Err(format!("{firings:#?}")) }
                });
            }
            None => {
                agents[victim] = Some(start(name));
                let resolved = crashes[name];
                trio.live()[0].wait_until(PATIENCE, "the recovery is resolved", || {
                    let seen = alerts_about(&trio.hook, name, "resolved").len();
                    if seen >= resolved { Ok(()) } else { Err(format!("{seen} of {resolved}")) }
                });
            }
        }
        // The killed monitor comes back on its data dir and its port.
        trio.monitors[index] =
            Some(Monitor::start_on(&trio.sandboxes[index], &trio.configs[index], udp[index]));
        trio.live()[0].wait_until(PATIENCE, "all three monitors count again", || {
            let view = cluster(trio.live()[0]);
            if view["voters"].as_array().map(Vec::len) == Some(3) { Ok(()) } else { Err(view.to_string()) }
        });
    }
    // The checker.
    assert!(
        alerts_about(&trio.hook, "steady", "firing").is_empty(),
        "steady never failed: {:#?}",
        trio.hook.alerts()
    );
    for (name, count) in &crashes {
        let keys: std::collections::BTreeSet<String> = alerts_about(&trio.hook, name, "firing")
            .iter()
            .map(|alert| alert["idempotency_key"].as_str().unwrap_or("?").to_string())
            .collect();
        assert!(
            !keys.is_empty() && keys.len() <= *count,
            "{name} crashed {count} times and was paged under {} keys: {keys:?}",
            keys.len()
        );
    }
    eprintln!("{ROUNDS} rounds: crashes {crashes:?}, {} deliveries", trio.hook.alerts().len());
}

/// Deletes the leader's election key behind its back (as an operator with etcdctl could):
/// the old leader still believes it leads, another monitor wins the election, and the
/// next failure shows the fence at work: the old leader's incident write fails its compare
/// (counted, and it steps down), and only the new leader's alert reaches the receiver.
#[test]
fn a_leader_whose_election_key_is_gone_has_its_incident_writes_refused_by_the_fence() {
    let trio = Trio::start();
    let (leader, token) = wait_for_one_leader(&trio.live());
    let mut agent = trio.agent("web-1");
    trio.wait_for_state("web-1", "up");
    let endpoint =
        trio.etcd.endpoints_toml().split(", ").next().expect("an endpoint").trim_matches('"').to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let mut client = etcd_client::Client::connect([endpoint.as_str()], None).await.expect("etcd answers");
        let answer = client.leader("/rollcall/prod/election").await.expect("a leader");
        let key = answer.kv().expect("the leader's key").key().to_vec();
        client.delete(key, None).await.expect("deleted");
    });
    let old = trio.live()[leader];
    let others: Vec<&Monitor> =
        trio.live().into_iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, m)| m).collect();
    let mut new_token = 0;
    others[0].wait_until(PATIENCE, "another monitor leads with a higher token", || {
        let views: Vec<Value> = others.iter().map(|monitor| cluster(monitor)).collect();
        match views.iter().find(|view| view["role"] == "leader") {
            Some(view) => {
                new_token = view["fencing_token"].as_i64().unwrap_or(0);
                Ok(())
            }
            None => Err(format!("{views:?}")),
        }
    });
    assert!(new_token > token);
    agent.signal(Signal::SIGKILL);
    agent.wait_exit();
    let firing = trio.wait_for_alert("web-1", "firing", PATIENCE);
    assert_eq!(firing["fencing_token"], new_token, "{firing}");
    old.wait_until(PATIENCE, "the old leader's write was refused and it stepped down", || {
        let view = cluster(old);
        if view["fenced_refused"].as_u64() > Some(0) && view["role"] != "leader" {
            Ok(())
        } else {
            Err(view.to_string())
        }
    });
    let back = trio.agent("web-1");
    trio.wait_for_alert("web-1", "resolved", PATIENCE);
    let tokens: Vec<Value> = trio.hook.alerts().iter().map(|alert| alert["fencing_token"].clone()).collect();
    assert!(tokens.iter().all(|t| *t == new_token), "only the new leader's alerts got through: {tokens:?}");
    drop(back);
}

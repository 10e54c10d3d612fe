//! `[cluster]` against a real three-member etcd on loopback: one leader among the monitors,
//! failover with a higher fencing token, a paused leader that steps down, a duplicate name
//! refused, and an unreachable etcd that does not stop a monitor from starting.
//!
//! Paging across monitors is tested in tests/cluster_paging.rs.

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
use support::{Monitor, Sandbox};

#[test]
fn two_monitors_elect_one_leader_and_fail_over_with_a_higher_token() {
    let dir = Sandbox::new();
    let mut etcd = Etcd::start(dir.path());
    let endpoints = etcd.endpoints_toml();
    let sandboxes = [Sandbox::new(), Sandbox::new()];
    let mut monitors: Vec<Option<Monitor>> = ["m1", "m2"]
        .iter()
        .zip(&sandboxes)
        .map(|(name, sandbox)| Some(Monitor::start(sandbox, &config(&endpoints, name))))
        .collect();
    let both: Vec<&Monitor> = monitors.iter().flatten().collect();
    let (leader, token) = wait_for_one_leader(&both);
    assert!(token > 0, "a fencing token is an etcd revision");
    both[0].wait_until(PATIENCE, "both monitors are registered", || {
        let members = cluster(both[0])["members"].clone();
        if members == serde_json::json!(["m1", "m2"]) { Ok(()) } else { Err(members.to_string()) }
    });
    assert_eq!(both[leader].metrics().get("rollcall_cluster_leader"), 1.0);
    let api = format!("http://{}", both[1 - leader].http);
    let shown = sandboxes[0].run_to_exit(&["cluster".into(), "status".into(), "--api".into(), api]);
    assert!(shown.status.success(), "{shown:?}");
    let leader_name = ["m1", "m2"][leader];
    assert!(
        shown.stdout.contains(&format!("leader {leader_name}, fencing token {token}")),
        "{}",
        shown.stdout
    );

    // One etcd member dies, the one both monitors talk to (the first that answers): the
    // cluster keeps its quorum, the monitors move to another member with their leases, and
    // the leader keeps leading with the same token.
    etcd.kill(0);
    for monitor in &both {
        monitor.wait_until(PATIENCE, "the monitor noticed and moved to another member", || {
            let view = cluster(monitor);
            let moved = view["etcd_errors"].as_u64() > Some(0) && view["etcd_reachable"] == true;
            if moved { Ok(()) } else { Err(view.to_string()) }
        });
    }
    let (same, same_token) = wait_for_one_leader(&both);
    assert_eq!((same, same_token), (leader, token), "losing one of three etcd members changes nothing");

    // The leader dies: the other one leads, with a higher token.
    monitors[leader].take().expect("running").crash();
    let survivor = monitors.iter().flatten().next().expect("one monitor is left");
    let (_, new_token) = wait_for_one_leader(&[survivor]);
    assert!(new_token > token, "the new leader's token {new_token} is above the old one's {token}");
    let alive = ["m1", "m2"][1 - leader];
    survivor.wait_until(PATIENCE, "the dead one's member key expires with its lease", || {
        let members = cluster(survivor)["members"].clone();
        if members == serde_json::json!([alive]) { Ok(()) } else { Err(members.to_string()) }
    });
}

#[test]
fn a_leader_paused_past_its_lease_steps_down_and_the_other_leads() {
    let dir = Sandbox::new();
    let etcd = Etcd::start(dir.path());
    let endpoints = etcd.endpoints_toml();
    let (a, b) = (Sandbox::new(), Sandbox::new());
    let m1 = Monitor::start(&a, &config(&endpoints, "m1"));
    let m2 = Monitor::start(&b, &config(&endpoints, "m2"));
    let (leader, token) = wait_for_one_leader(&[&m1, &m2]);
    let (paused, other) = if leader == 0 { (&m1, &m2) } else { (&m2, &m1) };
    paused.signal(Signal::SIGSTOP);
    let mut taken_over = 0;
    other.wait_until(PATIENCE, "the other monitor leads", || {
        let view = cluster(other);
        taken_over = view["fencing_token"].as_i64().unwrap_or(0);
        if view["role"] == "leader" { Ok(()) } else { Err(view.to_string()) }
    });
    assert!(taken_over > token);
    paused.signal(Signal::SIGCONT);
    // Resumed, the old leader finds its tenure gone and steps down; it never leads again
    // with its old token.
    let (leader_after, token_after) = wait_for_one_leader(&[&m1, &m2]);
    assert_ne!(leader_after, leader, "the resumed monitor does not lead");
    assert_eq!(token_after, taken_over);
    let resumed = cluster(paused);
    assert_eq!(resumed["role"], "follower", "{resumed}");
}

#[test]
fn a_second_monitor_with_the_same_name_is_refused_in_one_sentence() {
    let dir = Sandbox::new();
    let etcd = Etcd::start(dir.path());
    let endpoints = etcd.endpoints_toml();
    let first_box = Sandbox::new();
    let first = Monitor::start(&first_box, &config(&endpoints, "m1"));
    wait_for_one_leader(&[&first]);
    let second = Sandbox::new();
    let file = second.write_file("dup", "toml", &config(&endpoints, "m1"));
    let args = support::monitor_args(&second.data_dir(), &second.key_file(), &file);
    let exited = second.run_to_exit(&args);
    assert!(!exited.status.success(), "{exited:?}");
    let message = exited.stderr.lines().filter(|line| line.starts_with("rollcall: ")).collect::<Vec<_>>();
    assert_eq!(message.len(), 1, "{}", exited.stderr);
    assert!(message[0].contains("another live monitor is named \"m1\""), "{}", message[0]);
    assert_eq!(cluster(&first)["role"], "leader", "the first one is untouched");
}

#[test]
fn a_monitor_whose_etcd_is_unreachable_starts_and_says_so() {
    let sandbox = Sandbox::new();
    // A port nothing listens on.
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
    let settings =
        format!("{}fail_open_after = \"2s\"\n", config(&format!("\"http://127.0.0.1:{port}\""), "m1"));
    let monitor = Monitor::start(&sandbox, &settings);
    monitor.wait_until(PATIENCE, "/v1/cluster says etcd is unreachable", || {
        let view = cluster(&monitor);
        let said = view["role"] == "disconnected"
            && view["etcd_reachable"] == false
            && view["etcd_error"].is_string();
        if said { Ok(()) } else { Err(view.to_string()) }
    });
    assert_eq!(monitor.metrics().get("rollcall_cluster_etcd_up"), 0.0);
    monitor.wait_until(PATIENCE, "the log says when it will page on its own view", || {
        let log = monitor.stderr_tail();
        if log.contains("nodes are paged on this monitor's own view if etcd stays out of reach for 2s") {
            Ok(())
        } else {
            Err(log)
        }
    });
    // Past fail_open_after, it fails open: it says so on /v1/cluster, in metrics and the log.
    monitor.wait_until(PATIENCE, "the monitor fails open", || {
        let view = cluster(&monitor);
        if view["failing_open"] == true { Ok(()) } else { Err(view.to_string()) }
    });
    assert_eq!(monitor.metrics().get("rollcall_cluster_failing_open"), 1.0);
    assert!(monitor.stderr_tail().contains("failing open, this monitor pages on its own view"));
    let (status, body) = monitor.get_text("/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"), "detection goes on without etcd");
    monitor.stop(Signal::SIGTERM);
}

#[test]
fn a_monitor_that_alone_cannot_hear_the_fleet_is_named_cut_off_and_pages_nobody() {
    let dir = Sandbox::new();
    let hook = receiver::Receiver::start();
    let etcd = Etcd::start(dir.path());
    let endpoints = etcd.endpoints_toml();
    let (a, b) = (Sandbox::new(), Sandbox::new());
    // The agents send to both monitors with one key.
    std::fs::copy(a.key_file(), b.key_file()).expect("share the key file");
    let quick = support::quick_pages_to(&hook.url());
    let m1 = Monitor::start(&a, &format!("{quick}{}", config(&endpoints, "m1")));
    let m2 = Monitor::start(&b, &format!("{quick}{}", config(&endpoints, "m2")));
    wait_for_one_leader(&[&m1, &m2]);
    let both = [m1.udp, m2.udp];
    let start = |name: &str, targets: &[std::net::SocketAddr]| agent_to(&a, name, targets);
    let names = ["web-1", "web-2", "web-3", "web-4"];
    let mut agents: Vec<support::Agent> = names.iter().map(|name| start(name, &both)).collect();
    for name in names {
        m1.wait_for_state(name, "up");
        m2.wait_for_state(name, "up");
    }
    let nobody_cut_off = cluster(&m1);
    assert_eq!(nobody_cut_off["cut_off"], serde_json::json!([]), "{nobody_cut_off}");

    // m2 is cut from the fleet (nftables drops every datagram to its port); m1 still
    // hears it.
    let _cut = Partition::udp(m2.udp.port(), None);
    for monitor in [&m1, &m2] {
        monitor.wait_until(PATIENCE, "both monitors name m2 as cut off", || {
            let view = cluster(monitor);
            if view["cut_off"] == serde_json::json!(["m2"]) { Ok(()) } else { Err(view.to_string()) }
        });
    }
    assert_eq!(m2.metrics().get("rollcall_cluster_cut_off"), 1.0);
    assert_eq!(m1.metrics().get("rollcall_cluster_cut_off"), 0.0);
    m2.wait_until(PATIENCE, "m2's log says it is cut off", || {
        let log = m2.stderr_tail();
        if log.contains("it is cut off") { Ok(()) } else { Err(log) }
    });
    // m2 calls the whole fleet down; its view does not count, and nobody is paged.
    for name in names {
        m2.wait_for_state(name, "down");
    }
    m1.wait_until(PATIENCE, "only m1 counts", || {
        let view = cluster(&m1);
        if view["voters"] == serde_json::json!(["m1"]) { Ok(()) } else { Err(view.to_string()) }
    });
    assert!(hook.alerts().is_empty(), "a cut-off monitor pages nobody: {:#?}", hook.alerts());
    // A real crash is still paged, once.
    agents[0].signal(Signal::SIGKILL);
    agents[0].wait_exit();
    let keys = hook.wait_for(1, PATIENCE);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let alerts = hook.alerts();
    assert_eq!(alerts[0]["nodes"], serde_json::json!(["web-1"]), "{alerts:#?}");
    assert_eq!(alerts.len(), 1, "paged once: {alerts:#?}");
}

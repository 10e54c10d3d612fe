//! The leader killed inside a page: its incident write is committed in etcd, the outbox
//! rows that would send it are not yet in its store (`ROLLCALL_CRASH_AT`, see
//! src/crash_point.rs). The next leader reads the incident, sees it was never delivered,
//! and sends it, once, with the key the dead leader would have used.

#[path = "support/cluster.rs"]
mod cluster_support;
#[path = "support/etcd.rs"]
mod etcd;
#[path = "support/receiver.rs"]
mod receiver;
mod support;

use cluster_support::{PATIENCE, agent_to, config, wait_for_one_leader};
use etcd::Etcd;
use nix::sys::signal::Signal;
use receiver::Receiver;
use serde_json::{Value, json};
use support::{Monitor, Sandbox};

#[test]
fn a_leader_killed_between_its_etcd_commit_and_its_outbox_commit_loses_no_page() {
    let dir = Sandbox::new();
    let etcd = Etcd::start(dir.path());
    let hook = Receiver::start();
    let sandboxes: Vec<Sandbox> = (0..3).map(|_| Sandbox::new()).collect();
    for sandbox in &sandboxes[1..] {
        std::fs::copy(sandboxes[0].key_file(), sandbox.key_file()).expect("share the key file");
    }
    let config_of = |name: &str| {
        format!("{}{}", support::quick_pages_to(&hook.url()), config(&etcd.endpoints_toml(), name))
    };
    // m1 starts alone, so it leads; it crashes at its first incident write.
    let crash = [("ROLLCALL_CRASH_AT", "cluster-incident-committed".to_string())];
    let m1 = Monitor::start_env(
        &sandboxes[0],
        &config_of("m1"),
        "127.0.0.1:0".parse().expect("an address"),
        &crash,
    );
    let (_, first_token) = wait_for_one_leader(&[&m1]);
    let m2 = Monitor::start(&sandboxes[1], &config_of("m2"));
    let m3 = Monitor::start(&sandboxes[2], &config_of("m3"));
    assert_eq!(wait_for_one_leader(&[&m1, &m2, &m3]), (0, first_token), "m1 still leads");
    let targets = [m1.udp, m2.udp, m3.udp];
    let web1 = agent_to(&sandboxes[0], "web-1", &targets);
    let _web2 = agent_to(&sandboxes[0], "web-2", &targets);
    for monitor in [&m1, &m2, &m3] {
        for node in ["web-1", "web-2"] {
            monitor.wait_for_state(node, "up");
        }
    }

    web1.signal(Signal::SIGKILL);
    // m1 commits the incident to etcd and aborts before its outbox has the rows.
    let exited = m1.stop(Signal::SIGCONT);
    assert!(!exited.success(), "m1 aborted at the crash point: {exited:?}");
    let survivors = [&m2, &m3];
    let (_, token) = wait_for_one_leader(&survivors);
    assert!(token > first_token, "a new leader: {token} after {first_token}");
    let keys = hook.wait_for(1, PATIENCE);
    let alerts = hook.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let firing = &alerts[0];
    assert_eq!((firing["kind"].as_str(), &firing["nodes"]), (Some("firing"), &json!(["web-1"])), "{firing}");
    assert_eq!(firing["fencing_token"], token, "sent by the new leader: {firing}");
    assert!(
        keys[0].starts_with("rollcall-prod-") && keys[0].ends_with("-0"),
        "the incident's first notification: {keys:?}"
    );
    // web-1 comes back: the resolution follows, and nothing was sent twice before it.
    let _web1 = agent_to(&sandboxes[0], "web-1", &targets[1..]);
    let keys = hook.wait_for(2, PATIENCE);
    let kinds: Vec<Value> = hook.alerts().iter().map(|alert| alert["kind"].clone()).collect();
    assert_eq!(kinds, [json!("firing"), json!("resolved")], "once each: {keys:?}");
}

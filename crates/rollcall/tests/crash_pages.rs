//! A monitor killed at any instant around a down still pages for it exactly once.
//!
//! A node's down is held for `group_wait` (to see whether it is part of a mass failure)
//! before its incident and alert are written. These tests kill -9 the monitor at several
//! offsets after the down is committed, inside that window and after it, restart it on the
//! same data dir, and check with a real webhook receiver that every down is paged, once per
//! incident, and that downs paged before a crash are not paged again after it.
//!
//! The sleeps before each crash are the fault itself (where in the window the kill lands),
//! not waits for something to settle: every wait for a condition has a deadline.

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use nix::sys::signal::Signal;
use receiver::Receiver;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::{Agent, Monitor, QUICK, Sandbox};

const PATIENCE: Duration = Duration::from_secs(30);
const INTERVAL: Duration = Duration::from_millis(200);
/// The grouping window of these tests: long enough to land kills inside it.
const GROUP_WAIT_MS: u64 = 3_000;

fn config(receiver: &Receiver) -> String {
    format!(
        r#"{QUICK}
[alerts]
group_wait = "{GROUP_WAIT_MS}ms"

[[sink]]
name = "hook"
kind = "webhook"
url = "{url}"
timeout = "2s"
"#,
        url = receiver.url()
    )
}

/// The firing incidents' idempotency keys the receiver got, by the node they name (a group's
/// firing names each of its members).
fn firing_keys_by_node(receiver: &Receiver) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_node: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for alert in receiver.alerts() {
        if alert["kind"] != "firing" {
            continue;
        }
        let key = alert["idempotency_key"].as_str().unwrap_or_default().to_string();
        for node in alert["nodes"].as_array().into_iter().flatten() {
            by_node.entry(node.as_str().unwrap_or_default().to_string()).or_default().insert(key.clone());
        }
    }
    by_node
}

/// Waits until the store holds `node`'s `suspect -> down` (the events API reads the store,
/// so what it shows is committed).
fn wait_down_committed(monitor: &Monitor, node: &str) {
    monitor.wait_until(PATIENCE, &format!("{node}'s down is committed"), || {
        let events = monitor.events(node);
        if events.iter().any(|event| event.to == "down") {
            Ok(())
        } else {
            Err(support::history(&events).join(", "))
        }
    });
}

#[test]
fn a_crash_anywhere_around_a_held_down_still_pages_it_once() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let config = config(&receiver);
    let mut monitor = Monitor::start(&sandbox, &config);
    // A bystander that stays up, so the fleet is never all down (and never paged).
    let _steady = Agent::start(&sandbox, "steady", monitor.udp, INTERVAL, &[]);
    monitor.wait_for_state("steady", "up");
    // Where the kill lands after the down is committed: at once, inside the grouping window,
    // near its end, and after it (when the incident may or may not be delivered yet).
    let offsets_ms = [0, 1_000, 2_500, GROUP_WAIT_MS + 1_000];
    let mut paged = Vec::new();
    for (round, offset_ms) in offsets_ms.into_iter().enumerate() {
        let node = format!("victim-{round}");
        let mut agent = Agent::start(&sandbox, &node, monitor.udp, INTERVAL, &[]);
        monitor.wait_for_state(&node, "up");
        agent.signal(Signal::SIGKILL);
        agent.wait_exit();
        wait_down_committed(&monitor, &node);
        std::thread::sleep(Duration::from_millis(offset_ms));
        // The same UDP port after the restart, so the bystander's heartbeats still arrive.
        let udp = monitor.udp;
        monitor.crash();
        monitor = Monitor::start_on(&sandbox, &config, udp);
        monitor.wait_until(PATIENCE, &format!("{node} is paged after the crash at +{offset_ms} ms"), || {
            let by_node = firing_keys_by_node(&receiver);
            if by_node.contains_key(&node) { Ok(()) } else { Err(format!("pages so far: {by_node:?}")) }
        });
        paged.push(node);
    }
    // Every victim's firing is delivered; wait for the outbox to drain, then judge.
    monitor.wait_until(PATIENCE, "the outbox is drained", || {
        let (status, sinks) = monitor.get_json("/v1/sinks");
        let pending = sinks[0]["pending"].as_u64();
        if status == 200 && pending == Some(0) { Ok(()) } else { Err(sinks.to_string()) }
    });
    let by_node = firing_keys_by_node(&receiver);
    for node in &paged {
        let keys = &by_node[node];
        assert_eq!(keys.len(), 1, "{node} was paged by {} incidents, not one: {keys:?}", keys.len());
    }
    assert!(!by_node.contains_key("steady"), "the node that stayed up was paged: {by_node:?}");
    let (status, incidents) = monitor.get_json("/v1/incidents?open=true");
    assert_eq!(status, 200, "{incidents}");
    assert_eq!(
        incidents.as_array().map(Vec::len),
        Some(paged.len()),
        "one open incident per victim: {incidents}"
    );
    monitor.stop(Signal::SIGTERM);
}

#[test]
fn a_crash_inside_the_window_of_a_mass_failure_still_pages_it_once_grouped() {
    const VICTIMS: usize = 20;
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let config = config(&receiver);
    let monitor = Monitor::start(&sandbox, &config);
    let _steady = Agent::start(&sandbox, "steady", monitor.udp, INTERVAL, &[]);
    let mut victims: Vec<Agent> = (0..VICTIMS)
        .map(|i| Agent::start(&sandbox, &format!("mass-{i:02}"), monitor.udp, INTERVAL, &[]))
        .collect();
    for victim in &victims {
        monitor.wait_for_state(&victim.name, "up");
    }
    for victim in &mut victims {
        victim.signal(Signal::SIGKILL);
    }
    for victim in &mut victims {
        victim.wait_exit();
    }
    for victim in &victims {
        wait_down_committed(&monitor, &victim.name);
    }
    // Inside the grouping window opened by the first of the downs.
    std::thread::sleep(Duration::from_millis(1_000));
    let udp = monitor.udp;
    monitor.crash();
    let monitor = Monitor::start_on(&sandbox, &config, udp);
    monitor.wait_until(PATIENCE, "every victim is paged", || {
        let by_node = firing_keys_by_node(&receiver);
        let paged = victims.iter().filter(|victim| by_node.contains_key(&victim.name)).count();
        if paged == VICTIMS { Ok(()) } else { Err(format!("{paged} of {VICTIMS}: {by_node:?}")) }
    });
    let keys: BTreeSet<String> = firing_keys_by_node(&receiver).into_values().flatten().collect();
    assert_eq!(keys.len(), 1, "one grouped incident, not a page per node: {keys:?}");
    let alerts = receiver.unique_alerts();
    assert_eq!(alerts[0]["subject"]["kind"], "group", "{}", alerts[0]);
    assert_eq!(alerts[0]["node_count"], VICTIMS, "{}", alerts[0]);
    monitor.stop(Signal::SIGTERM);
}

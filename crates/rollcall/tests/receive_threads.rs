//! `monitor.receive_threads = 4`: four SO_REUSEPORT sockets, each read and verified by its
//! own thread, in front of the one owner. Everything the single socket does still works:
//! agents go up, probe answers reach the owner whichever socket they land on, a dead agent is
//! confirmed down, a goodbye is a leave, bad datagrams are counted and never believed, and
//! the monitor stops cleanly.

mod support;

use nix::sys::signal::Signal;
use rollcall_core::KeyRing;
use rollcall_core::wire::{Kind, Outgoing, encode};
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Duration;
use support::{Agent, DEADLINE, Monitor, Sandbox, history};

const INTERVAL: Duration = Duration::from_millis(200);
const THREADS: usize = 4;
/// Agents that only send heartbeats: each has its own source port, so the kernel's hash
/// spreads them over the sockets (all eleven agents of the test on one socket of four has a
/// chance of 4 x 4^-11, about one in a million).
const STEADY: usize = 8;

/// The confirming detector of tests/confirm.rs (suspect after 600 ms of silence, then a
/// round of three direct probes and two indirect ones), with four receive threads.
const THREADED: &str = r#"
detector = "fixed"

[monitor]
receive_threads = 4

[fixed]
multiplier = 3.0
grace = "600ms"

[confirm]
enabled = true
probes = 3
probe_interval = "200ms"
indirect = 2
indirect_timeout = "300ms"
recheck = "2s"
"#;

#[test]
fn four_receive_threads_hand_every_kind_of_datagram_to_the_owner() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, THREADED);
    let steady: Vec<Agent> = (0..STEADY)
        .map(|i| Agent::start(&sandbox, &format!("steady-{i}"), monitor.udp, INTERVAL, &[]))
        .collect();
    let _lossy =
        Agent::start_with(&sandbox, "lossy", monitor.udp, INTERVAL, &[], &["--drop-heartbeats", "0.95"]);
    let victim = Agent::start(&sandbox, "victim", monitor.udp, INTERVAL, &[]);
    let leaver = Agent::start(&sandbox, "leaver", monitor.udp, INTERVAL, &[]);
    for agent in steady.iter().chain([&victim, &leaver]) {
        monitor.wait_for_up(&agent.name, 3);
    }
    monitor.wait_for_state("lossy", "up");

    // More than one thread verified heartbeats, and the totals are the threads' sums.
    let metrics = monitor.metrics();
    let verified: Vec<f64> = (0..THREADS)
        .map(|thread| {
            metrics.get(&format!("rollcall_udp_thread_datagrams_verified_total{{thread=\"{thread}\"}}"))
        })
        .collect();
    assert!(
        verified.iter().filter(|&&count| count > 0.0).count() > 1,
        "one socket took everything: {verified:?}"
    );
    let read: f64 = (0..THREADS)
        .map(|thread| {
            metrics.get(&format!("rollcall_udp_thread_datagrams_read_total{{thread=\"{thread}\"}}"))
        })
        .sum();
    assert_eq!(read, metrics.get("rollcall_udp_datagrams_read_total"), "the total is the threads' sum");

    // Probe answers come back on whichever socket the agent's 4-tuple hashes to: the lossy
    // agent's suspicion is cancelled by its answer, so acks reach the owner.
    monitor.wait_until(DEADLINE, "lossy answered a probe", || {
        let events = history(&monitor.events("lossy"));
        if events.iter().any(|h| h == "suspect -> up (probe-answered)") {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    });

    // A dead agent is confirmed down (its probes go unanswered); a goodbye is a leave.
    victim.signal(Signal::SIGKILL);
    leaver.signal(Signal::SIGINT);
    monitor.wait_for_state("victim", "down");
    assert_eq!(
        &history(&monitor.wait_for_events("victim", 3))[1..],
        ["up -> suspect (timeout)", "suspect -> down (probes-unanswered)"]
    );
    monitor.wait_for_state("leaver", "left");
    assert_eq!(
        history(&monitor.wait_for_events("leaver", 2)),
        ["new -> up (first-heartbeat)", "up -> left (goodbye)"]
    );

    // Forged and garbage datagrams, from several source ports so that several threads see
    // some: each is counted under its reason, and none is believed.
    let before = monitor.metrics().rejections();
    let stranger = KeyRing::parse(&sandbox.keygen(2)).expect("a valid key line");
    let impostor = KeyRing::parse(&sandbox.keygen(1)).expect("a valid key line");
    let mut sent: BTreeMap<&str, u64> = BTreeMap::new();
    for port in 0..8 {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        let mut send = |bytes: &[u8], reason| {
            socket.send_to(bytes, monitor.udp).expect("send a datagram on loopback");
            *sent.entry(reason).or_default() += 1;
        };
        send(&datagram(&stranger, Kind::Heartbeat, "intruder", port + 1), "unknown_key");
        send(&datagram(&impostor, Kind::Goodbye, "steady-0", port + 1), "bad_tag");
        send(b"RC\x01 not a heartbeat", "truncated");
    }
    let counted = monitor.wait_until(DEADLINE, "every bad datagram is counted", || {
        let now = monitor.metrics().rejections();
        let delta: BTreeMap<&str, u64> =
            sent.keys().map(|&reason| (reason, now[reason] - before[reason])).collect();
        if delta == sent { Ok(delta) } else { Err(format!("counted {delta:?}, sent {sent:?}")) }
    });
    assert_eq!(counted, sent);
    assert_eq!(monitor.node("intruder").map(|node| node.state), None, "a forged heartbeat registers nobody");
    assert_eq!(monitor.node("steady-0").map(|node| node.state), Some("up".to_string()), "no forged goodbye");
    assert_eq!(
        monitor.metrics().get("rollcall_udp_thread_handoff_dropped_total{thread=\"0\"}"),
        0.0,
        "a few agents never fill the owner's queue"
    );

    // The threads stop with the monitor: a clean exit within the harness's deadline.
    let status = monitor.stop(Signal::SIGTERM);
    assert!(status.success(), "SIGTERM is a clean shutdown, got {status}");
}

fn datagram(ring: &KeyRing, kind: Kind, node: &str, sequence: u64) -> Vec<u8> {
    let message = Outgoing {
        follows_advice: false,
        kind,
        node,
        generation: 1,
        sequence,
        interval_ms: 200,
        labels: &[],
    };
    let mut out = Vec::new();
    encode(&message, ring, &mut out).expect("a valid message encodes");
    out
}

//! Hostile datagrams sent to a real monitor: each is counted under exactly the reason the
//! codec or the replay check gives it, and none changes a node or registers one.

mod support;

use rollcall_core::KeyRing;
use rollcall_core::wire::{Kind, Outgoing, decode, encode};
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Duration;
use support::{Agent, DEADLINE, Monitor, Sandbox, history};

const PATIENT: &str = r#"
[phi]
acceptable_pause = "2s"
"#;

/// The seed of the random datagrams; change it to explore, keep it fixed to reproduce.
const SEED: u64 = 0x5EED_F00D_4A11;

#[test]
fn hostile_datagrams_are_counted_and_change_nothing() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, PATIENT);
    let _agent = Agent::start(&sandbox, "steady", monitor.udp, Duration::from_millis(200), &[("role", "db")]);
    let steady = monitor.wait_for_up("steady", 3);
    let baseline = monitor.metrics().rejections();
    let mut attack = Attack::new(&monitor, sandbox.key_ring(), baseline);

    // (a) Forged: signed with a key id the monitor does not have, or with the right key id
    // and another secret; for the agent's own node (a restart or a goodbye, if believed) and
    // for a stranger (a registration, if believed).
    let stranger = KeyRing::parse(&sandbox.keygen(2)).expect("a valid key line");
    let impostor = KeyRing::parse(&sandbox.keygen(1)).expect("a valid key line");
    for ring in [&stranger, &impostor] {
        for (node, kind) in
            [("steady", Kind::Heartbeat), ("steady", Kind::Goodbye), ("intruder", Kind::Heartbeat)]
        {
            attack.send(&datagram(ring, kind, node, steady.generation + 1, 1));
        }
    }
    attack.settle();
    let forged = attack.delta();
    assert_eq!(forged.get("unknown_key"), Some(&3), "{forged:?}");
    assert_eq!(forged.get("bad_tag"), Some(&3), "{forged:?}");

    // (b) Replays, on a node the test itself drives: an accepted datagram sent again, and
    // an older generation.
    let generation = 1_000_000;
    let first = datagram(attack.ring(), Kind::Heartbeat, "puppet", generation, 1);
    attack.socket.send_to(&first, monitor.udp).expect("send");
    monitor.wait_for_up("puppet", 1);
    attack.send_expecting(&first, "replay");
    attack.send_expecting(&datagram(attack.ring(), Kind::Heartbeat, "puppet", generation, 0), "replay");
    attack.send_expecting(
        &datagram(attack.ring(), Kind::Heartbeat, "puppet", generation - 1, 2),
        "old_generation",
    );
    attack.send_expecting(
        &datagram(attack.ring(), Kind::Goodbye, "puppet", generation - 1, 9),
        "old_generation",
    );
    attack.settle();
    let puppet = monitor.node("puppet").expect("puppet registered by its one valid heartbeat");
    assert_eq!((puppet.state.as_str(), puppet.generation, puppet.sequence), ("up", generation, 1));

    // (c) Garbage: 100 random byte strings of random lengths up to 1500 (the kernel truncates
    // what is over the monitor's buffer, which stays oversized), an empty datagram, and every
    // single-bit corruption of a valid datagram's header, node id, first tag bytes and last
    // byte.
    let mut rng = SplitMix64(SEED);
    attack.send(&[]);
    for _ in 0..100 {
        let length = (rng.next_u64() % 1501) as usize;
        let bytes: Vec<u8> = (0..length).map(|_| rng.next_u64() as u8).collect();
        attack.send(&bytes);
    }
    let valid = datagram(attack.ring(), Kind::Heartbeat, "steady", steady.generation + 1, 1);
    let tag_start = valid.len() - rollcall_core::wire::TAG_LEN;
    for byte in (0..tag_start + 4).chain([valid.len() - 1]) {
        for bit in 0..8 {
            let mut corrupt = valid.clone();
            corrupt[byte] ^= 1 << bit;
            attack.send(&corrupt);
        }
    }
    attack.settle();

    let counted = attack.delta();
    assert_eq!(counted, attack.expected, "rejections counted (left) vs expected (right), seed {SEED:#x}");
    for reason in ["oversized", "truncated", "malformed", "bad_tag"] {
        assert!(counted.get(reason).copied().unwrap_or(0) > 0, "no {reason} sent: make the test send one");
    }

    let after = monitor.node("steady").expect("steady is known");
    assert_eq!(after.state, "up", "{after:?}");
    assert_eq!(after.generation, steady.generation, "no forged restart: {after:?}");
    assert_eq!(after.labels, steady.labels);
    assert_eq!(history(&monitor.events("steady")), ["new -> up (first-heartbeat)"]);
    let ids: Vec<String> = monitor.nodes().into_iter().map(|node| node.id).collect();
    assert_eq!(ids, ["puppet", "steady"], "only valid heartbeats register nodes");
}

#[test]
fn replays_are_refused_across_a_clean_restart() {
    let sandbox = Sandbox::new();
    let ring = sandbox.key_ring();
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    let generation = 7_000_000;
    let beat = |sequence| datagram(&ring, Kind::Heartbeat, "puppet", generation, sequence);

    let first = Monitor::start(&sandbox, PATIENT);
    for sequence in 1..=3 {
        socket.send_to(&beat(sequence), first.udp).expect("send");
        first.wait_for_up("puppet", sequence);
    }
    let status = first.stop(nix::sys::signal::Signal::SIGTERM);
    assert!(status.success(), "SIGTERM is a clean shutdown, got {status}");

    // The clean shutdown stored the last sequence, so the old datagrams are still replays.
    let second = Monitor::start(&sandbox, PATIENT);
    let baseline = second.metrics().rejections();
    for sequence in [2, 3] {
        socket.send_to(&beat(sequence), second.udp).expect("send");
    }
    socket.send_to(&datagram(&ring, Kind::Heartbeat, "puppet", generation - 1, 9), second.udp).expect("send");
    socket.send_to(&beat(4), second.udp).expect("send");
    let node = second.wait_for_up("puppet", 4);
    assert_eq!(node.generation, generation);
    let counted = second.wait_until(DEADLINE, "3 rejections are counted", || {
        let now = second.metrics().rejections();
        let delta: BTreeMap<String, u64> =
            now.iter().map(|(reason, count)| (reason.clone(), count - baseline[reason])).collect();
        if delta.values().sum::<u64>() >= 3 { Ok(delta) } else { Err(format!("{delta:?}")) }
    });
    assert_eq!((counted["replay"], counted["old_generation"]), (2, 1), "{counted:?}");
    assert_eq!(counted.values().sum::<u64>(), 3, "{counted:?}");
}

/// Sends datagrams from one socket and keeps the rejection counts the monitor must show.
struct Attack<'a> {
    monitor: &'a Monitor,
    ring: KeyRing,
    socket: UdpSocket,
    baseline: BTreeMap<String, u64>,
    /// Expected increase of each rejection counter since `baseline`.
    expected: BTreeMap<String, u64>,
    /// Sent since the last [`Attack::settle`]: sending in small batches keeps the burst
    /// within the smallest socket buffer a CI kernel may grant.
    unsettled: usize,
}

impl<'a> Attack<'a> {
    fn new(monitor: &'a Monitor, ring: KeyRing, baseline: BTreeMap<String, u64>) -> Attack<'a> {
        let expected = baseline.keys().map(|reason| (reason.clone(), 0)).collect();
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        Attack { monitor, ring, socket, baseline, expected, unsettled: 0 }
    }

    fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// Sends a datagram the codec refuses, expecting the reason the codec gives locally with
    /// the monitor's key ring.
    fn send(&mut self, bytes: &[u8]) {
        let reason = match decode(bytes, &self.ring) {
            Err(error) => error.as_str(),
            Ok(message) => panic!("the test meant to send garbage but made a valid datagram: {message:?}"),
        };
        self.send_expecting(bytes, reason);
    }

    fn send_expecting(&mut self, bytes: &[u8], reason: &str) {
        *self.expected.get_mut(reason).unwrap_or_else(|| panic!("/metrics has no reason {reason:?}")) += 1;
        self.socket.send_to(bytes, self.monitor.udp).expect("send a datagram on loopback");
        self.unsettled += 1;
        if self.unsettled == 16 {
            self.settle();
        }
    }

    /// Waits until the monitor has counted as many rejections as were sent.
    fn settle(&mut self) {
        let want: u64 = self.expected.values().sum();
        self.monitor.wait_until(DEADLINE, &format!("{want} rejections are counted"), || {
            let delta = self.delta();
            let have: u64 = delta.values().sum();
            if have >= want { Ok(()) } else { Err(format!("{have} counted: {delta:?}")) }
        });
        self.unsettled = 0;
    }

    /// Increase of every rejection counter since the baseline.
    fn delta(&self) -> BTreeMap<String, u64> {
        let now = self.monitor.metrics().rejections();
        assert_eq!(now.keys().collect::<Vec<_>>(), self.baseline.keys().collect::<Vec<_>>());
        now.into_iter().map(|(reason, count)| (reason.clone(), count - self.baseline[&reason])).collect()
    }
}

fn datagram(ring: &KeyRing, kind: Kind, node: &str, generation: u64, sequence: u64) -> Vec<u8> {
    let message =
        Outgoing { follows_advice: false, kind, node, generation, sequence, interval_ms: 200, labels: &[] };
    let mut out = Vec::new();
    encode(&message, ring, &mut out).expect("a valid message encodes");
    out
}

/// A small seeded generator (SplitMix64), so that the garbage is the same on every run.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Requests from strangers are refused for who they are before what they say is read, and a
/// filter the API does not know is refused rather than ignored.
#[test]
fn strangers_get_401_before_their_bodies_are_read_and_unknown_filters_400() {
    const TOKEN: &str = "0123456789abcdef0123";
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, &format!("{PATIENT}\n[api]\ntoken = \"{TOKEN}\"\n"));
    let _agent = Agent::start(&sandbox, "steady", monitor.udp, Duration::from_millis(200), &[]);
    monitor.wait_for_state("steady", "up");
    let bad_body = Some("{not json");
    for path in ["/v1/nodes/steady/pause", "/v1/nodes/steady/resume", "/v1/silences", "/v1/checks"] {
        let (status, body) = monitor.post(path, None, bad_body);
        assert_eq!(status, 401, "POST {path} without a token and a bad body: {body}");
        let (status, body) = monitor.post(path, Some("wrong-token-wrong-token"), bad_body);
        assert_eq!(status, 403, "POST {path} with a wrong token and a bad body: {body}");
    }
    let (status, body) = monitor.post("/v1/nodes/steady/pause", Some(TOKEN), bad_body);
    assert_eq!(status, 400, "with the token, the bad body is named: {body}");
    assert_eq!(monitor.node("steady").map(|node| node.state), Some("up".to_string()), "nothing changed");

    for path in [
        "/v1/incidents?state=%00",
        "/v1/incidents?opne=true",
        "/v1/nodes?stat=up",
        "/v1/nodes?state=bogus",
        "/v1/events?nod=steady",
        "/v1/events?kind=bogus",
        "/v1/outbox?snik=hook",
    ] {
        let (status, body) = monitor.get_json(path);
        assert_eq!(status, 400, "GET {path}: {body}");
        assert!(body["message"].as_str().is_some_and(|message| !message.is_empty()), "GET {path}: {body}");
    }
}

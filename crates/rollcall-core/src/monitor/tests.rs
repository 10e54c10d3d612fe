//! Scenario tests of the monitor core on a virtual clock.

use super::*;
use crate::wire::{DecodeError, Outgoing, encode};
use rollcall_detect::{FixedTimeoutConfig, PhiAccrualConfig};
use std::collections::BTreeSet;

const KEY_FILE: &str = "1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
const FROM: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9000));

fn ring() -> KeyRing {
    KeyRing::parse(KEY_FILE).expect("test key file is valid")
}

/// A monitor on a virtual clock, with helpers to send datagrams and step time.
struct Harness {
    monitor: Monitor,
    now: Instant,
    transitions: Vec<Transition>,
    /// The node row each transition carried, in the same order.
    rows: Vec<NodeRow>,
    other_events: Vec<MonitorEvent>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

impl Harness {
    fn new(config: MonitorConfig) -> Harness {
        let now = Instant::from_millis(1_000);
        Harness {
            monitor: Monitor::new(config, ring(), now).unwrap(),
            now,
            transitions: vec![],
            rows: vec![],
            other_events: vec![],
        }
    }

    fn phi() -> Harness {
        Harness::new(MonitorConfig::default())
    }

    fn fixed() -> Harness {
        let detector = DetectorConfig::Fixed(Arc::new(FixedTimeoutConfig::default()));
        Harness::new(MonitorConfig { detector, ..MonitorConfig::default() })
    }

    fn datagram(kind: Kind, node: &str, generation: u64, sequence: u64, interval_ms: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let message = Outgoing {
            follows_advice: false,
            kind,
            node,
            generation,
            sequence,
            interval_ms,
            labels: &[("group", "web")],
        };
        encode(&message, &ring(), &mut out).unwrap();
        out
    }

    fn deliver(&mut self, datagram: &[u8]) {
        self.monitor.handle_datagram(self.now, FROM, datagram);
        self.drain();
    }

    fn heartbeat(&mut self, node: &str, generation: u64, sequence: u64) {
        self.deliver(&Harness::datagram(Kind::Heartbeat, node, generation, sequence, 1000));
    }

    fn drain(&mut self) {
        while let Some(event) = self.monitor.poll_event() {
            match event {
                MonitorEvent::Transition { transition, row } => {
                    self.transitions.push(transition);
                    self.rows.push(row);
                }
                other => self.other_events.push(other),
            }
        }
    }

    /// Steps the clock to `target`, waking at every instant the monitor asks for.
    fn run_until(&mut self, target: Instant) {
        loop {
            let wake = self.monitor.poll_timeout().map_or(self.now, |at| at.max(self.now));
            if wake > target {
                break;
            }
            self.now = wake;
            self.monitor.handle_timeout(self.now);
            self.drain();
        }
        self.now = target;
    }

    fn run_for(&mut self, span: Duration) {
        self.run_until(self.now + span);
    }

    /// Sends a heartbeat every `interval` for `count` beats, stepping time in between.
    fn beat(&mut self, node: &str, generation: u64, first_sequence: u64, count: u64, interval: Duration) {
        for sequence in first_sequence..first_sequence + count {
            self.heartbeat(node, generation, sequence);
            self.run_for(interval);
        }
    }

    fn state(&self, node: &str) -> NodeState {
        self.monitor.node(node, self.now).expect("node exists").state
    }

    fn history(&self) -> Vec<(String, &'static str, &'static str, &'static str)> {
        self.transitions
            .iter()
            .map(|t| (t.node.to_string(), t.from.as_str(), t.to.as_str(), t.reason.as_str()))
            .collect()
    }

    fn rejected(&self, reason: &str) -> u64 {
        self.monitor.stats().rejected.iter().filter(|(r, _)| r.as_str() == reason).map(|(_, n)| n).sum()
    }
}

fn check_history(harness: &Harness, expected: &[(&str, &str, &str, &str)]) {
    let expected: Vec<_> = expected.iter().map(|(n, f, t, r)| (n.to_string(), *f, *t, *r)).collect();
    assert_eq!(harness.history(), expected);
}

#[test]
fn first_heartbeat_brings_a_node_up() {
    let mut h = Harness::phi();
    h.heartbeat("web-1", 7, 1);
    check_history(&h, &[("web-1", "new", "up", "first-heartbeat")]);
    let view = h.monitor.node("web-1", h.now).unwrap();
    assert_eq!((view.generation, view.sequence), (7, 1));
    assert_eq!(view.labels(), vec![("group", "web")]);
    assert_eq!(view.addr, Some(FROM));
    assert_eq!(h.monitor.stats().nodes_in(NodeState::Up), 1);
}

#[test]
fn steady_heartbeats_never_alarm() {
    let mut h = Harness::phi();
    h.beat("web-1", 1, 1, 600, secs(1.0));
    check_history(&h, &[("web-1", "new", "up", "first-heartbeat")]);
}

#[test]
fn silence_goes_suspect_then_down_at_the_computed_deadlines() {
    let mut h = Harness::phi();
    h.beat("web-1", 1, 1, 30, secs(1.0));
    let last = h.monitor.node("web-1", h.now).unwrap().last_heartbeat.unwrap();
    h.run_for(secs(10.0));
    check_history(
        &h,
        &[
            ("web-1", "new", "up", "first-heartbeat"),
            ("web-1", "up", "suspect", "phi"),
            ("web-1", "suspect", "down", "phi"),
        ],
    );
    let down = &h.transitions[2];
    // Akka's defaults at a steady 1 s: about 4.56 s after the last heartbeat.
    let after_last = down.at - last;
    assert!(after_last > secs(4.4) && after_last < secs(4.7), "down {after_last:?} after the last heartbeat");
    assert!(down.noticed >= down.at);
    assert!(down.noticed - down.at <= Duration::from_millis(2), "the wheel is precise to its resolution");
    assert!(h.transitions[1].at < down.at);
    assert_eq!(h.state("web-1"), NodeState::Down);
    assert_eq!(h.monitor.node("web-1", h.now).unwrap().deadline, None, "a down node has no deadline");
}

#[test]
fn a_transition_carries_the_node_row_as_it_stood() {
    let mut h = Harness::phi();
    h.beat("web-1", 4, 1, 5, secs(1.0));
    h.run_for(secs(10.0));
    let view = h.monitor.node("web-1", h.now).unwrap();
    let row = NodeRow { sequence: 5, interval: secs(1.0), labels_raw: view.labels_raw.into() };
    // The first heartbeat's row, then the down's, which read the node back no fresher.
    assert_eq!(h.rows.first(), Some(&NodeRow { sequence: 1, ..row.clone() }));
    assert_eq!(h.rows.last(), Some(&row));
    assert_eq!((view.sequence, view.interval), (row.sequence, row.interval));
    let down = h.transitions.last().unwrap();
    assert_eq!((down.generation, down.to), (view.generation, view.state), "the rest of the row");
}

#[test]
fn fixed_timeout_follows_the_seed_example() {
    let mut h = Harness::fixed();
    // 2 s interval: suspect at 2 x 2 s = 4 s, down at 4 s + 1 s grace = 5 s.
    let beat = Harness::datagram(Kind::Heartbeat, "job", 1, 1, 2000);
    h.deliver(&beat);
    let last = h.now;
    h.run_for(secs(10.0));
    check_history(
        &h,
        &[
            ("job", "new", "up", "first-heartbeat"),
            ("job", "up", "suspect", "timeout"),
            ("job", "suspect", "down", "timeout"),
        ],
    );
    assert_eq!(h.transitions[1].at - last, secs(4.0));
    assert_eq!(h.transitions[2].at - last, secs(5.0));
}

#[test]
fn one_heartbeat_clears_suspicion() {
    let mut h = Harness::fixed();
    h.beat("web-1", 1, 1, 5, secs(1.0));
    h.run_for(secs(1.6)); // 2.6 s of silence: past suspect (2 s), before down (3 s)
    assert_eq!(h.state("web-1"), NodeState::Suspect);
    h.heartbeat("web-1", 1, 6);
    assert_eq!(h.state("web-1"), NodeState::Up);
    assert_eq!(h.transitions.last().unwrap().reason, Reason::Heartbeat);
}

#[test]
fn recovery_from_down_needs_rise_heartbeats() {
    let mut h = Harness::fixed();
    h.beat("web-1", 1, 1, 3, secs(1.0));
    h.run_for(secs(5.0));
    assert_eq!(h.state("web-1"), NodeState::Down);
    h.heartbeat("web-1", 1, 4);
    assert_eq!(h.state("web-1"), NodeState::Down, "one heartbeat is not enough (rise = 2)");
    // It goes quiet again: the rise count starts over.
    h.run_for(secs(5.0));
    h.heartbeat("web-1", 1, 5);
    assert_eq!(h.state("web-1"), NodeState::Down);
    h.run_for(secs(1.0));
    h.heartbeat("web-1", 1, 6);
    assert_eq!(h.state("web-1"), NodeState::Up);
    assert_eq!(h.transitions.last().unwrap().reason, Reason::Heartbeat);
    assert_eq!(h.transitions.iter().filter(|t| t.to == NodeState::Up).count(), 2);
}

#[test]
fn a_new_generation_is_a_restart_not_a_replay() {
    let mut h = Harness::phi();
    h.beat("web-1", 1, 1, 5, secs(1.0));
    h.heartbeat("web-1", 2, 1);
    check_history(&h, &[("web-1", "new", "up", "first-heartbeat"), ("web-1", "up", "up", "restart")]);
    assert!(h.other_events.iter().any(|e| matches!(e, MonitorEvent::NodeChanged { .. })));
    assert_eq!(h.monitor.node("web-1", h.now).unwrap().generation, 2);
    // The old generation's datagrams are now refused, even with a higher sequence.
    h.heartbeat("web-1", 1, 99);
    assert_eq!(h.rejected("old_generation"), 1);
    assert_eq!(h.monitor.node("web-1", h.now).unwrap().generation, 2);
}

#[test]
fn a_restarted_node_recovers_from_down_as_a_restart() {
    let mut h = Harness::phi();
    h.beat("web-1", 1, 1, 10, secs(1.0));
    h.run_for(secs(10.0));
    assert_eq!(h.state("web-1"), NodeState::Down);
    h.beat("web-1", 2, 1, 2, secs(1.0));
    assert_eq!(h.state("web-1"), NodeState::Up);
    assert_eq!(h.history().last().unwrap(), &("web-1".into(), "down", "up", "restart"));
}

#[test]
fn replays_and_duplicates_are_counted_and_change_nothing() {
    let mut h = Harness::phi();
    let first = Harness::datagram(Kind::Heartbeat, "web-1", 5, 10, 1000);
    h.deliver(&first);
    h.run_for(secs(1.0));
    h.heartbeat("web-1", 5, 11);
    let before = h.monitor.node("web-1", h.now).unwrap().last_heartbeat;
    h.run_for(secs(0.5));
    h.deliver(&first);
    h.heartbeat("web-1", 5, 11);
    assert_eq!(h.rejected("replay"), 2);
    assert_eq!(h.monitor.stats().heartbeats, 2);
    assert_eq!(h.monitor.node("web-1", h.now).unwrap().last_heartbeat, before);
    assert_eq!(h.monitor.node("web-1", h.now).unwrap().sequence, 11);
}

#[test]
fn bad_input_is_counted_by_reason_and_never_registers_anything() {
    let mut h = Harness::phi();
    let good = Harness::datagram(Kind::Heartbeat, "web-1", 1, 1, 1000);
    let mut forged = good.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    let mut unknown_key = good.clone();
    unknown_key[4..6].copy_from_slice(&9u16.to_be_bytes());
    for (bytes, reason) in [
        (vec![0u8; 2000], "oversized"),
        (good[..20].to_vec(), "truncated"),
        (bad_magic, "malformed"),
        (forged, "bad_tag"),
        (unknown_key, "unknown_key"),
    ] {
        h.deliver(&bytes);
        assert_eq!(h.rejected(reason), 1, "{reason}");
    }
    assert!(h.monitor.is_empty());
    assert!(h.transitions.is_empty());
}

#[test]
fn goodbye_leaves_quietly_and_a_later_heartbeat_returns() {
    let mut h = Harness::phi();
    h.beat("web-1", 1, 1, 3, secs(1.0));
    h.deliver(&Harness::datagram(Kind::Goodbye, "web-1", 1, 4, 1000));
    h.run_for(secs(60.0));
    check_history(&h, &[("web-1", "new", "up", "first-heartbeat"), ("web-1", "up", "left", "goodbye")]);
    assert_eq!(h.monitor.node("web-1", h.now).unwrap().deadline, None);
    h.heartbeat("web-1", 2, 1);
    assert_eq!(h.history().last().unwrap(), &("web-1".into(), "left", "up", "restart"));
    // A goodbye from a stranger registers nothing.
    h.deliver(&Harness::datagram(Kind::Goodbye, "ghost", 1, 1, 1000));
    assert!(h.monitor.node("ghost", h.now).is_none());
    assert_eq!(h.rejected("unknown_node"), 1);
}

#[test]
fn registration_policy_allow_list_and_capacity() {
    let allow: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
    let mut h = Harness::new(MonitorConfig { allow: Some(allow), max_nodes: 1, ..MonitorConfig::default() });
    h.heartbeat("stranger", 1, 1);
    assert_eq!(h.rejected("not_allowed"), 1);
    h.heartbeat("a", 1, 1);
    h.heartbeat("b", 1, 1);
    assert_eq!(h.rejected("capacity"), 1);
    assert_eq!(h.monitor.len(), 1);
}

#[test]
fn paused_nodes_are_not_judged_and_resume_with_a_fresh_grace() {
    let mut h = Harness::fixed();
    h.beat("web-1", 1, 1, 3, secs(1.0));
    assert!(h.monitor.pause("web-1", h.now));
    h.drain();
    h.run_for(secs(60.0));
    assert_eq!(h.state("web-1"), NodeState::Paused);
    assert!(h.monitor.resume("web-1", h.now));
    h.drain();
    assert_eq!(h.state("web-1"), NodeState::Up);
    h.run_for(secs(2.5)); // less than the 3 s down timeout, counted from the resume
    assert_eq!(h.state("web-1"), NodeState::Suspect);
    h.run_for(secs(1.0));
    assert_eq!(h.state("web-1"), NodeState::Down);
    assert!(!h.monitor.pause("nobody", h.now));
    let reasons: Vec<_> = h.transitions.iter().map(|t| t.reason.as_str()).collect();
    assert_eq!(reasons, ["first-heartbeat", "pause", "resume", "timeout", "timeout"]);
}

/// Three nodes heartbeat every second; the monitor stalls (SIGSTOP) for 10 s while the
/// kernel queues their heartbeats, which it then receives all at once.
fn stall_with_queued_heartbeats(timeouts_first: bool) -> Harness {
    let mut h = Harness::phi();
    for sequence in 1..=20 {
        for node in ["a", "b", "c"] {
            h.heartbeat(node, 1, sequence);
        }
        h.run_for(secs(1.0));
    }
    let queued: Vec<Vec<u8>> = (21..=30)
        .flat_map(|sequence| {
            ["a", "b", "c"].map(|node| Harness::datagram(Kind::Heartbeat, node, 1, sequence, 1000))
        })
        .collect();
    h.now = h.now + secs(10.0);
    if timeouts_first {
        h.monitor.handle_timeout(h.now);
        h.drain();
    }
    for datagram in &queued {
        h.deliver(datagram);
    }
    h
}

#[test]
fn a_stalled_monitor_does_not_declare_senders_down() {
    for timeouts_first in [false, true] {
        let mut h = stall_with_queued_heartbeats(timeouts_first);
        h.beat("a", 1, 31, 30, secs(1.0)); // a keeps sending
        assert_eq!(h.monitor.stats().self_pauses, 1);
        assert!(h.other_events.iter().any(|e| matches!(e, MonitorEvent::SelfPause { .. })));
        let downs: Vec<_> =
            h.transitions.iter().filter(|t| t.to != NodeState::Up).map(|t| t.node.to_string()).collect();
        // b and c stopped after the stall: they go down, but only after a fresh full timeout.
        assert_eq!(h.state("a"), NodeState::Up, "timeouts first: {timeouts_first}");
        assert!(!downs.contains(&"a".to_string()), "a was sending: {downs:?}");
        assert_eq!(h.state("b"), NodeState::Down);
    }
}

#[test]
fn a_stall_extends_deadlines_for_silent_nodes_too() {
    let mut h = Harness::fixed();
    h.beat("quiet", 1, 1, 5, secs(1.0));
    let stalled_at = h.now;
    // The monitor stops for 20 s; the node also went quiet before the stall.
    h.now = h.now + secs(20.0);
    h.monitor.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.state("quiet"), NodeState::Up, "no judgement straight after a stall");
    h.run_for(secs(5.0));
    assert_eq!(h.state("quiet"), NodeState::Down);
    let down = h.transitions.last().unwrap();
    assert!(down.at > stalled_at + secs(20.0), "the deadline was counted from the end of the stall");
    assert!(h.monitor.stats().deadlines_deferred >= 1);
}

fn restored(id: &str, state: NodeState) -> RestoredNode {
    RestoredNode { id: id.into(), generation: 3, sequence: 50, interval_ms: 1000, state, labels_raw: vec![] }
}

#[test]
fn restored_nodes_get_a_fresh_grace_period() {
    let mut h = Harness::fixed();
    for (id, state) in [
        ("sending", NodeState::Up),
        ("silent", NodeState::Up),
        ("dead", NodeState::Down),
        ("gone", NodeState::Left),
    ] {
        h.monitor.restore(restored(id, state), h.now).unwrap();
    }
    assert!(h.monitor.restore(restored("sending", NodeState::Up), h.now).is_err());
    h.run_for(secs(1.9));
    assert!(h.transitions.is_empty(), "nobody is judged inside the grace period");
    // A replay of a datagram older than what was persisted is refused after the restart.
    h.heartbeat("sending", 3, 50);
    h.heartbeat("sending", 2, 99);
    assert_eq!((h.rejected("replay"), h.rejected("old_generation")), (1, 1));
    h.beat("sending", 3, 51, 10, secs(1.0));
    assert_eq!(h.state("sending"), NodeState::Up);
    assert_eq!(h.state("silent"), NodeState::Down);
    assert_eq!(h.state("dead"), NodeState::Down);
    assert_eq!(h.state("gone"), NodeState::Left);
    check_history(&h, &[("silent", "up", "suspect", "timeout"), ("silent", "suspect", "down", "timeout")]);
}

/// A million nodes: stepping the clock costs work proportional to the deadlines that are
/// due, not to the number of nodes.
#[test]
fn a_million_nodes_step_without_a_sweep() {
    const N: u32 = 1_000_000;
    let mut h = Harness::fixed();
    let start = h.now;
    // Restore in 1,000 batches over one second, so deadlines spread like real arrivals.
    for batch in 0..1000u32 {
        let now = start + Duration::from_millis(u64::from(batch));
        for i in 0..N / 1000 {
            let id = format!("n{}", batch * (N / 1000) + i);
            let node = RestoredNode {
                id,
                generation: 1,
                sequence: 1,
                interval_ms: 1000,
                state: NodeState::Up,
                labels_raw: vec![],
            };
            h.monitor.restore(node, now).unwrap();
        }
    }
    h.now = start + secs(1.0);
    assert_eq!(h.monitor.len(), N as usize);
    let visited_before = h.monitor.timer_stats().visited;
    // Nothing is due for a while (suspect at 2 s): one second of ticks must look at almost nothing.
    h.run_for(secs(0.9));
    let idle_work = h.monitor.timer_stats().visited - visited_before;
    assert!(idle_work < u64::from(N) / 100, "idle stepping visited {idle_work} timer entries");
    assert!(h.transitions.is_empty());
    // Everyone goes suspect, then down: each deadline is visited a bounded number of times.
    h.run_for(secs(3.0));
    assert_eq!(h.monitor.stats().nodes_in(NodeState::Down), u64::from(N));
    let total = h.monitor.timer_stats().visited - visited_before;
    assert!(total <= 4 * u64::from(N), "visited {total} entries for {N} nodes going down");
}

#[test]
fn invalid_configuration_is_refused_with_a_sentence() {
    let bad = MonitorConfig { rise: 0, ..MonitorConfig::default() };
    let error = Monitor::new(bad, ring(), Instant::ZERO).err().unwrap();
    assert_eq!(error.setting(), "rise", "{error}");
    let phi = PhiAccrualConfig { threshold: f64::NAN, ..PhiAccrualConfig::default() };
    let bad = MonitorConfig { detector: DetectorConfig::Phi(Arc::new(phi)), ..MonitorConfig::default() };
    assert!(Monitor::new(bad, ring(), Instant::ZERO).is_err());
}

/// The per-node record is what a million nodes cost; keep it well under 512 bytes with its
/// heap parts (id, labels), its table entry and its timer entry (see ARCHITECTURE.md).
#[test]
fn the_node_record_stays_compact() {
    let record = std::mem::size_of::<node::Node>();
    // id and labels on the heap (short id, two labels), hash table slot, timer wheel entry.
    let estimate = record + 48 + 32 + 32 + 24;
    println!("Node: {record} bytes; estimated total per node: {estimate} bytes");
    assert!(record <= 288, "Node grew to {record} bytes");
    assert!(estimate <= 512, "about {estimate} bytes per node");
}

#[test]
fn maintenance_ends_by_itself_and_deadlines_restart_from_its_end() {
    let mut h = Harness::fixed();
    h.beat("web-1", 1, 1, 3, secs(1.0));
    let end = h.now + secs(30.0);
    assert!(h.monitor.pause_until("web-1", Some(end), h.now));
    h.drain();
    h.run_for(secs(29.0));
    assert_eq!(h.state("web-1"), NodeState::Paused);
    h.run_for(secs(1.5));
    assert_eq!(h.state("web-1"), NodeState::Up, "resumed at the end of maintenance");
    let resumed = h.transitions.last().unwrap();
    assert_eq!((resumed.reason, resumed.at), (Reason::Resume, end));
    // Silent since long before: still judged only from the end (3 s down timeout).
    h.run_for(secs(1.0));
    assert_eq!(h.state("web-1"), NodeState::Up);
    h.run_for(secs(2.0));
    assert_eq!(h.state("web-1"), NodeState::Down);
    assert!(h.transitions.last().unwrap().at >= end + secs(3.0));
    // A plain pause has no end.
    h.monitor.pause("web-1", h.now);
    h.run_for(secs(3600.0));
    assert_eq!(h.state("web-1"), NodeState::Paused);
}

/// A long silence (a partition) must not linger in the phi window: after the node is back,
/// a crash is detected as fast as before.
#[test]
fn a_long_silence_does_not_slow_the_next_detection() {
    let mut h = Harness::phi();
    h.beat("web-1", 1, 1, 30, secs(1.0));
    h.run_for(secs(60.0)); // cut off for a minute: declared down
    assert_eq!(h.state("web-1"), NodeState::Down);
    h.beat("web-1", 1, 31, 10, secs(1.0)); // back, steady again
    assert_eq!(h.state("web-1"), NodeState::Up);
    let last = h.monitor.node("web-1", h.now).unwrap().last_heartbeat.unwrap();
    h.run_for(secs(30.0)); // then it crashes
    let down = h.transitions.last().unwrap();
    assert_eq!(down.to, NodeState::Down);
    let after_last = down.at - last;
    assert!(after_last < secs(6.0), "detected {after_last:?} after the last heartbeat");
}

#[test]
fn a_forgotten_node_leaves_the_table_and_the_others_keep_their_deadlines() {
    let mut h = Harness::fixed();
    for node in ["a", "b", "c"] {
        h.heartbeat(node, 1, 1);
    }
    assert!(h.monitor.forget("a", h.now));
    h.drain();
    assert!(h.monitor.node("a", h.now).is_none());
    assert_eq!(h.monitor.len(), 2);
    assert!(h.other_events.iter().any(|e| matches!(e, MonitorEvent::Forgotten { node } if &**node == "a")));
    assert_eq!(h.history().last().unwrap(), &("a".into(), "up", "left", "forget"));
    assert!(!h.monitor.forget("a", h.now));
    // c moved into a's slot: its deadline moved with it, and b's stayed.
    h.run_for(secs(4.0));
    assert_eq!((h.state("b"), h.state("c")), (NodeState::Down, NodeState::Down));
    assert_eq!(h.monitor.stats().nodes_in(NodeState::Down), 2);
    assert_eq!(h.monitor.stats().nodes_in(NodeState::Left), 0);
    // A heartbeat brings it back as a new node.
    h.heartbeat("a", 1, 2);
    assert_eq!(h.history().last().unwrap(), &("a".into(), "new", "up", "first-heartbeat"));
}

#[test]
fn gaps_in_sequence_numbers_estimate_the_loss() {
    let mut h = Harness::phi();
    for sequence in [1, 2, 5, 6, 10] {
        h.heartbeat("web-1", 1, sequence);
        h.run_for(secs(1.0));
    }
    // A restart (new generation) starts a new count: no gap across generations.
    h.heartbeat("web-1", 2, 1);
    let stats = h.monitor.stats();
    assert_eq!((stats.heartbeats, stats.heartbeats_missed), (6, 5));
    assert!((stats.loss_estimate() - 5.0 / 11.0).abs() < 1e-12);
    let facts = h.monitor.detector_facts("web-1").unwrap();
    assert!(facts.suspect_silence.unwrap() < facts.down_silence.unwrap());
}

fn exit_report(node: &str, generation: u64, sequence: u64, status: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    let message = Outgoing {
        follows_advice: false,
        kind: Kind::Exit,
        node,
        generation,
        sequence,
        interval_ms: 1000,
        labels: status,
    };
    encode(&message, &ring(), &mut out).unwrap();
    out
}

#[test]
fn an_exit_report_takes_the_node_down_at_once() {
    let mut h = Harness::phi();
    h.beat("web-1", 7, 1, 5, secs(1.0));
    h.run_for(secs(0.3));
    h.deliver(&exit_report("web-1", 7, 6, &[("signal", "9")]));
    check_history(
        &h,
        &[("web-1", "new", "up", "first-heartbeat"), ("web-1", "up", "down", "process-exited")],
    );
    let down = h.transitions.last().unwrap();
    assert_eq!((down.at, down.noticed), (h.now, h.now), "no suspicion, no waiting");
    let status = crate::wire::ExitStatus { code: None, signal: Some(9) };
    assert_eq!((down.generation, down.exit), (7, Some(status)), "the report's status is on the transition");
    assert_eq!(h.transitions[0].exit, None, "only an exit report carries a status");
    assert_eq!(h.monitor.node("web-1", h.now).unwrap().deadline, None);
    // The agent repeats its report (UDP may lose one): counted, nothing more happens.
    h.deliver(&exit_report("web-1", 7, 7, &[("signal", "9")]));
    h.run_for(secs(60.0));
    assert_eq!(h.transitions.len(), 2);
    assert_eq!(h.monitor.stats().exits, 2);
}

#[test]
fn replayed_forged_or_stale_exit_reports_change_nothing() {
    let mut h = Harness::phi();
    h.beat("web-1", 7, 1, 3, secs(1.0));
    let report = exit_report("web-1", 7, 4, &[("code", "1")]);
    h.deliver(&report);
    assert_eq!(h.state("web-1"), NodeState::Down);
    // Restarted as a new generation (`--restart`): back up after `rise` heartbeats.
    h.beat("web-1", 8, 1, 2, secs(1.0));
    assert_eq!(h.history().last().unwrap(), &("web-1".into(), "down", "up", "restart"));
    // The old generation's report, replayed or late, cannot take the new process down.
    h.deliver(&report);
    h.deliver(&exit_report("web-1", 7, 99, &[]));
    assert_eq!(h.rejected("old_generation"), 2);
    // Nor can a replay within the current generation, a forgery, or a stranger's report.
    h.deliver(&exit_report("web-1", 8, 2, &[]));
    assert_eq!(h.rejected("replay"), 1);
    let mut forged = exit_report("web-1", 8, 50, &[]);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    h.deliver(&forged);
    assert_eq!(h.rejected("bad_tag"), 1);
    h.deliver(&exit_report("ghost", 1, 1, &[]));
    assert_eq!(h.rejected("unknown_node"), 1);
    assert!(h.monitor.node("ghost", h.now).is_none());
    assert_eq!(h.state("web-1"), NodeState::Up);
    assert_eq!(h.monitor.stats().exits, 1);
}

#[test]
fn an_exit_report_ends_a_recovery_and_pages_nobody_in_maintenance_or_after_goodbye() {
    let mut h = Harness::phi();
    h.beat("web-1", 1, 1, 3, secs(1.0));
    h.deliver(&exit_report("web-1", 1, 4, &[]));
    // The restarted process crashes again before it is back up: still down, and the rise
    // starts over.
    h.heartbeat("web-1", 2, 1);
    h.deliver(&exit_report("web-1", 2, 2, &[]));
    h.run_for(secs(1.0));
    h.heartbeat("web-1", 3, 1);
    assert_eq!(h.state("web-1"), NodeState::Down, "one heartbeat of the third generation is not enough");
    h.run_for(secs(1.0));
    h.heartbeat("web-1", 3, 2);
    assert_eq!(h.state("web-1"), NodeState::Up);
    assert!(h.monitor.pause("web-1", h.now));
    h.deliver(&exit_report("web-1", 3, 3, &[]));
    assert_eq!(h.state("web-1"), NodeState::Paused);
    assert!(h.monitor.resume("web-1", h.now));
    h.heartbeat("web-1", 4, 1);
    h.deliver(&Harness::datagram(Kind::Goodbye, "web-1", 4, 2, 1000));
    h.deliver(&exit_report("web-1", 4, 3, &[]));
    assert_eq!(h.state("web-1"), NodeState::Left);
    let exits = h.history().iter().filter(|t| t.3 == "process-exited").count();
    assert_eq!(exits, 1, "{:?}", h.history());
}

#[test]
fn an_exit_report_ends_a_confirmation_round_as_down() {
    let confirm = Some(ConfirmConfig::default());
    let mut h = Harness::new(MonitorConfig { confirm, ..MonitorConfig::default() });
    h.beat("web-1", 1, 1, 10, secs(1.0));
    h.run_until(h.monitor.node("web-1", h.now).unwrap().deadline.unwrap());
    assert_eq!(h.state("web-1"), NodeState::Suspect);
    assert_eq!(h.monitor.confirmations_in_progress(), 1, "probing the suspect");
    h.deliver(&exit_report("web-1", 1, 11, &[]));
    assert_eq!(h.history().last().unwrap(), &("web-1".into(), "suspect", "down", "process-exited"));
    assert_eq!(h.monitor.confirmations_in_progress(), 0, "no round outlives its node's down");
    h.run_for(secs(30.0));
    assert_eq!(h.transitions.len(), 3, "{:?}", h.history());
}

/// An embedder's own transport hands heartbeats over already authenticated: the same
/// states, the same refusals, no datagram.
#[test]
fn handed_over_heartbeats_follow_the_same_rules_as_datagrams() {
    let mut h = Harness::phi();
    let second = Duration::from_secs(1);
    let mut labels = Vec::new();
    crate::wire::encode_labels(&[("group", "db")], &mut labels).unwrap();
    let labels = Labels::from_bytes(&labels).unwrap();
    for sequence in 1..=10 {
        h.monitor.handle_heartbeat(h.now, "embedded", 1, sequence, second, labels).unwrap();
        h.drain();
        h.run_for(second);
    }
    assert_eq!(h.state("embedded"), NodeState::Up);
    let view = h.monitor.node("embedded", h.now).unwrap();
    let stored = Labels::from_bytes(view.labels_raw).unwrap();
    assert_eq!(stored.iter().collect::<Vec<_>>(), vec![("group", "db")]);
    assert_eq!(view.addr, None);
    // A repeat, an older generation and an id the wire would refuse: counted, nothing changes.
    let refusals = [
        h.monitor.handle_heartbeat(h.now, "embedded", 1, 10, second, Labels::EMPTY),
        h.monitor.handle_heartbeat(h.now, "embedded", 0, 99, second, Labels::EMPTY),
        h.monitor.handle_heartbeat(h.now, "two words", 1, 1, second, Labels::EMPTY),
        h.monitor.handle_heartbeat(h.now, "", 1, 1, second, Labels::EMPTY),
    ];
    assert_eq!(
        refusals,
        [
            Err(Rejection::Replay),
            Err(Rejection::OldGeneration),
            Err(Rejection::Decode(DecodeError::Malformed)),
            Err(Rejection::Decode(DecodeError::Malformed)),
        ]
    );
    assert_eq!(h.rejected("replay") + h.rejected("old_generation") + h.rejected("malformed"), 4);
    assert!(h.monitor.node("two words", h.now).is_none());
    // Silence is judged as for any node: suspect, then down.
    h.run_for(Duration::from_secs(30));
    check_history(
        &h,
        &[
            ("embedded", "new", "up", "first-heartbeat"),
            ("embedded", "up", "suspect", "phi"),
            ("embedded", "suspect", "down", "phi"),
        ],
    );
}

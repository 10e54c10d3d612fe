//! Confirmation end to end on a virtual clock: a monitor, agents with their responders, and a
//! network in between whose paths the tests cut.

use super::*;
use crate::monitor::{DetectorConfig, MonitorConfig, MonitorEvent, NodeState, Rejection, Transition};
use crate::responder::{Responder, ResponderConfig};
use crate::wire::{Outgoing, encode};
use rollcall_detect::{FixedTimeoutConfig, PhiAccrualConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const KEY_FILE: &str = "1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
const MONITOR: SocketAddr = addr(100);
const LATENCY: Duration = Duration::from_millis(1);
const INTERVAL: Duration = Duration::from_secs(1);

const fn addr(host: u8) -> SocketAddr {
    SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(10, 0, 0, host), 9000))
}

fn ring() -> crate::KeyRing {
    crate::KeyRing::parse(KEY_FILE).expect("test key file is valid")
}

/// Suspect after 1.5 s of silence; the detector alone would say down after 3 s. Three
/// probes 200 ms apart, then three helpers and 500 ms: confirmed down 2.6 s after the last
/// heartbeat.
fn config() -> MonitorConfig {
    let fixed = FixedTimeoutConfig { multiplier: 1.5, grace: Duration::from_millis(1500) };
    MonitorConfig {
        detector: DetectorConfig::Fixed(Arc::new(fixed)),
        confirm: Some(ConfirmConfig::default()),
        ..MonitorConfig::default()
    }
}

struct Agent {
    id: String,
    addr: SocketAddr,
    responder: Responder,
    alive: bool,
    sequence: u64,
}

/// What the tests break: whole agents, or one kind of datagram on one path.
#[derive(Default)]
struct Faults {
    /// Heartbeats of these agents never reach the monitor (probes and acks still do).
    heartbeats_lost: BTreeSet<String>,
    /// No datagram at all passes between these two addresses, either way.
    cut: BTreeSet<(SocketAddr, SocketAddr)>,
}

struct Net {
    now: Instant,
    monitor: Monitor,
    agents: Vec<Agent>,
    faults: Faults,
    in_flight: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Vec<u8>)>,
    sent: u64,
    next_beat: Instant,
    transitions: Vec<Transition>,
    /// Datagrams the monitor sent, by kind.
    monitor_sent: BTreeMap<&'static str, u64>,
}

impl Net {
    fn new(ids: &[&str], config: MonitorConfig) -> Net {
        let now = Instant::from_millis(1_000);
        let mut monitor = Monitor::new(config, ring(), now).unwrap();
        monitor.set_probe_epoch(7);
        let agents = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Agent {
                id: id.to_string(),
                addr: addr(i as u8 + 1),
                responder: Responder::new(id, 1000, ring(), ResponderConfig::default(), now),
                alive: true,
                sequence: 0,
            })
            .collect();
        Net {
            now,
            monitor,
            agents,
            faults: Faults::default(),
            in_flight: BTreeMap::new(),
            sent: 0,
            next_beat: now,
            transitions: vec![],
            monitor_sent: BTreeMap::new(),
        }
    }

    fn agent(&mut self, id: &str) -> &mut Agent {
        self.agents.iter_mut().find(|agent| agent.id == id).expect("agent exists")
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        if self.faults.cut.contains(&(from, to)) || self.faults.cut.contains(&(to, from)) {
            return;
        }
        self.sent += 1;
        self.in_flight.insert((self.now + LATENCY, self.sent), (from, to, payload));
    }

    fn cut(&mut self, a: SocketAddr, b: SocketAddr) {
        self.faults.cut.insert((a, b));
    }

    fn drain_monitor(&mut self) {
        while let Some(event) = self.monitor.poll_event() {
            if let MonitorEvent::Transition { transition, .. } = event {
                self.transitions.push(transition);
            }
        }
        while let Some(transmit) = self.monitor.poll_transmit() {
            let kind = wire::Kind::from_code(transmit.payload[3]).expect("the monitor sends valid kinds");
            *self.monitor_sent.entry(kind.as_str()).or_default() += 1;
            self.send(MONITOR, transmit.to, transmit.payload);
        }
    }

    fn beat_all(&mut self) {
        for i in 0..self.agents.len() {
            let agent = &mut self.agents[i];
            if !agent.alive {
                continue;
            }
            agent.sequence += 1;
            let mut out = Vec::new();
            let heartbeat = Outgoing {
                follows_advice: false,
                kind: Kind::Heartbeat,
                node: &agent.id,
                generation: 1,
                sequence: agent.sequence,
                interval_ms: 1000,
                labels: &[],
            };
            encode(&heartbeat, &ring(), &mut out).unwrap();
            let (from, lost) = (agent.addr, self.faults.heartbeats_lost.contains(&agent.id));
            if !lost {
                self.send(from, MONITOR, out);
            }
        }
    }

    fn deliver(&mut self, from: SocketAddr, to: SocketAddr, payload: &[u8]) {
        if to == MONITOR {
            self.monitor.handle_datagram(self.now, from, payload);
            return self.drain_monitor();
        }
        let now = self.now;
        let Some(agent) = self.agents.iter_mut().find(|agent| agent.addr == to && agent.alive) else {
            return;
        };
        agent.responder.handle_datagram(now, from, payload);
        let mut out = vec![];
        while let Some(transmit) = agent.responder.poll_transmit() {
            out.push((agent.addr, transmit.to, transmit.payload));
        }
        for (from, to, payload) in out {
            self.send(from, to, payload);
        }
    }

    /// Runs the world until `span` has passed, in order of every instant something happens.
    fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        for _ in 0..1_000_000 {
            let delivery = self.in_flight.keys().next().map(|&(at, _)| at);
            let next = [Some(self.next_beat), delivery, self.monitor.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .expect("the beat is always there")
                .max(self.now);
            if next > end {
                self.now = end;
                return;
            }
            self.now = next;
            if let Some(entry) = self.in_flight.first_entry()
                && entry.key().0 <= self.now
            {
                let (from, to, payload) = entry.remove();
                self.deliver(from, to, &payload);
            } else if self.next_beat <= self.now {
                self.beat_all();
                self.next_beat = self.now + INTERVAL;
            } else {
                self.monitor.handle_timeout(self.now);
                self.drain_monitor();
            }
        }
        panic!("the world did not reach its end: a step stopped advancing");
    }

    fn state(&self, id: &str) -> NodeState {
        self.monitor.node(id, self.now).expect("node exists").state
    }

    fn history(&self, id: &str) -> Vec<(&'static str, &'static str)> {
        self.transitions
            .iter()
            .filter(|t| &*t.node == id)
            .map(|t| (t.to.as_str(), t.reason.as_str()))
            .collect()
    }

    fn stats(&self) -> &ConfirmStats {
        self.monitor.confirm_stats().expect("confirmation is on")
    }
}

const FLEET: [&str; 5] = ["web-1", "web-2", "web-3", "web-4", "web-5"];

fn settled() -> Net {
    let mut net = Net::new(&FLEET, config());
    net.run_for(Duration::from_secs(5));
    for id in FLEET {
        assert_eq!(net.state(id), NodeState::Up, "{id} is up after 5 s of heartbeats");
    }
    net
}

#[test]
fn silence_and_unanswered_probes_condemn_a_node() {
    let mut net = settled();
    net.agent("web-3").alive = false;
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.state("web-3"), NodeState::Down);
    let history = net.history("web-3");
    assert_eq!(&history[1..], [("suspect", "timeout"), ("down", "probes-unanswered")]);
    // Three direct probes, then three other agents asked.
    assert_eq!(net.monitor_sent.get("probe"), Some(&3));
    assert_eq!(net.monitor_sent.get("probe_request"), Some(&3));
    // Confirmed after the suspect level (1.5 s) and one round (0.6 s + 0.5 s): 2.6 s
    // after the last heartbeat, well before the detector alone (3 s) would say it.
    let down = net.transitions.iter().find(|t| t.to == NodeState::Down).unwrap();
    let suspect = net.transitions.iter().find(|t| t.to == NodeState::Suspect).unwrap();
    assert_eq!(down.at - suspect.at, ConfirmConfig::default().round_length());
    for id in FLEET.iter().filter(|id| **id != "web-3") {
        assert_eq!(net.state(id), NodeState::Up, "{id} stays up");
    }
}

#[test]
fn an_answered_probe_cancels_the_suspicion_without_resetting_the_history() {
    // Phi accrual, so that there is a history of intervals to keep: with a steady 1 s
    // rhythm, suspect at about 1.3 s of silence and down at about 1.6 s.
    let phi = PhiAccrualConfig { acceptable_pause: Duration::ZERO, ..PhiAccrualConfig::default() };
    let detector = DetectorConfig::Phi(Arc::new(phi));
    let mut net = Net::new(&FLEET, MonitorConfig { detector, ..config() });
    net.run_for(Duration::from_secs(10));
    let intervals_before = net.monitor.detector_facts("web-2").unwrap().recent_intervals.len();
    // One heartbeat lost: the silence reaches the suspect level, the probe is answered.
    net.faults.heartbeats_lost.insert("web-2".into());
    net.run_for(Duration::from_millis(1_600));
    net.faults.heartbeats_lost.clear();
    net.run_for(Duration::from_secs(3));
    let history = net.history("web-2");
    assert_eq!(&history[1..], [("suspect", "phi"), ("up", "probe-answered")]);
    assert_eq!(net.state("web-2"), NodeState::Up);
    assert_eq!(net.stats().answered, 1);
    // The answer did not count as a gap: the detector kept its window.
    let intervals_after = net.monitor.detector_facts("web-2").unwrap().recent_intervals.len();
    assert!(intervals_after > intervals_before, "{intervals_before} -> {intervals_after}");
}

#[test]
fn a_node_that_answers_but_sends_no_heartbeats_is_suspect_not_down() {
    let mut net = settled();
    net.faults.heartbeats_lost.insert("web-4".into());
    net.run_for(Duration::from_secs(60));
    assert_eq!(net.state("web-4"), NodeState::Suspect);
    let history = net.history("web-4");
    assert!(!history.iter().any(|(to, _)| *to == "down"), "never down: {history:?}");
    assert_eq!(history.last(), Some(&("suspect", "heartbeats-missing")));
    // Rechecked every 10 s, each time without a new transition.
    assert!(net.stats().rounds >= 6, "rechecked: {:?}", net.stats());
    let missing = history.iter().filter(|(_, reason)| *reason == "heartbeats-missing").count();
    assert_eq!(missing, 1, "{history:?}");
    // When the heartbeats come back, so does the node.
    net.faults.heartbeats_lost.clear();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.state("web-4"), NodeState::Up);
    assert_eq!(net.history("web-4").last(), Some(&("up", "heartbeat")));
}

#[test]
fn a_broken_path_from_the_monitor_is_reported_as_unreachable_not_down() {
    let mut net = settled();
    let web5 = net.agent("web-5").addr;
    net.cut(MONITOR, web5);
    net.run_for(Duration::from_secs(30));
    assert_eq!(net.state("web-5"), NodeState::Suspect);
    let history = net.history("web-5");
    assert!(!history.iter().any(|(to, _)| *to == "down"), "never down: {history:?}");
    assert_eq!(history.last(), Some(&("suspect", "unreachable")));
    assert!(net.stats().answered_indirectly >= 1);
    // The path heals: heartbeats arrive again and the node is up.
    net.faults.cut.clear();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.state("web-5"), NodeState::Up);
}

#[test]
fn a_dead_node_behind_a_broken_path_is_still_declared_down() {
    let mut net = settled();
    let web1 = net.agent("web-1").addr;
    net.cut(MONITOR, web1);
    net.run_for(Duration::from_secs(20));
    assert_eq!(net.history("web-1").last(), Some(&("suspect", "unreachable")));
    // Now it really dies: the next recheck finds nobody, directly or through others.
    net.agent("web-1").alive = false;
    net.run_for(Duration::from_secs(15));
    assert_eq!(net.state("web-1"), NodeState::Down);
    assert_eq!(net.history("web-1").last(), Some(&("down", "probes-unanswered")));
}

#[test]
fn late_replayed_and_foreign_acks_change_nothing() {
    let mut net = settled();
    // Capture an ack to a round, then replay it during a later round.
    let mut out = Vec::new();
    let ack = |epoch: u64, nonce: u64, out: &mut Vec<u8>| {
        let message = Outgoing {
            follows_advice: false,
            kind: Kind::Ack,
            node: "web-2",
            generation: epoch,
            sequence: nonce,
            interval_ms: 1000,
            labels: &[],
        };
        encode(&message, &ring(), out).unwrap();
    };
    // No round in progress: stale.
    ack(7, 1, &mut out);
    let web2 = net.agent("web-2").addr;
    net.monitor.handle_datagram(net.now, web2, &out);
    net.agent("web-2").alive = false;
    net.run_for(Duration::from_millis(1_700));
    assert_eq!(net.state("web-2"), NodeState::Suspect);
    // Another epoch (an earlier run of the monitor), then a nonce of no round: both stale.
    ack(6, 1, &mut out);
    net.monitor.handle_datagram(net.now, web2, &out);
    ack(7, 99, &mut out);
    net.monitor.handle_datagram(net.now, web2, &out);
    let stale = net.monitor.stats().rejected.get(&Rejection::StaleAck).copied();
    assert_eq!(stale, Some(3));
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.state("web-2"), NodeState::Down, "none of them saved it");
    // Probes sent to the monitor are refused, not answered.
    let mut probe = Vec::new();
    let message = Outgoing {
        follows_advice: false,
        kind: Kind::Probe,
        node: "web-1",
        generation: 1,
        sequence: 1,
        interval_ms: 1000,
        labels: &[],
    };
    encode(&message, &ring(), &mut probe).unwrap();
    net.monitor.handle_datagram(net.now, web2, &probe);
    assert_eq!(net.monitor.stats().rejected.get(&Rejection::UnexpectedKind), Some(&1));
    assert!(net.monitor.poll_transmit().is_none());
}

#[test]
fn the_probe_budget_bounds_traffic_and_the_detector_decides_beyond_it() {
    // A budget for two rounds at once (6 datagrams each), refilled slowly.
    let confirm = ConfirmConfig { max_probes_per_sec: 1, probe_burst: 12, ..ConfirmConfig::default() };
    let ids: Vec<String> = (1..=10).map(|i| format!("db-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut net = Net::new(&ids, MonitorConfig { confirm: Some(confirm), ..config() });
    net.run_for(Duration::from_secs(5));
    for agent in &mut net.agents {
        agent.alive = false;
    }
    net.run_for(Duration::from_secs(5));
    let stats = net.stats().clone();
    assert_eq!(stats.rounds, 2, "{stats:?}");
    assert_eq!(stats.rounds_skipped, 8, "{stats:?}");
    let sent: u64 = net.monitor_sent.values().sum();
    assert!(sent <= 12, "at most the burst went out: {sent}");
    let reasons: Vec<&str> =
        net.transitions.iter().filter(|t| t.to == NodeState::Down).map(|t| t.reason.as_str()).collect();
    assert_eq!(reasons.len(), 10, "every node is down: {reasons:?}");
    assert_eq!(reasons.iter().filter(|r| **r == "probes-unanswered").count(), 2);
    assert_eq!(reasons.iter().filter(|r| **r == "timeout").count(), 8, "judged by the detector alone");
}

#[test]
fn without_confirmation_nothing_is_sent() {
    let mut net = Net::new(&FLEET, MonitorConfig { confirm: None, ..config() });
    net.run_for(Duration::from_secs(3));
    net.agent("web-1").alive = false;
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.history("web-1").last(), Some(&("down", "timeout")));
    assert!(net.monitor_sent.is_empty());
    assert!(net.monitor.confirm_stats().is_none());
}

#[test]
fn bad_settings_are_refused_with_one_sentence() {
    for (confirm, word) in [
        (ConfirmConfig { probes: 0, ..ConfirmConfig::default() }, "probes"),
        (ConfirmConfig { probe_interval: Duration::ZERO, ..ConfirmConfig::default() }, "probe_interval"),
        (ConfirmConfig { max_probes_per_sec: 0, ..ConfirmConfig::default() }, "max_probes_per_sec"),
        (ConfirmConfig { probe_burst: 5, ..ConfirmConfig::default() }, "probe_burst"),
    ] {
        let error = confirm.validate().unwrap_err();
        assert_eq!(error.setting(), format!("confirm.{word}"), "{error}");
    }
}

//! Settings per group, on a virtual clock: which settings judge a node, and changes at run
//! time.

use super::*;
use crate::monitor::{MonitorConfig, MonitorEvent, NodeState};
use crate::wire::{Kind, Outgoing, encode};
use crate::{Key, KeyRing};
use core::time::Duration;
use rollcall_detect::{FixedTimeoutConfig, PhiAccrualConfig};
use std::net::SocketAddr;
use std::sync::Arc;

fn ring() -> KeyRing {
    KeyRing::new(&[Key::new(1, [7; 32])]).expect("one key is a valid ring")
}

fn fixed(multiplier: f64) -> DetectorConfig {
    DetectorConfig::Fixed(Arc::new(FixedTimeoutConfig { multiplier, grace: Duration::from_millis(500) }))
}

fn phi(threshold: f64) -> DetectorConfig {
    DetectorConfig::Phi(Arc::new(PhiAccrualConfig { threshold, ..PhiAccrualConfig::default() }))
}

fn settings(detector: DetectorConfig) -> GroupSettings {
    GroupSettings { detector, confirm: None }
}

/// A monitor on a virtual clock whose nodes send every second from their own port.
struct Fleet {
    monitor: Monitor,
    now: Instant,
    downs: Vec<(String, Instant)>,
    sequence: u64,
}

impl Fleet {
    fn new(config: MonitorConfig) -> Fleet {
        let now = Instant::from_millis(1_000);
        Fleet { monitor: Monitor::new(config, ring(), now).expect("valid"), now, downs: vec![], sequence: 0 }
    }

    fn send(&mut self, node: &str, group: &str) {
        self.sequence += 1;
        let labels = [("group", group)];
        let message = Outgoing {
            kind: Kind::Heartbeat,
            node,
            generation: 1,
            sequence: self.sequence,
            interval_ms: 1000,
            labels: if group.is_empty() { &[] } else { &labels },
            follows_advice: false,
        };
        let mut datagram = Vec::new();
        encode(&message, &ring(), &mut datagram).expect("a valid heartbeat");
        let port = 9000 + node.len() as u16 + u16::from(node.as_bytes()[0]);
        let from = SocketAddr::from(([127, 0, 0, 1], port));
        self.monitor.handle_datagram(self.now, from, &datagram);
        self.drain();
    }

    /// Ten heartbeats a second apart from each `(node, group)`.
    fn beat(&mut self, nodes: &[(&str, &str)], count: u32) {
        for _ in 0..count {
            for &(node, group) in nodes {
                self.send(node, group);
            }
            self.run_for(Duration::from_secs(1));
        }
    }

    fn drain(&mut self) {
        while let Some(event) = self.monitor.poll_event() {
            if let MonitorEvent::Transition { transition: t, .. } = event
                && t.to == NodeState::Down
            {
                self.downs.push((t.node.to_string(), t.at));
            }
        }
    }

    fn run_for(&mut self, span: Duration) {
        let target = self.now + span;
        loop {
            let wake = self.monitor.poll_timeout().map_or(self.now, |at| at.max(self.now));
            if wake > target {
                break;
            }
            self.now = wake;
            self.monitor.handle_timeout(wake);
            self.drain();
        }
        self.now = target;
    }

    /// The silence after the last heartbeat at which `node` was declared down.
    fn down_after(&self, node: &str, last: Instant) -> Duration {
        let at = self.downs.iter().find(|(id, _)| id == node).map(|(_, at)| *at);
        at.unwrap_or_else(|| panic!("{node} was not declared down: {:?}", self.downs)) - last
    }
}

fn two_groups() -> MonitorConfig {
    MonitorConfig {
        detector: fixed(4.0),
        groups: [("fast".to_string(), settings(fixed(1.5))), ("slow".to_string(), settings(fixed(8.0)))]
            .into(),
        ..MonitorConfig::default()
    }
}

#[test]
fn each_group_is_judged_by_its_own_settings_and_the_rest_by_the_fleets() {
    let mut fleet = Fleet::new(two_groups());
    let nodes = [("f", "fast"), ("s", "slow"), ("o", "other"), ("n", "")];
    fleet.beat(&nodes, 5);
    let last = fleet.now - Duration::from_secs(1);
    fleet.run_for(Duration::from_secs(20));
    // Down after interval x multiplier + grace of silence.
    let check = |node: &str, silence_ms: u64| {
        assert_eq!(fleet.down_after(node, last), Duration::from_millis(silence_ms), "{node}");
    };
    check("f", 2_000);
    check("s", 8_500);
    check("o", 4_500);
    check("n", 4_500);
}

#[test]
fn a_groups_new_settings_apply_at_the_next_heartbeat_and_keep_the_history() {
    let config =
        MonitorConfig { groups: [("db".to_string(), settings(phi(8.0)))].into(), ..MonitorConfig::default() };
    let mut fleet = Fleet::new(config);
    fleet.beat(&[("d", "db"), ("w", "web")], 12);
    let before = fleet.monitor.detector_facts("d").expect("known");
    assert_eq!(before.down_level, 8.0);
    fleet.monitor.set_group_settings(Some("db"), settings(phi(12.0)), fleet.now).expect("db is named");
    assert_eq!(fleet.monitor.group_settings(Some("db")), Some(&settings(phi(12.0))));
    fleet.beat(&[("d", "db"), ("w", "web")], 1);
    let after = fleet.monitor.detector_facts("d").expect("known");
    assert_eq!(after.down_level, 12.0, "taken at the next heartbeat");
    // The window moved by one interval, not restarted from its two seeds.
    assert_eq!(after.recent_intervals.len(), before.recent_intervals.len() + 1);
    assert!(after.down_silence > before.down_silence, "{after:?} {before:?}");
    // Other groups keep the fleet's settings.
    assert_eq!(fleet.monitor.detector_facts("w").expect("known").down_level, 8.0);
    // The fleet's own settings change the same way.
    fleet
        .monitor
        .set_group_settings(None, settings(phi(5.0)), fleet.now)
        .expect("the fleet always has settings");
    fleet.beat(&[("d", "db"), ("w", "web")], 1);
    assert_eq!(fleet.monitor.detector_facts("w").expect("known").down_level, 5.0);
    assert_eq!(fleet.monitor.detector_facts("d").expect("known").down_level, 12.0);
}

#[test]
fn a_node_that_changes_group_takes_its_new_groups_settings() {
    let mut fleet = Fleet::new(two_groups());
    fleet.beat(&[("x", "slow")], 3);
    fleet.beat(&[("x", "fast")], 3);
    let last = fleet.now - Duration::from_secs(1);
    fleet.run_for(Duration::from_secs(20));
    assert_eq!(fleet.down_after("x", last), Duration::from_millis(2_000));
}

#[test]
fn only_the_groups_that_confirm_probe_their_suspects() {
    let config = MonitorConfig {
        detector: fixed(2.0),
        groups: [
            (
                "probed".to_string(),
                GroupSettings { detector: fixed(2.0), confirm: Some(ConfirmConfig::default()) },
            ),
            ("later".to_string(), settings(fixed(2.0))),
        ]
        .into(),
        ..MonitorConfig::default()
    };
    let mut fleet = Fleet::new(config);
    fleet.beat(&[("p", "probed"), ("q", "")], 3);
    fleet.run_for(Duration::from_secs(10));
    let probes = std::iter::from_fn(|| fleet.monitor.poll_transmit()).count();
    assert!(probes >= 3, "the suspect of the confirming group was probed: {probes}");
    assert_eq!(fleet.monitor.confirm_stats().expect("on").rounds, 1, "and only it");

    // A group may start confirming at run time, even with no confirmation at start.
    let mut fleet = Fleet::new(MonitorConfig {
        groups: [("later".to_string(), settings(fixed(2.0)))].into(),
        detector: fixed(2.0),
        ..MonitorConfig::default()
    });
    assert!(fleet.monitor.confirm_stats().is_none());
    let confirming = GroupSettings { detector: fixed(2.0), confirm: Some(ConfirmConfig::default()) };
    fleet.monitor.set_group_settings(Some("later"), confirming, fleet.now).expect("named");
    fleet.beat(&[("l", "later")], 3);
    fleet.run_for(Duration::from_secs(10));
    assert_eq!(fleet.monitor.confirm_stats().expect("on now").rounds, 1);
}

#[test]
fn settings_for_an_unnamed_group_or_another_detector_are_refused() {
    let mut fleet = Fleet::new(two_groups());
    let now = fleet.now;
    let unnamed = fleet.monitor.set_group_settings(Some("nobody"), settings(fixed(2.0)), now);
    assert_eq!(unnamed.unwrap_err().setting(), "group.nobody");
    let other_kind = fleet.monitor.set_group_settings(Some("fast"), settings(phi(8.0)), now).unwrap_err();
    assert_eq!(other_kind.setting(), "group.fast.detector");
    assert!(other_kind.requirement().contains("the detector kind is the same for every group"));
    let config = MonitorConfig { groups: [("db".to_string(), settings(phi(8.0)))].into(), ..two_groups() };
    assert!(config.validate().unwrap_err().to_string().starts_with("group.db.detector is phi"));
    let bad = MonitorConfig { groups: [("db".to_string(), settings(fixed(0.5)))].into(), ..two_groups() };
    assert_eq!(bad.validate().unwrap_err().setting(), "group.db.multiplier", "{:?}", bad.validate());
}

#[test]
fn a_group_that_stops_confirming_leaves_its_suspects_to_the_detector() {
    let confirming = GroupSettings {
        detector: fixed(2.0),
        confirm: Some(ConfirmConfig { recheck: Duration::from_secs(1), ..ConfirmConfig::default() }),
    };
    let config = MonitorConfig {
        detector: fixed(2.0),
        groups: [("g".to_string(), confirming)].into(),
        ..MonitorConfig::default()
    };
    let mut fleet = Fleet::new(config);
    fleet.beat(&[("a", "g")], 3);
    // Silent since a second ago: suspect after 2 s, then probed; stop confirming in the
    // middle of the round.
    fleet.run_for(Duration::from_millis(1_100));
    assert_eq!(fleet.monitor.confirmations_in_progress(), 1);
    fleet.monitor.set_group_settings(Some("g"), settings(fixed(2.0)), fleet.now).expect("named");
    fleet.run_for(Duration::from_secs(5));
    assert_eq!(fleet.monitor.confirmations_in_progress(), 0);
    assert_eq!(fleet.downs.len(), 1, "declared by its detector: {:?}", fleet.downs);
    assert_eq!(fleet.monitor.confirm_stats().expect("on").unanswered, 0, "not by the round");
}

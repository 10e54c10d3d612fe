//! Interval advice end to end in the core: a monitor advising, an agent's responder taking
//! it, replays and strangers refused.

use crate::monitor::{ADVICE_EVERY, Monitor, MonitorConfig};
use crate::responder::{Responder, ResponderConfig};
use crate::wire::{self, Kind, Outgoing};
use crate::{Instant, KeyRing};
use core::time::Duration;
use std::net::SocketAddr;

const KEY_FILE: &str = "1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
const AGENT: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9000));
const MONITOR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 7000));

fn ring() -> KeyRing {
    KeyRing::parse(KEY_FILE).unwrap()
}

fn heartbeat(node: &str, group: &str, sequence: u64, interval_ms: u32, follows_advice: bool) -> Vec<u8> {
    let message = Outgoing {
        kind: Kind::Heartbeat,
        node,
        generation: 7,
        sequence,
        interval_ms,
        labels: &[("group", group)],
        follows_advice,
    };
    let mut out = Vec::new();
    wire::encode(&message, &ring(), &mut out).unwrap();
    out
}

/// Every datagram the monitor queued: (destination, decoded kind, node, generation, sequence,
/// interval).
fn sent(monitor: &mut Monitor) -> Vec<(SocketAddr, Vec<u8>)> {
    std::iter::from_fn(|| monitor.poll_transmit()).map(|t| (t.to, t.payload)).collect()
}

fn read(payload: &[u8]) -> (Kind, String, u64, u64, u32) {
    let m = wire::decode(payload, &ring()).expect("the monitor signs what it sends");
    (m.kind, m.node.to_owned(), m.generation, m.sequence, m.interval_ms)
}

fn monitor() -> Monitor {
    let mut monitor = Monitor::new(MonitorConfig::default(), ring(), Instant::from_millis(1)).unwrap();
    monitor.set_advised_interval(Some("web"), Some(Duration::from_millis(250)));
    monitor
}

#[test]
fn a_following_agent_is_advised_and_takes_it_once() {
    let mut monitor = monitor();
    let mut agent = Responder::new("web-1", 1000, ring(), ResponderConfig::default(), Instant::ZERO);
    let now = Instant::from_millis(10);

    agent.heartbeat_sent(7, 1);
    monitor.handle_datagram(now, AGENT, &heartbeat("web-1", "web", 1, 1000, true));
    let out = sent(&mut monitor);
    assert_eq!(out.len(), 1, "the first heartbeat of a generation is advised");
    assert_eq!(out[0].0, AGENT, "advice goes back where the heartbeat came from");
    assert_eq!(read(&out[0].1), (Kind::Advice, "web-1".into(), 7, 1, 250));
    assert_eq!(monitor.stats().advice_sent, 1);

    agent.handle_datagram(now, MONITOR, &out[0].1);
    assert_eq!(agent.poll_advice(), Some(Duration::from_millis(250)));
    assert_eq!(agent.poll_advice(), None, "taken once");
    // The same advice again (a replay, or a duplicate on the path) changes nothing.
    agent.handle_datagram(now, MONITOR, &out[0].1);
    assert_eq!(agent.poll_advice(), None);
    assert_eq!(agent.stats().dropped.get("stale_advice"), Some(&1));
    assert_eq!(agent.stats().advice, 1);
}

#[test]
fn advice_is_sent_every_eighth_heartbeat_while_the_agent_disagrees() {
    let mut monitor = monitor();
    let now = Instant::from_millis(10);
    let mut advised = vec![];
    for sequence in 1..=3 * ADVICE_EVERY {
        monitor.handle_datagram(now, AGENT, &heartbeat("web-1", "web", sequence, 1000, true));
        advised.extend(sent(&mut monitor).iter().map(|(_, payload)| read(payload).3));
    }
    assert_eq!(advised, [1, 1 + ADVICE_EVERY, 1 + 2 * ADVICE_EVERY]);
}

#[test]
fn agents_that_agree_do_not_follow_or_have_no_advice_get_nothing() {
    let mut monitor = monitor();
    let now = Instant::from_millis(10);
    // Already at the advised interval.
    monitor.handle_datagram(now, AGENT, &heartbeat("web-1", "web", 1, 250, true));
    // Not following advice.
    monitor.handle_datagram(now, AGENT, &heartbeat("web-2", "web", 1, 1000, false));
    // In a group with no advice, and no fleet-wide advice.
    monitor.handle_datagram(now, AGENT, &heartbeat("db-1", "db", 1, 1000, true));
    // A replayed heartbeat is refused before any advice.
    monitor.handle_datagram(now, AGENT, &heartbeat("web-1", "web", 1, 1000, true));
    assert!(sent(&mut monitor).is_empty());
    assert_eq!(monitor.stats().rejected.get(&crate::monitor::Rejection::Replay), Some(&1));

    // Fleet-wide advice covers the groups without their own.
    monitor.set_advised_interval(None, Some(Duration::from_secs(2)));
    monitor.handle_datagram(now, AGENT, &heartbeat("db-2", "db", 1, 1000, true));
    let out = sent(&mut monitor);
    assert_eq!(out.iter().map(|(_, p)| read(p).4).collect::<Vec<_>>(), [2000]);
    // And advice is clamped to the monitor's accepted intervals.
    monitor.set_advised_interval(Some("web"), Some(Duration::from_nanos(1)));
    assert_eq!(monitor.advised_interval(Some("web")), Some(MonitorConfig::default().min_interval));
    monitor.set_advised_interval(Some("web"), None);
    assert_eq!(monitor.advised_interval(Some("web")), None);
}

#[test]
fn the_agent_refuses_advice_for_others_other_generations_and_unsent_sequences() {
    let mut agent = Responder::new("web-1", 1000, ring(), ResponderConfig::default(), Instant::ZERO);
    agent.heartbeat_sent(7, 10);
    let advice = |node: &str, generation: u64, sequence: u64| {
        let message = Outgoing {
            kind: Kind::Advice,
            node,
            generation,
            sequence,
            interval_ms: 500,
            labels: &[],
            follows_advice: false,
        };
        let mut out = Vec::new();
        wire::encode(&message, &ring(), &mut out).unwrap();
        out
    };
    for (datagram, reason) in [
        (advice("web-2", 7, 5), "misaddressed"),
        (advice("web-1", 6, 5), "stale_advice"),
        (advice("web-1", 7, 11), "stale_advice"),
    ] {
        agent.handle_datagram(Instant::ZERO, MONITOR, &datagram);
        assert_eq!(agent.poll_advice(), None, "{reason}");
    }
    assert_eq!(agent.stats().dropped.get("misaddressed"), Some(&1));
    assert_eq!(agent.stats().dropped.get("stale_advice"), Some(&2));
    // An older answer after a newer one is a replay; the newer itself is taken.
    agent.handle_datagram(Instant::ZERO, MONITOR, &advice("web-1", 7, 9));
    assert_eq!(agent.poll_advice(), Some(Duration::from_millis(500)));
    agent.handle_datagram(Instant::ZERO, MONITOR, &advice("web-1", 7, 8));
    assert_eq!(agent.poll_advice(), None);
    // A restart (new generation) starts over.
    agent.heartbeat_sent(8, 1);
    agent.handle_datagram(Instant::ZERO, MONITOR, &advice("web-1", 8, 1));
    assert_eq!(agent.poll_advice(), Some(Duration::from_millis(500)));
}

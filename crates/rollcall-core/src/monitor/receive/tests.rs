//! A batch verified on another thread must do exactly what the same datagrams do through
//! `handle_datagram`: same nodes, same events, same counters (rejections included).

use super::*;
use crate::monitor::{MonitorConfig, MonitorEvent};
use crate::wire::{Outgoing, encode};

const KEY_FILE: &str = "1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
const OTHER_KEY: &str = "2:1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100\n";

fn ring(text: &str) -> KeyRing {
    KeyRing::parse(text).expect("test key file is valid")
}

fn from(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn datagram(ring: &KeyRing, kind: Kind, node: &str, sequence: u64, labels: &[(&str, &str)]) -> Vec<u8> {
    let message =
        Outgoing { follows_advice: false, kind, node, generation: 7, sequence, interval_ms: 1000, labels };
    let mut out = Vec::new();
    encode(&message, ring, &mut out).expect("a valid message encodes");
    out
}

/// Feeds `datagrams` (each with its sender) in batches of `batch` to one monitor through
/// [`VerifiedBatch`] and one by one to another through `handle_datagram`, and checks that
/// both end in the same state.
fn check(datagrams: &[(SocketAddr, Vec<u8>)], batch: usize) {
    let start = Instant::from_millis(1_000);
    let mut direct = Monitor::new(MonitorConfig::default(), ring(KEY_FILE), start).unwrap();
    let mut verified = Monitor::new(MonitorConfig::default(), ring(KEY_FILE), start).unwrap();
    let thread_ring = ring(KEY_FILE);
    for (round, chunk) in datagrams.chunks(batch).enumerate() {
        let now = start + Duration::from_millis(100 * (round as u64 + 1));
        let mut pending = VerifiedBatch::new();
        for (sender, bytes) in chunk {
            direct.handle_datagram(now, *sender, bytes);
            let _ = pending.push(*sender, bytes, &thread_ring);
        }
        verified.handle_verified(now, &pending);
    }
    let events = |monitor: &mut Monitor| {
        std::iter::from_fn(|| monitor.poll_event()).map(|event| format!("{event:?}")).collect::<Vec<_>>()
    };
    assert_eq!(events(&mut verified), events(&mut direct));
    assert_eq!(format!("{:?}", verified.stats()), format!("{:?}", direct.stats()));
    let now = start + Duration::from_secs(60);
    let nodes = |monitor: &Monitor| monitor.nodes(now).map(|view| format!("{view:?}")).collect::<Vec<_>>();
    assert_eq!(nodes(&verified), nodes(&direct));
    assert!(!direct.stats().rejected.is_empty(), "the test sends bad datagrams too");
}

#[test]
fn a_verified_batch_does_what_the_datagrams_do() {
    let good = ring(KEY_FILE);
    let other = ring(OTHER_KEY);
    let labels = [("group", "web"), ("zone", "a")];
    let mut datagrams = Vec::new();
    for sequence in 1..=5 {
        datagrams.push((from(9000), datagram(&good, Kind::Heartbeat, "web-1", sequence, &labels)));
        datagrams.push((from(9001), datagram(&good, Kind::Heartbeat, "db-1", sequence, &[])));
    }
    // A replay, a forged heartbeat, garbage, a kind only agents take, a stray ack, a goodbye
    // from a stranger, then a real goodbye.
    datagrams.push((from(9000), datagram(&good, Kind::Heartbeat, "web-1", 3, &labels)));
    datagrams.push((from(9002), datagram(&other, Kind::Heartbeat, "intruder", 1, &[])));
    datagrams.push((from(9002), b"RC not a datagram".to_vec()));
    datagrams.push((from(9002), datagram(&good, Kind::Probe, "web-1", 9, &[])));
    datagrams.push((from(9002), datagram(&good, Kind::Ack, "web-1", 9, &[])));
    datagrams.push((from(9003), datagram(&good, Kind::Goodbye, "nobody", 1, &[])));
    datagrams.push((from(9001), datagram(&good, Kind::Goodbye, "db-1", 6, &[])));
    for batch in [1, 3, 64] {
        check(&datagrams, batch);
    }
}

#[test]
fn refusals_carried_over_from_a_dropped_batch_are_counted_once() {
    let mut dropped = VerifiedBatch::new();
    let good = ring(KEY_FILE);
    assert!(dropped.push(from(1), b"short", &good).is_err());
    assert!(dropped.push(from(1), &datagram(&good, Kind::Heartbeat, "web-1", 1, &[]), &good).is_ok());
    assert_eq!((dropped.len(), dropped.rejected()), (1, 1));
    let mut next = VerifiedBatch::new();
    next.add_rejections(dropped.take_rejections());
    assert_eq!(dropped.rejected(), 0, "taken, not copied");
    let mut monitor = Monitor::new(MonitorConfig::default(), good, Instant::from_millis(1)).unwrap();
    monitor.handle_verified(Instant::from_millis(2), &next);
    let truncated = Rejection::Decode(wire::DecodeError::Truncated);
    assert_eq!(monitor.stats().rejected.get(&truncated), Some(&1));
    assert!(monitor.poll_event().is_none_or(|event| !matches!(event, MonitorEvent::Transition { .. })));
    assert_eq!(monitor.len(), 0, "the dropped batch's heartbeat never reached the monitor");
}

//! The responder alone: what it answers, what it relays, what it drops.

use super::*;
use crate::wire::encode as encode_wire;

const KEY_FILE: &str = "1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
const OTHER_KEY: &str = "1:ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";

fn ring() -> KeyRing {
    KeyRing::parse(KEY_FILE).unwrap()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn datagram(kind: Kind, node: &str, epoch: u64, nonce: u64, labels: &[(&str, &str)], key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let message = Outgoing {
        follows_advice: false,
        kind,
        node,
        generation: epoch,
        sequence: nonce,
        interval_ms: 1000,
        labels,
    };
    encode_wire(&message, &KeyRing::parse(key).unwrap(), &mut out).unwrap();
    out
}

fn responder() -> Responder {
    Responder::new("web-1", 1000, ring(), ResponderConfig::default(), Instant::ZERO)
}

/// What the responder sent: destination, kind, node, epoch, nonce, `via` label.
type Sent = (SocketAddr, Kind, String, u64, u64, Option<String>);

fn sent(responder: &mut Responder) -> Vec<Sent> {
    let mut out = vec![];
    while let Some(transmit) = responder.poll_transmit() {
        let message = wire::decode(&transmit.payload, &ring()).expect("the responder signs what it sends");
        out.push((
            transmit.to,
            message.kind,
            message.node.to_owned(),
            message.generation,
            message.sequence,
            message.labels.get("via").map(str::to_owned),
        ));
    }
    out
}

#[test]
fn a_probe_is_answered_to_its_sender_with_its_epoch_and_nonce() {
    let mut r = responder();
    r.handle_datagram(Instant::ZERO, addr(7000), &datagram(Kind::Probe, "web-1", 42, 5, &[], KEY_FILE));
    assert_eq!(sent(&mut r), [(addr(7000), Kind::Ack, "web-1".into(), 42, 5, None)]);
    assert_eq!(r.stats().acks, 1);
}

#[test]
fn retries_are_answered_but_older_nonces_and_strangers_are_not() {
    let mut r = responder();
    let now = Instant::ZERO;
    r.handle_datagram(now, addr(7000), &datagram(Kind::Probe, "web-1", 42, 5, &[], KEY_FILE));
    // The same nonce again: the round's retry (the first ack may be lost).
    r.handle_datagram(now, addr(7000), &datagram(Kind::Probe, "web-1", 42, 5, &[], KEY_FILE));
    assert_eq!(sent(&mut r).len(), 2);
    // An older nonce of the same epoch: a replay.
    r.handle_datagram(now, addr(7000), &datagram(Kind::Probe, "web-1", 42, 4, &[], KEY_FILE));
    // Addressed to another node, forged with another key, garbage, a heartbeat.
    r.handle_datagram(now, addr(7000), &datagram(Kind::Probe, "web-2", 42, 6, &[], KEY_FILE));
    r.handle_datagram(now, addr(7000), &datagram(Kind::Probe, "web-1", 42, 7, &[], OTHER_KEY));
    r.handle_datagram(now, addr(7000), b"RC\x01garbage");
    r.handle_datagram(now, addr(7000), &datagram(Kind::Heartbeat, "web-1", 42, 8, &[], KEY_FILE));
    assert!(sent(&mut r).is_empty());
    let dropped = &r.stats().dropped;
    for reason in ["replay", "misaddressed", "bad_tag", "truncated", "unexpected_kind"] {
        assert_eq!(dropped.get(reason), Some(&1), "{reason}: {dropped:?}");
    }
    // Another epoch (another monitor, or the same one restarted) starts its own count.
    r.handle_datagram(now, addr(7001), &datagram(Kind::Probe, "web-1", 43, 1, &[], KEY_FILE));
    assert_eq!(sent(&mut r).len(), 1);
}

#[test]
fn a_flood_of_probes_is_answered_at_the_bounded_rate() {
    let mut r = responder();
    let config = ResponderConfig::default();
    let probe = datagram(Kind::Probe, "web-1", 42, 5, &[], KEY_FILE);
    for _ in 0..1000 {
        r.handle_datagram(Instant::ZERO, addr(7000), &probe);
    }
    assert_eq!(sent(&mut r).len(), config.burst as usize);
    assert_eq!(r.stats().dropped.get("rate_limited"), Some(&(1000 - u64::from(config.burst))));
    // One second later, the bucket has refilled by the rate (capped at the burst).
    let later = Instant::ZERO + Duration::from_secs(1);
    for _ in 0..1000 {
        r.handle_datagram(later, addr(7000), &probe);
    }
    assert_eq!(sent(&mut r).len(), config.burst.min(config.max_sends_per_sec) as usize);
}

#[test]
fn a_probe_request_is_served_and_the_answer_relayed_once() {
    let mut r = responder();
    let now = Instant::ZERO;
    let target = addr(8002).to_string();
    let request = datagram(Kind::ProbeRequest, "web-2", 42, 9, &[("addr", &target)], KEY_FILE);
    r.handle_datagram(now, addr(7000), &request);
    assert_eq!(sent(&mut r), [(addr(8002), Kind::Probe, "web-2".into(), 42, 9, None)]);
    // web-2 answers: the answer goes back to the monitor as an indirect ack, via web-1.
    let answer = datagram(Kind::Ack, "web-2", 42, 9, &[], KEY_FILE);
    r.handle_datagram(now, addr(8002), &answer);
    assert_eq!(sent(&mut r), [(addr(7000), Kind::IndirectAck, "web-2".into(), 42, 9, Some("web-1".into()))]);
    // The same answer again is stale: one request, one relay.
    r.handle_datagram(now, addr(8002), &answer);
    assert!(sent(&mut r).is_empty());
    assert_eq!(r.stats().dropped.get("stale_ack"), Some(&1));
}

#[test]
fn probe_requests_expire_and_bad_ones_are_dropped() {
    let mut r = responder();
    let target = addr(8002).to_string();
    let request = datagram(Kind::ProbeRequest, "web-2", 42, 9, &[("addr", &target)], KEY_FILE);
    r.handle_datagram(Instant::ZERO, addr(7000), &request);
    sent(&mut r);
    // The answer comes after the relay timeout: nobody waits for it any more.
    let late = Instant::ZERO + ResponderConfig::default().relay_timeout;
    r.handle_datagram(late, addr(8002), &datagram(Kind::Ack, "web-2", 42, 9, &[], KEY_FILE));
    assert!(sent(&mut r).is_empty());
    // No address, an unparseable one, or a request to probe ourselves.
    let no_addr = datagram(Kind::ProbeRequest, "web-2", 42, 10, &[], KEY_FILE);
    let bad_addr = datagram(Kind::ProbeRequest, "web-2", 42, 11, &[("addr", "nowhere")], KEY_FILE);
    let ourselves = datagram(Kind::ProbeRequest, "web-1", 42, 12, &[("addr", &target)], KEY_FILE);
    for request in [no_addr, bad_addr, ourselves] {
        r.handle_datagram(late, addr(7000), &request);
    }
    assert!(sent(&mut r).is_empty());
    assert_eq!(r.stats().dropped.get("malformed_request"), Some(&2));
    assert_eq!(r.stats().dropped.get("misaddressed"), Some(&1));
}

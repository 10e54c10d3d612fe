//! The peer codec: round trips of every message kind, the size bound, and hostile input
//! (garbage, truncation, corruption) that must be rejected without a panic.

use super::keys;
use crate::swim::wire::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const CLUSTER: u64 = 0x1234_5678_9abc_def0;

fn encode(
    body: &Body<'_>,
    page: &[Update<'_>],
    updates: &[Update<'_>],
    limit: usize,
) -> (Vec<u8>, usize, usize) {
    let mut out = Vec::new();
    let mut writer = Writer::new(&mut out, limit, CLUSTER, 1, "sender", 42, body);
    let mut in_page = 0;
    if matches!(body, Body::Sync { .. }) {
        writer.begin_entries();
        in_page = page.iter().take_while(|u| writer.push(u)).count();
    }
    writer.begin_updates();
    let pushed = updates.iter().take_while(|u| writer.push(u)).count();
    writer.finish(&keys(1, 7));
    (out, in_page, pushed)
}

fn update_strategy() -> impl Strategy<Value = (u8, u32, String, bool, u16, String)> {
    (1u8..=4, any::<u32>(), "[a-z0-9.-]{1,64}", any::<bool>(), any::<u16>(), "[a-z0-9]{0,64}")
}

fn make(raw: &(u8, u32, String, bool, u16, String)) -> Update<'_> {
    let (state, incarnation, name, v6, port, accuser) = raw;
    let state = [MemberState::Up, MemberState::Suspect, MemberState::Down, MemberState::Left]
        [usize::from(*state - 1)];
    let ip = if *v6 {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, *port))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))
    };
    let accuser = matches!(state, MemberState::Suspect | MemberState::Down).then_some(accuser.as_str());
    Update { state, incarnation: *incarnation, name, addr: SocketAddr::new(ip, *port), accuser }
}

proptest! {
    #[test]
    fn every_kind_round_trips_within_the_size_bound(
        kind in 0usize..6,
        seq in any::<u32>(),
        raw in proptest::collection::vec(update_strategy(), 0..80),
        limit in 512usize..=MAX_DATAGRAM,
    ) {
        let updates: Vec<Update<'_>> = raw.iter().map(make).collect();
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9);
        let body = match kind {
            0 => Body::Ping { seq, target: "target" },
            1 => Body::Ack { seq },
            2 => Body::Nack { seq },
            3 => Body::PingReq { seq, target: "t", addr },
            4 => Body::Sync { reply: seq % 2 == 0, entries: Entries::EMPTY },
            _ => Body::Gossip,
        };
        let (bytes, in_page, pushed) = encode(&body, &updates, &updates, limit);
        prop_assert!(bytes.len() <= limit);
        let got = decode(&bytes, CLUSTER, &keys(1, 7)).unwrap();
        prop_assert_eq!((got.sender, got.incarnation, got.key_id), ("sender", 42, 1));
        let got_updates: Vec<Update<'_>> = got.updates.iter().collect();
        prop_assert_eq!(&got_updates[..], &updates[..pushed]);
        match (got.body, body) {
            (Body::Sync { reply, entries }, Body::Sync { reply: want, .. }) => {
                prop_assert_eq!(reply, want);
                let page: Vec<Update<'_>> = entries.iter().collect();
                prop_assert_eq!(&page[..], &updates[..in_page]);
            }
            (got, want) => prop_assert_eq!(got, want),
        }
    }

    #[test]
    fn garbage_is_rejected_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
        prop_assert!(decode(&bytes, CLUSTER, &keys(1, 7)).is_err());
    }

    #[test]
    fn garbage_after_a_valid_header_is_rejected(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (mut bytes, _, _) = encode(&Body::Gossip, &[], &[], MAX_DATAGRAM);
        bytes.truncate(18);
        bytes.extend_from_slice(&tail);
        prop_assert!(decode(&bytes, CLUSTER, &keys(1, 7)).is_err());
    }
}

fn sample() -> Vec<u8> {
    let update = Update {
        state: MemberState::Suspect,
        incarnation: 3,
        name: "peer-7",
        addr: "10.0.0.7:7946".parse().unwrap(),
        accuser: Some("peer-2"),
    };
    encode(&Body::Ping { seq: 9, target: "peer-7" }, &[], &[update], MAX_DATAGRAM).0
}

#[test]
fn every_truncation_and_every_flipped_byte_is_rejected() {
    let bytes = sample();
    assert!(decode(&bytes, CLUSTER, &keys(1, 7)).is_ok());
    for len in 0..bytes.len() {
        assert!(decode(&bytes[..len], CLUSTER, &keys(1, 7)).is_err(), "truncated to {len}");
    }
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        assert!(decode(&bad, CLUSTER, &keys(1, 7)).is_err(), "byte {at} flipped");
    }
}

#[test]
fn header_checks_come_in_the_documented_order() {
    let ring = keys(1, 7);
    let bytes = sample();
    let check = |bytes: &[u8], reason| assert_eq!(decode(bytes, CLUSTER, &ring).unwrap_err(), reason);
    check(&vec![0; MAX_DATAGRAM + 1], Rejection::Oversized);
    check(&bytes[..MIN_LEN - 1], Rejection::Truncated);
    let mut bad = bytes.clone();
    bad[0] = b'X';
    check(&bad, Rejection::Malformed);
    let mut bad = bytes.clone();
    bad[2] = 2;
    check(&bad, Rejection::UnsupportedVersion);
    assert_eq!(decode(&bytes, CLUSTER ^ 1, &ring).unwrap_err(), Rejection::WrongCluster);
    assert_eq!(decode(&bytes, CLUSTER, &keys(2, 7)).unwrap_err(), Rejection::UnknownKey);
    assert_eq!(decode(&bytes, CLUSTER, &keys(1, 8)).unwrap_err(), Rejection::BadTag);
}

#[test]
fn cluster_ids_are_fnv1a() {
    // FNV-1a 64 of the empty string is its offset basis; of "a", the published test vector.
    assert_eq!(cluster_id(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(cluster_id("a"), 0xaf63_dc4c_8601_ec8c);
}

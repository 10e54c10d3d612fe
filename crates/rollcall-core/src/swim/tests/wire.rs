//! The peer codec: round trips of every message kind, the size bound, and hostile input
//! (garbage, truncation, corruption) that must be rejected without a panic.

use super::keys;
use crate::keyring::KeyRing;
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
    // Only `up` statements carry an address on the wire, and not all of them.
    let addr = (state == MemberState::Up && *port % 4 != 0).then(|| SocketAddr::new(ip, *port));
    Update { state, incarnation: *incarnation, name, addr, accuser }
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
            4 => Body::Sync {
                reply: seq % 2 == 0,
                digest: (seq % 3 == 0).then_some(u64::from(seq) << 20),
                entries: Entries::EMPTY,
            },
            _ => Body::Gossip,
        };
        let (bytes, in_page, pushed) = encode(&body, &updates, &updates, limit);
        prop_assert!(bytes.len() <= limit);
        let got = decode(&bytes, CLUSTER, &keys(1, 7)).unwrap();
        prop_assert_eq!((got.sender, got.incarnation, got.key_id), ("sender", 42, 1));
        let got_updates: Vec<Update<'_>> = got.updates.iter().collect();
        prop_assert_eq!(&got_updates[..], &updates[..pushed]);
        match (got.body, body) {
            (Body::Sync { reply, digest, entries }, Body::Sync { reply: want, digest: want_digest, .. }) => {
                prop_assert_eq!((reply, digest), (want, want_digest));
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
        bytes.truncate(8);
        bytes.extend_from_slice(&tail);
        prop_assert!(decode(&bytes, CLUSTER, &keys(1, 7)).is_err());
    }
}

fn sample() -> Vec<u8> {
    let update = Update {
        state: MemberState::Suspect,
        incarnation: 3,
        name: "peer-7",
        addr: None,
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
    bad[2] = 1;
    check(&bad, Rejection::UnsupportedVersion);
    assert_eq!(decode(&bytes, CLUSTER ^ (1 << 63), &ring).unwrap_err(), Rejection::WrongCluster);
    // Another cluster whose id shares the two bytes on the wire: the tag, which covers all
    // eight, tells it apart.
    assert_eq!(decode(&bytes, CLUSTER ^ 1, &ring).unwrap_err(), Rejection::BadTag);
    assert_eq!(decode(&bytes, CLUSTER, &keys(2, 7)).unwrap_err(), Rejection::UnknownKey);
    assert_eq!(decode(&bytes, CLUSTER, &keys(1, 8)).unwrap_err(), Rejection::BadTag);
}

#[test]
fn cluster_ids_are_fnv1a() {
    // FNV-1a 64 of the empty string is its offset basis; of "a", the published test vector.
    assert_eq!(cluster_id(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(cluster_id("a"), 0xaf63_dc4c_8601_ec8c);
}

/// Re-signs `bytes` (all but its last `TAG_LEN` bytes) as the test ring would.
fn resign(mut bytes: Vec<u8>) -> Vec<u8> {
    let body = bytes.len() - TAG_LEN;
    let tag = keys(1, 7).sign_with(&CLUSTER.to_be_bytes(), &bytes[..body]);
    bytes[body..].copy_from_slice(&tag[..TAG_LEN]);
    bytes
}

#[test]
fn only_the_shortest_encoding_is_accepted() {
    let ring = keys(1, 7);
    let bytes = sample();
    assert_eq!(resign(bytes.clone()), bytes, "resign signs as the writer does");
    // The incarnation (42, one byte at offset 5) written in two bytes instead.
    assert_eq!(bytes[5], 42);
    let mut long = bytes.clone();
    long.splice(5..6, [42 | 0x80, 0]);
    assert_eq!(decode(&resign(long), CLUSTER, &ring).unwrap_err(), Rejection::Malformed);
    // An accuser written out although it is the sender: the flag bit is the one encoding.
    let update =
        Update { state: MemberState::Down, incarnation: 1, name: "x", addr: None, accuser: Some("sender") };
    let (bytes, _, pushed) = encode(&Body::Gossip, &[], &[update], MAX_DATAGRAM);
    assert_eq!(pushed, 1);
    let entry = bytes.len() - TAG_LEN - 4;
    assert_eq!(&bytes[entry..entry + 4], &[3 | 0x10, 1, 1, b'x']);
    let mut spelled = bytes[..entry].to_vec();
    spelled.extend_from_slice(&[3, 1, 1, b'x', 6]);
    spelled.extend_from_slice(b"sender");
    spelled.extend_from_slice(&[0; TAG_LEN]);
    assert_eq!(decode(&resign(spelled), CLUSTER, &ring).unwrap_err(), Rejection::Malformed);
    // An update count of zero: no updates are written as no count at all.
    let (bytes, _, _) = encode(&Body::Ack { seq: 1 }, &[], &[], MAX_DATAGRAM);
    assert!(decode(&bytes, CLUSTER, &ring).unwrap().updates.is_empty());
    let mut zero = bytes[..bytes.len() - TAG_LEN].to_vec();
    zero.push(0);
    zero.extend_from_slice(&[0; TAG_LEN]);
    assert_eq!(decode(&resign(zero), CLUSTER, &ring).unwrap_err(), Rejection::Malformed);
}

/// The worked example of docs/PEER.md ("Wire format"): keep the two in step.
#[test]
fn the_documented_ping_is_byte_for_byte() {
    let ring =
        KeyRing::parse("1:73696d756c61746f722d6b65792d6e6f742d666f722d70726f64756374696f6e\n").unwrap();
    let cluster = cluster_id("rollcall");
    let update = Update {
        state: MemberState::Suspect,
        incarnation: 7,
        name: "db-3",
        addr: None,
        accuser: Some("web-1"),
    };
    let mut out = Vec::new();
    let mut writer = Writer::new(
        &mut out,
        MAX_DATAGRAM,
        cluster,
        1,
        "web-1",
        300,
        &Body::Ping { seq: 130, target: "db-3" },
    );
    writer.begin_updates();
    assert!(writer.push(&update));
    writer.finish(&ring);
    let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(out.len(), 44);
    assert_eq!(
        hex,
        concat!(
            "5253",
            "21",
            "52",
            "01",
            "ac02",
            "05",
            "7765622d31",
            "8201",
            "04",
            "64622d33",
            "01",
            "12",
            "07",
            "04",
            "64622d33",
            "1649dd7e8a3e5bf3b0096aab7059bdf6",
        )
    );
    let got = decode(&out, cluster, &ring).unwrap();
    assert_eq!(got.updates.iter().next(), Some(update));
}

//! Decodes arbitrary bytes as a peer datagram (`rollcall_core::swim::wire`) with a fixed key
//! ring and cluster: it must never panic, and whatever it accepts must re-encode to exactly
//! the same bytes (the encoding is canonical: shortest varints, one way to name the accuser,
//! no empty update count).
//!
//! Run from `fuzz/`: `cargo fuzz run peer -s none -- -max_total_time=60`.
//!
//! A fuzzer essentially never forges a tag, so each input is also decoded a second time with
//! its header and tag repaired: that is how the parser behind the tag gets fuzzed.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rollcall_core::swim::wire::{self, Body, MAGIC, MAX_DATAGRAM, TAG_LEN, VERSION, Writer};
use rollcall_core::{Key, KeyRing};

const CLUSTER: u64 = 0x5253_0002_dead_beef;

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let secret: [u8; 32] = core::array::from_fn(|i| i as u8);
        KeyRing::new(&[Key::new(1, secret)]).expect("one key is a valid ring")
    })
}

fn check(datagram: &[u8]) {
    let Ok(got) = wire::decode(datagram, CLUSTER, ring()) else {
        return;
    };
    let mut again = Vec::new();
    let mut writer =
        Writer::new(&mut again, MAX_DATAGRAM, CLUSTER, got.key_id, got.sender, got.incarnation, &got.body);
    if let Body::Sync { entries, .. } = got.body {
        writer.begin_entries();
        for entry in entries.iter() {
            assert!(writer.push(&entry), "a decoded page entry fits again");
        }
    }
    writer.begin_updates();
    for update in got.updates.iter() {
        assert!(writer.push(&update), "a decoded update fits again");
    }
    writer.finish(ring());
    assert_eq!(again, datagram, "decode accepted a non-canonical datagram");
}

/// Forces magic, version, cluster byte, key id 1 and a valid tag onto `data`, keeping every
/// other byte (the kind included), so that the fuzzer reaches the parser behind the tag.
fn repair(data: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = data.get(..data.len().min(MAX_DATAGRAM))?.to_vec();
    if bytes.len() < wire::MIN_LEN {
        return None;
    }
    bytes[0..2].copy_from_slice(&MAGIC);
    bytes[2] = (VERSION << 4) | (bytes[2] & 0x0f);
    bytes[3] = CLUSTER.to_be_bytes()[0];
    bytes[4] = 1;
    let body = bytes.len() - TAG_LEN;
    let tag = ring().sign_with(&CLUSTER.to_be_bytes(), &bytes[..body]);
    bytes[body..].copy_from_slice(&tag[..TAG_LEN]);
    Some(bytes)
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(repaired) = repair(data) {
        check(&repaired);
    }
});

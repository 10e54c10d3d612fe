//! Decodes arbitrary bytes with a fixed key ring: it must never panic, and whatever it accepts
//! must re-encode to exactly the same bytes (the encoding is canonical). An accepted exit
//! report's status is read too, as the monitor reads it.
//!
//! Run from `fuzz/`: `cargo fuzz run decode -s none -- -max_total_time=60`.
//!
//! A fuzzer essentially never forges an HMAC tag, so each input is also decoded a second time
//! with its key id and tag repaired: that is how the node id and label parser behind the MAC
//! gets fuzzed.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rollcall_core::wire::{
    self, ExitStatus, HEADER_LEN, Kind, MAGIC, MAX_METADATA, MAX_NODE_ID, Outgoing, TAG_LEN, VERSION,
};
use rollcall_core::{Key, KeyRing};

const KEY_ID: u16 = 1;

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let secret: [u8; 32] = core::array::from_fn(|i| i as u8);
        KeyRing::new(&[Key::new(KEY_ID, secret)]).expect("one key is a valid ring")
    })
}

fn check(datagram: &[u8]) {
    let Ok(msg) = wire::decode(datagram, ring()) else {
        return;
    };
    if msg.kind == Kind::Exit {
        // Hostile detail behind a valid tag: unreadable values are dropped, never a panic.
        let _ = ExitStatus::from_labels(&msg.labels);
    }
    let labels: Vec<(&str, &str)> = msg.labels.iter().collect();
    let outgoing = Outgoing {
        kind: msg.kind,
        node: msg.node,
        generation: msg.generation,
        sequence: msg.sequence,
        interval_ms: msg.interval_ms,
        labels: &labels,
        follows_advice: msg.follows_advice,
    };
    let mut again = Vec::new();
    wire::encode(&outgoing, ring(), &mut again).expect("a decoded message re-encodes");
    assert_eq!(again, datagram, "decode accepted a non-canonical datagram");
}

/// Forces magic, version, key id, consistent lengths and a valid tag onto `data`, keeping
/// every other byte, so that the fuzzer reaches the parser behind the MAC without a seed
/// corpus. Kind, flags and interval stay the fuzzer's to find.
fn repair(data: &[u8]) -> Option<Vec<u8>> {
    let longest = wire::encoded_len(MAX_NODE_ID, MAX_METADATA);
    let mut bytes = data.get(..data.len().min(longest))?.to_vec();
    let room = bytes.len().checked_sub(HEADER_LEN + TAG_LEN)?;
    let node_len = (1 + usize::from(bytes[6]) % MAX_NODE_ID).min(room);
    let metadata_len = (room - node_len).min(MAX_METADATA);
    if node_len == 0 {
        return None;
    }
    bytes.truncate(wire::encoded_len(node_len, metadata_len));
    bytes[0..2].copy_from_slice(&MAGIC);
    bytes[2] = VERSION;
    bytes[4..6].copy_from_slice(&KEY_ID.to_be_bytes());
    bytes[6] = node_len as u8;
    bytes[28..30].copy_from_slice(&(metadata_len as u16).to_be_bytes());
    let body = bytes.len() - TAG_LEN;
    let tag = ring().sign(&bytes[..body]);
    bytes[body..].copy_from_slice(&tag);
    Some(bytes)
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(repaired) = repair(data) {
        check(&repaired);
    }
});

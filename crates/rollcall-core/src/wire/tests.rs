use proptest::prelude::*;

use super::*;
use crate::keyring::{Key, KeyRing};

/// Secret bytes `start, start+1, ..., start+31`.
fn secret(start: u8) -> [u8; 32] {
    core::array::from_fn(|i| start.wrapping_add(i as u8))
}

/// The ring of the worked example: key id 1, secret 0x00..=0x1f.
fn ring() -> KeyRing {
    KeyRing::new(&[Key::new(1, secret(0))]).unwrap()
}

/// The worked example of `docs/PROTOCOL.md`.
const EXAMPLE: Outgoing<'static> = Outgoing {
    follows_advice: false,
    kind: Kind::Heartbeat,
    node: "web-1",
    generation: 1,
    sequence: 1,
    interval_ms: 1000,
    labels: &[("group", "web")],
};

/// Frozen: the same hex is in `docs/PROTOCOL.md` and was checked with Python's `hmac`.
const EXAMPLE_HEX: &str = "524301010001050000000000000000010000000000000001000003e8000a\
                           7765622d31\
                           0567726f757003776562\
                           e778de21ea7c70519ae6e58287df04a3c7a5909afc59b8b06e151a75611cebd6";

fn enc(msg: &Outgoing<'_>) -> Result<Vec<u8>, EncodeError> {
    let mut out = vec![0xaa; 7]; // encode must clear what was there
    encode(msg, &ring(), &mut out).map(|()| out)
}

fn example_bytes() -> Vec<u8> {
    enc(&EXAMPLE).unwrap()
}

/// Decodes `bytes` with [`ring`] and compares with `expected`: the fields of an outgoing
/// message (signed with key 1), or a rejection reason.
#[track_caller]
fn check(bytes: &[u8], expected: Result<&Outgoing<'_>, DecodeError>) {
    let got = decode(bytes, &ring());
    match (got, expected) {
        (Ok(msg), Ok(want)) => {
            let labels: Vec<(&str, &str)> = msg.labels.iter().collect();
            assert_eq!(
                (msg.kind, msg.key_id, msg.node, msg.generation, msg.sequence),
                (want.kind, 1, want.node, want.generation, want.sequence)
            );
            assert_eq!(msg.interval_ms, want.interval_ms);
            assert_eq!(labels, want.labels);
            assert_eq!(msg.follows_advice, want.follows_advice);
        }
        (got, want) => assert_eq!(got.map(|_| ()), want.map(|_| ())),
    }
}

/// Encodes `msg`, checks the size formula, and decodes it back.
#[track_caller]
fn round_trip(msg: &Outgoing<'_>) {
    let bytes = enc(msg).unwrap();
    let mut labels = Vec::new();
    let metadata_len = encode_labels(msg.labels, &mut labels).unwrap();
    assert_eq!(bytes.len(), encoded_len(msg.node.len(), metadata_len));
    assert!(bytes.len() <= MAX_DATAGRAM);
    check(&bytes, Ok(msg));
}

/// A datagram laid out field by field without validation, then signed with key 1, so a test
/// can reach any check with a valid tag.
#[derive(Clone)]
struct Raw {
    magic: [u8; 2],
    version: u8,
    kind: u8,
    key_id: u16,
    node_len: Option<u8>,
    flags: u8,
    generation: u64,
    sequence: u64,
    interval_ms: u32,
    metadata_len: Option<u16>,
    node: Vec<u8>,
    metadata: Vec<u8>,
}

impl Raw {
    fn example() -> Raw {
        let mut metadata = Vec::new();
        encode_labels(EXAMPLE.labels, &mut metadata).unwrap();
        Raw {
            magic: MAGIC,
            version: VERSION,
            kind: 1,
            key_id: 1,
            node_len: None,
            flags: 0,
            generation: 1,
            sequence: 1,
            interval_ms: 1000,
            metadata_len: None,
            node: b"web-1".to_vec(),
            metadata,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&[self.version, self.kind]);
        out.extend_from_slice(&self.key_id.to_be_bytes());
        out.push(self.node_len.unwrap_or(self.node.len() as u8));
        out.push(self.flags);
        out.extend_from_slice(&self.generation.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.interval_ms.to_be_bytes());
        let metadata_len = self.metadata_len.unwrap_or(self.metadata.len() as u16);
        out.extend_from_slice(&metadata_len.to_be_bytes());
        out.extend_from_slice(&self.node);
        out.extend_from_slice(&self.metadata);
        let tag = ring().sign(&out);
        out.extend_from_slice(&tag);
        out
    }
}

fn label(key_len: usize, value_len: usize) -> (String, String) {
    ("k".repeat(key_len), "v".repeat(value_len))
}

fn pairs(owned: &[(String, String)]) -> Vec<(&str, &str)> {
    owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

// ---- The worked example ----

#[test]
fn worked_example_has_the_documented_bytes() {
    let bytes = example_bytes();
    assert_eq!(bytes.len(), 77);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, EXAMPLE_HEX);
    check(&bytes, Ok(&EXAMPLE));
    assert_eq!(Raw::example().bytes(), bytes, "the test layout agrees with encode");
}

#[test]
fn worked_example_is_in_the_protocol_document() {
    let doc = include_str!("../../../../docs/PROTOCOL.md");
    assert!(doc.contains(EXAMPLE_HEX), "update docs/PROTOCOL.md, Worked example");
    let tag = &EXAMPLE_HEX[EXAMPLE_HEX.len() - 2 * TAG_LEN..];
    assert!(doc.contains(&format!("# {tag}")), "the Python check shows the tag");
}

#[test]
fn goodbye_round_trips() {
    round_trip(&Outgoing { follows_advice: false, kind: Kind::Goodbye, ..EXAMPLE });
}

#[test]
fn exit_report_round_trips_with_its_status() {
    let report = Outgoing { kind: Kind::Exit, labels: &[("signal", "9")], ..EXAMPLE };
    round_trip(&report);
    let bytes = enc(&report).unwrap();
    let msg = decode(&bytes, &ring()).unwrap();
    assert_eq!(ExitStatus::from_labels(&msg.labels), ExitStatus { code: None, signal: Some(9) });
    // Detail that does not parse is lost, not fatal: the report itself stands.
    for (labels, status) in [
        (&[("code", "3")][..], ExitStatus { code: Some(3), signal: None }),
        (&[("code", "-1"), ("signal", "x")][..], ExitStatus { code: Some(-1), signal: None }),
        (&[("code", "99999999999")][..], ExitStatus::default()),
        (&[][..], ExitStatus::default()),
    ] {
        let bytes = enc(&Outgoing { kind: Kind::Exit, labels, ..EXAMPLE }).unwrap();
        let msg = decode(&bytes, &ring()).unwrap();
        assert_eq!(ExitStatus::from_labels(&msg.labels), status, "{labels:?}");
    }
}

// ---- Field boundaries ----

#[test]
fn node_id_length_boundaries() {
    let at = |len: usize| "n".repeat(len);
    for len in [1, MAX_NODE_ID] {
        round_trip(&Outgoing { follows_advice: false, node: &at(len), ..EXAMPLE });
    }
    let too_long = at(MAX_NODE_ID + 1);
    for (node, error) in [("", EncodeError::NodeEmpty), (too_long.as_str(), EncodeError::NodeTooLong)] {
        assert_eq!(enc(&Outgoing { follows_advice: false, node, ..EXAMPLE }), Err(error));
    }
    // The same limits when a signed datagram declares them.
    for len in [0, MAX_NODE_ID + 1] {
        let raw = Raw { node: at(len).into_bytes(), ..Raw::example() };
        check(&raw.bytes(), Err(DecodeError::Malformed));
    }
}

#[test]
fn node_id_limit_counts_bytes_not_chars() {
    let fits = "é".repeat(32); // 64 bytes
    round_trip(&Outgoing { follows_advice: false, node: &fits, ..EXAMPLE });
    let over = format!("{fits}a");
    assert_eq!(
        enc(&Outgoing { follows_advice: false, node: &over, ..EXAMPLE }),
        Err(EncodeError::NodeTooLong)
    );
}

#[test]
fn node_id_refuses_whitespace_and_control_characters() {
    for node in ["a b", "\tab", "ab\n", "a\u{0}", "a\u{7f}", "a\u{85}", "a\u{3000}"] {
        assert_eq!(
            enc(&Outgoing { follows_advice: false, node, ..EXAMPLE }),
            Err(EncodeError::NodeInvalidChar),
            "{node:?}"
        );
        let raw = Raw { node: node.as_bytes().to_vec(), ..Raw::example() };
        check(&raw.bytes(), Err(DecodeError::Malformed));
    }
}

/// The byte loop `check_node` runs on ASCII ids says what the character check says, for
/// every ASCII byte and for ids mixing ASCII with other characters.
#[test]
fn the_ascii_id_check_agrees_with_the_character_check() {
    let by_chars = |node: &str| !node.chars().any(|c| c.is_control() || c.is_whitespace());
    for byte in 0u8..=0x7f {
        let node = format!("a{}b", byte as char);
        assert_eq!(node_chars_allowed(&node), by_chars(&node), "byte {byte:#04x}");
    }
    for node in ["node-1", "a\u{a0}b", "é", "a\u{2028}", "日本", "x\u{200b}y"] {
        assert_eq!(node_chars_allowed(node), by_chars(node), "{node:?}");
    }
}

proptest! {
    #[test]
    fn prop_ascii_id_check_agrees(node in ".{0,12}|[\\x00-\\x7f]{0,16}") {
        let by_chars = !node.chars().any(|c| c.is_control() || c.is_whitespace());
        prop_assert_eq!(node_chars_allowed(&node), by_chars);
    }
}

#[test]
fn metadata_length_boundaries() {
    round_trip(&Outgoing { follows_advice: false, labels: &[], ..EXAMPLE });
    // 2+63+255 + 2+63+127 = 512 bytes.
    let full = [label(63, 255), label(63, 127)];
    let labels = pairs(&full);
    round_trip(&Outgoing { follows_advice: false, labels: &labels, ..EXAMPLE });
    let over = [label(63, 255), label(63, 128)];
    let labels = pairs(&over);
    assert_eq!(
        enc(&Outgoing { follows_advice: false, labels: &labels, ..EXAMPLE }),
        Err(EncodeError::MetadataTooLong)
    );
    // A signed datagram declaring 513 bytes of metadata.
    let mut metadata = Vec::new();
    encode_labels(&pairs(&full), &mut metadata).unwrap();
    metadata.extend_from_slice(&[1, b'k']); // the 513th byte would be a value length
    metadata.truncate(MAX_METADATA + 1);
    let raw = Raw { metadata, ..Raw::example() };
    check(&raw.bytes(), Err(DecodeError::Malformed));
}

#[test]
fn label_key_length_boundaries() {
    for (key_len, expected) in [
        (0, Err(LabelError::KeyEmpty)),
        (1, Ok(())),
        (MAX_LABEL_KEY, Ok(())),
        (MAX_LABEL_KEY + 1, Err(LabelError::KeyTooLong)),
    ] {
        let owned = [label(key_len, 3)];
        let labels = pairs(&owned);
        let msg = Outgoing { follows_advice: false, labels: &labels, ..EXAMPLE };
        match expected {
            Ok(()) => round_trip(&msg),
            Err(reason) => {
                assert_eq!(enc(&msg), Err(EncodeError::Label { index: 0, reason }));
                // Laid out by hand and signed, the decoder refuses it too.
                let mut metadata = vec![key_len as u8];
                metadata.extend_from_slice(owned[0].0.as_bytes());
                metadata.extend_from_slice(&[3, b'v', b'v', b'v']);
                let raw = Raw { metadata, ..Raw::example() };
                check(&raw.bytes(), Err(DecodeError::Malformed));
            }
        }
    }
}

#[test]
fn label_key_characters() {
    let keys = ["app.kubernetes.io/name", "a_b-c", "Z9"];
    let labels: Vec<(&str, &str)> = keys.iter().map(|k| (*k, "x")).collect();
    round_trip(&Outgoing { follows_advice: false, labels: &labels, ..EXAMPLE });
    for key in ["a=b", "a b", "é", "a:b", "a\u{0}"] {
        let labels = [("ok", "1"), (key, "x")];
        assert_eq!(
            enc(&Outgoing { follows_advice: false, labels: &labels, ..EXAMPLE }),
            Err(EncodeError::Label { index: 1, reason: LabelError::KeyInvalidChar }),
            "{key:?}"
        );
    }
}

#[test]
fn label_value_boundaries() {
    for value_len in [0, 1, MAX_LABEL_VALUE] {
        let owned = [label(1, value_len)];
        round_trip(&Outgoing { follows_advice: false, labels: &pairs(&owned), ..EXAMPLE });
    }
    let owned = [label(1, MAX_LABEL_VALUE + 1)];
    assert_eq!(
        enc(&Outgoing { follows_advice: false, labels: &pairs(&owned), ..EXAMPLE }),
        Err(EncodeError::Label { index: 0, reason: LabelError::ValueTooLong })
    );
    // Spaces and any non-control Unicode are fine in values; control characters are not.
    round_trip(&Outgoing { follows_advice: false, labels: &[("note", "a b ü 🦀")], ..EXAMPLE });
    for value in ["a\nb", "\u{1b}[31m", "\u{9f}"] {
        let labels = [("k", value)];
        assert_eq!(
            enc(&Outgoing { follows_advice: false, labels: &labels, ..EXAMPLE }),
            Err(EncodeError::Label { index: 0, reason: LabelError::ValueInvalid })
        );
    }
    // Invalid UTF-8 in a signed value.
    let raw = Raw { metadata: vec![1, b'k', 2, 0xc3, 0x28], ..Raw::example() };
    check(&raw.bytes(), Err(DecodeError::Malformed));
}

#[test]
fn interval_boundaries() {
    for interval_ms in [1, u32::MAX] {
        round_trip(&Outgoing { follows_advice: false, interval_ms, ..EXAMPLE });
    }
    assert_eq!(
        enc(&Outgoing { follows_advice: false, interval_ms: 0, ..EXAMPLE }),
        Err(EncodeError::IntervalZero)
    );
    let raw = Raw { interval_ms: 0, ..Raw::example() };
    check(&raw.bytes(), Err(DecodeError::Malformed));
}

#[test]
fn generation_and_sequence_extremes() {
    for generation in [0, 1, u64::MAX] {
        for sequence in [0, 1, u64::MAX] {
            round_trip(&Outgoing { follows_advice: false, generation, sequence, ..EXAMPLE });
        }
    }
}

#[test]
fn largest_datagram_fits_the_bound() {
    let node = "n".repeat(MAX_NODE_ID);
    let full = [label(63, 255), label(63, 127)];
    let bytes =
        enc(&Outgoing { follows_advice: false, node: &node, labels: &pairs(&full), ..EXAMPLE }).unwrap();
    assert_eq!(bytes.len(), encoded_len(MAX_NODE_ID, MAX_METADATA));
    assert!(bytes.len() <= MAX_DATAGRAM);
}

// ---- Rejections, one reason each ----

#[test]
fn rejects_oversized_before_anything_else() {
    let mut bytes = example_bytes();
    bytes.resize(MAX_DATAGRAM + 1, 0);
    check(&bytes, Err(DecodeError::Oversized));
    check(&[0xff; MAX_DATAGRAM + 1], Err(DecodeError::Oversized));
    check(&vec![0; 65_536], Err(DecodeError::Oversized));
    // At the bound, it is the content that is wrong.
    bytes.truncate(MAX_DATAGRAM);
    check(&bytes, Err(DecodeError::Malformed));
}

#[test]
fn rejects_every_truncation() {
    let bytes = example_bytes();
    for len in 0..bytes.len() {
        check(&bytes[..len], Err(DecodeError::Truncated));
    }
}

#[test]
fn rejects_bad_magic() {
    for magic in [*b"rc", *b"CR", [0, 0], [0x52, 0x44]] {
        let raw = Raw { magic, ..Raw::example() };
        check(&raw.bytes(), Err(DecodeError::Malformed));
    }
}

#[test]
fn rejects_other_versions() {
    for version in [0, 2, 255] {
        let raw = Raw { version, ..Raw::example() };
        check(&raw.bytes(), Err(DecodeError::UnsupportedVersion));
    }
}

#[test]
fn rejects_unknown_kinds() {
    for kind in [0, 9, 10, 255] {
        let raw = Raw { kind, ..Raw::example() };
        check(&raw.bytes(), Err(DecodeError::Malformed));
    }
}

#[test]
fn rejects_unknown_flags_and_the_advice_flag_off_heartbeats() {
    // Bit 0 is `FOLLOWS_ADVICE`, allowed on heartbeats only; the others are unassigned.
    for bit in 1..8 {
        let raw = Raw { flags: 1 << bit, ..Raw::example() };
        check(&raw.bytes(), Err(DecodeError::Malformed));
    }
    for kind in 2..=8 {
        let raw = Raw { kind, flags: FOLLOWS_ADVICE, ..Raw::example() };
        check(&raw.bytes(), Err(DecodeError::Malformed));
    }
    let raw = Raw { flags: FOLLOWS_ADVICE, ..Raw::example() };
    let bytes = raw.bytes();
    assert!(decode(&bytes, &ring()).expect("a heartbeat may follow advice").follows_advice);
    let mut out = Vec::new();
    let flagged = Outgoing { follows_advice: true, ..EXAMPLE };
    encode(&flagged, &ring(), &mut out).unwrap();
    assert_eq!(out, bytes, "encode writes the flag where decode reads it");
    let goodbye = Outgoing { kind: Kind::Goodbye, ..flagged };
    assert_eq!(encode(&goodbye, &ring(), &mut out), Err(EncodeError::FlagNotAllowed));
}

#[test]
fn rejects_unknown_key() {
    for key_id in [0, 2, u16::MAX] {
        let raw = Raw { key_id, ..Raw::example() };
        check(&raw.bytes(), Err(DecodeError::UnknownKey));
    }
}

#[test]
fn rejects_wrong_secret_as_bad_tag() {
    let other = KeyRing::new(&[Key::new(1, secret(100))]).unwrap();
    let mut bytes = Vec::new();
    encode(&EXAMPLE, &other, &mut bytes).unwrap();
    check(&bytes, Err(DecodeError::BadTag));
}

#[test]
fn rejects_every_single_bit_flip() {
    let bytes = example_bytes();
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let got = decode(&flipped, &ring());
        assert!(got.is_err(), "bit {bit} flipped was accepted: {got:?}");
        // Outside the header checks, only the MAC can notice.
        if bit / 8 >= HEADER_LEN {
            assert_eq!(got, Err(DecodeError::BadTag), "bit {bit}");
        }
    }
}

#[test]
fn rejects_trailing_bytes() {
    let mut bytes = example_bytes();
    bytes.push(0);
    check(&bytes, Err(DecodeError::Malformed));
    // Even when the tag is computed over everything: the declared lengths are the truth.
    let mut raw = Raw::example();
    raw.metadata_len = Some(raw.metadata.len() as u16 - 1);
    check(&raw.bytes(), Err(DecodeError::Malformed));
}

#[test]
fn rejects_invalid_utf8_node_after_authentication() {
    for node in [&[0xff][..], &[b'a', 0xc3], &[0xed, 0xa0, 0x80]] {
        let raw = Raw { node: node.to_vec(), ..Raw::example() };
        check(&raw.bytes(), Err(DecodeError::Malformed));
    }
}

#[test]
fn rejects_label_block_ending_inside_a_label() {
    for metadata in [vec![5, b'g'], vec![1, b'k'], vec![1, b'k', 3, b'v']] {
        let raw = Raw { metadata, ..Raw::example() };
        check(&raw.bytes(), Err(DecodeError::Malformed));
    }
}

#[test]
fn reason_names_are_distinct_snake_case() {
    let names: Vec<&str> = DecodeError::ALL.iter().map(DecodeError::as_str).collect();
    assert_eq!(
        names,
        ["oversized", "truncated", "malformed", "unsupported_version", "unknown_key", "bad_tag"]
    );
}

// ---- Encoder and labels API ----

#[test]
fn encode_error_leaves_out_empty() {
    let mut out = vec![1, 2, 3];
    let labels = [("ok", "1"), ("", "x")];
    let msg = Outgoing { follows_advice: false, labels: &labels, ..EXAMPLE };
    assert!(encode(&msg, &ring(), &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn labels_store_and_restore() {
    let mut stored = vec![9]; // encode_labels appends
    let len = encode_labels(&[("group", "web"), ("zone", "eu-1")], &mut stored).unwrap();
    assert_eq!(len, stored.len() - 1);
    let labels = Labels::from_bytes(&stored[1..]).unwrap();
    assert_eq!(labels.iter().collect::<Vec<_>>(), [("group", "web"), ("zone", "eu-1")]);
    assert_eq!(labels.get("zone"), Some("eu-1"));
    assert_eq!(labels.get("missing"), None);
    assert!(!labels.is_empty());
    assert!(Labels::EMPTY.is_empty());

    // The decoded block is byte-for-byte what was stored.
    let bytes = example_bytes();
    let msg = decode(&bytes, &ring()).unwrap();
    assert_eq!(msg.labels.as_bytes(), &stored[1..11]);

    // A failed encode_labels leaves the buffer as it was.
    let before = stored.clone();
    assert!(encode_labels(&[("a", "b"), ("bad key", "c")], &mut stored).is_err());
    assert_eq!(stored, before);
}

#[test]
fn labels_from_bytes_refuses_invalid_blocks() {
    for (raw, error) in [
        (vec![0; MAX_METADATA + 1], LabelError::TooLong),
        (vec![3, b'a', b'b'], LabelError::Truncated),
        (vec![0, 0], LabelError::KeyEmpty),
        (vec![1, b'=', 0], LabelError::KeyInvalidChar),
        (vec![1, b'k', 1, 0x0a], LabelError::ValueInvalid),
        (vec![1, b'k', 1, 0xff], LabelError::ValueInvalid),
    ] {
        assert_eq!(Labels::from_bytes(&raw), Err(error), "{raw:?}");
    }
}

#[test]
fn rotation_accepts_the_old_key_and_sends_with_the_new() {
    let old = KeyRing::new(&[Key::new(1, secret(0))]).unwrap();
    let both = KeyRing::new(&[Key::new(1, secret(0)), Key::new(2, secret(50))]).unwrap();
    let new = KeyRing::new(&[Key::new(2, secret(50))]).unwrap();
    let (mut from_old, mut from_both) = (Vec::new(), Vec::new());
    encode(&EXAMPLE, &old, &mut from_old).unwrap();
    encode(&EXAMPLE, &both, &mut from_both).unwrap();

    assert_eq!(both.send_key_id(), 2);
    assert_eq!(decode(&from_old, &both).unwrap().key_id, 1);
    assert_eq!(decode(&from_both, &both).unwrap().key_id, 2);
    assert_eq!(decode(&from_both, &new).unwrap().key_id, 2);
    // Midway through a rotation, a monitor that has not got the new key yet.
    assert_eq!(decode(&from_both, &old), Err(DecodeError::UnknownKey));
    // After it, the old key is gone.
    assert_eq!(decode(&from_old, &new), Err(DecodeError::UnknownKey));
}

// ---- Properties ----

/// A node id: ASCII up to the byte bound, or any allowed Unicode.
fn node_strategy() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9._:-]{1,64}", "[^\\p{Cc}\\s]{1,16}"]
}

/// Labels that fit [`MAX_METADATA`]: generated freely, then cut at the first that overflows.
fn labels_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = "[a-zA-Z0-9_./-]{1,63}";
    let value = prop_oneof!["[ -~]{0,255}", "[^\\p{Cc}]{0,20}"];
    prop::collection::vec((key, value), 0..12).prop_map(|mut labels| {
        let mut total = 0;
        let fits = labels
            .iter()
            .take_while(|(k, v)| {
                total += 2 + k.len() + v.len();
                total <= MAX_METADATA
            })
            .count();
        labels.truncate(fits);
        labels
    })
}

fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Heartbeat),
        Just(Kind::Goodbye),
        Just(Kind::Probe),
        Just(Kind::Ack),
        Just(Kind::ProbeRequest),
        Just(Kind::IndirectAck),
        Just(Kind::Advice),
        Just(Kind::Exit),
    ]
}

proptest! {
    #[test]
    fn prop_round_trip(
        kind in kind_strategy(),
        node in node_strategy(),
        generation in any::<u64>(),
        sequence in any::<u64>(),
        interval_ms in 1..=u32::MAX,
        owned in labels_strategy(),
        flag in any::<bool>(),
    ) {
        let labels = pairs(&owned);
        let follows_advice = flag && kind == Kind::Heartbeat;
        let msg = Outgoing { follows_advice, kind, node: &node, generation, sequence, interval_ms, labels: &labels };
        let bytes = enc(&msg).unwrap();
        let metadata_len: usize = owned.iter().map(|(k, v)| 2 + k.len() + v.len()).sum();
        prop_assert_eq!(bytes.len(), encoded_len(node.len(), metadata_len));
        prop_assert!(bytes.len() <= MAX_DATAGRAM);
        check(&bytes, Ok(&msg));
    }

    #[test]
    fn prop_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1100)) {
        let _ = decode(&bytes, &ring());
    }

    /// Random edits behind a valid tag reach the node id and label parser; whatever it
    /// accepts must re-encode to the same bytes.
    #[test]
    fn prop_signed_garbage_never_panics_and_accepted_is_canonical(
        node in node_strategy(),
        owned in labels_strategy(),
        edits in prop::collection::vec((0..MAX_DATAGRAM, any::<u8>()), 1..8),
    ) {
        let labels = pairs(&owned);
        let mut bytes = enc(&Outgoing { follows_advice: false, node: &node, labels: &labels, ..EXAMPLE }).unwrap();
        let body = bytes.len() - TAG_LEN;
        bytes.truncate(body);
        for (at, value) in edits {
            let at = HEADER_LEN + at % (body - HEADER_LEN);
            bytes[at] = value;
        }
        let tag = ring().sign(&bytes);
        bytes.extend_from_slice(&tag);
        if let Ok(msg) = decode(&bytes, &ring()) {
            let labels: Vec<(&str, &str)> = msg.labels.iter().collect();
            let again = enc(&Outgoing { follows_advice: false,
                kind: msg.kind,
                node: msg.node,
                generation: msg.generation,
                sequence: msg.sequence,
                interval_ms: msg.interval_ms,
                labels: &labels,
            });
            prop_assert_eq!(again, Ok(bytes.clone()));
        }
    }
}

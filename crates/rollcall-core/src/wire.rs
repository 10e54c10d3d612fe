//! The heartbeat wire format: a compact, versioned, authenticated UDP datagram.
//!
//! The layout is documented byte by byte in `docs/PROTOCOL.md`; this module is its only
//! implementation in Rust. Decoding never panics and never allocates: input from the network
//! is hostile.
//!
//! # Order of checks in [`decode`]
//!
//! Each check runs only if all earlier ones passed, so a datagram gets exactly one reason:
//!
//! 1. size bound: longer than [`MAX_DATAGRAM`] is [`DecodeError::Oversized`];
//! 2. fixed header present: shorter than [`HEADER_LEN`] is [`DecodeError::Truncated`];
//! 3. magic `RC`, else [`DecodeError::Malformed`];
//! 4. version, else [`DecodeError::UnsupportedVersion`];
//! 5. kind, flags and interval, else [`DecodeError::Malformed`] (the only flag is
//!    [`FOLLOWS_ADVICE`], and only on a heartbeat);
//! 6. declared lengths: node id length in `1..=64` and metadata length in `0..=512`, else
//!    `Malformed`; fewer bytes than they declare is `Truncated`, more is `Malformed`;
//! 7. key id in the ring, else [`DecodeError::UnknownKey`];
//! 8. the tag, compared in constant time, else [`DecodeError::BadTag`];
//! 9. only then the node id and the labels are parsed (`Malformed` if invalid), so that
//!    unauthenticated bytes never reach anything but the MAC.
//!
//! Magic and version are read before the declared lengths so that a datagram of a future
//! version with another layout is counted as `unsupported_version`, not as garbage.
//!
//! The codec is stateless: it does not know whether a message is a replay. That check
//! (generation, then sequence) belongs to the monitor, which holds the per-node state.

use crate::keyring::KeyRing;

/// Largest datagram rollcall sends or accepts, in bytes. Anything longer is `Oversized`.
pub const MAX_DATAGRAM: usize = 1024;
/// Longest node id, in bytes of UTF-8.
pub const MAX_NODE_ID: usize = 64;
/// Longest encoded metadata (the label block), in bytes.
pub const MAX_METADATA: usize = 512;
/// Length of the authentication tag (full HMAC-SHA256).
pub const TAG_LEN: usize = 32;
/// The protocol version this code speaks.
pub const VERSION: u8 = 1;
/// The first two bytes of every datagram: `RC`.
pub const MAGIC: [u8; 2] = *b"RC";
/// Length of the fixed header, before the node id.
pub const HEADER_LEN: usize = 30;
/// Longest label key, in bytes (ASCII).
pub const MAX_LABEL_KEY: usize = 63;
/// Longest label value, in bytes of UTF-8.
pub const MAX_LABEL_VALUE: usize = 255;
/// The flag a heartbeat carries when its agent takes the monitor's interval advice
/// ([`Kind::Advice`]); a monitor sends advice only to such agents.
pub const FOLLOWS_ADVICE: u8 = 0x01;

/// What a datagram says.
///
/// Heartbeats, goodbyes and exit reports flow from agents to the monitor. The four confirmation kinds
/// (`docs/PROTOCOL.md`, "Confirmation") let a monitor ask a suspect node directly, or through
/// other agents, whether it is alive; their `generation` is the prober's epoch and their
/// `sequence` a nonce, echoed by the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// "I am alive."
    Heartbeat,
    /// "I am stopping on purpose: don't page anyone."
    Goodbye,
    /// "Are you alive?", sent to the node named in the datagram.
    Probe,
    /// "I am": the answer to a probe, from the node named in the datagram.
    Ack,
    /// "Please probe this node for me": the node named in the datagram, at the address in
    /// its `addr` label.
    ProbeRequest,
    /// "The node you asked about answered me": the node named in the datagram, relayed by
    /// the agent in its `via` label.
    IndirectAck,
    /// "Send your heartbeats every `interval` from now": the monitor's answer to a
    /// heartbeat flagged [`FOLLOWS_ADVICE`], echoing its generation and sequence.
    Advice,
    /// "The process I watch has exited": sent by an agent the moment its watched process
    /// ends, with its exit status in the labels ([`ExitStatus`]). Same generation and
    /// sequence rules as a heartbeat.
    Exit,
}

/// The label key of an exit report's exit code (decimal), present when the process exited.
pub const EXIT_CODE_LABEL: &str = "code";
/// The label key of an exit report's signal number (decimal), present when a signal killed
/// the process.
pub const EXIT_SIGNAL_LABEL: &str = "signal";

/// How a watched process ended, as an exit report ([`Kind::Exit`]) carries it in its
/// labels: `code` for an exit, `signal` for a kill; both absent when the agent could not
/// tell (a pid watched through a pidfd has no status to read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// A decoded, authenticated heartbeat or goodbye. Borrows the node id and labels from the
/// datagram so that the hot path does not allocate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: Kind,
    /// The key the sender used (already verified when this value exists).
    pub key_id: u16,
    pub node: &'a str,
    /// Restart counter: strictly larger after every restart of the sender.
    pub generation: u64,
    /// Strictly increasing within one generation.
    pub sequence: u64,
    /// The interval at which the sender says it sends, in milliseconds (at least 1).
    pub interval_ms: u32,
    /// Labels, in the order the sender wrote them.
    pub labels: Labels<'a>,
    /// A heartbeat whose agent takes interval advice (the [`FOLLOWS_ADVICE`] flag).
    pub follows_advice: bool,
}

/// A message to encode. Same fields as [`Message`], minus the key id: [`encode`] signs with
/// the ring's send key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outgoing<'a> {
    pub kind: Kind,
    pub node: &'a str,
    pub generation: u64,
    pub sequence: u64,
    pub interval_ms: u32,
    pub labels: &'a [(&'a str, &'a str)],
    /// Set the [`FOLLOWS_ADVICE`] flag (heartbeats only; [`encode`] refuses it on others).
    pub follows_advice: bool,
}

/// The label block of a datagram: `key=value` pairs, iterated without allocation.
///
/// A value of this type always holds a valid block (see [`Labels::from_bytes`]). Keys may
/// repeat: the codec keeps the block exactly as the sender wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Labels<'a> {
    raw: &'a [u8],
}

/// Iterator over [`Labels`], yielding `(key, value)` in wire order.
#[derive(Clone, Debug)]
pub struct LabelIter<'a> {
    rest: &'a [u8],
}

/// Why a datagram was rejected. Every reason is the sender's (or an attacker's) doing; a
/// rejected datagram never changes any state besides the rejection counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Longer than [`MAX_DATAGRAM`].
    #[error("datagram longer than {MAX_DATAGRAM} bytes")]
    Oversized,
    /// Shorter than its header or its declared lengths say.
    #[error("datagram shorter than its header or declared lengths")]
    Truncated,
    /// Not a rollcall datagram (bad magic), a field out of range, bytes after the declared
    /// end, or (after authentication) an invalid node id or label block.
    #[error("malformed datagram")]
    Malformed,
    /// A protocol version this code does not speak.
    #[error("unsupported protocol version")]
    UnsupportedVersion,
    /// A key id that is not in the key ring.
    #[error("unknown key id")]
    UnknownKey,
    /// The tag does not match: forged, corrupted, or signed with another key.
    #[error("authentication tag does not match")]
    BadTag,
}

/// Why [`encode`] refused a message. The caller's fault; `out` is left empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The node id is the empty string.
    #[error("the node id is empty")]
    NodeEmpty,
    /// The node id is longer than [`MAX_NODE_ID`] bytes.
    #[error("the node id is longer than {MAX_NODE_ID} bytes")]
    NodeTooLong,
    /// The node id contains a control character or whitespace.
    #[error("the node id contains a control character or whitespace")]
    NodeInvalidChar,
    /// Label number `index` (from 0) is invalid.
    #[error("label {index}: {reason}")]
    Label { index: usize, reason: LabelError },
    /// The encoded labels are longer than [`MAX_METADATA`] bytes.
    #[error("the labels take more than {MAX_METADATA} bytes once encoded")]
    MetadataTooLong,
    /// The declared interval is zero.
    #[error("the interval must be at least 1 ms")]
    IntervalZero,
    /// The advice flag on anything but a heartbeat.
    #[error("only a heartbeat may carry the follows-advice flag")]
    FlagNotAllowed,
}

/// What is wrong with one label, or with a stored label block. The caller's fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// An empty key.
    #[error("the key is empty")]
    KeyEmpty,
    /// A key longer than [`MAX_LABEL_KEY`] bytes.
    #[error("the key is longer than {MAX_LABEL_KEY} bytes")]
    KeyTooLong,
    /// A key with a byte outside `a-z A-Z 0-9 _ . - /`.
    #[error("the key has a character outside a-z, A-Z, 0-9, `_`, `.`, `-`, `/`")]
    KeyInvalidChar,
    /// A value longer than [`MAX_LABEL_VALUE`] bytes.
    #[error("the value is longer than {MAX_LABEL_VALUE} bytes")]
    ValueTooLong,
    /// A value that is not UTF-8 or contains a control character.
    #[error("the value is not UTF-8 or contains a control character")]
    ValueInvalid,
    /// A block longer than [`MAX_METADATA`] bytes.
    #[error("the label block is longer than {MAX_METADATA} bytes")]
    TooLong,
    /// A block that ends in the middle of a label.
    #[error("the label block ends in the middle of a label")]
    Truncated,
}

impl Kind {
    /// The byte that stands for this kind on the wire.
    pub const fn code(self) -> u8 {
        match self {
            Kind::Heartbeat => 1,
            Kind::Goodbye => 2,
            Kind::Probe => 3,
            Kind::Ack => 4,
            Kind::ProbeRequest => 5,
            Kind::IndirectAck => 6,
            Kind::Advice => 7,
            Kind::Exit => 8,
        }
    }

    /// The kind a wire byte stands for, if any.
    pub const fn from_code(code: u8) -> Option<Kind> {
        match code {
            1 => Some(Kind::Heartbeat),
            2 => Some(Kind::Goodbye),
            3 => Some(Kind::Probe),
            4 => Some(Kind::Ack),
            5 => Some(Kind::ProbeRequest),
            6 => Some(Kind::IndirectAck),
            7 => Some(Kind::Advice),
            8 => Some(Kind::Exit),
            _ => None,
        }
    }

    /// The kind's name in metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Heartbeat => "heartbeat",
            Kind::Goodbye => "goodbye",
            Kind::Probe => "probe",
            Kind::Ack => "ack",
            Kind::ProbeRequest => "probe_request",
            Kind::IndirectAck => "indirect_ack",
            Kind::Advice => "advice",
            Kind::Exit => "exit",
        }
    }
}

impl DecodeError {
    /// Every variant, in declaration order: for pre-registering metric series.
    pub const ALL: [DecodeError; 6] = [
        DecodeError::Oversized,
        DecodeError::Truncated,
        DecodeError::Malformed,
        DecodeError::UnsupportedVersion,
        DecodeError::UnknownKey,
        DecodeError::BadTag,
    ];

    /// The reason's name in metrics and logs (`reason="bad_tag"`).
    pub const fn as_str(&self) -> &'static str {
        match self {
            DecodeError::Oversized => "oversized",
            DecodeError::Truncated => "truncated",
            DecodeError::Malformed => "malformed",
            DecodeError::UnsupportedVersion => "unsupported_version",
            DecodeError::UnknownKey => "unknown_key",
            DecodeError::BadTag => "bad_tag",
        }
    }
}

impl ExitStatus {
    /// Reads the status from an exit report's labels. A value that is not a decimal `i32`
    /// counts as absent: the report still stands, only its detail is lost.
    pub fn from_labels(labels: &Labels<'_>) -> ExitStatus {
        let read = |key| labels.get(key).and_then(|value: &str| value.parse().ok());
        ExitStatus { code: read(EXIT_CODE_LABEL), signal: read(EXIT_SIGNAL_LABEL) }
    }
}

/// Size of a datagram with a node id of `node_len` bytes and `metadata_len` bytes of labels.
pub const fn encoded_len(node_len: usize, metadata_len: usize) -> usize {
    HEADER_LEN + node_len + metadata_len + TAG_LEN
}

/// Decodes and authenticates one datagram, borrowing from it. Never panics, never allocates;
/// see the module documentation for the order of checks.
pub fn decode<'a>(datagram: &'a [u8], ring: &KeyRing) -> Result<Message<'a>, DecodeError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(DecodeError::Oversized);
    }
    let header = Header::read(datagram)?;
    let body_end = HEADER_LEN + header.node_len + header.metadata_len;
    // `Header::read` checked that the datagram is exactly `body_end + TAG_LEN` bytes long.
    let (body, tag) = datagram.split_at(body_end);
    ring.verify(header.key_id, body, tag)?;

    // Authenticated from here on.
    let (node_bytes, metadata) = body[HEADER_LEN..].split_at(header.node_len);
    let node = core::str::from_utf8(node_bytes).map_err(|_| DecodeError::Malformed)?;
    check_node(node).map_err(|_| DecodeError::Malformed)?;
    let labels = Labels::from_bytes(metadata).map_err(|_| DecodeError::Malformed)?;
    Ok(Message {
        kind: header.kind,
        key_id: header.key_id,
        node,
        generation: header.generation,
        sequence: header.sequence,
        interval_ms: header.interval_ms,
        labels,
        follows_advice: header.flags & FOLLOWS_ADVICE != 0,
    })
}

/// Encodes and signs `msg` with the ring's send key into `out`, which is cleared first.
/// On error `out` is left empty.
pub fn encode(msg: &Outgoing<'_>, ring: &KeyRing, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.clear();
    check_node(msg.node)?;
    if msg.interval_ms == 0 {
        return Err(EncodeError::IntervalZero);
    }
    if msg.follows_advice && msg.kind != Kind::Heartbeat {
        return Err(EncodeError::FlagNotAllowed);
    }
    let node_len = u8::try_from(msg.node.len()).expect("check_node bounds it to 64");
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(msg.kind.code());
    out.extend_from_slice(&ring.send_key_id().to_be_bytes());
    out.push(node_len);
    out.push(if msg.follows_advice { FOLLOWS_ADVICE } else { 0 });
    out.extend_from_slice(&msg.generation.to_be_bytes());
    out.extend_from_slice(&msg.sequence.to_be_bytes());
    out.extend_from_slice(&msg.interval_ms.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // metadata length, patched below
    debug_assert_eq!(out.len(), HEADER_LEN, "the header layout above is 30 bytes");
    out.extend_from_slice(msg.node.as_bytes());
    let metadata_len = match encode_labels(msg.labels, out) {
        Ok(len) => len,
        Err(error) => {
            out.clear();
            return Err(error);
        }
    };
    let metadata_len = u16::try_from(metadata_len).expect("encode_labels bounds it to 512");
    out[28..30].copy_from_slice(&metadata_len.to_be_bytes());
    let tag = ring.sign(out);
    out.extend_from_slice(&tag);
    debug_assert!(out.len() <= MAX_DATAGRAM, "node and metadata bounds keep it under 638");
    Ok(())
}

/// Appends the label block for `labels` to `out` and returns its length in bytes. On error
/// `out` is restored to its previous length. Use it to store labels in wire form, then
/// [`Labels::from_bytes`] to read them back.
pub fn encode_labels(labels: &[(&str, &str)], out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    let start = out.len();
    for (index, (key, value)) in labels.iter().enumerate() {
        if let Err(reason) = check_label(key.as_bytes(), value) {
            out.truncate(start);
            return Err(EncodeError::Label { index, reason });
        }
        if out.len() - start + 2 + key.len() + value.len() > MAX_METADATA {
            out.truncate(start);
            return Err(EncodeError::MetadataTooLong);
        }
        // Both lengths are bounded by check_label (63 and 255).
        out.push(key.len() as u8);
        out.extend_from_slice(key.as_bytes());
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
    }
    Ok(out.len() - start)
}

impl<'a> Labels<'a> {
    /// No labels.
    pub const EMPTY: Labels<'static> = Labels { raw: &[] };

    /// Validates a label block (as found in a datagram or as stored by [`encode_labels`]).
    pub fn from_bytes(raw: &'a [u8]) -> Result<Labels<'a>, LabelError> {
        if raw.len() > MAX_METADATA {
            return Err(LabelError::TooLong);
        }
        let mut rest = raw;
        while !rest.is_empty() {
            let (key, value, tail) = split_label(rest).ok_or(LabelError::Truncated)?;
            let value = core::str::from_utf8(value).map_err(|_| LabelError::ValueInvalid)?;
            check_label(key, value)?;
            rest = tail;
        }
        Ok(Labels { raw })
    }

    /// A block that [`decode`] already validated, kept as bytes and read back on another
    /// thread (`monitor::VerifiedBatch`): validating it again would only repeat that work.
    pub(crate) const fn verified(raw: &'a [u8]) -> Labels<'a> {
        Labels { raw }
    }

    /// Iterates over `(key, value)` pairs in wire order.
    pub fn iter(&self) -> LabelIter<'a> {
        LabelIter { rest: self.raw }
    }

    /// The value of the first label with this key.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The raw block, as on the wire: to compare or store labels without decoding them.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }
}

impl<'a> IntoIterator for Labels<'a> {
    type Item = (&'a str, &'a str);
    type IntoIter = LabelIter<'a>;

    fn into_iter(self) -> LabelIter<'a> {
        self.iter()
    }
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        // `Labels::from_bytes` validated the block, so none of these can fail; stopping
        // early rather than panicking keeps a broken invariant harmless in release builds.
        let (key, value, tail) = split_label(self.rest)?;
        let key = core::str::from_utf8(key).ok();
        let value = core::str::from_utf8(value).ok();
        debug_assert!(key.is_some() && value.is_some(), "validated by from_bytes");
        self.rest = tail;
        Some((key?, value?))
    }
}

/// The fixed header, checked up to (not including) the key ring and the tag.
struct Header {
    kind: Kind,
    key_id: u16,
    node_len: usize,
    generation: u64,
    sequence: u64,
    interval_ms: u32,
    metadata_len: usize,
    flags: u8,
}

impl Header {
    /// Runs checks 2 to 6 of the module documentation.
    fn read(datagram: &[u8]) -> Result<Header, DecodeError> {
        let Some(h) = datagram.first_chunk::<HEADER_LEN>() else {
            return Err(DecodeError::Truncated);
        };
        if h[0..2] != MAGIC {
            return Err(DecodeError::Malformed);
        }
        if h[2] != VERSION {
            return Err(DecodeError::UnsupportedVersion);
        }
        let kind = Kind::from_code(h[3]).ok_or(DecodeError::Malformed)?;
        let flags = h[7];
        let interval_ms = u32::from_be_bytes([h[24], h[25], h[26], h[27]]);
        let allowed = if kind == Kind::Heartbeat { FOLLOWS_ADVICE } else { 0 };
        if flags & !allowed != 0 || interval_ms == 0 {
            return Err(DecodeError::Malformed);
        }
        let node_len = usize::from(h[6]);
        let metadata_len = usize::from(u16::from_be_bytes([h[28], h[29]]));
        if node_len == 0 || node_len > MAX_NODE_ID || metadata_len > MAX_METADATA {
            return Err(DecodeError::Malformed);
        }
        let expected = encoded_len(node_len, metadata_len);
        if datagram.len() < expected {
            return Err(DecodeError::Truncated);
        }
        if datagram.len() > expected {
            return Err(DecodeError::Malformed);
        }
        Ok(Header {
            kind,
            key_id: u16::from_be_bytes([h[4], h[5]]),
            node_len,
            generation: u64::from_be_bytes(array(&h[8..16])),
            sequence: u64::from_be_bytes(array(&h[16..24])),
            interval_ms,
            metadata_len,
            flags,
        })
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes.try_into().expect("callers pass a slice of length N")
}

/// Node id rules shared by encode, decode and [`crate::Monitor::handle_heartbeat`]: 1 to 64
/// bytes, no control character, no whitespace.
pub fn check_node(node: &str) -> Result<(), EncodeError> {
    if node.is_empty() {
        return Err(EncodeError::NodeEmpty);
    }
    if node.len() > MAX_NODE_ID {
        return Err(EncodeError::NodeTooLong);
    }
    if !node_chars_allowed(node) {
        return Err(EncodeError::NodeInvalidChar);
    }
    Ok(())
}

/// No control character and no whitespace in `node`. Every heartbeat's id goes through
/// this, and ids are nearly always ASCII, where both classes are the bytes up to 0x20 and
/// 0x7F: a byte loop, without decoding characters (test
/// `the_ascii_id_check_agrees_with_the_character_check`).
fn node_chars_allowed(node: &str) -> bool {
    if node.is_ascii() {
        node.bytes().all(|b| b > b' ' && b != 0x7f)
    } else {
        !node.chars().any(|c| c.is_control() || c.is_whitespace())
    }
}

/// Label rules shared by encode and decode.
fn check_label(key: &[u8], value: &str) -> Result<(), LabelError> {
    if key.is_empty() {
        return Err(LabelError::KeyEmpty);
    }
    if key.len() > MAX_LABEL_KEY {
        return Err(LabelError::KeyTooLong);
    }
    if !key.iter().all(|&b| is_key_byte(b)) {
        return Err(LabelError::KeyInvalidChar);
    }
    if value.len() > MAX_LABEL_VALUE {
        return Err(LabelError::ValueTooLong);
    }
    if value.chars().any(char::is_control) {
        return Err(LabelError::ValueInvalid);
    }
    Ok(())
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/')
}

/// Splits `[key len][key][value len][value]` off the front of a block, or `None` if the block
/// ends inside it. Does not validate contents.
fn split_label(block: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (&key_len, rest) = block.split_first()?;
    let (key, rest) = rest.split_at_checked(usize::from(key_len))?;
    let (&value_len, rest) = rest.split_first()?;
    let (value, rest) = rest.split_at_checked(usize::from(value_len))?;
    Some((key, value, rest))
}

#[cfg(test)]
mod tests;

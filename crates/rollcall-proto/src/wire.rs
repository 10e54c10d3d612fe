//! The heartbeat wire format: a compact, versioned, authenticated UDP datagram.
//!
//! The layout is documented byte by byte in `docs/PROTOCOL.md`; this module is its only
//! implementation in Rust. Decoding never panics and never allocates more than the datagram
//! size bound: input from the network is hostile.

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

/// What a datagram says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// "I am alive."
    Heartbeat,
    /// "I am stopping on purpose: don't page anyone."
    Goodbye,
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
    /// The interval at which the sender says it sends, in milliseconds.
    pub interval_ms: u32,
    /// Labels, in the order the sender wrote them.
    pub labels: Labels<'a>,
}

/// The label block of a datagram: `key=value` pairs, iterated without allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Labels<'a> {
    raw: &'a [u8],
}

/// Why a datagram was rejected. Every reason is the sender's (or an attacker's) doing; a
/// rejected datagram never changes any state besides the rejection counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeError {
    /// Longer than [`MAX_DATAGRAM`].
    Oversized,
    /// Shorter than its header or its declared lengths say.
    Truncated,
    /// Not a rollcall datagram (bad magic), or bytes after the declared end.
    Malformed,
    /// A protocol version this code does not speak.
    UnsupportedVersion,
    /// A key id that is not in the key ring.
    UnknownKey,
    /// The tag does not match: forged, corrupted, or signed with another key.
    BadTag,
}

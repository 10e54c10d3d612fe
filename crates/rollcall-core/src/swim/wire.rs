//! The peer protocol's datagram: a versioned, authenticated UDP message carrying one SWIM
//! message (ping, ack, nack, ping-req, sync page, gossip) and piggybacked membership updates.
//!
//! The layout is documented byte by byte in `docs/PEER.md`. Decoding never panics, never
//! trusts a declared length and never allocates: every count and length is checked against
//! the bytes actually present, and the MAC is verified before any field past the fixed header
//! is read.
//!
//! # Order of checks in [`decode`]
//!
//! 1. longer than [`MAX_DATAGRAM`]: `Oversized`; shorter than the fixed header and the tag:
//!    `Truncated`;
//! 2. magic `RS`, else `Malformed`; version, else `UnsupportedVersion`;
//! 3. cluster id, else `WrongCluster` (a peer of another cluster, whatever its key);
//! 4. key id in the ring, else `UnknownKey`; the tag, else `BadTag`;
//! 5. only then the sender, the body and the updates (`Truncated` or `Malformed` if they do
//!    not parse exactly to the tag).

use crate::keyring::KeyRing;
use crate::wire::{DecodeError as TagError, TAG_LEN};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Largest datagram a peer sends or accepts, in bytes: under a 1500-byte Ethernet MTU with
/// room for IPv6 and UDP headers, so a datagram is never fragmented.
pub const MAX_DATAGRAM: usize = 1400;
/// The first two bytes of every peer datagram: `RS` (heartbeats start with `RC`).
pub const MAGIC: [u8; 2] = *b"RS";
/// The peer protocol version this code speaks.
pub const VERSION: u8 = 1;
/// Longest member name, in bytes of UTF-8.
pub const MAX_NAME: usize = 64;
/// Bytes before the sender's name: magic, version, kind, key id, cluster, incarnation.
const FIXED: usize = 2 + 1 + 1 + 2 + 8 + 4;
/// The shortest possible datagram: fixed header, a one-byte name, an update count, the tag.
pub const MIN_LEN: usize = FIXED + 2 + 1 + TAG_LEN;

/// A member's state, as SWIM sees it. One word per concept: `up`, `suspect`, `down`, `left`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberState {
    /// Answering probes (SWIM's "alive").
    Up,
    /// A probe failed; it will be declared down unless it refutes in time.
    Suspect,
    /// Declared failed (SWIM's "confirm"/"dead"); only a newer incarnation brings it back.
    Down,
    /// Said goodbye (a graceful leave); nobody should be paged.
    Left,
}

impl MemberState {
    const fn code(self) -> u8 {
        match self {
            MemberState::Up => 1,
            MemberState::Suspect => 2,
            MemberState::Down => 3,
            MemberState::Left => 4,
        }
    }

    const fn from_code(code: u8) -> Option<MemberState> {
        match code {
            1 => Some(MemberState::Up),
            2 => Some(MemberState::Suspect),
            3 => Some(MemberState::Down),
            4 => Some(MemberState::Left),
            _ => None,
        }
    }

    /// The state's name in events, metrics and the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            MemberState::Up => "up",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
            MemberState::Left => "left",
        }
    }

    /// Whether a state carries an accuser on the wire (who suspected, or who declared down).
    const fn has_accuser(self) -> bool {
        matches!(self, MemberState::Suspect | MemberState::Down)
    }
}

/// One membership statement: "`name` at `addr` is in `state` at `incarnation`".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Update<'a> {
    pub state: MemberState,
    pub incarnation: u32,
    pub name: &'a str,
    pub addr: SocketAddr,
    /// Who suspected it or declared it down (`Suspect` and `Down` only; the sender otherwise).
    pub accuser: Option<&'a str>,
}

/// What a datagram asks or answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// "Are you `target`? Answer with an ack carrying `seq`."
    Ping { seq: u32, target: &'a str },
    /// The answer to a ping, or an ack forwarded by an indirect prober.
    Ack { seq: u32 },
    /// An indirect prober's "I asked, and `target` did not answer in time" (Lifeguard).
    Nack { seq: u32 },
    /// "Probe `target` at `addr` for me, and forward its ack (or a nack) with `seq`."
    PingReq { seq: u32, target: &'a str, addr: SocketAddr },
    /// A page of the sender's member table (push-pull sync); `reply` asks for a page back.
    Sync { reply: bool, entries: Entries<'a> },
    /// Nothing but piggybacked updates (a leave's goodbye).
    Gossip,
}

impl Body<'_> {
    const fn code(&self) -> u8 {
        match self {
            Body::Ping { .. } => 1,
            Body::Ack { .. } => 2,
            Body::Nack { .. } => 3,
            Body::PingReq { .. } => 4,
            Body::Sync { .. } => 5,
            Body::Gossip => 6,
        }
    }
}

/// A decoded, authenticated datagram. Borrows its strings from the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub key_id: u16,
    pub sender: &'a str,
    /// The sender's incarnation when it sent this.
    pub incarnation: u32,
    pub body: Body<'a>,
    pub updates: Entries<'a>,
}

/// A list of [`Update`]s, validated when the datagram was decoded and parsed again lazily.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entries<'a> {
    raw: &'a [u8],
    count: u16,
}

impl<'a> Entries<'a> {
    pub const EMPTY: Entries<'static> = Entries { raw: &[], count: 0 };

    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = Update<'a>> + 'a {
        let mut reader = Reader { bytes: self.raw, at: 0 };
        // Validated at decode: every entry parses, so `map_while` never stops early.
        (0..self.count).map_while(move |_| read_update(&mut reader).ok())
    }
}

/// Why a peer datagram was dropped, counted by reason. Never a state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Longer than [`MAX_DATAGRAM`]. The sender's fault.
    #[error("datagram longer than {MAX_DATAGRAM} bytes")]
    Oversized,
    /// Shorter than its header, its tag, or its declared lengths and counts.
    #[error("datagram shorter than its header or declared lengths")]
    Truncated,
    /// Bad magic, an unknown kind or state, an invalid name, or bytes after the last field.
    #[error("malformed datagram")]
    Malformed,
    /// A peer protocol version this code does not speak.
    #[error("unsupported peer protocol version")]
    UnsupportedVersion,
    /// A peer of another cluster (its cluster id differs from ours).
    #[error("datagram of another cluster")]
    WrongCluster,
    /// A key id that is not in our key ring.
    #[error("unknown key id")]
    UnknownKey,
    /// The tag does not match: forged, corrupted, or signed with another key.
    #[error("authentication tag does not match")]
    BadTag,
    /// Authentic, but a ping meant for another member name (a peer restarted under a new
    /// name at an old address).
    #[error("ping for another member")]
    NotForUs,
    /// Authentic, but sent under our own name: a misconfigured twin, or our own echo.
    #[error("datagram sent under our own name")]
    FromSelf,
}

impl Rejection {
    /// Every variant, for pre-registering metric series.
    pub const ALL: [Rejection; 9] = [
        Rejection::Oversized,
        Rejection::Truncated,
        Rejection::Malformed,
        Rejection::UnsupportedVersion,
        Rejection::WrongCluster,
        Rejection::UnknownKey,
        Rejection::BadTag,
        Rejection::NotForUs,
        Rejection::FromSelf,
    ];

    /// The label value in metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Rejection::Oversized => "oversized",
            Rejection::Truncated => "truncated",
            Rejection::Malformed => "malformed",
            Rejection::UnsupportedVersion => "unsupported_version",
            Rejection::WrongCluster => "wrong_cluster",
            Rejection::UnknownKey => "unknown_key",
            Rejection::BadTag => "bad_tag",
            Rejection::NotForUs => "not_for_us",
            Rejection::FromSelf => "from_self",
        }
    }
}

/// The 64-bit id of a cluster name on the wire: FNV-1a of its UTF-8 bytes. Not a secret and
/// not a defence (the MAC is): it tells a peer of another cluster from a forger.
pub fn cluster_id(cluster: &str) -> u64 {
    fnv1a(cluster.as_bytes())
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Decodes and authenticates one datagram. See the module doc for the order of checks.
pub fn decode<'a>(bytes: &'a [u8], cluster: u64, ring: &KeyRing) -> Result<Datagram<'a>, Rejection> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(Rejection::Oversized);
    }
    if bytes.len() < MIN_LEN {
        return Err(Rejection::Truncated);
    }
    if bytes[0..2] != MAGIC {
        return Err(Rejection::Malformed);
    }
    if bytes[2] != VERSION {
        return Err(Rejection::UnsupportedVersion);
    }
    let mut head = Reader { bytes, at: 3 };
    let kind = head.u8()?;
    let key_id = head.u16()?;
    if head.u64()? != cluster {
        return Err(Rejection::WrongCluster);
    }
    let (signed, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    ring.verify(key_id, signed, tag).map_err(|error| match error {
        TagError::UnknownKey => Rejection::UnknownKey,
        _ => Rejection::BadTag,
    })?;
    // Authenticated from here on; the rest must parse exactly up to the tag.
    let mut reader = Reader { bytes: signed, at: head.at };
    let incarnation = reader.u32()?;
    let sender = reader.name()?;
    let body = match kind {
        1 => Body::Ping { seq: reader.u32()?, target: reader.name()? },
        2 => Body::Ack { seq: reader.u32()? },
        3 => Body::Nack { seq: reader.u32()? },
        4 => Body::PingReq { seq: reader.u32()?, target: reader.name()?, addr: reader.addr()? },
        5 => {
            let reply = match reader.u8()? {
                0 => false,
                1 => true,
                _ => return Err(Rejection::Malformed),
            };
            Body::Sync { reply, entries: reader.entries(u16::MAX)? }
        }
        6 => Body::Gossip,
        _ => return Err(Rejection::Malformed),
    };
    let updates = reader.entries(u16::from(u8::MAX))?;
    if reader.at != signed.len() {
        return Err(Rejection::Malformed);
    }
    Ok(Datagram { key_id, sender, incarnation, body, updates })
}

/// Builds one datagram in a caller's buffer: header and body first, then entries and
/// updates while they fit, then the tag. Sizes are tracked so the result never exceeds
/// `limit` (at most [`MAX_DATAGRAM`]).
pub(crate) struct Writer<'b> {
    out: &'b mut Vec<u8>,
    limit: usize,
    /// Where the count of the list being written sits, and its width in bytes.
    list: Option<(usize, usize, u16)>,
}

impl<'b> Writer<'b> {
    /// Starts a datagram. `sender` must be a valid name (checked when the peer was built).
    pub fn new(
        out: &'b mut Vec<u8>,
        limit: usize,
        cluster: u64,
        key_id: u16,
        sender: &str,
        inc: u32,
        body: &Body<'_>,
    ) -> Writer<'b> {
        out.clear();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(body.code());
        out.extend_from_slice(&key_id.to_be_bytes());
        out.extend_from_slice(&cluster.to_be_bytes());
        out.extend_from_slice(&inc.to_be_bytes());
        put_name(out, sender);
        match *body {
            Body::Ping { seq, target } => {
                out.extend_from_slice(&seq.to_be_bytes());
                put_name(out, target);
            }
            Body::Ack { seq } | Body::Nack { seq } => out.extend_from_slice(&seq.to_be_bytes()),
            Body::PingReq { seq, target, addr } => {
                out.extend_from_slice(&seq.to_be_bytes());
                put_name(out, target);
                put_addr(out, addr);
            }
            // The entries of a sync follow through `begin_entries`; the body's own list is
            // ignored here (a writer writes what it is handed entry by entry).
            Body::Sync { reply, .. } => out.push(u8::from(reply)),
            Body::Gossip => {}
        }
        Writer { out, limit: limit.min(MAX_DATAGRAM), list: None }
    }

    /// Opens the sync page's entry list (two-byte count). Call once, for `Sync` only.
    pub fn begin_entries(&mut self) {
        self.open(2);
    }

    /// Opens the piggybacked update list (one-byte count). Call once, after the body (and
    /// the sync page, if any).
    pub fn begin_updates(&mut self) {
        self.close();
        self.open(1);
    }

    /// Appends one entry to the open list if it fits before the tag; false if it does not.
    pub fn push(&mut self, update: &Update<'_>) -> bool {
        let Some((_, width, count)) = self.list else { return false };
        let max = if width == 1 { u16::from(u8::MAX) } else { u16::MAX };
        if count == max || self.out.len() + update_len(update) + 1 + TAG_LEN > self.limit {
            return false;
        }
        put_update(self.out, update);
        if let Some(list) = &mut self.list {
            list.2 = count + 1;
        }
        true
    }

    /// Room left for entries, in bytes.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.out.len() + 1 + TAG_LEN)
    }

    /// Closes the lists and signs.
    pub fn finish(mut self, ring: &KeyRing) {
        if self.list.is_none() {
            // No updates were offered: still write their (empty) count.
            self.open(1);
        }
        self.close();
        let tag = ring.sign(self.out);
        self.out.extend_from_slice(&tag);
        debug_assert!(self.out.len() <= MAX_DATAGRAM, "push checks the room before every entry");
    }

    fn open(&mut self, width: usize) {
        let at = self.out.len();
        self.out.resize(at + width, 0);
        self.list = Some((at, width, 0));
    }

    fn close(&mut self) {
        if let Some((at, width, count)) = self.list.take() {
            if width == 1 {
                self.out[at] = count as u8;
            } else {
                self.out[at..at + 2].copy_from_slice(&count.to_be_bytes());
            }
        }
    }
}

/// Encoded length of one entry.
pub fn update_len(update: &Update<'_>) -> usize {
    let addr = if update.addr.is_ipv4() { 1 + 4 + 2 } else { 1 + 16 + 2 };
    let accuser = if update.state.has_accuser() { 1 + update.accuser.map_or(0, str::len) } else { 0 };
    1 + 4 + 1 + update.name.len() + addr + accuser
}

/// Whether `name` may name a member: 1 to [`MAX_NAME`] bytes, no control characters or
/// whitespace (names appear in logs, metrics and the API).
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len()) && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    debug_assert!(name.len() <= MAX_NAME, "names are checked before they are sent");
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

fn put_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn put_update(out: &mut Vec<u8>, update: &Update<'_>) {
    out.push(update.state.code());
    out.extend_from_slice(&update.incarnation.to_be_bytes());
    put_name(out, update.name);
    put_addr(out, update.addr);
    if update.state.has_accuser() {
        put_name(out, update.accuser.unwrap_or(""));
    }
}

fn read_update<'a>(reader: &mut Reader<'a>) -> Result<Update<'a>, Rejection> {
    let state = MemberState::from_code(reader.u8()?).ok_or(Rejection::Malformed)?;
    let incarnation = reader.u32()?;
    let name = reader.name()?;
    let addr = reader.addr()?;
    // An empty accuser is allowed on the wire (the sender did not know who accused).
    let accuser = if state.has_accuser() { Some(reader.str(0)?) } else { None };
    Ok(Update { state, incarnation, name, addr, accuser })
}

/// A cursor that checks every read against the bytes present.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Rejection> {
        let end =
            self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or(Rejection::Truncated)?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, Rejection> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Rejection> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Rejection> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Rejection> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }

    /// A length-prefixed string of at least `min` bytes, valid as a name when not empty.
    fn str(&mut self, min: usize) -> Result<&'a str, Rejection> {
        let len = usize::from(self.u8()?);
        if len < min || len > MAX_NAME {
            return Err(Rejection::Malformed);
        }
        let text = core::str::from_utf8(self.take(len)?).map_err(|_| Rejection::Malformed)?;
        if !text.is_empty() && !valid_name(text) {
            return Err(Rejection::Malformed);
        }
        Ok(text)
    }

    fn name(&mut self) -> Result<&'a str, Rejection> {
        self.str(1)
    }

    fn addr(&mut self) -> Result<SocketAddr, Rejection> {
        let ip = match self.u8()? {
            4 => {
                let b = self.take(4)?;
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            }
            6 => {
                let b: [u8; 16] = self.take(16)?.try_into().map_err(|_| Rejection::Truncated)?;
                IpAddr::V6(Ipv6Addr::from(b))
            }
            _ => return Err(Rejection::Malformed),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }

    /// A counted list of updates, each validated now so that [`Entries::iter`] cannot fail.
    fn entries(&mut self, max: u16) -> Result<Entries<'a>, Rejection> {
        let count = if max > u16::from(u8::MAX) { self.u16()? } else { u16::from(self.u8()?) };
        let start = self.at;
        for _ in 0..count {
            read_update(self)?;
        }
        Ok(Entries { raw: &self.bytes[start..self.at], count })
    }
}

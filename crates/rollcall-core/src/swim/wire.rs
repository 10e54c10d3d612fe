//! The peer protocol's datagram: a versioned, authenticated UDP message carrying one SWIM
//! message (ping, ack, nack, ping-req, sync page, gossip) and piggybacked membership updates.
//!
//! The layout (version 2) is documented byte by byte in `docs/PEER.md`, with a worked
//! example. Version 2 is version 1 made lean: a 16-byte tag (HMAC-SHA256 truncated), two
//! bytes of the cluster id on the wire (all eight are signed), varints for key id,
//! incarnations and sequence numbers, addresses only in `up` entries, an accuser that is
//! the sender written as one flag bit, and sync pages that carry a digest of the table so
//! that peers that agree exchange two entries instead of two full pages.
//!
//! Decoding never panics, never trusts a declared length and never allocates: every count
//! and length is checked against the bytes actually present, every varint must be in its
//! shortest form (the encoding is canonical), and the tag is verified before any field past
//! the key id is read.
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
use crate::wire::DecodeError as TagError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Largest datagram a peer sends or accepts, in bytes: under a 1500-byte Ethernet MTU with
/// room for IPv6 and UDP headers, so a datagram is never fragmented.
pub const MAX_DATAGRAM: usize = 1400;
/// The first two bytes of every peer datagram: `RS` (heartbeats start with `RC`).
pub const MAGIC: [u8; 2] = *b"RS";
/// The peer protocol version this code speaks.
pub const VERSION: u8 = 2;
/// Longest member name, in bytes of UTF-8.
pub const MAX_NAME: usize = 64;
/// Bytes of HMAC-SHA256 kept as the tag: 128 bits, so a forgery succeeds with probability
/// 2^-128 per attempt (NIST SP 800-107 allows truncation to this length and more).
pub const TAG_LEN: usize = 16;
/// Most entries in one list (a sync page, or the piggybacked updates): a one-byte count.
pub const MAX_ENTRIES: usize = 255;
/// Bytes before the key id: magic, version and kind (one byte), the cluster id's wire byte.
const FIXED: usize = 2 + 1 + 1;
/// The shortest possible datagram: fixed header, a one-byte key id and incarnation, a
/// one-byte name, the tag (a gossip without updates).
pub const MIN_LEN: usize = FIXED + 1 + 1 + 2 + TAG_LEN;
/// An entry's first byte: the state's code, this bit when the accuser is the sender...
const SENDER_ACCUSES: u8 = 0x10;
/// ...and this one when an `up` entry carries the member's address.
const HAS_ADDR: u8 = 0x20;

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

/// One membership statement: "`name` is in `state` at `incarnation`".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Update<'a> {
    pub state: MemberState,
    pub incarnation: u32,
    pub name: &'a str,
    /// Where the member is: sent in `up` statements only (the only ones that add a member or
    /// move it), and there only when the receiver may not have it (sync pages, a member new
    /// to the sender or at a new address). Always `None` in other decoded statements, and
    /// ignored when encoding them.
    pub addr: Option<SocketAddr>,
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
    /// With a `digest` of the sender's table, a recipient whose own digest is the same
    /// answers with a short page (both tables agree); otherwise with a full one.
    Sync { reply: bool, digest: Option<u64>, entries: Entries<'a> },
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
    /// The datagram's sender, which an entry may name as its accuser with one bit.
    sender: &'a str,
}

impl<'a> Entries<'a> {
    pub const EMPTY: Entries<'static> = Entries { raw: &[], count: 0, sender: "" };

    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = Update<'a>> + 'a {
        let mut reader = Reader { bytes: self.raw, at: 0 };
        let sender = self.sender;
        // Validated at decode: every entry parses, so `map_while` never stops early.
        (0..self.count).map_while(move |_| read_update(&mut reader, sender).ok())
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

/// The 64-bit id of a cluster name: FNV-1a of its UTF-8 bytes. One of its bytes travels in
/// every datagram and all eight are signed: the byte tells a peer of another cluster from a
/// forger (255 times in 256; the others count as `bad_tag`), and the signed eight make sure
/// a datagram of another cluster is never taken for one of ours, whatever its key.
pub fn cluster_id(cluster: &str) -> u64 {
    fnv1a(cluster.as_bytes())
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The cluster id's byte on the wire: its top eight bits.
fn cluster_wire(cluster: u64) -> u8 {
    cluster.to_be_bytes()[0]
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
    // The version is the high half of the byte (version 1 sent 1 here: version 0 to us).
    if bytes[2] >> 4 != VERSION {
        return Err(Rejection::UnsupportedVersion);
    }
    let kind = bytes[2] & 0x0f;
    if bytes[3] != cluster_wire(cluster) {
        return Err(Rejection::WrongCluster);
    }
    let (signed, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    let mut reader = Reader { bytes: signed, at: FIXED };
    let key_id = u16::try_from(reader.varint()?).map_err(|_| Rejection::Malformed)?;
    ring.verify_truncated(key_id, &cluster.to_be_bytes(), signed, tag).map_err(|error| match error {
        TagError::UnknownKey => Rejection::UnknownKey,
        _ => Rejection::BadTag,
    })?;
    // Authenticated from here on; the rest must parse exactly up to the tag.
    let incarnation = reader.varint()?;
    let sender = reader.name()?;
    let body = match kind {
        1 => Body::Ping { seq: reader.varint()?, target: reader.name()? },
        2 => Body::Ack { seq: reader.varint()? },
        3 => Body::Nack { seq: reader.varint()? },
        4 => Body::PingReq { seq: reader.varint()?, target: reader.name()?, addr: reader.addr()? },
        5 => {
            let flags = reader.u8()?;
            if flags & !(SYNC_REPLY | SYNC_DIGEST) != 0 {
                return Err(Rejection::Malformed);
            }
            let digest = if flags & SYNC_DIGEST != 0 { Some(reader.u64()?) } else { None };
            Body::Sync { reply: flags & SYNC_REPLY != 0, digest, entries: reader.entries(sender)? }
        }
        6 => Body::Gossip,
        _ => return Err(Rejection::Malformed),
    };
    // No updates: no count either (one encoding: a count, when present, is not zero).
    let updates = if reader.at == signed.len() {
        Entries { raw: &[], count: 0, sender }
    } else {
        let updates = reader.entries(sender)?;
        if updates.is_empty() {
            return Err(Rejection::Malformed);
        }
        updates
    };
    if reader.at != signed.len() {
        return Err(Rejection::Malformed);
    }
    Ok(Datagram { key_id, sender, incarnation, body, updates })
}

/// A sync's flags: a page is wanted back; a digest follows.
const SYNC_REPLY: u8 = 0x01;
const SYNC_DIGEST: u8 = 0x02;

/// Builds one datagram in a caller's buffer: header and body first, then entries and
/// updates while they fit, then the tag. Sizes are tracked so the result never exceeds
/// `limit` (at most [`MAX_DATAGRAM`]). Public for the fuzz target, which re-encodes what
/// [`decode`] accepted to check that the encoding is canonical.
pub struct Writer<'b, 's> {
    out: &'b mut Vec<u8>,
    limit: usize,
    cluster: u64,
    sender: &'s str,
    /// Where the count of the list being written sits, the count so far, and whether it is
    /// the update list (left out entirely when empty).
    list: Option<(usize, u8, bool)>,
}

impl<'b, 's> Writer<'b, 's> {
    /// Starts a datagram. `sender` must be a valid name (checked when the peer was built).
    pub fn new(
        out: &'b mut Vec<u8>,
        limit: usize,
        cluster: u64,
        key_id: u16,
        sender: &'s str,
        inc: u32,
        body: &Body<'_>,
    ) -> Writer<'b, 's> {
        out.clear();
        out.extend_from_slice(&MAGIC);
        out.push((VERSION << 4) | body.code());
        out.push(cluster_wire(cluster));
        put_varint(out, u32::from(key_id));
        put_varint(out, inc);
        put_name(out, sender);
        match *body {
            Body::Ping { seq, target } => {
                put_varint(out, seq);
                put_name(out, target);
            }
            Body::Ack { seq } | Body::Nack { seq } => put_varint(out, seq),
            Body::PingReq { seq, target, addr } => {
                put_varint(out, seq);
                put_name(out, target);
                put_addr(out, addr);
            }
            // The entries of a sync follow through `begin_entries`; the body's own list is
            // ignored here (a writer writes what it is handed entry by entry).
            Body::Sync { reply, digest, .. } => {
                let flags =
                    if reply { SYNC_REPLY } else { 0 } | if digest.is_some() { SYNC_DIGEST } else { 0 };
                out.push(flags);
                if let Some(digest) = digest {
                    out.extend_from_slice(&digest.to_be_bytes());
                }
            }
            Body::Gossip => {}
        }
        Writer { out, limit: limit.min(MAX_DATAGRAM), cluster, sender, list: None }
    }

    /// Opens the sync page's entry list. Call once, for `Sync` only.
    pub fn begin_entries(&mut self) {
        self.open(false);
    }

    /// Opens the piggybacked update list. Call once, after the body (and the sync page, if
    /// any).
    pub fn begin_updates(&mut self) {
        self.close();
        self.open(true);
    }

    /// Appends one entry to the open list if it fits before the tag; false if it does not.
    pub fn push(&mut self, update: &Update<'_>) -> bool {
        let Some((_, count, _)) = self.list else { return false };
        // No byte is held back for the update count after a sync page: with no updates it is
        // left out, and `begin_updates` writes it before any update is measured.
        if usize::from(count) == MAX_ENTRIES || self.out.len() + self.entry_len(update) + TAG_LEN > self.limit
        {
            return false;
        }
        put_update(self.out, update, self.sender);
        if let Some(list) = &mut self.list {
            list.1 = count + 1;
        }
        true
    }

    /// Room left for entries, in bytes.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.out.len() + TAG_LEN)
    }

    /// Encoded length of one entry in this datagram.
    pub fn entry_len(&self, update: &Update<'_>) -> usize {
        let addr = match update.addr {
            Some(addr) if update.state == MemberState::Up => addr_len(addr),
            _ => 0,
        };
        let accuser = match update.accuser {
            _ if !update.state.has_accuser() => 0,
            Some(name) if same_name(name, self.sender) => 0,
            accuser => 1 + accuser.map_or(0, str::len),
        };
        1 + varint_len(update.incarnation) + 1 + update.name.len() + addr + accuser
    }

    /// Closes the lists and signs.
    pub fn finish(mut self, ring: &KeyRing) {
        self.close();
        let tag = ring.sign_with(&self.cluster.to_be_bytes(), self.out);
        self.out.extend_from_slice(&tag[..TAG_LEN]);
        debug_assert!(self.out.len() <= MAX_DATAGRAM, "push checks the room before every entry");
    }

    fn open(&mut self, updates: bool) {
        let at = self.out.len();
        self.out.push(0);
        self.list = Some((at, 0, updates));
    }

    fn close(&mut self) {
        match self.list.take() {
            Some((at, 0, true)) => self.out.truncate(at),
            Some((at, count, _)) => self.out[at] = count,
            None => {}
        }
    }
}

/// Whether `name` may name a member: 1 to [`MAX_NAME`] bytes, no control characters or
/// whitespace (names appear in logs, metrics and the API).
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len()) && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn addr_len(addr: SocketAddr) -> usize {
    if addr.is_ipv4() { 1 + 4 + 2 } else { 1 + 16 + 2 }
}

fn varint_len(value: u32) -> usize {
    match value {
        0..0x80 => 1,
        0x80..0x4000 => 2,
        0x4000..0x20_0000 => 3,
        0x20_0000..0x1000_0000 => 4,
        _ => 5,
    }
}

/// LEB128: seven bits per byte, least significant first, the top bit set on all but the last.
fn put_varint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
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

fn put_update(out: &mut Vec<u8>, update: &Update<'_>, sender: &str) {
    let by_sender = update.state.has_accuser() && update.accuser.is_some_and(|name| same_name(name, sender));
    let addr = update.addr.filter(|_| update.state == MemberState::Up);
    let flags = if by_sender { SENDER_ACCUSES } else { 0 } | if addr.is_some() { HAS_ADDR } else { 0 };
    out.push(update.state.code() | flags);
    put_varint(out, update.incarnation);
    put_name(out, update.name);
    if let Some(addr) = addr {
        put_addr(out, addr);
    }
    if update.state.has_accuser() && !by_sender {
        put_name_or_empty(out, update.accuser.unwrap_or(""));
    }
}

/// `a == b`, by address first: a statement this peer made names it with the very string
/// the writer has for the sender (the table's own identity), and comparing bytes would cost
/// a read of both.
fn same_name(a: &str, b: &str) -> bool {
    core::ptr::eq(a, b) || a == b
}

fn put_name_or_empty(out: &mut Vec<u8>, name: &str) {
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

fn read_update<'a>(reader: &mut Reader<'a>, sender: &'a str) -> Result<Update<'a>, Rejection> {
    let head = reader.u8()?;
    let state = MemberState::from_code(head & !(SENDER_ACCUSES | HAS_ADDR)).ok_or(Rejection::Malformed)?;
    let by_sender = head & SENDER_ACCUSES != 0;
    let has_addr = head & HAS_ADDR != 0;
    if (by_sender && !state.has_accuser()) || (has_addr && state != MemberState::Up) {
        return Err(Rejection::Malformed);
    }
    let incarnation = reader.varint()?;
    let name = reader.name()?;
    let addr = if has_addr { Some(reader.addr()?) } else { None };
    let accuser = match state.has_accuser() {
        false => None,
        true if by_sender => Some(sender),
        true => {
            // An empty accuser is allowed on the wire (the sender did not know who accused);
            // the sender's own name must use the flag (one encoding per statement).
            let accuser = reader.str(0)?;
            if accuser == sender {
                return Err(Rejection::Malformed);
            }
            Some(accuser)
        }
    };
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

    fn u64(&mut self) -> Result<u64, Rejection> {
        let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| Rejection::Truncated)?;
        Ok(u64::from_be_bytes(b))
    }

    /// A LEB128 `u32` in its shortest form: at most five bytes, no trailing zero byte, no
    /// bits beyond 32 (anything else is `Malformed`, so that the encoding is canonical).
    fn varint(&mut self) -> Result<u32, Rejection> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let byte = self.u8()?;
            let bits = u32::from(byte & 0x7f);
            if i == 4 && bits > 0x0f {
                return Err(Rejection::Malformed);
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                if i > 0 && byte == 0 {
                    return Err(Rejection::Malformed);
                }
                return Ok(value);
            }
        }
        Err(Rejection::Malformed)
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
    fn entries(&mut self, sender: &'a str) -> Result<Entries<'a>, Rejection> {
        let count = self.u8()?;
        let start = self.at;
        for _ in 0..count {
            read_update(self, sender)?;
        }
        Ok(Entries { raw: &self.bytes[start..self.at], count: u16::from(count), sender })
    }
}

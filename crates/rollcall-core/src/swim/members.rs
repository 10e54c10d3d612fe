//! The member table: one compact slot per member ever heard of, an index by name, the probe
//! order, and the list of members believed down (for rate-limited reconnects).
//!
//! Sizes matter: a simulation of 10,000 peers holds 10^8 slots. A slot is 8 bytes (an
//! identity number, an incarnation, a state and two flags packed in the number's top bits).
//! Identities live apart from the slots: those of a [`Roster`] (the members every peer
//! starts with, shared by every peer of a process) cost a peer nothing more, and a roster
//! member is found by name through the roster's own index, so a table seeded from a roster
//! costs 12 bytes per member (its slot and its place in the probe ring). Members heard of
//! otherwise have an identity and an index entry of their own (about 40 bytes more).
//! Nothing here scans the table per tick: probe targets come from a shuffled ring walked by a
//! cursor, random members from random positions in it.

use super::names::NameIndex;
use super::wire::MemberState;
use crate::rng::Rng;
use core::hash::{BuildHasherDefault, Hasher};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Who a member is: its name and the address its datagrams come from. Shared (`Arc`) by the
/// table, queued updates and events; a new address means a new `MemberId`.
#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId {
    pub name: Box<str>,
    pub addr: SocketAddr,
}

impl MemberId {
    pub fn new(name: &str, addr: SocketAddr) -> Arc<MemberId> {
        Arc::new(MemberId { name: name.into(), addr })
    }
}

/// A name's length and first bytes, kept inline: enough to tell nearly any other name from
/// it without reading the name itself (the peer's own name is compared with every
/// datagram's sender and every statement's subject, and at 10,000 peers reading it is a
/// cache miss per datagram).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NameTag {
    len: usize,
    head: [u8; 16],
}

impl NameTag {
    pub fn new(name: &str) -> NameTag {
        let mut head = [0; 16];
        let n = name.len().min(head.len());
        head[..n].copy_from_slice(&name.as_bytes()[..n]);
        NameTag { len: name.len(), head }
    }

    /// False if `name` is not the tagged name; true if it may be (compare the names then).
    pub fn may_be(&self, name: &str) -> bool {
        let n = self.len.min(self.head.len());
        name.len() == self.len && name.as_bytes()[..n] == self.head[..n]
    }
}

/// How the next probe target is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProbeOrder {
    /// SWIM's randomised round-robin (section 4.3 of the paper): every member exactly once per
    /// round, in an order shuffled at the start of each round; new members are inserted at a
    /// random place still ahead of the cursor. Bounds the time to first detection by one round.
    #[default]
    RoundRobin,
    /// SWIM's basic protocol: a member chosen uniformly at random each period. Kept for
    /// validation against the paper's formulas (and for comparison).
    Uniform,
}

/// The members a table may start with (a static cluster file, or the simulator's cluster),
/// in order, with an index by name. Shared (`Arc`) by every peer of a process that starts
/// from it: see [`Peer::add_roster`](super::Peer::add_roster). A later duplicate of a name
/// is dropped, as [`Peer::add_known`](super::Peer::add_known) would drop it.
#[derive(Debug)]
pub struct Roster {
    ids: Vec<Arc<MemberId>>,
    index: NameIndex,
    /// Each member's share of a table digest when it is `up` at incarnation 0, computed once
    /// here rather than once per peer and member.
    shares: Vec<u64>,
}

impl Roster {
    /// A roster of `ids`, in their order; at most [`Roster::MAX`] of them are kept.
    pub fn new(ids: impl IntoIterator<Item = Arc<MemberId>>) -> Arc<Roster> {
        let ids: Vec<Arc<MemberId>> = ids.into_iter().collect();
        let index = NameIndex::with_capacity(ids.len().min(Roster::MAX));
        let mut roster = Roster { ids: Vec::with_capacity(ids.len()), index, shares: Vec::new() };
        for id in ids {
            if roster.ids.len() >= Roster::MAX {
                break;
            }
            if roster.find(&id.name).is_some() {
                continue;
            }
            let number = roster.ids.len() as u32;
            roster.index.insert(&id.name, number);
            roster.shares.push(contribution(&id, 0, MemberState::Up));
            roster.ids.push(id);
        }
        Arc::new(roster)
    }

    /// The most members a roster (and a table) holds: identity numbers have 27 bits.
    pub const MAX: usize = IDENTITY_NUMBER as usize;

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The members, in the roster's order.
    pub fn ids(&self) -> impl Iterator<Item = &Arc<MemberId>> + '_ {
        self.ids.iter()
    }

    fn find(&self, name: &str) -> Option<u32> {
        self.index.find(name, |number| &self.ids[number as usize].name)
    }
}

/// A slot's identity number: below this bit, a roster member's; with it, the table's own.
const OWN: u32 = 1 << 27;
const IDENTITY_NUMBER: u32 = OWN - 1;
const STATE_SHIFT: u32 = 28;
const IN_RING: u32 = 1 << 30;
const IN_DOWN: u32 = 1 << 31;

/// One member in 8 bytes: `packed` holds the identity (27 bits of number and the [`OWN`]
/// bit), the state (2 bits) and the two flags; see [`Members::slot`] for the readable view.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    packed: u32,
    incarnation: u32,
}

impl Slot {
    fn new(identity: u32, incarnation: u32, state: MemberState) -> Slot {
        debug_assert_eq!(identity & !(OWN | IDENTITY_NUMBER), 0, "identities have 28 bits");
        Slot { packed: identity | (state as u32) << STATE_SHIFT, incarnation }
    }

    fn identity(self) -> u32 {
        self.packed & (OWN | IDENTITY_NUMBER)
    }

    fn state(self) -> MemberState {
        match (self.packed >> STATE_SHIFT) & 3 {
            0 => MemberState::Up,
            1 => MemberState::Suspect,
            2 => MemberState::Down,
            _ => MemberState::Left,
        }
    }

    fn set_state(&mut self, state: MemberState) {
        self.packed = (self.packed & !(3 << STATE_SHIFT)) | (state as u32) << STATE_SHIFT;
    }

    fn flag(self, flag: u32) -> bool {
        self.packed & flag != 0
    }

    fn set_flag(&mut self, flag: u32, on: bool) {
        if on {
            self.packed |= flag;
        } else {
            self.packed &= !flag;
        }
    }
}

/// What the rest of the core reads of a slot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotView<'a> {
    pub id: &'a Arc<MemberId>,
    pub incarnation: u32,
    pub state: MemberState,
}

/// `Arc<MemberId>` keyed by its name, so the index can be searched with a `&str`.
#[derive(Clone, Debug)]
struct NameKey(Arc<MemberId>);

impl Borrow<str> for NameKey {
    fn borrow(&self) -> &str {
        &self.0.name
    }
}
impl PartialEq for NameKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}
impl Eq for NameKey {}
impl core::hash::Hash for NameKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must hash like `str` for `Borrow<str>` lookups to work.
        (*self.0.name).hash(state);
    }
}

/// FNV-1a as a `Hasher`: a fixed function, so nothing depends on a random seed. Iteration
/// order of the index never reaches any output (the table is walked through its `Vec`).
#[derive(Default)]
pub(crate) struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for &b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

pub(crate) struct Members {
    /// Slot 0 is this peer itself.
    slots: Vec<Slot>,
    /// The roster the table was seeded from, if any: identities without the [`OWN`] bit.
    roster: Option<Arc<Roster>>,
    /// How the roster's members sit in the table: see [`Seeded`].
    seeded: Seeded,
    /// Identities with the [`OWN`] bit: each belongs to one slot (a new address replaces it).
    own: Vec<Arc<MemberId>>,
    /// Slots of members not found through the roster, by name.
    index: HashMap<NameKey, u32, BuildHasherDefault<Fnv>>,
    /// Indices of members to probe, shuffled once per round; may hold stale entries (members
    /// now down or left), skipped when met and dropped at the next shuffle.
    ring: Vec<u32>,
    cursor: usize,
    /// Indices of members declared down, for reconnect attempts; stale entries dropped lazily.
    down: Vec<u32>,
    /// Each slot's state again, in 2 bits (32 slots a word): what is asked of a
    /// statement's accuser (is it still one to listen to?) and of its subject (is it news?)
    /// for every statement received, read here from 2.5 KB per 10,000 members, likely in
    /// cache, instead of from two random slots of 80 KB.
    states: Vec<u64>,
    /// How many slots are in each state, self included: `[up, suspect, down, left]`.
    counts: [u32; 4],
    /// XOR of every slot's [`contribution`], kept as slots change: what sync pages compare.
    digest: u64,
}

/// A roster seeded into a table holding only this peer: slots `1..=len` are the roster's
/// first members in order, but for `skip` (this peer's own name, if the roster has it). So
/// a roster member's slot is a function of its roster number, and needs no index entry.
#[derive(Clone, Copy, Debug, Default)]
struct Seeded {
    len: u32,
    skip: Option<u32>,
}

impl Seeded {
    fn slot(self, number: u32) -> Option<u32> {
        let slot = match self.skip {
            Some(skip) if number == skip => return None,
            Some(skip) if number > skip => number,
            _ => number + 1,
        };
        (slot <= self.len).then_some(slot)
    }
}

impl Members {
    pub fn new(me: Arc<MemberId>, incarnation: u32) -> Members {
        let mut members = Members {
            slots: Vec::new(),
            roster: None,
            seeded: Seeded::default(),
            own: Vec::new(),
            index: HashMap::default(),
            ring: Vec::new(),
            cursor: 0,
            down: Vec::new(),
            states: vec![0],
            counts: [0; 4],
            digest: 0,
        };
        members.digest = contribution(&me, incarnation, MemberState::Up);
        members.index.insert(NameKey(me.clone()), 0);
        members.own.push(me);
        members.slots.push(Slot::new(OWN, incarnation, MemberState::Up));
        members.counts[0] = 1;
        members
    }

    /// Makes room for `more` members at once (a warm start), so the table grows once.
    pub fn reserve(&mut self, more: usize) {
        self.slots.reserve_exact(more);
        self.own.reserve_exact(more);
        self.index.reserve(more);
        self.ring.reserve_exact(more);
    }

    /// Adds the first `room` members of `roster` but this peer, `up` at incarnation 0, in
    /// the roster's order: as [`Members::insert`] would one by one (the same slots, ring
    /// and random draws), without an identity or index entry per member. The table must
    /// hold only this peer.
    pub fn seed(&mut self, roster: &Arc<Roster>, room: usize, rng: &mut Rng) {
        assert!(
            self.slots.len() == 1 && self.roster.is_none(),
            "a roster seeds a table holding only its owner"
        );
        let skip = roster.find(&self.own[0].name);
        let len = (roster.len() - usize::from(skip.is_some())).min(room);
        self.slots.reserve_exact(len);
        self.ring.reserve_exact(len);
        let numbers = (0..roster.len() as u32).filter(|&number| Some(number) != skip).take(len);
        for number in numbers {
            let index = self.slots.len() as u32;
            self.slots.push(Slot::new(number, 0, MemberState::Up));
            self.digest ^= roster.shares[number as usize];
            self.track(index, rng);
        }
        self.counts[MemberState::Up as usize] += len as u32;
        // `up` is 0 in the state words.
        self.states.resize(self.slots.len().div_ceil(32), 0);
        self.seeded = Seeded { len: len as u32, skip };
        self.roster = Some(roster.clone());
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the table holds `max` members, or as many as identities can number.
    pub fn full(&self, max: usize) -> bool {
        self.slots.len() >= max.min(Roster::MAX)
    }

    pub fn find(&self, name: &str) -> Option<u32> {
        if let Some(roster) = &self.roster
            && let Some(slot) = roster.find(name).and_then(|number| self.seeded.slot(number))
        {
            return Some(slot);
        }
        self.index.get(name).copied()
    }

    pub fn slot(&self, index: u32) -> SlotView<'_> {
        let slot = self.slots[index as usize];
        SlotView { id: self.identity(slot.identity()), incarnation: slot.incarnation, state: slot.state() }
    }

    fn identity(&self, identity: u32) -> &Arc<MemberId> {
        if identity & OWN != 0 {
            &self.own[(identity & IDENTITY_NUMBER) as usize]
        } else {
            let roster = self.roster.as_ref().expect("roster identities come with a roster");
            &roster.ids[identity as usize]
        }
    }

    /// A member's incarnation, read from its slot alone (not its identity).
    pub fn incarnation(&self, index: u32) -> u32 {
        self.slots[index as usize].incarnation
    }

    /// A member's state, from the state words (the `states` field), not its slot.
    pub fn state(&self, index: u32) -> MemberState {
        let state = match self.states[index as usize / 32] >> (index % 32 * 2) & 3 {
            0 => MemberState::Up,
            1 => MemberState::Suspect,
            2 => MemberState::Down,
            _ => MemberState::Left,
        };
        debug_assert_eq!(state, self.slots[index as usize].state(), "state words follow slots");
        state
    }

    /// Members up or suspect, self included: SWIM's `n`.
    pub fn live(&self) -> u32 {
        self.counts[0] + self.counts[1]
    }

    pub fn count(&self, state: MemberState) -> u32 {
        self.counts[state as usize]
    }

    /// A digest of what sync pages would say: equal in two peers whose tables agree on
    /// every member's name, address, incarnation and whether it is alive (`up` or
    /// `suspect`), `left`, or `down` (a 64-bit hash: unequal tables collide with
    /// probability about 2^-64, and then only skip one exchange).
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Adds a member (the caller checked it is unknown and the table is not [`full`]).
    ///
    /// [`full`]: Members::full
    pub fn insert(&mut self, id: Arc<MemberId>, incarnation: u32, state: MemberState, rng: &mut Rng) -> u32 {
        assert!(self.own.len() < Roster::MAX, "the caller checks that the table is not full");
        let index = self.slots.len() as u32;
        self.digest ^= contribution(&id, incarnation, state);
        self.index.insert(NameKey(id.clone()), index);
        self.slots.push(Slot::new(OWN | self.own.len() as u32, incarnation, state));
        self.own.push(id);
        self.counts[state as usize] += 1;
        self.states.resize(self.slots.len().div_ceil(32), 0);
        self.mark(index, state);
        self.track(index, rng);
        index
    }

    /// Changes a member's state, incarnation and (with a new address) identity.
    pub fn set(
        &mut self,
        index: u32,
        state: MemberState,
        incarnation: u32,
        id: Option<Arc<MemberId>>,
        rng: &mut Rng,
    ) {
        let old = self.slot(index);
        let share = contribution(old.id, old.incarnation, old.state);
        let old_state = old.state;
        if let Some(id) = &id {
            debug_assert_eq!(id.name, old.id.name, "an identity change keeps the name");
        }
        self.digest ^= share;
        self.counts[old_state as usize] -= 1;
        self.counts[state as usize] += 1;
        if let Some(id) = id {
            self.replace_identity(index, id);
        }
        let slot = &mut self.slots[index as usize];
        slot.set_state(state);
        slot.incarnation = incarnation;
        self.mark(index, state);
        let new = self.slot(index);
        self.digest ^= contribution(new.id, new.incarnation, new.state);
        if index != 0 {
            self.track(index, rng);
        }
    }

    /// Whether a member is `down` or `left` (from the state words).
    pub fn gone(&self, index: u32) -> bool {
        matches!(self.state(index), MemberState::Down | MemberState::Left)
    }

    /// Keeps the state word of slot `index` in step with its new `state`.
    fn mark(&mut self, index: u32, state: MemberState) {
        let shift = index % 32 * 2;
        let word = &mut self.states[index as usize / 32];
        *word = (*word & !(3 << shift)) | (state as u64) << shift;
    }

    /// A member's new address: a new identity of the slot's own (replacing its old own one,
    /// so identities never outnumber slots).
    fn replace_identity(&mut self, index: u32, id: Arc<MemberId>) {
        let slot = &mut self.slots[index as usize];
        let identity = slot.identity();
        if identity & OWN != 0 {
            self.own[(identity & IDENTITY_NUMBER) as usize] = id.clone();
        } else {
            let number = OWN | self.own.len() as u32;
            slot.packed = (slot.packed & !(OWN | IDENTITY_NUMBER)) | number;
            self.own.push(id.clone());
        }
        // Same name, so an index key is equal; replace it to drop the old address. A roster
        // member is found through the roster, by name, whatever its address.
        if self.index.contains_key(&*id.name) {
            self.index.insert(NameKey(id), index);
        }
    }

    /// Puts a live member in the probe ring, and a down one in the reconnect list.
    fn track(&mut self, index: u32, rng: &mut Rng) {
        let slot = &mut self.slots[index as usize];
        match slot.state() {
            MemberState::Up | MemberState::Suspect if !slot.flag(IN_RING) => {
                slot.set_flag(IN_RING, true);
                // A random place between the cursor and the end: probed later in this round.
                self.ring.push(index);
                let ahead = self.ring.len() - self.cursor;
                let at = self.cursor + rng.below(ahead as u64) as usize;
                let last = self.ring.len() - 1;
                self.ring.swap(at, last);
            }
            MemberState::Down if !slot.flag(IN_DOWN) => {
                slot.set_flag(IN_DOWN, true);
                self.down.push(index);
            }
            _ => {}
        }
    }

    fn probeable(&self, index: u32) -> bool {
        matches!(self.state(index), MemberState::Up | MemberState::Suspect)
    }
    /// The next member to probe, or `None` if there is nobody else alive.
    pub fn next_target(&mut self, order: ProbeOrder, rng: &mut Rng) -> Option<u32> {
        match order {
            ProbeOrder::RoundRobin => {
                // At most one pass over the ring plus one reshuffle: amortised O(1) per probe.
                for _ in 0..=self.ring.len() {
                    if self.cursor >= self.ring.len() {
                        self.reshuffle(rng);
                        if self.ring.is_empty() {
                            return None;
                        }
                    }
                    let index = self.ring[self.cursor];
                    self.cursor += 1;
                    if self.probeable(index) {
                        return Some(index);
                    }
                }
                None
            }
            ProbeOrder::Uniform => {
                if self.live() <= 1 {
                    return None;
                }
                if self.ring.len() > 2 * self.live() as usize {
                    // Mostly stale: compact so that random picks rarely miss.
                    self.reshuffle(rng);
                }
                self.random_live(rng, &[])
            }
        }
    }

    /// A uniformly random live member other than self and `exclude`, or `None` after a
    /// bounded number of misses.
    pub fn random_live(&self, rng: &mut Rng, exclude: &[u32]) -> Option<u32> {
        if self.ring.is_empty() {
            return None;
        }
        for _ in 0..32 {
            let index = self.ring[rng.below(self.ring.len() as u64) as usize];
            if self.probeable(index) && !exclude.contains(&index) {
                return Some(index);
            }
        }
        None
    }

    /// Up to `k` distinct random members that are up (not suspect), other than `exclude`.
    pub fn random_up(&self, rng: &mut Rng, k: usize, exclude: u32) -> Vec<u32> {
        let mut chosen = Vec::with_capacity(k);
        if self.ring.is_empty() {
            return chosen;
        }
        for _ in 0..(4 * k + 8) {
            if chosen.len() == k {
                break;
            }
            let index = self.ring[rng.below(self.ring.len() as u64) as usize];
            if self.state(index) == MemberState::Up && index != exclude && !chosen.contains(&index) {
                chosen.push(index);
            }
        }
        chosen
    }

    /// A random member believed down, or `None`. Drops stale entries it meets.
    pub fn random_down(&mut self, rng: &mut Rng) -> Option<u32> {
        for _ in 0..8 {
            if self.down.is_empty() {
                return None;
            }
            let at = rng.below(self.down.len() as u64) as usize;
            let index = self.down[at];
            if self.state(index) == MemberState::Down {
                return Some(index);
            }
            self.down.swap_remove(at);
            self.slots[index as usize].set_flag(IN_DOWN, false);
        }
        None
    }

    /// Starts a new round: drops stale entries and shuffles (Fisher-Yates).
    fn reshuffle(&mut self, rng: &mut Rng) {
        let slots = &mut self.slots;
        self.ring.retain(|&index| {
            let slot = &mut slots[index as usize];
            let keep = matches!(slot.state(), MemberState::Up | MemberState::Suspect);
            if !keep {
                slot.set_flag(IN_RING, false);
            }
            keep
        });
        for i in (1..self.ring.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            self.ring.swap(i, j);
        }
        self.cursor = 0;
    }
}

/// One slot's share of the table digest: a hash of what a sync page says about it. `up` and
/// `suspect` hash alike (a suspicion is spread by gossip, not by pages).
fn contribution(id: &MemberId, incarnation: u32, state: MemberState) -> u64 {
    let class: u8 = match state {
        MemberState::Up | MemberState::Suspect => 1,
        MemberState::Down => 2,
        MemberState::Left => 3,
    };
    let mut hasher = Fnv::default();
    hasher.write(id.name.as_bytes());
    // A separator no name contains (names have no control characters).
    hasher.write(&[0]);
    match id.addr.ip() {
        std::net::IpAddr::V4(ip) => hasher.write(&ip.octets()),
        std::net::IpAddr::V6(ip) => hasher.write(&ip.octets()),
    }
    hasher.write(&id.addr.port().to_be_bytes());
    hasher.write(&incarnation.to_be_bytes());
    hasher.write(&[class]);
    // FNV's last bytes move only the low bits much: a final mix spreads them, so that the
    // XOR of many contributions stays a good 64-bit hash.
    let mut x = hasher.finish();
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

//! The member table: one compact slot per member ever heard of, an index by name, the probe
//! order, and the list of members believed down (for rate-limited reconnects).
//!
//! Sizes matter: a simulation of 10,000 peers holds 10^8 slots. A slot is 16 bytes (a shared
//! identity, an incarnation, a state, two flags); the index costs about 20 bytes per member.
//! Nothing here scans the table per tick: probe targets come from a shuffled ring walked by a
//! cursor, random members from random positions in it.

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

#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub id: Arc<MemberId>,
    pub incarnation: u32,
    pub state: MemberState,
    /// Whether the slot's index sits in the probe ring (removal is lazy).
    pub in_ring: bool,
    /// Whether the slot's index sits in the list of down members (removal is lazy).
    pub in_down: bool,
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
    index: HashMap<NameKey, u32, BuildHasherDefault<Fnv>>,
    /// Indices of members to probe, shuffled once per round; may hold stale entries (members
    /// now down or left), skipped when met and dropped at the next shuffle.
    ring: Vec<u32>,
    cursor: usize,
    /// Indices of members declared down, for reconnect attempts; stale entries dropped lazily.
    down: Vec<u32>,
    /// How many slots are in each state, self included: `[up, suspect, down, left]`.
    counts: [u32; 4],
    /// XOR of every slot's [`contribution`], kept as slots change: what sync pages compare.
    digest: u64,
}

impl Members {
    pub fn new(me: Arc<MemberId>, incarnation: u32) -> Members {
        let mut members = Members {
            slots: Vec::new(),
            index: HashMap::default(),
            ring: Vec::new(),
            cursor: 0,
            down: Vec::new(),
            counts: [0; 4],
            digest: 0,
        };
        members.index.insert(NameKey(me.clone()), 0);
        members.slots.push(Slot {
            id: me,
            incarnation,
            state: MemberState::Up,
            in_ring: false,
            in_down: false,
        });
        members.counts[0] = 1;
        members.digest = contribution(&members.slots[0]);
        members
    }

    /// Makes room for `more` members at once (a warm start), so the table grows once.
    pub fn reserve(&mut self, more: usize) {
        self.slots.reserve_exact(more);
        self.index.reserve(more);
        self.ring.reserve_exact(more);
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn find(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    pub fn slot(&self, index: u32) -> &Slot {
        &self.slots[index as usize]
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
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

    /// Adds a member (the caller checked it is unknown and the table has room).
    pub fn insert(&mut self, id: Arc<MemberId>, incarnation: u32, state: MemberState, rng: &mut Rng) -> u32 {
        let index = u32::try_from(self.slots.len()).expect("the table is capped far below u32::MAX");
        self.index.insert(NameKey(id.clone()), index);
        self.slots.push(Slot { id, incarnation, state, in_ring: false, in_down: false });
        self.digest ^= contribution(&self.slots[index as usize]);
        self.counts[state as usize] += 1;
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
        let slot = &mut self.slots[index as usize];
        self.digest ^= contribution(slot);
        self.counts[slot.state as usize] -= 1;
        self.counts[state as usize] += 1;
        slot.state = state;
        slot.incarnation = incarnation;
        if let Some(id) = id {
            debug_assert_eq!(id.name, slot.id.name, "an identity change keeps the name");
            slot.id = id.clone();
            // Same name, so the index key is equal; replace it to drop the old address.
            self.index.insert(NameKey(id), index);
        }
        self.digest ^= contribution(&self.slots[index as usize]);
        if index != 0 {
            self.track(index, rng);
        }
    }

    /// Puts a live member in the probe ring, and a down one in the reconnect list.
    fn track(&mut self, index: u32, rng: &mut Rng) {
        let slot = &mut self.slots[index as usize];
        match slot.state {
            MemberState::Up | MemberState::Suspect if !slot.in_ring => {
                slot.in_ring = true;
                // A random place between the cursor and the end: probed later in this round.
                self.ring.push(index);
                let ahead = self.ring.len() - self.cursor;
                let at = self.cursor + rng.below(ahead as u64) as usize;
                let last = self.ring.len() - 1;
                self.ring.swap(at, last);
            }
            MemberState::Down if !slot.in_down => {
                slot.in_down = true;
                self.down.push(index);
            }
            _ => {}
        }
    }

    fn probeable(&self, index: u32) -> bool {
        matches!(self.slots[index as usize].state, MemberState::Up | MemberState::Suspect)
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
            if self.slots[index as usize].state == MemberState::Up
                && index != exclude
                && !chosen.contains(&index)
            {
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
            if self.slots[index as usize].state == MemberState::Down {
                return Some(index);
            }
            self.down.swap_remove(at);
            self.slots[index as usize].in_down = false;
        }
        None
    }

    /// Starts a new round: drops stale entries and shuffles (Fisher-Yates).
    fn reshuffle(&mut self, rng: &mut Rng) {
        let slots = &mut self.slots;
        self.ring.retain(|&index| {
            let keep = matches!(slots[index as usize].state, MemberState::Up | MemberState::Suspect);
            if !keep {
                slots[index as usize].in_ring = false;
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
fn contribution(slot: &Slot) -> u64 {
    let class: u8 = match slot.state {
        MemberState::Up | MemberState::Suspect => 1,
        MemberState::Down => 2,
        MemberState::Left => 3,
    };
    let mut hasher = Fnv::default();
    hasher.write(slot.id.name.as_bytes());
    // A separator no name contains (names have no control characters).
    hasher.write(&[0]);
    match slot.id.addr.ip() {
        std::net::IpAddr::V4(ip) => hasher.write(&ip.octets()),
        std::net::IpAddr::V6(ip) => hasher.write(&ip.octets()),
    }
    hasher.write(&slot.id.addr.port().to_be_bytes());
    hasher.write(&slot.incarnation.to_be_bytes());
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

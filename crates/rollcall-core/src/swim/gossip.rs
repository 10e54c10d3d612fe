//! The dissemination queue: membership updates waiting to be piggybacked on outgoing
//! datagrams, each sent a bounded number of times (`retransmit_mult × ceil(log10(n + 1))`,
//! memberlist's rule), fewest transmissions first, newest first among equals.
//!
//! One update per member at most: a newer statement about a member replaces the queued one
//! (it supersedes it), so the queue never holds more entries than the table has members.

use super::members::{Fnv, MemberId};
use super::wire::{MemberState, Update, Writer};
use core::cmp::Reverse;
use core::hash::BuildHasherDefault;
use std::collections::HashMap;
use std::sync::Arc;

/// An update held by the queue.
#[derive(Clone, Debug)]
pub(crate) struct Owned {
    pub state: MemberState,
    pub incarnation: u32,
    pub id: Arc<MemberId>,
    pub accuser: Option<Name>,
    /// Whether an `up` statement carries the address (see `wire::Update::addr`).
    pub addr: bool,
}

impl Owned {
    pub fn view(&self) -> Update<'_> {
        Update {
            state: self.state,
            incarnation: self.incarnation,
            name: &self.id.name,
            addr: self.addr.then_some(self.id.addr),
            accuser: self.accuser.as_ref().map(Name::as_str),
        }
    }
}

/// A name a queued update holds (an accuser's): nearly always a member of the table, whose
/// identity it shares at the cost of a reference count, so that no statement allocates;
/// its own copy only for an accuser the table does not hold.
#[derive(Clone, Debug)]
pub(crate) enum Name {
    Member(Arc<MemberId>),
    Own(Arc<str>),
}

impl Name {
    pub fn as_str(&self) -> &str {
        match self {
            Name::Member(id) => &id.name,
            Name::Own(name) => name,
        }
    }
}

struct Item {
    member: u32,
    update: Owned,
    transmits: u32,
}

/// An update's place in the sending order: fewest transmissions first, then newest (the
/// larger number of the two is the later pushed), then where the item is in the slab (the
/// numbers are unique, so that part never decides the order).
type Key = (u32, Reverse<u64>, u32);

/// The queue as flat arrays rather than trees: at 10,000 simulated peers each peer's queue
/// is out of cache whenever one of its datagrams is filled, and a tree costs a miss per
/// node on the way to its first entries, where the order's end is one read.
#[derive(Default)]
pub(crate) struct Broadcasts {
    /// The keys of every queued update, sorted latest to send first, so the next to send
    /// are at the end.
    order: Vec<Key>,
    /// The updates, at the places the keys name; `None` in a free place.
    slab: Vec<Option<Item>>,
    free: Vec<u32>,
    /// Each member's queued update: its number and place.
    by_member: HashMap<u32, (u64, u32), BuildHasherDefault<Fnv>>,
    next: u64,
}

/// How many queued updates one datagram looks at before giving up on filling its room:
/// bounds the work per datagram when many updates are too large for what is left.
const SCAN: usize = 64;

impl Broadcasts {
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Where `key` is, or would go, in `order` (sorted descending).
    fn search(&self, key: &Key) -> Result<usize, usize> {
        self.order.binary_search_by(|held| key.cmp(held))
    }

    fn insert_key(&mut self, key: Key) {
        let at = self.search(&key).unwrap_or_else(|at| at);
        self.order.insert(at, key);
    }

    fn remove_key(&mut self, key: &Key) {
        if let Ok(at) = self.search(key) {
            self.order.remove(at);
        }
    }

    /// Takes the item at slab place `place` out, freeing the place.
    fn take(&mut self, place: u32) -> Option<Item> {
        let item = self.slab.get_mut(place as usize).and_then(Option::take);
        if item.is_some() {
            self.free.push(place);
        }
        item
    }

    /// Queues `update` about table slot `member`, replacing any older update about it.
    pub fn push(&mut self, member: u32, update: Owned) {
        if let Some((old, place)) = self.by_member.remove(&member)
            && let Some(item) = self.take(place)
        {
            self.remove_key(&(item.transmits, Reverse(old), place));
        }
        self.next += 1;
        let id = self.next;
        let item = Some(Item { member, update, transmits: 0 });
        let place = match self.free.pop() {
            Some(place) => {
                self.slab[place as usize] = item;
                place
            }
            None => {
                self.slab.push(item);
                self.slab.len() as u32 - 1
            }
        };
        self.insert_key((0, Reverse(id), place));
        self.by_member.insert(member, (id, place));
    }

    /// Drops every queued update for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&Owned) -> bool) {
        let dropped: Vec<Key> = self
            .order
            .iter()
            .filter(|key| self.slab[key.2 as usize].as_ref().is_some_and(|item| !keep(&item.update)))
            .copied()
            .collect();
        for key in dropped {
            if let Some(item) = self.take(key.2) {
                self.by_member.remove(&item.member);
            }
            self.remove_key(&key);
        }
    }

    /// Writes as many queued updates as fit into `writer`'s open list, and counts one more
    /// transmission for each; those sent `limit` times leave the queue.
    pub fn fill(&mut self, writer: &mut Writer<'_, '_>, limit: u32) {
        let mut sent: Vec<Key> = Vec::new();
        for &key in self.order.iter().rev().take(SCAN) {
            if writer.room() < MIN_UPDATE {
                break;
            }
            let Some(item) = &self.slab[key.2 as usize] else { continue };
            if writer.push(&item.update.view()) {
                sent.push(key);
            }
        }
        for key in sent {
            self.remove_key(&key);
            let (_, id, place) = key;
            let Some(item) = self.slab[place as usize].as_mut() else { continue };
            item.transmits += 1;
            if item.transmits >= limit {
                let member = item.member;
                self.take(place);
                self.by_member.remove(&member);
            } else {
                let transmits = item.transmits;
                self.insert_key((transmits, id, place));
            }
        }
    }
}

/// The smallest encoded update: a one-byte name, an incarnation under 128, no address and
/// no accuser (a `left`, or an accusation by the sender).
const MIN_UPDATE: usize = 1 + 1 + 2;

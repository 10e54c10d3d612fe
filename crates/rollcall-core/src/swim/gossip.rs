//! The dissemination queue: membership updates waiting to be piggybacked on outgoing
//! datagrams, each sent a bounded number of times (`retransmit_mult × ceil(log10(n + 1))`,
//! memberlist's rule), fewest transmissions first, newest first among equals.
//!
//! One update per member at most: a newer statement about a member replaces the queued one
//! (it supersedes it), so the queue never holds more entries than the table has members.

use super::members::MemberId;
use super::wire::{MemberState, Update, Writer};
use core::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
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

#[derive(Default)]
pub(crate) struct Broadcasts {
    order: BTreeSet<(u32, Reverse<u64>)>,
    items: BTreeMap<u64, Item>,
    by_member: BTreeMap<u32, u64>,
    next: u64,
}

/// How many queued updates one datagram looks at before giving up on filling its room:
/// bounds the work per datagram when many updates are too large for what is left.
const SCAN: usize = 64;

impl Broadcasts {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Queues `update` about table slot `member`, replacing any older update about it.
    pub fn push(&mut self, member: u32, update: Owned) {
        if let Some(old) = self.by_member.remove(&member)
            && let Some(item) = self.items.remove(&old)
        {
            self.order.remove(&(item.transmits, Reverse(old)));
        }
        self.next += 1;
        let id = self.next;
        self.order.insert((0, Reverse(id)));
        self.items.insert(id, Item { member, update, transmits: 0 });
        self.by_member.insert(member, id);
    }

    /// Drops every queued update for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&Owned) -> bool) {
        let dropped: Vec<u64> =
            self.items.iter().filter(|(_, item)| !keep(&item.update)).map(|(&id, _)| id).collect();
        for id in dropped {
            let item = self.items.remove(&id).expect("collected from the map just now");
            self.order.remove(&(item.transmits, Reverse(id)));
            self.by_member.remove(&item.member);
        }
    }

    /// Writes as many queued updates as fit into `writer`'s open list, and counts one more
    /// transmission for each; those sent `limit` times leave the queue.
    pub fn fill(&mut self, writer: &mut Writer<'_, '_>, limit: u32) {
        let mut sent: Vec<(u32, Reverse<u64>)> = Vec::new();
        for &key in self.order.iter().take(SCAN) {
            if writer.room() < MIN_UPDATE {
                break;
            }
            let item = &self.items[&key.1.0];
            if writer.push(&item.update.view()) {
                sent.push(key);
            }
        }
        for key in sent {
            self.order.remove(&key);
            let id = key.1.0;
            let item = self.items.get_mut(&id).expect("ordered keys have items");
            item.transmits += 1;
            if item.transmits >= limit {
                let member = item.member;
                self.items.remove(&id);
                self.by_member.remove(&member);
            } else {
                self.order.insert((item.transmits, Reverse(id)));
            }
        }
    }
}

/// The smallest encoded update: a one-byte name, an incarnation under 128, no address and
/// no accuser (a `left`, or an accusation by the sender).
const MIN_UPDATE: usize = 1 + 1 + 2;

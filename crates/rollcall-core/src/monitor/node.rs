//! The node table: one compact record per node, indexed by a dense `u32` after the first
//! lookup by id (the index is also the node's key in the timer wheel).

use super::types::NodeState;
use crate::Instant;
use rollcall_detect::AnyDetector;
use std::net::SocketAddr;
use std::sync::Arc;

mod id_index;
use id_index::IdIndex;

/// A hasher with a fixed key, so that where an id lands is a pure function of the inputs.
/// Only authenticated node ids reach the table, so a fixed key does not expose it to hash
/// flooding by strangers; and FxHash, not SipHash, because the lookup of a heartbeat's id
/// was a fifth of the monitor's CPU at a million nodes.
fn hash_id(id: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(id)
}

/// What the monitor knows of one node.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub id: Arc<str>,
    /// The raw label block of the latest accepted datagram (see `wire::Labels`).
    pub labels: Box<[u8]>,
    pub detector: AnyDetector,
    pub generation: u64,
    /// The last accepted sequence within `generation`.
    pub sequence: u64,
    /// Silence is counted from here at the earliest: registration, restore, resume.
    pub watch_from: Instant,
    /// Where the latest accepted datagram came from.
    pub addr: Option<SocketAddr>,
    pub interval_ms: u32,
    pub state: NodeState,
    /// Recovery bookkeeping and the answered-probe flag, in one byte.
    pub marks: Marks,
    /// The node's entry in the group table (`monitor/groups.rs`), from its `group` label.
    /// Whether its detector runs on the group's current settings is a pointer comparison
    /// (`groups::runs_on`), so the record needs no stamp.
    pub group: u16,
}

/// Most heartbeats `rise` may ask for: the count is kept in six bits of [`Marks`].
pub const MAX_RISE: u8 = 63;

/// Three small facts about a node in one byte, so that the record stays 272 bytes (its
/// 4-byte-aligned tail, the address, interval, state and group, has no room for three more
/// bytes; at a million nodes 8 bytes more per record cost 8 MB and, measured, CPU per
/// heartbeat: docs/BENCHMARKS.md, session 8):
/// - heartbeats received since the node went down (recovery needs `rise` of them), at most
///   [`MAX_RISE`];
/// - whether a restart was seen since the node went down, so the recovery says why;
/// - whether `watch_from` was set by an answered probe, not by a gap in observation:
///   deadlines count from the answer, but the heartbeat history is still good.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Marks(u8);

const RISE_COUNT: u8 = 0b0011_1111;
const RESTARTED: u8 = 0b0100_0000;
const ANSWERED: u8 = 0b1000_0000;

impl Marks {
    pub fn rise_count(self) -> u8 {
        self.0 & RISE_COUNT
    }

    /// One more heartbeat towards `rise` (saturating at [`MAX_RISE`]), after a restart if
    /// `restart`.
    pub fn count_rise(&mut self, restart: bool) {
        let count = (self.rise_count() + 1).min(MAX_RISE);
        self.0 = (self.0 & !RISE_COUNT) | count;
        if restart {
            self.0 |= RESTARTED;
        }
    }

    pub fn restarted(self) -> bool {
        self.0 & RESTARTED != 0
    }

    /// Forgets a recovery in progress: no heartbeat counted, no restart seen.
    pub fn reset_rise(&mut self) {
        self.0 &= ANSWERED;
    }

    pub fn answered(self) -> bool {
        self.0 & ANSWERED != 0
    }

    pub fn set_answered(&mut self, answered: bool) {
        if answered {
            self.0 |= ANSWERED;
        } else {
            self.0 &= !ANSWERED;
        }
    }
}

/// Every node, by dense index and by id.
///
/// The id index holds only each node's `u32` index and a hash tag ([`IdIndex`]), without
/// keys of its own: lookups hash the id and compare it with the one the record already
/// holds. At a million nodes that is 16 MiB instead of about 50 for a map with its own
/// `Arc<str>` key and value per node.
#[derive(Default)]
pub(crate) struct NodeTable {
    nodes: Vec<Node>,
    by_id: IdIndex,
}

impl NodeTable {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn index_of(&self, id: &str) -> Option<u32> {
        self.by_id.find(hash_id(id), |index| &*self.nodes[index as usize].id == id)
    }

    /// Reads what looking `id` up will read (its index entry, the node's record, the id's
    /// bytes) and returns a byte of it, for [`std::hint::black_box`].
    ///
    /// Called for every id of a batch before the batch is handled, so that the cache misses
    /// of a large table (three per lookup at a million nodes, one after the other) overlap
    /// across the batch's ids instead of being waited for one heartbeat at a time. It
    /// changes nothing; an id that is not in the table reads the entry alone.
    pub fn warm(&self, id: &str) -> u8 {
        match self.by_id.first(hash_id(id)) {
            Some(index) => self.nodes.get(index as usize).map_or(0, |node| node.id.as_bytes()[0]),
            None => 0,
        }
    }

    pub fn get(&self, index: u32) -> &Node {
        &self.nodes[index as usize]
    }

    pub fn get_mut(&mut self, index: u32) -> &mut Node {
        &mut self.nodes[index as usize]
    }

    /// Adds a node; the caller has checked that the id is new and the table has room.
    pub fn insert(&mut self, node: Node) -> u32 {
        debug_assert!(self.index_of(&node.id).is_none(), "insert of a known id");
        let index = u32::try_from(self.nodes.len()).expect("max_nodes is validated below u32::MAX");
        self.by_id.insert(hash_id(&node.id), index);
        self.nodes.push(node);
        index
    }

    /// Removes a node. The last node takes its index (the table stays dense): returns the
    /// removed node and, if one moved, the index it moved from.
    pub fn remove(&mut self, index: u32) -> (Node, Option<u32>) {
        let last = u32::try_from(self.nodes.len() - 1).expect("indexes fit in u32");
        self.by_id.remove(hash_id(&self.nodes[index as usize].id), index);
        let node = self.nodes.swap_remove(index as usize);
        if index == last {
            return (node, None);
        }
        self.by_id.renumber(hash_id(&self.nodes[index as usize].id), last, index);
        (node, Some(last))
    }
}

#[cfg(test)]
mod tests;

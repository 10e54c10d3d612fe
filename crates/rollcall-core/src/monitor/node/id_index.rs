//! The node table's index from ids to dense node indexes: open addressing (linear probing)
//! over 8-byte entries, each a node's index and the high half of its id's hash.
//!
//! A lookup reads one run of entries, nearly always within one cache line, and then only the
//! node whose tag matches. hashbrown's table, used before, keeps its control bytes and its
//! slots in two regions: at a million nodes each was a cache miss, one after the other, and
//! together most of the monitor's CPU per heartbeat above the kernel's (docs/BENCHMARKS.md,
//! session 11). The price is memory: 16 MiB at a million nodes against about 10.
//!
//! Entries are removed by shifting later entries of the same run back (no tombstones), so a
//! table that churns never fills with dead entries.

/// An entry's index when the entry is empty.
const EMPTY: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Entry {
    index: u32,
    /// The hash's high 32 bits: where the entry's run starts (masked), and a filter that
    /// spares reading a node whose id cannot match.
    tag: u32,
}

const VACANT: Entry = Entry { index: EMPTY, tag: 0 };

/// Ids (by their 64-bit hash) to node indexes. The caller hashes, and confirms a candidate
/// by comparing the node's id: two ids may share a tag.
#[derive(Debug, Default)]
pub(crate) struct IdIndex {
    /// A power of two long (or empty), never more than three quarters full, so every probe
    /// ends at an empty entry.
    entries: Vec<Entry>,
    len: usize,
}

/// The high half, where a multiplicative hash (FxHash) mixes best.
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl IdIndex {
    /// The index of the node whose hash is `hash` and for which `is` holds.
    #[inline]
    pub fn find(&self, hash: u64, is: impl Fn(u32) -> bool) -> Option<u32> {
        let at = self.position(hash, |entry| is(entry.index))?;
        Some(self.entries[at].index)
    }

    /// The index in the first entry `hash`'s run would be read from (whoever's it is), or
    /// `None` if that entry is empty: one read of the array, for warming the cache.
    #[inline]
    pub fn first(&self, hash: u64) -> Option<u32> {
        let mask = self.entries.len().checked_sub(1)?;
        let entry = self.entries[tag_of(hash) as usize & mask];
        (entry.index != EMPTY).then_some(entry.index)
    }

    /// Adds `index` under `hash`; the caller has checked that its id is not indexed yet.
    pub fn insert(&mut self, hash: u64, index: u32) {
        debug_assert_ne!(index, EMPTY, "indexes stay below u32::MAX (max_nodes is validated)");
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            self.grow();
        }
        place(&mut self.entries, Entry { index, tag: tag_of(hash) });
        self.len += 1;
    }

    /// Removes `index`, indexed under `hash`.
    pub fn remove(&mut self, hash: u64, index: u32) {
        let mut hole = self.position(hash, |entry| entry.index == index).expect("every node is indexed");
        self.len -= 1;
        // Backward shift: each later entry of the run that may sit in the hole (its run
        // starts at or before the hole, cyclically) moves into it, until an empty entry.
        let mask = self.entries.len() - 1;
        let mut next = (hole + 1) & mask;
        while self.entries[next].index != EMPTY {
            let home = self.entries[next].tag as usize & mask;
            // Distances from `home`, cyclically: the entry may move back to the hole if the
            // hole is no further from its home than it is.
            if (hole.wrapping_sub(home) & mask) < (next.wrapping_sub(home) & mask) {
                self.entries[hole] = self.entries[next];
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.entries[hole] = VACANT;
    }

    /// The node indexed under `hash` as `from` is now at `to` (the table moved it).
    pub fn renumber(&mut self, hash: u64, from: u32, to: u32) {
        let at = self.position(hash, |entry| entry.index == from).expect("every node is indexed");
        self.entries[at].index = to;
    }

    /// Where the entry under `hash` for which `is` holds sits.
    #[inline]
    fn position(&self, hash: u64, is: impl Fn(&Entry) -> bool) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let tag = tag_of(hash);
        let mask = self.entries.len() - 1;
        let mut at = tag as usize & mask;
        loop {
            let entry = &self.entries[at];
            if entry.index == EMPTY {
                return None;
            }
            if entry.tag == tag && is(entry) {
                return Some(at);
            }
            at = (at + 1) & mask;
        }
    }

    /// Doubles the table (16 entries at first) and puts every entry back; the tags hold all
    /// a placement needs, so no id is read.
    fn grow(&mut self) {
        let size = (self.entries.len() * 2).max(16);
        let old = std::mem::replace(&mut self.entries, vec![VACANT; size]);
        for entry in old.into_iter().filter(|entry| entry.index != EMPTY) {
            place(&mut self.entries, entry);
        }
    }

    /// Entries in the table, for the tests' bookkeeping.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The mean number of entries a lookup of each indexed id reads, for the tests: how
    /// well the hash spreads a fleet's ids.
    #[cfg(test)]
    pub fn mean_probe(&self) -> f64 {
        let mask = self.entries.len().saturating_sub(1);
        let reads: usize = (0..self.entries.len())
            .filter(|&at| self.entries[at].index != EMPTY)
            .map(|at| (at.wrapping_sub(self.entries[at].tag as usize) & mask) + 1)
            .sum();
        reads as f64 / self.len.max(1) as f64
    }
}

/// Puts `entry` in the first empty entry of its run; the table has one.
fn place(entries: &mut [Entry], entry: Entry) {
    let mask = entries.len() - 1;
    let mut at = entry.tag as usize & mask;
    while entries[at].index != EMPTY {
        at = (at + 1) & mask;
    }
    entries[at] = entry;
}

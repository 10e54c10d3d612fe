//! The roster's index from names to roster numbers: open addressing over 16-byte entries
//! that hold each name's length and first bytes, so that looking up a name of up to
//! [`HEAD`] bytes reads one entry and nothing else. A map keyed by the shared identity
//! reads the entry, then the identity, then its name: at 10,000 peers each is a cache miss,
//! and every statement received looks up one or two names.

use super::members::Fnv;
use core::hash::Hasher;

/// Name bytes an entry holds; longer names are compared in full too.
const HEAD: usize = 11;
const EMPTY: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Entry {
    number: u32,
    /// The name's length, at most 255 (longer names are compared in full).
    len: u8,
    head: [u8; HEAD],
}

impl Entry {
    fn new(number: u32, name: &str) -> Entry {
        let mut head = [0; HEAD];
        let n = name.len().min(HEAD);
        head[..n].copy_from_slice(&name.as_bytes()[..n]);
        Entry { number, len: name.len().min(255) as u8, head }
    }

    /// Whether this entry may be `key`'s (same length and first bytes).
    fn matches(&self, key: &Entry) -> bool {
        self.len == key.len && self.head == key.head
    }
}

/// Names to numbers; names are never removed.
#[derive(Debug)]
pub(crate) struct NameIndex {
    entries: Vec<Entry>,
    len: usize,
}

impl core::fmt::Debug for Entry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.number)
    }
}

impl NameIndex {
    /// An index with room for `n` names (it never grows past them).
    pub fn with_capacity(n: usize) -> NameIndex {
        // At most two thirds full, so that probes stay short; a power of two for masking.
        let slots = (n + n / 2 + 1).next_power_of_two();
        NameIndex { entries: vec![Entry { number: EMPTY, len: 0, head: [0; HEAD] }; slots], len: 0 }
    }

    /// The number of `name`; `name_of` gives the name of a number (for names longer than
    /// an entry holds).
    pub fn find<'a>(&self, name: &str, name_of: impl Fn(u32) -> &'a str) -> Option<u32> {
        let key = Entry::new(0, name);
        let mask = self.entries.len() - 1;
        let mut at = hash(name) & mask;
        // The table always has an empty entry (it is never full), so the probe ends.
        loop {
            let entry = &self.entries[at];
            if entry.number == EMPTY {
                return None;
            }
            if entry.matches(&key) && (name.len() <= HEAD || name_of(entry.number) == name) {
                return Some(entry.number);
            }
            at = (at + 1) & mask;
        }
    }

    /// Adds `name` as `number`; the caller checked it is not there yet and that the index
    /// has room for it.
    pub fn insert(&mut self, name: &str, number: u32) {
        assert!(self.len + 1 < self.entries.len(), "the roster sized its index for every name");
        let mask = self.entries.len() - 1;
        let mut at = hash(name) & mask;
        while self.entries[at].number != EMPTY {
            at = (at + 1) & mask;
        }
        self.entries[at] = Entry::new(number, name);
        self.len += 1;
    }
}

fn hash(name: &str) -> usize {
    let mut hasher = Fnv::default();
    hasher.write(name.as_bytes());
    hasher.finish() as usize
}

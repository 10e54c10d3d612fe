//! The peer-mode event queue: pops events in (instant, insertion number) order, as a heap
//! of whole events would, but sifts 16-byte keys instead of 48-byte events. At 10,000 peers
//! the heap holds tens of thousands of events and every step of a sift is a cache miss, so
//! the bytes moved per step are what a pop costs.

use core::cmp::Reverse;
use rollcall_core::Instant;
use std::collections::BinaryHeap;

/// Bits of a key's second half that hold the event's place in the slab.
const SLOT_BITS: u32 = 24;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;

/// Events waiting for their instant.
pub(super) struct Queue<E> {
    /// (instant in nanoseconds, insertion number << [`SLOT_BITS`] | slab place): the
    /// insertion number is unique, so the order of keys is the order of (instant, number)
    /// and the slab place never decides it.
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    slab: Vec<Option<E>>,
    free: Vec<u32>,
    pushed: u64,
}

impl<E> Queue<E> {
    pub fn with_capacity(capacity: usize) -> Queue<E> {
        Queue {
            heap: BinaryHeap::with_capacity(capacity),
            slab: Vec::with_capacity(capacity),
            free: Vec::new(),
            pushed: 0,
        }
    }

    /// Queues `event` at `at`, after every event queued before at the same instant.
    pub fn push(&mut self, at: Instant, event: E) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slab.push(Some(event));
                (self.slab.len() - 1) as u32
            }
        };
        self.pushed += 1;
        // 2^24 events waiting at once and 2^40 queued in a run are far beyond any run the
        // simulator can hold in memory or time (10,000 peers for 10 minutes: about 10^5 and
        // 10^8).
        assert!(
            u64::from(slot) <= SLOT_MASK && self.pushed < 1 << (64 - SLOT_BITS),
            "the event queue overflowed"
        );
        self.heap.push(Reverse((at.as_nanos(), self.pushed << SLOT_BITS | u64::from(slot))));
    }

    /// The earliest event and its instant.
    pub fn pop(&mut self) -> Option<(Instant, E)> {
        let Reverse((at, key)) = self.heap.pop()?;
        let slot = (key & SLOT_MASK) as u32;
        let event = self.slab[slot as usize].take().expect("a queued key has its event in the slab");
        self.free.push(slot);
        Some((Instant::from_nanos(at), event))
    }
}

//! Deadlines: a hashed timer wheel holding at most one deadline per node.
//!
//! The monitor keeps one pending deadline per node (the instant at which its silence becomes
//! suspicious or fatal) and moves it later on every heartbeat. With a million nodes, both a
//! heartbeat and a tick must cost O(1), so neither may touch every node: [`TimerWheel`] is a
//! hashed timing wheel (Varghese & Lauck 1987, scheme 6) whose lists are threaded through a
//! per-key array, so an operation allocates nothing once every key has been seen.

use crate::Instant;
use core::time::Duration;

/// The "no key" link and the "not pending" slot marker; never a valid key.
const NONE: u32 = u32::MAX;

/// Counters of the work a [`TimerWheel`] has done since it was created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimerStats {
    /// Calls to [`TimerWheel::insert`], including those that replaced a pending deadline.
    pub inserted: u64,
    /// Calls to [`TimerWheel::cancel`] that removed a pending deadline (a replacing insert is
    /// not counted here).
    pub cancelled: u64,
    /// Keys handed out by [`TimerWheel::expire`].
    pub fired: u64,
    /// Entries looked at by [`TimerWheel::expire`], fired or skipped because they are due in a
    /// later revolution or later in the current tick.
    pub visited: u64,
    /// Non-empty slots whose lists [`TimerWheel::expire`] walked (empty slots are skipped
    /// 64 at a time through the occupancy bitmap and not counted).
    pub slots_scanned: u64,
}

/// At most one pending deadline per key, for dense `u32` keys (a node table's indices).
///
/// Time is cut into ticks of `resolution` (default 1 ms); a deadline lives in the slot
/// `tick % slots` (default 8192 slots, so one revolution spans about 8.2 s). A deadline more
/// than a revolution away simply stays in its slot and is skipped until it is due; a
/// deadline already in the past when it is inserted goes into the slot of the current tick,
/// which the next [`expire`](Self::expire) always visits. Each slot is an intrusive doubly
/// linked list threaded through a `Vec` indexed by key, a bitmap marks the non-empty slots,
/// and each slot keeps a lower bound of its deadlines for [`next_expiry`](Self::next_expiry).
///
/// Cost of each operation (`S` slots, `F` keys fired, `V` entries in the slots walked):
///
/// - [`insert`](Self::insert), [`cancel`](Self::cancel), [`deadline`](Self::deadline),
///   [`len`](Self::len): O(1); `insert` of a key beyond every key seen so far grows the
///   per-key array to that key (amortised O(1) per key).
/// - [`expire`](Self::expire): O(T/64 + V + sorting) where T is the number of ticks elapsed,
///   capped at one revolution (T <= S). V is the size of the slots of the elapsed ticks
///   (about N/S per tick for N deadlines spread over a revolution or more), never a sweep
///   over all keys; after a gap of a revolution or more it is every entry, once. The keys
///   fired from each slot are sorted apart, O(f log f) for f keys due in one tick, except
///   after a gap of a revolution or more, which sorts all F keys fired together.
/// - [`next_expiry`](Self::next_expiry): O(S/64 + slots up to the answer), at most O(S).
///
/// Memory: 24 bytes per key up to the largest key inserted (a deadline of 8 bytes and three
/// `u32`s, padded to 8), whether or not the key has a pending deadline; plus 12 bytes and one
/// bit per slot (about 96 KiB for 8192 slots).
///
/// The wheel reads no clock: `now` is an argument of [`expire`](Self::expire), and the
/// caller sleeps until [`next_expiry`](Self::next_expiry), calls `expire`, and repeats.
#[derive(Clone, Debug)]
pub struct TimerWheel {
    /// Per key, its entry; `slot == NONE` when the key has no pending deadline.
    entries: Vec<Entry>,
    /// Per slot, the first key of its list, or `NONE`.
    heads: Vec<u32>,
    /// Per slot, a lower bound (in nanoseconds) on the deadlines in its list: exact after
    /// `expire` walks the slot, lowered by `insert`, left alone by removals (then it is stale
    /// but still a lower bound), `u64::MAX` when the slot is empty.
    floors: Vec<u64>,
    /// One bit per slot, set exactly when the slot's list is non-empty.
    occupied: Vec<u64>,
    /// `heads.len() - 1`; the slot count is a power of two.
    mask: u64,
    resolution_ns: u64,
    /// The tick of the latest `now` passed to `expire` (or of `start`). Every tick before it
    /// has been fully processed; its own slot may still hold deadlines later in the tick.
    current: u64,
    len: usize,
    stats: TimerStats,
    /// The last answer of `next_expiry`, kept as a lower bound: lowered by `insert`, left
    /// alone by removals (still a lower bound), forgotten by `expire`. Without it, a wheel
    /// whose deadlines all lie more than a revolution ahead (a 10 s interval on the 8.2 s
    /// default) would walk every occupied slot at every call, and the shell asks after every
    /// batch of datagrams.
    next_cache: core::cell::Cell<Option<u64>>,
}

/// One key's deadline and its links in its slot's list.
#[derive(Clone, Copy, Debug)]
struct Entry {
    deadline: Instant,
    prev: u32,
    next: u32,
    slot: u32,
}

impl Entry {
    const VACANT: Entry = Entry { deadline: Instant::ZERO, prev: NONE, next: NONE, slot: NONE };
}

// The memory figure in `TimerWheel`'s doc comment.
const _: () = assert!(size_of::<Entry>() == 24);

impl TimerWheel {
    /// The default slot count: with the default resolution, one revolution is about 8.2 s.
    pub const DEFAULT_SLOTS: usize = 8192;
    /// The default tick.
    pub const DEFAULT_RESOLUTION: Duration = Duration::from_millis(1);

    /// An empty wheel with 8192 slots of 1 ms, whose clock starts at `start`.
    pub fn new(start: Instant) -> Self {
        Self::with_geometry(start, Self::DEFAULT_SLOTS, Self::DEFAULT_RESOLUTION)
    }

    /// An empty wheel with `slots` slots of `resolution` each, whose clock starts at `start`.
    ///
    /// # Panics
    ///
    /// If `slots` is not a power of two or exceeds 2^31, or if `resolution` is zero or
    /// longer than `u64::MAX` nanoseconds.
    pub fn with_geometry(start: Instant, slots: usize, resolution: Duration) -> Self {
        assert!(slots.is_power_of_two(), "timer wheel slot count must be a power of two");
        assert!(slots <= 1 << 31, "timer wheel slot count must fit a slot index below NONE");
        let resolution_ns =
            u64::try_from(resolution.as_nanos()).expect("timer wheel resolution must fit in u64 nanoseconds");
        assert!(resolution_ns > 0, "timer wheel resolution must be positive");
        TimerWheel {
            entries: Vec::new(),
            heads: vec![NONE; slots],
            floors: vec![u64::MAX; slots],
            occupied: vec![0; slots.div_ceil(64)],
            mask: slots as u64 - 1,
            resolution_ns,
            current: start.as_nanos() / resolution_ns,
            len: 0,
            stats: TimerStats::default(),
            next_cache: core::cell::Cell::new(None),
        }
    }

    /// Sets `key`'s deadline to `at`, replacing its pending deadline if it has one.
    ///
    /// A deadline at or before the latest `now` given to [`expire`](Self::expire) fires at
    /// the next `expire`. The per-key array grows to `key + 1` entries if needed.
    ///
    /// # Panics
    ///
    /// If `key` is `u32::MAX`, which the lists use as their "no key" link.
    pub fn insert(&mut self, key: u32, at: Instant) {
        assert!(key != NONE, "timer wheel key u32::MAX is reserved");
        let index = key as usize;
        if index >= self.entries.len() {
            self.entries.resize(index + 1, Entry::VACANT);
        }
        if self.entries[index].slot != NONE {
            self.forget_bound(self.entries[index].deadline);
            self.unlink(key);
        } else {
            self.len += 1;
        }
        // A deadline in a tick already processed goes to the current tick's slot, which the
        // next `expire` visits whatever its `now`; any other goes to its own tick's slot.
        let tick = (at.as_nanos() / self.resolution_ns).max(self.current);
        let slot = (tick & self.mask) as usize;
        self.entries[index].deadline = at;
        self.link(key, slot);
        self.stats.inserted += 1;
        if let Some(bound) = self.next_cache.get() {
            self.next_cache.set(Some(bound.min(at.as_nanos())));
        }
    }

    /// Removes `key`'s pending deadline; returns whether it had one.
    pub fn cancel(&mut self, key: u32) -> bool {
        let Some(deadline) = self.deadline(key) else {
            return false;
        };
        self.forget_bound(deadline);
        self.unlink(key);
        self.len -= 1;
        self.stats.cancelled += 1;
        true
    }

    /// `key`'s pending deadline, if it has one.
    pub fn deadline(&self, key: u32) -> Option<Instant> {
        let entry = self.entries.get(key as usize)?;
        (entry.slot != NONE).then_some(entry.deadline)
    }

    /// The number of pending deadlines.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no deadline is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A removed deadline that was the remembered next expiry makes it worth recomputing
    /// (as tight as without the memory); any other removal leaves it a valid lower bound.
    fn forget_bound(&self, removed: Instant) {
        if self.next_cache.get() == Some(removed.as_nanos()) {
            self.next_cache.set(None);
        }
    }

    /// A lower bound on the earliest pending deadline, or `None` if there is none.
    ///
    /// Guaranteed: the result is never later than any pending deadline, so a caller that
    /// sleeps until it and then calls [`expire`](Self::expire) never fires a deadline late.
    ///
    /// It is the earliest pending deadline itself (exact, not rounded to the resolution)
    /// unless a [`cancel`](Self::cancel) or a replacing [`insert`](Self::insert) has removed
    /// the earliest entry of some slot since `expire` last walked that slot: such a slot
    /// keeps the removed deadline as its bound, and the result may be that earlier instant.
    /// The caller then wakes early once; the `expire` at that instant walks the slot and
    /// makes its bound exact again. In particular, deadlines a revolution or more away cause
    /// no early wake-ups, and after `expire(now)` the result is later than `now` unless a
    /// removal, or an insert at or before `now`, has happened since.
    pub fn next_expiry(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        if let Some(bound) = self.next_cache.get() {
            return Some(Instant::from_nanos(bound));
        }
        let slots = self.heads.len();
        let from = (self.current & self.mask) as usize;
        let mut best = u64::MAX;
        let mut distance = 0;
        while let Some(step) = self.next_occupied((from + distance) & self.mask as usize, slots - distance) {
            distance += step;
            // Entries in a slot `distance > 0` ticks ahead are due in that tick or a later
            // revolution of it, so once that tick starts at or after `best`, no slot from
            // here on can improve on it. (The current tick's slot, which also holds overdue
            // entries, is looked at first, while `best` is still `u64::MAX`.)
            let tick_start =
                (self.current.saturating_add(distance as u64)).saturating_mul(self.resolution_ns);
            if tick_start >= best {
                break;
            }
            best = best.min(self.floors[(from + distance) & self.mask as usize]);
            distance += 1;
        }
        self.next_cache.set(Some(best));
        Some(Instant::from_nanos(best))
    }

    /// Removes every pending deadline at or before `now` and appends their keys to `fired`,
    /// ordered by (deadline, key).
    ///
    /// Walks the slots of the ticks from the current one to `now`'s, at most one revolution
    /// (after a longer gap, one pass over every slot visits every entry once). A `now` in a
    /// tick before the current one does nothing.
    pub fn expire(&mut self, now: Instant, fired: &mut Vec<u32>) {
        let target = now.as_nanos() / self.resolution_ns;
        if target < self.current {
            return;
        }
        self.next_cache.set(None);
        let first_fired = fired.len();
        let slots = self.heads.len();
        let span =
            usize::try_from(target - self.current).map_or(slots, |gap| gap.saturating_add(1).min(slots));
        let from = (self.current & self.mask) as usize;
        let mut distance = 0;
        // Expiring only empties slots, so the occupancy of the slots still ahead is stable.
        // Within less than a revolution, an entry fired from the slot `distance` ticks ahead
        // is due in exactly that tick (or, in the current tick's slot, in an earlier one), so
        // sorting each slot's keys sorts them all. After a longer gap, slots mix revolutions.
        while let Some(step) = self.next_occupied((from + distance) & self.mask as usize, span - distance) {
            distance += step;
            let first_of_slot = fired.len();
            self.expire_slot((from + distance) & self.mask as usize, now, fired);
            if span < slots {
                self.sort_fired(&mut fired[first_of_slot..]);
            }
            distance += 1;
        }
        if span == slots {
            self.sort_fired(&mut fired[first_fired..]);
        }
        self.current = target;
    }

    /// The work done since the wheel was created.
    pub fn stats(&self) -> &TimerStats {
        &self.stats
    }

    /// Sorts keys that have just fired by (deadline, key).
    fn sort_fired(&self, keys: &mut [u32]) {
        keys.sort_unstable_by_key(|&key| (self.entries[key as usize].deadline, key));
    }

    /// Fires the due entries of one slot and recomputes its bound from the entries that stay.
    fn expire_slot(&mut self, slot: usize, now: Instant, fired: &mut Vec<u32>) {
        self.stats.slots_scanned += 1;
        let mut floor = u64::MAX;
        let mut key = self.heads[slot];
        while key != NONE {
            let entry = self.entries[key as usize];
            self.stats.visited += 1;
            if entry.deadline <= now {
                self.unlink(key);
                self.len -= 1;
                self.stats.fired += 1;
                fired.push(key);
            } else {
                floor = floor.min(entry.deadline.as_nanos());
            }
            key = entry.next;
        }
        self.floors[slot] = floor;
    }

    /// Pushes `key`, whose deadline is set and which is in no list, at the head of `slot`.
    fn link(&mut self, key: u32, slot: usize) {
        let head = self.heads[slot];
        let entry = &mut self.entries[key as usize];
        debug_assert!(entry.slot == NONE, "a key is linked into at most one slot");
        // `slots <= 2^31` (asserted at construction), so a slot index never equals NONE.
        *entry = Entry { deadline: entry.deadline, prev: NONE, next: head, slot: slot as u32 };
        let deadline = entry.deadline.as_nanos();
        if head != NONE {
            self.entries[head as usize].prev = key;
        }
        self.heads[slot] = key;
        self.floors[slot] = self.floors[slot].min(deadline);
        self.occupied[slot / 64] |= 1 << (slot % 64);
    }

    /// Takes `key`, which is in some list, out of it; its deadline is kept for sorting.
    fn unlink(&mut self, key: u32) {
        let Entry { prev, next, slot, .. } = self.entries[key as usize];
        debug_assert!(slot != NONE, "only a pending key is unlinked");
        let slot = slot as usize;
        if prev == NONE {
            debug_assert!(self.heads[slot] == key, "a key without predecessor heads its slot");
            self.heads[slot] = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NONE {
            self.entries[next as usize].prev = prev;
        }
        let entry = &mut self.entries[key as usize];
        (entry.prev, entry.next, entry.slot) = (NONE, NONE, NONE);
        if self.heads[slot] == NONE {
            self.floors[slot] = u64::MAX;
            self.occupied[slot / 64] &= !(1 << (slot % 64));
        }
    }

    /// The smallest `d < limit` such that slot `(from + d) % slots` is non-empty.
    fn next_occupied(&self, from: usize, limit: usize) -> Option<usize> {
        let slots = self.heads.len();
        let mut distance = 0;
        while distance < limit {
            let slot = (from + distance) & (slots - 1);
            // Bits past the last slot (a wheel of fewer than 64 slots) are never set.
            let word = self.occupied[slot / 64] >> (slot % 64);
            if word != 0 {
                distance += word.trailing_zeros() as usize;
                return (distance < limit).then_some(distance);
            }
            // Skip to the end of this word, or to the end of the wheel if that is sooner.
            distance += (64 - slot % 64).min(slots - slot);
        }
        None
    }
}

#[cfg(test)]
mod tests;

//! A peer's timers: a handful of them (the probe period, its timeouts, sync, reconnect) and
//! one per open suspicion, kept as one sorted array, latest first, so that the next one due
//! is the array's last element.
//!
//! Why not a `BTreeSet`: at 10,000 simulated peers, each peer's timers are out of cache by
//! the time its next event comes, and a tree costs a miss per node on the way down; the
//! array is one allocation, read from its end. New timers are mostly near (the probe's),
//! so an insertion moves only the few entries due before it.
//!
//! It behaves as a set ordered by (instant, timer): inserting an entry already held does
//! nothing, as a `BTreeSet` would, so timers fire in the same order.

use super::Timer;
use rollcall_detect::Instant;

#[derive(Debug, Default)]
pub(super) struct Timers {
    /// Sorted by (instant, timer), descending, without duplicates.
    latest_first: Vec<(Instant, Timer)>,
}

impl Timers {
    /// Where `entry` is, or would be inserted, in the descending order.
    fn search(&self, entry: &(Instant, Timer)) -> Result<usize, usize> {
        self.latest_first.binary_search_by(|held| entry.cmp(held))
    }

    pub fn insert(&mut self, entry: (Instant, Timer)) {
        if let Err(at) = self.search(&entry) {
            self.latest_first.insert(at, entry);
        }
    }

    pub fn remove(&mut self, entry: &(Instant, Timer)) {
        if let Ok(at) = self.search(entry) {
            self.latest_first.remove(at);
        }
    }

    /// The timer due first.
    pub fn first(&self) -> Option<&(Instant, Timer)> {
        self.latest_first.last()
    }

    pub fn pop_first(&mut self) -> Option<(Instant, Timer)> {
        self.latest_first.pop()
    }

    pub fn clear(&mut self) {
        self.latest_first.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The same inserts and removes give the same order as a `BTreeSet`, duplicates included.
    #[test]
    fn timers_pop_in_the_order_of_a_set() {
        let mut timers = Timers::default();
        let mut set = BTreeSet::new();
        let mut x: u64 = 7;
        for step in 0..2000u32 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let at = Instant::from_nanos(x >> 58);
            let timer = match (x >> 40) % 3 {
                0 => Timer::Probe,
                1 => Timer::Suspicion((x >> 20) as u32 % 4),
                _ => Timer::Nack((x >> 20) as u32 % 4),
            };
            match step % 5 {
                0..=2 => {
                    timers.insert((at, timer));
                    set.insert((at, timer));
                }
                3 => {
                    timers.remove(&(at, timer));
                    set.remove(&(at, timer));
                }
                _ => assert_eq!(timers.pop_first(), set.pop_first()),
            }
            assert_eq!(timers.first(), set.first());
        }
        while let Some(entry) = set.pop_first() {
            assert_eq!(timers.pop_first(), Some(entry));
        }
        assert_eq!(timers.pop_first(), None);
    }
}

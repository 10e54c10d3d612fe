//! The daemon's clocks: the monotonic one the core judges by, and the wall clock used to
//! find cron ticks, to end maintenance windows and to stamp what people read and what is
//! stored.
//!
//! Core instants map to wall time through one offset, so the same instant always gets the
//! same wall time (a transition's stored time and the time in its alert agree to the
//! millisecond). The offset is not read once for good: NTP or a VM restored from a snapshot
//! may step the wall clock at any time, and [`Clock::observe_wall`], called by the owner at
//! every wake-up, notices the step, moves the offset, and says so, so the owner can tell the
//! check table.

use rollcall_core::Instant;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A difference between the wall clock and the offset larger than this is a step. NTP's
/// slewing (at most 0.5 ms per second) reaches it only after a quarter of an hour, and is
/// then taken up as a small step; the time between two readings never does.
pub const STEP_THRESHOLD_MS: i64 = 500;

/// Maps the OS monotonic clock to the core's [`Instant`] (nanoseconds since this clock was
/// made), and core instants to wall-clock milliseconds. Clones share the offset.
#[derive(Clone, Debug)]
pub struct Clock {
    origin: std::time::Instant,
    /// Wall-clock milliseconds at the origin, as the wall clock was last seen to run.
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn start() -> Clock {
        let origin = std::time::Instant::now();
        Clock { origin, offset_ms: Arc::new(AtomicI64::new(read_wall_ms())) }
    }

    pub fn now(&self) -> Instant {
        self.at(std::time::Instant::now())
    }

    pub fn at(&self, instant: std::time::Instant) -> Instant {
        Instant::from_nanos(instant.saturating_duration_since(self.origin).as_nanos() as u64)
    }

    /// Wall-clock milliseconds since the Unix epoch at which `instant` happened (or will),
    /// with the offset of the last look at the wall clock.
    pub fn wall_ms(&self, instant: Instant) -> i64 {
        self.offset_ms.load(Ordering::Relaxed).saturating_add((instant.as_nanos() / 1_000_000) as i64)
    }

    /// The core instant at which the wall clock read (or will read) `wall_ms`, or the origin
    /// for times before this clock started (restored records from a previous run).
    pub fn instant_at_wall_ms(&self, wall_ms: i64) -> Instant {
        let since = wall_ms.saturating_sub(self.offset_ms.load(Ordering::Relaxed)).max(0) as u64;
        Instant::from_nanos(since.saturating_mul(1_000_000))
    }

    /// The OS instant matching a core instant, for sleeping until it.
    pub fn std_instant(&self, instant: Instant) -> std::time::Instant {
        self.origin + std::time::Duration::from_nanos(instant.as_nanos())
    }

    /// Reads the wall clock; if it moved away from the offset by more than
    /// [`STEP_THRESHOLD_MS`], moves the offset and returns the step in milliseconds
    /// (positive forward). Returns `now` too, the instant the reading belongs to.
    pub fn observe_wall(&self) -> (Instant, Option<i64>) {
        let now = self.now();
        (now, self.observe_wall_at(now, read_wall_ms()))
    }

    /// [`Clock::observe_wall`] with the readings given (tests inject a wall clock here).
    pub fn observe_wall_at(&self, now: Instant, wall_ms: i64) -> Option<i64> {
        let seen = wall_ms.saturating_sub((now.as_nanos() / 1_000_000) as i64);
        let step = seen.saturating_sub(self.offset_ms.load(Ordering::Relaxed));
        if step.abs() <= STEP_THRESHOLD_MS {
            return None;
        }
        self.offset_ms.store(seen, Ordering::Relaxed);
        Some(step)
    }
}

/// The wall clock, in milliseconds since the Unix epoch (0 for a clock set before 1970).
fn read_wall_ms() -> i64 {
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(wall.as_millis()).unwrap_or(i64::MAX)
}

/// Formats wall-clock milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(wall_ms: i64) -> String {
    let time = UNIX_EPOCH + std::time::Duration::from_millis(wall_ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds (monotonic ms, wall ms) readings after a first one; returns the steps seen and
    /// the wall time the clock then gives to monotonic 0.
    fn check(first_wall_ms: i64, readings: &[(u64, i64)], expected: &[Option<i64>]) {
        let clock =
            Clock { origin: std::time::Instant::now(), offset_ms: Arc::new(AtomicI64::new(first_wall_ms)) };
        let steps: Vec<Option<i64>> = readings
            .iter()
            .map(|&(mono, wall)| clock.observe_wall_at(Instant::from_millis(mono), wall))
            .collect();
        assert_eq!(steps, expected);
    }

    #[test]
    fn steps_are_seen_both_ways_and_slewing_and_jitter_are_not() {
        let base = 1_800_000_000_000;
        // In lockstep, then a few milliseconds of slewing or reading jitter.
        check(base, &[(100, base + 100), (200, base + 203)], &[None, None]);
        // Stepped back 40 s, then in lockstep again: one step, seen once.
        check(base, &[(100, base + 100 - 40_000), (200, base + 200 - 40_000)], &[Some(-40_000), None]);
        // Stepped forward an hour (or the machine was suspended: the monotonic clock stopped).
        check(base, &[(100, base + 3_600_100)], &[Some(3_600_000)]);
        // Slewing that adds up past the threshold is taken up once, as a small step.
        check(base, &[(100_000, base + 100_300), (200_000, base + 200_600)], &[None, Some(600)]);
    }

    #[test]
    fn an_instant_maps_to_the_same_wall_time_until_a_step() {
        let clock = Clock::start();
        let at = Instant::from_millis(1234);
        let first = clock.wall_ms(at);
        assert_eq!(clock.wall_ms(at), first, "a pure function of the instant");
        assert_eq!(clock.instant_at_wall_ms(first), at);
        assert_eq!(clock.observe_wall_at(at, first - 40_000), Some(-40_000));
        assert_eq!(clock.clone().wall_ms(at), first - 40_000, "clones share the offset");
    }
}

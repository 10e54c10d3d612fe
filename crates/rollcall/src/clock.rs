//! The daemon's clocks: the monotonic one the core judges by, and the wall clock used to
//! find cron ticks, to end maintenance windows and to stamp what people read and what is
//! stored.
//!
//! The wall clock is read afresh whenever wall time matters, never derived from a reading
//! taken at start: NTP or a VM restored from a snapshot may step it at any time, and
//! [`WallWatch`] notices the step so the owner can tell the core.

use rollcall_proto::Instant;
use std::time::{SystemTime, UNIX_EPOCH};

/// A change of the wall clock against the monotonic one larger than this is a step, not the
/// slewing NTP does (at most 0.5 ms per second) nor the time between the two readings.
pub const STEP_THRESHOLD_MS: i64 = 500;

/// Maps the OS monotonic clock to the core's [`Instant`] (nanoseconds since this clock was
/// made), and core instants to wall-clock milliseconds for display and storage.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock { origin: std::time::Instant::now() }
    }

    pub fn now(&self) -> Instant {
        self.at(std::time::Instant::now())
    }

    pub fn at(&self, instant: std::time::Instant) -> Instant {
        Instant::from_nanos(instant.saturating_duration_since(self.origin).as_nanos() as u64)
    }

    /// The wall clock now, in milliseconds since the Unix epoch (0 for a clock set before
    /// 1970).
    pub fn wall_now_ms(&self) -> i64 {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        i64::try_from(wall.as_millis()).unwrap_or(i64::MAX)
    }

    /// Wall-clock milliseconds since the Unix epoch at which `instant` happened (or will),
    /// as the wall clock tells it now: a fresh reading, moved by the monotonic time between.
    pub fn wall_ms(&self, instant: Instant) -> i64 {
        let now = self.now();
        let wall_now = self.wall_now_ms();
        if instant <= now {
            wall_now.saturating_sub(millis(now - instant))
        } else {
            wall_now.saturating_add(millis(instant - now))
        }
    }

    /// The core instant at which the wall clock read (or will read) `wall_ms`, as the wall
    /// clock tells it now, or the origin for times before this clock started (restored
    /// records from a previous run).
    pub fn instant_at_wall_ms(&self, wall_ms: i64) -> Instant {
        let now = self.now();
        let wall_now = self.wall_now_ms();
        let ahead_ms = wall_ms.saturating_sub(wall_now);
        let span = std::time::Duration::from_millis(ahead_ms.unsigned_abs());
        if ahead_ms >= 0 { now + span } else { now - span }
    }

    /// The OS instant matching a core instant, for sleeping until it.
    pub fn std_instant(&self, instant: Instant) -> std::time::Instant {
        self.origin + std::time::Duration::from_nanos(instant.as_nanos())
    }
}

fn millis(span: std::time::Duration) -> i64 {
    i64::try_from(span.as_millis()).unwrap_or(i64::MAX)
}

/// Notices steps of the wall clock: the difference between the wall clock and the monotonic
/// one, compared with its value at the last look.
///
/// The owner looks at every wake-up, which comes at least every `tick`, so a step is seen
/// within a tick. Slewing accumulates between looks only by its rate, far under the threshold.
#[derive(Clone, Copy, Debug)]
pub struct WallWatch {
    offset_ms: i64,
}

impl WallWatch {
    /// Starts watching from a pair of readings taken together.
    pub fn new(now: Instant, wall_ms: i64) -> WallWatch {
        WallWatch { offset_ms: offset_ms(now, wall_ms) }
    }

    /// Takes a new pair of readings; returns the step in milliseconds (positive forward) if
    /// the wall clock moved against the monotonic one by more than [`STEP_THRESHOLD_MS`]
    /// since the last look.
    pub fn observe(&mut self, now: Instant, wall_ms: i64) -> Option<i64> {
        let offset = offset_ms(now, wall_ms);
        let step = offset.saturating_sub(self.offset_ms);
        self.offset_ms = offset;
        (step.abs() > STEP_THRESHOLD_MS).then_some(step)
    }
}

fn offset_ms(now: Instant, wall_ms: i64) -> i64 {
    wall_ms.saturating_sub((now.as_nanos() / 1_000_000) as i64)
}

/// Formats wall-clock milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(wall_ms: i64) -> String {
    let time = UNIX_EPOCH + std::time::Duration::from_millis(wall_ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(readings: &[(u64, i64)], expected: &[Option<i64>]) {
        let (first, rest) = readings.split_first().expect("at least one reading");
        let mut watch = WallWatch::new(Instant::from_millis(first.0), first.1);
        let steps: Vec<Option<i64>> =
            rest.iter().map(|&(mono, wall)| watch.observe(Instant::from_millis(mono), wall)).collect();
        assert_eq!(steps, expected);
    }

    #[test]
    fn steps_are_seen_both_ways_and_slewing_is_not() {
        let base = 1_800_000_000_000;
        // In lockstep, then a few milliseconds of slewing or reading jitter.
        check(&[(0, base), (100, base + 100), (200, base + 203)], &[None, None]);
        // Stepped back 40 s, then in lockstep again: one step, seen once.
        check(&[(0, base), (100, base + 100 - 40_000), (200, base + 200 - 40_000)], &[Some(-40_000), None]);
        // Stepped forward an hour (or the machine was suspended: the monotonic clock stopped).
        check(&[(0, base), (100, base + 3_600_100)], &[Some(3_600_000)]);
    }
}

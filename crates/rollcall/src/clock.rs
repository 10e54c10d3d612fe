//! The daemon's clocks: the monotonic one the core judges by, and the wall clock used only
//! to stamp what people read and what is stored.

use rollcall_proto::Instant;
use std::time::{SystemTime, UNIX_EPOCH};

/// Maps the OS monotonic clock to the core's [`Instant`] (nanoseconds since this clock was
/// made), and core instants to wall-clock milliseconds for display and storage.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: std::time::Instant,
    wall_origin_ms: i64,
}

impl Clock {
    pub fn start() -> Clock {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Clock { origin: std::time::Instant::now(), wall_origin_ms: wall.as_millis() as i64 }
    }

    pub fn now(&self) -> Instant {
        self.at(std::time::Instant::now())
    }

    pub fn at(&self, instant: std::time::Instant) -> Instant {
        Instant::from_nanos(instant.saturating_duration_since(self.origin).as_nanos() as u64)
    }

    /// Wall-clock milliseconds since the Unix epoch at which `instant` happened.
    pub fn wall_ms(&self, instant: Instant) -> i64 {
        self.wall_origin_ms + (instant.as_nanos() / 1_000_000) as i64
    }

    /// The core instant at which the wall clock read `wall_ms`, or the origin for times
    /// before this clock started (restored records from a previous run).
    pub fn instant_at_wall_ms(&self, wall_ms: i64) -> Instant {
        let since = wall_ms.saturating_sub(self.wall_origin_ms).max(0) as u64;
        Instant::from_nanos(since.saturating_mul(1_000_000))
    }

    /// The OS instant matching a core instant, for sleeping until it.
    pub fn std_instant(&self, instant: Instant) -> std::time::Instant {
        self.origin + std::time::Duration::from_nanos(instant.as_nanos())
    }
}

/// Formats wall-clock milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(wall_ms: i64) -> String {
    let time = UNIX_EPOCH + std::time::Duration::from_millis(wall_ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

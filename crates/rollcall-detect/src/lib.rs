//! Failure detectors for rollcall: pure math over heartbeat arrival times.
//!
//! A detector is fed the instants at which heartbeats arrive (on the monitor's own monotonic
//! receive clock, never a sender's timestamp) and answers two questions: how suspicious is
//! the silence right now ([`Detector::level`]), and at which instant will a given level be
//! crossed if nothing more arrives ([`Detector::crossing`]). The second answer is what lets
//! the monitor keep one deadline per node in a timer structure instead of scanning every
//! node on every tick.
//!
//! This crate deliberately does no I/O, reads no clock and holds no node identity: it is
//! arithmetic over [`Instant`]s passed in by the caller.
//!
//! Start with [`Detector`], then [`FixedTimeout`] (the seed's detector) and [`PhiAccrual`]
//! (Hayashibara et al. 2004, with Akka's defaults). Adding a detector is one file that
//! implements [`Detector`] and one variant in [`AnyDetector`].

mod config_error;
pub mod curve;
mod fixed;
mod phi;
pub mod qos;
mod time;

pub use config_error::ConfigError;
pub use fixed::{FixedTimeout, FixedTimeoutConfig};
pub use phi::{IntervalStats, PHI_WINDOW, PhiAccrual, PhiAccrualConfig};
pub use time::Instant;

use core::time::Duration;

/// A failure detector for one node.
///
/// The caller records each heartbeat's arrival with [`Detector::heartbeat`], in
/// non-decreasing order of `now`, and asks [`Detector::crossing`] for the instant at which a
/// threshold will be crossed if no further heartbeat arrives.
pub trait Detector {
    /// Records a heartbeat that arrived at `now` on the monitor's receive clock.
    ///
    /// Arrivals earlier than the previous one are clamped to it (the clock is monotonic, so
    /// this only happens through caller error, and must not corrupt the statistics).
    fn heartbeat(&mut self, now: Instant);

    /// The suspicion level at `now`: phi for phi accrual; for the fixed timeout, the time
    /// since the last heartbeat divided by the down timeout (so 1.0 means down).
    ///
    /// Never decreases while no heartbeat arrives. Zero before the first heartbeat.
    fn level(&self, now: Instant) -> f64;

    /// The earliest instant at which [`Detector::level`] reaches `threshold` if no further
    /// heartbeat arrives, or `None` before the first heartbeat.
    ///
    /// The answer is a whole nanosecond at which `level(answer) >= threshold` holds, so a
    /// caller that checks the level at its deadline finds the threshold crossed. A threshold
    /// already reached at the last arrival (any threshold <= 0, for instance) gives the last
    /// arrival; a threshold the level never reaches (NaN, +inf, or one it would only reach past
    /// the end of the clock) gives [`Instant::MAX`].
    fn crossing(&self, threshold: f64) -> Option<Instant>;

    /// The level at which the node becomes `suspect` under this detector's configuration.
    fn suspect_level(&self) -> f64;

    /// The level at which the node becomes `down` under this detector's configuration.
    fn down_level(&self) -> f64;

    /// When the node becomes suspect if nothing more arrives.
    fn suspect_at(&self) -> Option<Instant> {
        self.crossing(self.suspect_level())
    }

    /// When the node becomes down if nothing more arrives.
    fn down_at(&self) -> Option<Instant> {
        self.crossing(self.down_level())
    }

    /// When the last heartbeat arrived, if any did.
    fn last_arrival(&self) -> Option<Instant>;

    /// The mean inter-arrival time the detector currently assumes.
    fn mean_interval(&self) -> Duration;
}

/// The detectors rollcall ships, as one enum so that node tables hold them inline (no box,
/// no virtual call on the hot path).
#[derive(Clone, Debug)]
pub enum AnyDetector {
    /// The seed's detector: down after `interval x multiplier + grace` of silence.
    Fixed(FixedTimeout),
    /// The adaptive detector: phi accrual over the recent inter-arrival times.
    Phi(PhiAccrual),
}

impl AnyDetector {
    /// The inter-arrival times the detector keeps, oldest first (empty for detectors that
    /// keep none, such as the fixed timeout).
    pub fn recent_intervals(&self) -> Vec<Duration> {
        match self {
            AnyDetector::Fixed(_) => Vec::new(),
            AnyDetector::Phi(d) => d.recent_intervals(),
        }
    }
}

impl Detector for AnyDetector {
    fn heartbeat(&mut self, now: Instant) {
        match self {
            AnyDetector::Fixed(d) => d.heartbeat(now),
            AnyDetector::Phi(d) => d.heartbeat(now),
        }
    }

    fn level(&self, now: Instant) -> f64 {
        match self {
            AnyDetector::Fixed(d) => d.level(now),
            AnyDetector::Phi(d) => d.level(now),
        }
    }

    fn crossing(&self, threshold: f64) -> Option<Instant> {
        match self {
            AnyDetector::Fixed(d) => d.crossing(threshold),
            AnyDetector::Phi(d) => d.crossing(threshold),
        }
    }

    fn suspect_level(&self) -> f64 {
        match self {
            AnyDetector::Fixed(d) => d.suspect_level(),
            AnyDetector::Phi(d) => d.suspect_level(),
        }
    }

    fn down_level(&self) -> f64 {
        match self {
            AnyDetector::Fixed(d) => d.down_level(),
            AnyDetector::Phi(d) => d.down_level(),
        }
    }

    fn last_arrival(&self) -> Option<Instant> {
        match self {
            AnyDetector::Fixed(d) => d.last_arrival(),
            AnyDetector::Phi(d) => d.last_arrival(),
        }
    }

    fn mean_interval(&self) -> Duration {
        match self {
            AnyDetector::Fixed(d) => d.mean_interval(),
            AnyDetector::Phi(d) => d.mean_interval(),
        }
    }
}

/// Rounds a count of nanoseconds to the nearest whole one, saturating at both ends.
///
/// A float-to-integer `as` cast saturates and maps NaN to zero, which is exactly the clamp
/// wanted for a span that can only be non-negative.
pub(crate) fn nanos_u64(nanos: f64) -> u64 {
    nanos.round() as u64
}

/// How far [`earliest_crossing`] walks from its estimate, in nanoseconds.
///
/// The closed forms are accurate to a few nanoseconds for any span a heartbeat system
/// meets (their float error is far below one part in 10^12), so a short walk always ends
/// on the exact instant; the bound only keeps hostile inputs from making it long.
const CROSSING_WALK_NS: u32 = 64;

/// The earliest whole nanosecond after `last`, near `estimate_ns` nanoseconds after it, at
/// which `reached` holds.
///
/// Detectors compute their crossing in closed form with floats, which may land a
/// nanosecond either side of the instant at which their own `level` (also floats) reaches
/// the threshold. Walking from the rounded-up estimate to the first instant where `reached`
/// holds makes `level(crossing(t)) >= t` exact, and keeps round configured deadlines round
/// (the seed's 4 s, not 4 s + 1 ns). `reached` must be monotonic in the instant.
pub(crate) fn earliest_crossing(
    last: Instant,
    estimate_ns: f64,
    reached: impl Fn(Instant) -> bool,
) -> Instant {
    // `ceil` then a saturating cast: negative and NaN estimates clamp to `last`, huge ones
    // to the end of time.
    let mut at = last + Duration::from_nanos(estimate_ns.ceil() as u64);
    let one = Duration::from_nanos(1);
    if reached(at) {
        for _ in 0..CROSSING_WALK_NS {
            if at <= last || !reached(at - one) {
                break;
            }
            at = at - one;
        }
    } else {
        for _ in 0..CROSSING_WALK_NS {
            if at == Instant::MAX {
                break;
            }
            at = at + one;
            if reached(at) {
                break;
            }
        }
    }
    at
}

#[cfg(test)]
mod tests;

/// The README's examples, run as doc tests so that they keep compiling.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

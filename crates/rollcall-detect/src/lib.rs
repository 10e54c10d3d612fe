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

mod fixed;
mod phi;
mod time;

pub use fixed::{FixedTimeout, FixedTimeoutConfig};
pub use phi::{PhiAccrual, PhiAccrualConfig, PHI_WINDOW};
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
    Fixed(FixedTimeout),
    Phi(PhiAccrual),
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

#[cfg(test)]
mod tests;

//! Tests of the detectors, all on a virtual clock: instants are plain numbers built with
//! [`Instant::from_millis`] or [`Instant::from_nanos`], never read from a clock.
//!
//! `fixed` and `phi` hold example tests of each detector, `cdf` measures the normal CDF
//! approximation that the documentation quotes, and `props` holds the property tests.

mod cdf;
mod curve;
mod fixed;
mod phi;
mod props;

use crate::{
    AnyDetector, Detector, FixedTimeout, FixedTimeoutConfig, Instant, PHI_WINDOW, PhiAccrual,
    PhiAccrualConfig,
};
use core::time::Duration;
use std::sync::Arc;

/// One nanosecond, the resolution of [`Instant`].
const NS: Duration = Duration::from_nanos(1);

fn at_ms(millis: u64) -> Instant {
    Instant::from_millis(millis)
}

fn fixed(config: FixedTimeoutConfig, interval: Duration) -> FixedTimeout {
    FixedTimeout::new(Arc::new(config), interval)
}

fn phi(config: PhiAccrualConfig, interval: Duration) -> PhiAccrual {
    PhiAccrual::new(Arc::new(config), interval)
}

/// A phi detector with Akka's defaults for a sender declaring a 1 s interval.
fn akka() -> PhiAccrual {
    phi(PhiAccrualConfig::default(), Duration::from_secs(1))
}

/// Feeds a heartbeat at `start` and then one after each of `intervals`; returns the last
/// arrival.
fn feed(
    detector: &mut impl Detector,
    start: Instant,
    intervals: impl IntoIterator<Item = Duration>,
) -> Instant {
    detector.heartbeat(start);
    extend(detector, start, intervals)
}

/// Feeds one heartbeat after each of `intervals`, counted from `from`; returns the last
/// arrival.
fn extend(
    detector: &mut impl Detector,
    from: Instant,
    intervals: impl IntoIterator<Item = Duration>,
) -> Instant {
    let mut now = from;
    for interval in intervals {
        now = now + interval;
        detector.heartbeat(now);
    }
    now
}

/// Feeds `count` heartbeats exactly `interval` apart, the first at zero; returns the last.
fn feed_steady(detector: &mut impl Detector, interval: Duration, count: usize) -> Instant {
    feed(detector, Instant::ZERO, std::iter::repeat_n(interval, count.saturating_sub(1)))
}

/// Checks what the [`Detector::crossing`] contract promises for `threshold`: the answer is
/// the earliest whole nanosecond at which the level has reached it. Returns the crossing.
///
/// This is stricter than a tolerance on phi: a relative tolerance of 1e-6 fails in the far
/// left tail, where phi changes by more than a millionth of itself per nanosecond when the
/// standard deviation is a millisecond, while this holds everywhere.
fn check_crossing(detector: &impl Detector, threshold: f64) -> Instant {
    let last = detector.last_arrival().expect("a crossing needs a heartbeat");
    let crossing = detector.crossing(threshold).expect("a heartbeat arrived");
    let level = detector.level(crossing);
    assert!(crossing >= last, "crossing {crossing:?} before the last arrival {last:?}");
    assert!(level >= threshold, "level {level} at the crossing is below {threshold}");
    if crossing > last {
        let before = detector.level(crossing - NS);
        assert!(before < threshold, "level {before} one ns before the crossing already reached {threshold}");
    }
    crossing
}

/// A deterministic source of jitter (Knuth's MMIX linear congruential generator), so the
/// tests need no randomness from the OS.
struct Lcg(u64);

impl Lcg {
    /// A value in `low..=high`, roughly uniform.
    fn next_in(&mut self, low: i64, high: i64) -> i64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let span = u64::try_from(high - low + 1).expect("low <= high");
        low + i64::try_from((self.0 >> 33) % span).expect("span fits")
    }
}

#[test]
fn recent_intervals_come_oldest_first_and_roll_over() {
    let mut phi = PhiAccrual::new(Arc::new(PhiAccrualConfig::default()), Duration::from_secs(1));
    assert_eq!(phi.recent_intervals().len(), 2, "the two seeds");
    let mut now = Instant::from_millis(0);
    phi.heartbeat(now);
    for i in 1..=40u64 {
        now = now + Duration::from_millis(1000 + i);
        phi.heartbeat(now);
    }
    let window = phi.recent_intervals();
    assert_eq!(window.len(), PHI_WINDOW);
    // The last 32 of the 40 intervals, 1009 ms .. 1040 ms, in arrival order.
    let expected: Vec<Duration> = (9..=40u64).map(|i| Duration::from_millis(1000 + i)).collect();
    assert_eq!(window, expected);
    let fixed = AnyDetector::Fixed(FixedTimeout::new(
        Arc::new(FixedTimeoutConfig::default()),
        Duration::from_secs(1),
    ));
    assert!(fixed.recent_intervals().is_empty());
}

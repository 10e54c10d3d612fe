//! Property tests over random arrival histories.

use super::{NS, check_crossing, feed, fixed, phi};
use crate::{Detector, FixedTimeoutConfig, Instant, PhiAccrual, PhiAccrualConfig};
use core::time::Duration;
use proptest::prelude::*;

/// 1..200 inter-arrival times between 1 ms and 10 s, in nanoseconds.
fn history() -> impl Strategy<Value = Vec<Duration>> {
    prop::collection::vec((1_000_000u64..=10_000_000_000).prop_map(Duration::from_nanos), 1..=200)
}

/// Phi settings around Akka's, including no pause and tiny deviations, where phi is
/// steepest and the crossing may lie before the mean.
fn phi_config() -> impl Strategy<Value = PhiAccrualConfig> {
    (0u64..=5_000, 1u64..=1_000, 0.1f64..=20.0).prop_map(|(pause_ms, min_std_ms, threshold)| {
        PhiAccrualConfig {
            threshold,
            suspect_threshold: threshold / 2.0,
            min_std_deviation: Duration::from_millis(min_std_ms),
            acceptable_pause: Duration::from_millis(pause_ms),
            first_heartbeat_estimate: None,
        }
    })
}

fn fixed_config() -> impl Strategy<Value = FixedTimeoutConfig> {
    (1.0f64..=10.0, 0u64..=10_000).prop_map(|(multiplier, grace_ms)| FixedTimeoutConfig {
        multiplier,
        grace: Duration::from_millis(grace_ms),
    })
}

/// Up to 50 offsets after the last arrival, up to a minute, in nanoseconds.
fn offsets() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(0u64..=60_000_000_000, 1..=50)
}

/// A phi detector fed `intervals` from an arbitrary start, with its last arrival.
fn fed_phi(config: PhiAccrualConfig, declared_ms: u64, intervals: &[Duration]) -> (PhiAccrual, Instant) {
    let mut detector = phi(config, Duration::from_millis(declared_ms));
    let last = feed(&mut detector, Instant::from_millis(17), intervals.iter().copied());
    (detector, last)
}

/// Checks that the level never decreases, never is NaN and never is negative over the
/// given offsets after the last arrival (and at instants before it, which are clamped).
fn check_silence(detector: &impl Detector, mut offsets: Vec<u64>) -> Result<(), TestCaseError> {
    let last = detector.last_arrival().expect("fed");
    offsets.sort_unstable();
    let mut previous = detector.level(last - Duration::from_secs(1));
    prop_assert_eq!(previous, detector.level(last), "an earlier now is clamped to the last arrival");
    for offset in offsets {
        let level = detector.level(last + Duration::from_nanos(offset));
        prop_assert!(level.is_finite() && level >= 0.0, "level {} at +{} ns", level, offset);
        prop_assert!(level >= previous, "level fell from {} to {} at +{} ns", previous, level, offset);
        previous = level;
    }
    Ok(())
}

proptest! {
    #[test]
    fn phi_never_decreases_while_silent(
        config in phi_config(),
        declared_ms in 1u64..=10_000,
        intervals in history(),
        offsets in offsets(),
    ) {
        let (detector, _) = fed_phi(config, declared_ms, &intervals);
        check_silence(&detector, offsets)?;
        prop_assert!(detector.level(Instant::MAX).is_finite());
    }

    #[test]
    fn phi_crossing_matches_level(
        config in phi_config(),
        declared_ms in 1u64..=10_000,
        intervals in history(),
        thresholds in prop::collection::vec(1e-4f64..=50.0, 1..=10),
    ) {
        let (detector, _) = fed_phi(config, declared_ms, &intervals);
        for threshold in thresholds {
            check_crossing(&detector, threshold);
        }
        check_crossing(&detector, detector.suspect_level());
        check_crossing(&detector, detector.down_level());
        prop_assert!(detector.suspect_at() <= detector.down_at());
    }

    #[test]
    fn phi_stats_stay_within_the_samples(
        config in phi_config(),
        intervals in history(),
    ) {
        let (detector, _) = fed_phi(config, 1_000, &intervals);
        let stats = detector.interval_stats();
        let seeds = [Duration::from_millis(750), Duration::from_millis(1_250)];
        let window = &intervals[intervals.len().saturating_sub(crate::PHI_WINDOW)..];
        let low = window.iter().chain(&seeds).min().expect("not empty").as_micros();
        let high = window.iter().chain(&seeds).max().expect("not empty").as_micros();
        let mean = stats.mean.as_micros();
        prop_assert!(low <= mean && mean <= high + 1, "mean {:?} outside {}..={} us", stats.mean, low, high);
        prop_assert!(stats.std_deviation.as_micros() <= high - low, "std dev {:?}", stats.std_deviation);
    }

    #[test]
    fn out_of_order_arrival_does_not_corrupt_phi(
        config in phi_config(),
        intervals in history(),
        early_ns in 1u64..=100_000_000_000,
    ) {
        let (mut detector, last) = fed_phi(config, 1_000, &intervals);
        let mut twin = detector.clone();
        detector.heartbeat(last - Duration::from_nanos(early_ns));
        twin.heartbeat(last);
        prop_assert_eq!(detector.last_arrival(), Some(last));
        prop_assert_eq!(detector.interval_stats(), twin.interval_stats());
        prop_assert_eq!(detector.down_at(), twin.down_at());
        prop_assert!(detector.interval_stats().mean <= Duration::from_secs(10));
        prop_assert!(!detector.level(last + Duration::from_secs(5)).is_nan());
    }

    #[test]
    fn fixed_never_decreases_while_silent(
        config in fixed_config(),
        declared_ms in 0u64..=100_000,
        intervals in history(),
        offsets in offsets(),
        thresholds in prop::collection::vec(-1.0f64..=5.0, 1..=10),
    ) {
        let mut detector = fixed(config, Duration::from_millis(declared_ms));
        feed(&mut detector, Instant::from_millis(17), intervals);
        check_silence(&detector, offsets)?;
        for threshold in thresholds {
            check_crossing(&detector, threshold);
        }
        let suspect = check_crossing(&detector, detector.suspect_level());
        let down = check_crossing(&detector, detector.down_level());
        let last = detector.last_arrival().expect("fed");
        // The configured timeouts are whole nanoseconds, so the deadlines are exact.
        prop_assert_eq!(suspect, last + detector.suspect_timeout());
        prop_assert_eq!(down, last + detector.down_timeout());
        prop_assert!(detector.level(down - NS) < 1.0);
    }

    #[test]
    fn out_of_order_arrival_does_not_move_the_fixed_deadline(
        config in fixed_config(),
        intervals in history(),
        early_ns in 1u64..=100_000_000_000,
    ) {
        let mut detector = fixed(config, Duration::from_secs(1));
        let last = feed(&mut detector, Instant::from_millis(17), intervals);
        let down = detector.down_at();
        detector.heartbeat(last - Duration::from_nanos(early_ns));
        prop_assert_eq!(detector.last_arrival(), Some(last));
        prop_assert_eq!(detector.down_at(), down);
    }
}

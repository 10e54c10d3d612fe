//! Example tests of the fixed timeout.

use super::{at_ms, check_crossing, feed_steady, fixed};
use crate::{AnyDetector, Detector, FixedTimeoutConfig, Instant};
use core::time::Duration;

/// Checks the deadlines of a fixed timeout whose last heartbeat arrived at 10 s.
fn check(config: FixedTimeoutConfig, interval: Duration, suspect_after: Duration, down_after: Duration) {
    let mut detector = fixed(config, interval);
    let last = at_ms(10_000);
    detector.heartbeat(last);
    assert_eq!(detector.suspect_timeout(), suspect_after, "suspect timeout");
    assert_eq!(detector.down_timeout(), down_after, "down timeout");
    assert_eq!(detector.suspect_at(), Some(last + suspect_after), "suspect at");
    assert_eq!(detector.down_at(), Some(last + down_after), "down at");
    // The deadlines agree with the level: reached at the deadline, not a nanosecond before.
    check_crossing(&detector, detector.suspect_level());
    check_crossing(&detector, detector.down_level());
}

#[test]
fn seed_example() {
    // The seed article: a heartbeat every 2 s, suspect after 4 s, alert (down) after 5 s.
    check(
        FixedTimeoutConfig::default(),
        Duration::from_secs(2),
        Duration::from_secs(4),
        Duration::from_secs(5),
    );
}

#[test]
fn deadlines_follow_the_formula() {
    let config =
        |multiplier, grace_ms| FixedTimeoutConfig { multiplier, grace: Duration::from_millis(grace_ms) };
    check(config(3.0, 0), Duration::from_secs(10), Duration::from_secs(30), Duration::from_secs(30));
    check(
        config(1.5, 250),
        Duration::from_millis(100),
        Duration::from_millis(150),
        Duration::from_millis(400),
    );
    check(
        config(1.0, 60_000),
        Duration::from_secs(3600),
        Duration::from_secs(3600),
        Duration::from_secs(3660),
    );
    // A zero declared interval is taken as 1 ms.
    check(config(2.0, 1000), Duration::ZERO, Duration::from_millis(2), Duration::from_millis(1002));
}

#[test]
fn levels() {
    let mut detector = fixed(FixedTimeoutConfig::default(), Duration::from_secs(2));
    assert_eq!(detector.level(at_ms(60_000)), 0.0, "zero before the first heartbeat");
    detector.heartbeat(at_ms(1_000));
    assert_eq!(detector.level(at_ms(1_000)), 0.0);
    assert_eq!(detector.level(at_ms(3_500)), 0.5);
    assert_eq!(detector.level(at_ms(5_000)), 0.8);
    assert_eq!(detector.suspect_level(), 0.8);
    assert_eq!(detector.level(at_ms(6_000)), 1.0);
    assert_eq!(detector.down_level(), 1.0);
    assert_eq!(detector.level(at_ms(11_000)), 2.0, "keeps rising past down");
    assert_eq!(detector.level(at_ms(0)), 0.0, "an earlier now is clamped to the last arrival");
    assert_eq!(detector.mean_interval(), Duration::from_secs(2));
}

#[test]
fn crossing() {
    let mut detector = fixed(FixedTimeoutConfig::default(), Duration::from_secs(2));
    assert_eq!(detector.crossing(0.5), None, "no deadline before the first heartbeat");
    assert_eq!(detector.suspect_at(), None);
    detector.heartbeat(at_ms(1_000));
    assert_eq!(detector.crossing(0.0), Some(at_ms(1_000)));
    assert_eq!(detector.crossing(-3.0), Some(at_ms(1_000)));
    assert_eq!(detector.crossing(0.5), Some(at_ms(3_500)));
    assert_eq!(detector.crossing(2.0), Some(at_ms(11_000)));
    assert_eq!(detector.crossing(f64::NAN), Some(Instant::MAX), "a NaN threshold is never reached");
    assert_eq!(detector.crossing(f64::INFINITY), Some(Instant::MAX));
    for i in 1..=1000 {
        check_crossing(&detector, f64::from(i) / 317.0);
    }
    // A heartbeat moves every deadline.
    detector.heartbeat(at_ms(2_000));
    assert_eq!(detector.down_at(), Some(at_ms(7_000)));
}

#[test]
fn declared_interval_changes() {
    let mut detector = fixed(FixedTimeoutConfig::default(), Duration::from_secs(2));
    let last = feed_steady(&mut detector, Duration::from_secs(2), 3);
    detector.set_declared_interval(Duration::from_secs(10));
    assert_eq!(detector.mean_interval(), Duration::from_secs(10));
    assert_eq!(detector.down_at(), Some(last + Duration::from_secs(21)));
    detector.set_declared_interval(Duration::ZERO);
    assert_eq!(detector.down_at(), Some(last + Duration::from_millis(1002)));
}

#[test]
fn out_of_order_arrival_keeps_the_later_one() {
    let mut detector = fixed(FixedTimeoutConfig::default(), Duration::from_secs(2));
    detector.heartbeat(at_ms(5_000));
    detector.heartbeat(at_ms(4_000));
    assert_eq!(detector.last_arrival(), Some(at_ms(5_000)));
    assert_eq!(detector.down_at(), Some(at_ms(10_000)));
}

#[test]
fn huge_spans_saturate() {
    let config = FixedTimeoutConfig { multiplier: 1e30, grace: Duration::MAX };
    let mut detector = fixed(config, Duration::from_secs(1));
    detector.heartbeat(at_ms(1));
    assert_eq!(detector.down_timeout(), Duration::from_nanos(u64::MAX));
    assert_eq!(detector.down_at(), Some(Instant::MAX));
    assert!(detector.level(Instant::MAX).is_finite());
    assert!(detector.level(Instant::MAX) <= 1.0);
}

#[test]
fn validate() {
    let check = |multiplier: f64, expected: Result<(), &str>| {
        let config = FixedTimeoutConfig { multiplier, ..FixedTimeoutConfig::default() };
        assert_eq!(
            config.validate().map_err(|e| e.to_string()),
            expected.map_err(str::to_owned),
            "multiplier {multiplier}"
        );
    };
    check(2.0, Ok(()));
    check(1.0, Ok(()));
    check(0.5, Err("multiplier must be a finite number >= 1, got 0.5"));
    check(f64::NAN, Err("multiplier must be a finite number >= 1, got NaN"));
    check(f64::INFINITY, Err("multiplier must be a finite number >= 1, got inf"));
}

#[test]
fn any_detector_forwards() {
    let mut detector = AnyDetector::Fixed(fixed(FixedTimeoutConfig::default(), Duration::from_secs(2)));
    detector.heartbeat(at_ms(0));
    assert_eq!(detector.suspect_at(), Some(at_ms(4_000)));
    assert_eq!(detector.down_at(), Some(at_ms(5_000)));
    assert_eq!(detector.last_arrival(), Some(at_ms(0)));
    assert_eq!(detector.mean_interval(), Duration::from_secs(2));
}

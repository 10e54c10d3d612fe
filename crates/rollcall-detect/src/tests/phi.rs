//! Example tests of phi accrual.

use super::{Lcg, NS, akka, at_ms, check_crossing, extend, feed, feed_steady, phi};
use crate::phi::{Boundary, logistic_quantile, phi_of_score, remembered_boundary};
use crate::{
    AnyDetector, Detector, FixedTimeout, Instant, IntervalStats, PHI_WINDOW, PhiAccrual, PhiAccrualConfig,
};
use core::time::Duration;

const SECOND: Duration = Duration::from_secs(1);

/// Solves Akka's logistic for `phi = threshold` by bisection, independently of the closed
/// form under test: `y (1.5976 + 0.070566 y^2) = ln(10^threshold - 1)`.
fn score_by_bisection(threshold: f64) -> f64 {
    let target = (10f64.powf(threshold) - 1.0).ln();
    let (mut low, mut high) = (-100.0, 100.0);
    for _ in 0..200 {
        let mid = (low + high) / 2.0;
        if mid * (1.5976 + 0.070566 * mid * mid) < target {
            low = mid;
        } else {
            high = mid;
        }
    }
    low
}

fn check_stats(detector: &PhiAccrual, mean: Duration, std_deviation: Duration, samples: usize) {
    assert_eq!(detector.interval_stats(), IntervalStats { mean, std_deviation, samples });
}

#[test]
fn memory() {
    // A million nodes must fit in well under 512 MB of detectors.
    assert!(size_of::<PhiAccrual>() <= 192, "PhiAccrual is {} bytes", size_of::<PhiAccrual>());
    assert!(size_of::<FixedTimeout>() <= 48, "FixedTimeout is {} bytes", size_of::<FixedTimeout>());
    assert!(size_of::<AnyDetector>() <= 192, "AnyDetector is {} bytes", size_of::<AnyDetector>());
}

#[test]
fn phi_rises_monotonically_while_silent() {
    let mut detector = akka();
    let last = feed_steady(&mut detector, SECOND, 50);
    let mut previous = detector.level(last);
    for step in 1..=2000 {
        let level = detector.level(last + Duration::from_millis(10 * step));
        assert!(level.is_finite(), "phi {level} at step {step}");
        assert!(level >= previous, "phi fell from {previous} to {level} at step {step}");
        previous = level;
    }
    assert!(previous > 1e5, "phi after 20 s of silence is only {previous}");
}

#[test]
fn steady_stream_never_crosses_the_threshold() {
    let check = |intervals: &mut dyn Iterator<Item = Duration>| {
        let mut detector = akka();
        let mut now = at_ms(1_000);
        detector.heartbeat(now);
        for (i, interval) in intervals.enumerate() {
            let next = now + interval;
            let level = detector.level(next - NS);
            assert!(level < 8.0, "phi {level} just before heartbeat {i}");
            assert!(detector.down_at().is_some_and(|down| down >= next), "down before heartbeat {i}");
            detector.heartbeat(next);
            now = next;
        }
    };
    check(&mut std::iter::repeat_n(SECOND, 1_000));
    let mut lcg = Lcg(7);
    check(
        &mut (0..1_000).map(|_| Duration::from_millis(1_000u64.saturating_add_signed(lcg.next_in(-50, 50)))),
    );
}

#[test]
fn phi_crosses_the_threshold_at_the_documented_time() {
    let mut detector = akka();
    let last = feed_steady(&mut detector, SECOND, 100);
    for (threshold, elapsed_s) in [(8.0, 4.5226), (3.0, 4.3059)] {
        // Akka's defaults: mean 1 s + 3 s pause, standard deviation raised to 100 ms.
        let expected = 4.0 + score_by_bisection(threshold) * 0.1;
        assert!((expected - elapsed_s).abs() < 1e-4, "phi {threshold} after {expected} s");
        let crossing = check_crossing(&detector, threshold);
        let elapsed = (crossing - last).as_secs_f64();
        assert!((elapsed - expected).abs() < 1e-6, "crossing {elapsed} s, expected {expected} s");
    }
    assert_eq!(detector.down_at(), detector.crossing(8.0));
    assert_eq!(detector.suspect_at(), detector.crossing(3.0));
    let down = detector.down_at().expect("heartbeats arrived");
    assert!(detector.level(down) >= detector.down_level() && detector.level(down - NS) < 8.0);
    let suspect = detector.suspect_at().expect("heartbeats arrived");
    assert!(detector.level(suspect) >= detector.suspect_level() && detector.level(suspect - NS) < 3.0);
}

#[test]
fn min_std_deviation_is_honoured() {
    let mut detector = akka();
    let last = feed_steady(&mut detector, SECOND, PHI_WINDOW + 10);
    check_stats(&detector, SECOND, Duration::ZERO, PHI_WINDOW);
    // mean + pause + one sigma: exactly one standard deviation of 100 ms past the mean.
    assert_eq!(detector.level(last + Duration::from_millis(4_100)), phi_of_score(1.0));
    assert_eq!(detector.level(last + Duration::from_millis(3_800)), phi_of_score(-2.0));

    let config =
        PhiAccrualConfig { min_std_deviation: Duration::from_millis(10), ..PhiAccrualConfig::default() };
    let mut sharper = phi(config, SECOND);
    let last = feed_steady(&mut sharper, SECOND, PHI_WINDOW + 10);
    assert_eq!(sharper.level(last + Duration::from_millis(4_010)), phi_of_score(1.0));
}

#[test]
fn window_is_seeded_like_akka() {
    let mut detector = akka();
    check_stats(&detector, SECOND, Duration::from_millis(250), 2);
    assert_eq!(detector.level(at_ms(5_000)), 0.0, "zero before the first heartbeat");
    assert_eq!(detector.crossing(8.0), None);
    detector.heartbeat(at_ms(5_000));
    check_stats(&detector, SECOND, Duration::from_millis(250), 2);
    // The seeds make phi meaningful after one heartbeat: mean 1 s + 3 s, sigma 250 ms.
    assert_eq!(detector.level(at_ms(9_250)), phi_of_score(1.0));
    detector.heartbeat(at_ms(6_000));
    check_stats(&detector, SECOND, Duration::from_nanos(204_124_145), 3);

    let config =
        PhiAccrualConfig { first_heartbeat_estimate: Some(Duration::from_millis(400)), ..Default::default() };
    check_stats(&phi(config, SECOND), Duration::from_millis(400), Duration::from_millis(100), 2);
}

#[test]
fn moments_are_exact_for_long_nearly_equal_intervals() {
    // Intervals of about 71 minutes (near the largest a sample holds, 2^32 us) alternating
    // by one microsecond: mean 4,294,000,000.5 us and standard deviation 0.5 us exactly,
    // where a float sum of squares would lose the half to cancellation.
    let mut detector = akka();
    let long = Duration::from_micros(4_294_000_000);
    let intervals = (0..64).map(|i| long + Duration::from_micros(i % 2));
    feed(&mut detector, Instant::ZERO, intervals);
    check_stats(&detector, long + Duration::from_nanos(500), Duration::from_nanos(500), 32);
}

#[test]
fn moments_match_a_two_pass_reference() {
    // Jittered windows of every length from the seeds to full: the mean and standard
    // deviation agree with the textbook two-pass computation to the nanosecond.
    let mut jitter = Lcg(7);
    let mut detector = akka();
    let mut last = feed(&mut detector, Instant::ZERO, []);
    for _ in 0..100 {
        let interval = Duration::from_micros(jitter.next_in(1, 20_000_000).unsigned_abs());
        last = extend(&mut detector, last, [interval]);
        let window: Vec<f64> =
            detector.recent_intervals().iter().map(|d| d.as_nanos() as f64 / 1e3).collect();
        let n = window.len() as f64;
        let mean = window.iter().sum::<f64>() / n;
        let variance = window.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
        let stats = detector.interval_stats();
        let close = |got: Duration, want_us: f64| (got.as_nanos() as f64 - want_us * 1e3).abs() <= 1.0;
        assert!(close(stats.mean, mean), "mean {:?}, reference {mean} us", stats.mean);
        assert!(
            close(stats.std_deviation, variance.sqrt()),
            "std {:?}, reference {} us",
            stats.std_deviation,
            variance.sqrt()
        );
    }
}

#[test]
fn window_forgets_the_oldest() {
    let mut detector = akka();
    let last = feed_steady(&mut detector, SECOND, 41);
    let last = extend(&mut detector, last, std::iter::repeat_n(2 * SECOND, 16));
    check_stats(&detector, Duration::from_millis(1500), Duration::from_millis(500), PHI_WINDOW);
    assert_eq!(detector.mean_interval(), Duration::from_millis(1500));
    extend(&mut detector, last, std::iter::repeat_n(2 * SECOND, 16));
    check_stats(&detector, 2 * SECOND, Duration::ZERO, PHI_WINDOW);
}

#[test]
fn long_intervals_are_clamped() {
    let mut detector = akka();
    feed(&mut detector, at_ms(0), [Duration::from_secs(10 * 3600)]);
    let mean_us = (750_000 + 1_250_000 + u64::from(u32::MAX)) as f64 / 3.0;
    assert_eq!(detector.mean_interval(), Duration::from_nanos((mean_us * 1e3).round() as u64));
    assert!(detector.level(Instant::MAX).is_finite());
    check_crossing(&detector, 8.0);
}

#[test]
fn out_of_order_arrival_is_a_duplicate_of_the_last() {
    let mut detector = akka();
    let last = feed_steady(&mut detector, SECOND, 5);
    let mut twin = detector.clone();
    detector.heartbeat(last - Duration::from_millis(500));
    twin.heartbeat(last);
    assert_eq!(detector.last_arrival(), Some(last));
    assert_eq!(detector.interval_stats(), twin.interval_stats());
    assert_eq!(detector.level(last - SECOND), detector.level(last), "an earlier now is clamped");
}

#[test]
fn declared_interval_only_redraws_the_seeds() {
    let mut detector = akka();
    detector.set_declared_interval(2 * SECOND);
    check_stats(&detector, 2 * SECOND, Duration::from_millis(500), 2);
    detector.heartbeat(at_ms(0));
    detector.set_declared_interval(Duration::ZERO);
    check_stats(&detector, Duration::from_millis(1), Duration::from_micros(250), 2);
    detector.heartbeat(at_ms(1));
    let before = detector.interval_stats();
    detector.set_declared_interval(5 * SECOND);
    assert_eq!(detector.interval_stats(), before, "real intervals outweigh the declaration");

    let config = PhiAccrualConfig { first_heartbeat_estimate: Some(SECOND), ..Default::default() };
    let mut detector = phi(config, SECOND);
    detector.set_declared_interval(5 * SECOND);
    check_stats(&detector, SECOND, Duration::from_millis(250), 2);
}

#[test]
fn crossing_matches_level_across_thresholds_and_histories() {
    let mut lcg = Lcg(42);
    let configs = [
        PhiAccrualConfig::default(),
        PhiAccrualConfig { acceptable_pause: Duration::ZERO, ..Default::default() },
        PhiAccrualConfig {
            acceptable_pause: Duration::ZERO,
            min_std_deviation: Duration::from_millis(1),
            ..Default::default()
        },
    ];
    for config in configs {
        for (base_ms, jitter_ms) in [(10, 5), (1_000, 0), (1_000, 300), (30_000, 20_000), (5, 4)] {
            let mut detector = phi(config.clone(), Duration::from_millis(base_ms));
            let intervals: Vec<Duration> = (0..60)
                .map(|_| {
                    Duration::from_millis(base_ms.saturating_add_signed(lcg.next_in(-jitter_ms, jitter_ms)))
                })
                .collect();
            feed(&mut detector, at_ms(123), intervals);
            for exponent in -60..=30 {
                check_crossing(&detector, 10f64.powf(f64::from(exponent) / 10.0));
            }
            for threshold in [0.3, core::f64::consts::LOG10_2, 1.0, 3.0, 8.0, 12.0, 16.0, 100.0] {
                check_crossing(&detector, threshold);
            }
        }
    }
}

#[test]
fn crossing_edge_thresholds() {
    let mut detector = akka();
    let last = feed_steady(&mut detector, SECOND, 3);
    assert_eq!(detector.crossing(0.0), Some(last));
    assert_eq!(detector.crossing(-1.0), Some(last));
    assert_eq!(detector.crossing(f64::NAN), Some(Instant::MAX));
    assert_eq!(detector.crossing(f64::INFINITY), Some(Instant::MAX));
    // Far left of the mean phi underflows to exactly zero, so even the smallest positive
    // thresholds are crossed after the last arrival, and the closed form still finds them.
    assert_eq!(detector.level(last), 0.0);
    assert!(check_crossing(&detector, f64::MIN_POSITIVE) > last);
    assert!(check_crossing(&detector, 1e-300) > last);
    let far = check_crossing(&detector, 1e6);
    assert!(far > last + Duration::from_secs(60));

    // With no pause and a wide deviation, phi is already about 0.27 at the last arrival:
    // a lower threshold is crossed right there.
    let config = PhiAccrualConfig {
        acceptable_pause: Duration::ZERO,
        min_std_deviation: Duration::from_secs(10),
        ..Default::default()
    };
    let mut wide = phi(config, SECOND);
    let last = feed_steady(&mut wide, SECOND, 3);
    assert!(wide.level(last) > 0.25);
    assert_eq!(wide.crossing(0.25), Some(last));
    check_crossing(&wide, 0.25);
    check_crossing(&wide, 0.3);
}

#[test]
fn closed_form_inverts_the_logistic() {
    for exponent in -90..=40 {
        let threshold = 10f64.powf(f64::from(exponent) / 10.0);
        let score = logistic_quantile(threshold);
        let back = phi_of_score(score);
        assert!((back - threshold).abs() <= 1e-12 * threshold, "phi({score}) = {back}, not {threshold}");
        if (1e-3..=300.0).contains(&threshold) {
            let bisected = score_by_bisection(threshold);
            assert!((score - bisected).abs() < 1e-9, "closed form {score}, bisection {bisected}");
        }
    }
}

#[test]
fn remembered_boundaries_are_the_computed_ones() {
    // Two thresholds alternating (a node up, then suspect), a third evicting the older,
    // then the first again: every answer is bit for bit the computed one.
    for threshold in [3.0, 8.0, 3.0, 8.0, 8.0, 0.5, 3.0, 8.0, 1e-9, 300.0, 3.0] {
        let remembered = remembered_boundary(threshold);
        let computed = logistic_quantile(threshold);
        assert_eq!(remembered.quantile.to_bits(), computed.to_bits(), "threshold {threshold}");
        let fresh = Boundary::new(threshold);
        for score in [computed - 1.0, computed, computed + 1.0] {
            assert_eq!(remembered.reached(score, threshold), fresh.reached(score, threshold));
        }
    }
}

/// The score `steps` representable doubles above (or below, if negative) `score`.
fn ulps_away(score: f64, steps: i64) -> f64 {
    let mut at = score;
    for _ in 0..steps.unsigned_abs() {
        at = if steps > 0 { at.next_up() } else { at.next_down() };
    }
    at
}

#[test]
fn a_boundary_answers_as_phi_does() {
    // Every score near the crossing, where rounding decides (a thousand doubles either side
    // of the closed form and of each end of the band), and scores across the whole range:
    // the boundary's answer is phi's. Thresholds from 10^-9 to 10^4, and the edges: below
    // log10 2 the crossing lies before the mean (a negative score).
    let mut thresholds: Vec<f64> = (-90..=40).map(|e| 10f64.powf(f64::from(e) / 10.0)).collect();
    thresholds.extend([3.0, 8.0, 2f64.log10(), 1e-300, 5e-324, 1e300]);
    let mut checked_inside = 0;
    for threshold in thresholds {
        let boundary = Boundary::new(threshold);
        let quantile = boundary.quantile;
        let half = 1e-12 * quantile.abs().max(1.0);
        let mut scores = Vec::new();
        for centre in [quantile, quantile - half, quantile + half] {
            scores.extend((-1000..=1000).map(|steps| ulps_away(centre, steps)));
        }
        scores.extend((-400..=400).map(|tenth| quantile + f64::from(tenth) / 10.0));
        scores.extend([f64::NEG_INFINITY, -1e300, 0.0, 1e300, f64::INFINITY, f64::NAN]);
        for score in scores {
            let phi = phi_of_score(score);
            assert_eq!(
                boundary.reached(score, threshold),
                phi >= threshold,
                "threshold {threshold}, score {score}: phi {phi}"
            );
            checked_inside += usize::from((quantile - half..quantile + half).contains(&score));
        }
    }
    assert!(checked_inside > 1000, "the band itself was exercised ({checked_inside} scores)");
}

#[test]
fn validate() {
    let check = |config: PhiAccrualConfig, expected: Result<(), &str>| {
        assert_eq!(
            config.validate().map_err(|e| e.to_string()),
            expected.map_err(str::to_owned),
            "{config:?}"
        );
    };
    let default = PhiAccrualConfig::default;
    check(default(), Ok(()));
    check(
        PhiAccrualConfig { threshold: 0.0, ..default() },
        Err("threshold must be a finite number > 0, got 0"),
    );
    check(
        PhiAccrualConfig { threshold: f64::NAN, ..default() },
        Err("threshold must be a finite number > 0, got NaN"),
    );
    check(
        PhiAccrualConfig { suspect_threshold: -1.0, ..default() },
        Err("suspect_threshold must be a finite number > 0, got -1"),
    );
    check(
        PhiAccrualConfig { suspect_threshold: 9.0, ..default() },
        Err("suspect_threshold (9) must not exceed threshold (8)"),
    );
    check(
        PhiAccrualConfig { min_std_deviation: Duration::ZERO, ..default() },
        Err("min_std_deviation must be greater than zero"),
    );
    check(
        PhiAccrualConfig { first_heartbeat_estimate: Some(Duration::ZERO), ..default() },
        Err("first_heartbeat_estimate must be greater than zero when set"),
    );
}

#[test]
fn any_detector_forwards() {
    let mut detector = AnyDetector::Phi(akka());
    let last = feed_steady(&mut detector, SECOND, 100);
    assert_eq!(detector.down_level(), 8.0);
    assert_eq!(detector.suspect_level(), 3.0);
    assert_eq!(detector.mean_interval(), SECOND);
    assert_eq!(detector.last_arrival(), Some(last));
    check_crossing(&detector, 8.0);
}

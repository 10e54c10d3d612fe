//! The replayed curve is the judged detector's own past: at every arrival and at `now` it
//! gives the level the judged detector had.

use super::{akka, at_ms};
use crate::curve::replay;
use crate::{Detector, PHI_WINDOW};
use core::time::Duration;

/// Feeds `detector` heartbeats at the given instants (milliseconds).
fn judged(arrivals: &[u64]) -> crate::PhiAccrual {
    let mut detector = akka();
    for &at in arrivals {
        detector.heartbeat(at_ms(at));
    }
    detector
}

#[test]
fn a_young_window_replays_to_the_judged_level() {
    // Ten jittered heartbeats: the window still holds the two seeds.
    let arrivals = [0, 1_020, 1_990, 3_050, 4_000, 4_970, 6_010, 7_000, 8_030, 9_000];
    let detector = judged(&arrivals);
    let now = at_ms(12_500);
    let curve = replay(
        akka(),
        &detector.recent_intervals(),
        detector.last_arrival(),
        now,
        Duration::from_secs(300),
        60,
    );
    assert_eq!(curve.from, at_ms(0), "the curve starts at the oldest remembered arrival");
    let (last_at, last_level) = *curve.points.last().unwrap();
    assert_eq!(last_at, now);
    assert_eq!(last_level.to_bits(), detector.level(now).to_bits());
    // Oldest first, and every arrival appears (just before and just after it).
    assert!(curve.points.windows(2).all(|pair| pair[0].0 <= pair[1].0));
    for at in arrivals.iter().skip(1) {
        assert_eq!(curve.points.iter().filter(|(instant, _)| *instant == at_ms(*at)).count(), 2, "{at}");
    }
}

#[test]
fn a_full_window_is_primed_and_the_span_is_capped() {
    let arrivals: Vec<u64> = (0..3 * PHI_WINDOW as u64).map(|i| i * 1_000 + (i * 37 % 90)).collect();
    let detector = judged(&arrivals);
    let now = at_ms(arrivals[arrivals.len() - 1] + 4_000);
    let span = Duration::from_secs(20);
    let curve = replay(akka(), &detector.recent_intervals(), detector.last_arrival(), now, span, 40);
    assert_eq!(now.saturating_duration_since(curve.from), span);
    // The same window, reached through a priming pass: the same level up to rounding.
    let (_, level) = *curve.points.last().unwrap();
    let judged = detector.level(now);
    assert!((level - judged).abs() <= 1e-9 * judged.abs().max(1.0), "{level} against {judged}");
    // Silence since the last arrival: the level only rises after it.
    let after: Vec<f64> =
        curve.points.iter().filter(|(at, _)| *at > detector.last_arrival().unwrap()).map(|p| p.1).collect();
    assert!(after.windows(2).all(|pair| pair[0] <= pair[1]), "{after:?}");
}

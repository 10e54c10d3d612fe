//! Chen, Toueg and Aguilera's metrics on hand-made histories with known answers, and on a
//! whole run, where the paper's identity `P_A = 1 - T_M / T_MR` must hold.

use super::super::*;
use crate::qos::{Mistakes, alive_spans, format_accuracy, intersect};
use core::time::Duration;
use rollcall_core::DetectorConfig;
use rollcall_core::Instant;
use std::sync::Arc;

fn at(seconds: f64) -> Instant {
    Instant::ZERO + Duration::from_secs_f64(seconds)
}

fn span(from: f64, to: f64) -> Span {
    Span { from: at(from), to: at(to) }
}

/// Checks the figures of one history: `changes` as (seconds, suspects).
fn check(alive: &[Span], changes: &[(f64, bool)], expected: (usize, f64, f64)) -> Qos {
    let changes: Vec<(Instant, bool)> = changes.iter().map(|&(s, suspects)| (at(s), suspects)).collect();
    let mut mistakes = Mistakes::default();
    mistakes.add(alive, &changes);
    let (count, alive_s, wrong_s) = expected;
    assert_eq!(mistakes.count, count, "{mistakes:?}");
    assert!((mistakes.alive_s - alive_s).abs() < 1e-9, "alive {} s, expected {alive_s}", mistakes.alive_s);
    assert!((mistakes.wrong_s - wrong_s).abs() < 1e-9, "wrong {} s, expected {wrong_s}", mistakes.wrong_s);
    mistakes.figures(&[])
}

#[test]
fn two_mistakes_in_a_hundred_seconds() {
    // Wrongly suspected from 10 s to 12 s and from 50 s to 53 s.
    let qos = check(
        &[span(0.0, 100.0)],
        &[(10.0, true), (12.0, false), (50.0, true), (53.0, false)],
        (2, 100.0, 5.0),
    );
    assert_eq!(qos.mistake_recurrence_s, Some(50.0));
    assert!((qos.mistake_rate_per_node_hour - 72.0).abs() < 1e-9, "2 per 100 s is 72 per hour");
    assert_eq!(qos.mistake_duration_mean_ms, Some(2_500.0));
    assert_eq!(qos.mistake_duration_max_ms, Some(3_000.0));
    assert!((qos.query_accuracy - 0.95).abs() < 1e-12);
}

#[test]
fn suspecting_a_dead_node_is_no_mistake_and_noticing_its_return_is_not_counted() {
    // Dead from 60 s to 80 s: suspected from 62 s (right), still suspected after its
    // restart until 85 s (the time to notice a return: not judged), and one real mistake
    // from 20 s to 30 s.
    let alive = alive_spans(&[span(60.0, 80.0)], at(100.0));
    assert_eq!(alive, vec![span(0.0, 60.0), span(80.0, 100.0)]);
    let changes = [(20.0, true), (30.0, false), (62.0, true), (85.0, false)];
    let qos = check(&alive, &changes, (1, 60.0 + 15.0, 10.0));
    assert!((qos.query_accuracy - (1.0 - 10.0 / 75.0)).abs() < 1e-12);
}

#[test]
fn a_mistake_ends_when_the_node_crashes_or_the_run_ends() {
    let alive = alive_spans(&[span(45.0, 100.0)], at(100.0));
    check(&alive, &[(40.0, true)], (1, 45.0, 5.0));
    check(&[span(0.0, 100.0)], &[(90.0, true)], (1, 100.0, 10.0));
    // Repeated changes to the same output are one mistake.
    check(&[span(0.0, 100.0)], &[(10.0, true), (11.0, true), (14.0, false), (15.0, false)], (1, 100.0, 4.0));
}

#[test]
fn no_mistake_means_no_recurrence_and_perfect_accuracy() {
    let qos = check(&[span(0.0, 3_600.0)], &[], (0, 3_600.0, 0.0));
    assert_eq!(qos.mistake_recurrence_s, None);
    assert_eq!(qos.mistake_duration_mean_ms, None);
    assert_eq!(qos.mistake_rate_per_node_hour, 0.0);
    assert_eq!(qos.query_accuracy, 1.0);
    assert!((qos.alive_node_hours - 1.0).abs() < 1e-12);
    let with_detections = Mistakes::default().figures(&[1_000.0, 3_000.0]);
    assert_eq!(with_detections.detection_mean_ms, Some(2_000.0));
    assert_eq!(with_detections.detection_max_ms, Some(3_000.0));
}

#[test]
fn spans_intersect_and_accuracy_shows_its_nines() {
    let a = [span(0.0, 10.0), span(20.0, 30.0)];
    let b = [span(5.0, 25.0)];
    assert_eq!(intersect(&a, &b), vec![span(5.0, 10.0), span(20.0, 25.0)]);
    assert_eq!(format_accuracy(1.0), "1");
    assert_eq!(format_accuracy(0.95), "0.950");
    assert_eq!(format_accuracy(0.999_984), "0.999984");
}

#[test]
fn a_lossy_run_keeps_the_papers_identity() {
    // A fixed timeout on a lossy network makes mistakes of both kinds.
    let scenario = Scenario {
        nodes: 50,
        duration: Duration::from_secs(300),
        network: Network { loss: 0.2, ..Network::default() },
        detector: DetectorConfig::Fixed(Arc::new(rollcall_detect::FixedTimeoutConfig::default())),
        seed: seed_from_env(3).expect("ROLLCALL_SEED is a number when set"),
        ..Scenario::default()
    };
    let report = simulate(&scenario, &mut |_| {}).expect("the scenario is valid").report;
    let (down, either) = (&report.qos.down, &report.qos.suspect_or_down);
    assert!(down.mistakes > 0, "{}", report.table());
    assert!(either.mistakes >= down.mistakes, "every down passes through suspect or is one");
    assert!(either.query_accuracy <= down.query_accuracy);
    for qos in [down, either] {
        let (tmr, tm) = (
            qos.mistake_recurrence_s.expect("mistakes were made"),
            qos.mistake_duration_mean_ms.expect("mistakes were made"),
        );
        assert!((qos.query_accuracy - (1.0 - tm / 1e3 / tmr)).abs() < 1e-9, "{qos:?}");
    }
    // No crash: every node is alive all along.
    assert!((down.alive_node_hours - 50.0 * 300.0 / 3_600.0).abs() < 1e-6, "{down:?}");
}

//! The checkers on hand-made traces: each promise, kept and broken.

use super::super::*;
use crate::check::{SLACK, logistic_y, silence_bound};
use core::time::Duration;
use rollcall_core::DetectorConfig;
use rollcall_core::Instant;
use rollcall_core::monitor::{NodeState, Reason, Transition};
use rollcall_detect::{Detector, FixedTimeoutConfig, PhiAccrual, PhiAccrualConfig};
use std::sync::Arc;

fn at(seconds: f64) -> Instant {
    Instant::ZERO + Duration::from_secs_f64(seconds)
}

fn span(from: f64, to: f64) -> Span {
    Span { from: at(from), to: at(to) }
}

fn truth(id: &str) -> NodeTruth {
    NodeTruth {
        id: Arc::from(id),
        dead: vec![],
        reported: vec![],
        restarts: vec![],
        paused: vec![],
        cut: vec![],
        cut_from_monitor: vec![],
        slow: vec![],
        drift: 1.0,
    }
}

/// A transition of node 0 at `when` seconds, noticed at once.
fn observed(from: NodeState, to: NodeState, when: f64, cause: Cause, silence_from: f64) -> Observed {
    let reason = if to == NodeState::Up { Reason::Heartbeat } else { Reason::Phi };
    Observed {
        node: 0,
        transition: Transition {
            node: Arc::from("node-0"),
            generation: 1,
            from,
            to,
            reason,
            at: at(when),
            noticed: at(when),
            exit: None,
        },
        cause,
        silence_from: Some(at(silence_from)),
    }
}

/// Regular arrivals every second from 1 s to `last` s.
fn arrivals(last: u32) -> Arrivals {
    let mut arrivals = Arrivals::new(Duration::from_secs(1));
    for s in 1..=last {
        arrivals.record(at(f64::from(s)));
    }
    arrivals
}

fn trace(node: NodeTruth, transitions: Vec<Observed>, crashes: Vec<Crash>) -> Trace {
    Trace {
        seed: 99,
        end: at(600.0),
        interval: Duration::from_secs(1),
        nodes: vec![node],
        crashes,
        transitions,
        net: NetStats::default(),
        max_latency: Duration::ZERO,
        events: 0,
        self_pauses: 0,
        rejected: Default::default(),
        tick: Duration::from_millis(100),
        confirm: None,
    }
}

fn phi() -> DetectorConfig {
    DetectorConfig::Phi(Arc::new(PhiAccrualConfig::default()))
}

const UP: NodeState = NodeState::Up;
const SUSPECT: NodeState = NodeState::Suspect;
const DOWN: NodeState = NodeState::Down;

fn sent(seconds: f64, new: bool) -> Cause {
    Cause::Datagram { sent: at(seconds), new }
}

#[test]
fn the_bound_is_akkas_four_and_a_half_seconds_and_agrees_with_the_detector() {
    let regular = silence_bound(&phi(), Duration::from_secs(1), (1.0, 0.0));
    assert!((regular.as_secs_f64() - 4.52).abs() < 0.01, "{regular:?}");
    // The detector's own closed form, fed the same regular arrivals, crosses at the same
    // instant (to within the window's microsecond rounding).
    let mut detector = PhiAccrual::new(Arc::new(PhiAccrualConfig::default()), Duration::from_secs(1));
    let mut window = Arrivals::new(Duration::from_secs(1));
    for s in [1.0, 2.0, 3.1, 3.9, 5.0, 6.2, 7.0] {
        detector.heartbeat(at(s));
        window.record(at(s));
    }
    let expected = detector.crossing(8.0).unwrap();
    let ours = at(7.0) + silence_bound(&phi(), Duration::from_secs(1), window.moments());
    assert!(expected.max(ours) - expected.min(ours) < Duration::from_micros(10), "{expected:?} vs {ours:?}");
    let fixed = DetectorConfig::Fixed(Arc::new(FixedTimeoutConfig::default()));
    assert_eq!(silence_bound(&fixed, Duration::from_secs(2), (9.0, 9.0)), Duration::from_secs(5));
    assert!((logistic_y(8.0) - 5.22).abs() < 0.01);
}

#[test]
fn a_crash_declared_down_in_time_is_a_detection() {
    let crash = Crash { node: 0, at: at(10.5), restart: None, arrivals: arrivals(10), answered: None };
    let transitions = vec![
        observed(NodeState::New, UP, 1.0, sent(1.0, true), 0.0),
        observed(UP, SUSPECT, 12.0, Cause::Timeout, 10.0),
        observed(SUSPECT, DOWN, 14.5, Cause::Timeout, 10.0),
    ];
    let mut node = truth("node-0");
    node.dead.push(span(10.5, 1e6));
    let findings = check(&trace(node, transitions, vec![crash]), &phi());
    assert_eq!(findings.violations, []);
    assert_eq!(findings.detections.len(), 1);
    assert_eq!(findings.detections[0].time(), Duration::from_secs(4));
    assert_eq!(findings.excused_downs, 1);
    assert!(findings.verdict(99, true).is_ok());
}

#[test]
fn a_crash_never_declared_down_or_declared_late_is_a_violation_with_a_replay_hint() {
    let crash = || Crash { node: 0, at: at(10.5), restart: None, arrivals: arrivals(10), answered: None };
    let missed = check(&trace(truth("node-0"), vec![], vec![crash()]), &phi());
    assert!(matches!(missed.violations[..], [Violation::Missed { .. }]), "{:?}", missed.violations);
    let message = missed.verdict(99, false).unwrap_err();
    assert!(message.contains("never declared down"), "{message}");
    assert!(message.ends_with("rerun with ROLLCALL_SEED=99"), "{message}");

    let late = vec![observed(SUSPECT, DOWN, 10.0 + 4.52 + 0.5, Cause::Timeout, 10.0)];
    let late = check(&trace(truth("node-0"), late, vec![crash()]), &phi());
    assert!(matches!(late.violations[..], [Violation::Late { .. }]), "{:?}", late.violations);
    let bound = at(10.0) + silence_bound(&phi(), Duration::from_secs(1), arrivals(10).moments()) + SLACK;
    assert_eq!(late.violations[0], Violation::Late { node: 0, crash: at(10.5), at: at(15.02), bound });
}

#[test]
fn a_crash_that_restarts_before_its_bound_is_not_judged() {
    let crash =
        Crash { node: 0, at: at(10.5), restart: Some(at(12.0)), arrivals: arrivals(10), answered: None };
    let findings = check(&trace(truth("node-0"), vec![], vec![crash]), &phi());
    assert_eq!((findings.violations.len(), findings.not_judged), (0, 1));
}

#[test]
fn a_planted_resurrection_is_caught() {
    let down = observed(SUSPECT, DOWN, 20.0, Cause::Timeout, 15.0);
    // Up again on the monitor's own timer: nothing arrived.
    let by_timer = vec![down.clone(), observed(DOWN, UP, 30.0, Cause::Timeout, 15.0)];
    // Up again on a copy of an old datagram.
    let by_copy = vec![down.clone(), observed(DOWN, UP, 30.0, sent(14.0, false), 15.0)];
    // Up again on a datagram sent while the node was dead.
    let mut dead = truth("node-0");
    dead.dead.push(span(16.0, 40.0));
    let by_ghost = vec![down.clone(), observed(DOWN, UP, 30.0, sent(29.0, true), 15.0)];
    for (node, transitions) in [(truth("node-0"), by_timer), (truth("node-0"), by_copy), (dead, by_ghost)] {
        let findings = check(&trace(node, transitions, vec![]), &phi());
        assert_eq!(findings.violations, [Violation::Resurrection { node: 0, at: at(30.0) }]);
        assert!(findings.verdict(99, false).unwrap_err().contains("rerun with ROLLCALL_SEED=99"));
    }
    // An honest return: a new datagram, sent while alive.
    let honest = vec![down, observed(DOWN, UP, 30.0, sent(29.9, true), 15.0)];
    assert_eq!(check(&trace(truth("node-0"), honest, vec![]), &phi()).violations, []);
}

#[test]
fn a_down_is_false_unless_a_fault_touched_its_silence() {
    let transitions = || vec![observed(SUSPECT, DOWN, 20.0, Cause::Timeout, 15.0)];
    let healthy = check(&trace(truth("node-0"), transitions(), vec![]), &phi());
    assert_eq!((healthy.false_downs.clone(), healthy.excused_downs), (vec![0], 0));
    assert!(healthy.verdict(99, false).is_ok());
    assert!(healthy.verdict(99, true).unwrap_err().contains("1 false downs"));
    for (field, touching) in
        [("paused", span(14.0, 15.5)), ("cut", span(19.0, 25.0)), ("dead", span(16.0, 17.0))]
    {
        let mut node = truth("node-0");
        match field {
            "paused" => node.paused.push(touching),
            "cut" => node.cut.push(touching),
            _ => node.dead.push(touching),
        }
        let findings = check(&trace(node, transitions(), vec![]), &phi());
        assert_eq!((findings.false_downs.len(), findings.excused_downs), (0, 1), "{field}");
    }
    // A stall long over before the silence began explains nothing.
    let mut old = truth("node-0");
    old.paused.push(span(5.0, 6.0));
    assert_eq!(check(&trace(old, transitions(), vec![]), &phi()).false_downs, [0]);
}

#[test]
fn a_node_that_never_comes_back_after_a_partition_is_caught() {
    let mut node = truth("node-0");
    node.cut.push(span(60.0, 120.0));
    let down = observed(SUSPECT, DOWN, 65.0, Cause::Timeout, 60.0);
    let stuck = check(&trace(node.clone(), vec![down.clone()], vec![]), &phi());
    assert_eq!(stuck.violations, [Violation::NotConverged { node: 0, healed: at(120.0) }]);
    let back = vec![down, observed(DOWN, UP, 121.5, sent(121.5, true), 60.0)];
    let healed = check(&trace(node, back, vec![]), &phi());
    assert_eq!(healed.violations, []);
    assert_eq!(healed.convergence, [Duration::from_millis(1500)]);
}

#[test]
fn a_transition_dated_after_it_was_noticed_is_caught() {
    let mut future = observed(UP, SUSPECT, 20.0, Cause::Timeout, 15.0);
    future.transition.at = at(21.0);
    let findings = check(&trace(truth("node-0"), vec![future], vec![]), &phi());
    assert!(matches!(findings.violations[..], [Violation::FutureDated { .. }]));
}

#[test]
fn a_crash_of_a_node_already_down_is_not_a_late_detection_of_a_later_down() {
    // Falsely down at 8 s, a first heartbeat of its recovery at 10 s, the crash at 10.5 s;
    // after the restart at 40 s the new generation is (again falsely) down at 90 s.
    let crash =
        Crash { node: 0, at: at(10.5), restart: Some(at(40.0)), arrivals: arrivals(10), answered: None };
    let transitions = vec![
        observed(NodeState::New, UP, 1.0, sent(1.0, true), 0.0),
        observed(SUSPECT, DOWN, 8.0, Cause::Timeout, 5.0),
        observed(DOWN, UP, 41.0, sent(41.0, true), 10.0),
        observed(SUSPECT, DOWN, 90.0, Cause::Timeout, 85.0),
    ];
    let findings = check(&trace(truth("node-0"), transitions, vec![crash]), &phi());
    assert_eq!(findings.violations, []);
    assert_eq!((findings.already_down, findings.detections.len()), (1, 0));
}

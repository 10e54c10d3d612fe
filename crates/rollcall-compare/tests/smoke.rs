//! Each implementation, on a small cluster for two virtual minutes: every live observer
//! declares every crashed node down, and without loss nobody declares a healthy node down.
//! Behaviour only; timing figures belong to the `compare` benchmark.

use core::time::Duration;
use rollcall_compare::{Cell, Impl, Summary, compare};

fn cell(loss: f64) -> Cell {
    Cell { nodes: 12, loss, slow: false, duration: Duration::from_secs(120), seed: 7 }
}

fn check(implementation: Impl, summary: &Summary) {
    let name = implementation.name();
    assert_eq!(summary.crashes, 3, "{name}: the plan crashes three nodes");
    assert_eq!(summary.pairs, 3 * 9, "{name}: three crashes, nine surviving observers");
    assert_eq!(
        summary.detected, summary.pairs,
        "{name}: every crash is declared down everywhere: {summary:?}"
    );
    assert_eq!(summary.false_down_verdicts, 0, "{name}: a healthy node was declared down: {summary:?}");
    assert!(summary.messages_per_node_s > 0.0, "{name}: the network carried something");
}

#[test]
fn rollcall_detects_every_crash_without_false_downs() {
    let implementation = Impl::Rollcall { alpha: None };
    check(implementation, &compare(implementation, &cell(0.0), &mut |_| {}));
}

#[test]
fn foca_detects_every_crash_without_false_downs() {
    check(Impl::Foca, &compare(Impl::Foca, &cell(0.0), &mut |_| {}));
}

#[test]
fn chitchat_detects_every_crash_without_false_downs() {
    check(Impl::Chitchat, &compare(Impl::Chitchat, &cell(0.0), &mut |_| {}));
}

#[test]
fn sans_io_runs_are_pure_functions_of_the_cell() {
    for implementation in [Impl::Rollcall { alpha: None }, Impl::Foca] {
        let cell = cell(0.05);
        let plan = rollcall_compare::Plan::new(&cell);
        let first = rollcall_compare::run(implementation, &cell, &plan, &mut |_| {});
        let second = rollcall_compare::run(implementation, &cell, &plan, &mut |_| {});
        assert_eq!(first.views, second.views, "{}: same cell, same views", implementation.name());
        assert_eq!(first.traffic, second.traffic);
    }
}

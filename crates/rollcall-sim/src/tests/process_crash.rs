//! Crashes of a watched process (`process-crash`): the agent beside it reports the exit, so
//! the monitor declares the node down a network latency after the crash, not a detector's
//! silence after it; a report whose copies are all lost leaves the silence path to find it.

use super::super::*;
use super::runs::outcome;
use core::time::Duration;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A hundred nodes for ten minutes: ten of them lose their process (reported), five others
/// their machine (silent), at random times.
fn mixed(network: Network) -> Scenario {
    let between = When::Between(secs(60), secs(540));
    let (reported, silent) = (Selector::List((0..10).collect()), Selector::List((10..15).collect()));
    Scenario {
        seed: seed_from_env(11).expect("ROLLCALL_SEED is a number when set"),
        nodes: 100,
        duration: secs(600),
        network,
        faults: vec![
            Fault::ProcessCrash { nodes: reported, at: between, restart_after: None },
            Fault::Crash { nodes: silent, at: between, restart_after: None },
        ],
        ..Scenario::default()
    }
}

#[test]
fn every_process_crash_is_detected_by_its_report_far_sooner_than_silence() {
    let out = outcome(&mixed(Network { loss: 0.0, ..Network::default() }));
    let report = &out.report;
    if let Err(message) = out.findings.verdict(report.seed, true) {
        panic!("{}\n{message}", report.table());
    }
    assert_eq!((report.crashes, report.process_crashes), (15, 10), "{}", report.table());
    assert_eq!(report.detected, 15, "{}", report.table());
    assert_eq!(report.process_detected_by_report, 10, "no loss: the first copy arrives\n{}", report.table());
    let exit_max = report.process_detection_max_ms.expect("process crashes were detected");
    let silent_p50 = report.detection_p50_ms.expect("silent crashes were detected");
    // A LAN's latency against about 4 s of silence: well under a hundredth of it.
    assert!(exit_max < silent_p50 / 100.0, "{}", report.table());
    assert!(report.table().contains("process exits"), "{}", report.table());
}

#[test]
fn a_report_lost_on_the_way_leaves_the_crash_to_silence() {
    // Half of every datagram lost: about one crash in eight loses all three copies.
    let scenario = Scenario {
        faults: vec![Fault::ProcessCrash {
            nodes: Selector::Percent(60.0),
            at: When::Between(secs(60), secs(540)),
            restart_after: None,
        }],
        ..mixed(Network { loss: 0.5, ..Network::default() })
    };
    let out = outcome(&scenario);
    let report = &out.report;
    // Half the heartbeats lost makes false downs: only the promises are checked here.
    if let Err(message) = out.findings.verdict(report.seed, false) {
        panic!("{}\n{message}", report.table());
    }
    let judged = report.process_crashes - report.already_down - report.not_judged;
    assert_eq!(report.process_detected, judged, "{}", report.table());
    assert!(report.process_detected_by_report < report.process_detected, "{}", report.table());
    assert!(report.process_detected_by_report > report.process_detected / 2, "{}", report.table());
}

#[test]
fn a_process_crash_is_read_from_a_scenario_file() {
    let text = "[[faults]]\nkind = \"process-crash\"\nnodes = 3\nat = \"10s..20s\"\nrestart_after = \"5s\"";
    let scenario = Scenario::from_toml(text).expect("a valid scenario");
    let expected = Fault::ProcessCrash {
        nodes: Selector::Count(3),
        at: When::Between(secs(10), secs(20)),
        restart_after: Some(secs(5)),
    };
    assert_eq!(scenario.faults, [expected]);
    assert_eq!(scenario.faults[0].kind(), "process-crash");
}

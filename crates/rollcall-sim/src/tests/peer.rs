//! Peer mode: determinism, the checkers on whole runs, and validation against SWIM's
//! published results (Das et al. 2002, sections 3.1 and 5) at fixed seeds.

use crate::peer::{PeerOutcome, PeerSettings, simulate, split_scenario};
use crate::*;
use core::time::Duration;
use rollcall_core::swim::{MemberState, ProbeOrder, SwimConfig};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn seed() -> u64 {
    seed_from_env(11).expect("ROLLCALL_SEED is a number when set")
}

fn quiet(nodes: u32, duration: Duration) -> Scenario {
    Scenario {
        name: "peer-test".into(),
        nodes,
        duration,
        seed: seed(),
        network: Network { loss: 0.0, ..Network::default() },
        faults: Vec::new(),
        ..Scenario::default()
    }
}

fn run(scenario: &Scenario, settings: &PeerSettings) -> PeerOutcome {
    simulate(scenario, settings, &mut |_| {}).expect("the test scenarios are valid")
}

fn assert_passes(outcome: &PeerOutcome, strict: bool) {
    if let Err(message) = outcome.findings.verdict(outcome.report.seed, strict) {
        panic!("{}\n{message}", outcome.report.table());
    }
}

#[test]
fn crashes_are_detected_by_every_live_peer_with_no_false_down() {
    let scenario = Scenario {
        faults: vec![Fault::Crash {
            nodes: Selector::Count(4),
            at: When::Between(secs(20), secs(60)),
            restart_after: None,
        }],
        ..quiet(40, secs(180))
    };
    let outcome = run(&scenario, &PeerSettings::default());
    assert_passes(&outcome, true);
    assert_eq!(outcome.report.judged, 4);
    assert_eq!(outcome.report.detections, 4 * 36);
    println!("{}", outcome.report.table());
}

#[test]
fn a_seed_always_gives_the_same_trace_and_another_seed_another() {
    let scenario = Scenario {
        network: Network { loss: 0.05, ..Network::default() },
        faults: vec![Fault::Crash {
            nodes: Selector::Count(3),
            at: When::Between(secs(10), secs(40)),
            restart_after: Some(secs(20)),
        }],
        ..quiet(30, secs(90))
    };
    let first = run(&scenario, &PeerSettings::default());
    let again = run(&scenario, &PeerSettings::default());
    assert!(first.report.view_changes > 30);
    assert_eq!(first.report, again.report);
    let other = run(&Scenario { seed: scenario.seed + 1, ..scenario }, &PeerSettings::default());
    assert_ne!(first.report.trace_hash, other.report.trace_hash);
}

#[test]
fn restarted_peers_come_back_with_a_newer_incarnation() {
    let scenario = Scenario {
        faults: vec![Fault::Crash {
            nodes: Selector::Count(3),
            at: When::Between(secs(10), secs(20)),
            restart_after: Some(secs(60)),
        }],
        ..quiet(30, secs(180))
    };
    let outcome = run(&scenario, &PeerSettings::default());
    assert_passes(&outcome, true);
    let ups =
        outcome.trace.seen.iter().filter(|s| s.from == Some(MemberState::Down) && s.to == MemberState::Up);
    // Each of the three is seen back by the 27 peers that were alive to see it go down and
    // come back (the other two restarted peers may have been dead for one of the two).
    assert!(ups.count() >= 3 * 26, "the live peers saw the restarted peers come back");
}

#[test]
fn a_partition_is_seen_from_both_sides_and_heals() {
    let scenario = Scenario {
        network: Network { loss: 0.001, ..Network::default() },
        groups: vec![("island".into(), Selector::Percent(30.0))],
        faults: vec![Fault::Partition {
            nodes: Selector::Group("island".into()),
            from: secs(60),
            to: secs(150),
            direction: Direction::Both,
        }],
        ..quiet(60, secs(300))
    };
    let outcome = run(&scenario, &PeerSettings::default());
    assert_passes(&outcome, false);
    assert!(outcome.report.excused_downs >= 2 * 18 * 42, "each side declared the other down");
    assert_eq!(outcome.findings.convergence.len(), 18, "every cut peer's heal is measured");
}

#[test]
fn stalls_and_slow_peers_break_no_promise() {
    let scenario = Scenario {
        network: Network { loss: 0.001, ..Network::default() },
        faults: vec![
            Fault::Slow {
                nodes: Selector::Count(2),
                from: secs(20),
                to: secs(200),
                delay: Duration::from_millis(800),
            },
            Fault::Pauses {
                nodes: Selector::Count(3),
                every: secs(60),
                min: Duration::from_millis(500),
                max: secs(5),
            },
            Fault::Crash {
                nodes: Selector::Count(2),
                at: When::Between(secs(30), secs(90)),
                restart_after: None,
            },
        ],
        ..quiet(40, secs(240))
    };
    let outcome = run(&scenario, &PeerSettings::default());
    assert_passes(&outcome, false);
}

#[test]
fn the_shipped_peer_scenarios_load() {
    for (name, text) in [
        ("peer-lan", include_str!("../../../../scenarios/peer-lan.toml")),
        ("peer-lossy", include_str!("../../../../scenarios/peer-lossy.toml")),
        ("peer-partition", include_str!("../../../../scenarios/peer-partition.toml")),
        ("peer-slow", include_str!("../../../../scenarios/peer-slow.toml")),
    ] {
        let (text, settings) = split_scenario(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(settings.is_some(), "{name} asks for peer mode");
        let scenario = Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(scenario.name, name);
    }
    let central = include_str!("../../../../scenarios/lan.toml");
    assert_eq!(split_scenario(central).unwrap(), (central.to_string(), None));
}

#[test]
fn peer_settings_in_files_are_checked() {
    let check = |text: &str| split_scenario(text).map(|(_, peer)| peer);
    assert_eq!(check("mode = \"peer\"\n").unwrap(), Some(PeerSettings::default()));
    let uniform = check("mode = \"peer\"\n[peer]\nprobe_order = \"uniform\"\n").unwrap().unwrap();
    assert_eq!(uniform.swim.probe_order, ProbeOrder::Uniform);
    assert!(check("mode = \"swim\"\n").unwrap_err().contains("central"));
    assert!(check("mode = \"peer\"\n[peer]\nprobes = 3\n").unwrap_err().contains("probes"));
    // The section is the core's SwimConfig: its keys, its defaults, the one duration grammar.
    let read =
        check("mode = \"peer\"\n[peer]\ngossip_interval = \"off\"\nmax_datagram = 1200\n").unwrap().unwrap();
    let swim = SwimConfig { gossip_interval: None, max_datagram: 1200, ..SwimConfig::default() };
    assert_eq!(read, PeerSettings { swim, ..PeerSettings::default() });
    let error = check("mode = \"peer\"\n[peer]\nsync_interval = \"often\"\n").unwrap_err();
    assert!(error.starts_with("peer.sync_interval: \"often\" is not a duration"), "{error}");
    let error = check("mode = \"peer\"\n[peer]\nprobe_interval = \"2s\"\n").unwrap_err();
    assert!(error.contains("peer.probe_interval is set by the simulator"), "{error}");
    let error = check("mode = \"peer\"\n[peer]\nstart = \"cold\"\n").unwrap_err();
    assert!(error.contains("peer.start must be"), "{error}");
    assert!(check("mode = \"central\"\n[peer]\n").unwrap_err().contains("mode"));
    assert!(
        check("[network]\nmode = \"peer\"\n").is_ok(),
        "a nested key named mode is central mode's business"
    );
    // Removed lines stay blank: central mode's errors keep their line numbers.
    let (text, _) =
        split_scenario("mode = \"peer\"\n[peer]\nindirect_probes = 2\n[network]\nloss = 2\n").unwrap();
    assert!(Scenario::from_toml(&text).unwrap_err().contains("loss"));
    assert_eq!(text.lines().count(), 5);
}

// ----- validation against SWIM's published results -----

/// Uniform targets, no loss, no failures: every peer sends exactly one ping per period, so
/// in any window of one period a given member is pinged with probability
/// `1 - (1 - 1/(n-1))^(n-1)` (SWIM, section 3.1).
fn probed_fraction(nodes: u32, order: ProbeOrder, seconds: u64) -> (f64, usize) {
    let swim = SwimConfig { probe_order: order, ..SwimConfig::default() };
    let settings = PeerSettings { swim, record_pings: true, ..PeerSettings::default() };
    let outcome = run(&quiet(nodes, secs(seconds)), &settings);
    assert_eq!(outcome.report.failed_probes, 0, "no loss, no failure: every probe is acked");
    let (start, windows) = (10u64, seconds - 20);
    let mut hit = vec![false; (nodes as usize) * windows as usize];
    for &(at, target) in &outcome.trace.pings {
        let Some(window) = (at.as_nanos() / 1_000_000_000).checked_sub(start) else { continue };
        if window < windows {
            hit[window as usize * nodes as usize + target as usize] = true;
        }
    }
    (hit.iter().filter(|&&h| h).count() as f64 / hit.len() as f64, hit.len())
}

fn swim_probe_probability(n: u32) -> f64 {
    1.0 - (1.0 - 1.0 / f64::from(n - 1)).powi(n as i32 - 1)
}

#[test]
fn the_chance_to_be_probed_in_a_period_matches_swim_with_uniform_targets() {
    for (n, published) in [(10, 0.6536), (100, 0.6340)] {
        assert!((swim_probe_probability(n) - published).abs() < 1e-4);
        let (measured, samples) = probed_fraction(n, ProbeOrder::Uniform, 300);
        let sigma = (published * (1.0 - published) / samples as f64).sqrt();
        assert!(
            (measured - published).abs() < 4.0 * sigma,
            "n = {n}: measured {measured:.4}, SWIM {published} (sigma {sigma:.4})"
        );
        // Randomised round-robin: each prober's target in one period is uniformly random
        // (a random position of its own shuffled round), so the marginal is the same.
        let (round_robin, _) = probed_fraction(n, ProbeOrder::RoundRobin, 300);
        println!(
            "n = {n}: probed in a period: uniform {measured:.4}, round-robin {round_robin:.4}, SWIM {published} ({samples} samples)"
        );
        assert!((round_robin - published).abs() < 4.0 * sigma, "n = {n}: round-robin {round_robin:.4}");
    }
}

/// Crash to the first probe of the crashed member, in whole periods counting the one the
/// probe is sent in: geometric with `p = 1 - (1 - 1/(n-1))^(n-1)`, mean `1/p`, `e/(e-1)` =
/// 1.582 for large n (SWIM, section 3.1). The probe is sent one period before the
/// suspicion it raises (no loss, so every peer's period is exactly the interval).
fn first_detection_periods(order: ProbeOrder, seeds: &[u64]) -> Vec<f64> {
    let mut periods = Vec::new();
    for &seed in seeds {
        let scenario = Scenario {
            seed,
            faults: vec![Fault::Crash {
                nodes: Selector::Count(50),
                at: When::Between(secs(20), secs(500)),
                restart_after: None,
            }],
            ..quiet(100, secs(600))
        };
        let swim = SwimConfig { probe_order: order, ..SwimConfig::default() };
        let settings = PeerSettings { swim, ..PeerSettings::default() };
        let outcome = run(&scenario, &settings);
        for first in &outcome.findings.first_suspicions {
            let sent = first.saturating_sub(secs(1)).as_secs_f64();
            periods.push(sent.floor() + 1.0);
        }
    }
    periods
}

#[test]
fn the_first_detection_of_a_crash_takes_e_over_e_minus_1_periods_with_uniform_targets() {
    let periods = first_detection_periods(ProbeOrder::Uniform, &[1, 2, 3]);
    assert!(periods.len() >= 140, "most crashes are judged: {}", periods.len());
    let p = swim_probe_probability(100);
    let (mean, expected) = (periods.iter().sum::<f64>() / periods.len() as f64, 1.0 / p);
    let sigma = ((1.0 - p) / (p * p) / periods.len() as f64).sqrt();
    let e = core::f64::consts::E;
    assert!((expected - e / (e - 1.0)).abs() < 0.01);
    assert!(
        (mean - expected).abs() < 4.0 * sigma,
        "measured {mean:.3} periods, SWIM {expected:.3} (sigma {sigma:.3})"
    );
    // Round-robin keeps the mean and bounds the tail (every member is probed by every
    // other once per round).
    let rr = first_detection_periods(ProbeOrder::RoundRobin, &[1, 2, 3]);
    let rr_mean = rr.iter().sum::<f64>() / rr.len() as f64;
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "first detection: uniform {mean:.3} periods (max {}), round-robin {rr_mean:.3} (max {}), SWIM {expected:.3}; {} crashes",
        max(&periods),
        max(&rr),
        periods.len()
    );
    assert!((rr_mean - expected).abs() < 4.0 * sigma, "round-robin {rr_mean:.3}");
}

/// The fraction of probe rounds that end without any ack under independent loss `p`
/// (`q = 1 - p`): `(1 - q^2)(1 - q^4)^K` (SWIM, section 5: the direct ping and its ack, then
/// K indirect paths of four datagrams each).
#[test]
fn probe_rounds_without_an_ack_match_swim_under_independent_loss() {
    for (loss, published, seconds) in [(0.05, 6.22e-4, 1200), (0.10, 7.73e-3, 600)] {
        let q: f64 = 1.0 - loss;
        let formula = (1.0 - q * q) * (1.0 - q.powi(4)).powi(3);
        assert!((formula - published).abs() / published < 0.01, "{formula}");
        let scenario =
            Scenario { network: Network { loss, ..Network::default() }, ..quiet(100, secs(seconds)) };
        let outcome = run(&scenario, &PeerSettings::default());
        let (probes, failed) = (outcome.report.probes as f64, outcome.report.failed_probes as f64);
        let expected = formula * probes;
        println!(
            "loss {loss}: {failed} of {probes} probes without an ack: {:.3e}, SWIM {formula:.3e}",
            failed / probes
        );
        assert!(
            (failed - expected).abs() < 4.0 * expected.sqrt(),
            "loss {loss}: {failed} of {probes} probes failed, SWIM expects {expected:.1}"
        );
    }
}

//! Scenario files: the shipped ones parse and run; bad ones fail with one sentence.

use super::super::*;
use super::runs::outcome;
use core::time::Duration;
use rollcall_core::DetectorConfig;
use std::sync::Arc;

const SHIPPED: [(&str, &str); 6] = [
    ("lan", include_str!("../../../../scenarios/lan.toml")),
    ("wan", include_str!("../../../../scenarios/wan.toml")),
    ("lossy", include_str!("../../../../scenarios/lossy.toml")),
    ("gc-pauses", include_str!("../../../../scenarios/gc-pauses.toml")),
    ("partition", include_str!("../../../../scenarios/partition.toml")),
    ("process-crash", include_str!("../../../../scenarios/process-crash.toml")),
];

#[test]
fn every_shipped_scenario_parses_and_runs_at_a_reduced_size_with_both_detectors() {
    let listed: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().trim_end_matches(".toml").to_string())
        // Peer-mode scenarios are tested by tests/peer.rs.
        .filter(|name| !name.starts_with("peer-"))
        .collect();
    for (name, _) in SHIPPED {
        assert!(listed.iter().any(|l| l == name), "scenarios/{name}.toml is tested but missing");
    }
    assert_eq!(listed.len(), SHIPPED.len(), "every file in scenarios/ is tested: {listed:?}");
    for (name, text) in SHIPPED {
        let scenario = Scenario::from_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(scenario.name, name);
        assert_eq!(scenario.nodes, 1000, "{name} ships at the size of the docs' tables");
        assert!(
            scenario.faults.iter().any(|f| matches!(f, Fault::Crash { .. })),
            "{name} measures detection"
        );
        // Faults scheduled up to 9 minutes in still land inside 2 minutes when scaled.
        let small = Scenario { nodes: 50, duration: Duration::from_secs(120), ..scenario.clone() };
        for detector in [small.detector.clone(), DetectorConfig::Fixed(Arc::new(Default::default()))] {
            let out = outcome(&Scenario { detector, ..small.clone() });
            if let Err(message) = out.findings.verdict(out.report.seed, false) {
                panic!("{name}:\n{}\n{message}", out.report.table());
            }
        }
    }
}

#[test]
fn every_file_in_scenarios_loads_in_its_mode() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios");
    let mut loaded = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let (central, peer) = peer::split_scenario(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let scenario = Scenario::from_toml(&central).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(scenario.name, name);
        assert_eq!(peer.is_some(), name.starts_with("peer-"), "{name}: the file name says its mode");
        if let Some(peer) = peer {
            let config = peer.swim_config(scenario.interval, scenario.nodes);
            assert_eq!(config.probe_interval, scenario.interval, "{name}: the period is the interval");
        }
        loaded += 1;
    }
    assert!(loaded >= 11, "only {loaded} files in {dir}");
    // The memberlist profile, as docs/PEER-COMPARISON.md and rollcall-compare describe it.
    let text = include_str!("../../../../scenarios/peer-memberlist.toml");
    let swim = peer::split_scenario(text).unwrap().1.unwrap().swim;
    let want = (4, 6, 2, Some(Duration::from_millis(200)), 3);
    assert_eq!(
        (
            swim.suspicion_mult,
            swim.suspicion_max_mult,
            swim.suspicion_confirmations,
            swim.gossip_interval,
            swim.gossip_fanout
        ),
        want
    );
}

#[test]
fn the_partition_scenario_cuts_a_third_of_the_fleet() {
    let scenario = Scenario::from_toml(SHIPPED[4].1).unwrap();
    assert_eq!(scenario.groups, [("far".to_string(), Selector::Percent(33.0))]);
    assert!(matches!(
        scenario.faults[0],
        Fault::Partition { direction: Direction::Both, from, to, .. }
            if from == Duration::from_secs(240) && to == Duration::from_secs(300)
    ));
}

#[test]
fn every_field_of_the_format_is_read() {
    let text = r#"
        name = "all"
        seed = 42
        nodes = 12
        duration = "90s"
        interval = "500ms"
        jitter = 0.1
        rise = 3
        [detector]
        kind = "fixed"
        multiplier = 3
        grace = "250ms"
        [network]
        latency = "pareto 1ms 1.5"
        loss = 0.02
        duplicate = 0.01
        burst = { mean_good = "1m", mean_bad = "500ms", loss = 0.9 }
        [groups]
        rack = [0, 1, 2]
        [[faults]]
        kind = "crash"
        nodes = 2
        at = "10s"
        restart_after = "5s"
        [[faults]]
        kind = "restart"
        nodes = "rack"
        at = "20s..30s"
        [[faults]]
        kind = "pause"
        nodes = "10%"
        from = "40s"
        to = "42s"
        [[faults]]
        kind = "pauses"
        nodes = "all"
        every = "30s"
        min = "100ms"
        max = "1s"
        [[faults]]
        kind = "partition"
        nodes = "rack"
        from = "50s"
        to = "60s"
        direction = "to-monitor"
        [[faults]]
        kind = "slow"
        nodes = [5]
        delay = "300ms"
        [[faults]]
        kind = "drift"
        nodes = [6, 7]
        factor = 1.02
    "#;
    let s = Scenario::from_toml(text).unwrap();
    assert_eq!((s.seed, s.nodes, s.rise, s.jitter), (42, 12, 3, 0.1));
    assert_eq!((s.duration, s.interval), (Duration::from_secs(90), Duration::from_millis(500)));
    assert_eq!(s.detector.describe(), "fixed (multiplier 3, grace 250ms)");
    assert_eq!(s.network.latency, Latency::Pareto { scale: Duration::from_millis(1), shape: 1.5 });
    assert_eq!(s.network.burst.unwrap().loss, 0.9);
    assert_eq!(s.groups, [("rack".to_string(), Selector::List(vec![0, 1, 2]))]);
    let kinds: Vec<&str> = s.faults.iter().map(Fault::kind).collect();
    assert_eq!(kinds, ["crash", "restart", "pause", "pauses", "partition", "slow", "drift"]);
    assert_eq!(
        s.faults[2],
        Fault::Pause {
            nodes: Selector::Percent(10.0),
            from: When::At(Duration::from_secs(40)),
            length: Duration::from_secs(2),
        }
    );
    let out = outcome(&s);
    assert!(out.findings.verdict(s.seed, false).is_ok(), "{}", out.report.table());
}

#[test]
fn a_bad_file_fails_with_one_sentence_naming_the_problem() {
    let check = |text: &str, expected: &str| {
        let error = Scenario::from_toml(text).unwrap_err();
        assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        assert!(!error.contains('\n'), "one line: {error:?}");
    };
    check("nodez = 3", "unknown field `nodez`");
    check("nodes = 0", "nodes must be between 1 and 1000000");
    check("duration = \"ten minutes\"", "is not a duration");
    check("[detector]\nkind = \"chen\"", "detector.kind must be \"phi\" or \"fixed\"");
    check("[detector]\nkind = \"phi\"\nmultiplier = 2", "belong to kind = \"fixed\"");
    check("[detector]\nkind = \"phi\"\nthreshold = -1", "detector: threshold must be");
    check("[network]\nlatency = \"gamma 1ms\"", "network.latency");
    check("[network]\nloss = 1.5", "network.loss must be a probability");
    check("[[faults]]\nkind = \"crash\"\nnodes = 1", "fault 1 (crash): at is required");
    check("[[faults]]\nkind = \"crash\"\nnodes = 1\nat = \"1s\"\nlength = \"1s\"", "length does not apply");
    check("[[faults]]\nkind = \"flood\"\nnodes = 1", "kind must be one of");
    check("[[faults]]\nkind = \"crash\"\nnodes = \"racks\"\nat = \"1s\"", "no group is named \"racks\"");
    check("nodes = 5\n[[faults]]\nkind = \"crash\"\nnodes = [9]\nat = \"1s\"", "node index 9 is not below");
    check(
        "[[faults]]\nkind = \"partition\"\nnodes = 1\nfrom = \"9s\"\nto = \"3s\"",
        "from must be before to",
    );
    check("[[faults]]\nkind = \"crash\"\nnodes = \"120%\"\nat = \"1s\"", "not a percentage");
}

#[test]
fn confirm_and_detector_sections_read_like_the_monitors() {
    use rollcall_core::monitor::ConfirmConfig;
    let read = |text: &str| Scenario::from_toml(text);
    let confirm = read("[confirm]\nprobes = 2\nrecheck = \"1m\"").unwrap().confirm;
    let want = ConfirmConfig { probes: 2, recheck: Duration::from_secs(60), ..ConfirmConfig::default() };
    assert_eq!(confirm, Some(want), "present: on, with the monitor's defaults for what is left out");
    assert_eq!(read("[confirm]\nenabled = false").unwrap().confirm, None);
    assert_eq!(read("").unwrap().confirm, None);
    for (text, expected) in [
        ("[confirm]\nprobe_interval = \"soon\"", "confirm.probe_interval = \"soon\" is not a duration"),
        ("[confirm]\nprobes = 0", "confirm.probes must be at least 1"),
        ("[detector]\nkind = \"fixed\"\ngrace = \"later\"", "detector.grace = \"later\" is not a duration"),
        ("[detector]\nkind = \"phi\"\nthreshold = \"high\"", "detector.threshold: invalid type"),
    ] {
        let error = read(text).unwrap_err();
        assert!(error.contains(expected), "{text}: {error}");
    }
    let phi = read("[detector]\nkind = \"phi\"\nfirst_heartbeat_estimate = \"2s\"").unwrap().detector;
    let want = rollcall_detect::PhiAccrualConfig {
        first_heartbeat_estimate: Some(Duration::from_secs(2)),
        ..Default::default()
    };
    assert_eq!(phi, DetectorConfig::Phi(Arc::new(want)));
}

#[test]
fn spans_latencies_and_selectors_read_as_written() {
    for (text, expected) in
        [("250ms", 250_000_000), ("1.5s", 1_500_000_000), ("10m", 600_000_000_000), ("300us", 300_000)]
    {
        assert_eq!(parse_duration(text), Ok(Duration::from_nanos(expected)), "{text}");
    }
    for text in ["250ms", "1.5s", "10m", "300us", "2h"] {
        assert_eq!(format_duration(parse_duration(text).unwrap()), text);
    }
    assert!(parse_duration("-1s").is_err() && parse_duration("5").is_err());
    for spec in ["constant 1ms", "normal 20ms 5ms", "lognormal 300us 0.8", "pareto 200us 1.5"] {
        assert_eq!(Latency::parse(spec).unwrap().to_string(), spec);
    }
    assert_eq!(Latency::parse("2ms"), Ok(Latency::Constant(Duration::from_millis(2))));
    assert_eq!(Selector::parse("all"), Ok(Selector::All));
    assert_eq!(Selector::parse("12"), Ok(Selector::Count(12)));
    assert_eq!(Selector::parse("2.5%"), Ok(Selector::Percent(2.5)));
    assert_eq!(When::parse("1m..2m"), Ok(When::Between(Duration::from_secs(60), Duration::from_secs(120))));
}

#[test]
fn latency_draws_follow_their_distribution() {
    let mut rng = Rng::new(3);
    let mut draws = |latency: Latency| -> Vec<f64> {
        let mut v: Vec<f64> = (0..20_000).map(|_| latency.sample(&mut rng).as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let normal = draws(Latency::Normal { mean: Duration::from_millis(20), sd: Duration::from_millis(5) });
    assert!((quantile(&normal, 0.5).unwrap() - 20.0).abs() < 0.3);
    assert!((quantile(&normal, 0.8413).unwrap() - 25.0).abs() < 0.4, "one standard deviation up");
    let lognormal = draws(Latency::LogNormal { median: Duration::from_millis(1), sigma: 1.0 });
    assert!((quantile(&lognormal, 0.5).unwrap() - 1.0).abs() < 0.05);
    assert!((quantile(&lognormal, 0.99).unwrap() / 10.24 - 1.0).abs() < 0.15, "exp(2.326) above the median");
    let pareto = draws(Latency::Pareto { scale: Duration::from_millis(1), shape: 2.0 });
    assert!(pareto[0] >= 1.0);
    assert!((quantile(&pareto, 0.99).unwrap() - 10.0).abs() < 1.0, "P(X > 10 scale) = 10^-2");
    let negative_mean = draws(Latency::Normal { mean: Duration::ZERO, sd: Duration::from_millis(5) });
    assert!(negative_mean[0] >= 0.0, "truncated at zero");
}

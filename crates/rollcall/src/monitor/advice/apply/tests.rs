use super::*;

fn goal(within_ms: u64, per_node_year: f64) -> Goal {
    Goal { detect_within: Duration::from_millis(within_ms), false_downs_per_node_year: per_node_year }
}

/// A node sending every `interval_ms` on a loopback-like network, and what its goal asks.
fn derived(interval_ms: u64, goal: &Goal) -> Derived {
    let observed =
        Observed { mean: Duration::from_millis(interval_ms), std_dev: Duration::from_millis(2), loss: 0.01 };
    let round = explain::round_of(&ConfirmConfig::default());
    let advice = qos::advise_at(&observed, goal, round);
    Derived {
        silence: advice.silence,
        confirm: advice.confirm,
        observed,
        declared: Duration::from_millis(interval_ms),
    }
}

fn phi_group() -> GroupSettings {
    GroupSettings { detector: DetectorConfig::Phi(Arc::new(PhiAccrualConfig::default())), confirm: None }
}

fn phi_of(settings: &GroupSettings) -> &PhiAccrualConfig {
    match &settings.detector {
        DetectorConfig::Phi(phi) => phi,
        DetectorConfig::Fixed(_) => panic!("phi expected"),
    }
}

/// The silence after which a phi detector with `settings` fires for a node like `node`.
fn silence_of(settings: &GroupSettings, node: &Derived) -> Duration {
    let phi = phi_of(settings);
    let level = if settings.confirm.is_some() { phi.suspect_threshold } else { phi.threshold };
    let sigma = node.observed.std_dev.max(phi.min_std_deviation);
    // Invert phi_at: the level is reached `y` standard deviations past mean + pause.
    let mut silence = node.observed.mean + phi.acceptable_pause;
    while qos::phi_at(silence, &node.observed, phi) < level {
        silence += sigma / 100;
    }
    silence
}

#[test]
fn two_goals_give_two_settings_each_keeping_its_own() {
    let (fast, slow) = (goal(2_000, 1.0), goal(10_000, 1.0));
    let fast_node = derived(200, &fast);
    let slow_node = derived(1_000, &slow);
    let fast_settings = settings_for(&phi_group(), None, &[fast_node; 3], &fast).expect("sampled");
    let slow_settings = settings_for(&phi_group(), None, &[slow_node; 3], &slow).expect("sampled");
    assert_ne!(fast_settings, slow_settings);
    for (settings, node, goal) in [(&fast_settings, &fast_node, &fast), (&slow_settings, &slow_node, &slow)] {
        let silence = silence_of(settings, node);
        // Within the goal (rounding to a half of phi and 100 ms of pause moves it little).
        assert!(silence <= goal.detect_within, "{settings:?}: {silence:?}");
        assert!(silence + Duration::from_millis(150) >= node.silence, "{settings:?}: {silence:?} {node:?}");
        let phi = phi_of(settings);
        assert!((PHI_MIN..=PHI_MAX).contains(&phi.threshold), "{phi:?}");
        assert!(phi.suspect_threshold <= phi.threshold, "{phi:?}");
    }
}

#[test]
fn the_bounds_hold_whatever_the_sample_says() {
    let g = goal(60_000, 1e-9);
    // A silence of 50 intervals: the top threshold, the rest as a pause, never past the goal.
    let mut node = derived(1_000, &g);
    node.silence = Duration::from_secs(50);
    let long = settings_for(&phi_group(), None, &[node], &goal(5_000, 1.0)).expect("sampled");
    assert_eq!(phi_of(&long).threshold, PHI_MAX);
    assert_eq!(phi_of(&long).acceptable_pause, Duration::from_secs(5), "capped at detect_within");
    // A silence shorter than the floor: the floor.
    node.silence = Duration::from_millis(1_001);
    let short = settings_for(&phi_group(), None, &[node], &g).expect("sampled");
    assert_eq!(phi_of(&short).threshold, PHI_MIN);
    assert_eq!(phi_of(&short).acceptable_pause, Duration::ZERO);
    // The fixed timeout's multiplier, both ways.
    let fixed = GroupSettings {
        detector: DetectorConfig::Fixed(Arc::new(FixedTimeoutConfig::default())),
        confirm: None,
    };
    let mut multiplier = |silence_s: u64| {
        node.silence = Duration::from_secs(silence_s);
        match settings_for(&fixed, None, &[node], &g).expect("sampled").detector {
            DetectorConfig::Fixed(fixed) => fixed.multiplier,
            DetectorConfig::Phi(_) => panic!("fixed expected"),
        }
    };
    assert_eq!(multiplier(1), FIXED_MIN);
    assert_eq!(multiplier(4), 3.0, "4 s of silence less the 1 s grace, at 1 s intervals");
    assert_eq!(multiplier(500), FIXED_MAX);
}

#[test]
fn confirmation_follows_most_of_the_sample_and_keeps_the_configured_rounds() {
    let g = goal(10_000, 1.0);
    let plain = derived(1_000, &g);
    let probed = Derived { confirm: true, ..plain };
    let rounds = ConfirmConfig { probes: 2, ..ConfirmConfig::default() };
    let configured = GroupSettings { confirm: Some(rounds.clone()), ..phi_group() };
    let off = settings_for(&configured, None, &[plain, plain, probed], &g).expect("sampled");
    assert_eq!(off.confirm, None);
    let on = settings_for(&configured, None, &[plain, probed, probed], &g).expect("sampled");
    assert_eq!(on.confirm, Some(rounds.clone()), "the group's own rounds");
    let fleets = settings_for(&phi_group(), Some(&rounds), &[probed], &g).expect("sampled");
    assert_eq!(fleets.confirm, Some(rounds), "else the fleet's");
    let phi = phi_of(&on);
    assert!(phi.suspect_threshold <= phi.threshold && phi.threshold >= 8.0, "down level kept: {phi:?}");
    assert!(settings_for(&phi_group(), None, &[], &g).is_none(), "nothing sampled, nothing set");
}

use super::*;

fn args(config: Option<PathBuf>, key_file: Option<PathBuf>) -> MonitorArgs {
    MonitorArgs { udp: None, http: None, data_dir: None, key_file, detector: None, confirm: false, config }
}

/// Writes a key file and a config file into a temp dir, then resolves settings.
fn check(config_toml: &str) -> Result<Settings, String> {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.key");
    std::fs::write(&key, "1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, config_toml).unwrap();
    Settings::from_args(&args(Some(config), Some(key))).map_err(|error| format!("{error:#}"))
}

#[test]
fn defaults_are_akka_phi_and_documented_addresses() {
    let settings = check("").unwrap();
    assert_eq!(settings.udp.to_string(), DEFAULT_UDP);
    assert_eq!(settings.http.to_string(), DEFAULT_HTTP);
    assert_eq!(settings.core.detector.name(), "phi");
    assert_eq!(settings.core.rise, 2);
}

#[test]
fn every_section_is_read() {
    let settings = check(
        r#"
        detector = "fixed"
        [monitor]
        rise = 3
        allow = ["a", "b"]
        tick = "50ms"
        [fixed]
        multiplier = 3.0
        grace = "2s"
        "#,
    )
    .unwrap();
    assert_eq!(settings.core.rise, 3);
    assert_eq!(settings.core.tick, Duration::from_millis(50));
    assert_eq!(settings.core.allow.as_ref().map(|a| a.len()), Some(2));
    match &settings.core.detector {
        DetectorConfig::Fixed(fixed) => {
            assert_eq!((fixed.multiplier, fixed.grace), (3.0, Duration::from_secs(2)))
        }
        other => panic!("expected the fixed detector, got {other:?}"),
    }
}

#[test]
fn mistakes_fail_with_one_sentence_naming_them() {
    for (config, expected) in [
        ("colour = \"blue\"", "colour"),
        ("[monitor]\nrsie = 2", "rsie"),
        ("[phi]\nacceptable_pause = \"three seconds\"", "phi.acceptable_pause"),
        ("[phi]\nthreshold = -1.0", "threshold"),
        ("[phi]\nsuspect_threshold = 9.0", "suspect"),
        ("[fixed]\nmultiplier = 0.5", "multiplier"),
        ("[monitor]\nrise = 0", "rise"),
        ("[monitor]\ntick = \"1s\"\nself_pause_threshold = \"100ms\"", "self_pause_threshold"),
        ("detector = \"magic\"", "magic"),
        ("[alerts]\ngroup_wait = \"1s\"\ngroup_wait = \"2s\"", "line 3: duplicate key `group_wait`"),
        ("[alerts]\ngroup_wait = \"1s\"\n[alerts]\nflap_changes = 3", "line 3: duplicate key `alerts`"),
    ] {
        let error = check(config).err().unwrap_or_else(|| panic!("{config:?} was accepted"));
        assert!(error.contains(expected), "{config:?}: {error}");
        assert_eq!(error.lines().count(), 1, "one sentence: {error}");
    }
}

#[test]
fn a_missing_key_file_says_how_to_make_one() {
    let error = Settings::from_args(&args(None, None)).err().unwrap().to_string();
    assert!(error.contains("rollcall keygen"), "{error}");
    let error = Settings::from_args(&args(None, Some("/nonexistent/k.key".into()))).err().unwrap();
    assert!(format!("{error:#}").contains("/nonexistent/k.key"));
}

#[test]
fn the_example_config_is_valid_and_shows_the_defaults() {
    let example = check(include_str!("../../../../rollcall.example.toml")).unwrap();
    let defaults = check("").unwrap();
    assert_eq!(format!("{:?}", example.core), format!("{:?}", defaults.core));
    assert_eq!((example.udp, example.http), (defaults.udp, defaults.http));
    assert_eq!(example.data_dir, defaults.data_dir);
    assert_eq!(example.checkpoint_interval, defaults.checkpoint_interval);
    assert_eq!(example.recv_buffer_bytes, defaults.recv_buffer_bytes);
    assert_eq!(example.alerts, defaults.alerts);
    assert_eq!(format!("{:?}", example.pings), format!("{:?}", defaults.pings));
    assert_eq!(example.api_limits, defaults.api_limits);
    assert!(example.sinks.is_empty() && example.checks.is_empty() && example.api_token.is_none());
}

#[test]
fn checks_and_sinks_from_the_file() {
    let settings = check(
        r#"
        [[check]]
        id = "backup"
        token = "abcdefghijklmnopqrstuvwxyz"
        cron = "0 3 * * *"
        timezone = "Europe/Berlin"
        [[sink]]
        name = "hook"
        kind = "webhook"
        url = "http://127.0.0.1:9/hook"
        [alerts]
        group_wait = "0s"
        "#,
    )
    .unwrap();
    assert_eq!(settings.checks.len(), 1);
    assert_eq!(settings.sinks[0].name, "hook");
    assert!(settings.alerts.group_wait.is_zero());
    for (config, expected) in [
        (
            "[[check]]\nid = \"a\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\nperiod = \"1h\"\n[[check]]\nid = \"a\"\ntoken = \"bbcdefghijklmnopqrstuvwxyz\"\nperiod = \"1h\"",
            "defined twice",
        ),
        ("[[sink]]\nname = \"x\"\nkind = \"webhook\"", "url"),
        ("[alerts]\ngroup_share = 2.0", "group_share"),
        ("[pings]\nper_token_rate = -1.0", "per_token"),
        ("[api]\ntoken = \"short\"", "api.token"),
        (
            "[[check]]\nid = \"a\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\nperiod = \"1h\"\n[[check]]\nid = \"b\"\nslug = \"a\"\ntoken = \"bbcdefghijklmnopqrstuvwxyz\"\nperiod = \"1h\"",
            "two checks have the slug \"a\"",
        ),
        (
            "[[check]]\nid = \"a\"\nslug = \"A.B\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\nperiod = \"1h\"",
            "slug",
        ),
        ("[pings]\nping_key = \"short\"", "pings.ping_key"),
        ("[pings]\nauto_create = true", "pings.auto_create needs pings.ping_key"),
        (
            "[pings]\nping_key = \"abcdefghijklmnopqrstuvwxyz\"\n[[check]]\nid = \"a\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\nperiod = \"1h\"",
            "has pings.ping_key as its token",
        ),
    ] {
        let error = check(config).err().unwrap_or_else(|| panic!("{config:?} was accepted"));
        assert!(error.contains(expected), "{config:?}: {error}");
    }
}

#[test]
fn confirmation_and_goals_are_read_and_their_mistakes_named() {
    let settings = check(
        r#"
        [confirm]
        enabled = true
        probes = 2
        probe_interval = "100ms"
        indirect = 0
        [goals]
        detect_within = "3s"
        max_false_downs = "1 per 1000 node-days"
        [goals.group.db]
        detect_within = "10s"
        max_false_downs = "1 per node-year"
        "#,
    )
    .unwrap();
    let confirm = settings.core.confirm.expect("enabled");
    assert_eq!((confirm.probes, confirm.indirect), (2, 0));
    assert_eq!(confirm.round_length(), Duration::from_millis(200));
    let fleet = settings.goals.fleet.expect("a fleet goal");
    assert_eq!(fleet.detect_within, Duration::from_secs(3));
    assert!((fleet.false_downs_per_node_year - 0.365_25).abs() < 1e-9);
    assert_eq!(settings.goals.groups["db"].detect_within, Duration::from_secs(10));
    assert!(check("").unwrap().core.confirm.is_none(), "off unless asked for");

    for (config, words) in [
        ("[confirm]\nprobes = 0", "confirm.probes"),
        ("[confirm]\nprobe_interval = \"soon\"", "confirm.probe_interval"),
        ("[confirm]\nprobez = 3", "probez"),
        ("[goals]\ndetect_within = \"3s\"", "needs both"),
        ("[goals]\ndetect_within = \"3s\"\nmax_false_downs = \"rarely\"", "goals.max_false_downs"),
        ("[goals.group.db]\n", "goals.group.db is empty"),
        ("[goals]\nadvise_every = \"10ms\"", "goals.advise_every must be at least 1s"),
        ("[goals]\nadvise_every = \"often\"", "goals.advise_every"),
    ] {
        let error = check(config).unwrap_err();
        assert!(error.contains(words), "{config:?}: {error}");
    }
}

#[test]
fn connection_limits_are_read_and_their_mistakes_named() {
    let defaults = check("").unwrap().api_limits;
    assert_eq!(defaults, ConnectionLimits::default());
    let limits = check("[api]\nmax_connections = 64\nheader_timeout = \"2s\"\nidle_timeout = \"5s\"\n")
        .unwrap()
        .api_limits;
    assert_eq!(limits.max_connections, Some(64));
    assert_eq!(
        (limits.header_timeout, limits.idle_timeout),
        (Duration::from_secs(2), Duration::from_secs(5))
    );
    for (config, expected) in [
        ("[api]\nmax_connections = 0", "api.max_connections must be at least 1"),
        ("[api]\nheader_timeout = \"10ms\"", "api.header_timeout must be between 1s and 1h"),
        ("[api]\nidle_timeout = \"soon\"", "api.idle_timeout = \"soon\" is not a duration"),
        ("[api]\nmax_conections = 5", "max_conections"),
    ] {
        let error = check(config).err().unwrap_or_else(|| panic!("{config:?} was accepted"));
        assert!(error.contains(expected), "{config:?}: {error}");
        assert_eq!(error.lines().count(), 1, "one sentence: {error}");
    }
}

#[test]
fn group_sections_take_the_fleets_keys_they_do_not_set_and_name_their_mistakes() {
    let settings = check(
        r#"
        [phi]
        threshold = 10
        min_std_deviation = "200ms"
        [confirm]
        probes = 2
        [group.db.phi]
        threshold = 12
        [group.web.confirm]
        enabled = true
        probe_interval = "100ms"
        [goals.group.batch]
        detect_within = "1m"
        max_false_downs = "1 per node-year"
        "#,
    )
    .unwrap();
    let groups = &settings.core.groups;
    assert_eq!(groups.keys().collect::<Vec<_>>(), ["db", "web"], "goals add groups only when applied");
    let phi = |name: &str| match &groups[name].detector {
        DetectorConfig::Phi(phi) => phi.clone(),
        DetectorConfig::Fixed(_) => panic!("phi expected"),
    };
    assert_eq!(phi("db").threshold, 12.0);
    assert_eq!(phi("db").min_std_deviation, Duration::from_millis(200), "the fleet's key");
    assert_eq!(phi("web").threshold, 10.0, "no phi section: the fleet's");
    assert!(groups["db"].confirm.is_none(), "the fleet does not confirm");
    let web = groups["web"].confirm.as_ref().expect("enabled for web");
    assert_eq!((web.probes, web.probe_interval), (2, Duration::from_millis(100)));

    let applied = check(
        "[goals]\napply = true\n[goals.group.batch]\ndetect_within = \"1m\"\nmax_false_downs = \"1 per node-year\"",
    )
    .unwrap();
    assert!(applied.goals.apply);
    let batch = &applied.core.groups["batch"];
    assert_eq!(batch.detector, applied.core.detector, "starts with the fleet's settings");

    for (config, words) in [
        ("[group.db]\n", "[group.db] sets nothing"),
        ("[group.db.phi]\nthreshold = -1", "group.db.phi: threshold"),
        ("[group.db.phi]\nacceptable_pause = \"long\"", "group.db.phi.acceptable_pause"),
        ("[group.db.phi]\nthreshhold = 9", "threshhold"),
        ("[group.db]\ndetector = \"fixed\"", "group.db.detector cannot be set"),
        ("[group.db.fixed]\nmultiplier = 3", "[group.db.fixed] is set but the detector is phi"),
        ("[group.db.confirm]\nprobes = 0", "group.db: confirm.probes"),
        ("[group.db.confirm]\nmax_probes_per_sec = 5", "the probe budget is the fleet's"),
        ("[group.db.confirm]\nrecheck = \"never\"", "group.db.confirm.recheck"),
        ("[group.db.color]\nx = 1", "color"),
        ("[goals]\napply = true", "goals.apply needs a goal"),
    ] {
        let error = check(config).unwrap_err();
        assert!(error.contains(words), "{config:?}: {error}");
    }
}

#[test]
fn the_monitor_and_the_simulator_read_confirm_and_the_detector_alike() {
    let confirm = "probes = 2\nprobe_interval = \"150ms\"\nindirect = 1\nrecheck = \"1.5s\"";
    let phi = "threshold = 10\nmin_std_deviation = \"250ms\"\nacceptable_pause = \"2s\"";
    let monitor = check(&format!("[confirm]\nenabled = true\n{confirm}\n[phi]\n{phi}\n")).unwrap();
    let scenario = rollcall_sim::Scenario::from_toml(&format!(
        "[confirm]\n{confirm}\n[detector]\nkind = \"phi\"\n{phi}\n"
    ))
    .unwrap();
    assert_eq!(monitor.core.confirm, scenario.confirm);
    assert_eq!(monitor.core.detector, scenario.detector);
    // One duration grammar: the same text is refused by both, naming the setting the same way.
    let refused = check("[confirm]\nrecheck = \"soon\"").unwrap_err();
    let simulated = rollcall_sim::Scenario::from_toml("[confirm]\nrecheck = \"soon\"").unwrap_err();
    let sentence = "confirm.recheck = \"soon\" is not a duration";
    assert!(refused.contains(sentence) && simulated.contains(sentence), "{refused}\n{simulated}");
}

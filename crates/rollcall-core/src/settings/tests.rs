use super::*;
use crate::swim::SwimConfig;

fn check(text: &str, expected: Result<Duration, &str>) {
    match (parse_duration(text), expected) {
        (Ok(span), Ok(want)) => assert_eq!(span, want, "{text:?}"),
        (Err(error), Err(part)) => assert!(error.to_string().contains(part), "{text:?}: {error}"),
        (found, want) => panic!("{text:?}: got {found:?}, want {want:?}"),
    }
}

#[test]
fn one_grammar_reads_what_every_file_writes() {
    let ms = Duration::from_millis;
    // What the shipped scenarios and example configs write.
    for (text, want) in [("250us", Duration::from_micros(250)), ("100ms", ms(100)), ("1.5s", ms(1500))] {
        check(text, Ok(want));
    }
    check("10m", Ok(Duration::from_secs(600)));
    check("1h", Ok(Duration::from_secs(3600)));
    check("1d", Ok(Duration::from_secs(86_400)));
    // What either grammar accepted before they were one.
    check("300µs", Ok(Duration::from_micros(300)));
    check("2min", Ok(Duration::from_secs(120)));
    check("1h 30m", Ok(Duration::from_secs(5400)));
    check(" 3s ", Ok(Duration::from_secs(3)));
    check("0s", Ok(Duration::ZERO));
}

#[test]
fn what_is_not_a_duration_is_refused_in_one_sentence() {
    check("5", Err("\"5\" is not a duration"));
    check("-1s", Err("is not a duration"));
    check("fast", Err("write e.g. \"500ms\""));
    check("40y", Err("longer than 31 years"));
    let error = duration("monitor.tick", "fast").unwrap_err();
    assert_eq!(error.setting(), "monitor.tick");
    assert!(error.to_string().starts_with("monitor.tick = \"fast\" is not a duration ("), "{error}");
    assert!(!error.to_string().contains('\n'));
}

#[test]
fn sections_put_what_is_written_on_the_defaults() {
    let confirm: ConfirmSection = toml::from_str("probes = 2\nrecheck = \"1m\"").unwrap();
    let config = confirm.resolve("confirm").unwrap();
    assert_eq!(
        config,
        ConfirmConfig { probes: 2, recheck: Duration::from_secs(60), ..ConfirmConfig::default() }
    );
    let bad: ConfirmSection = toml::from_str("indirect_timeout = \"later\"").unwrap();
    let error = bad.resolve("group.db.confirm").unwrap_err();
    assert_eq!(error.setting(), "group.db.confirm.indirect_timeout");
    assert!(toml::from_str::<ConfirmSection>("probez = 1").is_err(), "unknown keys are refused");

    let phi: PhiSection = toml::from_str("threshold = 10\nacceptable_pause = \"1s\"").unwrap();
    let phi = phi.resolve("phi").unwrap();
    assert_eq!(
        phi,
        PhiAccrualConfig { threshold: 10.0, acceptable_pause: Duration::from_secs(1), ..Default::default() }
    );
    let fixed: FixedSection = toml::from_str("grace = \"250ms\"").unwrap();
    assert_eq!(fixed.resolve("fixed").unwrap().grace, Duration::from_millis(250));
    assert_eq!(FixedSection::default().resolve("fixed").unwrap(), FixedTimeoutConfig::default());
}

#[test]
fn a_swim_config_reads_on_top_of_its_defaults() {
    let text =
        "probe_timeout = \"300ms\"\ngossip_interval = \"off\"\nprobe_order = \"uniform\"\nsuspicion_mult = 4";
    let config: SwimConfig = toml::from_str(text).unwrap();
    let want = SwimConfig {
        probe_timeout: Duration::from_millis(300),
        gossip_interval: None,
        probe_order: ProbeOrder::Uniform,
        suspicion_mult: 4,
        ..SwimConfig::default()
    };
    assert_eq!(config, want);
    assert_eq!(toml::from_str::<SwimConfig>("").unwrap(), SwimConfig::default());
    for (text, part) in [
        ("probes = 3", "unknown field `probes`"),
        ("sync_interval = \"often\"", "\"often\" is not a duration"),
        ("gossip_interval = \"never\"", "or \"off\""),
        ("probe_order = \"random\"", "\"round-robin\" or \"uniform\""),
    ] {
        let error = toml::from_str::<SwimConfig>(text).unwrap_err();
        assert!(error.message().contains(part), "{text}: {}", error.message());
    }
}

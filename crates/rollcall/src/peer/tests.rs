//! Unit tests of the peer shell's pure parts: flag validation and the metrics text.

use super::PeerSettings;
use crate::cli::{Cli, Command};
use clap::Parser;

/// Parses `rollcall peer ARGS` and validates it: the settings, or the refusal's sentence.
fn settings(args: &str) -> Result<PeerSettings, String> {
    let line = format!("rollcall peer --key-file k {args}");
    let cli = Cli::try_parse_from(line.split_whitespace()).map_err(|error| error.to_string())?;
    let Command::Peer(args) = cli.command else { panic!("not the peer command") };
    PeerSettings::from_args(&args).map_err(|error| error.to_string())
}

fn check_refused(args: &str, expected: &str) {
    match settings(args) {
        Ok(settings) => panic!("{args:?} was accepted: {settings:?}"),
        Err(error) => assert!(error.contains(expected), "{args:?}: {error:?} does not say {expected:?}"),
    }
}

#[test]
fn good_flags_make_settings() {
    let settings =
        settings("--name a --bind 127.0.0.1:0 --join 127.0.0.1:7946 --probe-interval 200ms").unwrap();
    assert_eq!(settings.swim.probe_interval.as_millis(), 200);
    // The probe timeout defaults to half the probe interval.
    assert_eq!(settings.swim.probe_timeout.as_millis(), 100);
    assert_eq!(settings.join, vec!["127.0.0.1:7946".parse().unwrap()]);
    assert_eq!(settings.swim.cluster, "rollcall");
    // The HTTP limits default to the monitor's.
    assert_eq!(settings.api_limits, crate::http_server::ConnectionLimits::default());
}

#[test]
fn mistakes_are_refused_in_one_sentence() {
    let long = "x".repeat(65);
    check_refused(&format!("--name {long} --bind 127.0.0.1:0"), "not a valid member name");
    check_refused("--name a --bind 0.0.0.0:7946", "add --advertise");
    check_refused("--name a --bind 127.0.0.1:0 --probe-interval 1s --probe-timeout 2s", "--probe-timeout");
    check_refused("--name a --bind 127.0.0.1:0 --suspicion-mult 0", "--suspicion-mult");
    check_refused("--name a --bind 127.0.0.1:0 --join nohost", "cannot resolve --join address");
    check_refused("--name a --bind 127.0.0.1:0 --join [::1]:7946", "no IPv4 address");
    check_refused("--name a --bind 127.0.0.1:0 --cluster=", "--cluster");
    check_refused("--name a --bind nowhere", "invalid value");
    check_refused("--name a --bind 127.0.0.1:0 --max-connections 0", "--max-connections must be at least 1");
    check_refused(
        "--name a --bind 127.0.0.1:0 --idle-timeout 2h",
        "--idle-timeout must be between 1s and 1h",
    );
}

#[test]
fn metrics_export_every_reason_and_escape_labels() {
    let stats = super::owner::StatsSnapshot {
        name: "a".into(),
        cluster: "odd \"name\"\\".into(),
        addr: "127.0.0.1:1".parse().unwrap(),
        incarnation: 7,
        seed: 1,
        core: Default::default(),
        members: [1, 0, 0, 0],
        health_score: 0,
        max_health: 8,
        queued_updates: 0,
        transitions: Default::default(),
        events_dropped: 0,
        send_errors: 0,
        receive_errors: 0,
        uptime: std::time::Duration::from_secs(3),
        alerts: None,
    };
    let text = super::metrics::render(&stats, &Default::default(), &Default::default());
    for reason in rollcall_core::swim::Rejection::ALL {
        let series = format!("rollcall_peer_datagrams_rejected_total{{reason=\"{}\"}} 0\n", reason.as_str());
        assert!(text.contains(&series), "missing {series:?} in:\n{text}");
    }
    assert!(text.contains("rollcall_peer_members{state=\"up\"} 1\n"), "{text}");
    assert!(text.contains(r#"cluster="odd \"name\"\\""#), "{text}");
}

/// `rollcall peer` with a config file holding `toml` (and `extra` flags): the settings, or
/// the refusal's sentence.
fn with_config(toml: &str, extra: &str) -> Result<PeerSettings, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peer.toml");
    std::fs::write(&path, toml).unwrap();
    settings(&format!("--name a --bind 127.0.0.1:0 --config {} {extra}", path.display()))
}

const WEBHOOK: &str = "[[sink]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n";

#[test]
fn a_config_with_sinks_turns_alerting_on() {
    let toml = format!("{WEBHOOK}[alerts]\ngroup_wait = \"0s\"\n");
    let alerting =
        with_config(&toml, "--data-dir /tmp/peer-a").unwrap().alerting.expect("sinks turn alerting on");
    assert_eq!(alerting.sinks.len(), 1);
    assert_eq!(alerting.data_dir, std::path::PathBuf::from("/tmp/peer-a"));
    assert!(alerting.alerts.group_wait.is_zero());
    // data_dir may come from the file instead; the flag wins over it.
    let toml = format!("data_dir = \"/tmp/from-file\"\n{WEBHOOK}");
    assert_eq!(with_config(&toml, "").unwrap().alerting.unwrap().data_dir.to_str(), Some("/tmp/from-file"));
    assert_eq!(
        with_config(&toml, "--data-dir /tmp/flag").unwrap().alerting.unwrap().data_dir.to_str(),
        Some("/tmp/flag")
    );
    // Without sinks there is nothing to alert through, and no store.
    assert!(with_config("[alerts]\nrepeat_interval = \"1h\"\n", "").unwrap().alerting.is_none());
    assert!(settings("--name a --bind 127.0.0.1:0").unwrap().alerting.is_none());
}

#[test]
fn config_mistakes_are_refused_in_one_sentence() {
    let refused = |toml: &str, extra: &str, expected: &str| {
        let error = with_config(toml, extra).expect_err(toml);
        assert!(error.contains(expected), "{toml:?}: {error:?} does not say {expected:?}");
        assert_eq!(error.lines().count(), 1, "one sentence: {error:?}");
    };
    // Monitor settings and unknown keys alike: the peer does not use them.
    refused("udp = \"0.0.0.0:7400\"\n", "", "`udp` is not a peer setting");
    refused("[phi]\nthreshold = 8.0\n", "", "`phi` is not a peer setting");
    refused("colour = \"blue\"\n", "", "holds only data_dir, [alerts] and [[sink]]");
    // The monitor's own checks of its sections.
    refused("[alerts]\nflap_changes = 1\n", "", "alerts.flap_changes");
    refused("[alerts]\ngroup_wiat = \"1s\"\n", "", "group_wiat");
    refused("[[sink]]\nname = \"ops\"\nkind = \"webhook\"\n", "--data-dir /tmp/x", "url");
    refused(WEBHOOK, "", "pass --data-dir DIR or set data_dir");
    check_refused("--name a --bind 127.0.0.1:0 --data-dir /tmp/x", "add --config FILE");
    check_refused("--name a --bind 127.0.0.1:0 --config /nonexistent/peer.toml", "cannot read config file");
}

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
    };
    let text = super::metrics::render(&stats);
    for reason in rollcall_proto::swim::Rejection::ALL {
        let series = format!("rollcall_peer_datagrams_rejected_total{{reason=\"{}\"}} 0\n", reason.as_str());
        assert!(text.contains(&series), "missing {series:?} in:\n{text}");
    }
    assert!(text.contains("rollcall_peer_members{state=\"up\"} 1\n"), "{text}");
    assert!(text.contains(r#"cluster="odd \"name\"\\""#), "{text}");
}

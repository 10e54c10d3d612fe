use super::*;

fn raw(toml_text: &str) -> RawCluster {
    toml::from_str(toml_text).expect("valid TOML for RawCluster")
}

#[test]
fn a_cluster_section_is_read_with_defaults() {
    let settings =
        parse(&raw("name = \"prod\"\nmonitor = \"m1\"\netcd = [\"http://127.0.0.1:2379\"]")).expect("valid");
    assert_eq!(settings.lease_ttl, Duration::from_secs(5));
    assert_eq!(settings.member_key(), "/rollcall/prod/members/m1");
    assert_eq!(settings.election(), "/rollcall/prod/election");
}

#[test]
fn mistakes_are_named_in_one_sentence() {
    for (text, expected) in [
        ("monitor = \"m1\"\netcd = [\"http://a:1\"]", "cluster.name is missing"),
        ("name = \"prod/eu\"\nmonitor = \"m1\"\netcd = [\"http://a:1\"]", "no '/'"),
        ("name = \"prod\"\nmonitor = \"m/1\"\netcd = [\"http://a:1\"]", "cluster.monitor"),
        ("name = \"prod\"\nmonitor = \"m1\"\nprefix = \"a/b\"\netcd = [\"http://a:1\"]", "cluster.prefix"),
        ("name = \"prod\"\nmonitor = \"m1\"", "cluster.etcd must list"),
        ("name = \"prod\"\nmonitor = \"m1\"\netcd = [\"10.0.0.1:2379\"]", "not an endpoint URL"),
        ("name = \"prod\"\nmonitor = \"m1\"\netcd = [\"http://a:1\"]\nlease_ttl = \"1s\"", "lease_ttl"),
        (
            "name = \"prod\"\nmonitor = \"m1\"\netcd = [\"http://a:1\"]\nlease_ttl = \"2500ms\"",
            "whole seconds",
        ),
        ("name = \"prod\"\nmonitor = \"m1\"\netcd = [\"http://a:1\"]\nuser = \"root\"", "go together"),
    ] {
        let error = parse(&raw(text)).err().unwrap_or_else(|| panic!("{text:?} was accepted")).to_string();
        assert!(error.contains(expected), "{text:?}: {error}");
        assert_eq!(error.lines().count(), 1, "{error}");
    }
}

#[test]
fn a_leader_acts_until_its_last_acknowledged_renewal_plus_ttl_minus_a_margin() {
    let start = Instant::now();
    let mut tenure = Tenure::new(Duration::from_secs(5));
    assert!(!tenure.is_valid(start), "no renewal acknowledged yet: no tenure");
    tenure.acknowledged(start);
    let until = tenure.valid_until().expect("a tenure");
    assert_eq!(until - start, Duration::from_millis(5_000 - 600), "TTL minus 10 % and 100 ms");
    assert!(tenure.is_valid(until - Duration::from_millis(1)));
    assert!(!tenure.is_valid(until), "not one instant past it");
    // An older acknowledgement arriving late never moves the tenure back.
    tenure.acknowledged(start + Duration::from_secs(1));
    tenure.acknowledged(start);
    assert_eq!(tenure.valid_until(), Some(start + Duration::from_millis(5_400)));
}

fn views(shares: &[(&str, u64, u64)]) -> BTreeMap<String, View> {
    shares
        .iter()
        .map(|&(name, nodes, lost)| {
            (name.to_string(), View { nodes, up: nodes - lost, suspect: 0, down: lost })
        })
        .collect()
}

#[test]
fn a_monitor_that_alone_loses_the_fleet_is_the_one_cut_off() {
    assert_eq!(cut_off(&views(&[("m1", 100, 0), ("m2", 100, 90), ("m3", 100, 1)])), ["m2"]);
    assert!(
        cut_off(&views(&[("m1", 100, 95), ("m2", 100, 90), ("m3", 100, 92)])).is_empty(),
        "a mass failure"
    );
    assert!(cut_off(&views(&[("m1", 100, 10), ("m2", 100, 30)])).is_empty(), "under half lost");
    assert!(cut_off(&views(&[("m2", 100, 90)])).is_empty(), "nobody to compare with");
    assert!(cut_off(&views(&[("m1", 2, 0), ("m2", 2, 2)])).is_empty(), "too few nodes to judge");
    assert!(cut_off(&views(&[("m1", 100, 40), ("m2", 100, 90)])).is_empty(), "the other lost much too");
}

/// A `[cluster]` section with https endpoints and `extra` settings, whose `{dir}` is replaced
/// by a directory holding `ca.pem`, `client.pem` and `client.key` (PEM syntax only: the
/// certificates themselves are checked by the TLS handshake, in tests/cluster_tls.rs).
fn tls_check(extra: &str) -> anyhow::Result<ClusterSettings> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let certificate = "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMIIBAA==\n-----END PRIVATE KEY-----\n";
    for (name, text) in [
        ("ca.pem", certificate),
        ("client.pem", certificate),
        ("client.key", key),
        ("garbage.pem", "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n"),
        ("empty.pem", "not PEM at all\n"),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write a PEM file");
    }
    let text = format!(
        "name = \"prod\"\nmonitor = \"m1\"\netcd = [\"https://127.0.0.1:2379\", \"https://127.0.0.2:2379\"]\n{}",
        extra.replace("{dir}", &dir.path().display().to_string())
    );
    parse(&raw(&text))
}

#[test]
fn https_endpoints_read_the_ca_and_the_client_certificate_at_start() {
    let settings = tls_check("ca_file = \"{dir}/ca.pem\"").expect("a CA alone is enough");
    let tls = settings.tls.expect("TLS settings");
    assert!(tls.ca.starts_with(b"-----BEGIN CERTIFICATE-----"));
    assert!(tls.identity.is_none());
    let settings = tls_check(
        "ca_file = \"{dir}/ca.pem\"\ncert_file = \"{dir}/client.pem\"\nkey_file = \"{dir}/client.key\"",
    )
    .expect("a CA and a client certificate");
    let tls = settings.tls.expect("TLS settings");
    assert!(tls.identity.is_some());
    assert!(!format!("{tls:?}").contains("PRIVATE KEY"), "the key is never printed");
    assert!(
        parse(&raw("name = \"p\"\nmonitor = \"m1\"\netcd = [\"http://a:1\"]")).expect("valid").tls.is_none()
    );
}

#[test]
fn tls_mistakes_are_named_in_one_sentence() {
    for (extra, expected) in [
        ("", "cluster.ca_file is missing"),
        ("ca_file = \"{dir}/absent.pem\"", "cluster.ca_file: cannot read"),
        ("ca_file = \"{dir}/empty.pem\"", "holds no PEM certificate"),
        ("ca_file = \"{dir}/garbage.pem\"", "is not valid PEM"),
        ("ca_file = \"{dir}/client.key\"", "holds no PEM certificate"),
        ("ca_file = \"{dir}/ca.pem\"\ncert_file = \"{dir}/client.pem\"", "go together"),
        ("ca_file = \"{dir}/ca.pem\"\nkey_file = \"{dir}/client.key\"", "go together"),
        (
            "ca_file = \"{dir}/ca.pem\"\ncert_file = \"{dir}/client.pem\"\nkey_file = \"{dir}/client.pem\"",
            "holds no PEM private key",
        ),
        (
            "ca_file = \"{dir}/ca.pem\"\ncert_file = \"{dir}/client.key\"\nkey_file = \"{dir}/client.key\"",
            "cluster.cert_file",
        ),
        (
            "ca_file = \"{dir}/ca.pem\"\ncert_file = \"{dir}/client.pem\"\nkey_file = \"{dir}/none.key\"",
            "cluster.key_file: cannot read",
        ),
    ] {
        let error = match tls_check(extra) {
            Ok(_) => panic!("{extra:?} was accepted"),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(expected), "{extra:?}: {error}");
        assert_eq!(error.lines().count(), 1, "{error}");
    }
    for (text, expected) in [
        ("etcd = [\"https://a:1\", \"http://b:2\"]", "mixes http:// and https://"),
        ("etcd = [\"http://a:1\"]\nca_file = \"ca.pem\"", "are for https:// endpoints"),
    ] {
        let text = format!("name = \"prod\"\nmonitor = \"m1\"\n{text}");
        let error = parse(&raw(&text)).err().unwrap_or_else(|| panic!("{text:?} was accepted")).to_string();
        assert!(error.contains(expected), "{text:?}: {error}");
    }
}

#[test]
fn the_etcd_password_is_never_printed() {
    let settings = parse(&raw(
        "name = \"prod\"\nmonitor = \"m1\"\netcd = [\"http://a:1\"]\nuser = \"root\"\npassword = \"hunter2\"",
    ))
    .expect("valid");
    let printed = format!("{settings:?} {:?}", raw("password = \"hunter2\""));
    assert!(!printed.contains("hunter2") && printed.contains("<redacted>"), "{printed}");
    assert_eq!(settings.user.as_ref().map(|(_, password)| password.expose()), Some("hunter2"));
}

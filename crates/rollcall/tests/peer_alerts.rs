//! `rollcall peer` alerting end to end: three real peers on the host's loopback, one of them
//! (`p1`) with a webhook sink pointing at a real receiver (`support/receiver.rs`).
//!
//! A member killed with SIGKILL is paged by `p1` (firing, with its idempotency key); `p1`
//! itself killed and restarted on its data dir restores that incident; the member restarted
//! resolves it, with no second page. The peer without sinks keeps no store and shows
//! no sinks. Every wait is for a condition, with a deadline; nothing sleeps to let things
//! settle.

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use receiver::Receiver;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use support::{PeerProcess, Sandbox, bin, promtool_check};

/// How long any condition may take: detection (a few probe intervals), the incident layer's
/// `group_wait` (5 s by default, kept on purpose: its timer is part of what is tested) and a
/// delivery. A passing test never waits this long.
const PATIENCE: Duration = Duration::from_secs(30);
/// SWIM timing for the test, as in tests/peer.rs.
const TIMING: [&str; 6] =
    ["--probe-interval", "200ms", "--sync-interval", "1s", "--reconnect-interval", "500ms"];

#[test]
fn a_peer_with_a_webhook_sink_pages_a_crash_and_its_recovery_once() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let config = sandbox.write_file(
        "p1-alerts",
        "toml",
        &format!(
            "[[sink]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{}\"\ntimeout = \"2s\"\n",
            receiver.url()
        ),
    );
    let data_dir = sandbox.path().join("p1-data");
    let alerting = [
        "--config".to_string(),
        config.display().to_string(),
        "--data-dir".to_string(),
        data_dir.display().to_string(),
    ];
    let http = Http::new();

    let p1 = spawn(&sandbox, "p1", "127.0.0.1:0", None, &alerting);
    let seed = p1.udp;
    let p2 = spawn(&sandbox, "p2", "127.0.0.1:0", Some(seed), &[]);
    let p3 = spawn(&sandbox, "p3", "127.0.0.1:0", Some(seed), &[]);
    let p3_udp = p3.udp;
    for peer in [&p1, &p2, &p3] {
        http.wait_for_view(peer, &[("p1", "up"), ("p2", "up"), ("p3", "up")]);
    }
    assert!(data_dir.join("rollcall.db").exists(), "p1 keeps its store in its data dir");

    // A crash: p1 pages it once p3 is down in p1's view (and the grouping wait is over).
    p3.crash();
    let firing = wait_for(&format!("a firing alert for p3 at {}", receiver.url()), || {
        find(&receiver, "firing", "p3").ok_or_else(|| format!("received {:?}", receiver.keys()))
    });
    let document = &firing.json;
    let key = document["idempotency_key"].as_str().expect("the document has its key").to_string();
    assert_eq!(firing.key(), Some(key.as_str()), "the header carries the document's key");
    let incident = document["incident"]["id"].as_u64().expect("an incident id");
    assert_eq!(key, format!("rollcall-{incident}-0"), "{document:#}");
    assert_eq!(document["version"], 1, "{document:#}");
    assert_eq!(document["severity"], "critical", "{document:#}");
    assert_eq!(document["subject"], serde_json::json!({"kind": "node", "id": "p3"}), "{document:#}");
    assert_eq!(document["nodes"], serde_json::json!(["p3"]), "{document:#}");
    assert_eq!(document["transition"]["to"], "down", "{document:#}");
    assert_eq!(document["transition"]["reason"], "probes-unanswered", "{document:#}");
    assert_eq!(
        document["labels"],
        serde_json::json!({"observer": "p1", "cluster": "rollcall"}),
        "the alert names whose view it comes from: {document:#}"
    );
    let sinks = http.wait_for(&p1, "/v1/sinks", |sinks| {
        let ops = &sinks[0];
        (ops["name"] == "ops" && ops["delivered"].as_u64() >= Some(1) && ops["pending"] == 0)
            .then_some(())
            .ok_or("ops has not delivered everything yet")
    });
    assert_eq!(sinks.as_array().map(Vec::len), Some(1), "{sinks:#}");

    // The peer without sinks behaves as before: no sinks, no alerting series.
    assert_eq!(http.get(&p2, "/v1/sinks"), (200, serde_json::json!([])));
    let metrics = http.text(&p2, "/metrics");
    assert!(!metrics.contains("rollcall_peer_alert_deliveries_total"), "{metrics}");

    // p1 crashes and restarts on its data dir: the open incident is restored (sync pages
    // carry only live members, so its new view may never hear of p3 until p3 is back).
    let p1_udp = p1.udp;
    p1.crash();
    let p1 = spawn(&sandbox, "p1", &p1_udp.to_string(), Some(p2.udp), &alerting);
    http.wait_for_view(&p1, &[("p2", "up")]);
    let (_, status) = http.get(&p1, "/v1/status");
    assert_eq!(status["alerting"]["open_incidents"], 1, "p3's incident is restored: {status:#}");

    // p3 comes back: the incident resolves, in p1's restarted life.
    let _p3 = spawn(&sandbox, "p3", &p3_udp.to_string(), Some(p2.udp), &[]);
    let resolved = wait_for("the resolution of p3's incident", || {
        find(&receiver, "resolved", "p3").ok_or_else(|| format!("received {:?}", receiver.keys()))
    });
    assert_eq!(resolved.json["incident"]["id"].as_u64(), Some(incident), "{:#}", resolved.json);
    assert_eq!(resolved.key(), Some(format!("rollcall-{incident}-1").as_str()));
    let firing_keys: Vec<String> = receiver
        .unique_alerts()
        .iter()
        .filter(|alert| alert["kind"] == "firing")
        .map(|alert| alert["idempotency_key"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(firing_keys, vec![key], "one page for one crash, across p1's restart");

    let metrics = http.wait_for_metrics(&p1, |metrics| {
        let delivered = metrics.get(r#"rollcall_peer_alert_deliveries_total{sink="ops",result="delivered"}"#);
        match (delivered, metrics.get("rollcall_peer_incidents_open")) {
            (Some(&delivered), Some(&open)) if delivered >= 1.0 && open == 0.0 => Ok(()),
            other => Err(format!("delivered, open: {other:?}")),
        }
    });
    assert_eq!(metrics[r#"rollcall_peer_sink_failing{sink="ops"}"#], 0.0, "{metrics:?}");
    promtool_check(&http.text(&p1, "/metrics"));
}

#[test]
fn a_peer_refuses_a_config_it_does_not_use_in_one_sentence() {
    let sandbox = Sandbox::new();
    let webhook = "[[sink]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n";
    let cases = [
        ("udp = \"0.0.0.0:7400\"\n".to_string(), "`udp` is not a peer setting"),
        (webhook.to_string(), "pass --data-dir DIR or set data_dir"),
        (format!("{webhook}kind_of = 1\n"), "kind_of"),
    ];
    for (toml, expected) in cases {
        let config = sandbox.write_file("peer", "toml", &toml);
        let line: Vec<String> = ["peer", "--name", "a", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"]
            .into_iter()
            .map(String::from)
            .chain(["--key-file".into(), sandbox.key_file().display().to_string()])
            .chain(["--config".into(), config.display().to_string()])
            .collect();
        let exited = sandbox.run_to_exit(&line);
        assert_eq!(exited.status.code(), Some(2), "{toml:?} must be refused: {exited:?}");
        assert!(exited.stderr.contains(expected), "{toml:?}: {:?} does not say {expected:?}", exited.stderr);
        assert_eq!(exited.stderr.trim().lines().count(), 1, "one sentence: {:?}", exited.stderr);
    }
}

/// Starts `rollcall peer` named `name` on `bind` (HTTP on an OS-chosen port), joining `join`.
fn spawn(
    sandbox: &Sandbox,
    name: &str,
    bind: &str,
    join: Option<SocketAddr>,
    extra: &[String],
) -> PeerProcess {
    let mut command = Command::new(bin());
    command
        .args(["peer", "--name", name, "--bind", bind, "--http", "127.0.0.1:0"])
        .arg("--key-file")
        .arg(sandbox.key_file())
        .args(TIMING)
        .args(extra);
    if let Some(join) = join {
        command.args(["--join", &join.to_string()]);
    }
    PeerProcess::spawn(sandbox, name, command)
}

/// The first delivered alert of `kind` about node `subject`.
fn find(receiver: &Receiver, kind: &str, subject: &str) -> Option<receiver::Request> {
    receiver.deliveries().into_iter().find(|request| {
        request.json["kind"] == kind && request.json["subject"]["id"] == subject && request.key().is_some()
    })
}

/// Polls `probe` until it returns a value, for at most [`PATIENCE`].
fn wait_for<T>(what: &str, probe: impl FnMut() -> Result<T, String>) -> T {
    support::wait_until(PATIENCE, what, probe, String::new)
}

/// A client of the peers' HTTP APIs.
struct Http {
    agent: ureq::Agent,
}

impl Http {
    fn new() -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        Http { agent }
    }

    /// `GET path` as text; a peer that does not answer fails the test, with its stderr.
    fn text(&self, peer: &PeerProcess, path: &str) -> String {
        self.try_get(peer, path).map(|(_, body)| body).unwrap_or_else(|error| {
            panic!("GET {path} from {}: {error}\nstderr:\n{}", peer.name, peer.stderr_tail())
        })
    }

    /// `GET path`: the status and the body as JSON (`Null` if it is not JSON).
    fn get(&self, peer: &PeerProcess, path: &str) -> (u16, Value) {
        let (status, body) = self.try_get(peer, path).unwrap_or_else(|error| {
            panic!("GET {path} from {}: {error}\nstderr:\n{}", peer.name, peer.stderr_tail())
        });
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    fn try_get(&self, peer: &PeerProcess, path: &str) -> Result<(u16, String), String> {
        let mut response = self
            .agent
            .get(&format!("http://{}{path}", peer.http))
            .call()
            .map_err(|error| error.to_string())?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(|error| error.to_string())?;
        Ok((status, body))
    }

    /// Polls `GET path` until `probe` accepts its JSON; returns that JSON.
    fn wait_for(
        &self,
        peer: &PeerProcess,
        path: &str,
        mut probe: impl FnMut(&Value) -> Result<(), &'static str>,
    ) -> Value {
        wait_for(&format!("{path} of {}", peer.name), || {
            let (status, body) = self.get(peer, path);
            match probe(&body) {
                Ok(()) if status == 200 => Ok(body),
                Ok(()) => Err(format!("status {status}: {body}")),
                Err(problem) => Err(format!("{problem}: {body}")),
            }
        })
    }

    /// Waits until `peer` sees each named member in the given state.
    fn wait_for_view(&self, peer: &PeerProcess, expected: &[(&str, &str)]) {
        wait_for(&format!("{}'s view {expected:?}", peer.name), || {
            let (_, members) = self.get(peer, "/v1/nodes");
            let view: BTreeMap<&str, &str> = members
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|member| Some((member["id"].as_str()?, member["state"].as_str()?)))
                .collect();
            let all = expected.iter().all(|(name, state)| view.get(name) == Some(state));
            all.then_some(()).ok_or_else(|| format!("{view:?}"))
        });
    }

    /// Polls `/metrics` until `probe` accepts them; returns them by series.
    fn wait_for_metrics(
        &self,
        peer: &PeerProcess,
        mut probe: impl FnMut(&BTreeMap<String, f64>) -> Result<(), String>,
    ) -> BTreeMap<String, f64> {
        wait_for(&format!("the metrics of {}", peer.name), || {
            let metrics: BTreeMap<String, f64> = self
                .text(peer, "/metrics")
                .lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| {
                    let (series, value) = line.rsplit_once(' ')?;
                    Some((series.to_string(), value.parse().ok()?))
                })
                .collect();
            probe(&metrics).map(|()| metrics)
        })
    }
}

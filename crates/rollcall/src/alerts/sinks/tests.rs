//! Configuration tests here; each sink's tests, against real processes and sockets, in tests/.

mod alertmanager;
mod exec;
mod webhook;

use super::*;
use crate::alerts::model::{
    ALERT_VERSION, AlertKind, IncidentInfo, Severity, Subject, SubjectKind, TransitionInfo,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use rollcall_core::monitor::{NodeState, Reason};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

// ---- helpers shared by the sink tests ----

/// A node alert of `kind` for incident `incident`, with two labels (one needing sanitising).
fn alert(kind: AlertKind, incident: u64) -> Alert {
    let resolved = kind == AlertKind::Resolved;
    Alert {
        version: ALERT_VERSION,
        idempotency_key: format!("rollcall-{incident}-{}", kind as u8 + 1),
        kind,
        severity: Severity::Critical,
        incident: IncidentInfo {
            id: incident,
            started_at: "2026-03-01T12:00:00Z".to_owned(),
            resolved_at: resolved.then(|| "2026-03-01T12:05:30Z".to_owned()),
        },
        subject: Subject { kind: SubjectKind::Node, id: "web-1".to_owned() },
        nodes: vec!["web-1".to_owned()],
        node_count: 1,
        labels: BTreeMap::from([
            ("group".to_owned(), "web".to_owned()),
            ("dc-name".to_owned(), "eu 1".to_owned()),
        ]),
        transition: (kind != AlertKind::Reminder).then(|| TransitionInfo {
            from: if resolved { NodeState::Down } else { NodeState::Up },
            to: if resolved { NodeState::Up } else { NodeState::Down },
            reason: if resolved { Reason::Heartbeat } else { Reason::Phi },
            at: if resolved { "2026-03-01T12:05:30Z" } else { "2026-03-01T12:00:00Z" }.to_owned(),
            exit_code: None,
            exit_signal: None,
        }),
        summary: format!("web-1: {kind:?}"),
        fencing_token: None,
    }
}

/// `alert` as the outbox would hold it.
fn stored(alert: &Alert) -> StoredAlert {
    StoredAlert { alert: alert.clone(), payload: serde_json::to_string(alert).expect("serialises") }
}

/// The sinks in `toml` (a sequence of `[[sink]]` tables), validated.
fn configs(toml: &str) -> Result<Vec<SinkConfig>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        sink: Vec<RawSink>,
    }
    let file: File = toml::from_str(toml).map_err(|error| error.message().to_owned())?;
    parse_sinks(file.sink)
}

/// The one sink in `toml`.
fn sink(toml: &str) -> Sink {
    let mut configs = configs(toml).expect("valid sink config");
    assert_eq!(configs.len(), 1);
    Sink::new(configs.remove(0))
}

/// Polls `probe` until it returns `Some`, failing after `limit` with `what` in the message.
async fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One request as a [`Receiver`] saw it.
#[derive(Clone, Debug)]
struct Request {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().expect("ASCII header"))
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// A real HTTP server on a loopback port that records every request and answers with a
/// status the test can change.
#[derive(Clone)]
struct Receiver {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    status: Arc<AtomicU16>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let receiver = Receiver { url, requests: Arc::default(), status: Arc::new(AtomicU16::new(200)) };
        let app = axum::Router::new().fallback(record).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("the test server runs") });
        receiver
    }

    fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("not poisoned").clone()
    }
}

async fn record(
    State(receiver): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    receiver.requests.lock().expect("not poisoned").push(Request {
        path: uri.path().to_owned(),
        headers,
        body,
    });
    let status = StatusCode::from_u16(receiver.status.load(Ordering::SeqCst)).expect("a valid status");
    (status, format!("test receiver says {}", status.as_u16()))
}

// ---- configuration ----

/// `toml` must be refused with an error containing `expected`.
fn check_error(toml: &str, expected: &str) {
    match configs(toml) {
        Ok(configs) => panic!("accepted {toml:?} as {configs:?}; expected an error containing {expected:?}"),
        Err(error) => assert!(error.contains(expected), "error {error:?} does not contain {expected:?}"),
    }
}

#[test]
fn a_full_config_is_parsed() {
    let configs = configs(
        r#"
        [[sink]]
        name = "ops"
        kind = "webhook"
        url = "http://127.0.0.1:9000/hook"
        secret = "s3cret"
        timeout = "3s"
        match = { group = "web" }
        min_severity = "warning"

        [[sink]]
        name = "pager"
        kind = "exec"
        command = ["/usr/local/bin/page", "--team", "ops"]

        [[sink]]
        name = "am"
        kind = "alertmanager"
        url = "http://127.0.0.1:9093/"
        resend_interval = "30s"
        "#,
    )
    .expect("valid");
    let expected = vec![
        SinkConfig {
            name: "ops".to_owned(),
            target: SinkTarget::Webhook {
                url: "http://127.0.0.1:9000/hook".to_owned(),
                secret: Some(Secret("s3cret".to_owned())),
            },
            timeout: Duration::from_secs(3),
            route: Route {
                match_labels: BTreeMap::from([("group".to_owned(), "web".to_owned())]),
                min_severity: Severity::Warning,
            },
        },
        SinkConfig {
            name: "pager".to_owned(),
            target: SinkTarget::Exec {
                command: vec!["/usr/local/bin/page".into(), "--team".into(), "ops".into()],
            },
            timeout: DEFAULT_TIMEOUT,
            route: Route { match_labels: BTreeMap::new(), min_severity: Severity::Info },
        },
        SinkConfig {
            name: "am".to_owned(),
            target: SinkTarget::Alertmanager {
                url: "http://127.0.0.1:9093".to_owned(),
                resend_interval: Duration::from_secs(30),
            },
            timeout: DEFAULT_TIMEOUT,
            route: Route { match_labels: BTreeMap::new(), min_severity: Severity::Info },
        },
    ];
    assert_eq!(configs, expected);
    assert!(!format!("{:?}", configs[0]).contains("s3cret"), "Debug must not print the secret");
    let am = Sink::new(configs[2].clone());
    assert_eq!(am.resend_interval(), Some(Duration::from_secs(30)));
    assert_eq!(Sink::new(configs[0].clone()).resend_interval(), None);
    assert_eq!(am.name(), "am");
}

#[test]
fn alertmanager_resends_every_minute_by_default() {
    let sink = sink("[[sink]]\nname = \"am\"\nkind = \"alertmanager\"\nurl = \"http://am:9093\"");
    assert_eq!(sink.resend_interval(), Some(DEFAULT_RESEND_INTERVAL));
}

#[test]
fn mistakes_are_named() {
    let sink = |body: &str| format!("[[sink]]\nname = \"ops\"\n{body}");
    check_error(&sink("kind = \"webhook\""), "sink \"ops\": no url");
    check_error(&sink("kind = \"alertmanager\""), "sink \"ops\": no url");
    check_error(&sink("kind = \"exec\""), "sink \"ops\": kind = \"exec\" needs command");
    check_error(&sink("kind = \"exec\"\ncommand = []"), "needs command");
    check_error(&sink("kind = \"email\"\nurl = \"http://x\""), "kind = \"email\" is not a sink kind");
    check_error(&sink("url = \"http://x\""), "sink \"ops\": no kind");
    check_error(
        &sink("kind = \"webhook\"\nurl = \"https://x/hook\""),
        "uses https, which this build does not support",
    );
    check_error(&sink("kind = \"webhook\"\nurl = \"ftp://x/hook\""), "only http:// is supported");
    check_error(&sink("kind = \"webhook\"\nurl = \"http://\""), "is not an http:// URL");
    check_error(
        &sink("kind = \"webhook\"\nurl = \"http://x\"\ntimeout = \"soon\""),
        "timeout = \"soon\" is not a duration",
    );
    check_error(
        &sink("kind = \"webhook\"\nurl = \"http://x\"\ntimeout = \"0s\""),
        "sink \"ops\": timeout is zero",
    );
    check_error(
        &sink("kind = \"alertmanager\"\nurl = \"http://x\"\nresend_interval = \"0s\""),
        "resend_interval is zero",
    );
    check_error(
        &sink("kind = \"webhook\"\nurl = \"http://x\"\nmin_severity = \"high\""),
        "min_severity = \"high\" is not a severity",
    );
    check_error(
        &sink("kind = \"webhook\"\nurl = \"http://x\"\ncommand = [\"/bin/true\"]"),
        "command only applies to kind = \"exec\"",
    );
    check_error(
        &sink("kind = \"exec\"\ncommand = [\"/bin/true\"]\nsecret = \"x\""),
        "secret only applies to kind = \"webhook\"",
    );
    check_error(
        &sink("kind = \"webhook\"\nurl = \"http://x\"\nresend_interval = \"1m\""),
        "resend_interval only applies",
    );
    check_error(&sink("kind = \"webhook\"\nurl = \"http://x\"\nsecret = \"\""), "secret is empty");
    check_error(
        &sink("kind = \"alertmanager\"\nurl = \"http://x/api/v2/alerts\""),
        "already ends in /api/v2/alerts",
    );
    check_error("[[sink]]\nkind = \"webhook\"\nurl = \"http://x\"", "sink #1: no name");
    check_error(&sink("kind = \"webhook\"\nurl = \"http://x\"\nurl_typo = 1"), "unknown field `url_typo`");
    let twice = "[[sink]]\nname = \"ops\"\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n";
    check_error(&format!("{twice}{twice}"), "sink \"ops\": the name is used by an earlier [[sink]]");
}

/// Whether a sink with `match` labels and `min_severity` routes an alert with `labels` and
/// `severity`.
fn check_route(
    matching: &[(&str, &str)],
    min_severity: Severity,
    labels: &[(&str, &str)],
    severity: Severity,
    expected: bool,
) {
    let config = SinkConfig {
        name: "ops".to_owned(),
        target: SinkTarget::Exec { command: vec!["/bin/true".to_owned()] },
        timeout: DEFAULT_TIMEOUT,
        route: Route {
            match_labels: matching.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            min_severity,
        },
    };
    let mut alert = alert(AlertKind::Firing, 1);
    alert.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    alert.severity = severity;
    assert_eq!(
        config.routes(&alert),
        expected,
        "match {matching:?} >= {min_severity:?} for {labels:?} {severity:?}"
    );
}

#[test]
fn routes_match_every_label_and_the_minimum_severity() {
    use Severity::*;
    check_route(&[], Info, &[], Info, true);
    check_route(&[], Warning, &[], Info, false);
    check_route(&[], Warning, &[], Critical, true);
    check_route(&[("group", "web")], Info, &[("group", "web"), ("dc", "eu")], Info, true);
    check_route(&[("group", "web")], Info, &[("group", "db")], Critical, false);
    check_route(&[("group", "web")], Info, &[], Critical, false);
    check_route(&[("group", "web"), ("dc", "eu")], Info, &[("group", "web")], Critical, false);
    check_route(
        &[("group", "web"), ("dc", "eu")],
        Critical,
        &[("group", "web"), ("dc", "eu")],
        Warning,
        false,
    );
}

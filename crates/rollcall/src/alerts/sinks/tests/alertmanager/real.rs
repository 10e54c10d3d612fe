//! End to end against the real Alertmanager (Debian package `prometheus-alertmanager`).
//!
//! A missing binary is a failure naming the package, like every test that needs a tool
//! (`cargo xtask test` installs it).

use super::*;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::SystemTime;

#[tokio::test]
async fn the_real_alertmanager_accepts_and_resolves_our_alerts() {
    let binary = binary().expect(
        "Alertmanager is not installed (no `alertmanager` or `prometheus-alertmanager` on PATH): `apt-get install -y prometheus-alertmanager`",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(&config, "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
        .expect("write config");
    let log_path = dir.path().join("alertmanager.log");
    let log = std::fs::File::create(&log_path).expect("create the log");
    let port = free_port();
    let mut alertmanager = tokio::process::Command::new(&binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
    let base = format!("http://127.0.0.1:{port}");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_for("Alertmanager to be ready", Duration::from_secs(30), || {
        if let Ok(Some(status)) = alertmanager.try_wait() {
            panic!("Alertmanager exited with {status} before it was ready:\n{}", log());
        }
        get(&format!("{base}/-/ready")).filter(|(status, _)| *status == 200).map(|_| ())
    })
    .await;

    let sink = alertmanager_sink(&base);
    let now = SystemTime::now();
    let mut firing = alert(AlertKind::Firing, 4242);
    firing.incident.started_at = humantime::format_rfc3339_seconds(now - Duration::from_secs(60)).to_string();
    sink.deliver(&stored(&firing))
        .await
        .unwrap_or_else(|error| panic!("Alertmanager refused the alert: {error}\n{}", log()));
    let seen = wait_for("the alert to be listed", Duration::from_secs(10), || ours(&base)).await;
    assert_eq!(seen["labels"]["node"], "web-1");
    assert_eq!(seen["labels"]["dc_name"], "eu 1");
    assert_eq!(seen["annotations"]["summary"], "web-1: Firing");
    assert_eq!(sink.resend_firing().await, Ok(1));

    let mut resolved = alert(AlertKind::Resolved, 4242);
    resolved.incident.started_at = firing.incident.started_at.clone();
    resolved.incident.resolved_at = Some(humantime::format_rfc3339_seconds(now).to_string());
    sink.deliver(&stored(&resolved))
        .await
        .unwrap_or_else(|error| panic!("Alertmanager refused the resolution: {error}"));
    wait_for("the alert to be resolved", Duration::from_secs(10), || ours(&base).is_none().then_some(()))
        .await;

    alertmanager.kill().await.expect("kill and reap Alertmanager");
}

fn alertmanager_sink(base: &str) -> Sink {
    sink(&format!("[[sink]]\nname = \"am\"\nkind = \"alertmanager\"\nurl = \"{base}\"\ntimeout = \"5s\""))
}

/// Our test alert as Alertmanager lists it among the active ones, if it does.
fn ours(base: &str) -> Option<Value> {
    let (status, body) = get(&format!("{base}/api/v2/alerts"))?;
    assert_eq!(status, 200, "GET /api/v2/alerts: {body}");
    let alerts: Vec<Value> = serde_json::from_str(&body).expect("a JSON array");
    alerts.into_iter().find(|alert| {
        alert["labels"]["incident"] == "4242" && alert["labels"]["alertname"] == "RollcallNodeDown"
    })
}

/// A blocking GET: the status and body, or `None` if the server did not answer.
fn get(url: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(url).call().ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().unwrap_or_default()))
}

/// The Alertmanager binary: upstream's name first, then Debian's.
fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["alertmanager", "prometheus-alertmanager"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .chain([PathBuf::from("/usr/bin/prometheus-alertmanager")])
        .find(|candidate| candidate.is_file())
}

/// A loopback port that was free a moment ago (Alertmanager cannot report the port it bound).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("bound").port()
}

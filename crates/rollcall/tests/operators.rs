//! What operators' tools see: the metrics as Prometheus' own checker reads them, the CLI's
//! `--json` output and exit codes, and the event stream's resumption.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Agent, Monitor, Sandbox, bin, promtool_check};

const FAST: &str = r#"
[phi]
acceptable_pause = "300ms"
min_std_deviation = "50ms"
[api]
token = "operators-token-0123"
[[check]]
id = "backup"
token = "abcdefghijklmnopqrstuvwxyz012345"
period = "1h"
[[sink]]
name = "nowhere"
kind = "webhook"
url = "http://127.0.0.1:9/hook"
timeout = "1s"
"#;

/// `promtool check metrics` (Debian's prometheus package) on the monitor's real output, with
/// nodes, a check and a sink present so that every family has samples.
#[test]
fn promtool_accepts_the_metrics() {
    assert!(
        which("promtool").is_some(),
        "promtool is missing: `cargo xtask test` installs it (apt-get install prometheus)"
    );
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, FAST);
    let _agent =
        Agent::start(&sandbox, "web-1", monitor.udp, Duration::from_millis(200), &[("group", "web")]);
    monitor.wait_for_state("web-1", "up");
    let (status, body) = monitor.get_text("/metrics");
    assert_eq!(status, 200);
    for family in [
        "rollcall_heartbeats_received_total",
        "rollcall_nodes",
        "rollcall_pings_received_total",
        "rollcall_outbox_pending",
        "rollcall_node_up{node=\"web-1\"} 1",
        "rollcall_node_last_heartbeat_timestamp_seconds{node=\"web-1\"}",
        "rollcall_detection_lag_seconds_bucket",
    ] {
        assert!(body.contains(family), "{family} missing from /metrics");
    }
    promtool_check(&body);
}

fn which(tool: &str) -> Option<String> {
    let output = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn cli(monitor: &Monitor, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(bin())
        .args(args)
        .env("ROLLCALL_API", format!("http://{}", monitor.http))
        .env("ROLLCALL_TOKEN", "operators-token-0123")
        .output()
        .expect("the CLI runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_cli_speaks_json_and_exit_codes_scripts_can_use() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, FAST);
    let _web = Agent::start(&sandbox, "web-1", monitor.udp, Duration::from_millis(200), &[("group", "web")]);
    let _db = Agent::start(&sandbox, "db-1", monitor.udp, Duration::from_millis(200), &[("group", "db")]);
    monitor.wait_for_state("web-1", "up");
    monitor.wait_for_state("db-1", "up");

    let (code, out, err) = cli(&monitor, &["nodes", "--json", "--label", "group=web"]);
    assert_eq!(code, 0, "{err}");
    let nodes: serde_json::Value = serde_json::from_str(&out).expect("nodes --json is JSON");
    let ids: Vec<&str> = nodes.as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["web-1"]);

    assert_eq!(cli(&monitor, &["node", "web-1", "--expect", "up"]).0, 0);
    let (code, _, err) = cli(&monitor, &["node", "web-1", "--expect", "down"]);
    assert_eq!(code, 1, "a state other than the expected one exits 1: {err}");
    let (code, _, err) = cli(&monitor, &["node", "ghost"]);
    assert_eq!(code, 2, "an unknown node is an error: {err}");
    assert!(err.contains("ghost"), "{err}");

    let (code, out, _) = cli(&monitor, &["status", "--json"]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).expect("status --json is JSON");
    assert_eq!(status["nodes"]["up"], 2);
    assert_eq!(status["checks"], 1);

    let (code, out, _) = cli(&monitor, &["events", "--json"]);
    assert_eq!(code, 0);
    let firsts = out.lines().filter(|line| line.contains("first-heartbeat")).count();
    assert_eq!(firsts, 2, "{out}");

    let (code, out, err) = cli(&monitor, &["pause", "db-1", "--for", "1h", "--json"]);
    assert_eq!(code, 0, "{err}");
    let paused: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(paused["state"], "paused");
    assert_eq!(cli(&monitor, &["resume", "db-1"]).0, 0);
    assert_eq!(monitor.node("db-1").unwrap().state, "up");

    // A group nobody belongs to is an empty group (200), and `rollcall upstreams` renders it
    // as an empty list rather than failing.
    let (status, body) = monitor.get_text("/v1/groups/nobody");
    assert_eq!(status, 200, "{body}");
    let (code, out, err) = cli(&monitor, &["upstreams", "--group", "nobody", "--format", "lines", "--once"]);
    assert_eq!((code, out.trim()), (0, ""), "{err}");
    let (code, out, err) = cli(&monitor, &["upstreams", "--group", "web", "--format", "lines", "--once"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 0, "web-1 has no addr label, so nothing to route to: {out}");

    let (code, out, _) = cli(&monitor, &["checks", "--json"]);
    assert_eq!(code, 0);
    let checks: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(checks[0]["id"], "backup");

    let (code, out, _) = cli(&monitor, &["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(out.contains("rollcall"));
    let (code, _, err) = Command::new(bin())
        .args(["nodes"])
        .env("ROLLCALL_API", "http://127.0.0.1:9")
        .output()
        .map(|o| (o.status.code().unwrap_or(-1), (), String::from_utf8_lossy(&o.stderr).into_owned()))
        .unwrap();
    assert_eq!(code, 2);
    assert!(err.contains("cannot reach the monitor"), "{err}");
}

/// Reads one SSE connection (from `query`) until `count` events arrived, returning their
/// ids and event names (`transition` or `incident`); the connection is then dropped (a
/// forced disconnect).
fn read_events(
    monitor: &Monitor,
    query: &str,
    last_event_id: Option<i64>,
    count: usize,
) -> Vec<(i64, String)> {
    let mut stream = TcpStream::connect(monitor.http).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let resume = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
    write!(
        stream,
        "GET /v1/events/stream?{query} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{resume}\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut events = Vec::new();
    let (mut id, mut name) = (None, None);
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while events.len() < count && Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim();
        if let Some(value) = line.strip_prefix("id:") {
            id = Some(value.trim().parse::<i64>().expect("numeric event ids"));
        } else if let Some(value) = line.strip_prefix("event:") {
            name = Some(value.trim().to_string());
        } else if line.is_empty()
            && let Some(id) = id.take()
        {
            events.push((id, name.take().expect("every event is named")));
        }
    }
    let mut rest = [0u8; 0];
    let _ = reader.read(&mut rest);
    events
}

/// The event sequence as the store holds it: transitions and incident changes, by id;
/// `about` keeps only those of one node.
fn stored_events(sandbox: &Sandbox, about: Option<&str>) -> Vec<i64> {
    let db = rusqlite::Connection::open_with_flags(
        sandbox.data_dir().join("rollcall.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    // An incident change is about a node when the node is among its members (one per line).
    let mut statement = db
        .prepare(
            "SELECT id FROM transitions WHERE ?1 IS NULL OR node = ?1
             UNION ALL SELECT id FROM incident_changes
               WHERE ?1 IS NULL OR instr(char(10) || members || char(10), char(10) || ?1 || char(10)) > 0
             ORDER BY id",
        )
        .unwrap();
    statement.query_map(rusqlite::params![about], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
}

#[test]
fn the_event_stream_resumes_after_a_disconnect_without_missing_anything() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, FAST);
    let agents: Vec<Agent> = (0..4)
        .map(|i| {
            let group = if i == 0 { "a" } else { "b" };
            Agent::start(
                &sandbox,
                &format!("n{i}"),
                monitor.udp,
                Duration::from_millis(200),
                &[("group", group)],
            )
        })
        .collect();
    for i in 0..4 {
        monitor.wait_for_state(&format!("n{i}"), "up");
    }
    // Read two events, drop the connection, let more happen (downs, and the incidents they
    // open), resume from the last one seen.
    let first = read_events(&monitor, "since=0", None, 2);
    assert_eq!(first.len(), 2);
    for agent in &agents[..2] {
        agent.signal(nix::sys::signal::Signal::SIGKILL);
    }
    monitor.wait_for_state("n0", "down");
    monitor.wait_for_state("n1", "down");
    monitor.wait_until(Duration::from_secs(30), "two open incidents", || {
        let (_, open) = monitor.get_json("/v1/incidents?open=true");
        if open.as_array().map_or(0, Vec::len) == 2 { Ok(()) } else { Err(open.to_string()) }
    });
    let stored = stored_events(&sandbox, None);
    let transitions: Vec<i64> = monitor.all_events().iter().map(|e| e.id).collect();
    assert!(stored.len() >= transitions.len() + 2, "two incidents opened: {stored:?}");
    let resumed = read_events(&monitor, "since=0", Some(first[1].0), stored.len() - 2);
    let mut seen: Vec<i64> = first.iter().map(|(id, _)| *id).collect();
    seen.extend(resumed.iter().map(|(id, _)| *id));
    assert_eq!(seen, stored, "the stream after resumption continues exactly where it stopped");
    let incidents = resumed.iter().filter(|(_, name)| name == "incident").count();
    assert_eq!(incidents, stored.len() - transitions.len(), "every incident change was streamed");

    // The group filter keeps group a's node: its transitions and its incident's changes.
    let expected = stored_events(&sandbox, Some("n0"));
    let filtered = read_events(&monitor, "since=0&group=a", None, expected.len());
    assert_eq!(filtered.iter().map(|(id, _)| *id).collect::<Vec<_>>(), expected);
    assert!(filtered.iter().any(|(_, name)| name == "incident"), "{filtered:?}");
}

/// The Grafana dashboard in contrib/ queries only metrics the monitor really exports, with
/// PromQL that Prometheus' own checker accepts.
#[test]
fn the_grafana_dashboard_queries_real_metrics() {
    let promtool = which("promtool").unwrap_or_else(|| {
        panic!("promtool is missing: `cargo xtask test` installs it (apt-get install prometheus)")
    });
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard is in contrib/"))
            .expect("JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().expect("every target has a query").to_string())
        .collect();
    assert!(exprs.len() >= 10, "{} queries", exprs.len());

    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, FAST);
    let (_, metrics) = monitor.get_text("/metrics");
    // Families as declared (a family without samples yet, such as transitions on a fresh
    // monitor, still has its TYPE line).
    let exported: std::collections::BTreeSet<&str> =
        metrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    for expr in &exprs {
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("rollcall_"))
        {
            assert!(exported.contains(name), "the dashboard queries {name}, which /metrics does not export");
        }
    }

    // Each query as a recording rule: `promtool check rules` parses the PromQL.
    let rules: String = exprs
        .iter()
        .enumerate()
        .map(|(i, expr)| {
            format!("      - record: dashboard:query{i}\n        expr: '{}'\n", expr.replace('\'', "''"))
        })
        .collect();
    let file = sandbox.write_file(
        "dashboard-rules",
        "yml",
        &format!("groups:\n  - name: dashboard\n    rules:\n{rules}"),
    );
    let output = Command::new(promtool).args(["check", "rules"]).arg(&file).output().expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// With `api.protect_reads`, reading the API needs the token; health checks, metrics and
/// pings stay open.
#[test]
fn reads_can_be_protected_by_the_token() {
    let sandbox = Sandbox::new();
    let config = "[api]\ntoken = \"operators-token-0123\"\nprotect_reads = true\n";
    let monitor = Monitor::start(&sandbox, config);
    let url = |path: &str| format!("http://{}{path}", monitor.http);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let status = |path: &str, token: Option<&str>| {
        let mut request = agent.get(&url(path));
        if let Some(token) = token {
            request = request.header("authorization", &format!("Bearer {token}"));
        }
        request.call().expect("the monitor answers").status().as_u16()
    };
    assert_eq!(status("/v1/nodes", None), 401);
    assert_eq!(status("/v1/status", Some("wrong-token-000000")), 403);
    assert_eq!(status("/v1/nodes", Some("operators-token-0123")), 200);
    assert_eq!(status("/healthz", None), 200);
    assert_eq!(status("/metrics", None), 200);
    assert_eq!(status("/ping/abcdefghijklmnopqrstuvwxyz", None), 404, "pings are judged by their own token");

    // Without a token to check against, protecting reads is a configuration mistake.
    let config = sandbox.write_file("protect", "toml", "[api]\nprotect_reads = true\n");
    let refused = sandbox.run_to_exit(&support::monitor_args(
        &sandbox.path().join("other"),
        &sandbox.key_file(),
        &config,
    ));
    assert!(!refused.status.success());
    assert!(refused.stderr.contains("api.protect_reads"), "{}", refused.stderr);
}

/// Per-node series can be switched off (or bounded) for huge fleets: the gauge says how many
/// nodes were left out.
#[test]
fn per_node_series_can_be_switched_off() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, "[metrics]\nper_node_series = 0\n");
    let _agent = Agent::start(&sandbox, "web-1", monitor.udp, Duration::from_millis(200), &[]);
    monitor.wait_for_state("web-1", "up");
    let (_, body) = monitor.get_text("/metrics");
    assert!(!body.contains("rollcall_node_up{"), "{body}");
    assert!(body.contains("rollcall_node_series_omitted 1"), "{body}");
}

/// A client connected to the live stream must not keep the monitor from stopping: SIGTERM
/// ends the stream (the client can resume later) and the monitor exits cleanly.
#[test]
fn a_connected_event_stream_does_not_hold_up_shutdown() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, "");
    let mut stream = TcpStream::connect(monitor.http).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET /v1/events/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // `stop` waits for the exit with a deadline and fails the test if it does not come.
    let exit = monitor.stop(nix::sys::signal::Signal::SIGTERM);
    assert!(exit.success(), "{exit:?}");
    // The stream was ended by the server, not cut by the test.
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
}

//! The OpenAPI document (`docs/openapi.json`) against the real API: the document is well
//! formed, the monitor serves it unchanged, and every documented operation is exercised on a
//! real monitor with its response (status, media type, JSON body) checked against what the
//! document says for that status.

mod support;

#[path = "openapi/leases.rs"]
mod leases;

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::time::Duration;
use support::{Agent, DEADLINE, Monitor, Sandbox};

/// The document as kept in the repository.
const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

const TOKEN: &str = "openapi-token-0123456789";
const BACKUP_TOKEN: &str = "backup-token-0123456789abcdef";
const FLOOD_TOKEN: &str = "flood-token-0123456789abcdefgh";
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// A monitor with an API token, two checks (one to flood into a 429), a webhook sink that
/// cannot deliver (so the outbox and the sink's errors have content), a quick detector and
/// no grouping delay (so a down node opens an incident at once), and a small ping body limit
/// (so a ping body is kept truncated).
const CONFIG: &str = r#"
[phi]
acceptable_pause = "500ms"
[alerts]
group_wait = "0s"
[goals]
detect_within = "3s"
max_false_downs = "1 per node-year"
[api]
token = "openapi-token-0123456789"
[pings]
ping_key = "openapi-ping-key-0123456789"
body_limit = 16
per_token_rate = 0.5
per_token_burst = 10
[[check]]
id = "backup"
token = "backup-token-0123456789abcdef"
period = "1h"
[[check]]
id = "flood"
token = "flood-token-0123456789abcdefgh"
period = "1h"
[[sink]]
name = "nowhere"
kind = "webhook"
url = "http://127.0.0.1:9/hook"
timeout = "1s"
"#;

#[test]
fn the_document_is_well_formed() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("`openapi` is a string");
    assert!(version.starts_with("3.1."), "OpenAPI {version}: the test validates 3.1 schemas");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in &refs {
        let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {reference}"));
        assert!(doc.pointer(pointer).is_some(), "$ref {reference} resolves to nothing");
    }

    let mut ids = BTreeSet::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        let in_template: BTreeSet<String> = template
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_string)
            .collect();
        for (method, operation) in item.as_object().expect("a path item") {
            if method == "parameters" {
                continue;
            }
            assert!(METHODS.contains(&method.as_str()), "{template}: unknown method {method}");
            let id = operation["operationId"].as_str().expect("every operation has an operationId");
            assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
            assert!(operation["responses"].as_object().is_some_and(|r| !r.is_empty()), "{id}: no responses");
            let mut declared = BTreeSet::new();
            let all = [&item["parameters"], &operation["parameters"]];
            for parameter in all.into_iter().filter_map(Value::as_array).flatten() {
                let parameter = resolve(&doc, parameter);
                let name = parameter["name"].as_str().expect("a parameter has a name");
                assert!(parameter["schema"].is_object(), "{id}: parameter {name} has no schema");
                if parameter["in"] == "path" {
                    assert_eq!(parameter["required"], true, "{id}: path parameter {name} must be required");
                    declared.insert(name.to_string());
                }
            }
            assert_eq!(declared, in_template, "{method} {template}: declared path parameters");
            if let Some(security) = operation["security"].as_array() {
                for scheme in security.iter().flat_map(|s| s.as_object().expect("a requirement").keys()) {
                    assert!(
                        doc["components"]["securitySchemes"][scheme].is_object(),
                        "{id}: scheme {scheme}"
                    );
                }
            }
        }
    }

    // Every API route the server declares is documented (the dashboard's pages are not API).
    let routes = include_str!("../src/monitor/http/mod.rs");
    for route in routes.split(".route(\"").skip(1).filter_map(|rest| rest.split('"').next()) {
        let api = ["/v1/", "/ping/", "/healthz", "/metrics"].iter().any(|prefix| route.starts_with(prefix));
        assert!(!api || doc["paths"].get(route).is_some(), "route {route} is served but not documented");
    }

    // Every schema compiles, and is a valid JSON Schema 2020-12 document.
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        assert!(jsonschema::meta::is_valid(schema), "schema {name} is not valid JSON Schema");
        validator(&doc, schema);
    }
}

#[test]
fn every_operation_answers_as_documented() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, CONFIG);
    let api = Api::new(&monitor);
    let agent = Agent::start(
        &sandbox,
        "web-1",
        monitor.udp,
        Duration::from_millis(200),
        &[("group", "web"), ("addr", "127.0.0.1:8080")],
    );
    monitor.wait_for_up("web-1", 3);
    // Down and back, so that there are transitions, an incident (opened and resolved) and
    // alerts in the outbox that the sink keeps failing to deliver.
    agent.signal(Signal::SIGSTOP);
    let down = monitor.wait_for_state("web-1", "down");
    agent.signal(Signal::SIGCONT);
    monitor.wait_for_up("web-1", down.sequence + 1);
    monitor.wait_until(DEADLINE, "a resolved incident and a failed delivery", || {
        let (_, incidents) = monitor.get_json("/v1/incidents");
        let (_, sinks) = monitor.get_json("/v1/sinks");
        let resolved =
            incidents.as_array().is_some_and(|all| all.iter().any(|i| i["resolved_at"].is_string()));
        let failed = sinks[0]["failed_attempts"].as_u64().unwrap_or(0) > 0;
        if resolved && failed { Ok(()) } else { Err(format!("{incidents}\n{sinks}")) }
    });
    // A command that fails at once: a `process-exited` transition with its exit code.
    let interval = Duration::from_millis(200);
    let mut worker =
        Agent::start_with(&sandbox, "worker-1", monitor.udp, interval, &[], &["--", "sh", "-c", "exit 3"]);
    monitor.wait_for_state("worker-1", "down");
    assert_eq!(worker.wait_exit().code(), Some(3));

    monitor_endpoints(&api);
    node_endpoints(&api);
    event_endpoints(&api);
    check_endpoints(&api);
    ping_endpoints(&api);
    alert_endpoints(&api);
    silence_endpoints(&api);
    leases::lease_endpoints(&api);
    forget_endpoint(&api);

    let documented = operations(&api.doc);
    let hit = api.hits.borrow();
    let missed: Vec<_> = documented.difference(&hit).collect();
    assert!(missed.is_empty(), "documented but not exercised: {missed:?}");
    let undocumented: Vec<_> = hit.difference(&documented).collect();
    assert!(undocumented.is_empty(), "exercised but not documented: {undocumented:?}");
}

/// Last, since it removes the node the other checks look at.
fn forget_endpoint(api: &Api) {
    let one = "/v1/nodes/{id}";
    api.call(Call::new("delete", one, "/v1/nodes/web-1"), 401);
    api.call(Call::new("delete", one, "/v1/nodes/web-1").token("wrong-token-0123456789"), 403);
    api.call(Call::new("delete", one, "/v1/nodes/nobody").token(TOKEN), 404);
    api.call(Call::new("delete", one, "/v1/nodes/web-1").token(TOKEN), 204);
    // The history is written just after the answer: wait for it (the agent keeps sending, so
    // web-1 may already be registered anew after it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let history = api.get("/v1/events", "/v1/events?node=web-1&limit=1000", 200).json();
        let forgotten = history.as_array().is_some_and(|events| {
            events.iter().any(|event| event["to"] == "left" && event["reason"] == "forget")
        });
        if forgotten {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no forget transition in {history}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn monitor_endpoints(api: &Api) {
    assert_eq!(api.get("/healthz", "/healthz", 200).body, "ok\n");
    let classic = api.call(Call::new("get", "/metrics", "/metrics"), 200);
    assert_eq!(classic.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(classic.body.contains("rollcall_heartbeats_received_total"));
    let accept = [("Accept", "application/openmetrics-text; version=1.0.0")];
    let open = api.call(Call::new("get", "/metrics", "/metrics").headers(&accept), 200);
    assert_eq!(open.content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(open.body.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");

    let served = api.get("/v1/openapi.json", "/v1/openapi.json", 200);
    assert!(served.body == DOCUMENT, "/v1/openapi.json differs from docs/openapi.json: rebuild the monitor");

    let status = api.get("/v1/status", "/v1/status", 200).json();
    // This monitor runs alone; tests/cluster.rs runs monitors with `[cluster]`.
    api.get("/v1/cluster", "/v1/cluster", 404);
    assert_eq!(status["version"], api.doc["info"]["version"], "info.version follows the crate's version");
    assert_eq!(status["checks"], 2);
    assert_eq!(status["sinks"][0]["name"], "nowhere");
}

fn node_endpoints(api: &Api) {
    let nodes = api.get("/v1/nodes", "/v1/nodes", 200).json();
    assert_eq!(nodes[0]["id"], "web-1");
    let web = api.get("/v1/nodes", "/v1/nodes?state=up&label=group%3Dweb", 200).json();
    assert_eq!(web.as_array().map(Vec::len), Some(1));
    let none = api.get("/v1/nodes", "/v1/nodes?label=group%3Ddb", 200).json();
    assert_eq!(none, json!([]));
    let bad = api.get("/v1/nodes", "/v1/nodes?state=sleeping", 400).json();
    assert!(bad["message"].as_str().unwrap().contains("state"), "{bad}");
    let node = api.get("/v1/nodes/{id}", "/v1/nodes/web-1", 200).json();
    assert_eq!(node["labels"], json!({"addr": "127.0.0.1:8080", "group": "web"}));
    assert_eq!(node["down_level"], 8.0);
    assert!(node["recent_intervals_ms"].as_array().is_some_and(|window| window.len() >= 2), "{node}");
    let history = node["history"].as_array().expect("history");
    assert!(!history.is_empty() && history.iter().all(|event| event["node"] == "web-1"), "{node}");
    api.get("/v1/nodes/{id}", "/v1/nodes/nobody", 404);

    let group = api.get("/v1/groups/{group}", "/v1/groups/web", 200).json();
    assert_eq!(group["up"], json!(["127.0.0.1:8080"]));
    // A group nobody belongs to is an empty group, not an error (proxy config generators).
    let empty = api.get("/v1/groups/{group}", "/v1/groups/nothing", 200).json();
    assert_eq!((empty["up"].clone(), empty["members"].clone()), (json!([]), json!([])), "{empty}");
    let curve = api.get("/v1/nodes/{id}/phi", "/v1/nodes/web-1/phi", 200).json();
    let points = curve["points"].as_array().expect("points");
    assert!(points.len() > 20, "a curve over the detector's window: {curve}");
    assert!(points.iter().any(|p| p["level"].as_f64() > Some(0.0)), "{curve}");
    api.get("/v1/nodes/{id}/phi", "/v1/nodes/nobody/phi", 404);
    let explained = api.get("/v1/nodes/{id}/explain", "/v1/nodes/web-1/explain", 200).json();
    assert_eq!(explained["node"]["id"], "web-1", "{explained}");
    assert!(explained["expected"]["detect_max_ms"].as_f64() > Some(0.0), "{explained}");
    assert!(explained["goal"]["met"].is_boolean(), "the config sets goals: {explained}");
    api.get("/v1/nodes/{id}/explain", "/v1/nodes/nobody/explain", 404);

    let pause = "/v1/nodes/{id}/pause";
    let resume = "/v1/nodes/{id}/resume";
    api.call(Call::new("post", pause, "/v1/nodes/web-1/pause"), 401);
    api.call(Call::new("post", pause, "/v1/nodes/web-1/pause").token("wrong-token-0123456789"), 403);
    api.call(Call::new("post", pause, "/v1/nodes/nobody/pause").token(TOKEN), 404);
    let bad_until = r#"{"until": "2000-01-01T00:00:00Z"}"#;
    let refused =
        api.call(Call::new("post", pause, "/v1/nodes/web-1/pause").token(TOKEN).json(bad_until), 400);
    assert_eq!(refused.json()["code"], "bad_request");
    // Bodies that do not parse get the same JSON error, naming what is wrong.
    let broken = api.call(Call::new("post", pause, "/v1/nodes/web-1/pause").token(TOKEN).json("{"), 400);
    assert_eq!(broken.json()["code"], "bad_request");
    let bogus =
        api.call(Call::new("post", pause, "/v1/nodes/web-1/pause").token(TOKEN).json(r#"{"bogus": 1}"#), 400);
    assert!(bogus.json()["message"].as_str().unwrap().contains("bogus"), "{bogus:?}");
    let huge = format!(r#"{{"for": "{}"}}"#, "9".repeat(70 * 1024));
    let too_big = api.call(Call::new("post", pause, "/v1/nodes/web-1/pause").token(TOKEN).json(&huge), 413);
    assert_eq!(too_big.json()["code"], "payload_too_large");
    let text = Call::new("post", pause, "/v1/nodes/web-1/pause").token(TOKEN).body("text/plain", "2h");
    assert_eq!(api.call(text, 400).json()["code"], "bad_request");
    let paused = api.call(Call::new("post", pause, "/v1/nodes/web-1/pause").token(TOKEN), 200).json();
    assert_eq!(paused["state"], "paused");
    api.call(Call::new("post", resume, "/v1/nodes/web-1/resume"), 401);
    api.call(Call::new("post", resume, "/v1/nodes/nobody/resume").token(TOKEN), 404);
    api.call(Call::new("post", resume, "/v1/nodes/web-1/resume").token(TOKEN), 200);
    let timed = api
        .call(Call::new("post", pause, "/v1/nodes/web-1/pause").token(TOKEN).json(r#"{"for": "2h"}"#), 200);
    assert_eq!(timed.json()["state"], "paused");
    api.call(Call::new("post", resume, "/v1/nodes/web-1/resume").token(TOKEN), 200);
}

fn event_endpoints(api: &Api) {
    let events = api.get("/v1/events", "/v1/events", 200).json();
    let events = events.as_array().expect("an array");
    assert!(events.len() >= 3, "{events:?}");
    let page = api.get("/v1/events", "/v1/events?since=1&limit=2&kind=node&node=web-1", 200).json();
    assert_eq!(page.as_array().map(Vec::len), Some(2));
    let exited = api.get("/v1/events", "/v1/events?node=worker-1", 200).json();
    let down = exited.as_array().and_then(|events| events.last()).expect("worker-1 has transitions");
    assert_eq!((&down["reason"], &down["exit_code"]), (&json!("process-exited"), &json!(3)), "{exited}");
    let bad = api.get("/v1/events", "/v1/events?kind=bogus", 400);
    assert_eq!(bad.json()["code"], "bad_request");
    let unparsed = api.get("/v1/events", "/v1/events?since=yesterday", 400);
    assert_eq!(unparsed.json()["code"], "bad_request", "{unparsed:?}");

    let first = api.stream("/v1/events/stream?since=0&group=web", &[]);
    assert_eq!(first["node"], "web-1");
    let resumed = api.stream("/v1/events/stream", &[("Last-Event-ID", "1")]);
    assert!(resumed["id"].as_i64().is_some_and(|id| id > 1), "resumed after event 1: {resumed}");
    // The incident web-1's down opened is in the stream too, validated as an IncidentChange.
    let mut after = 0;
    let change = loop {
        let event = api.stream("/v1/events/stream", &[("Last-Event-ID", &after.to_string())]);
        if event["change"].is_string() {
            break event;
        }
        after = event["id"].as_i64().expect("an id");
    };
    assert_eq!(change["change"], "opened", "{change}");
    assert_eq!(change["incident"]["subject"], "web-1", "{change}");
    let template = "/v1/events/stream";
    let refused = api.call(Call::new("get", template, template).headers(&[("Last-Event-ID", "soon")]), 400);
    assert_eq!(refused.json()["code"], "bad_request");
}

fn check_endpoints(api: &Api) {
    let open = api.get("/v1/checks", "/v1/checks", 200).json();
    assert_eq!(open[0]["ping_path"], Value::Null, "no token, no ping path");
    let revealed = api.call(Call::new("get", "/v1/checks", "/v1/checks").token(TOKEN), 200).json();
    assert_eq!(revealed[0]["ping_path"], format!("/ping/{BACKUP_TOKEN}"));

    let nightly = r#"{"id": "nightly", "cron": "0 3 * * *", "grace": "30m", "labels": {"team": "ops"}}"#;
    let create = || Call::new("post", "/v1/checks", "/v1/checks");
    api.call(create().json(nightly), 401);
    api.call(create().token("wrong-token-0123456789").json(nightly), 403);
    let created = api.call(create().token(TOKEN).json(nightly), 201).json();
    assert_eq!(created["schedule"], json!({"cron": "0 3 * * *", "timezone": "UTC", "grace": "30m"}));
    assert_eq!(api.call(create().token(TOKEN).json(nightly), 409).json()["code"], "conflict");
    let unknown = api.call(create().token(TOKEN).json(r#"{"id": "x", "period": "1h", "bogus": 1}"#), 400);
    assert_eq!(unknown.json()["code"], "bad_request");
    let invalid =
        api.call(create().token(TOKEN).json(r#"{"id": "x", "period": "1h", "cron": "* * * * *"}"#), 400);
    assert_eq!(invalid.json()["code"], "invalid");
    // Over the 64 KiB body limit.
    let huge = format!(r#"{{"id": "x", "period": "1h", "description": "{}"}}"#, "x".repeat(70 * 1024));
    let too_big = api.call(create().token(TOKEN).json(&huge), 413);
    assert_eq!(too_big.json()["code"], "payload_too_large");

    let one = "/v1/checks/{id}";
    api.get(one, "/v1/checks/nightly", 200);
    api.get(one, "/v1/checks/missing", 404);
    let patch = |path: &str| Call::new("patch", one, path);
    api.call(patch("/v1/checks/nightly").json(r#"{"period": "2h"}"#), 401);
    api.call(patch("/v1/checks/missing").token(TOKEN).json(r#"{"period": "2h"}"#), 404);
    let taken = format!(r#"{{"token": "{BACKUP_TOKEN}"}}"#);
    api.call(patch("/v1/checks/nightly").token(TOKEN).json(&taken), 409);
    let patched = api.call(patch("/v1/checks/nightly").token(TOKEN).json(r#"{"period": "2h"}"#), 200).json();
    assert_eq!(patched["schedule"], json!({"period": "2h", "grace": "30m"}));

    let pause = "/v1/checks/{id}/pause";
    let resume = "/v1/checks/{id}/resume";
    api.call(Call::new("post", pause, "/v1/checks/nightly/pause"), 401);
    api.call(Call::new("post", pause, "/v1/checks/missing/pause").token(TOKEN), 404);
    let past = r#"{"for": "2h", "until": "2100-01-01T00:00:00Z"}"#;
    api.call(Call::new("post", pause, "/v1/checks/nightly/pause").token(TOKEN).json(past), 400);
    let paused = api.call(
        Call::new("post", pause, "/v1/checks/nightly/pause").token(TOKEN).json(r#"{"for": "2h"}"#),
        200,
    );
    assert!(paused.json()["paused_until"].is_string());
    api.call(Call::new("post", resume, "/v1/checks/nightly/resume"), 401);
    api.call(Call::new("post", resume, "/v1/checks/missing/resume").token(TOKEN), 404);
    api.call(Call::new("post", resume, "/v1/checks/nightly/resume").token(TOKEN), 200);

    let delete = |path: &str| Call::new("delete", one, path);
    api.call(delete("/v1/checks/nightly"), 401);
    assert!(api.call(delete("/v1/checks/nightly").token(TOKEN), 204).body.is_empty());
    api.call(delete("/v1/checks/nightly").token(TOKEN), 404);
}

fn ping_endpoints(api: &Api) {
    let plain = "/ping/{token}";
    let signal = "/ping/{token}/{signal}";
    let ok = api.call(Call::new("get", plain, &format!("/ping/{BACKUP_TOKEN}")), 200);
    assert_eq!(ok.body, "OK\n");
    assert_eq!(ok.header("x-rollcall-check-state").as_deref(), Some("up"));
    let start =
        Call::new("post", signal, &format!("/ping/{BACKUP_TOKEN}/start?rid=run-1")).body("text/plain", "go");
    api.call(start, 200);
    let long = "a log line longer than the body limit";
    let end =
        Call::new("post", signal, &format!("/ping/{BACKUP_TOKEN}/0?rid=run-1")).body("text/plain", long);
    let ended = api.call(end, 200);
    assert_eq!(ended.header("x-rollcall-body-truncated").as_deref(), Some("1"));
    let body = Call::new("post", plain, &format!("/ping/{BACKUP_TOKEN}")).body("application/json", "{}");
    api.call(body, 200);
    api.call(Call::new("head", plain, &format!("/ping/{BACKUP_TOKEN}")), 200);
    api.call(Call::new("get", signal, &format!("/ping/{BACKUP_TOKEN}/log")), 200);
    api.call(Call::new("head", signal, &format!("/ping/{BACKUP_TOKEN}/fail")), 200);
    api.call(Call::new("get", plain, "/ping/no-such-token-0123456789abc"), 404);
    api.call(Call::new("get", signal, &format!("/ping/{BACKUP_TOKEN}/256")), 400);
    // Healthchecks' slug form: `/ping/KEY/SLUG` has the shape of a token and a signal. It
    // shares the token's bucket (burst 10): these are the backup check's 8th to 10th pings.
    let key = "openapi-ping-key-0123456789";
    let slug = "/ping/{key}/{slug}/{signal}";
    api.call(Call::new("get", signal, &format!("/ping/{key}/backup")), 200);
    api.call(Call::new("get", signal, &format!("/ping/{key}/nobody")), 404);
    api.call(Call::new("post", slug, &format!("/ping/{key}/backup/log")).body("text/plain", "by slug"), 200);
    api.call(Call::new("head", slug, &format!("/ping/{key}/backup/fail?rid=run-2")), 200);
    api.call(Call::new("get", slug, "/ping/wrong-ping-key-0123456789/backup/fail"), 404);
    api.call(Call::new("get", slug, &format!("/ping/{key}/backup/abc")), 400);
    // Refused on its declared length before a byte of the body is read, and the connection
    // closed: a client still sending would see a broken pipe, so this one sends the head only.
    let oversized = Call::new("post", plain, &format!("/ping/{BACKUP_TOKEN}"));
    let refused = api.call_head_only(oversized, "Content-Length: 1048577", 413);
    assert_eq!(refused.header("connection").as_deref(), Some("close"));

    let backup = api.get("/v1/checks/{id}", "/v1/checks/backup", 200).json();
    let pings = backup["pings"].as_array().expect("pings");
    assert!(
        pings.iter().any(|ping| ping["duration_ms"].is_u64() && ping["body_truncated"] == true),
        "{backup:#}"
    );
    assert_eq!(backup["state"], "down", "the last signal was `fail`");

    // The flood check's burst is 10: the 11th ping at once is refused with a Retry-After.
    let flood = format!("/ping/{FLOOD_TOKEN}");
    for _ in 0..10 {
        api.call(Call::new("get", plain, &flood), 200);
    }
    let limited = api.call(Call::new("get", plain, &flood), 429);
    let after: u64 = limited.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!(after >= 1);
}

fn alert_endpoints(api: &Api) {
    let incidents = api.get("/v1/incidents", "/v1/incidents", 200).json();
    assert!(incidents.as_array().is_some_and(|all| all.iter().any(|i| i["subject"] == "web-1")));
    api.get("/v1/incidents", "/v1/incidents?open=true&limit=5", 200);
    api.get("/v1/incidents", "/v1/incidents?open=maybe", 400);
    let sinks = api.get("/v1/sinks", "/v1/sinks", 200).json();
    assert!(sinks[0]["last_error"].is_string(), "{sinks}");
    let outbox = api.get("/v1/outbox", "/v1/outbox", 200).json();
    assert!(!outbox.as_array().expect("an array").is_empty());
    api.get("/v1/outbox", "/v1/outbox?sink=nowhere&since=0&limit=1", 200);
    api.get("/v1/outbox", "/v1/outbox?limit=-1", 400);
}

fn silence_endpoints(api: &Api) {
    let all = "/v1/silences";
    let one = "/v1/silences/{id}";
    let body = r#"{"matchers": ["group=web"], "reason": "deploy", "for": "2h"}"#;
    assert_eq!(api.get(all, all, 200).json(), json!([]));
    api.call(Call::new("post", all, all).json(body), 401);
    api.call(Call::new("post", all, all).token("wrong-token-0123456789").json(body), 403);
    let bad =
        api.call(Call::new("post", all, all).token(TOKEN).json(r#"{"matchers": ["web"], "for": "2h"}"#), 400);
    assert!(bad.json()["message"].as_str().is_some_and(|m| m.contains("matchers")), "{bad:?}");
    let created = api.call(Call::new("post", all, all).token(TOKEN).json(body), 201).json();
    assert_eq!(api.get(all, all, 200).json().as_array().map(Vec::len), Some(1));
    let path = format!("/v1/silences/{}", created["id"]);
    api.call(Call::new("delete", one, &path), 401);
    api.call(Call::new("delete", one, &path).token("wrong-token-0123456789"), 403);
    api.call(Call::new("delete", one, &path).token(TOKEN), 204);
    api.call(Call::new("delete", one, &path).token(TOKEN), 404);
    assert_eq!(api.get(all, all, 200).json(), json!([]));
}

/// The API under test, with the document and the operations exercised so far.
struct Api {
    base: String,
    agent: ureq::Agent,
    doc: Value,
    hits: RefCell<BTreeSet<(String, String)>>,
}

/// One request: the documented operation it exercises (`method`, `template`) and what it
/// really sends.
struct Call<'a> {
    method: &'a str,
    template: &'a str,
    path: String,
    token: Option<&'a str>,
    body: Option<(&'a str, &'a str)>,
    headers: &'a [(&'a str, &'a str)],
}

#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl<'a> Call<'a> {
    fn new(method: &'a str, template: &'a str, path: &str) -> Call<'a> {
        Call { method, template, path: path.to_string(), token: None, body: None, headers: &[] }
    }

    fn token(self, token: &'a str) -> Call<'a> {
        Call { token: Some(token), ..self }
    }

    fn json(self, body: &'a str) -> Call<'a> {
        self.body("application/json", body)
    }

    fn body(self, content_type: &'a str, body: &'a str) -> Call<'a> {
        Call { body: Some((content_type, body)), ..self }
    }

    fn headers(self, headers: &'a [(&'a str, &'a str)]) -> Call<'a> {
        Call { headers, ..self }
    }
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("not JSON ({error}): {self:?}"))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.clone())
    }
}

impl Api {
    fn new(monitor: &Monitor) -> Api {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Api { base: format!("http://{}", monitor.http), agent, doc: document(), hits: RefCell::default() }
    }

    fn get(&self, template: &str, path: &str, status: u16) -> Reply {
        self.call(Call::new("get", template, path), status)
    }

    /// Sends `call`, expects `status`, and checks the reply against the document.
    fn call(&self, call: Call<'_>, status: u16) -> Reply {
        let reply = self.send(&call);
        let what = format!("{} {}", call.method.to_uppercase(), call.path);
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        self.conforms(&call, &reply, &what);
        reply
    }

    fn send(&self, call: &Call<'_>) -> Reply {
        let path = call.path.split('?').next().expect("split yields one part at least");
        assert!(
            matches_template(call.template, path),
            "{} is not an instance of {}",
            call.path,
            call.template
        );
        self.hits.borrow_mut().insert((call.method.to_string(), call.template.to_string()));
        let mut request = ureq::http::Request::builder()
            .method(call.method.to_uppercase().as_str())
            .uri(format!("{}{}", self.base, call.path));
        if let Some(token) = call.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        for (name, value) in call.headers {
            request = request.header(*name, *value);
        }
        let (content_type, body) = call.body.unwrap_or(("", ""));
        if !content_type.is_empty() {
            request = request.header("Content-Type", content_type);
        }
        let request = request.body(body.as_bytes().to_vec()).expect("a well-formed request");
        let mut response =
            self.agent.run(request).unwrap_or_else(|error| panic!("{} {}: {error}", call.method, call.path));
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or_default().to_string()))
            .collect::<Vec<_>>();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|value| value.to_str().expect("ASCII").to_string())
            .unwrap_or_default();
        let body = if call.method == "head" {
            String::new()
        } else {
            response.body_mut().with_config().limit(16 << 20).read_to_string().expect("a UTF-8 body")
        };
        Reply { status: response.status().as_u16(), content_type, headers, body }
    }

    /// Sends only the head of `call` over a raw connection, with `extra` as one more header
    /// line, reads the answer to the end (the server closes), expects `status` and checks
    /// the reply against the document.
    fn call_head_only(&self, call: Call<'_>, extra: &str, status: u16) -> Reply {
        use std::io::{Read, Write};
        self.hits.borrow_mut().insert((call.method.to_string(), call.template.to_string()));
        let address = self.base.strip_prefix("http://").expect("an http base");
        let mut stream = std::net::TcpStream::connect(address).expect("connect to the monitor");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
        let head = format!(
            "{} {} HTTP/1.1\r\nHost: rollcall\r\n{extra}\r\n\r\n",
            call.method.to_uppercase(),
            call.path
        );
        stream.write_all(head.as_bytes()).expect("send the head");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).expect("an answer, then the end of the connection");
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not HTTP: {raw:?}"));
        let mut lines = head.lines();
        let status_line = lines.next().unwrap_or_default();
        let code = status_line.split(' ').nth(1).and_then(|code| code.parse().ok());
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
            .collect();
        let content_type = headers
            .iter()
            .find(|(name, _)| name == "content-type")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let reply = Reply { status: code.unwrap_or(0), content_type, headers, body: body.to_string() };
        let what = format!("{} {} ({extra})", call.method.to_uppercase(), call.path);
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        self.conforms(&call, &reply, &what);
        reply
    }

    /// The reply is one the document allows for this operation and status.
    fn conforms(&self, call: &Call<'_>, reply: &Reply, what: &str) {
        let operation = &self.doc["paths"][call.template][call.method];
        assert!(operation.is_object(), "{what}: {} {} is not documented", call.method, call.template);
        let responses = &operation["responses"];
        let documented = responses.get(reply.status.to_string()).or_else(|| responses.get("default"));
        let documented = resolve(
            &self.doc,
            documented.unwrap_or_else(|| panic!("{what}: status {} not documented", reply.status)),
        );
        let Some(content) = documented["content"].as_object() else {
            assert!(reply.body.is_empty(), "{what}: documented without a body, got {reply:?}");
            return;
        };
        let (media, entry) = content
            .iter()
            .find(|(media, _)| media_matches(media, &reply.content_type))
            .unwrap_or_else(|| panic!("{what}: {:?} is not among {:?}", reply.content_type, content.keys()));
        if call.method == "head" || !media.starts_with("application/json") {
            return;
        }
        let body = reply.json();
        let errors: Vec<String> = validator(&self.doc, &entry["schema"])
            .iter_errors(&body)
            .map(|error| format!("{error} at {}", error.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what} ({}): the body does not match the document: {errors:#?}\n{body:#}",
            reply.status
        );
    }

    /// Opens the event stream at `path`, checks the response against the document, and
    /// returns the first event's data (checked against the `Event` schema).
    fn stream(&self, path: &str, headers: &[(&str, &str)]) -> Value {
        let template = "/v1/events/stream";
        assert!(path.starts_with(template));
        self.hits.borrow_mut().insert(("get".into(), template.into()));
        let mut request = self.agent.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.call().unwrap_or_else(|error| panic!("GET {path}: {error}"));
        assert_eq!(response.status(), 200);
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        let documented = &self.doc["paths"][template]["get"]["responses"]["200"]["content"];
        assert!(
            documented.as_object().expect("content").keys().any(|media| media_matches(media, content_type)),
            "GET {path}: content type {content_type}"
        );
        let mut lines = BufReader::new(response.into_body().into_reader()).lines();
        let (mut id, mut event) = (None, None);
        loop {
            let line = lines.next().expect("the stream stays open").expect("the stream reads");
            if let Some(value) = line.strip_prefix("id:") {
                id = Some(value.trim().to_string());
            } else if let Some(value) = line.strip_prefix("event:") {
                event = Some(value.trim().to_string());
            } else if let Some(data) = line.strip_prefix("data:") {
                let data: Value = serde_json::from_str(data.trim()).expect("data is JSON");
                let schema = match event.as_deref() {
                    Some("transition") => json!({ "$ref": "#/components/schemas/Event" }),
                    Some("incident") => json!({ "$ref": "#/components/schemas/IncidentChange" }),
                    other => panic!("GET {path}: event name {other:?}"),
                };
                assert_eq!(id, Some(data["id"].to_string()), "GET {path}: the SSE id is the event's id");
                let errors: Vec<String> =
                    validator(&self.doc, &schema).iter_errors(&data).map(|error| error.to_string()).collect();
                assert!(errors.is_empty(), "GET {path}: {errors:?}\n{data:#}");
                return data;
            }
        }
    }
}

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON")
}

/// Every (method, path template) the document describes.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(template, item)| {
            let methods = item.as_object().expect("a path item").keys();
            methods.filter(|m| METHODS.contains(&m.as_str())).map(|m| (m.clone(), template.clone()))
        })
        .collect()
}

/// A validator for `schema`, with the document's components beside it so that
/// `#/components/schemas/...` references resolve; formats (`date-time`) are checked.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|error| panic!("schema {schema} does not compile: {error}"))
}

/// Follows a `$ref` to a response or parameter object.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => doc.pointer(&reference[1..]).unwrap_or_else(|| panic!("$ref {reference}")),
        None => value,
    }
}

fn collect_refs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                into.push(reference.clone());
            }
            map.values().for_each(|v| collect_refs(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, into)),
        _ => {}
    }
}

fn matches_template(template: &str, path: &str) -> bool {
    let (template, path): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    template.len() == path.len()
        && template.iter().zip(&path).all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

/// A documented media type with parameters must match exactly; one without parameters
/// matches on the type alone (`text/plain` covers `text/plain; charset=utf-8`).
fn media_matches(documented: &str, actual: &str) -> bool {
    let normalize =
        |media: &str| media.split(';').map(str::trim).collect::<Vec<_>>().join("; ").to_lowercase();
    if documented.contains(';') {
        normalize(documented) == normalize(actual)
    } else {
        normalize(actual).split(';').next() == Some(documented)
    }
}

//! Alerting end to end: real monitors, a real webhook receiver (`support/receiver.rs`), fleets
//! of nodes made of crafted heartbeats, and the store read back with SQLite afterwards.
//!
//! Each test has its own sandbox, ports and receiver. Nothing sleeps to let things settle:
//! every wait is for a condition, with [`PATIENCE`]. The one fixed wait is the downtime in
//! [`a_restart_after_long_downtime_pages_nobody_still_sending`], which is the fault itself.

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use nix::sys::signal::Signal;
use receiver::Receiver;
use rollcall_core::wire::{Kind, Outgoing, encode};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{Monitor, PATIENT, QUICK, Sandbox, history};

/// How long any condition may take here. Generous: a passing test never waits this long.
const PATIENCE: Duration = Duration::from_secs(30);

/// How often the crafted nodes send.
const INTERVAL: Duration = Duration::from_millis(200);

/// The API token of every monitor in this file (at least 16 characters).
const TOKEN: &str = "0123456789abcdef0123";

/// A monitor config with one webhook sink `hook` pointing at `receiver`; `sink_extra` is added
/// to the sink's table (e.g. a `secret`).
fn config(detector: &str, group_wait: &str, receiver: &Receiver, sink_extra: &str) -> String {
    format!(
        r#"{detector}
[alerts]
group_wait = "{group_wait}"

[[sink]]
name = "hook"
kind = "webhook"
url = "{url}"
timeout = "2s"
{sink_extra}

[api]
token = "{TOKEN}"
"#,
        url = receiver.url()
    )
}

#[test]
fn alerts_survive_a_monitor_crash_mid_burst() {
    const NODES: usize = 300;
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    // 20 ms per request: the 300 firing alerts take at least 6 s to deliver, one after the
    // other, which leaves a wide window to crash the monitor in.
    receiver.set_delay(Duration::from_millis(20));
    let config = config(QUICK, "0s", &receiver, "");
    let monitor = Monitor::start(&sandbox, &config);
    let ids: Vec<String> = (0..NODES).map(|i| format!("burst-{i:03}")).collect();
    let fleet = Fleet::start(&sandbox, monitor.udp, &ids, &[]);
    wait_all_up(&monitor, &ids);

    drop(fleet); // every node falls silent at once
    monitor.wait_until(PATIENCE, "the receiver has some of the firing alerts", || {
        let seen = firing_keys_by_node(&receiver).len();
        if seen >= 20 { Ok(()) } else { Err(format!("{seen} nodes' firing alerts")) }
    });
    monitor.crash();
    let at_crash = firing_keys_by_node(&receiver).len();
    assert!(
        at_crash < NODES,
        "every firing alert was delivered before the crash, so the crash tested nothing: slow the receiver"
    );
    let (queued, delivered) = outbox_counts(&sandbox);
    eprintln!(
        "at the crash: the receiver had {at_crash} of {NODES} nodes' alerts; the outbox held {queued} rows, \
         {delivered} marked delivered"
    );

    let monitor = Monitor::start(&sandbox, &config);
    monitor.wait_until(PATIENCE, "every node's firing alert arrived", || {
        let seen = firing_keys_by_node(&receiver).len();
        if seen == NODES { Ok(()) } else { Err(format!("{seen} of {NODES} nodes' firing alerts")) }
    });
    monitor.wait_until(PATIENCE, "the outbox is drained", || {
        let hook = sink_health(&monitor);
        if hook["pending"] == 0 { Ok(()) } else { Err(hook.to_string()) }
    });

    let by_node = firing_keys_by_node(&receiver);
    let paged_twice: Vec<_> = by_node.iter().filter(|(_, keys)| keys.len() != 1).collect();
    assert!(
        paged_twice.is_empty(),
        "nodes with more than one firing incident (not duplicates: new pages): {paged_twice:?}"
    );
    let alerts = receiver.alerts();
    let kinds: BTreeSet<&str> = alerts.iter().map(|alert| alert["kind"].as_str().unwrap_or("?")).collect();
    assert_eq!(kinds, BTreeSet::from(["firing"]), "only firing alerts: no node came back");
    let counts = receiver.counts();
    assert_eq!(counts.len(), NODES, "one key per node: {counts:?}");
    let duplicates: usize = counts.values().map(|count| count - 1).sum();
    let duplicated: Vec<_> = counts.iter().filter(|(_, count)| **count > 1).collect();
    eprintln!("{} deliveries of {NODES} keys: {duplicates} duplicates {duplicated:?}", alerts.len());

    // Every alert the receiver got, duplicates included, is backed by the store: the
    // transition that caused it, and its outbox row, delivered, holding the same document.
    monitor.stop(Signal::SIGTERM);
    let db = open_store(&sandbox);
    for alert in &alerts {
        let node = alert["subject"]["id"].as_str().expect("a node alert names its node");
        let at = alert["transition"]["at"].as_str().expect("a firing alert of a node has its transition");
        let downs: Vec<i64> = db
            .prepare("SELECT at_ms FROM transitions WHERE node = ?1 AND to_state = 'down'")
            .and_then(|mut statement| {
                statement.query_map([node], |row| row.get(0))?.collect::<Result<Vec<i64>, _>>()
            })
            .expect("read transitions");
        assert!(
            downs.iter().any(|&ms| rfc3339_ms(ms) == at),
            "no stored transition of {node} to down at {at} (stored downs at {:?}) for {alert}",
            downs.iter().map(|&ms| rfc3339_ms(ms)).collect::<Vec<_>>()
        );
        let key = alert["idempotency_key"].as_str().expect("a key");
        let (payload, delivered_at): (String, Option<i64>) = db
            .query_row(
                "SELECT payload, delivered_at_ms FROM outbox WHERE sink = 'hook' AND idempotency_key = ?1",
                [key],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap_or_else(|error| panic!("no outbox row for {key}: {error}"));
        assert!(delivered_at.is_some(), "{key} arrived but its outbox row is not marked delivered");
        assert_eq!(&parse(&payload), alert, "the webhook body is the document in the outbox");
    }
}

#[test]
fn queued_alerts_arrive_in_order_when_the_receiver_comes_back() {
    let sandbox = Sandbox::new();
    let mut receiver = Receiver::start();
    receiver.stop(); // nothing listens: connections are refused
    let monitor = Monitor::start(&sandbox, &config(QUICK, "0s", &receiver, ""));
    let ids: Vec<String> = ["queue-a", "queue-b", "queue-c", "queue-d"].map(String::from).to_vec();
    let fleet = Fleet::start(&sandbox, monitor.udp, &ids, &[]);
    wait_all_up(&monitor, &ids);

    fleet.silence(&ids);
    let refused = monitor.wait_until(PATIENCE, "two attempts failed on a refused connection", || {
        let hook = sink_health(&monitor);
        if hook["consecutive_failures"].as_u64() >= Some(2) { Ok(hook) } else { Err(hook.to_string()) }
    });
    let error = refused["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cannot talk to the receiver"),
        "a refused connection is reported as such: {refused}"
    );
    // The receiver is back on its port, but broken: every request gets a 503.
    receiver.set_status(503);
    receiver.restart();
    // Two nodes come back while the sink is failing: their resolutions queue behind the pages.
    let back = &ids[..2];
    fleet.speak(back);
    monitor.wait_until(PATIENCE, "4 pages and 2 resolutions are queued", || {
        let rows = outbox(&monitor);
        if rows.len() == 6 { Ok(()) } else { Err(format!("{rows:?}")) }
    });
    let failing = monitor.wait_until(PATIENCE, "the sink is reported failing", || {
        let hook = sink_health(&monitor);
        if hook["failing"] == true { Ok(hook) } else { Err(hook.to_string()) }
    });
    assert!(failing["consecutive_failures"].as_u64() >= Some(5), "{failing}");
    assert_eq!(failing["delivered"], 0, "{failing}");
    assert_eq!(failing["pending"], 6, "{failing}");
    let error = failing["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("503"), "the last error names the receiver's answer: {failing}");
    let metrics = monitor.metrics();
    assert_eq!(metrics.get(r#"rollcall_outbox_pending{sink="hook"}"#), 6.0);
    assert_eq!(metrics.get(r#"rollcall_sink_failing{sink="hook"}"#), 1.0);
    assert!(metrics.get(r#"rollcall_alert_deliveries_total{sink="hook",result="failed"}"#) >= 5.0);
    assert_eq!(metrics.get(r#"rollcall_alert_deliveries_total{sink="hook",result="delivered"}"#), 0.0);
    // Order is held: every attempt so far was at the oldest alert, none skipped ahead.
    let queued = outbox(&monitor);
    let first_key = queued[0]["idempotency_key"].as_str().expect("a key").to_string();
    let attempts = receiver.requests();
    assert!(!attempts.is_empty(), "the receiver saw the 503 attempts");
    for attempt in &attempts {
        assert_eq!(attempt.status, 503);
        assert_eq!(attempt.key(), Some(first_key.as_str()), "a failing sink holds its later alerts");
    }

    receiver.set_status(200);
    // The next attempt comes after the current back-off (16 s after the fifth failure).
    receiver.wait_for(6, PATIENCE);
    let order: Vec<String> = outbox(&monitor)
        .iter()
        .map(|row| row["idempotency_key"].as_str().expect("a key").to_string())
        .collect();
    assert_eq!(receiver.keys(), order, "alerts arrive in the order they were queued");
    let alerts = receiver.unique_alerts();
    for id in &ids {
        let kinds: Vec<&str> = alerts
            .iter()
            .filter(|alert| alert["subject"]["id"] == id.as_str())
            .map(|alert| alert["kind"].as_str().unwrap_or("?"))
            .collect();
        let expected: &[&str] = if back.contains(id) { &["firing", "resolved"] } else { &["firing"] };
        assert_eq!(kinds, expected, "{id}'s alerts in order of first arrival");
    }
    monitor.wait_until(PATIENCE, "the sink is healthy and its queue empty", || {
        let hook = sink_health(&monitor);
        let healthy = hook["pending"] == 0 && hook["failing"] == false && hook["consecutive_failures"] == 0;
        if healthy && hook["delivered"].as_u64() >= Some(6) { Ok(()) } else { Err(hook.to_string()) }
    });
    let metrics = monitor.metrics();
    assert_eq!(metrics.get(r#"rollcall_outbox_pending{sink="hook"}"#), 0.0);
    assert_eq!(metrics.get(r#"rollcall_sink_failing{sink="hook"}"#), 0.0);
    assert_eq!(metrics.get(r#"rollcall_notifications_total{kind="firing"}"#), 4.0);
    assert_eq!(metrics.get(r#"rollcall_notifications_total{kind="resolved"}"#), 2.0);
}

#[test]
fn a_restart_after_long_downtime_pages_nobody_still_sending() {
    // Several times the ~2.7 s after which the patient detector declares a silent node down:
    // when the monitor comes back, every node's last heartbeat it knows of is long past any
    // deadline.
    const DOWNTIME: Duration = Duration::from_secs(10);
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let config = config(PATIENT, "0s", &receiver, "");
    let monitor = Monitor::start(&sandbox, &config);
    let udp = monitor.udp;
    let steady = ["steady-1", "steady-2", "steady-3"];
    let ids: Vec<String> = steady.iter().copied().chain(["quitter"]).map(String::from).collect();
    let fleet = Fleet::start(&sandbox, udp, &ids, &[]);
    wait_all_up(&monitor, &ids);
    for id in &ids {
        monitor.wait_for_events(id, 1); // stored, so the restarted monitor knows it
    }

    monitor.crash();
    fleet.silence(&["quitter".to_string()]);
    // The fault: the monitor stays down while the steady nodes go on sending to its port and
    // the quitter stops. This sleep is the downtime being injected, not a wait for something
    // to settle; measured so that a slow machine cannot make it shorter than intended.
    let crashed = Instant::now();
    std::thread::sleep(DOWNTIME);
    let restarted_at = SystemTime::now();
    let monitor = Monitor::start_on(&sandbox, &config, udp);
    let downtime = crashed.elapsed();
    assert!(downtime >= DOWNTIME, "the monitor was down for {downtime:?}");
    eprintln!("the monitor was down for {downtime:?}");

    monitor.wait_for_state("quitter", "down");
    monitor.wait_until(PATIENCE, "the quitter's page arrived", || {
        let keys = receiver.keys();
        if keys.is_empty() { Err("nothing yet".into()) } else { Ok(keys) }
    });
    let quitter = monitor.wait_for_events("quitter", 3);
    assert_eq!(
        history(&quitter),
        ["new -> up (first-heartbeat)", "up -> suspect (phi)", "suspect -> down (phi)"],
        "{quitter:#?}"
    );
    // It was given a fresh grace period from the restart, not judged by its silence before.
    let down_at = parse_time(&quitter[2].at);
    assert!(down_at > restarted_at, "the quitter went down at {}, before the restart", quitter[2].at);

    // The steady nodes were judged the same way and kept sending: never suspected, never paged.
    for id in steady {
        let node = monitor.node(id).expect("restored");
        assert_eq!(node.state, "up", "{node:?}");
        assert_eq!(history(&monitor.events(id)), ["new -> up (first-heartbeat)"], "{id}");
    }
    let alerts = receiver.unique_alerts();
    assert_eq!(alerts.len(), 1, "one page, for the quitter: {alerts:#?}");
    assert_eq!(alerts[0]["kind"], "firing");
    assert_eq!(alerts[0]["subject"], serde_json::json!({"kind": "node", "id": "quitter"}));
    assert_eq!(outbox(&monitor).len(), 1, "nothing else is queued either");
    assert_eq!(monitor.metrics().get(r#"rollcall_notifications_total{kind="firing"}"#), 1.0);
}

#[test]
fn a_mass_failure_pages_once() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let monitor = Monitor::start(&sandbox, &config(QUICK, "2s", &receiver, ""));
    let ids: Vec<String> = (0..10).map(|i| format!("mass-{i}")).collect();
    let fleet = Fleet::start(&sandbox, monitor.udp, &ids, &[]);
    wait_all_up(&monitor, &ids);

    let (victims, survivors) = ids.split_at(5);
    fleet.silence(victims);
    receiver.wait_for(1, PATIENCE);
    for id in victims {
        monitor.wait_for_state(id, "down");
    }
    let firing = receiver.unique_alerts().remove(0);
    assert_eq!(firing["kind"], "firing", "{firing}");
    assert_eq!(firing["subject"], serde_json::json!({"kind": "group", "id": "correlated-failure"}));
    assert_eq!(sorted(&firing["nodes"]), victims, "the group lists the nodes that went down: {firing}");
    assert_eq!(firing["transition"], Value::Null, "{firing}");
    let (status, open) = monitor.get_json("/v1/incidents?open=true");
    assert_eq!(status, 200);
    assert_eq!(open.as_array().map(Vec::len), Some(1), "one open incident: {open}");

    fleet.speak(victims);
    receiver.wait_for(2, PATIENCE);
    let alerts = receiver.unique_alerts();
    let resolved = &alerts[1];
    assert_eq!(resolved["kind"], "resolved", "{resolved}");
    assert_eq!(resolved["incident"]["id"], firing["incident"]["id"], "{resolved}");
    assert_eq!(resolved["subject"], firing["subject"], "{resolved}");
    assert!(resolved["incident"]["resolved_at"].is_string(), "{resolved}");
    for id in survivors {
        assert_eq!(monitor.node(id).expect("known").state, "up", "{id} never went down");
    }
    assert_eq!(outbox(&monitor).len(), 2, "one page and one resolution, nothing else queued");
    let metrics = monitor.metrics();
    assert_eq!(metrics.get(r#"rollcall_notifications_total{kind="firing"}"#), 1.0);
    assert_eq!(metrics.get(r#"rollcall_notifications_total{kind="resolved"}"#), 1.0);
    assert_eq!(metrics.get("rollcall_correlated_failures_total"), 1.0);
    assert_eq!(metrics.get("rollcall_incidents_open"), 0.0);
    // The resolution names the nodes that recovered, as the page named those that failed, and
    // the stored incident still says which nodes it was about.
    let (status, incidents) = monitor.get_json("/v1/incidents");
    assert_eq!(status, 200, "{incidents}");
    let stored = sorted(&incidents[0]["members"]);
    assert!(
        sorted(&resolved["nodes"]) == victims && stored == victims,
        "a group's resolution lists its nodes {victims:?}: the alert lists {} ({}), the stored incident {stored:?}",
        resolved["nodes"],
        resolved["summary"]
    );
}

#[test]
fn paused_nodes_do_not_page() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let monitor = Monitor::start(&sandbox, &config(QUICK, "0s", &receiver, ""));
    let ids: Vec<String> = ["maint", "control"].map(String::from).to_vec();
    let fleet = Fleet::start(&sandbox, monitor.udp, &ids, &[]);
    wait_all_up(&monitor, &ids);
    monitor.wait_for_events("maint", 1);

    let pause = "/v1/nodes/maint/pause";
    let body = Some(r#"{"for": "2h"}"#);
    let (status, answer) = monitor.post(pause, None, body);
    assert_eq!((status, parse(&answer)["code"].clone()), (401, "unauthorized".into()), "{answer}");
    let (status, answer) = monitor.post(pause, Some("not-the-token-at-all"), body);
    assert_eq!((status, parse(&answer)["code"].clone()), (403, "forbidden".into()), "{answer}");
    assert_eq!(monitor.node("maint").expect("known").state, "up", "a refused pause changes nothing");
    assert_eq!(history(&monitor.events("maint")), ["new -> up (first-heartbeat)"]);
    let (status, answer) = monitor.post(pause, Some(TOKEN), body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(parse(&answer)["state"], "paused", "{answer}");

    // The control node falls silent at the same moment and is not paused: once it has paged,
    // the detector has had all the time it needs to judge the paused node too.
    fleet.silence(&ids);
    monitor.wait_until(PATIENCE, "the control node's page arrived", || {
        let pages = pages_for(&receiver, "control");
        if pages.is_empty() { Err(format!("{:?}", receiver.keys())) } else { Ok(()) }
    });
    assert_eq!(monitor.node("maint").expect("known").state, "paused");
    assert_eq!(pages_for(&receiver, "maint"), Vec::<Value>::new(), "a paused node pages nobody");
    assert!(outbox(&monitor).iter().all(|row| row["subject"] != "maint"), "nothing queued for it either");

    let resume = "/v1/nodes/maint/resume";
    assert_eq!(monitor.post(resume, None, None).0, 401);
    assert_eq!(monitor.post(resume, Some("not-the-token-at-all"), None).0, 403);
    assert_eq!(monitor.node("maint").expect("known").state, "paused", "a refused resume changes nothing");
    let resumed_at = SystemTime::now();
    let (status, answer) = monitor.post(resume, Some(TOKEN), None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(parse(&answer)["state"], "up", "{answer}");

    monitor.wait_until(PATIENCE, "the resumed node's page arrived", || {
        let pages = pages_for(&receiver, "maint");
        if pages.is_empty() { Err(format!("{:?}", receiver.keys())) } else { Ok(()) }
    });
    let events = monitor.wait_for_events("maint", 5);
    assert_eq!(
        history(&events),
        [
            "new -> up (first-heartbeat)",
            "up -> paused (pause)",
            "paused -> up (resume)",
            "up -> suspect (phi)",
            "suspect -> down (phi)",
        ],
    );
    // A fresh grace period from the resume: silent since before the pause, it would be overdue
    // at once if its silence were counted from its last heartbeat.
    let down_at = parse_time(&events[4].at);
    let grace = down_at.duration_since(resumed_at).unwrap_or_default();
    assert!(grace >= Duration::from_millis(500), "down {grace:?} after the resume: {events:#?}");
    let pages = pages_for(&receiver, "maint");
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert_eq!(pages[0]["kind"], "firing");
}

/// A silence holds the pages of the nodes it matches (their transitions are still recorded);
/// what recovered under it is never paged; what is still down when it ends is paged then,
/// and resolves normally. Silences are written through the API (token required) or the CLI,
/// and survive a restart.
#[test]
fn silences_hold_pages_until_they_end() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let config = config(QUICK, "0s", &receiver, "");
    let monitor = Monitor::start(&sandbox, &config);
    let web: Vec<String> = ["web-1", "web-2"].map(String::from).to_vec();
    let db: Vec<String> = vec!["db-1".into()];
    let web_fleet = Fleet::start(&sandbox, monitor.udp, &web, &[("group", "web")]);
    let db_fleet = Fleet::start(&sandbox, monitor.udp, &db, &[("group", "db")]);
    wait_all_up(&monitor, &[web.clone(), db.clone()].concat());

    // Writes need the token, and bad bodies are refused naming the field; nothing changes.
    let body = r#"{"matchers": ["group=web"], "reason": "deploy", "for": "1h"}"#;
    assert_eq!(monitor.post("/v1/silences", None, Some(body)).0, 401);
    assert_eq!(monitor.post("/v1/silences", Some("not-the-token-at-all"), Some(body)).0, 403);
    for (bad, field) in [
        (r#"{"matchers": [], "for": "1h"}"#, "matchers"),
        (r#"{"matchers": ["group"], "for": "1h"}"#, "matchers"),
        (r#"{"matchers": ["group=web"]}"#, "for"),
        (r#"{"matchers": ["group=web"], "for": "soon"}"#, "for"),
        (r#"{"matchers": ["group=web"], "until": "2001-01-01T00:00:00Z"}"#, "until"),
    ] {
        let (status, answer) = monitor.post("/v1/silences", Some(TOKEN), Some(bad));
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(parse(&answer)["message"].as_str().is_some_and(|m| m.contains(field)), "{bad}: {answer}");
    }
    assert_eq!(monitor.get_json("/v1/silences"), (200, serde_json::json!([])));
    let (status, answer) = monitor.post("/v1/silences", Some(TOKEN), Some(body));
    assert_eq!(status, 201, "{answer}");
    let silence = parse(&answer);
    assert_eq!(silence["matchers"], serde_json::json!(["group=web"]));
    let id = silence["id"].as_u64().expect("a numeric id");

    // web-1 stays down; web-2 goes down and comes back; db-1 (not silenced) goes down.
    web_fleet.silence(&web);
    db_fleet.silence(&db);
    monitor.wait_until(PATIENCE, "db-1's page arrived", || {
        if pages_for(&receiver, "db-1").is_empty() { Err(format!("{:?}", receiver.keys())) } else { Ok(()) }
    });
    monitor.wait_for_state("web-1", "down");
    monitor.wait_for_state("web-2", "down");
    web_fleet.speak(&web[1..]);
    monitor.wait_for_state("web-2", "up");
    assert_eq!(history(&monitor.events("web-1"))[1..], ["up -> suspect (phi)", "suspect -> down (phi)"]);
    let (_, open) = monitor.get_json("/v1/incidents?open=true");
    let held = open.as_array().and_then(|list| list.iter().find(|i| i["subject"] == "web-1")).cloned();
    assert_eq!(held.map(|i| i["silenced_by"].clone()), Some(id.into()), "{open}");
    // Everything web-2 had to say is settled (its incident resolved) before the silence ends.
    monitor.wait_until(PATIENCE, "web-2's incident resolved", || {
        let (_, open) = monitor.get_json("/v1/incidents?open=true");
        let still = open.as_array().is_some_and(|list| list.iter().any(|i| i["subject"] == "web-2"));
        if still { Err(open.to_string()) } else { Ok(()) }
    });
    assert!(pages_for(&receiver, "web-1").is_empty() && pages_for(&receiver, "web-2").is_empty());
    assert!(outbox(&monitor).iter().all(|row| row["subject"] != "web-1" && row["subject"] != "web-2"));

    // Ending the silence (a refused delete changes nothing) pages for what is still down.
    let path = format!("/v1/silences/{id}");
    assert_eq!(delete(&monitor, &path, None), 401);
    assert_eq!(monitor.get_json("/v1/silences").1.as_array().map(Vec::len), Some(1));
    assert_eq!(delete(&monitor, &path, Some(TOKEN)), 204);
    assert_eq!(delete(&monitor, &path, Some(TOKEN)), 404);
    monitor.wait_until(PATIENCE, "web-1's page arrived once the silence ended", || {
        let pages = pages_for(&receiver, "web-1");
        if pages.is_empty() { Err(format!("{:?}", receiver.keys())) } else { Ok(pages) }
    });
    web_fleet.speak(&web[..1]);
    let pages = monitor.wait_until(PATIENCE, "web-1's resolution", || {
        let pages = pages_for(&receiver, "web-1");
        if pages.len() == 2 { Ok(pages) } else { Err(format!("{pages:?}")) }
    });
    let kinds: Vec<&str> = pages.iter().map(|p| p["kind"].as_str().unwrap_or("?")).collect();
    assert_eq!(kinds, ["firing", "resolved"]);
    assert!(pages[0]["transition"]["to"] == "down", "the owed firing names its transition: {:#?}", pages[0]);
    assert!(pages_for(&receiver, "web-2").is_empty(), "what recovered under the silence is never paged");

    // The CLI adds, lists and removes silences; they survive a restart.
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(support::bin())
            .args(args)
            .args(["--api", &format!("http://{}", monitor.http), "--token", TOKEN])
            .output()
            .expect("runs");
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let added =
        parse(&cli(&["silence", "add", "node=db-1", "--for", "2h", "--reason", "disk swap", "--json"]));
    assert_eq!(added["reason"], "disk swap");
    let second = parse(&cli(&["silence", "add", "check=backup", "--for", "1h", "--json"]));
    cli(&["silence", "rm", &second["id"].to_string()]);
    assert!(cli(&["silence", "list"]).contains("node=db-1"));
    assert!(monitor.stop(Signal::SIGTERM).success());
    let monitor = Monitor::start(&sandbox, &config);
    let (_, listed) = monitor.get_json("/v1/silences");
    let ids: Vec<&Value> = listed.as_array().into_iter().flatten().map(|s| &s["id"]).collect();
    assert_eq!(ids, [&added["id"]], "{listed}");
    drop((web_fleet, db_fleet));
}

/// `DELETE path`, with the token when given: the status.
fn delete(monitor: &Monitor, path: &str, token: Option<&str>) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut request = agent.delete(&format!("http://{}{path}", monitor.http));
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    request.call().expect("the monitor answers").status().as_u16()
}

#[test]
fn webhook_signature_verifies() {
    const SECRET: &str = "a secret shared with the receiver";
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let sink_extra = format!("secret = \"{SECRET}\"");
    let monitor = Monitor::start(&sandbox, &config(QUICK, "0s", &receiver, &sink_extra));
    let ids = vec!["signed".to_string()];
    let fleet = Fleet::start(&sandbox, monitor.udp, &ids, &[("role", "web"), ("dc", "eu-1")]);
    wait_all_up(&monitor, &ids);

    fleet.silence(&ids);
    receiver.wait_for(1, PATIENCE);
    fleet.speak(&ids);
    receiver.wait_for(2, PATIENCE);

    let requests = receiver.deliveries();
    for request in &requests {
        let signature = request.headers.get("x-rollcall-signature").expect("signed, since a secret is set");
        assert_eq!(
            *signature,
            format!("sha256={}", hmac_hex(SECRET.as_bytes(), &request.body)),
            "{request:?}"
        );
        assert_ne!(*signature, format!("sha256={}", hmac_hex(b"another secret", &request.body)));
        let mut tampered = request.body.clone();
        tampered[0] ^= 1;
        assert_ne!(*signature, format!("sha256={}", hmac_hex(SECRET.as_bytes(), &tampered)));
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hook");
        assert_eq!(request.headers.get("content-type").map(String::as_str), Some("application/json"));
        assert!(request.headers.get("user-agent").is_some_and(|agent| agent.starts_with("rollcall/")));
        assert_eq!(request.key(), request.json["idempotency_key"].as_str(), "{request:?}");
    }
    let alerts = receiver.unique_alerts();
    let firing = &alerts[0];
    assert_eq!(firing["version"], 1);
    assert_eq!(firing["kind"], "firing");
    assert_eq!(firing["severity"], "critical");
    assert_eq!(firing["subject"], serde_json::json!({"kind": "node", "id": "signed"}));
    assert_eq!(firing["nodes"], serde_json::json!(["signed"]));
    assert_eq!(firing["labels"], serde_json::json!({"role": "web", "dc": "eu-1"}));
    assert_eq!(firing["incident"]["resolved_at"], Value::Null);
    let transition = &firing["transition"];
    assert_eq!(transition["from"], "suspect", "{firing}");
    assert_eq!(transition["to"], "down", "{firing}");
    assert_eq!(transition["reason"], "phi", "{firing}");
    assert_eq!(firing["idempotency_key"], format!("rollcall-{}-0", firing["incident"]["id"]));
    let resolved = &alerts[1];
    assert_eq!(resolved["kind"], "resolved");
    assert_eq!(resolved["incident"]["id"], firing["incident"]["id"]);
    assert_eq!(resolved["idempotency_key"], format!("rollcall-{}-1", firing["incident"]["id"]));
    assert!(resolved["incident"]["resolved_at"].is_string(), "{resolved}");
    assert_eq!(resolved["transition"]["to"], "up", "{resolved}");
}

// ---- helpers ----

/// Crafted heartbeats for many nodes from one UDP socket, every [`INTERVAL`], on a thread of
/// its own: a fleet far cheaper than one agent process per node. Each node keeps one
/// generation and its sequence increases every round, so every datagram is well-formed and
/// fresh. Stops sending when dropped.
struct Fleet {
    state: Arc<FleetState>,
    thread: Option<JoinHandle<()>>,
}

struct FleetState {
    /// Nodes that do not send.
    silent: Mutex<BTreeSet<String>>,
    stop: AtomicBool,
}

impl Fleet {
    fn start(sandbox: &Sandbox, target: SocketAddr, ids: &[String], labels: &[(&str, &str)]) -> Fleet {
        let ring = sandbox.key_ring();
        let ids = ids.to_vec();
        let labels: Vec<(String, String)> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let state =
            Arc::new(FleetState { silent: Mutex::new(BTreeSet::new()), stop: AtomicBool::new(false) });
        let shared = state.clone();
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the fleet's socket");
        let thread = std::thread::spawn(move || {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut datagram = Vec::new();
            let mut next = Instant::now();
            let mut sequence = 0u64;
            while !shared.stop.load(Ordering::SeqCst) {
                sequence += 1;
                let silent = shared.silent.lock().expect("not poisoned").clone();
                for id in ids.iter().filter(|id| !silent.contains(*id)) {
                    let message = Outgoing {
                        follows_advice: false,
                        kind: Kind::Heartbeat,
                        node: id,
                        generation: 1,
                        sequence,
                        interval_ms: INTERVAL.as_millis() as u32,
                        labels: &labels,
                    };
                    datagram.clear();
                    encode(&message, &ring, &mut datagram).expect("a valid message encodes");
                    // Nobody listens while the monitor is down: such sends are lost, as they
                    // would be for a real agent.
                    let _ = socket.send_to(&datagram, target);
                }
                // The fleet's own rhythm (like an agent's timer), not a wait for a condition.
                next += INTERVAL;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
        });
        Fleet { state, thread: Some(thread) }
    }

    /// These nodes stop sending (from the next round).
    fn silence(&self, ids: &[String]) {
        self.state.silent.lock().expect("not poisoned").extend(ids.iter().cloned());
    }

    /// These nodes send again.
    fn speak(&self, ids: &[String]) {
        let mut silent = self.state.silent.lock().expect("not poisoned");
        for id in ids {
            silent.remove(id);
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits until exactly `ids` are known to the monitor, all of them up.
fn wait_all_up(monitor: &Monitor, ids: &[String]) {
    monitor.wait_until(PATIENCE, &format!("{} nodes are up", ids.len()), || {
        let nodes = monitor.nodes();
        let up = nodes.iter().filter(|node| node.state == "up").count();
        if nodes.len() == ids.len() && up == ids.len() {
            Ok(())
        } else {
            Err(format!("{up} up of {} known, {} expected", nodes.len(), ids.len()))
        }
    });
}

/// For every node with a firing alert delivered: the distinct keys of those alerts.
fn firing_keys_by_node(receiver: &Receiver) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_node: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for alert in receiver.alerts() {
        if alert["kind"] == "firing" && alert["subject"]["kind"] == "node" {
            let node = alert["subject"]["id"].as_str().unwrap_or_default().to_string();
            let key = alert["idempotency_key"].as_str().unwrap_or_default().to_string();
            by_node.entry(node).or_default().insert(key);
        }
    }
    by_node
}

/// The alerts delivered about node `id` (first delivery of each key).
fn pages_for(receiver: &Receiver, id: &str) -> Vec<Value> {
    receiver
        .unique_alerts()
        .into_iter()
        .filter(|alert| alert["nodes"].as_array().is_some_and(|n| n.contains(&id.into())))
        .collect()
}

/// The `hook` sink as `GET /v1/sinks` shows it.
fn sink_health(monitor: &Monitor) -> Value {
    let (status, sinks) = monitor.get_json("/v1/sinks");
    assert_eq!(status, 200, "GET /v1/sinks: {sinks}");
    let hook = sinks.as_array().and_then(|sinks| sinks.iter().find(|sink| sink["name"] == "hook")).cloned();
    hook.unwrap_or_else(|| panic!("no sink named hook in {sinks}"))
}

/// The `hook` sink's outbox rows, oldest first, as `GET /v1/outbox` shows them.
fn outbox(monitor: &Monitor) -> Vec<Value> {
    let (status, rows) = monitor.get_json("/v1/outbox?sink=hook&limit=1000");
    assert_eq!(status, 200, "GET /v1/outbox: {rows}");
    rows.as_array().cloned().unwrap_or_else(|| panic!("not a list: {rows}"))
}

/// The monitor's SQLite file, read-only.
fn open_store(sandbox: &Sandbox) -> rusqlite::Connection {
    let path = sandbox.data_dir().join("rollcall.db");
    rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|error| panic!("open {}: {error}", path.display()))
}

/// Rows in the outbox, and how many of them are marked delivered.
fn outbox_counts(sandbox: &Sandbox) -> (i64, i64) {
    open_store(sandbox)
        .query_row("SELECT count(*), count(delivered_at_ms) FROM outbox", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .expect("count the outbox")
}

/// Wall-clock milliseconds as the monitor writes them in documents (RFC 3339, milliseconds).
fn rfc3339_ms(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

fn parse_time(text: &str) -> SystemTime {
    humantime::parse_rfc3339_weak(text).unwrap_or_else(|error| panic!("not RFC 3339 ({error}): {text}"))
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("bad JSON ({error}): {text}"))
}

/// A JSON array of strings, sorted.
fn sorted(list: &Value) -> Vec<String> {
    let mut items: Vec<String> =
        list.as_array().into_iter().flatten().filter_map(|item| item.as_str().map(String::from)).collect();
    items.sort();
    items
}

/// Lowercase hex HMAC-SHA256 of `body` under `secret`, as a receiver computes it.
fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect()
}

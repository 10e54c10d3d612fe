//! Settings per group with real processes on loopback: `[group.NAME]` sections judge their
//! group's nodes by their own thresholds, and `[goals] apply = true` sets each group's
//! thresholds from its goal, so that a crash in each group is declared within that group's
//! own goal.

mod support;

use nix::sys::signal::Signal;
use std::time::{Duration, SystemTime};
use support::{Agent, Monitor, Sandbox, history, promtool_check};

const INTERVAL: Duration = Duration::from_millis(200);

/// The fleet waits 10 intervals and a second; the `db` group 2 intervals and 200 ms.
const DB_GROUP: &str = r#"
detector = "fixed"

[fixed]
multiplier = 10.0
grace = "1s"

[group.db.fixed]
multiplier = 2.0
grace = "200ms"
"#;

/// When `node` went down, read from its stored history.
fn down_at(monitor: &Monitor, node: &str) -> SystemTime {
    let down = monitor.wait_until(Duration::from_secs(30), &format!("{node}'s down is stored"), || {
        let events = monitor.events(node);
        events
            .iter()
            .find(|event| event.to == "down")
            .cloned()
            .ok_or_else(|| format!("{:?}", history(&events)))
    });
    humantime::parse_rfc3339_weak(&down.at)
        .unwrap_or_else(|error| panic!("not RFC 3339 ({error}): {}", down.at))
}

/// From `killed` to the `at` the monitor gave the down (its deadline: the last heartbeat
/// plus the silence its settings allow). A transition may read a little before the kill:
/// the monitor maps its monotonic clock to wall time.
fn declared_after(monitor: &Monitor, node: &str, killed: SystemTime) -> Duration {
    down_at(monitor, node).duration_since(killed).unwrap_or(Duration::ZERO)
}

#[test]
fn a_groups_own_settings_judge_its_nodes_and_the_fleets_the_rest() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, DB_GROUP);
    let db = Agent::start(&sandbox, "db-1", monitor.udp, INTERVAL, &[("group", "db")]);
    let web = Agent::start(&sandbox, "web-1", monitor.udp, INTERVAL, &[("group", "web")]);
    monitor.wait_for_up("db-1", 3);
    monitor.wait_for_up("web-1", 3);

    // What is in force, and where it comes from: the group's section, and the fleet's.
    let (status, explained) = monitor.get_json("/v1/nodes/db-1/explain");
    assert_eq!(status, 200, "{explained}");
    let settings = &explained["settings"];
    assert_eq!((&settings["group"], &settings["source"]), (&"db".into(), &"config".into()), "{explained}");
    assert_eq!(settings["fixed_multiplier"], 2.0, "{explained}");
    let (_, explained) = monitor.get_json("/v1/nodes/web-1/explain");
    let settings = &explained["settings"];
    assert!(settings["group"].is_null(), "web has no section: the fleet's settings {explained}");
    assert_eq!(settings["fixed_multiplier"], 10.0, "{explained}");
    let text = monitor.get_text("/metrics").1;
    promtool_check(&text);
    let metrics = monitor.metrics();
    assert_eq!(metrics.get(r#"rollcall_group_threshold{scope="group db"}"#), 2.0);
    assert_eq!(metrics.get(r#"rollcall_group_threshold{scope="fleet"}"#), 10.0);
    assert_eq!(metrics.get(r#"rollcall_group_settings_from_goals{scope="group db"}"#), 0.0);

    let killed = SystemTime::now();
    db.signal(Signal::SIGKILL);
    web.signal(Signal::SIGKILL);
    // db: down 2 x 200 ms + 200 ms after its last heartbeat; web: 10 x 200 ms + 1 s.
    let db_after = declared_after(&monitor, "db-1", killed);
    let web_after = declared_after(&monitor, "web-1", killed);
    assert!(db_after < Duration::from_millis(1_500), "db-1 declared {db_after:?} after the kill");
    assert!(web_after > Duration::from_secs(2), "web-1 is judged by the fleet's 3 s: {web_after:?}");
}

/// Two groups with different goals, applied. Akka's phi defaults (threshold 8, a 3 s
/// acceptable pause) would take over 3 s for the fast group.
const TWO_GOALS: &str = r#"
[goals]
apply = true
advise_every = "1s"

[goals.group.fast]
detect_within = "2s"
max_false_downs = "1 per node-year"

[goals.group.slow]
detect_within = "10s"
max_false_downs = "1 per node-year"
"#;

/// The explanation of `node` once goals set its group's settings and they keep its goal.
fn applied(monitor: &Monitor, node: &str) -> serde_json::Value {
    let patience = Duration::from_secs(120);
    monitor.wait_until(
        patience,
        &format!("goals set {node}'s group's settings, and they keep its goal"),
        || {
            let (status, explained) = monitor.get_json(&format!("/v1/nodes/{node}/explain"));
            let ready = status == 200
                && explained["settings"]["source"] == "goals"
                && explained["goal"]["met"] == true
                && explained["node"]["state"] == "up";
            if ready { Ok(explained) } else { Err(format!("{status} {explained}")) }
        },
    )
}

#[test]
fn goals_applied_give_two_groups_two_thresholds_and_each_crash_is_declared_within_its_goal() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, TWO_GOALS);
    let fast = Agent::start(&sandbox, "fast-1", monitor.udp, INTERVAL, &[("group", "fast")]);
    let _fast = Agent::start(&sandbox, "fast-2", monitor.udp, INTERVAL, &[("group", "fast")]);
    let slow = Agent::start(&sandbox, "slow-1", monitor.udp, Duration::from_secs(1), &[("group", "slow")]);
    let _slow = Agent::start(&sandbox, "slow-2", monitor.udp, Duration::from_secs(1), &[("group", "slow")]);

    let fast_explained = applied(&monitor, "fast-1");
    let slow_explained = applied(&monitor, "slow-1");
    let (fast_settings, slow_settings) = (&fast_explained["settings"], &slow_explained["settings"]);
    assert_eq!(fast_settings["group"], "fast");
    assert_ne!(fast_settings, slow_settings, "two goals, two settings");
    let down_after = |explained: &serde_json::Value| explained["down_after_ms"].as_f64().expect("heard from");
    assert!(
        down_after(&fast_explained) < down_after(&slow_explained),
        "the fast group waits less: {fast_settings} / {slow_settings}"
    );
    // The same settings in the metrics (`rollcall explain` is a view of the same JSON).
    let text = monitor.get_text("/metrics").1;
    promtool_check(&text);
    let metrics = monitor.metrics();
    for scope in ["group fast", "group slow"] {
        assert_eq!(metrics.get(&format!(r#"rollcall_group_settings_from_goals{{scope="{scope}"}}"#)), 1.0);
    }
    let pause =
        |scope: &str| metrics.get(&format!(r#"rollcall_group_acceptable_pause_seconds{{scope="{scope}"}}"#));
    assert_ne!(
        (metrics.get(r#"rollcall_group_threshold{scope="group fast"}"#), pause("group fast")),
        (metrics.get(r#"rollcall_group_threshold{scope="group slow"}"#), pause("group slow")),
    );

    // A crash in each group: each is declared within its own goal.
    let killed = SystemTime::now();
    fast.signal(Signal::SIGKILL);
    slow.signal(Signal::SIGKILL);
    let fast_after = declared_after(&monitor, "fast-1", killed);
    let slow_after = declared_after(&monitor, "slow-1", killed);
    assert!(fast_after <= Duration::from_secs(2), "fast-1 declared {fast_after:?} after the kill");
    assert!(slow_after <= Duration::from_secs(10), "slow-1 declared {slow_after:?} after the kill");
    // The others were not declared down on the way.
    for node in ["fast-2", "slow-2"] {
        assert_eq!(monitor.node(node).expect("known").state, "up", "{node}");
    }
    // `rollcall explain` says where the settings come from.
    let api = format!("http://{}", monitor.http);
    let human = sandbox.run_to_exit(&["explain".into(), "fast-2".into(), "--api".into(), api]);
    assert!(human.status.success(), "{}", human.stderr);
    assert!(human.stdout.contains("from goals"), "{}", human.stdout);
}

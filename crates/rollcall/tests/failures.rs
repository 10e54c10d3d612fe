//! Failures of real processes on loopback: agents killed, stopped and stopped on purpose, and
//! the monitor itself stopped and crashed. Each test has its own sandbox and ports.

mod support;

use nix::sys::signal::Signal;
use std::time::{Duration, Instant};
use support::{Agent, DEADLINE, Monitor, PATIENT, QUICK, Sandbox, history};

/// Heartbeats every 200 ms keep the tests short.
const INTERVAL: Duration = Duration::from_millis(200);

#[test]
fn sigkill_agent_goes_suspect_then_down() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, QUICK);
    let agent = Agent::start(&sandbox, "victim", monitor.udp, INTERVAL, &[("role", "web")]);
    let before = monitor.wait_for_up("victim", 3);
    assert_eq!(before.labels.get("role").map(String::as_str), Some("web"));
    let known = monitor.wait_for_events("victim", 1);
    assert_eq!(history(&known), ["new -> up (first-heartbeat)"]);

    agent.signal(Signal::SIGKILL);
    let down = monitor.wait_for_state("victim", "down");

    assert_eq!(down.generation, before.generation, "a crash is not a restart");
    let events = monitor.wait_for_events("victim", 3);
    assert_eq!(
        history(&events),
        ["new -> up (first-heartbeat)", "up -> suspect (phi)", "suspect -> down (phi)"],
        "{events:#?}"
    );
    let log = monitor.stderr_tail();
    for line in ["victim up -> suspect (phi)", "victim suspect -> down (phi)"] {
        assert!(log.contains(line), "the monitor's log has no {line:?}:\n{log}");
    }
}

#[test]
fn sigstop_agent_until_suspect_then_sigcont_returns_up() {
    // A wide gap between suspect (phi 1, about 1.4 s of silence) and down (phi 8, about 3.3
    // s), so that the agent is continued well before it could be declared down.
    const WIDE: &str = r#"
[phi]
acceptable_pause = "500ms"
min_std_deviation = "500ms"
suspect_threshold = 1.0
"#;
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, WIDE);
    let agent = Agent::start(&sandbox, "sleeper", monitor.udp, INTERVAL, &[]);
    let before = monitor.wait_for_up("sleeper", 3);

    agent.signal(Signal::SIGSTOP);
    let suspect = monitor.wait_for_state("sleeper", "suspect");
    agent.signal(Signal::SIGCONT);
    let after = monitor.wait_until(DEADLINE, "sleeper is up after a newer heartbeat", || {
        match monitor.node("sleeper") {
            Some(node) if node.state == "up" && node.sequence > suspect.sequence => Ok(node),
            other => Err(format!("{other:?}")),
        }
    });

    assert_eq!(after.generation, before.generation, "a stopped process is not a restarted one");
    let events = monitor.wait_for_events("sleeper", 3);
    assert_eq!(
        history(&events),
        ["new -> up (first-heartbeat)", "up -> suspect (phi)", "suspect -> up (heartbeat)"],
        "{events:#?}"
    );
}

#[test]
fn sigstop_agent_until_down_then_sigcont_recovers_after_rise() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, QUICK);
    let agent = Agent::start(&sandbox, "frozen", monitor.udp, INTERVAL, &[]);
    let before = monitor.wait_for_up("frozen", 3);

    agent.signal(Signal::SIGSTOP);
    let down = monitor.wait_for_state("frozen", "down");
    agent.signal(Signal::SIGCONT);
    let after = monitor.wait_for_up("frozen", down.sequence + 2);

    assert_eq!(after.generation, before.generation, "a stopped process is not a restarted one");
    let events = monitor.wait_for_events("frozen", 4);
    assert_eq!(
        history(&events),
        [
            "new -> up (first-heartbeat)",
            "up -> suspect (phi)",
            "suspect -> down (phi)",
            "down -> up (heartbeat)",
        ],
        "{events:#?}"
    );
}

#[test]
fn sigint_agent_leaves_and_is_never_suspected() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, QUICK);
    let mut leaver = Agent::start(&sandbox, "leaver", monitor.udp, INTERVAL, &[]);
    // A control node crashed at the same time measures how long the monitor takes to declare
    // a silent node down, so the wait below needs no guessed constant.
    let crasher = Agent::start(&sandbox, "crasher", monitor.udp, INTERVAL, &[]);
    monitor.wait_for_up("leaver", 3);
    monitor.wait_for_up("crasher", 3);

    leaver.signal(Signal::SIGINT);
    crasher.signal(Signal::SIGKILL);
    let status = leaver.wait_exit();
    assert!(status.success(), "an agent stopped with SIGINT exits 0, got {status}");
    let left = monitor.wait_for_state("leaver", "left");
    let down = monitor.wait_for_state("crasher", "down");
    let down_after_ms = down.last_heartbeat_age_ms.expect("a down node has sent heartbeats");

    // Time as the monitor measures it: three times the silence that got the crasher declared
    // down has passed since the leaver's last heartbeat.
    monitor.wait_until(DEADLINE, "the leaver has been silent for 3x the time to down", || {
        let node = monitor.node("leaver").ok_or("leaver is unknown")?;
        match node.last_heartbeat_age_ms {
            Some(age) if age > 3 * down_after_ms => Ok(()),
            other => Err(format!("last_heartbeat_age_ms {other:?}, want > {}", 3 * down_after_ms)),
        }
    });

    let node = monitor.node("leaver").expect("a node that left is still known");
    assert_eq!(node.state, "left");
    assert_eq!(node.generation, left.generation);
    assert_eq!(node.deadline_in_ms, None, "a node that left has no pending deadline: {node:?}");
    let events = monitor.wait_for_events("leaver", 2);
    assert_eq!(history(&events), ["new -> up (first-heartbeat)", "up -> left (goodbye)"], "{events:#?}");
}

#[test]
fn sigstop_monitor_for_10s_suspects_nobody() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, PATIENT);
    let _agents = [
        Agent::start(&sandbox, "alpha", monitor.udp, INTERVAL, &[]),
        Agent::start(&sandbox, "beta", monitor.udp, INTERVAL, &[]),
    ];
    // A third node dies just before the stall: it must still be declared down afterwards,
    // but counted from the end of the stall (a deferred deadline), not at once.
    let gamma = Agent::start(&sandbox, "gamma", monitor.udp, INTERVAL, &[]);
    for id in ["alpha", "beta", "gamma"] {
        monitor.wait_for_up(id, 3);
    }
    let before = monitor.metrics();
    assert_eq!(before.get("rollcall_self_pauses_total"), 0.0);

    // The stall is the fault under test, not a wait for something to settle: the monitor must
    // be frozen far longer than its time to declare a node down (about 2.7 s here) while the
    // agents keep sending. While it is stopped there is nothing to poll (its HTTP API is
    // frozen too), so the test measures the 10 s itself.
    gamma.signal(Signal::SIGKILL);
    monitor.signal(Signal::SIGSTOP);
    let stopped = Instant::now();
    while stopped.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    monitor.signal(Signal::SIGCONT);

    monitor.wait_until(DEADLINE, "the monitor has counted its own pause", || {
        let pauses = monitor.metrics().get("rollcall_self_pauses_total");
        if pauses >= 1.0 { Ok(()) } else { Err(format!("rollcall_self_pauses_total {pauses}")) }
    });
    monitor.wait_for_state("gamma", "down");
    // Then long enough after the stall for any deadline it left behind to have fired: 20
    // more heartbeats (4 s) from each live agent, more than the time to down.
    let resumed = ["alpha", "beta"].map(|id| monitor.node(id).expect("known").sequence);
    for (id, from) in ["alpha", "beta"].into_iter().zip(resumed) {
        monitor.wait_for_up(id, from + 20);
    }

    for id in ["alpha", "beta"] {
        let events = monitor.events(id);
        assert_eq!(history(&events), ["new -> up (first-heartbeat)"], "{id}: {events:#?}");
    }
    let events = monitor.wait_for_events("gamma", 3);
    assert_eq!(
        history(&events),
        ["new -> up (first-heartbeat)", "up -> suspect (phi)", "suspect -> down (phi)"],
        "{events:#?}"
    );
    let after = monitor.metrics();
    assert!(
        after.get("rollcall_deadlines_deferred_total") > before.get("rollcall_deadlines_deferred_total"),
        "gamma's deadline, due during the stall, was pushed back to count from its end"
    );
    assert_eq!(after.get(r#"rollcall_nodes{state="up"}"#), 2.0);
}

#[test]
fn sigkill_monitor_and_restart_on_same_port_keeps_node_up() {
    let sandbox = Sandbox::new();
    let first = Monitor::start(&sandbox, PATIENT);
    let udp = first.udp;
    let _agent = Agent::start(&sandbox, "survivor", udp, INTERVAL, &[("zone", "a")]);
    let before = first.wait_for_up("survivor", 3);
    // The first transition is durable once /v1/events shows it (it reads the store).
    let history_before = first.wait_for_events("survivor", 1);
    assert_eq!(history(&history_before), ["new -> up (first-heartbeat)"]);
    let crashed_at = first.node("survivor").expect("known").sequence;

    first.crash();
    // The same UDP port, so that the agent, which keeps sending there, reaches the new
    // monitor. (Another process could take the port in between; on loopback it is unlikely.)
    let second = Monitor::start_on(&sandbox, PATIENT, udp);
    assert_eq!(second.udp, udp);

    let restored = second.node("survivor").expect("the node is restored from the store at start");
    assert_eq!(restored.state, "up", "{restored:?}");
    assert_eq!(restored.generation, before.generation);
    assert_eq!(restored.labels, before.labels);
    assert_eq!(second.events("survivor"), history_before, "the history survives the crash");

    // Heartbeats reach the new monitor and are accepted (not taken for replays) ...
    second.wait_for_up("survivor", crashed_at + 5);
    // ... and it has watched for twice the time to down (about 2.7 s) since it started.
    second.wait_until(DEADLINE, "the new monitor has run for 6 s", || {
        let uptime = second.metrics().get("rollcall_uptime_seconds");
        if uptime >= 6.0 { Ok(()) } else { Err(format!("uptime {uptime} s")) }
    });

    let node = second.node("survivor").expect("known");
    assert_eq!(node.state, "up", "{node:?}");
    assert_eq!(node.generation, before.generation);
    assert!(node.last_heartbeat_age_ms.is_some(), "heartbeats arrive: {node:?}");
    assert_eq!(second.events("survivor"), history_before, "no transition after the restart");
}

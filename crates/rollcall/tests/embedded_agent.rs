//! `rollcall-agent`, the in-process agent for Rust services, against a real monitor: the
//! service's own runtime sends its heartbeats, so a runtime blocked on purpose (a blocking
//! call on the event loop) goes suspect, then down; unblocked, it comes back up; stopped,
//! it says goodbye and nobody is paged.

mod support;

use rollcall_agent::{Agent, AgentConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::{Monitor, Sandbox};

#[test]
fn a_service_whose_runtime_is_blocked_goes_down_and_comes_back_up() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, support::QUICK);
    let key = std::fs::read_to_string(sandbox.key_file()).expect("read the key file");
    let udp = monitor.udp;
    let (blocked, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let service = {
        let (blocked, done) = (blocked.clone(), done.clone());
        // The service: a single-threaded runtime, the agent a task on it.
        std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async move {
                let config = AgentConfig::new("svc-1", vec![udp], &key)
                    .expect("a valid config")
                    .interval(Duration::from_millis(200))
                    .label("service", "billing");
                let agent = Agent::spawn(config).await.expect("the agent starts");
                // Bounded by the test: `done` is set before it joins.
                while !done.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    // A handler that blocks the event loop, as a blocking call in async code does.
                    while blocked.load(Ordering::Relaxed) && !done.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                agent.stop().await;
            });
        })
    };
    monitor.wait_for_state("svc-1", "up");
    blocked.store(true, Ordering::Relaxed);
    monitor.wait_for_state("svc-1", "down");
    blocked.store(false, Ordering::Relaxed);
    monitor.wait_for_state("svc-1", "up");
    done.store(true, Ordering::Relaxed);
    service.join().expect("the service thread ends");
    monitor.wait_for_state("svc-1", "left");
    // The transitions as stored (committed a moment after the state changes).
    let path = monitor.wait_until(support::DEADLINE, "five transitions stored", || {
        let path: Vec<(String, String)> =
            monitor.events("svc-1").into_iter().map(|event| (event.to, event.reason)).collect();
        if path.len() >= 5 { Ok(path) } else { Err(format!("{path:?}")) }
    });
    let states: Vec<&str> = path.iter().map(|(to, _)| to.as_str()).collect();
    assert_eq!(states, ["up", "suspect", "down", "up", "left"], "{path:?}");
    assert_eq!(path[4].1, "goodbye", "{path:?}");
}

#[test]
fn a_bad_configuration_is_refused_with_its_reason() {
    let error = AgentConfig::new("svc", vec!["127.0.0.1:7400".parse().expect("an address")], "not a key")
        .err()
        .expect("a bad key file is refused");
    assert!(error.to_string().contains("key file"), "{error}");
    let sandbox = Sandbox::new();
    let key = std::fs::read_to_string(sandbox.key_file()).expect("read the key file");
    assert!(AgentConfig::new("svc", Vec::new(), &key).is_err(), "no monitor");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let config =
        AgentConfig::new("svc", vec!["127.0.0.1:7400".parse().expect("an address")], &key).expect("valid");
    let error = runtime
        .block_on(Agent::spawn(config.clone().interval(Duration::from_millis(1))))
        .err()
        .expect("refused");
    assert!(error.to_string().contains("interval"), "{error}");
    let error = runtime.block_on(Agent::spawn(config.label("bad key", "x"))).err().expect("refused");
    assert!(error.to_string().contains("label"), "{error}");
}

//! What the `[cluster]` tests share: a monitor's config, `/v1/cluster` checked against its
//! schema, waiting for one leader, and agents that send to several monitors.

// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

use crate::support::{Agent, Monitor, Sandbox};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

pub const PATIENCE: Duration = Duration::from_secs(30);

/// A TTL of 3 s: short for quick failovers, with room for a loaded CI machine to move to
/// another etcd member before the lease expires.
pub fn config(endpoints: &str, monitor: &str) -> String {
    format!("[cluster]\nname = \"prod\"\nmonitor = \"{monitor}\"\netcd = [{endpoints}]\nlease_ttl = \"3s\"\n")
}

/// `GET /v1/cluster`, checked against its schema in docs/openapi.json.
pub fn cluster(monitor: &Monitor) -> Value {
    let (status, body) = monitor.get_json("/v1/cluster");
    assert_eq!(status, 200, "GET /v1/cluster: {body}");
    let doc: Value =
        serde_json::from_str(include_str!("../../../../docs/openapi.json")).expect("the OpenAPI document");
    let validator =
        jsonschema::validator_for(&doc["components"]["schemas"]["ClusterStatus"]).expect("a valid schema");
    let problems: Vec<String> = validator.iter_errors(&body).map(|error| error.to_string()).collect();
    assert!(problems.is_empty(), "GET /v1/cluster does not match its schema: {problems:?}\n{body}");
    body
}

/// Waits until exactly one of `monitors` says it leads and the others name it; returns its
/// index and fencing token.
pub fn wait_for_one_leader(monitors: &[&Monitor]) -> (usize, i64) {
    let mut found = (0, 0);
    monitors[0].wait_until(PATIENCE, "one leader that every monitor names", || {
        let views: Vec<Value> = monitors.iter().map(|monitor| cluster(monitor)).collect();
        let leaders: Vec<usize> = (0..views.len()).filter(|&i| views[i]["role"] == "leader").collect();
        let [leader] = leaders.as_slice() else { return Err(format!("leaders: {leaders:?} in {views:?}")) };
        let name = &views[*leader]["monitor"];
        let token = views[*leader]["fencing_token"].as_i64().unwrap_or(0);
        let agreed = views.iter().all(|view| &view["leader"] == name && view["fencing_token"] == token);
        if !agreed {
            return Err(format!("not agreed yet: {views:?}"));
        }
        found = (*leader, token);
        Ok(())
    });
    found
}

/// An agent for node `name` sending every 200 ms to each of `targets`, with `sandbox`'s key.
pub fn agent_to(sandbox: &Sandbox, name: &str, targets: &[SocketAddr]) -> Agent {
    let extra: Vec<String> =
        targets[1..].iter().flat_map(|target| ["--monitor".to_string(), target.to_string()]).collect();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    Agent::start_with(sandbox, name, targets[0], Duration::from_millis(200), &[], &extra)
}

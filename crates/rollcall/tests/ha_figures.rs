//! The figures of docs/HA.md ("Figures"), measured on real processes: a three-member etcd on
//! loopback, `rollcall monitor`s, agents, and the benchmark's generator (`rollcall loadgen`).
//!
//! They print numbers and assert nothing about timings (timing goals live in benchmarks, not
//! in tests), so they are `#[ignore]`d and CI does not run them. Run them with:
//!
//! ```sh
//! cargo test --release -p rollcall --test ha_figures -- --ignored --nocapture --test-threads=1
//! ```
//!
//! - `failover`: leader and agent SIGKILLed at the same instant, to the new leader's page;
//!   20 runs at lease TTLs of 2, 5 and 10 s, and the detection time alone as the floor.
//! - `mass_failure`: 10 % of a simulated fleet stops: the time to the leader's grouped page,
//!   and etcd writes per 1,000 transitions (down, then up again).
//! - `heartbeat_path`: accepted heartbeats/s of one monitor with and without `[cluster]`,
//!   alternated in the same run.
//!
//! The fleet's size and interval for `mass_failure` come from `ROLLCALL_FIGURES_NODES`
//! (default 100000) and `ROLLCALL_FIGURES_INTERVAL` (default `5s`); `ROLLCALL_FIGURES_TTLS`
//! (default `5,10,2`) picks the lease TTLs of `failover`.

#[path = "support/cluster.rs"]
mod cluster_support;
#[path = "support/etcd.rs"]
mod etcd;
#[path = "support/receiver.rs"]
mod receiver;
mod support;

#[path = "ha_figures/fleet.rs"]
mod fleet;

use cluster_support::{agent_to, cluster, wait_for_one_leader};
use etcd::Etcd;
use fleet::{Loadgen, Percentiles, etcd_counters, fleet_config};
use nix::sys::signal::Signal;
use receiver::Receiver;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{Monitor, Sandbox};

const NAMES: [&str; 3] = ["m1", "m2", "m3"];
/// Runs per lease TTL.
const RUNS: usize = 20;
/// The longest any one wait of a run may take (a failover at a 10 s TTL takes about 12 s).
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// `[cluster]` for monitor `name` with a lease of `ttl_s` seconds.
fn cluster_toml(endpoints: &str, name: &str, ttl_s: u64) -> String {
    format!(
        "[cluster]\nname = \"prod\"\nmonitor = \"{name}\"\netcd = [{endpoints}]\nlease_ttl = \"{ttl_s}s\"\n"
    )
}

/// Three monitors on one etcd, sharing a key file; `config(name)` gives each one's TOML.
struct Trio {
    etcd: Etcd,
    _dir: Sandbox,
    sandboxes: Vec<Sandbox>,
    monitors: Vec<Option<Monitor>>,
    configs: Vec<String>,
}

impl Trio {
    fn start(config: impl Fn(&str, &str) -> String) -> Trio {
        let dir = Sandbox::new();
        let etcd = Etcd::start(dir.path());
        let endpoints = etcd.endpoints_toml();
        let sandboxes: Vec<Sandbox> = NAMES.iter().map(|_| Sandbox::new()).collect();
        for sandbox in &sandboxes[1..] {
            std::fs::copy(sandboxes[0].key_file(), sandbox.key_file()).expect("share the key file");
        }
        let configs: Vec<String> = NAMES.iter().map(|name| config(&endpoints, name)).collect();
        let monitors = configs
            .iter()
            .zip(&sandboxes)
            .map(|(config, sandbox)| Some(Monitor::start(sandbox, config)))
            .collect();
        Trio { etcd, _dir: dir, sandboxes, monitors, configs }
    }

    fn live(&self) -> Vec<&Monitor> {
        self.monitors.iter().flatten().collect()
    }

    fn udp(&self) -> Vec<SocketAddr> {
        self.live().iter().map(|monitor| monitor.udp).collect()
    }
}

/// The first delivered firing alert about `node` whose key is not in `seen`, and when it
/// arrived; waits at most [`RUN_DEADLINE`].
fn next_firing(hook: &Receiver, node: &str, seen: &BTreeSet<String>) -> (Value, Instant) {
    let started = Instant::now();
    loop {
        let found = hook.deliveries().into_iter().find(|request| {
            let alert = &request.json;
            alert["kind"] == "firing"
                && alert["nodes"].as_array().is_some_and(|nodes| nodes.iter().any(|n| n == node))
                && request.key().is_some_and(|key| !seen.contains(key))
        });
        if let Some(request) = found {
            return (request.json, request.at);
        }
        assert!(started.elapsed() < RUN_DEADLINE, "no new firing alert about {node} within {RUN_DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The keys of every firing alert delivered so far.
fn firing_keys(hook: &Receiver) -> BTreeSet<String> {
    hook.deliveries()
        .iter()
        .filter(|request| request.json["kind"] == "firing")
        .filter_map(|request| request.key().map(str::to_string))
        .collect()
}

/// Waits until every live monitor judges `node` up.
fn wait_up(trio: &Trio, node: &str) {
    for monitor in trio.live() {
        monitor.wait_until(RUN_DEADLINE, &format!("{node} is up"), || match monitor.node(node) {
            Some(seen) if seen.state == "up" => Ok(()),
            Some(seen) => Err(seen.state),
            None => Err("unknown".to_string()),
        });
    }
}

/// Kills an agent only, `RUNS` times: the detection time and the page, with no failover (the
/// floor the failover figures stand on). Each run has its own node: the same node going down
/// and up again every few seconds would be held as flapping.
fn detection_floor(trio: &Trio, hook: &Receiver) -> Percentiles {
    let mut samples = Vec::new();
    for run in 0..RUNS {
        let node = format!("floor-{run}");
        let mut agent = agent_to(&trio.sandboxes[0], &node, &trio.udp());
        wait_up(trio, &node);
        let seen = firing_keys(hook);
        let killed = Instant::now();
        agent.signal(Signal::SIGKILL);
        agent.wait_exit();
        let (_, at) = next_firing(hook, &node, &seen);
        samples.push(at - killed);
    }
    Percentiles::of(samples)
}

/// Like `wait_for_one_leader`, without panicking: after [`RUN_DEADLINE`], what each monitor
/// said (role, leader, token, etcd error).
fn one_leader(monitors: &[&Monitor]) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let views: Vec<Value> = monitors.iter().map(|monitor| cluster(monitor)).collect();
        let leaders: Vec<&Value> = views.iter().filter(|view| view["role"] == "leader").collect();
        if let [leader] = leaders.as_slice()
            && views.iter().all(|view| {
                view["leader"] == leader["monitor"] && view["fencing_token"] == leader["fencing_token"]
            })
        {
            return Ok(());
        }
        if started.elapsed() > RUN_DEADLINE {
            let said: Vec<String> = views
                .iter()
                .map(|view| {
                    format!(
                        "{}: role {}, leader {}, token {}, etcd_error {}",
                        view["monitor"],
                        view["role"],
                        view["leader"],
                        view["fencing_token"],
                        view["etcd_error"]
                    )
                })
                .collect();
            return Err(said.join("; "));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One failover: the leader and the agent of `node` SIGKILLed at the same instant, to the
/// arrival of the new leader's page; then the monitor is started again on its UDP port.
/// Returns the time and whether the new token is higher, or why the cluster did not come
/// back to one leader named by all three.
fn failover_once(trio: &mut Trio, hook: &Receiver, node: &str) -> Result<(Duration, bool), String> {
    let mut agent = agent_to(&trio.sandboxes[0], node, &trio.udp());
    wait_up(trio, node);
    let (leader, token) = wait_for_one_leader(&trio.live());
    let seen = firing_keys(hook);
    let leading = trio.monitors[leader].take().expect("the leader runs");
    let udp = leading.udp;
    let killed = Instant::now();
    leading.signal(Signal::SIGKILL);
    agent.signal(Signal::SIGKILL);
    leading.crash();
    agent.wait_exit();
    let (alert, at) = next_firing(hook, node, &seen);
    let new_token = alert["fencing_token"].as_i64().unwrap_or(0);
    trio.monitors[leader] = Some(Monitor::start_on(&trio.sandboxes[leader], &trio.configs[leader], udp));
    one_leader(&trio.live()).map_err(|said| format!("after restarting m{}: {said}", leader + 1))?;
    Ok((at - killed, new_token > token))
}

#[test]
#[ignore = "figures for docs/HA.md: run with --ignored --nocapture --test-threads=1 in release"]
fn failover() {
    let mut rows = Vec::new();
    // ROLLCALL_FIGURES_TTLS="2,5" measures only those.
    let ttls: Vec<u64> = std::env::var("ROLLCALL_FIGURES_TTLS")
        .map(|list| list.split(',').filter_map(|ttl| ttl.trim().parse().ok()).collect())
        .unwrap_or_else(|_| vec![5, 10, 2]);
    for ttl_s in ttls {
        let hook = Receiver::start();
        let mut trio = Trio::start(|endpoints, name| {
            format!("{}{}", support::quick_pages_to(&hook.url()), cluster_toml(endpoints, name, ttl_s))
        });
        wait_for_one_leader(&trio.live());
        if ttl_s == 5 {
            let floor = detection_floor(&trio, &hook);
            println!("detection alone (agent SIGKILL to page, no failover), {RUNS} runs: {floor}");
        }
        let mut samples = Vec::new();
        let mut higher = 0;
        for run in 0..RUNS {
            // A node per run, as for the floor (the dead ones stay down, their incidents open).
            let node = format!("failover-{ttl_s}-{run}");
            match failover_once(&mut trio, &hook, &node) {
                Ok((took, token_higher)) => {
                    higher += usize::from(token_higher);
                    eprintln!("TTL {ttl_s} s, run {run}: {took:?}");
                    samples.push(took);
                }
                Err(why) => {
                    println!(
                        "TTL {ttl_s} s, run {run}: paged, but no single leader again within {RUN_DEADLINE:?}: {why}"
                    );
                    break;
                }
            }
        }
        let runs = samples.len();
        if runs == 0 {
            continue;
        }
        let figures = Percentiles::of(samples);
        println!(
            "failover at lease TTL {ttl_s} s, {runs} runs: {figures}; new token higher in {higher}/{runs}"
        );
        rows.push((ttl_s, runs, figures, higher));
    }
    println!("\n| lease TTL | runs | p50 | p99 | max | new token higher |\n|---|---|---|---|---|---|");
    for (ttl_s, runs, figures, higher) in rows {
        println!(
            "| {ttl_s} s | {runs} | {} | {} | {} | {higher}/{runs} |",
            figures.p50(),
            figures.p99(),
            figures.max()
        );
    }
}

#[test]
#[ignore = "figures for docs/HA.md: run with --ignored --nocapture --test-threads=1 in release"]
fn mass_failure() {
    let nodes: usize =
        std::env::var("ROLLCALL_FIGURES_NODES").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let interval = std::env::var("ROLLCALL_FIGURES_INTERVAL").unwrap_or_else(|_| "5s".to_string());
    let stopped = nodes / 10;
    let hook = Receiver::start();
    let trio = Trio::start(|endpoints, name| {
        format!("{}{}", fleet_config(&hook.url(), nodes), cluster_toml(endpoints, name, 5))
    });
    wait_for_one_leader(&trio.live());
    let started = Instant::now();
    let mut load = Loadgen::start(&trio.sandboxes[0], &trio.udp(), nodes, &interval, false, "20m");
    let monitors = trio.live();
    let fleet_up =
        load.wait_for_count(&monitors, "up", nodes, Duration::from_secs(300)).expect("the fleet is up")
            - started;
    println!("{nodes} nodes at {interval}, to 3 monitors: all up at every monitor after {fleet_up:?}");
    let (leader, _) = wait_for_one_leader(&monitors);

    // What etcd does anyway (lease renewals, views every 2 s), once the registration's
    // verdicts are written.
    let writes = |monitors: &[&Monitor]| -> u64 {
        monitors.iter().map(|monitor| cluster(monitor)["etcd_writes"].as_u64().unwrap_or(0)).sum()
    };
    settle_writes(&monitors, &writes);
    let quiet = Duration::from_secs(10);
    let background = etcd_counters(&trio.etcd);
    std::thread::sleep(quiet);
    let background = etcd_counters(&trio.etcd).minus(&background);
    let all_transitions =
        |monitors: &[&Monitor]| -> f64 { monitors.iter().map(|m| fleet::transitions(m)).sum() };
    let (rollcall_before, etcd_before, window) =
        (writes(&monitors), etcd_counters(&trio.etcd), Instant::now());
    let transitions_before = all_transitions(&monitors);
    let seen = firing_keys(&hook);
    let stopped_at = load.command(&format!("stop {stopped}"));
    let (first, paged_all) = wait_for_paged(&hook, &seen, stopped, stopped_at);
    println!(
        "{stopped} of {nodes} nodes stopped: first page after {:?} ({} nodes, subject {}), all {stopped} paged after {paged_all:?}",
        first.1, first.0["node_count"], first.0["subject"]["kind"]
    );
    match load.wait_for_count(&monitors, "down", stopped, Duration::from_secs(120)) {
        Ok(at) => println!("every monitor judges all {stopped} down {:?} after the stop", at - stopped_at),
        Err(error) => println!("({error})"),
    }
    let resumed_at = load.command("resume");
    match load.wait_for_count(&monitors, "up", nodes, Duration::from_secs(120)) {
        Ok(at) => println!("they send again: all up at every monitor {:?} after the resume", at - resumed_at),
        Err(error) => println!("(after the resume: {error})"),
    }
    wait_for_resolved(&hook, &seen);
    settle_writes(&monitors, &writes);
    let rollcall_writes = writes(&monitors) - rollcall_before;
    let etcd_delta = etcd_counters(&trio.etcd).minus(&etcd_before);
    let elapsed = window.elapsed().as_secs_f64();
    let transitions = (stopped * 2 * monitors.len()) as f64;
    println!(
        "transitions: {stopped} down + {stopped} up x 3 monitors = {transitions} (every transition the monitors counted, suspect included: {}); leader m{}",
        all_transitions(&monitors) - transitions_before,
        leader + 1
    );
    println!(
        "rollcall etcd_writes (verdict and incident transactions, all monitors): {rollcall_writes} = {:.2} per 1,000 transitions",
        rollcall_writes as f64 * 1000.0 / transitions
    );
    println!("etcd over the {elapsed:.1} s window: {etcd_delta}");
    println!("etcd background over {:.1} s before (renewals, views): {background}", quiet.as_secs_f64());
    println!(
        "etcd per 1,000 transitions (raw, background included): proposals {:.2}, puts {:.2}, deletes {:.2}",
        etcd_delta.proposals * 1000.0 / transitions,
        etcd_delta.put * 1000.0 / transitions,
        etcd_delta.delete * 1000.0 / transitions,
    );
    let alerts = hook.unique_alerts();
    let firing: Vec<&Value> = alerts
        .iter()
        .filter(|alert| alert["kind"] == "firing")
        .filter(|alert| alert["idempotency_key"].as_str().is_some_and(|key| !seen.contains(key)))
        .collect();
    let grouped: Vec<&Value> =
        firing.iter().copied().filter(|alert| alert["subject"]["kind"] == "group").collect();
    let counts: Vec<&Value> = grouped.iter().map(|alert| &alert["node_count"]).collect();
    println!(
        "firing alerts: {} ({} grouped, node counts {counts:?}); deliveries in all: {}",
        firing.len(),
        grouped.len(),
        hook.deliveries().len()
    );
    drop(load);
}

/// Waits until the firing alerts since `seen` cover `stopped` nodes; returns the first one
/// (and when it arrived after the stop) and when they covered them all.
fn wait_for_paged(
    hook: &Receiver,
    seen: &BTreeSet<String>,
    stopped: usize,
    since: Instant,
) -> ((Value, Duration), Duration) {
    let mut first = None;
    let started = Instant::now();
    loop {
        let fresh: Vec<receiver::Request> = hook
            .deliveries()
            .into_iter()
            .filter(|request| request.json["kind"] == "firing")
            .filter(|request| request.key().is_some_and(|key| !seen.contains(key)))
            .collect();
        if first.is_none()
            && let Some(request) = fresh.first()
        {
            first = Some((request.json.clone(), request.at - since));
        }
        let covered: u64 = fresh.iter().map(|request| request.json["node_count"].as_u64().unwrap_or(1)).sum();
        if let (Some(first), true) = (&first, covered >= stopped as u64) {
            let last = fresh.iter().map(|request| request.at).max().expect("at least one");
            return (first.clone(), last - since);
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the pages cover {covered} of {stopped} stopped nodes after 180 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (at most 120 s) until a resolved alert arrived for each firing one not in `seen`.
fn wait_for_resolved(hook: &Receiver, seen: &BTreeSet<String>) {
    let started = Instant::now();
    loop {
        let alerts = hook.unique_alerts();
        let opened: BTreeSet<u64> = alerts
            .iter()
            .filter(|alert| alert["kind"] == "firing")
            .filter(|alert| alert["idempotency_key"].as_str().is_some_and(|key| !seen.contains(key)))
            .filter_map(|alert| alert["incident"]["id"].as_u64())
            .collect();
        let closed: BTreeSet<u64> = alerts
            .iter()
            .filter(|alert| alert["kind"] == "resolved")
            .filter_map(|alert| alert["incident"]["id"].as_u64())
            .collect();
        if opened.is_subset(&closed) {
            return;
        }
        if started.elapsed() > Duration::from_secs(120) {
            println!("(not every incident resolved within 120 s: opened {opened:?}, closed {closed:?})");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (at most 30 s) until the monitors' etcd write counters stop moving for 3 s.
fn settle_writes(monitors: &[&Monitor], writes: &dyn Fn(&[&Monitor]) -> u64) {
    let started = Instant::now();
    let mut last = (writes(monitors), Instant::now());
    while started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(250));
        let now = writes(monitors);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(3) {
            return;
        }
    }
}

#[test]
#[ignore = "figures for docs/HA.md: run with --ignored --nocapture --test-threads=1 in release"]
fn heartbeat_path() {
    const NODES: usize = 10_000;
    const ROUNDS: usize = 5;
    // What the nodes declare: long, so that no node of one round is declared down (a storm
    // of verdicts) while the other monitor is measured.
    const DECLARED: &str = "60s";
    let dir = Sandbox::new();
    let etcd = Etcd::start(dir.path());
    let hook = Receiver::start();
    let plain_box = Sandbox::new();
    std::fs::copy(plain_box.key_file(), dir.key_file()).expect("share the key file");
    let clustered_box = dir.clone();
    let plain = Monitor::start(&plain_box, &fleet_config(&hook.url(), NODES));
    let clustered = Monitor::start(
        &clustered_box,
        &format!("{}{}", fleet_config(&hook.url(), NODES), cluster_toml(&etcd.endpoints_toml(), "m1", 5)),
    );
    wait_for_one_leader(&[&clustered]);
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    // CPU seconds the monitor process used per million accepted heartbeats: what the
    // heartbeat path costs, much less sensitive than a rate to what else the two cores run.
    let mut costs: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        // Which goes first alternates, so that neither always follows the other's storm.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for index in order {
            let monitor = [&plain, &clustered][index];
            let before = fleet::accepted(monitor);
            let cpu_before = fleet::cpu_seconds(monitor.pid());
            let load = Loadgen::start(&plain_box, &[monitor.udp], NODES, DECLARED, true, "5s");
            let seconds = load.finish();
            let accepted = fleet::settle_accepted(monitor) - before;
            let cpu = fleet::cpu_seconds(monitor.pid()) - cpu_before;
            let rate = accepted as f64 / seconds;
            let per_million = cpu / accepted.max(1) as f64 * 1e6;
            eprintln!(
                "round {round}, {}: {accepted} accepted in {seconds:.2} s, {cpu:.2} CPU s ({per_million:.3} per million)",
                ["plain", "cluster"][index]
            );
            rates[index].push(rate);
            costs[index].push(per_million);
        }
    }
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let show = |values: &[f64]| values.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(", ");
    println!("accepted heartbeats/s, saturating, {NODES} nodes, {ROUNDS} rounds of 5 s each, alternated:");
    println!("  without [cluster]: {} (mean {:.0})", show(&rates[0]), mean(&rates[0]));
    println!("  with [cluster]:    {} (mean {:.0})", show(&rates[1]), mean(&rates[1]));
    println!("  ratio with / without: {:.3}", mean(&rates[1]) / mean(&rates[0]));
    let show = |values: &[f64]| values.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(", ");
    println!("CPU seconds of the monitor process per million accepted heartbeats:");
    println!("  without [cluster]: {} (mean {:.3})", show(&costs[0]), mean(&costs[0]));
    println!("  with [cluster]:    {} (mean {:.3})", show(&costs[1]), mean(&costs[1]));
    println!("  ratio with / without: {:.3}", mean(&costs[1]) / mean(&costs[0]));
    println!("  etcd_writes of the clustered monitor: {}", cluster(&clustered)["etcd_writes"]);
}

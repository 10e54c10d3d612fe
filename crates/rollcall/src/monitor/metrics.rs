//! `/metrics` in the Prometheus/OpenMetrics text format, built from a stats snapshot at each
//! scrape (the core keeps plain counters; nothing here is on the heartbeat path).

use super::owner::StatsSnapshot;
use crate::alerts::delivery::SinkHealth;
use crate::http_server::ConnectionStats;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rollcall_core::checks::{PingError, Signal};
use rollcall_core::monitor::{NodeState, Rejection};
use std::collections::BTreeMap;

type Labels = Vec<(&'static str, &'static str)>;

const COMMON_TRANSITIONS: [(NodeState, NodeState); 6] = [
    (NodeState::New, NodeState::Up),
    (NodeState::Up, NodeState::Suspect),
    (NodeState::Suspect, NodeState::Up),
    (NodeState::Suspect, NodeState::Down),
    (NodeState::Down, NodeState::Up),
    (NodeState::Up, NodeState::Left),
];

pub fn render(
    stats: &StatsSnapshot,
    sinks: &BTreeMap<String, SinkHealth>,
    outbox_depth: &[(String, u64)],
    connections: &ConnectionStats,
    cluster: Option<&crate::cluster::ClusterStatus>,
) -> String {
    let mut registry = Registry::with_prefix("rollcall");
    let core = &stats.core;

    let received = Family::<Labels, Counter>::default();
    received.get_or_create(&vec![("kind", "heartbeat")]).inc_by(core.heartbeats);
    received.get_or_create(&vec![("kind", "goodbye")]).inc_by(core.goodbyes);
    received.get_or_create(&vec![("kind", "exit")]).inc_by(core.exits);
    registry.register("heartbeats_received", "Authenticated, fresh datagrams accepted", received);

    let rejected = Family::<Labels, Counter>::default();
    for reason in Rejection::all() {
        let count = core.rejected.get(&reason).copied().unwrap_or(0);
        rejected.get_or_create(&vec![("reason", reason.as_str())]).inc_by(count);
    }
    registry.register("heartbeats_rejected", "Datagrams dropped, by reason", rejected);

    let missed = Counter::<u64>::default();
    missed.inc_by(core.heartbeats_missed);
    registry.register(
        "heartbeats_missed",
        "Heartbeats that never arrived, from gaps in sequence numbers (the fleet's loss)",
        missed,
    );

    let advice_sent = Counter::<u64>::default();
    advice_sent.inc_by(core.advice_sent);
    registry.register(
        "interval_advice_sent",
        "Interval advice datagrams sent to agents that follow advice ([goals])",
        advice_sent,
    );
    type ByScope = Family<Vec<(&'static str, String)>, Gauge<f64, std::sync::atomic::AtomicU64>>;
    let scope_label = |scope: &Option<String>| {
        vec![("scope", scope.as_ref().map_or_else(|| "fleet".to_string(), |group| format!("group {group}")))]
    };
    let advised = ByScope::default();
    for (scope, interval) in &stats.advised {
        advised.get_or_create(&scope_label(scope)).set(interval.as_secs_f64());
    }
    let kept = ByScope::default();
    for (scope, share) in &stats.goals_kept {
        kept.get_or_create(&scope_label(scope)).set(*share);
    }
    registry.register(
        "goal_kept_ratio",
        "Of the nodes sampled for each goal, the share whose current settings keep it",
        kept,
    );
    registry.register_with_unit(
        "advised_interval",
        "The heartbeat interval advised to agents, by scope of goal",
        prometheus_client::registry::Unit::Seconds,
        advised,
    );

    super::advice::apply::register_metrics(&mut registry, &stats.group_settings);

    let nodes = Family::<Labels, Gauge>::default();
    for state in NodeState::ALL {
        nodes.get_or_create(&vec![("state", state.as_str())]).set(core.nodes_in(state) as i64);
    }
    registry.register("nodes", "Tracked nodes, by state", nodes);

    let transitions = Family::<Labels, Counter>::default();
    // The usual transitions exist from the start, at zero, so rate() over them works before
    // the first failure (Prometheus' advice for counters with labels).
    for (from, to) in COMMON_TRANSITIONS {
        transitions.get_or_create(&vec![("from", from.as_str()), ("to", to.as_str())]).inc_by(0);
    }
    for (&(from, to), &count) in &core.transitions {
        transitions.get_or_create(&vec![("from", from.as_str()), ("to", to.as_str())]).inc_by(count);
    }
    registry.register("transitions", "State transitions, by kind", transitions);

    let pauses = Counter::<u64>::default();
    pauses.inc_by(core.self_pauses);
    registry.register("self_pauses", "Times the monitor noticed its own loop had stalled", pauses);

    let deferred = Counter::<u64>::default();
    deferred.inc_by(core.deadlines_deferred);
    registry.register(
        "deadlines_deferred",
        "Deadlines pushed back by a stall or a fresh grace period",
        deferred,
    );

    let batches = Counter::<u64>::default();
    batches.inc_by(stats.store_batches);
    registry.register("store_commits", "Store transactions committed", batches);
    let errors = Counter::<u64>::default();
    errors.inc_by(stats.store_errors);
    registry.register("store_errors", "Store transactions that failed (and are retried)", errors);
    let failing = Gauge::<i64>::default();
    failing.set(i64::from(stats.store.failing));
    registry.register(
        "store_failing",
        "1 while the store cannot commit (alerts wait; /healthz answers 503)",
        failing,
    );
    let queued = Gauge::<i64>::default();
    queued.set(stats.store.queued_writes as i64);
    registry.register("store_queued_writes", "Writes queued for the store and not yet committed", queued);
    let queued_bytes = Gauge::<i64>::default();
    queued_bytes.set(stats.store.queued_bytes as i64);
    registry.register(
        "store_queued_bytes",
        "Estimated bytes of the writes queued for the store",
        queued_bytes,
    );
    let shed = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
    shed.get_or_create(&vec![("what", "ping")]).inc_by(stats.store.shed_pings);
    shed.get_or_create(&vec![("what", "checkpoint_row")]).inc_by(stats.store.shed_checkpoint_rows);
    registry.register(
        "store_shed",
        "Writes dropped while the store could not commit (ping history and sequence checkpoints only)",
        shed,
    );
    let refused = Counter::<u64>::default();
    refused.inc_by(stats.store.pings_refused);
    registry.register(
        "pings_refused_store",
        "Pings refused (503) because the store could not commit",
        refused,
    );

    let uptime = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    uptime.set(stats.uptime.as_secs_f64());
    registry.register("uptime_seconds", "Seconds since the monitor started", uptime);

    let buffer = Gauge::<i64>::default();
    buffer.set(stats.recv_buffer_bytes as i64);
    registry.register("udp_receive_buffer_bytes", "UDP receive buffer granted by the kernel", buffer);

    render_receive_path(&mut registry, stats);

    let detector = Family::<Labels, Gauge>::default();
    detector.get_or_create(&vec![("detector", stats.detector)]).set(1);
    registry.register("detector_info", "The failure detector in use", detector);

    registry.register(
        "detection_lag_seconds",
        "From a node's computed deadline to the transition it caused",
        stats.detection_lag.clone(),
    );
    render_per_node(&mut registry, stats);
    render_confirm(&mut registry, stats);
    render_alerts(&mut registry, stats, sinks, outbox_depth);
    render_checks(&mut registry, stats);
    render_connections(&mut registry, connections);
    if let Some(cluster) = cluster {
        render_cluster(&mut registry, cluster);
    }

    let mut text = String::new();
    encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// The classic Prometheus text format (version 0.0.4) from OpenMetrics text: what
/// `promtool check metrics` and older scrapers read. The two differ in how counters are
/// named in their `# HELP`/`# TYPE` lines (OpenMetrics names the family, without `_total`),
/// in `# UNIT` lines, and in the closing `# EOF`.
pub fn classic_text(openmetrics: &str) -> String {
    let mut counters = std::collections::BTreeSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line.strip_prefix("# TYPE ").and_then(|rest| rest.strip_suffix(" counter")) {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

type OwnedLabels = Vec<(&'static str, String)>;

fn render_alerts(
    registry: &mut Registry,
    stats: &StatsSnapshot,
    sinks: &BTreeMap<String, SinkHealth>,
    outbox_depth: &[(String, u64)],
) {
    let notifications = Family::<Labels, Counter>::default();
    for kind in ["firing", "reminder", "resolved", "flapping"] {
        let count = stats.alerts.notifications.get(kind).copied().unwrap_or(0);
        notifications.get_or_create(&vec![("kind", kind)]).inc_by(count);
    }
    registry.register("notifications", "Incident notifications made, by kind", notifications);

    let held = Counter::<u64>::default();
    held.inc_by(stats.alerts.held);
    registry.register("notifications_held", "Notifications not made: subject flapping or paused", held);
    let silenced = Counter::<u64>::default();
    silenced.inc_by(stats.alerts.silenced);
    registry.register("notifications_silenced", "Notifications held by a silence", silenced);
    let unpaged = Counter::<u64>::default();
    unpaged.inc_by(stats.alerts.recovered_before_paging);
    registry.register("downs_recovered_before_paging", "Downs that recovered within group_wait", unpaged);
    let groups = Counter::<u64>::default();
    groups.inc_by(stats.alerts.groups_opened);
    registry.register("correlated_failures", "Grouped incidents opened for mass failures", groups);

    let open = Gauge::<i64>::default();
    open.set(stats.open_incidents as i64);
    registry.register("incidents_open", "Incidents not yet resolved", open);

    let held = Gauge::<i64>::default();
    held.set(stats.leases_held as i64);
    registry.register("leases_held", "Leases held now (docs/LEASES.md)", held);
    let granted = Counter::<u64>::default();
    granted.inc_by(stats.leases.granted);
    registry.register("lease_grants", "Leases granted (each with a new fencing token)", granted);
    let ended = Family::<Labels, Counter>::default();
    for (reason, count) in [
        ("released", stats.leases.released),
        ("expired", stats.leases.expired),
        ("node-gone", stats.leases.node_gone),
    ] {
        ended.get_or_create(&vec![("reason", reason)]).inc_by(count);
    }
    registry.register("lease_ends", "Lease tenures ended, by reason", ended);
    let full = Counter::<u64>::default();
    full.inc_by(stats.leases.refused_capacity);
    registry.register(
        "lease_refusals_capacity",
        "Acquires refused: the monitor held its maximum of leases",
        full,
    );

    let deliveries = Family::<OwnedLabels, Counter>::default();
    let failing = Family::<OwnedLabels, Gauge>::default();
    let pending = Family::<OwnedLabels, Gauge>::default();
    for (name, health) in sinks {
        deliveries
            .get_or_create(&vec![("sink", name.clone()), ("result", "delivered".into())])
            .inc_by(health.delivered);
        deliveries
            .get_or_create(&vec![("sink", name.clone()), ("result", "failed".into())])
            .inc_by(health.failed_attempts);
        failing.get_or_create(&vec![("sink", name.clone())]).set(i64::from(health.failing));
        let depth = outbox_depth.iter().find(|(sink, _)| sink == name).map_or(0, |(_, depth)| *depth);
        pending.get_or_create(&vec![("sink", name.clone())]).set(depth as i64);
    }
    let kept = Family::<OwnedLabels, Gauge>::default();
    for (name, health) in sinks {
        if let Some(firing) = health.firing {
            kept.get_or_create(&vec![("sink", name.clone())]).set(firing as i64);
        }
    }
    registry.register("sink_firing_alerts", "Alertmanager sinks: alerts kept firing and re-sent", kept);
    registry.register("alert_deliveries", "Alert delivery attempts, by sink and result", deliveries);
    registry.register("sink_failing", "1 when a sink failed its last attempts in a row", failing);
    registry.register("outbox_pending", "Alerts queued for a sink and not yet delivered", pending);
}

fn render_checks(registry: &mut Registry, stats: &StatsSnapshot) {
    let checks = &stats.checks;
    let pings = Family::<Labels, Counter>::default();
    for signal in Signal::KINDS {
        pings.get_or_create(&vec![("signal", signal)]).inc_by(checks.pings(signal));
    }
    registry.register("pings_received", "HTTP pings accepted, by signal", pings);

    let refused = Family::<Labels, Counter>::default();
    for error in PingError::ALL {
        refused.get_or_create(&vec![("reason", error.as_str())]).inc_by(checks.rejected(error));
    }
    registry.register("pings_rejected", "HTTP pings refused, by reason (rate_limited: 429)", refused);

    let truncated = Counter::<u64>::default();
    truncated.inc_by(checks.bodies_truncated);
    registry.register("ping_bodies_truncated", "Ping bodies cut at pings.body_limit", truncated);

    let steps = Counter::<u64>::default();
    steps.inc_by(checks.wall_steps);
    registry.register(
        "wall_clock_steps",
        "Steps of the wall clock noticed (cron deadlines and maintenance windows mapped again)",
        steps,
    );

    let by_state = Family::<Labels, Gauge>::default();
    for state in NodeState::ALL {
        by_state.get_or_create(&vec![("state", state.as_str())]).set(checks.checks_in(state) as i64);
    }
    registry.register("checks", "Checks, by state", by_state);
}

/// The HTTP server's connections: how many are open against the cap, and those closed by a
/// bound (the cap, or a timeout).
fn render_connections(registry: &mut Registry, connections: &ConnectionStats) {
    let open = Gauge::<i64>::default();
    open.set(connections.open as i64);
    registry.register("http_connections_open", "HTTP connections open now", open);
    let max = Gauge::<i64>::default();
    max.set(connections.max as i64);
    registry.register("http_connections_max", "The cap on open HTTP connections (api.max_connections)", max);
    let accepted = Counter::<u64>::default();
    accepted.inc_by(connections.accepted);
    registry.register("http_connections_accepted", "HTTP connections accepted under the cap", accepted);
    let closed = Family::<Labels, Counter>::default();
    for (reason, count) in [
        ("max_connections", connections.refused),
        ("header_timeout", connections.header_timeouts),
        ("idle_timeout", connections.idle_timeouts),
    ] {
        closed.get_or_create(&vec![("reason", reason)]).inc_by(count);
    }
    registry.register(
        "http_connections_closed",
        "HTTP connections closed by a bound: at once at the cap, or after a timeout",
        closed,
    );
}

/// The UDP receive path and the store's commit latency (the shell's side of throughput).
fn render_receive_path(registry: &mut Registry, stats: &StatsSnapshot) {
    let receive = &stats.receive;
    let datagrams = Counter::<u64>::default();
    datagrams.inc_by(receive.datagrams);
    registry.register(
        "udp_datagrams_read",
        "Datagrams read from the heartbeat socket, before any check",
        datagrams,
    );
    let batches = Counter::<u64>::default();
    batches.inc_by(receive.batches);
    registry.register("udp_receive_batches", "Batched reads (recvmmsg) that returned datagrams", batches);
    let errors = Counter::<u64>::default();
    errors.inc_by(receive.errors);
    registry.register("udp_receive_errors", "Reads from the heartbeat socket that failed", errors);
    if let Some(drops) = receive.kernel_drops {
        let dropped = Counter::<u64>::default();
        dropped.inc_by(drops);
        registry.register(
            "udp_kernel_drops",
            "Datagrams the kernel dropped because the socket's receive buffer was full",
            dropped,
        );
    }
    render_receive_threads(registry, &stats.receive_threads);
    registry.register(
        "store_commit_seconds",
        "From queueing a batch of writes to its commit in the store (pings alone wait up to 10 ms for more)",
        stats.store_commit_seconds.clone(),
    );
}

/// `monitor.receive_threads` > 1: each thread's share (the totals above are their sums).
fn render_receive_threads(registry: &mut Registry, threads: &[crate::monitor::udp::ThreadStats]) {
    if threads.is_empty() {
        return;
    }
    let datagrams = Family::<OwnedLabels, Counter>::default();
    let verified = Family::<OwnedLabels, Counter>::default();
    let dropped = Family::<OwnedLabels, Counter>::default();
    for (index, thread) in threads.iter().enumerate() {
        let label = vec![("thread", index.to_string())];
        datagrams.get_or_create(&label).inc_by(thread.receive.datagrams);
        verified.get_or_create(&label).inc_by(thread.verified);
        dropped.get_or_create(&label).inc_by(thread.handoff_dropped);
    }
    registry.register(
        "udp_thread_datagrams_read",
        "Datagrams read by each receive thread (monitor.receive_threads), before any check",
        datagrams,
    );
    registry.register(
        "udp_thread_datagrams_verified",
        "Datagrams each receive thread authenticated and decoded, for the owner",
        verified,
    );
    registry.register(
        "udp_thread_handoff_dropped",
        "Verified datagrams a receive thread dropped because the owner's queue was full",
        dropped,
    );
}

fn render_per_node(registry: &mut Registry, stats: &StatsSnapshot) {
    let up = Family::<OwnedLabels, Gauge>::default();
    let last = Family::<OwnedLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (node, is_up, last_heartbeat) in &stats.per_node {
        up.get_or_create(&vec![("node", node.clone())]).set(i64::from(*is_up));
        if let Some(seconds) = last_heartbeat {
            last.get_or_create(&vec![("node", node.clone())]).set(*seconds);
        }
    }
    registry.register("node_up", "1 while the node is up (per node, while the fleet is small enough)", up);
    registry.register(
        "node_last_heartbeat_timestamp_seconds",
        "Wall-clock time of the node's last heartbeat (per node, while the fleet is small enough)",
        last,
    );
    let omitted = Gauge::<i64>::default();
    omitted.set(stats.per_node_omitted as i64);
    registry.register(
        "node_series_omitted",
        "Nodes without per-node series because the fleet is over metrics.per_node_series",
        omitted,
    );
}

/// Confirmation (probes of suspects): only when it is on, so that a monitor without it does
/// not export series that can never move.
fn render_confirm(registry: &mut Registry, stats: &StatsSnapshot) {
    let Some(confirm) = &stats.confirm else { return };
    let sent = Family::<Labels, Counter>::default();
    sent.get_or_create(&vec![("kind", "probe")]).inc_by(confirm.probes);
    sent.get_or_create(&vec![("kind", "probe_request")]).inc_by(confirm.probe_requests);
    registry.register("probes_sent", "Probes of suspect nodes, direct or through other agents", sent);
    let unsent = Counter::<u64>::default();
    unsent.inc_by(stats.probes_unsent);
    registry.register("probes_unsent", "Probes the kernel would not take at once (dropped)", unsent);
    let rounds = Family::<Labels, Counter>::default();
    for (outcome, count) in [
        ("answered", confirm.answered),
        ("answered_indirectly", confirm.answered_indirectly),
        ("unanswered", confirm.unanswered),
        ("skipped_budget", confirm.rounds_skipped),
    ] {
        rounds.get_or_create(&vec![("outcome", outcome)]).inc_by(count);
    }
    registry.register("confirmation_rounds", "Confirmation rounds, by how they ended", rounds);
    let in_progress = Gauge::<i64>::default();
    in_progress.set(stats.confirmations_in_progress as i64);
    registry.register("confirmations_in_progress", "Suspect nodes being probed or rechecked", in_progress);
}

/// `[cluster]`: who leads, the fencing token, and etcd's health as this monitor sees it.
fn render_cluster(registry: &mut Registry, cluster: &crate::cluster::ClusterStatus) {
    let leader = Gauge::<i64>::default();
    leader.set(i64::from(cluster.role == "leader"));
    registry.register("cluster_leader", "1 while this monitor leads its cluster", leader);
    let token = Gauge::<i64>::default();
    token.set(cluster.fencing_token.unwrap_or(0));
    registry.register(
        "cluster_fencing_token",
        "The current leader's fencing token (its election key's revision)",
        token,
    );
    let up = Gauge::<i64>::default();
    up.set(i64::from(cluster.etcd_reachable));
    registry.register("cluster_etcd_up", "1 while the last request to etcd succeeded", up);
    let members = Gauge::<i64>::default();
    members.set(cluster.members.len() as i64);
    registry.register("cluster_members", "Monitors registered in the cluster", members);
    let errors = Counter::<u64>::default();
    errors.inc_by(cluster.etcd_errors);
    registry.register("cluster_etcd_errors", "Sessions with etcd that failed or could not be made", errors);
    let won = Counter::<u64>::default();
    won.inc_by(cluster.elections_won);
    registry.register("cluster_elections_won", "Times this monitor became leader", won);
    let cut = Gauge::<i64>::default();
    cut.set(i64::from(cluster.cut_off.contains(&cluster.monitor)));
    registry.register(
        "cluster_cut_off",
        "1 while this monitor cannot hear most of the fleet and the other monitors can",
        cut,
    );
    let gauges = [
        ("cluster_agreed_down", "Nodes a quorum of the counting monitors say are down", cluster.agreed_down),
        (
            "cluster_in_doubt",
            "Nodes some monitors cannot hear while fewer than the quorum say they are down",
            cluster.in_doubt_total,
        ),
        ("cluster_voters", "Monitors whose verdicts count (live, not cut off)", cluster.voters.len()),
        ("cluster_quorum", "Monitors that must agree a node is down", cluster.quorum),
        (
            "cluster_failing_open",
            "1 while etcd is out of reach for longer than fail_open_after and this monitor pages on its own view",
            usize::from(cluster.failing_open),
        ),
    ];
    for (name, help, value) in gauges {
        let gauge = Gauge::<i64>::default();
        gauge.set(value as i64);
        registry.register(name, help, gauge);
    }
    if let Some(milliseconds) = cluster.etcd_round_trip_ms {
        let round_trip = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        round_trip.set(milliseconds / 1000.0);
        registry.register_with_unit(
            "cluster_etcd_round_trip",
            "The last lease renewal's round trip to etcd",
            prometheus_client::registry::Unit::Seconds,
            round_trip,
        );
    }
    let refused = Counter::<u64>::default();
    refused.inc_by(cluster.fenced_refused);
    registry.register(
        "cluster_fenced_refused",
        "Alerts and incident writes refused by the fence (made under a leadership this monitor no longer had)",
        refused,
    );
    let writes = Counter::<u64>::default();
    writes.inc_by(cluster.etcd_writes);
    registry.register(
        "cluster_etcd_writes",
        "Transactions written to etcd for verdicts and incidents",
        writes,
    );
}

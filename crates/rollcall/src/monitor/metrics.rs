//! `/metrics` in the Prometheus/OpenMetrics text format, built from a stats snapshot at each
//! scrape (the core keeps plain counters; nothing here is on the heartbeat path).

use super::owner::StatsSnapshot;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rollcall_proto::monitor::{NodeState, Rejection};

type Labels = Vec<(&'static str, &'static str)>;

pub fn render(stats: &StatsSnapshot) -> String {
    let mut registry = Registry::with_prefix("rollcall");
    let core = &stats.core;

    let received = Family::<Labels, Counter>::default();
    received.get_or_create(&vec![("kind", "heartbeat")]).inc_by(core.heartbeats);
    received.get_or_create(&vec![("kind", "goodbye")]).inc_by(core.goodbyes);
    registry.register("heartbeats_received", "Authenticated, fresh datagrams accepted", received);

    let rejected = Family::<Labels, Counter>::default();
    for reason in Rejection::all() {
        let count = core.rejected.get(reason.as_str()).copied().unwrap_or(0);
        rejected.get_or_create(&vec![("reason", reason.as_str())]).inc_by(count);
    }
    registry.register("heartbeats_rejected", "Datagrams dropped, by reason", rejected);

    let nodes = Family::<Labels, Gauge>::default();
    for state in NodeState::ALL {
        nodes.get_or_create(&vec![("state", state.as_str())]).set(core.nodes_in(state) as i64);
    }
    registry.register("nodes", "Tracked nodes, by state", nodes);

    let transitions = Family::<Labels, Counter>::default();
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

    let uptime = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    uptime.set(stats.uptime.as_secs_f64());
    registry.register("uptime_seconds", "Seconds since the monitor started", uptime);

    let buffer = Gauge::<i64>::default();
    buffer.set(stats.recv_buffer_bytes as i64);
    registry.register("udp_receive_buffer_bytes", "UDP receive buffer granted by the kernel", buffer);

    let detector = Family::<Labels, Gauge>::default();
    detector.get_or_create(&vec![("detector", stats.detector)]).set(1);
    registry.register("detector_info", "The failure detector in use", detector);

    let mut text = String::new();
    encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

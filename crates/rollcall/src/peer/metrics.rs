//! `/metrics` for a peer, in the Prometheus text format (version 0.0.4), written from a
//! stats snapshot at each scrape. Every series a peer can ever export exists from the start
//! (at zero), so that `rate()` and alerts on them work before the first event. The alerting
//! series exist when sinks are configured (one per sink from the start), not otherwise.

use super::alerting::AlertsSnapshot;
use super::owner::{STATES, StatsSnapshot};
use crate::alerts::delivery::SinkHealth;
use crate::http_server::ConnectionStats;
use rollcall_core::swim::Rejection;
use std::collections::BTreeMap;
use std::fmt::{Display, Write};

/// The transitions exported from the start, at zero, besides any other seen.
const COMMON_TRANSITIONS: [(&str, &str); 7] = [
    ("new", "up"),
    ("up", "suspect"),
    ("suspect", "up"),
    ("suspect", "down"),
    ("down", "up"),
    ("up", "left"),
    ("up", "down"),
];

/// The text for a stats snapshot and each sink's health with its undelivered outbox rows.
pub fn render(
    stats: &StatsSnapshot,
    sinks: &BTreeMap<String, (SinkHealth, u64)>,
    connections: &ConnectionStats,
) -> String {
    let core = &stats.core;
    let mut out = Text::default();

    out.family("rollcall_peer_info", "gauge", "This peer: its name, cluster and version (always 1)");
    let version = env!("CARGO_PKG_VERSION");
    out.sample(
        "rollcall_peer_info",
        &[("name", &stats.name), ("cluster", &stats.cluster), ("version", version)],
        1,
    );

    out.family("rollcall_peer_members", "gauge", "Members in this peer's view (itself included), by state");
    for (state, count) in STATES.iter().zip(stats.members) {
        out.sample("rollcall_peer_members", &[("state", state.as_str())], count);
    }

    let counters: [(&str, &str, u64); 12] = [
        ("rollcall_peer_datagrams_received_total", "Authenticated datagrams accepted", core.received),
        ("rollcall_peer_datagrams_sent_total", "Datagrams sent", core.sent),
        ("rollcall_peer_sent_bytes_total", "Bytes of datagrams sent", core.sent_bytes),
        ("rollcall_peer_probes_total", "Probes started (one per protocol period)", core.probes),
        (
            "rollcall_peer_probes_failed_total",
            "Probes that ended without any ack, direct or indirect",
            core.failed_probes,
        ),
        (
            "rollcall_peer_indirect_probe_rounds_total",
            "Probes whose direct ping timed out, so others were asked",
            core.indirect_rounds,
        ),
        ("rollcall_peer_refutes_total", "Times this peer refuted a suspicion of itself", core.refutes),
        (
            "rollcall_peer_late_acks_total",
            "Acks for no open probe (late, duplicated, or answering a recheck of a suspect)",
            core.late_acks,
        ),
        (
            "rollcall_peer_members_refused_total",
            "Updates about new members dropped because the table was full",
            core.members_refused,
        ),
        (
            "rollcall_peer_forwards_refused_total",
            "Indirect probe requests dropped because too many were running",
            core.forwards_refused,
        ),
        (
            "rollcall_peer_accusations_distrusted_total",
            "Accusations ignored because their sender was held down or left",
            core.distrusted,
        ),
        (
            "rollcall_peer_events_dropped_total",
            "Transitions dropped from the API's bounded list (oldest first)",
            stats.events_dropped,
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help);
        out.sample(name, &[], value);
    }

    let name = "rollcall_peer_datagrams_rejected_total";
    out.family(name, "counter", "Datagrams dropped, by reason");
    for reason in Rejection::ALL {
        let count = core.rejected.get(&reason).copied().unwrap_or(0);
        out.sample(name, &[("reason", reason.as_str())], count);
    }

    let name = "rollcall_peer_socket_errors_total";
    out.family(name, "counter", "UDP sends and receives that failed, by direction");
    out.sample(name, &[("direction", "send")], stats.send_errors);
    out.sample(name, &[("direction", "receive")], stats.receive_errors);

    let name = "rollcall_peer_transitions_total";
    out.family(name, "counter", "Member transitions this peer saw, by kind");
    let mut transitions = stats.transitions.clone();
    for key in COMMON_TRANSITIONS {
        transitions.entry(key).or_default();
    }
    for ((from, to), count) in transitions {
        out.sample(name, &[("from", from), ("to", to)], count);
    }

    let gauges: [(&str, &str, u64); 4] = [
        (
            "rollcall_peer_health_score",
            "Lifeguard's local health score: probe interval and timeout are multiplied by score + 1",
            u64::from(stats.health_score),
        ),
        ("rollcall_peer_health_score_max", "The local health score's ceiling", u64::from(stats.max_health)),
        (
            "rollcall_peer_incarnation",
            "This peer's incarnation (raised to refute suspicions)",
            u64::from(stats.incarnation),
        ),
        (
            "rollcall_peer_gossip_queued",
            "Membership updates waiting to be piggybacked",
            stats.queued_updates as u64,
        ),
    ];
    for (name, help, value) in gauges {
        out.family(name, "gauge", help);
        out.sample(name, &[], value);
    }
    out.family("rollcall_peer_uptime_seconds", "gauge", "Seconds since the peer started");
    out.sample("rollcall_peer_uptime_seconds", &[], stats.uptime.as_secs_f64());
    render_connections(&mut out, connections);
    if let Some(alerts) = &stats.alerts {
        render_alerts(&mut out, alerts, sinks);
    }
    out.0
}

/// The HTTP server's connections: how many are open against the cap, and those closed by a
/// bound (the cap, or a timeout).
fn render_connections(out: &mut Text, connections: &ConnectionStats) {
    let gauges = [
        ("rollcall_peer_http_connections_open", "HTTP connections open now", connections.open),
        (
            "rollcall_peer_http_connections_max",
            "The cap on open HTTP connections (--max-connections)",
            connections.max,
        ),
    ];
    for (name, help, value) in gauges {
        out.family(name, "gauge", help);
        out.sample(name, &[], value);
    }
    let name = "rollcall_peer_http_connections_accepted_total";
    out.family(name, "counter", "HTTP connections accepted under the cap");
    out.sample(name, &[], connections.accepted);
    let name = "rollcall_peer_http_connections_closed_total";
    out.family(name, "counter", "HTTP connections closed by a bound: at once at the cap, or after a timeout");
    out.sample(name, &[("reason", "max_connections")], connections.refused);
    out.sample(name, &[("reason", "header_timeout")], connections.header_timeouts);
    out.sample(name, &[("reason", "idle_timeout")], connections.idle_timeouts);
}

/// The incident layer's counters, the store's, and each sink's deliveries.
fn render_alerts(out: &mut Text, alerts: &AlertsSnapshot, sinks: &BTreeMap<String, (SinkHealth, u64)>) {
    let name = "rollcall_peer_notifications_total";
    out.family(name, "counter", "Incident notifications made from this peer's view, by kind");
    for kind in ["firing", "reminder", "resolved", "flapping"] {
        let count = alerts.stats.notifications.get(kind).copied().unwrap_or(0);
        out.sample(name, &[("kind", kind)], count);
    }
    let counters: [(&str, &str, u64); 4] = [
        (
            "rollcall_peer_notifications_held_total",
            "Notifications not made: member flapping",
            alerts.stats.held,
        ),
        (
            "rollcall_peer_correlated_failures_total",
            "Grouped incidents opened for mass failures",
            alerts.stats.groups_opened,
        ),
        ("rollcall_peer_store_commits_total", "Store transactions committed", alerts.store_batches),
        (
            "rollcall_peer_store_errors_total",
            "Store commits that failed (and were retried)",
            alerts.store_errors,
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help);
        out.sample(name, &[], value);
    }
    out.family("rollcall_peer_incidents_open", "gauge", "Incidents not yet resolved");
    out.sample("rollcall_peer_incidents_open", &[], alerts.open_incidents);

    let name = "rollcall_peer_alert_deliveries_total";
    out.family(name, "counter", "Alert delivery attempts, by sink and result");
    for (sink, (health, _)) in sinks {
        out.sample(name, &[("sink", sink), ("result", "delivered")], health.delivered);
        out.sample(name, &[("sink", sink), ("result", "failed")], health.failed_attempts);
    }
    let name = "rollcall_peer_sink_failing";
    out.family(name, "gauge", "1 when a sink failed its last attempts in a row");
    for (sink, (health, _)) in sinks {
        out.sample(name, &[("sink", sink)], u8::from(health.failing));
    }
    let name = "rollcall_peer_outbox_pending";
    out.family(name, "gauge", "Alerts queued for a sink and not yet delivered");
    for (sink, (_, pending)) in sinks {
        out.sample(name, &[("sink", sink)], pending);
    }
}

/// A text exposition being written.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (index, (key, text)) in labels.iter().enumerate() {
                if index > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape(text));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

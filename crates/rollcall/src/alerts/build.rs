//! Turns the core's notifications into alert documents and outbox rows.

use super::model::{ALERT_VERSION, Alert, IncidentInfo, Subject, TransitionInfo};
use super::sinks::SinkConfig;
use crate::clock::{Clock, rfc3339_ms};
use rollcall_core::alerts::{self as core, Admission, Notification, NotificationKind};
use rollcall_core::monitor::Transition;
use rollcall_core::wire::ExitStatus;
use rollcall_store::{IncidentChangeRecord, IncidentRecord, OutboxEntry, Write};
use std::collections::BTreeMap;

/// Most members a group's summary names; the rest are counted ("and 4,990 more").
pub const NODES_IN_SUMMARY: usize = 10;
/// Most members an alert document lists in `nodes` (`node_count` has the total, and
/// `/v1/incidents` the full list): a mass failure of thousands must not make a body of
/// hundreds of kilobytes, nor an exec sink's environment too large for the kernel.
pub const NODES_IN_ALERT: usize = 100;

/// "3 nodes (a, b, c)", or "5000 nodes (a, b, ... j and 4990 more)".
fn group_who(members: &[String]) -> String {
    let named = &members[..members.len().min(NODES_IN_SUMMARY)];
    let rest = members.len() - named.len();
    if rest == 0 {
        format!("{} nodes ({})", members.len(), named.join(", "))
    } else {
        format!("{} nodes ({} and {rest} more)", members.len(), named.join(", "))
    }
}

/// How a watched process ended, for people: " (signal 9, SIGKILL)", " (exit code 3)", or
/// nothing when the agent could not tell (a pid watched through a pidfd).
pub fn exit_detail(exit: &ExitStatus) -> String {
    match (exit.code, exit.signal) {
        (_, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(name) => format!(" (signal {signal}, {})", name.as_str()),
            Err(_) => format!(" (signal {signal})"),
        },
        (Some(code), None) => format!(" (exit code {code})"),
        (None, None) => String::new(),
    }
}

/// The alert document for a notification. `labels` are the subject's labels (for a group:
/// those its members share).
pub fn alert(notification: &Notification, labels: BTreeMap<String, String>, clock: &Clock) -> Alert {
    let subject_word = match notification.subject_kind {
        core::SubjectKind::Node => "node",
        core::SubjectKind::Check => "check",
        core::SubjectKind::Group => "nodes",
    };
    let who = match notification.subject_kind {
        core::SubjectKind::Group => group_who(&notification.members),
        _ => format!("{subject_word} {}", notification.subject),
    };
    let summary = match notification.kind {
        NotificationKind::Firing => match &notification.transition {
            Some(Transition { exit: Some(exit), .. }) => {
                format!("{who} is down: process exited{}", exit_detail(exit))
            }
            Some(t) => format!("{who} is down ({})", t.reason.as_str()),
            None if notification.subject_kind == core::SubjectKind::Group => {
                format!("{who} down at once: a correlated failure, or trouble on the monitor's side")
            }
            None => format!("{who} is down"),
        },
        NotificationKind::Reminder => format!("{who} still down"),
        NotificationKind::Resolved => format!("{who} recovered"),
        NotificationKind::Flapping => format!("{who} is flapping; its alerts are held until it settles"),
    };
    Alert {
        version: ALERT_VERSION,
        idempotency_key: notification.idempotency_key(),
        kind: notification.kind,
        severity: notification.severity,
        incident: IncidentInfo {
            id: notification.incident,
            started_at: rfc3339_ms(clock.wall_ms(notification.started_at)),
            resolved_at: notification.resolved_at.map(|at| rfc3339_ms(clock.wall_ms(at))),
        },
        subject: Subject { kind: notification.subject_kind, id: notification.subject.clone() },
        nodes: notification.members.iter().take(NODES_IN_ALERT).cloned().collect(),
        node_count: notification.members.len(),
        labels,
        transition: notification.transition.as_ref().map(|t| TransitionInfo {
            from: t.from,
            to: t.to,
            reason: t.reason,
            at: rfc3339_ms(clock.wall_ms(t.at)),
            exit_code: t.exit.and_then(|exit| exit.code),
            exit_signal: t.exit.and_then(|exit| exit.signal),
        }),
        summary,
        fencing_token: None,
    }
}

/// The writes that make a notification durable: its incident's row, its change in the
/// event sequence, and (unless a silence holds it, see [`Admission`]) one outbox row per sink
/// whose route takes it.
pub fn writes(
    notification: &Notification,
    alert: &Alert,
    admission: Admission,
    sinks: &[SinkConfig],
    clock: &Clock,
    out: &mut Vec<Write>,
) {
    let now_ms = clock.wall_ms(clock.now());
    let record = IncidentRecord {
        id: notification.incident,
        kind: notification.kind,
        severity: notification.severity,
        subject_kind: notification.subject_kind,
        subject: notification.subject.clone(),
        members: notification.members.clone(),
        started_at_ms: clock.wall_ms(notification.started_at),
        resolved_at_ms: notification.resolved_at.map(|at| clock.wall_ms(at)),
        next_sequence: notification.sequence + 1,
        last_notified_at_ms: now_ms,
        silenced_by: match admission {
            Admission::Hold { silence } => Some(silence),
            Admission::Deliver | Admission::Drop => None,
        },
        notified: admission == Admission::Deliver,
    };
    let change = match notification.kind {
        NotificationKind::Firing if notification.sequence == 0 => "opened",
        NotificationKind::Firing => "notified",
        NotificationKind::Reminder => "reminded",
        NotificationKind::Flapping => "flapping",
        NotificationKind::Resolved => "resolved",
    };
    out.push(Write::Incident(record.clone()));
    out.push(Write::IncidentChange(IncidentChangeRecord {
        id: 0,
        incident: record,
        change: change.to_string(),
        at_ms: now_ms,
        sent: admission == Admission::Deliver,
        summary: alert.summary.clone(),
    }));
    if admission != Admission::Deliver {
        return;
    }
    outbox_rows(alert, notification.incident, &notification.subject, sinks, clock, out);
}

/// One outbox row per sink whose route takes `alert`.
pub fn outbox_rows(
    alert: &Alert,
    incident: u64,
    subject: &str,
    sinks: &[SinkConfig],
    clock: &Clock,
    out: &mut Vec<Write>,
) {
    let now_ms = clock.wall_ms(clock.now());
    let payload = serde_json::to_string(alert).expect("an alert document always serializes");
    for sink in sinks.iter().filter(|sink| sink.routes(alert)) {
        out.push(Write::Outbox(OutboxEntry {
            sink: sink.name.clone(),
            idempotency_key: alert.idempotency_key.clone(),
            incident,
            subject: subject.to_string(),
            payload: payload.clone(),
            created_at_ms: now_ms,
        }));
    }
}

/// An open incident read from the store, on the current clock.
pub fn restored_incident(record: &IncidentRecord, clock: &Clock) -> core::OpenIncident {
    core::OpenIncident {
        id: record.id,
        // An open incident was opened by a firing or a flapping notification.
        kind: match record.kind {
            NotificationKind::Flapping => NotificationKind::Flapping,
            _ => NotificationKind::Firing,
        },
        severity: record.severity,
        subject_kind: record.subject_kind,
        subject: record.subject.clone(),
        members: record.members.clone(),
        started_at: clock.instant_at_wall_ms(record.started_at_ms),
        next_sequence: record.next_sequence,
        last_notified: clock.instant_at_wall_ms(record.last_notified_at_ms),
    }
}

#[cfg(test)]
mod tests;

//! The canonical alert document: what the outbox stores and what every sink renders from.
//! The webhook sink posts it as is; its fields are documented in docs/ALERTS.md.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the alert document; bumped on incompatible changes.
pub const ALERT_VERSION: u32 = 1;

/// One notification about one incident, as delivered to sinks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub version: u32,
    /// Stable across retries and restarts: `rollcall-{incident}-{sequence}`. Receivers
    /// de-duplicate on it (delivery is at least once).
    pub idempotency_key: String,
    pub kind: AlertKind,
    pub severity: Severity,
    pub incident: IncidentInfo,
    pub subject: Subject,
    /// The nodes (or checks) concerned: one for a single failure, several for a group.
    pub nodes: Vec<String>,
    /// The subject's labels (for a group: the labels all its members share).
    pub labels: BTreeMap<String, String>,
    /// The transition that caused this notification, if one did (reminders have none).
    pub transition: Option<TransitionInfo>,
    /// One human sentence.
    pub summary: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// A node or check went down: an incident opens.
    Firing,
    /// The incident is still open after the repeat interval.
    Reminder,
    /// The node or check recovered (or left): the incident closes.
    Resolved,
    /// The subject changes state too often; its alerts are held until it settles.
    Flapping,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentInfo {
    pub id: u64,
    /// RFC 3339: when the incident should have opened (the deadline that was crossed).
    pub started_at: String,
    /// RFC 3339, set on `resolved`.
    pub resolved_at: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub kind: SubjectKind,
    /// Node id, check id, or a group's name (`correlated-failure`).
    pub id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    Node,
    Check,
    Group,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionInfo {
    pub from: String,
    pub to: String,
    pub reason: String,
    /// RFC 3339: when it should have happened (the computed deadline).
    pub at: String,
}

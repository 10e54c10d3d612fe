//! The canonical alert document: what the outbox stores and what every sink renders from.
//! The webhook sink posts the stored bytes as they are ([`StoredAlert`]); the fields are
//! documented in docs/ALERTS.md.

pub use rollcall_core::alerts::{Severity, SubjectKind};
use rollcall_core::monitor::{NodeState, Reason};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

// The document's words (`kind`, `severity`, `subject.kind`, `transition.from`, `.to`,
// `.reason`) are the core's types, serialised (feature `serde`) as their `as_str`: one type
// per concept, no copy to keep in step.

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
    /// The nodes (or checks) concerned: one for a single failure, several for a group (at
    /// most [`super::build::NODES_IN_ALERT`] of them: the first ones).
    pub nodes: Vec<String>,
    /// How many nodes (or checks) are concerned in all (0 in documents queued by versions
    /// before it existed).
    #[serde(default)]
    pub node_count: usize,
    /// The subject's labels (for a group: the labels all its members share).
    pub labels: BTreeMap<String, String>,
    /// The transition that caused this notification, if one did (reminders have none).
    pub transition: Option<TransitionInfo>,
    /// One human sentence.
    pub summary: String,
    /// With `[cluster]`: the fencing token of the leader that sent it (the revision of its
    /// election key, higher for every new leader). A receiver that remembers the highest it
    /// saw can refuse an alert from a leader that was replaced (docs/HA.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing_token: Option<i64>,
}

/// An alert document as the outbox holds it: the committed bytes, and the document parsed
/// from them once. The webhook sink posts and signs `payload` itself: parsing and serialising
/// again could change what receivers get (a document queued by an older version would gain
/// the fields it lacked, with their defaults), and the body must be what was committed.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredAlert {
    pub alert: Alert,
    /// The document's JSON, byte for byte as stored.
    pub payload: String,
}

impl StoredAlert {
    /// Reads a document from the outbox; fails if `payload` is not an alert document.
    pub fn parse(payload: String) -> Result<StoredAlert, serde_json::Error> {
        let alert = serde_json::from_str(&payload)?;
        Ok(StoredAlert { alert, payload })
    }
}

/// The document's `kind`: the kind of the notification (`firing`, `reminder`, `resolved`,
/// `flapping`), the core's type under the name the document gives it.
pub type AlertKind = rollcall_core::alerts::NotificationKind;

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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionInfo {
    pub from: NodeState,
    pub to: NodeState,
    pub reason: Reason,
    /// RFC 3339: when it should have happened (the computed deadline).
    pub at: String,
    /// For `process-exited`: the watched process's exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// For `process-exited`: the signal that killed the watched process, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<i32>,
}

/// An incident as the API (`/v1/incidents`) and the event stream show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IncidentJson {
    pub id: u64,
    /// The kind of its first notification: `firing` or `flapping`.
    pub kind: String,
    pub severity: String,
    pub subject_kind: String,
    pub subject: String,
    pub members: Vec<String>,
    pub started_at: String,
    pub resolved_at: Option<String>,
    /// Notifications made so far (sent or held).
    pub notifications: u32,
    pub last_notified_at: String,
    /// The silence holding its notifications, if one does.
    pub silenced_by: Option<u64>,
}

impl From<&rollcall_store::IncidentRecord> for IncidentJson {
    fn from(row: &rollcall_store::IncidentRecord) -> IncidentJson {
        use crate::clock::rfc3339_ms;
        IncidentJson {
            id: row.id,
            kind: row.kind.as_str().to_string(),
            severity: row.severity.as_str().to_string(),
            subject_kind: row.subject_kind.as_str().to_string(),
            subject: row.subject.clone(),
            members: row.members.clone(),
            started_at: rfc3339_ms(row.started_at_ms),
            resolved_at: row.resolved_at_ms.map(rfc3339_ms),
            notifications: row.next_sequence,
            last_notified_at: rfc3339_ms(row.last_notified_at_ms),
            silenced_by: if row.resolved_at_ms.is_none() { row.silenced_by } else { None },
        }
    }
}

#[cfg(test)]
mod tests;

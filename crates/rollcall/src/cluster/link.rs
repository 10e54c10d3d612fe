//! What the monitor's tasks and the cluster session hand each other (`[cluster]` only).
//!
//! - The owner publishes its own verdicts (the nodes it cannot hear) through [`Link::publish`];
//!   the session writes them to etcd in batches, coalesced per node, never per heartbeat.
//! - The owner hands each notification of a cluster incident to the session as a
//!   [`FencedWrite`]; the session commits its incident record to etcd in a transaction that
//!   compares the leader key, and only then queues its outbox rows in the local store.
//! - Delivery loops ask the [`Gate`] before sending an alert that carries a fencing token,
//!   and report what they delivered, so the incident record says what was sent.

use super::agree::{Opinion, Vote};
use crate::alerts::model::Alert;
use rollcall_core::alerts::{NotificationKind, Severity, SubjectKind};
use rollcall_store::Write;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{Notify, mpsc, watch};

/// Cluster incidents' ids start here, far above any id a single monitor's store allocates for
/// its own incidents (job checks), so the two never collide in a store.
pub const INCIDENT_ID_BASE: u64 = 1 << 40;

/// An incident of the cluster, as stored in etcd under `/{prefix}/{name}/incidents/{id}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IncidentDoc {
    pub id: u64,
    /// The core's own types, stored as their words (`firing`, `critical`, `node`...): the
    /// document's bytes are those of every earlier version.
    pub kind: NotificationKind,
    pub severity: Severity,
    pub subject_kind: SubjectKind,
    pub subject: String,
    pub members: Vec<String>,
    pub started_at_ms: i64,
    pub next_sequence: u32,
    pub last_notified_at_ms: i64,
    pub resolved: bool,
    /// The sequence of the last notification made, and of the last one every sink took.
    pub notified_sequence: u32,
    pub delivered_sequence: Option<u32>,
    /// The last notification's document, re-sent by a new leader if it was not delivered.
    pub last_alert: Option<Alert>,
    /// The fencing token of the leader that wrote this.
    pub token: i64,
}

impl IncidentDoc {
    pub fn undelivered(&self) -> bool {
        self.last_alert.is_some() && self.delivered_sequence.is_none_or(|seq| seq < self.notified_sequence)
    }
}

/// A notification of a cluster incident, waiting for its fenced commit.
#[derive(Debug)]
pub struct FencedWrite {
    /// The leadership (fencing token) under which the owner made it.
    pub token: i64,
    /// The takeover under which the owner made it: writes of an earlier tenure are refused
    /// even when it had the same token (a session remade on the same lease), since the new
    /// tenure's incident layer was rebuilt from etcd without them.
    pub epoch: u64,
    pub doc: IncidentDoc,
    /// The local writes (incident row, change, outbox rows) to queue once etcd took it.
    pub local: Vec<Write>,
    /// How many outbox rows `local` holds (0: nothing to deliver).
    pub rows: usize,
}

/// Whether this monitor may deliver an alert stamped with a fencing token: only while it
/// leads with that token and its tenure lasts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gate {
    pub token: Option<i64>,
    pub until: Option<Instant>,
}

impl Gate {
    pub fn allows(&self, token: i64, now: Instant) -> bool {
        self.token == Some(token) && self.until.is_some_and(|until| now < until)
    }
}

#[derive(Default)]
struct Verdicts {
    /// Changes not yet written to etcd, latest per node (`None`: hears it again).
    pending: HashMap<String, Option<Vote>>,
    /// Every node this monitor cannot hear now (written again on a new lease).
    current: HashMap<String, Vote>,
    /// Nodes this monitor paged on its own view while failing open, with the key: kept in
    /// their votes until it hears them again.
    paged: HashMap<String, String>,
}

/// Shared by the owner, the delivery loops and the session.
pub struct Link {
    verdicts: Mutex<Verdicts>,
    published: Notify,
    fenced: mpsc::UnboundedSender<FencedWrite>,
    delivered: mpsc::UnboundedSender<String>,
    gate: watch::Receiver<Gate>,
    /// Alerts and incident writes refused by the fence (no longer leader, or another leads).
    pub refused: AtomicU64,
    /// Transactions written to etcd for verdicts and incidents (for the figures).
    pub etcd_writes: AtomicU64,
}

/// The session's ends of the [`Link`].
pub struct SessionEnds {
    pub fenced: mpsc::UnboundedReceiver<FencedWrite>,
    pub delivered: mpsc::UnboundedReceiver<String>,
    pub gate: watch::Sender<Gate>,
}

impl Link {
    pub fn new() -> (std::sync::Arc<Link>, SessionEnds) {
        let (fenced_tx, fenced) = mpsc::unbounded_channel();
        let (delivered_tx, delivered) = mpsc::unbounded_channel();
        let (gate, gate_rx) = watch::channel(Gate::default());
        let link = Link {
            verdicts: Mutex::default(),
            published: Notify::new(),
            fenced: fenced_tx,
            delivered: delivered_tx,
            gate: gate_rx,
            refused: AtomicU64::new(0),
            etcd_writes: AtomicU64::new(0),
        };
        (std::sync::Arc::new(link), SessionEnds { fenced, delivered, gate })
    }

    /// This monitor's own verdict on `node` changed (`None`: it hears the node).
    pub fn publish(&self, node: &str, mut vote: Option<Vote>) {
        let mut verdicts = self.verdicts.lock().expect("not poisoned");
        // Hearing a node this monitor already hears (a restart noticed while up, a first
        // heartbeat) changes nothing in etcd: no write.
        if vote.is_none() && !verdicts.current.contains_key(node) && !verdicts.pending.contains_key(node) {
            return;
        }
        match vote.as_mut() {
            Some(vote) => {
                vote.paged = verdicts.paged.get(node).cloned();
                verdicts.current.insert(node.to_string(), vote.clone());
            }
            None => {
                verdicts.paged.remove(node);
                verdicts.current.remove(node);
            }
        };
        verdicts.pending.insert(node.to_string(), vote);
        drop(verdicts);
        self.published.notify_one();
    }

    /// This monitor paged `node` on its own view under `key` (failing open): its vote says
    /// so from now on, until it hears the node again.
    pub fn mark_paged(&self, node: &str, key: &str) {
        let vote = {
            let mut verdicts = self.verdicts.lock().expect("not poisoned");
            verdicts.paged.insert(node.to_string(), key.to_string());
            verdicts.current.get(node).cloned()
        };
        if vote.is_some() {
            self.publish(node, vote);
        }
    }

    /// A local state as a vote: suspect and down are published, the rest is hearing it.
    pub fn vote_for(state: rollcall_core::monitor::NodeState, reason: &str) -> Option<Vote> {
        use rollcall_core::monitor::NodeState;
        let state = match state {
            NodeState::Suspect => Opinion::Suspect,
            NodeState::Down => Opinion::Down,
            _ => return None,
        };
        Some(Vote { state, reason: reason.to_string(), paged: None })
    }

    /// Waits until there is something to publish.
    pub async fn wait_published(&self) {
        self.published.notified().await;
    }

    /// Takes the changes to write; with `everything`, every current verdict (a new lease:
    /// the old one's keys went with it).
    pub fn take_pending(&self, everything: bool) -> Vec<(String, Option<Vote>)> {
        let mut verdicts = self.verdicts.lock().expect("not poisoned");
        let mut pending: Vec<(String, Option<Vote>)> =
            std::mem::take(&mut verdicts.pending).into_iter().collect();
        if everything {
            pending =
                verdicts.current.iter().map(|(node, vote)| (node.clone(), Some(vote.clone()))).collect();
        }
        pending
    }

    /// Puts back changes that could not be written (the session was lost); newer ones win.
    pub fn put_back(&self, changes: Vec<(String, Option<Vote>)>) {
        let mut verdicts = self.verdicts.lock().expect("not poisoned");
        for (node, vote) in changes {
            verdicts.pending.entry(node).or_insert(vote);
        }
    }

    pub fn fenced_write(&self, write: FencedWrite) {
        // The session lives as long as the monitor; a send fails only at shutdown.
        let _ = self.fenced.send(write);
    }

    /// A delivery loop delivered the alert with this idempotency key to its sink.
    pub fn delivered(&self, key: &str) {
        let _ = self.delivered.send(key.to_string());
    }

    pub fn gate(&self) -> Gate {
        *self.gate.borrow()
    }

    pub fn count_refused(&self, count: u64) {
        self.refused.fetch_add(count, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcall_core::monitor::NodeState;

    #[test]
    fn hearing_a_node_already_heard_writes_nothing_and_a_recovery_deletes_the_vote() {
        let (link, _ends) = Link::new();
        link.publish("web-1", None);
        assert!(link.take_pending(false).is_empty(), "a restart noticed while up is not a change");
        link.publish("web-1", Link::vote_for(NodeState::Down, "phi"));
        link.publish("web-1", None);
        assert_eq!(link.take_pending(false), vec![("web-1".to_string(), None)]);
        assert!(link.take_pending(true).is_empty(), "nothing left to write again on a new lease");
    }

    #[test]
    fn a_node_paged_while_failing_open_carries_the_key_until_heard_again() {
        let (link, _ends) = Link::new();
        link.publish("db", Link::vote_for(NodeState::Down, "phi"));
        link.mark_paged("db", "rollcall-prod-m1-5-0");
        let written = link.take_pending(true);
        assert_eq!(
            written[0].1.as_ref().and_then(|vote| vote.paged.clone()),
            Some("rollcall-prod-m1-5-0".into())
        );
        link.publish("db", None);
        link.publish("db", Link::vote_for(NodeState::Down, "phi"));
        let again = link.take_pending(false);
        assert_eq!(
            again[0].1.as_ref().map(|vote| vote.paged.clone()),
            Some(None),
            "a new failure is not the paged one"
        );
    }

    /// The incident document in etcd is read by every monitor of the cluster, of whatever
    /// version: typed fields keep the words the strings held.
    #[test]
    fn an_incident_document_keeps_its_words_in_etcd() {
        let stored = r#"{"id":1099511627777,"kind":"flapping","severity":"warning","subject_kind":"group","subject":"web","members":["web-1","web-2"],"started_at_ms":1,"next_sequence":2,"last_notified_at_ms":3,"resolved":false,"notified_sequence":1,"delivered_sequence":null,"last_alert":null,"token":7}"#;
        let doc: IncidentDoc = serde_json::from_str(stored).expect("an earlier version's document reads");
        assert_eq!(
            (doc.kind, doc.severity, doc.subject_kind),
            (NotificationKind::Flapping, Severity::Warning, SubjectKind::Group)
        );
        assert_eq!(serde_json::to_string(&doc).expect("serialises"), stored, "written back byte for byte");
        let unknown = stored.replace(r#""severity":"warning""#, r#""severity":"apocalyptic""#);
        assert!(
            serde_json::from_str::<IncidentDoc>(&unknown).is_err(),
            "an unknown word is refused, not guessed"
        );
    }
}

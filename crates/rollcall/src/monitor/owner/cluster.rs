//! The owner's side of `[cluster]`. With a cluster, the monitor's own transitions of nodes
//! are not paged: they are published as this monitor's verdicts. What the monitors agree on
//! comes back from the session; while this monitor leads, an incident layer of its own (a
//! second [`Alerter`], made fresh at every takeover from the cluster's records in etcd)
//! turns it into notifications, and each is handed to the session for a fenced commit
//! before anything is queued for delivery. Job checks stay with the monitor they belong to.

use super::Owner;
use crate::alerts::build;
use crate::clock::Clock;
use crate::cluster::agree::{Agreed, Change};
use crate::cluster::link::{FencedWrite, IncidentDoc, Link};
use rollcall_proto::Instant;
use rollcall_proto::alerts::{Admission, AlertConfig, Alerter, NotificationKind, OpenIncident, SubjectKind};
use rollcall_proto::monitor::{NodeState, Reason, Transition};
use rollcall_store::Write;
use std::collections::HashSet;
use std::sync::Arc;

/// What the cluster session tells the owner.
#[derive(Debug)]
pub enum ClusterCommand {
    /// This monitor leads with `token`: the cluster's incident records, the highest incident
    /// id ever allocated, and the nodes agreed down now (node, reason).
    Lead { token: i64, docs: Vec<IncidentDoc>, last_id: u64, downs: Vec<(String, String)> },
    /// Verdicts that changed (sent only while leading).
    Agreed(Vec<Change>),
    /// This monitor no longer leads.
    StepDown,
}

/// The owner's cluster state.
pub struct ClusterPaging {
    pub link: Arc<Link>,
    /// The cluster's name, part of every idempotency key.
    name: String,
    config: AlertConfig,
    /// While leading: the fencing token and the incident layer of this tenure.
    leading: Option<(i64, Alerter)>,
}

impl ClusterPaging {
    pub fn new(link: Arc<Link>, name: String, config: AlertConfig) -> ClusterPaging {
        ClusterPaging { link, name, config, leading: None }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.leading.as_ref().and_then(|(_, alerter)| alerter.poll_timeout())
    }

    pub fn open_incidents(&self) -> usize {
        self.leading.as_ref().map_or(0, |(_, alerter)| alerter.open_incidents().count())
    }
}

/// A verdict as a node state.
fn state_of(agreed: &Agreed) -> NodeState {
    match agreed {
        Agreed::Up => NodeState::Up,
        Agreed::Suspect { .. } => NodeState::Suspect,
        Agreed::Down { .. } => NodeState::Down,
    }
}

/// The transition the cluster's incident layer is fed for a verdict change.
fn agreed_transition(
    node: &str,
    generation: u64,
    (from, to): (NodeState, NodeState),
    reason: &str,
    now: Instant,
) -> Transition {
    let reason = match to {
        NodeState::Down => Reason::parse(reason).unwrap_or(Reason::Timeout),
        _ => Reason::Heartbeat,
    };
    Transition { node: node.into(), generation, from, to, reason, at: now, noticed: now }
}

fn restored(doc: &IncidentDoc, clock: &Clock) -> Option<OpenIncident> {
    Some(OpenIncident {
        id: doc.id,
        kind: if doc.kind == "flapping" { NotificationKind::Flapping } else { NotificationKind::Firing },
        severity: rollcall_proto::alerts::Severity::parse(&doc.severity)?,
        subject_kind: SubjectKind::parse(&doc.subject_kind)?,
        subject: doc.subject.clone(),
        members: doc.members.clone(),
        started_at: clock.instant_at_wall_ms(doc.started_at_ms),
        next_sequence: doc.next_sequence,
        last_notified: clock.instant_at_wall_ms(doc.last_notified_at_ms),
    })
}

impl Owner {
    /// A local transition of a node, with `[cluster]`: published as this monitor's verdict.
    pub(super) fn publish_verdict(&self, transition: &Transition) -> bool {
        let Some(cluster) = &self.cluster else { return false };
        cluster.link.publish(&transition.node, Link::vote_for(transition.to, transition.reason.as_str()));
        true
    }

    pub(super) fn answer_cluster(&mut self, command: ClusterCommand) {
        let now = self.clock.now();
        let population = self.core.len();
        let Some(cluster) = self.cluster.as_mut() else { return };
        match command {
            ClusterCommand::Lead { token, docs, last_id, downs } => {
                let mut alerter =
                    Alerter::new(cluster.config.clone()).expect("checked at start with the same config");
                alerter.reserve_ids_through(last_id);
                alerter.set_population(population);
                let down: HashSet<&str> = downs.iter().map(|(node, _)| node.as_str()).collect();
                for doc in docs.iter().filter(|doc| !doc.resolved) {
                    match restored(doc, &self.clock) {
                        Some(incident) => alerter.restore(incident, |member| down.contains(member)),
                        None => tracing::warn!(
                            incident = doc.id,
                            "unreadable incident record in etcd; left as it is"
                        ),
                    }
                }
                for (node, reason) in &downs {
                    let transition =
                        agreed_transition(node, 0, (NodeState::Up, NodeState::Down), reason, now);
                    alerter.restore_down(transition, now);
                }
                cluster.leading = Some((token, alerter));
                // What the previous leader recorded but no sink took is sent again, with its
                // idempotency key: receivers de-duplicate.
                for doc in docs.into_iter().filter(IncidentDoc::undelivered) {
                    let Some(mut alert) = doc.last_alert.clone() else { continue };
                    alert.fencing_token = Some(token);
                    let mut local = Vec::new();
                    build::outbox_rows(&alert, doc.id, &doc.subject, &self.sinks, &self.clock, &mut local);
                    let rows = local.len();
                    tracing::info!(incident = doc.id, key = %alert.idempotency_key, "sending again what the previous leader did not deliver");
                    let doc = IncidentDoc { last_alert: Some(alert), ..doc };
                    cluster.link.fenced_write(FencedWrite { token, doc, local, rows });
                }
            }
            ClusterCommand::Agreed(changes) => {
                let Some((_, alerter)) = cluster.leading.as_mut() else { return };
                for change in changes {
                    let (from, to) = (state_of(&change.from), state_of(&change.to));
                    let reason = match &change.to {
                        Agreed::Down { reason } => reason.as_str(),
                        _ => "heartbeat",
                    };
                    let generation = self.core.node(&change.node, now).map_or(0, |view| view.generation);
                    let transition = agreed_transition(&change.node, generation, (from, to), reason, now);
                    alerter.handle_transition(SubjectKind::Node, &transition, now);
                }
            }
            ClusterCommand::StepDown => {
                if cluster.leading.take().is_some() {
                    tracing::info!(
                        "this monitor no longer leads: the cluster's incidents are the new leader's"
                    );
                }
            }
        }
        self.drain_cluster_notifications();
    }

    /// Releases the cluster incident layer's due work.
    pub(super) fn cluster_timeout(&mut self, now: Instant) {
        let Some((_, alerter)) = self.cluster.as_mut().and_then(|cluster| cluster.leading.as_mut()) else {
            return;
        };
        if alerter.poll_timeout().is_some_and(|due| due <= now) {
            alerter.handle_timeout(now);
        }
        self.drain_cluster_notifications();
    }

    /// Turns the cluster incident layer's notifications into fenced writes.
    fn drain_cluster_notifications(&mut self) {
        let population = self.core.len();
        let Some(cluster) = self.cluster.as_mut() else { return };
        let Some((token, alerter)) = cluster.leading.as_mut() else { return };
        alerter.set_population(population);
        let mut notifications = Vec::new();
        while let Some(notification) = alerter.poll_notification() {
            notifications.push(notification);
        }
        let (token, name) = (*token, cluster.name.clone());
        for notification in notifications {
            let labels = self.labels_of(&notification);
            let mut alert = build::alert(&notification, labels, &self.clock);
            alert.idempotency_key =
                format!("rollcall-{name}-{}-{}", notification.incident, notification.sequence);
            alert.fencing_token = Some(token);
            tracing::info!(
                incident = notification.incident, kind = notification.kind.as_str(), key = %alert.idempotency_key,
                fencing_token = token, "{}", alert.summary
            );
            let mut local = Vec::new();
            build::writes(&notification, &alert, Admission::Deliver, &self.sinks, &self.clock, &mut local);
            let rows = local.iter().filter(|write| matches!(write, Write::Outbox(_))).count();
            let now_ms = self.clock.wall_ms(self.clock.now());
            let doc = IncidentDoc {
                id: notification.incident,
                kind: notification.kind.as_str().to_string(),
                severity: notification.severity.as_str().to_string(),
                subject_kind: notification.subject_kind.as_str().to_string(),
                subject: notification.subject.clone(),
                members: notification.members.clone(),
                started_at_ms: self.clock.wall_ms(notification.started_at),
                next_sequence: notification.sequence + 1,
                last_notified_at_ms: now_ms,
                resolved: notification.kind == NotificationKind::Resolved,
                notified_sequence: notification.sequence,
                delivered_sequence: None,
                last_alert: Some(alert),
                token,
            };
            if let Some(cluster) = &self.cluster {
                cluster.link.fenced_write(FencedWrite { token, doc, local, rows });
            }
        }
    }
}

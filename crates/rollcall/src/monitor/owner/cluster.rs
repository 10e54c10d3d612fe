//! The owner's side of `[cluster]`. With a cluster, the monitor's own transitions of nodes
//! are not paged: they are published as this monitor's verdicts. What the monitors agree on
//! comes back from the session; while this monitor leads, an incident layer of its own (a
//! second [`Alerter`], made fresh at every takeover from the cluster's records in etcd)
//! turns it into notifications, and each is handed to the session for a fenced commit
//! before anything is queued for delivery. Job checks stay with the monitor they belong to.

use super::Owner;
use crate::alerts::build;
use crate::alerts::model::{AlertKind, IncidentInfo, Subject};
use crate::clock::{Clock, rfc3339_ms};
use crate::cluster::agree::{Agreed, Change};
use crate::cluster::link::{FencedWrite, IncidentDoc, Link};
use rollcall_core::Instant;
use rollcall_core::alerts::{Admission, AlertConfig, Alerter, NotificationKind, OpenIncident, SubjectKind};
use rollcall_core::monitor::{NodeState, Reason, Transition};
use rollcall_store::Write;
use std::collections::HashSet;
use std::sync::Arc;

/// What the cluster session tells the owner.
#[derive(Debug)]
pub enum ClusterCommand {
    /// This monitor leads with `token`: the cluster's incident records, the highest incident
    /// id ever allocated, and the nodes agreed down now (node, reason).
    /// Each down says whether a monitor paged it while failing open.
    /// `epoch` numbers this monitor's takeovers, for its fenced writes.
    Lead { token: i64, epoch: u64, docs: Vec<IncidentDoc>, last_id: u64, downs: Vec<(String, String, bool)> },
    /// Verdicts that changed (sent only while leading).
    Agreed(Vec<Change>),
    /// This monitor no longer leads.
    StepDown,
    /// etcd has been out of reach for `fail_open_after`: page on this monitor's own view.
    FailOpen,
    /// A session with etcd again: stop failing open.
    Rejoined,
}

/// Incidents opened while failing open are numbered from here plus 128 per second of the
/// instant failing open began: apart from the monitor's own (job checks) and the cluster's.
const FAIL_OPEN_ID_BASE: u64 = 1 << 39;

/// Paging on this monitor's own view while etcd is out of reach.
struct FailingOpen {
    alerter: Alerter,
    /// etcd is back: only recoveries are fed, so what was paged here resolves here, under
    /// the same keys; dropped once nothing is open.
    draining: bool,
    /// When it began (wall clock), and the degraded notice's id.
    since_ms: i64,
    notice: u64,
}

/// The owner's cluster state.
pub struct ClusterPaging {
    pub link: Arc<Link>,
    /// The cluster's name, part of every idempotency key.
    name: String,
    config: AlertConfig,
    /// While leading: the fencing token and the incident layer of this tenure.
    leading: Option<(i64, Alerter)>,
    /// This monitor's name: the `observer` label of what it pages while failing open.
    observer: String,
    failing_open: Option<FailingOpen>,
    /// The highest cluster incident id known (from etcd at takeover, and since).
    highest_id: u64,
    /// The current takeover's number ([`FencedWrite::epoch`]).
    epoch: u64,
    /// Cluster incidents opened for failures monitors paged while failing open: recorded,
    /// never delivered (the monitors that paged them send their resolutions).
    adopted: HashSet<u64>,
}

impl ClusterPaging {
    pub fn new(link: Arc<Link>, (name, observer): (String, String), config: AlertConfig) -> ClusterPaging {
        ClusterPaging {
            link,
            name,
            config,
            leading: None,
            observer,
            failing_open: None,
            highest_id: 0,
            epoch: 0,
            adopted: HashSet::new(),
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let leading = self.leading.as_ref().and_then(|(_, alerter)| alerter.poll_timeout());
        let open = self.failing_open.as_ref().and_then(|open| open.alerter.poll_timeout());
        leading.into_iter().chain(open).min()
    }

    /// Opens, without paging, the cluster's incident for a failure monitors paged while
    /// failing open, and records it in etcd (fenced), so that nobody pages it again as new.
    fn adopt(&mut self, alerter: &mut Alerter, node: &str, token: i64, (clock, now): (&Clock, Instant)) {
        self.highest_id += 1;
        let id = self.highest_id;
        let now_ms = clock.wall_ms(now);
        let incident = OpenIncident {
            id,
            kind: NotificationKind::Firing,
            severity: rollcall_core::alerts::Severity::Critical,
            subject_kind: SubjectKind::Node,
            subject: node.to_string(),
            members: vec![node.to_string()],
            started_at: now,
            next_sequence: 1,
            last_notified: now,
        };
        alerter.restore(incident, |_| true);
        self.adopted.insert(id);
        tracing::info!(incident = id, node, "adopted a failure paged while failing open: not paged again");
        let doc = IncidentDoc {
            id,
            kind: NotificationKind::Firing,
            severity: rollcall_core::alerts::Severity::Critical,
            subject_kind: SubjectKind::Node,
            subject: node.to_string(),
            members: vec![node.to_string()],
            started_at_ms: now_ms,
            next_sequence: 1,
            last_notified_at_ms: now_ms,
            resolved: false,
            notified_sequence: 0,
            delivered_sequence: None,
            last_alert: None,
            token,
        };
        self.link.fenced_write(FencedWrite { token, epoch: self.epoch, doc, local: Vec::new(), rows: 0 });
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
    Transition { node: node.into(), generation, from, to, reason, at: now, noticed: now, exit: None }
}

fn restored(doc: &IncidentDoc, clock: &Clock) -> OpenIncident {
    OpenIncident {
        id: doc.id,
        // An open incident fires or flaps; the kind of its last notification may also be a
        // reminder or an escalation.
        kind: if doc.kind == NotificationKind::Flapping {
            NotificationKind::Flapping
        } else {
            NotificationKind::Firing
        },
        severity: doc.severity,
        subject_kind: doc.subject_kind,
        subject: doc.subject.clone(),
        members: doc.members.clone(),
        started_at: clock.instant_at_wall_ms(doc.started_at_ms),
        next_sequence: doc.next_sequence,
        last_notified: clock.instant_at_wall_ms(doc.last_notified_at_ms),
    }
}

impl Owner {
    /// A local transition of a node, with `[cluster]`: published as this monitor's verdict
    /// (and paged on this monitor's own view while failing open).
    pub(super) fn publish_verdict(&mut self, transition: &Transition) -> bool {
        let Some(cluster) = &mut self.cluster else { return false };
        cluster.link.publish(&transition.node, Link::vote_for(transition.to, transition.reason.as_str()));
        if let Some(open) = cluster.failing_open.as_mut()
            && (!open.draining || matches!(transition.to, NodeState::Up | NodeState::Left))
        {
            open.alerter.handle_transition(SubjectKind::Node, transition, transition.noticed);
        }
        true
    }

    pub(super) fn answer_cluster(&mut self, command: ClusterCommand) {
        let now = self.clock.now();
        let population = self.core.len();
        let Some(cluster) = self.cluster.as_mut() else { return };
        match command {
            ClusterCommand::Lead { token, epoch, docs, last_id, downs } => {
                cluster.epoch = epoch;
                let mut alerter =
                    Alerter::new(cluster.config.clone()).expect("checked at start with the same config");
                alerter.reserve_ids_through(last_id);
                alerter.set_population(population);
                let down: HashSet<&str> = downs.iter().map(|(node, ..)| node.as_str()).collect();
                cluster.highest_id = last_id;
                cluster.adopted.clear();
                let covered: HashSet<&str> = docs
                    .iter()
                    .filter(|doc| !doc.resolved)
                    .flat_map(|doc| doc.members.iter().map(String::as_str))
                    .collect();
                let mut adopt = Vec::new();
                // A single node's incident whose node the cluster no longer calls down
                // recovered while no monitor led: it is restored down, then recovers at once.
                let mut recovered = Vec::new();
                for doc in docs.iter().filter(|doc| !doc.resolved) {
                    let single = doc.subject_kind == SubjectKind::Node;
                    alerter.restore(restored(doc, &self.clock), |member| single || down.contains(member));
                    if single && !down.contains(doc.subject.as_str()) {
                        recovered.push(doc.subject.clone());
                    }
                }
                for node in recovered {
                    let transition =
                        agreed_transition(&node, 0, (NodeState::Down, NodeState::Up), "heartbeat", now);
                    alerter.handle_transition(SubjectKind::Node, &transition, now);
                }
                for (node, reason, paged) in &downs {
                    if *paged && !covered.contains(node.as_str()) {
                        adopt.push(node.clone());
                        continue;
                    }
                    let transition =
                        agreed_transition(node, 0, (NodeState::Up, NodeState::Down), reason, now);
                    alerter.restore_down(transition, now);
                }
                for node in adopt {
                    cluster.adopt(&mut alerter, &node, token, (&self.clock, now));
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
                    cluster.link.fenced_write(FencedWrite { token, epoch, doc, local, rows });
                }
            }
            ClusterCommand::Agreed(changes) => {
                let Some((token, mut alerter)) = cluster.leading.take() else { return };
                for change in changes {
                    let (from, to) = (state_of(&change.from), state_of(&change.to));
                    let reason = match &change.to {
                        Agreed::Down { paged: true, .. } if from != NodeState::Down => {
                            cluster.adopt(&mut alerter, &change.node, token, (&self.clock, now));
                            continue;
                        }
                        Agreed::Down { reason, .. } => reason.as_str(),
                        _ => "heartbeat",
                    };
                    let generation = self.core.node(&change.node, now).map_or(0, |view| view.generation);
                    let transition = agreed_transition(&change.node, generation, (from, to), reason, now);
                    alerter.handle_transition(SubjectKind::Node, &transition, now);
                }
                cluster.leading = Some((token, alerter));
            }
            ClusterCommand::StepDown => {
                if cluster.leading.take().is_some() {
                    tracing::info!(
                        "this monitor no longer leads: the cluster's incidents are the new leader's"
                    );
                }
            }
            ClusterCommand::FailOpen => {
                let mut alerter =
                    Alerter::new(cluster.config.clone()).expect("checked at start with the same config");
                let since_ms = self.clock.wall_ms(now);
                let notice = FAIL_OPEN_ID_BASE + (since_ms.max(0) as u64 / 1000) * 128;
                alerter.reserve_ids_through(notice);
                alerter.set_population(population);
                // Every node this monitor cannot hear now is paged (grouped as usual).
                let downs: Vec<Transition> = self
                    .core
                    .nodes(now)
                    .filter(|view| view.state == NodeState::Down)
                    .map(|view| {
                        agreed_transition(
                            view.id,
                            view.generation,
                            (NodeState::Up, NodeState::Down),
                            "timeout",
                            now,
                        )
                    })
                    .collect();
                for transition in downs {
                    alerter.restore_down(transition, now);
                }
                cluster.failing_open = Some(FailingOpen { alerter, draining: false, since_ms, notice });
                self.degraded_notice(false);
            }
            ClusterCommand::Rejoined => {
                self.degraded_notice(true);
                if let Some(open) = self.cluster.as_mut().and_then(|cluster| cluster.failing_open.as_mut()) {
                    open.draining = true;
                }
            }
        }
        self.drain_cluster_notifications();
        self.drain_fail_open_notifications();
    }

    /// The one alert that says the cluster is degraded and this monitor pages on its own
    /// view (firing), or that it is whole again (resolved).
    fn degraded_notice(&mut self, resolved: bool) {
        let Some(cluster) = &self.cluster else { return };
        let Some(open) = &cluster.failing_open else { return };
        let now_ms = self.clock.wall_ms(self.clock.now());
        let observer = cluster.observer.clone();
        let summary = if resolved {
            format!("cluster {} is whole again: {observer} no longer pages on its own view", cluster.name)
        } else {
            format!(
                "cluster {} is degraded: etcd is out of reach, so {observer} pages on its own view (alerts labelled observer={observer}) and other monitors may page the same failures",
                cluster.name
            )
        };
        let alert = crate::alerts::model::Alert {
            version: crate::alerts::model::ALERT_VERSION,
            idempotency_key: format!(
                "rollcall-{}-{observer}-{}-{}",
                cluster.name,
                open.notice,
                u8::from(resolved)
            ),
            kind: if resolved { AlertKind::Resolved } else { AlertKind::Firing },
            severity: crate::alerts::model::Severity::Warning,
            incident: IncidentInfo {
                id: open.notice,
                started_at: rfc3339_ms(open.since_ms),
                resolved_at: resolved.then(|| rfc3339_ms(now_ms)),
            },
            subject: Subject {
                kind: crate::alerts::model::SubjectKind::Group,
                id: format!("cluster-{}", cluster.name),
            },
            nodes: Vec::new(),
            node_count: 0,
            labels: [("observer".to_string(), observer)].into(),
            transition: None,
            summary,
            fencing_token: None,
        };
        tracing::warn!(key = %alert.idempotency_key, "{}", alert.summary);
        let mut rows = Vec::new();
        build::outbox_rows(&alert, open.notice, &alert.subject.id, &self.sinks, &self.clock, &mut rows);
        if !rows.is_empty() {
            self.persist.write(rows);
        }
    }

    /// Releases the cluster incident layers' due work.
    pub(super) fn cluster_timeout(&mut self, now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else { return };
        let leading = cluster.leading.as_mut().map(|(_, alerter)| alerter);
        let open = cluster.failing_open.as_mut().map(|open| &mut open.alerter);
        for alerter in leading.into_iter().chain(open) {
            if alerter.poll_timeout().is_some_and(|due| due <= now) {
                alerter.handle_timeout(now);
            }
        }
        self.drain_cluster_notifications();
        self.drain_fail_open_notifications();
    }

    /// What this monitor pages on its own view while failing open: queued for delivery at
    /// once (there is no leader to fence it), labelled with this monitor as `observer`.
    pub(super) fn drain_fail_open_notifications(&mut self) {
        let population = self.core.len();
        let Some(cluster) = self.cluster.as_mut() else { return };
        let Some(open) = cluster.failing_open.as_mut() else { return };
        open.alerter.set_population(population);
        let mut notifications = Vec::new();
        while let Some(notification) = open.alerter.poll_notification() {
            notifications.push(notification);
        }
        if notifications.is_empty() && !open.draining {
            return;
        }
        let (name, observer, link) = (cluster.name.clone(), cluster.observer.clone(), cluster.link.clone());
        let mut batch = Vec::new();
        for notification in notifications {
            let mut labels = self.labels_of(&notification);
            labels.insert("observer".to_string(), observer.clone());
            let mut alert = build::alert(&notification, labels, &self.clock);
            alert.idempotency_key =
                format!("rollcall-{name}-{observer}-{}-{}", notification.incident, notification.sequence);
            tracing::info!(
                incident = notification.incident, kind = notification.kind.as_str(), key = %alert.idempotency_key,
                "failing open: {}", alert.summary
            );
            if notification.kind == NotificationKind::Firing {
                for member in &notification.members {
                    link.mark_paged(member, &alert.idempotency_key);
                }
            }
            build::writes(&notification, &alert, Admission::Deliver, &self.sinks, &self.clock, &mut batch);
        }
        if !batch.is_empty() {
            self.persist.write(batch);
        }
        if let Some(cluster) = self.cluster.as_mut()
            && cluster
                .failing_open
                .as_ref()
                .is_some_and(|open| open.draining && open.alerter.open_incidents().next().is_none())
        {
            cluster.failing_open = None;
        }
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
        // Every turn of the owner's loop comes here: nothing is cloned when nothing is due.
        if notifications.is_empty() {
            return;
        }
        let (token, name) = (*token, cluster.name.clone());
        for notification in &notifications {
            cluster.highest_id = cluster.highest_id.max(notification.incident);
        }
        let adopted = cluster.adopted.clone();
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
            // An adopted failure was paged by the monitors that failed open; they resolve it.
            let admission =
                if adopted.contains(&notification.incident) { Admission::Drop } else { Admission::Deliver };
            build::writes(&notification, &alert, admission, &self.sinks, &self.clock, &mut local);
            let rows = local.iter().filter(|write| matches!(write, Write::Outbox(_))).count();
            let now_ms = self.clock.wall_ms(self.clock.now());
            let doc = IncidentDoc {
                id: notification.incident,
                kind: notification.kind,
                severity: notification.severity,
                subject_kind: notification.subject_kind,
                subject: notification.subject.clone(),
                members: notification.members.clone(),
                started_at_ms: self.clock.wall_ms(notification.started_at),
                next_sequence: notification.sequence + 1,
                last_notified_at_ms: now_ms,
                resolved: notification.kind == NotificationKind::Resolved,
                notified_sequence: notification.sequence,
                delivered_sequence: None,
                last_alert: (admission == Admission::Deliver).then_some(alert),
                token,
            };
            if let Some(cluster) = &self.cluster {
                cluster.link.fenced_write(FencedWrite { token, epoch: cluster.epoch, doc, local, rows });
            }
        }
    }
}

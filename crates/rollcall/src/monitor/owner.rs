//! The one task that owns the core. Everything that reads or changes node state goes
//! through its loop, so the core needs no lock and its order of inputs is well defined.

mod checks;
mod cluster;
mod leases;
mod silences;

pub use checks::{CheckCommand, CheckFailure, PingRefusal, PingTarget};
pub use cluster::{ClusterCommand, ClusterPaging};
pub use leases::{LeaseChange, LeaseCommand, LeaseFailure, LeaseJson};
pub use silences::{SilenceCommand, SilenceJson};

use crate::alerts::build;
use crate::alerts::sinks::SinkConfig;
use crate::clock::Clock;
use crate::cluster::link::Link;
use crate::settings::Settings;
use crate::store_thread::{Persist, transition_write};
use checks::{CheckState, start_checks};
use prometheus_client::metrics::histogram::Histogram;
use rollcall_core::alerts::{Alerter, Notification, SubjectKind};
use rollcall_core::monitor::{
    DetectorFacts, MonitorEvent, MonitorStats, NodeState, NodeView, Reason, RestoredNode, Transition,
};
use rollcall_core::{Instant, Monitor};
use rollcall_store::{IncidentRecord, NodeRecord, Write};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Datagrams handled per wake-up before the loop looks at deadlines and commands again.
const RECV_BATCH: usize = 1024;
/// Bound on queued HTTP commands; a full queue makes handlers wait, never the core.
const COMMAND_QUEUE: usize = 256;
/// Most commands answered per wake-up: consecutive pings among them share one drain of the
/// core's events and one store batch (each reply is sent once its writes are queued).
const COMMAND_BATCH: usize = 64;
/// Most commands answered after each batch of datagrams, so a saturated socket does not
/// starve the API and the API does not starve the socket.
const COMMAND_BATCH_UNDER_LOAD: usize = 16;

/// What the store held at start.
pub struct Restored {
    pub nodes: Vec<RestoredNode>,
    /// The nodes stored down, with their generation and latest stored transition.
    pub downs: Vec<(String, u64, Option<rollcall_store::TransitionRecord>)>,
    pub checks: Vec<rollcall_store::CheckRecord>,
    /// The stored pings of each check, newest first.
    pub pings: BTreeMap<String, Vec<rollcall_store::PingRecord>>,
    pub incidents: Vec<IncidentRecord>,
    pub max_incident_id: u64,
    pub silences: Vec<rollcall_store::SilenceRecord>,
    pub max_silence_id: u64,
    pub leases: Vec<rollcall_store::LeaseRecord>,
    /// The highest fencing token ever granted.
    pub last_lease_token: u64,
}

/// A request from an HTTP handler, answered on its `reply` channel.
pub enum Command {
    Nodes {
        reply: oneshot::Sender<Vec<NodeJson>>,
    },
    /// A node with what its detector judges by.
    NodeDetail {
        id: String,
        reply: oneshot::Sender<Option<(NodeJson, DetectorFacts)>>,
    },
    Stats {
        reply: oneshot::Sender<StatsSnapshot>,
    },
    /// How many nodes are in each state, for the cluster's comparison of views.
    Counts {
        reply: oneshot::Sender<crate::cluster::View>,
    },
    /// Maintenance, until `until_ms` (wall clock) or until resumed; `None` for an unknown node.
    Pause {
        id: String,
        until_ms: Option<i64>,
        reply: oneshot::Sender<Option<NodeJson>>,
    },
    Resume {
        id: String,
        reply: oneshot::Sender<Option<NodeJson>>,
    },
    Check(CheckCommand),
    /// Removes a node; false for an unknown one.
    Forget {
        id: String,
        reply: oneshot::Sender<bool>,
    },
    /// The nodes whose `group` label is `group`.
    Group {
        group: String,
        reply: oneshot::Sender<Vec<NodeJson>>,
    },
    Silence(SilenceCommand),
    Lease(LeaseCommand),
    /// A node's detector level over its recent past (`http/phi.rs`).
    /// What a node's settings promise, against the goals (`monitor/explain.rs`).
    Explain {
        id: String,
        reply: oneshot::Sender<Option<super::explain::Explanation>>,
    },
    Phi {
        id: String,
        reply: oneshot::Sender<Option<super::http::PhiCurve>>,
    },
    /// From the cluster session (`[cluster]` only).
    Cluster(ClusterCommand),
}

/// A node as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct NodeJson {
    pub id: String,
    pub state: &'static str,
    pub generation: u64,
    pub sequence: u64,
    pub labels: BTreeMap<String, String>,
    pub interval_ms: u64,
    /// Milliseconds since the last heartbeat, on the monitor's clock.
    pub last_heartbeat_age_ms: Option<u64>,
    /// Phi now, when the detector is phi accrual.
    pub phi: Option<f64>,
    /// The detector's level now (phi, or elapsed / timeout for the fixed detector).
    pub level: f64,
    /// Milliseconds until the node's pending deadline (suspect when up, down when suspect).
    pub deadline_in_ms: Option<i64>,
    pub addr: Option<String>,
}

/// Counters for `/metrics`.
#[derive(Clone, Debug)]
pub struct StatsSnapshot {
    pub core: MonitorStats,
    pub alerts: rollcall_core::alerts::AlertStats,
    pub checks: rollcall_core::checks::ChecksStats,
    pub open_incidents: usize,
    pub detector: &'static str,
    pub store_batches: u64,
    pub store_errors: u64,
    pub store: crate::store_thread::StoreHealthSnapshot,
    pub uptime: Duration,
    pub recv_buffer_bytes: usize,
    pub receive: super::udp::ReceiveStats,
    pub store_commit_seconds: Histogram,
    /// From each deadline to the transition it caused (shares its counts with the owner).
    pub detection_lag: Histogram,
    /// Per node: (id, up, last heartbeat in wall-clock seconds), when per-node series are on
    /// and the fleet is within their bound.
    pub per_node: Vec<(String, bool, Option<f64>)>,
    /// Nodes left out of the per-node series (switched off, or over the bound).
    pub per_node_omitted: usize,
    /// Confirmation counters (`None`: confirmation is off), rounds in progress, and probes
    /// the kernel did not take.
    pub confirm: Option<rollcall_core::monitor::ConfirmStats>,
    pub confirmations_in_progress: usize,
    pub probes_unsent: u64,
    /// The heartbeat interval advised to agents, and the share of sampled nodes whose
    /// settings keep their goal, by scope (`None`: the fleet).
    pub advised: std::collections::BTreeMap<Option<String>, Duration>,
    pub goals_kept: std::collections::BTreeMap<Option<String>, f64>,
    /// The detector and confirmation settings in force, per scope (`advice/apply.rs`).
    pub group_settings: Vec<super::advice::apply::ScopeSettings>,
    /// Leases held now, and the lease table's counters.
    pub leases_held: usize,
    pub leases: rollcall_core::leases::LeaseStats,
}

/// Buckets of the detection lag histogram, in seconds.
const LAG_BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

pub struct Owner {
    core: Monitor,
    detection_lag: Histogram,
    per_node_limit: usize,
    checks: CheckState,
    alerter: Alerter,
    sinks: Vec<SinkConfig>,
    clock: Clock,
    udp: tokio::net::UdpSocket,
    receiver: super::udp::Receiver,
    commands: mpsc::Receiver<Command>,
    persist: Persist,
    checkpoint_interval: Duration,
    started: Instant,
    recv_buffer_bytes: usize,
    /// Probes the kernel would not take at once (dropped; the round's retries cover them).
    probes_unsent: u64,
    goals: super::explain::Goals,
    advisor: super::advice::Advisor,
    /// `[cluster]`: verdicts published, paging by the leader only.
    cluster: Option<ClusterPaging>,
    leases: leases::LeaseState,
}

impl Owner {
    pub fn new(
        settings: &Settings,
        clock: Clock,
        udp: tokio::net::UdpSocket,
        persist: Persist,
        restored: Restored,
        cluster: Option<ClusterPaging>,
    ) -> anyhow::Result<(Owner, mpsc::Sender<Command>)> {
        let now = clock.now();
        let mut core = Monitor::new(settings.core.clone(), settings.key_ring.clone(), now)
            .map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
        // Answers to an earlier run's probes must never match this run's rounds.
        core.set_probe_epoch(fastrand::u64(..));
        let count = restored.nodes.len();
        for node in restored.nodes {
            core.restore(node, now)
                .map_err(|problem| anyhow::anyhow!("cannot restore the store: {problem}"))?;
        }
        if count > 0 {
            tracing::info!(nodes = count, "restored nodes from the store; each gets a fresh grace period");
        }
        let wall_ms = clock.wall_ms(now);
        let (checks, check_writes) = start_checks(
            settings,
            &restored.checks,
            &restored.pings,
            &clock,
            now,
            wall_ms.max(0) as u64,
            wall_ms,
        )?;
        if !check_writes.is_empty() {
            persist.write(check_writes);
        }
        let mut alerter = Alerter::new(settings.alerts.clone())
            .map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
        alerter.reserve_ids_through(restored.max_incident_id);
        for record in &restored.incidents {
            // A cluster's incidents are its leader's, restored from etcd when it takes over.
            if record.id >= crate::cluster::link::INCIDENT_ID_BASE {
                continue;
            }
            let Some(incident) = build::restored_incident(record, &clock) else {
                tracing::warn!(incident = record.id, "stored incident is unreadable; left as it is");
                continue;
            };
            let is_check = incident.subject_kind == SubjectKind::Check;
            alerter.restore(incident, |member| {
                let state = if is_check {
                    checks.table.check(member).map(|check| check.state)
                } else {
                    core.node(member, now).map(|node| node.state)
                };
                state == Some(NodeState::Down)
            });
        }
        silences::restore(
            &mut alerter,
            (&restored.silences, restored.max_silence_id),
            &restored.incidents,
            &clock,
        );
        alerter.set_population(core.len());
        for (id, generation, latest) in restored.downs {
            let transition = restored_down(id, generation, latest, &clock, now);
            match &cluster {
                // With a cluster, a node stored down is this monitor's verdict again.
                Some(cluster) => cluster
                    .link
                    .publish(&transition.node, Link::vote_for(NodeState::Down, transition.reason.as_str())),
                None => alerter.restore_down(transition, now),
            }
        }
        let leases = leases::LeaseState::restore(&restored.leases, restored.last_lease_token, &clock, now);
        let recv_buffer_bytes = socket2::SockRef::from(&udp).recv_buffer_size().unwrap_or(0);
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let mut owner = Owner {
            core,
            detection_lag: Histogram::new(LAG_BUCKETS),
            per_node_limit: settings.per_node_series,
            checks,
            alerter,
            sinks: settings.sinks.clone(),
            clock,
            udp,
            receiver: super::udp::Receiver::new(),
            commands: rx,
            persist,
            checkpoint_interval: settings.checkpoint_interval,
            started: now,
            recv_buffer_bytes,
            probes_unsent: 0,
            goals: settings.goals.clone(),
            advisor: super::advice::Advisor::default(),
            cluster,
            leases,
        };
        owner.release_leases_of_gone_nodes(now);
        Ok((owner, tx))
    }

    /// The loop. Order matters: received datagrams are drained before due deadlines are
    /// handled, so a heartbeat that has arrived never loses a race with its own deadline.
    /// Returns the store thread's handle so the caller can flush it once every other writer
    /// (the delivery loops) has stopped.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> anyhow::Result<Persist> {
        let mut next_checkpoint = self.clock.now() + self.checkpoint_interval;
        let advise_every = self.goals.advise_every.unwrap_or(super::advice::REFRESH);
        // The first advice once the detectors have a few intervals to judge by.
        let mut next_advice = self.clock.now() + advise_every.min(super::advice::FIRST);
        // Bumped after every commit: a paced checkpoint waits on it for room in the store.
        let mut commits = self.persist.committed();
        loop {
            // Marked seen before the room is checked, so a commit after the check wakes us.
            commits.borrow_and_update();
            let checkpoint_ready = self.persist.checkpoint_ready();
            let checkpoint_waits = self.persist.checkpoint_cursor().is_some() && !checkpoint_ready;
            let due = [
                self.core.poll_timeout(),
                self.alerter.poll_timeout(),
                self.cluster.as_ref().and_then(ClusterPaging::poll_timeout),
                self.checks.table.poll_timeout(),
                self.leases.table.poll_timeout(),
                Some(next_checkpoint),
                Some(next_advice),
                checkpoint_ready.then(|| self.clock.now()),
            ];
            let wake = self.clock.std_instant(due.into_iter().flatten().min().expect("never empty"));
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                ready = self.udp.readable() => {
                    if ready.is_ok() {
                        let (core, clock) = (&mut self.core, &self.clock);
                        self.receiver.drain(&self.udp, RECV_BATCH, || clock.now(), |now, from, bytes| {
                            core.handle_datagram(now, from, bytes)
                        });
                    }
                    // Datagrams come first, but a saturated socket must not starve the API:
                    // a few queued commands are answered after every batch.
                    if let Ok(command) = self.commands.try_recv() {
                        self.answer_queued(command, COMMAND_BATCH_UNDER_LOAD);
                    }
                }
                Some(command) = self.commands.recv() => self.answer_queued(command, COMMAND_BATCH),
                Ok(()) = commits.changed(), if checkpoint_waits => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            // Every wake-up looks at the wall clock: a step is seen within a tick.
            let (now, step) = self.clock.observe_wall();
            let wall_ms = self.clock.wall_ms(now).max(0) as u64;
            if self.core.poll_timeout().is_some_and(|at| at <= now) {
                self.core.handle_timeout(now);
            }
            if let Some(step_ms) = step {
                tracing::warn!(
                    step_ms,
                    "the wall clock was stepped; cron deadlines and maintenance windows follow it"
                );
                self.checks.table.handle_wall_step(now, wall_ms);
            }
            if self.checks.table.poll_timeout().is_some_and(|due| due <= now) {
                self.checks.table.handle_timeout(now, wall_ms);
            }
            self.drain_events();
            self.handle_lease_timeout(now);
            if self.alerter.poll_timeout().is_some_and(|due| due <= now) {
                self.alerter.handle_timeout(now);
                let mut batch = Vec::new();
                self.drain_notifications(&mut batch);
                if !batch.is_empty() {
                    self.persist.write(batch);
                }
            }
            self.cluster_timeout(now);
            if now >= next_checkpoint {
                self.persist.start_checkpoint(now);
                next_checkpoint = now + self.checkpoint_interval;
            }
            self.advance_checkpoint();
            if now >= next_advice {
                self.advisor.refresh(&mut self.core, &self.goals, now);
                next_advice = now + advise_every;
            }
        }
        self.drain_events();
        // Everything heard from since the previous checkpoint, paced like any other.
        self.persist.restart_checkpoint(self.clock.now());
        while self.persist.checkpoint_cursor().is_some() {
            commits.borrow_and_update();
            if !self.persist.checkpoint_ready() {
                if commits.changed().await.is_err() {
                    break;
                }
                continue;
            }
            self.advance_checkpoint();
        }
        Ok(self.persist)
    }

    fn drain_events(&mut self) {
        self.send_probes();
        let mut batch = Vec::new();
        while let Some(event) = self.core.poll_event() {
            match event {
                MonitorEvent::Transition(transition) => {
                    log_transition("node", &transition);
                    if matches!(transition.reason, Reason::Phi | Reason::Timeout | Reason::ProbesUnanswered) {
                        self.detection_lag.observe((transition.noticed - transition.at).as_secs_f64());
                    }
                    if !self.publish_verdict(&transition) {
                        self.alerter.handle_transition(SubjectKind::Node, &transition, transition.noticed);
                    }
                    if let Some(record) = self.record(&transition.node) {
                        batch.push(Write::Node {
                            record,
                            updated_at_ms: self.clock.wall_ms(transition.noticed),
                        });
                    }
                    batch.push(transition_write(SubjectKind::Node, &transition, &self.clock));
                    if matches!(transition.to, NodeState::Down | NodeState::Left) {
                        self.release_node_leases(&transition.node);
                    }
                }
                MonitorEvent::NodeChanged { node } => {
                    if let Some(record) = self.record(&node) {
                        batch.push(Write::Node {
                            record,
                            updated_at_ms: self.clock.wall_ms(self.clock.now()),
                        });
                    }
                }
                MonitorEvent::Forgotten { node } => {
                    tracing::info!(node = %node, "node forgotten");
                    if let Some(cluster) = &self.cluster {
                        cluster.link.publish(&node, None);
                    }
                    batch.push(Write::ForgetNode { id: node.to_string() });
                    self.release_node_leases(&node);
                }
                MonitorEvent::SelfPause { stalled, resumed } => {
                    self.checks.table.handle_self_pause(resumed);
                    tracing::warn!(
                        stalled_ms = stalled.as_millis() as u64,
                        "the monitor itself stalled; every silent node gets a fresh grace period"
                    );
                }
                // The core's events are `#[non_exhaustive]` for embedders; here, one it adds
                // before this loop learns it is at least seen.
                other => tracing::warn!(event = ?other, "an event of the core this owner does not act on"),
            }
        }
        self.drain_check_events(&mut batch);
        self.drain_fail_open_notifications();
        self.alerter.set_population(self.core.len());
        self.drain_notifications(&mut batch);
        if !batch.is_empty() {
            self.persist.write(batch);
        }
    }

    /// Sends the core's probes from the heartbeat socket, without waiting: a probe the kernel
    /// cannot take now is lost like any datagram, and the round's retries cover it.
    fn send_probes(&mut self) {
        while let Some(transmit) = self.core.poll_transmit() {
            if let Err(error) = self.udp.try_send_to(&transmit.payload, transmit.to) {
                self.probes_unsent += 1;
                tracing::debug!(%error, to = %transmit.to, "probe not sent");
            }
        }
    }

    /// Turns the incident layer's notifications into outbox rows, in the same batch as the
    /// transitions that caused them: one commit makes both durable, so a crash can lose
    /// neither without the other.
    fn drain_notifications(&mut self, batch: &mut Vec<Write>) {
        while let Some(notification) = self.alerter.poll_notification() {
            let labels = self.labels_of(&notification);
            let admission = self.alerter.admit(&notification, &labels, self.clock.now());
            let alert = build::alert(&notification, labels, &self.clock);
            tracing::info!(
                incident = notification.incident, kind = notification.kind.as_str(),
                key = %alert.idempotency_key, ?admission, "{}", alert.summary
            );
            build::writes(&notification, &alert, admission, &self.sinks, &self.clock, batch);
        }
    }

    /// The labels of a notification's subject; for a group, those all its members share.
    fn labels_of(&self, notification: &Notification) -> BTreeMap<String, String> {
        let now = self.clock.now();
        let mut shared: Option<BTreeMap<String, String>> = None;
        for member in &notification.members {
            let labels: BTreeMap<String, String> = match notification.subject_kind {
                SubjectKind::Check => {
                    self.checks.table.check(member).map(|check| check.spec.labels.clone()).unwrap_or_default()
                }
                _ => self
                    .core
                    .node(member, now)
                    .map(|view| {
                        view.labels().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
                    })
                    .unwrap_or_default(),
            };
            shared = Some(match shared {
                None => labels,
                Some(mut common) => {
                    common.retain(|key, value| labels.get(key) == Some(value));
                    common
                }
            });
        }
        shared.unwrap_or_default()
    }

    fn record(&self, id: &str) -> Option<NodeRecord> {
        self.core.node(id, self.clock.now()).map(|view| node_record(&view))
    }

    /// One step of the sequence checkpoint being written, if the store has room for its next
    /// chunk (see `Persist::advance_checkpoint`): the generation and sequence of every node
    /// heard from since the previous checkpoint, so that after a crash old datagrams are
    /// still refused as replays.
    fn advance_checkpoint(&mut self) {
        if !self.persist.checkpoint_ready() {
            return;
        }
        let now = self.clock.now();
        let wall = self.clock.wall_ms(now);
        let core = &self.core;
        let record = |view: &NodeView<'_>| Write::Node { record: node_record(view), updated_at_ms: wall };
        if let Some(rows) = self.persist.advance_checkpoint(|start| core.nodes_from(start, now), record) {
            tracing::debug!(rows, "sequence checkpoint queued");
        }
    }

    /// Forgets a node. The table stays dense (its last node takes the forgotten one's
    /// index), so while a checkpoint is being written the moved node may land behind the
    /// cursor and be missed: its record is written now instead.
    fn forget(&mut self, id: &str, now: Instant) -> bool {
        let moved = self
            .persist
            .checkpoint_cursor()
            .and_then(|_| self.core.nodes_from(self.core.len().saturating_sub(1), now).next())
            .filter(|last| last.id != id)
            .map(|last| last.id.to_string());
        let found = self.core.forget(id, now);
        self.drain_events();
        if found && let Some(record) = moved.and_then(|moved| self.record(&moved)) {
            self.persist.write(vec![Write::Node { record, updated_at_ms: self.clock.wall_ms(now) }]);
        }
        found
    }

    /// Answers `first` and up to `limit - 1` more commands already queued. Pings are
    /// handled as they come, but their events are drained, and their writes queued, once
    /// for a run of consecutive pings; each ping is answered after that, so a ping is
    /// answered only once its history row is queued for the store, as before.
    fn answer_queued(&mut self, first: Command, limit: usize) {
        let mut pinged = Vec::new();
        let mut next = Some(first);
        let mut answered = 0;
        while let Some(command) = next.take() {
            answered += 1;
            match command {
                Command::Check(CheckCommand::Ping { target, suffix, rid, body, source, reply }) => {
                    let result = self.ping(target, suffix.as_deref(), rid.as_deref(), &body, source);
                    pinged.push((reply, result));
                }
                other => {
                    self.answer_pings(&mut pinged);
                    self.answer(other);
                }
            }
            if answered < limit {
                next = self.commands.try_recv().ok();
            }
        }
        self.answer_pings(&mut pinged);
    }

    fn answer(&mut self, command: Command) {
        let now = self.clock.now();
        let detector = self.core.config().detector.name();
        match command {
            Command::Nodes { reply } => {
                let mut nodes: Vec<NodeJson> =
                    self.core.nodes(now).map(|view| node_json(&view, now, detector)).collect();
                nodes.sort_by(|a, b| a.id.cmp(&b.id));
                let _ = reply.send(nodes);
            }
            Command::NodeDetail { id, reply } => {
                let facts = self.core.detector_facts(&id);
                let _ = reply.send(self.node_json(&id).zip(facts));
            }
            Command::Pause { id, until_ms, reply } => {
                let wall_now = self.clock.wall_ms(now);
                let until =
                    until_ms.map(|ms| now + Duration::from_millis(ms.saturating_sub(wall_now).max(0) as u64));
                let found = self.core.pause_until(&id, until, now);
                self.drain_events();
                let _ = reply.send(found.then(|| self.node_json(&id)).flatten());
            }
            Command::Resume { id, reply } => {
                let found = self.core.resume(&id, now);
                self.drain_events();
                let _ = reply.send(found.then(|| self.node_json(&id)).flatten());
            }
            Command::Forget { id, reply } => {
                let found = self.forget(&id, now);
                let _ = reply.send(found);
            }
            Command::Check(command) => self.answer_check(command),
            Command::Cluster(command) => self.answer_cluster(command),
            Command::Silence(command) => self.answer_silence(command),
            Command::Lease(command) => self.answer_lease(command),
            Command::Explain { id, reply } => {
                let explained = self.node_json(&id).and_then(|node| {
                    super::explain::explain(&self.core, node, &self.goals, &self.advisor.sources)
                });
                let _ = reply.send(explained);
            }
            Command::Phi { id, reply } => {
                let _ = reply.send(super::http::phi_curve(&self.core, &id, now, &self.clock));
            }
            Command::Group { group, reply } => {
                let mut members: Vec<NodeJson> = self
                    .core
                    .nodes(now)
                    .filter(|view| view.labels().iter().any(|(k, v)| *k == "group" && *v == group))
                    .map(|view| node_json(&view, now, detector))
                    .collect();
                members.sort_by(|a, b| a.id.cmp(&b.id));
                let _ = reply.send(members);
            }
            Command::Counts { reply } => {
                // Nodes being judged: new, left and paused ones say nothing about reachability.
                let count = |state| self.core.stats().nodes_in(state);
                let (up, suspect, down) =
                    (count(NodeState::Up), count(NodeState::Suspect), count(NodeState::Down));
                let _ = reply.send(crate::cluster::View { nodes: up + suspect + down, up, suspect, down });
            }
            Command::Stats { reply } => {
                let (store_batches, store_errors) = self.persist.counters();
                let _ = reply.send(StatsSnapshot {
                    core: self.core.stats().clone(),
                    alerts: self.alerter.stats().clone(),
                    checks: self.checks.table.stats().clone(),
                    open_incidents: self.alerter.open_incidents().count()
                        + self.cluster.as_ref().map_or(0, ClusterPaging::open_incidents),
                    detector,
                    store_batches,
                    store_errors,
                    store: self.persist.health().snapshot(),
                    uptime: now - self.started,
                    recv_buffer_bytes: self.recv_buffer_bytes,
                    receive: self.receiver.stats(&self.udp),
                    store_commit_seconds: self.persist.commit_seconds(),
                    detection_lag: self.detection_lag.clone(),
                    per_node: self.per_node_series(now),
                    per_node_omitted: if self.core.len() > self.per_node_limit { self.core.len() } else { 0 },
                    confirm: self.core.confirm_stats().cloned(),
                    confirmations_in_progress: self.core.confirmations_in_progress(),
                    probes_unsent: self.probes_unsent,
                    advised: self.advisor.advised.clone(),
                    goals_kept: self.advisor.kept.clone(),
                    group_settings: super::advice::apply::rows(&self.core, &self.advisor.sources),
                    leases_held: self.leases.table.len(),
                    leases: self.leases.table.stats().clone(),
                });
            }
        }
    }
}

impl Owner {
    /// The per-node series, or nothing when the fleet is over their bound (a million series
    /// would swamp Prometheus; the bound is `metrics.per_node_series`).
    fn per_node_series(&self, now: Instant) -> Vec<(String, bool, Option<f64>)> {
        if self.core.len() > self.per_node_limit {
            return Vec::new();
        }
        self.core
            .nodes(now)
            .map(|view| {
                let last = view.last_heartbeat.map(|at| self.clock.wall_ms(at) as f64 / 1000.0);
                (view.id.to_string(), view.state == NodeState::Up, last)
            })
            .collect()
    }

    fn node_json(&self, id: &str) -> Option<NodeJson> {
        let now = self.clock.now();
        let detector = self.core.config().detector.name();
        self.core.node(id, now).map(|view| node_json(&view, now, detector))
    }
}

fn log_transition(kind: &str, t: &Transition) {
    let lag_ms = (t.noticed - t.at).as_millis() as u64;
    let exit = t.exit.as_ref().map(crate::alerts::build::exit_detail).unwrap_or_default();
    tracing::info!(
        kind, node = %t.node, from = t.from.as_str(), to = t.to.as_str(), reason = t.reason.as_str(),
        generation = t.generation, lag_ms,
        "{} {} -> {} ({}){exit}", t.node, t.from.as_str(), t.to.as_str(), t.reason.as_str()
    );
}

/// The down transition of a node stored down, on the current clock: its latest stored
/// transition when that is the down (it always is when both were written together), else
/// one made now from what the node's row says.
fn restored_down(
    id: String,
    generation: u64,
    latest: Option<rollcall_store::TransitionRecord>,
    clock: &Clock,
    now: Instant,
) -> Transition {
    match latest.filter(|record| record.to == NodeState::Down) {
        Some(record) => Transition {
            node: id.into(),
            generation: record.generation,
            from: record.from,
            to: NodeState::Down,
            reason: record.reason,
            at: clock.instant_at_wall_ms(record.at_ms),
            noticed: clock.instant_at_wall_ms(record.noticed_at_ms),
            exit: record.exit,
        },
        None => Transition {
            node: id.into(),
            generation,
            from: NodeState::Suspect,
            to: NodeState::Down,
            reason: Reason::Timeout,
            at: now,
            noticed: now,
            exit: None,
        },
    }
}

fn node_record(view: &NodeView<'_>) -> NodeRecord {
    NodeRecord {
        id: view.id.to_string(),
        generation: view.generation,
        sequence: view.sequence,
        interval_ms: view.interval.as_millis() as u32,
        state: view.state,
        labels_raw: view.labels_raw.to_vec(),
    }
}

pub(super) fn node_json(view: &NodeView<'_>, now: Instant, detector: &str) -> NodeJson {
    NodeJson {
        id: view.id.to_string(),
        state: view.state.as_str(),
        generation: view.generation,
        sequence: view.sequence,
        labels: view.labels().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        interval_ms: view.interval.as_millis() as u64,
        last_heartbeat_age_ms: view.last_heartbeat.map(|last| (now - last).as_millis() as u64),
        phi: (detector == "phi" && view.last_heartbeat.is_some()).then_some(view.level),
        level: view.level,
        deadline_in_ms: view.deadline.map(|at| {
            if at >= now { (at - now).as_millis() as i64 } else { -((now - at).as_millis() as i64) }
        }),
        addr: view.addr.map(|addr| addr.to_string()),
    }
}

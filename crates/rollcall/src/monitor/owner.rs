//! The one task that owns the core. Everything that reads or changes node state goes
//! through its loop, so the core needs no lock and its order of inputs is well defined.

mod checks;
mod cluster;
mod leases;
mod query;
mod silences;

pub use checks::{CheckCommand, CheckFailure, PingRefusal, PingTarget};
pub use cluster::{ClusterCommand, ClusterPaging};
pub use leases::{LeaseChange, LeaseCommand, LeaseFailure, LeaseJson};
pub use query::{Command, NodeJson, StatsSnapshot, node_json};
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
    /// `monitor.receive_threads` > 1: the threads that read and verify instead of the owner
    /// (which then only sends from `udp`).
    threads: Option<super::udp::ReceiveThreads>,
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
        (udp, threads): (tokio::net::UdpSocket, Option<super::udp::ReceiveThreads>),
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
            let incident = build::restored_incident(record, &clock);
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
        let receiver = super::udp::Receiver::new(settings.key_ring.clone(), &udp);
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
            receiver,
            threads,
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
        // One timer for the whole loop, moved to each turn's deadline: a timer made and
        // dropped every turn registers and removes itself with the runtime's timer driver
        // each time, and a saturated owner turns thousands of times a second.
        let sleep = tokio::time::sleep_until(self.clock.std_instant(next_advice).into());
        tokio::pin!(sleep);
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
            sleep.as_mut().reset(wake.into());
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                ready = self.udp.readable(), if self.threads.is_none() => {
                    if ready.is_ok() {
                        let (core, clock) = (&mut self.core, &self.clock);
                        self.receiver.drain(&self.udp, RECV_BATCH, || clock.now(), |now, batch| {
                            core.handle_verified(now, batch)
                        });
                    }
                    // Datagrams come first, but a saturated socket must not starve the API:
                    // a few queued commands are answered after every batch.
                    if let Ok(command) = self.commands.try_recv() {
                        self.answer_queued(command, COMMAND_BATCH_UNDER_LOAD);
                    }
                }
                Some(batch) = next_batch(self.threads.as_mut()) => {
                    self.handle_verified(batch);
                    if let Ok(command) = self.commands.try_recv() {
                        self.answer_queued(command, COMMAND_BATCH_UNDER_LOAD);
                    }
                }
                Some(command) = self.commands.recv() => self.answer_queued(command, COMMAND_BATCH),
                Ok(()) = commits.changed(), if checkpoint_waits => {}
                () = &mut sleep => {}
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
        // Blocks this task while the threads notice the stop (each within its 100 ms poll):
        // bounded, and only once, at shutdown.
        if let Some(threads) = self.threads.take() {
            threads.stop();
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

    /// Hands a batch the receive threads verified to the core, then whatever else they have
    /// queued, up to about `RECV_BATCH` datagrams: as many as one wake-up of the owner's own
    /// socket reads.
    fn handle_verified(&mut self, first: rollcall_core::monitor::VerifiedBatch) {
        let now = self.clock.now();
        self.core.handle_verified(now, &first);
        let mut handled = first.len().max(1);
        while handled < RECV_BATCH {
            let Some(batch) = self.threads.as_mut().and_then(super::udp::ReceiveThreads::try_recv) else {
                break;
            };
            self.core.handle_verified(now, &batch);
            handled += batch.len().max(1);
        }
    }

    fn drain_events(&mut self) {
        self.send_probes();
        let mut batch = Vec::new();
        while let Some(event) = self.core.poll_event() {
            match event {
                MonitorEvent::Transition { transition, row } => {
                    log_transition("node", &transition);
                    if matches!(transition.reason, Reason::Phi | Reason::Timeout | Reason::ProbesUnanswered) {
                        self.detection_lag.observe((transition.noticed - transition.at).as_secs_f64());
                    }
                    if !self.publish_verdict(&transition) {
                        self.alerter.handle_transition(SubjectKind::Node, &transition, transition.noticed);
                    }
                    // The row as the core had it at the transition, not read back: the event
                    // carries it.
                    batch.push(Write::Node {
                        record: NodeRecord {
                            id: transition.node.to_string(),
                            generation: transition.generation,
                            sequence: row.sequence,
                            interval_ms: row.interval.as_millis() as u32,
                            state: transition.to,
                            labels_raw: row.labels_raw.into_vec(),
                        },
                        updated_at_ms: self.clock.wall_ms(transition.noticed),
                    });
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
}

/// The receive threads' next batch; never, without threads (a disabled `select!` branch).
async fn next_batch(
    threads: Option<&mut super::udp::ReceiveThreads>,
) -> Option<rollcall_core::monitor::VerifiedBatch> {
    match threads {
        Some(threads) => threads.recv().await,
        None => std::future::pending().await,
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

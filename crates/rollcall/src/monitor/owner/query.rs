//! The query side of the owner: the commands the HTTP handlers send, what they get back,
//! and how the owner answers them (reads of the core, maintenance, forgetting). The loop and
//! the translation of the core's events into store writes stay in `owner.rs`.

use super::*;

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
        reply: oneshot::Sender<Option<crate::monitor::explain::Explanation>>,
    },
    Phi {
        id: String,
        reply: oneshot::Sender<Option<crate::monitor::http::PhiCurve>>,
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
    pub receive: crate::monitor::udp::ReceiveStats,
    /// Each receive thread's counters (empty when the owner reads the socket itself).
    pub receive_threads: Vec<crate::monitor::udp::ThreadStats>,
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
    pub group_settings: Vec<crate::monitor::advice::apply::ScopeSettings>,
    /// Leases held now, and the lease table's counters.
    pub leases_held: usize,
    pub leases: rollcall_core::leases::LeaseStats,
}

impl Owner {
    /// Answers `first` and up to `limit - 1` more commands already queued. Pings are
    /// handled as they come, but their events are drained, and their writes queued, once
    /// for a run of consecutive pings; each ping is answered after that, so a ping is
    /// answered only once its history row is queued for the store, as before.
    pub(super) fn answer_queued(&mut self, first: Command, limit: usize) {
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
                let explained = self.core.node(&id, now).and_then(|view| {
                    crate::monitor::explain::explain(
                        &self.core,
                        &view,
                        now,
                        &self.goals,
                        &self.advisor.sources,
                    )
                });
                let _ = reply.send(explained);
            }
            Command::Phi { id, reply } => {
                let _ = reply.send(crate::monitor::http::phi_curve(&self.core, &id, now, &self.clock));
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
                // Read once: the threads go on counting, and the total must be their sum.
                let receive_threads =
                    self.threads.as_ref().map(|threads| threads.stats()).unwrap_or_default();
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
                    receive: match &self.threads {
                        Some(_) => crate::monitor::udp::total(&receive_threads),
                        None => self.receiver.stats(&self.udp),
                    },
                    receive_threads,
                    store_commit_seconds: self.persist.commit_seconds(),
                    detection_lag: self.detection_lag.clone(),
                    per_node: self.per_node_series(now),
                    per_node_omitted: if self.core.len() > self.per_node_limit { self.core.len() } else { 0 },
                    confirm: self.core.confirm_stats().cloned(),
                    confirmations_in_progress: self.core.confirmations_in_progress(),
                    probes_unsent: self.probes_unsent,
                    advised: self.advisor.advised.clone(),
                    goals_kept: self.advisor.kept.clone(),
                    group_settings: crate::monitor::advice::apply::rows(&self.core, &self.advisor.sources),
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

pub fn node_json(view: &NodeView<'_>, now: Instant, detector: &str) -> NodeJson {
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

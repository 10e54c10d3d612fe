//! The values the monitor hands to its shell: node states, transitions, events, counters.

use crate::Instant;
use crate::wire::{DecodeError, ExitStatus};
use core::time::Duration;
use std::sync::Arc;

/// Where a node stands, as the monitor sees it (DESIGN.md section 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "kebab-case"))]
pub enum NodeState {
    /// Registered (allow list, or restored) but no heartbeat seen yet.
    New,
    Up,
    Suspect,
    Down,
    /// Said goodbye: stopped on purpose; nobody is paged.
    Left,
    /// Maintenance: heartbeats are recorded, deadlines are not judged.
    Paused,
}

impl NodeState {
    pub const ALL: [NodeState; 6] = [
        NodeState::New,
        NodeState::Up,
        NodeState::Suspect,
        NodeState::Down,
        NodeState::Left,
        NodeState::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::New => "new",
            NodeState::Up => "up",
            NodeState::Suspect => "suspect",
            NodeState::Down => "down",
            NodeState::Left => "left",
            NodeState::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Option<NodeState> {
        NodeState::ALL.into_iter().find(|state| state.as_str() == s)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Why a transition happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "kebab-case"))]
#[non_exhaustive]
pub enum Reason {
    /// The first heartbeat of a node the monitor had not heard from.
    FirstHeartbeat,
    /// Heartbeats arrived again (after `rise` of them when recovering from `down`).
    Heartbeat,
    /// A heartbeat of a newer generation: the node restarted.
    Restart,
    /// The fixed-timeout detector's deadline passed.
    Timeout,
    /// The phi accrual detector crossed its threshold.
    Phi,
    /// The node said goodbye.
    Goodbye,
    /// An operator paused the node.
    Pause,
    /// An operator resumed the node, or its maintenance window ended.
    Resume,
    /// An operator removed the node from the monitor (it was decommissioned).
    Forget,
    /// A job's check received a success ping.
    Ping,
    /// A job signalled failure (`/fail`, or a non-zero exit code).
    FailSignal,
    /// A suspect node answered the monitor's probe: the suspicion is cancelled.
    ProbeAnswered,
    /// The node answers probes but its heartbeats do not arrive (a dead heartbeat loop, or a
    /// path that drops them): alive, but not healthy.
    HeartbeatsMissing,
    /// The monitor cannot reach the node, but other agents can: a path problem between the
    /// monitor and the node, not a failure of the node.
    Unreachable,
    /// Heartbeats stopped and no probe, direct or indirect, was answered: confirmed down.
    ProbesUnanswered,
    /// The node's own agent reported that the process it watches exited (an exit report):
    /// down at once, without suspicion or confirmation.
    ProcessExited,
}

impl Reason {
    pub const ALL: [Reason; 16] = [
        Reason::FirstHeartbeat,
        Reason::Heartbeat,
        Reason::Restart,
        Reason::Timeout,
        Reason::Phi,
        Reason::Goodbye,
        Reason::Pause,
        Reason::Resume,
        Reason::Forget,
        Reason::Ping,
        Reason::FailSignal,
        Reason::ProbeAnswered,
        Reason::HeartbeatsMissing,
        Reason::Unreachable,
        Reason::ProbesUnanswered,
        Reason::ProcessExited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FirstHeartbeat => "first-heartbeat",
            Reason::Heartbeat => "heartbeat",
            Reason::Restart => "restart",
            Reason::Timeout => "timeout",
            Reason::Phi => "phi",
            Reason::Goodbye => "goodbye",
            Reason::Pause => "pause",
            Reason::Resume => "resume",
            Reason::Forget => "forget",
            Reason::Ping => "ping",
            Reason::FailSignal => "fail-signal",
            Reason::ProbeAnswered => "probe-answered",
            Reason::HeartbeatsMissing => "heartbeats-missing",
            Reason::Unreachable => "unreachable",
            Reason::ProbesUnanswered => "probes-unanswered",
            Reason::ProcessExited => "process-exited",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|reason| reason.as_str() == s)
    }
}

/// A change of a node's state.
///
/// `from == to == Up` with reason `Restart` records a restart noticed while the node was up:
/// not a change of state, but a fact operators want in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub node: Arc<str>,
    pub generation: u64,
    pub from: NodeState,
    pub to: NodeState,
    pub reason: Reason,
    /// When the transition should have happened: the computed deadline for a timeout, the
    /// arrival for a heartbeat. Never later than `noticed`.
    pub at: Instant,
    /// When the monitor handled it. `noticed - at` is the detection lag.
    pub noticed: Instant,
    /// How the watched process ended, for a `down (process-exited)` (its code or signal when
    /// the agent could read them); `None` for every other transition.
    pub exit: Option<ExitStatus>,
}

/// What a shell persists of a node (with its id, generation and state, which the
/// transition carries), as it stood when the transition was queued: the shell writes the
/// node's row from it without reading the node back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRow {
    pub sequence: u64,
    pub interval: Duration,
    /// The raw label block (see [`crate::wire::Labels`]).
    pub labels_raw: Box<[u8]>,
}

/// What the shell must act on, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MonitorEvent {
    /// Record it durably (the transition, and the node's row from `transition` and `row`),
    /// then react (log, alert).
    Transition { transition: Transition, row: NodeRow },
    /// A node was registered, restarted (new generation) or changed its labels or interval:
    /// persist its record so the next monitor start knows it.
    NodeChanged { node: Arc<str> },
    /// The node was forgotten (after its `forget` transition to `left`): remove its record.
    Forgotten { node: Arc<str> },
    /// The monitor's own loop ran late by `stalled`: it was paused or starved. Every node
    /// silent since before `resumed` gets a fresh grace period from `resumed`.
    SelfPause { stalled: Duration, resumed: Instant },
}

/// Why an input datagram was dropped. Every variant is the sender's doing (or an
/// attacker's); a rejected datagram changes nothing but its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// The codec refused it (size, format, version, key, tag).
    Decode(DecodeError),
    /// Same generation, sequence not newer than the last accepted one: a replay or a
    /// duplicate.
    Replay,
    /// A generation older than the node's current one: a replay from before a restart.
    OldGeneration,
    /// The node is not on the allow list.
    NotAllowed,
    /// The node table is full (`max_nodes`).
    Capacity,
    /// A goodbye or an exit report from a node the monitor does not know (nothing to leave,
    /// nothing to take down).
    UnknownNode,
    /// A probe or probe request sent to the monitor: only agents answer those.
    UnexpectedKind,
    /// An ack that answers no probe in progress: late, replayed, or for another monitor.
    StaleAck,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Decode(error) => error.as_str(),
            Rejection::Replay => "replay",
            Rejection::OldGeneration => "old_generation",
            Rejection::NotAllowed => "not_allowed",
            Rejection::Capacity => "capacity",
            Rejection::UnknownNode => "unknown_node",
            Rejection::UnexpectedKind => "unexpected_kind",
            Rejection::StaleAck => "stale_ack",
        }
    }

    /// Every reason, in a fixed order (the order of the counters in [`MonitorStats`]).
    pub fn all() -> impl Iterator<Item = Rejection> {
        DecodeError::ALL.into_iter().map(Rejection::Decode).chain([
            Rejection::Replay,
            Rejection::OldGeneration,
            Rejection::NotAllowed,
            Rejection::Capacity,
            Rejection::UnknownNode,
            Rejection::UnexpectedKind,
            Rejection::StaleAck,
        ])
    }
}

/// Why [`super::Monitor::restore`] refused a stored node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    #[error("node {0:?} is restored twice")]
    Twice(String),
    #[error("more stored nodes than max_nodes ({0})")]
    Capacity(usize),
    #[error("node {0:?} has an unreadable label block")]
    UnreadableLabels(String),
}

/// Counters of what the monitor has done since it started. Cheap to copy for metrics.
#[derive(Clone, Debug, Default)]
pub struct MonitorStats {
    /// Authenticated, fresh heartbeats accepted.
    pub heartbeats: u64,
    /// Heartbeats that never arrived, from the gaps in accepted sequence numbers within a
    /// generation (a goodbye or a reordered datagram counts too: an estimate).
    pub heartbeats_missed: u64,
    /// Authenticated, fresh goodbyes accepted.
    pub goodbyes: u64,
    /// Authenticated, fresh exit reports accepted (repeats of one report included).
    pub exits: u64,
    /// Interval advice datagrams queued for agents (see `Monitor::set_advised_interval`).
    pub advice_sent: u64,
    /// Dropped datagrams, by reason ([`Rejection::as_str`] names them for metrics).
    pub rejected: std::collections::BTreeMap<Rejection, u64>,
    /// Transitions by (from, to).
    pub transitions: std::collections::BTreeMap<(NodeState, NodeState), u64>,
    /// Nodes in each state, indexed by `NodeState as usize`.
    pub nodes_by_state: [u64; 6],
    /// Times the monitor noticed its own loop had stalled.
    pub self_pauses: u64,
    /// Deadlines that fired but were pushed back because the node's silence overlapped a
    /// stall of the monitor or a fresh grace period.
    pub deadlines_deferred: u64,
}

impl MonitorStats {
    /// The fraction of heartbeats lost on the way, over the whole fleet since the start.
    pub fn loss_estimate(&self) -> f64 {
        let sent = self.heartbeats + self.heartbeats_missed;
        if sent == 0 { 0.0 } else { self.heartbeats_missed as f64 / sent as f64 }
    }

    pub fn nodes_in(&self, state: NodeState) -> u64 {
        self.nodes_by_state[state.index()]
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

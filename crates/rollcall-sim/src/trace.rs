//! What a run leaves behind: the ground truth of what every node really did, what the
//! network really delivered, and every transition the monitor reported.
//!
//! The checkers (`check.rs`) read only this: they never look inside the monitor, so a
//! bug in the core shows up as a disagreement between the two halves of a trace.

use core::time::Duration;
use rollcall_core::Instant;
use rollcall_core::monitor::{NodeState, Transition};
use std::sync::Arc;

/// A stretch of virtual time, `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub from: Instant,
    pub to: Instant,
}

impl Span {
    pub fn contains(&self, at: Instant) -> bool {
        self.from <= at && at < self.to
    }

    /// Whether the span shares an instant with the closed stretch `[from, to]`.
    pub fn meets(&self, from: Instant, to: Instant) -> bool {
        self.from <= to && from < self.to
    }
}

/// The span of `spans` (sorted, disjoint) that contains `at`, if any.
pub(crate) fn span_at(spans: &[Span], at: Instant) -> Option<Span> {
    let after = spans.partition_point(|span| span.from <= at);
    after.checked_sub(1).map(|i| spans[i]).filter(|span| span.contains(at))
}

/// What really happened to one node: the ground truth the monitor is judged against.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeTruth {
    pub id: Arc<str>,
    /// When its process was dead: from a crash to its restart (or the end of time).
    pub dead: Vec<Span>,
    /// The crashes (by instant, sorted) that were of a watched process, which the node's
    /// agent reports (`process-crash` faults); the others are silent.
    pub reported: Vec<Instant>,
    /// When it restarted as a new generation (after a crash, or while running).
    pub restarts: Vec<Instant>,
    /// When it was stalled (sending nothing).
    pub paused: Vec<Span>,
    /// When its path to the monitor was cut (a partition).
    pub cut: Vec<Span>,
    /// When the path from the monitor to it was cut (probes do not reach it).
    pub cut_from_monitor: Vec<Span>,
    /// When its datagrams left late, and by up to how much.
    pub slow: Vec<(Span, Duration)>,
    /// Its clock's rate: it sends every `interval * drift`.
    pub drift: f64,
}

impl NodeTruth {
    /// Whether a fault (death, a stall or a cut path) touched the stretch `[from, to]`: a
    /// silence over that stretch is then explained, and a down is not a false alarm.
    pub fn faulty_during(&self, from: Instant, to: Instant) -> bool {
        [&self.dead, &self.paused, &self.cut].into_iter().flatten().any(|span| span.meets(from, to))
    }

    pub fn dead_at(&self, at: Instant) -> bool {
        span_at(&self.dead, at).is_some()
    }

    /// Whether the crash at `at` was one the node's agent reports.
    pub fn reports_crash_at(&self, at: Instant) -> bool {
        self.reported.binary_search(&at).is_ok()
    }
}

/// What made the monitor report a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A deadline (the monitor's own timer).
    Timeout,
    /// The delivery of a datagram.
    Datagram {
        /// When the node sent it.
        sent: Instant,
        /// Whether it was newer than every datagram of the node delivered before: something
        /// the node really sent again, not a duplicate or a stale copy.
        new: bool,
    },
}

/// One transition the monitor reported, with the network facts around it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The node's index in [`Trace::nodes`].
    pub node: u32,
    pub transition: Transition,
    pub cause: Cause,
    /// The arrival of the newest datagram the monitor had from the node before this
    /// transition: where the silence that a timeout judges began.
    pub silence_from: Option<Instant>,
}

/// The inter-arrival times the monitor saw from one node's current generation, kept by the
/// simulator (not read from the monitor) so that the completeness bound is computed
/// independently of the code it checks.
#[derive(Clone, Debug)]
pub struct Arrivals {
    pub last: Option<Instant>,
    /// Inter-arrival times in microseconds, Akka's two seeds first (see docs/PROTOCOL.md).
    ring: [u32; WINDOW],
    len: u8,
    next: u8,
}

/// The window of the phi detector (`rollcall_detect::PHI_WINDOW`); copied, not imported,
/// so that the checker's arithmetic stays independent of the detector's.
pub const WINDOW: usize = 32;

impl Arrivals {
    /// No arrival yet, for a node that declares `interval`.
    pub fn new(interval: Duration) -> Arrivals {
        let mut arrivals = Arrivals { last: None, ring: [0; WINDOW], len: 0, next: 0 };
        let quarter = interval / 4;
        arrivals.push(interval - quarter);
        arrivals.push(interval + quarter);
        arrivals
    }

    pub fn record(&mut self, at: Instant) {
        if let Some(last) = self.last {
            self.push(at - last);
        }
        self.last = Some(at);
    }

    fn push(&mut self, gap: Duration) {
        self.ring[usize::from(self.next)] = u32::try_from(gap.as_micros()).unwrap_or(u32::MAX);
        self.next = ((usize::from(self.next) + 1) % WINDOW) as u8;
        self.len = (usize::from(self.len) + 1).min(WINDOW) as u8;
    }

    /// Mean and population standard deviation of the window, in seconds.
    pub fn moments(&self) -> (f64, f64) {
        let window = &self.ring[..usize::from(self.len)];
        let n = window.len() as f64;
        let mean = window.iter().map(|&us| f64::from(us)).sum::<f64>() / n;
        let variance = window.iter().map(|&us| (f64::from(us) - mean).powi(2)).sum::<f64>() / n;
        (mean / 1e6, variance.sqrt() / 1e6)
    }
}

/// A crash, with what the monitor had received from that generation by the end.
#[derive(Clone, Debug)]
pub struct Crash {
    pub node: u32,
    pub at: Instant,
    /// When the node came back, if it did.
    pub restart: Option<Instant>,
    /// The arrivals of the crashed generation, including datagrams still in flight at the
    /// crash that arrived later.
    pub arrivals: Arrivals,
    /// The latest answer to a probe the monitor had from the node (before or after the
    /// crash, while in flight): a sign of life that deadlines may count from.
    pub answered: Option<Instant>,
}

/// Counters of the simulated network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams the agents sent (each once, however many copies the network made).
    pub sent: u64,
    pub bytes: u64,
    /// Extra copies the network made.
    pub duplicated: u64,
    /// Copies lost at random or in a burst.
    pub lost: u64,
    /// Copies dropped because the path was cut.
    pub cut: u64,
    pub delivered: u64,
}

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct Trace {
    pub seed: u64,
    pub end: Instant,
    pub interval: Duration,
    pub nodes: Vec<NodeTruth>,
    pub crashes: Vec<Crash>,
    /// Every transition, in the order the monitor reported them.
    pub transitions: Vec<Observed>,
    pub net: NetStats,
    /// The longest one-way latency any delivered datagram had.
    pub max_latency: Duration,
    /// Queue events and monitor wake-ups processed.
    pub events: u64,
    /// Stalls the monitor noticed in itself (none are simulated yet, so any is a finding).
    pub self_pauses: u64,
    /// Datagrams the monitor refused, by reason (its own counters, read at the end).
    pub rejected: std::collections::BTreeMap<rollcall_core::monitor::Rejection, u64>,
    /// How often the monitor wanted to be woken at most.
    pub tick: Duration,
    /// The monitor's confirmation settings, if it probed suspects (the checkers' bound
    /// depends on them).
    pub confirm: Option<rollcall_core::monitor::ConfirmConfig>,
}

impl Trace {
    /// FNV-1a (64-bit) over the ordered transitions: a run's fingerprint. Two runs of one
    /// scenario and seed give the same hash; the hasher is written here so that it can never
    /// change with a dependency or a platform.
    pub fn hash(&self) -> u64 {
        let mut hash = Fnv::default();
        for observed in &self.transitions {
            let t = &observed.transition;
            hash.write(&observed.node.to_le_bytes());
            hash.write(t.node.as_bytes());
            hash.write(&t.generation.to_le_bytes());
            hash.write(t.from.as_str().as_bytes());
            hash.write(t.to.as_str().as_bytes());
            hash.write(t.reason.as_str().as_bytes());
            hash.write(&t.at.as_nanos().to_le_bytes());
            hash.write(&t.noticed.as_nanos().to_le_bytes());
        }
        hash.0
    }

    /// The transitions of one node, in order.
    pub fn of_node(&self, node: u32) -> impl Iterator<Item = &Observed> {
        self.transitions.iter().filter(move |o| o.node == node)
    }

    /// Node-time observed: nodes times the run's length, in hours.
    pub fn node_hours(&self) -> f64 {
        self.nodes.len() as f64 * Duration::from_nanos(self.end.as_nanos()).as_secs_f64() / 3600.0
    }
}

/// The state the monitor had a node in just before `at`, from the transitions alone.
pub(crate) fn state_before(transitions: &[&Observed], at: Instant) -> NodeState {
    transitions
        .iter()
        .take_while(|o| o.transition.noticed < at)
        .last()
        .map_or(NodeState::New, |o| o.transition.to)
}

/// The state the monitor had a node in once it had handled everything up to `at` included.
pub(crate) fn state_after(transitions: &[&Observed], at: Instant) -> NodeState {
    transitions
        .iter()
        .take_while(|o| o.transition.noticed <= at)
        .last()
        .map_or(NodeState::New, |o| o.transition.to)
}

struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator so that ("ab", "c") and ("a", "bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

/// An event in a simulation's queue, ordered by (instant, insertion number) so that two
/// events due at the same instant run in the order they were scheduled: a run is a pure
/// function of its scenario. Shared by the central and the peer engines.
pub(crate) struct Queued<E> {
    pub at: Instant,
    pub order: u64,
    pub event: E,
}

impl<E> PartialEq for Queued<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl<E> Eq for Queued<E> {}
impl<E> PartialOrd for Queued<E> {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Queued<E> {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

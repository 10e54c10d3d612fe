//! A peer's alerts: its own view's member transitions through the monitor's incident layer
//! ([`Alerter`]), made durable by the monitor's store thread ([`Persist`]), and sent by the
//! monitor's delivery loops ([`Delivery`]). Only the glue is here; every rule (incidents,
//! flapping, grouping, the alert document, routing, at-least-once delivery) is the monitor's.
//!
//! The owner task holds [`Alerts`] and calls it in the order the monitor's owner does: each
//! transition into [`Alerts::handle_member`] (which also queues the transition's store row),
//! [`Alerts::handle_timeout`] when [`Alerts::poll_timeout`] is due, then [`Alerts::commit`],
//! which turns the notifications into incident and outbox rows and queues them in the same
//! batch as the transitions that caused them. Delivery reads only committed outbox rows, so
//! nothing is sent before it is durable.

use super::PeerAlerting;
use crate::alerts::build;
use crate::alerts::delivery::{Delivery, HealthBoard};
use crate::alerts::sinks::SinkConfig;
use crate::clock::Clock;
use crate::store_thread::{Persist, transition_write};
use anyhow::Context;
use rollcall_core::Instant;
use rollcall_core::alerts::{AlertStats, Alerter, SubjectKind};
use rollcall_core::monitor::{NodeState, Reason, Transition};
use rollcall_core::swim::MemberState;
use rollcall_store::{Store, StoreError, Write};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The label naming the peer whose view an alert comes from: every peer alerts on its own
/// view, so receivers tell the copies apart (and group them) by it.
pub const OBSERVER_LABEL: &str = "observer";
/// The label naming the cluster.
pub const CLUSTER_LABEL: &str = "cluster";

/// The incident layer and the store thread, owned by the owner task.
pub struct Alerts {
    alerter: Alerter,
    sinks: Vec<SinkConfig>,
    persist: Persist,
    clock: Clock,
    /// The labels of every alert of this peer: `observer` and `cluster`.
    labels: BTreeMap<String, String>,
}

/// What HTTP handlers read: each sink's health (kept by the delivery loops) and, through
/// their own connection, the outbox depth.
#[derive(Clone)]
pub struct SinksView {
    pub board: HealthBoard,
    reader: Arc<Mutex<Store>>,
    /// Whether the store can commit (`/healthz` answers 503 while it cannot).
    pub store: crate::store_thread::StoreHealth,
}

/// The alerting counters `/v1/status` and `/metrics` show, copied out of the owner.
#[derive(Clone, Debug, Default)]
pub struct AlertsSnapshot {
    pub stats: AlertStats,
    pub open_incidents: usize,
    pub store_batches: u64,
    pub store_errors: u64,
}

/// Everything alerting needs, started: the owner's part, the delivery loops, the API's view.
pub struct Started {
    pub alerts: Alerts,
    pub delivery: Delivery,
    pub view: SinksView,
}

/// Opens incidents left open by this peer's previous run, starts the store thread and one
/// delivery loop per sink (which end when `stop` turns true).
pub fn start(
    store: Store,
    settings: &PeerAlerting,
    name: &str,
    cluster: &str,
    clock: Clock,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Started> {
    let mut alerter = Alerter::new(settings.alerts.clone())
        .map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
    alerter.reserve_ids_through(store.max_incident_id().context("cannot read incidents from the store")?);
    let open = store.open_incidents().context("cannot read incidents from the store")?;
    for record in &open {
        let incident = build::restored_incident(record, &clock);
        // A restarted peer's view starts empty: a member with an open incident counts as
        // down until this peer hears of it again. Up (or left) resolves the incident; down
        // finds it already open and opens no second one.
        alerter.restore(incident, |_| true);
    }
    if !open.is_empty() {
        tracing::info!(incidents = open.len(), "restored open incidents from the store");
    }
    let reader = Store::open(&settings.data_dir).context("cannot open a reader on the store")?;
    let crate::alerts::Pipeline { persist, delivery } = crate::alerts::start_pipeline(
        store,
        &settings.sinks,
        &settings.data_dir,
        (clock.clone(), None),
        stop,
    )?;
    let view = SinksView {
        board: delivery.health.clone(),
        reader: Arc::new(Mutex::new(reader)),
        store: persist.health(),
    };
    let labels = BTreeMap::from([
        (OBSERVER_LABEL.to_string(), name.to_string()),
        (CLUSTER_LABEL.to_string(), cluster.to_string()),
    ]);
    let alerts = Alerts { alerter, sinks: settings.sinks.clone(), persist, clock, labels };
    Ok(Started { alerts, delivery, view })
}

impl Alerts {
    /// Takes one member transition of this peer's view (`from` is `None` for a member heard
    /// of for the first time) and queues its store row in `batch`.
    pub fn handle_member(
        &mut self,
        member: &str,
        from: Option<MemberState>,
        to: MemberState,
        incarnation: u32,
        at: Instant,
        batch: &mut Vec<Write>,
    ) {
        let transition = Transition {
            node: Arc::from(member),
            generation: u64::from(incarnation),
            from: from.map_or(NodeState::New, node_state),
            to: node_state(to),
            reason: reason(from, to),
            // SWIM has no deadline to report: the transition is stamped when it was noticed.
            at,
            noticed: at,
            exit: None,
        };
        let restored_down = from.is_none() && to == MemberState::Down && self.covered(member);
        if !restored_down {
            self.alerter.handle_transition(SubjectKind::Node, &transition, at);
        }
        batch.push(transition_write(SubjectKind::Node, &transition, &self.clock));
    }

    /// Whether an open incident (restored from the store: this run has not heard of the
    /// member yet) already covers `member`. A restarted peer first hears of a member that is
    /// still down as `new -> down`; the restored incident, which the incident layer already
    /// counts as down, speaks for it. Fed again, that down would be held for `group_wait`,
    /// and a recovery within the hold would end the hold but not the incident.
    fn covered(&self, member: &str) -> bool {
        self.alerter.open_incidents().any(|incident| {
            incident.subject_kind != SubjectKind::Check && incident.members.iter().any(|m| m == member)
        })
    }

    /// When [`Alerts::handle_timeout`] is due next: a held down, a reminder, a flapping member
    /// settling.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.alerter.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.alerter.handle_timeout(now);
    }

    /// Adds the notifications made so far to `batch` (each one's incident row, its change and
    /// one outbox row per sink whose route takes it), then queues the whole batch for one
    /// commit: a crash loses the transitions and their alerts together or not at all.
    /// `members` is the size of this peer's view, the base of the grouping share.
    pub fn commit(&mut self, mut batch: Vec<Write>, members: usize) {
        self.alerter.set_population(members);
        while let Some(notification) = self.alerter.poll_notification() {
            let labels = self.labels.clone();
            let admission = self.alerter.admit(&notification, &labels, self.clock.now());
            let alert = build::alert(&notification, labels, &self.clock);
            tracing::info!(
                incident = notification.incident, kind = notification.kind.as_str(),
                key = %alert.idempotency_key, ?admission, "{}", alert.summary
            );
            build::writes(&notification, &alert, admission, &self.sinks, &self.clock, &mut batch);
        }
        if !batch.is_empty() {
            self.persist.write(batch);
        }
    }

    pub fn snapshot(&self) -> AlertsSnapshot {
        let (store_batches, store_errors) = self.persist.counters();
        AlertsSnapshot {
            stats: self.alerter.stats().clone(),
            open_incidents: self.alerter.open_incidents().count(),
            store_batches,
            store_errors,
        }
    }

    /// Waits until everything queued is committed and closes the store. The delivery loops
    /// (which hold handles on the store thread) must have ended first.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let mut persist = self.persist;
        tokio::task::spawn_blocking(move || persist.shutdown()).await.context("the store thread failed")
    }
}

impl SinksView {
    /// Undelivered outbox rows per sink.
    pub async fn outbox_depth(&self) -> Result<BTreeMap<String, u64>, String> {
        let reader = self.reader.clone();
        let depth = tokio::task::spawn_blocking(move || {
            let store = reader.lock().map_err(|_| "store reader poisoned".to_string())?;
            store.outbox_depth().map_err(|error: StoreError| error.to_string())
        })
        .await
        .map_err(|error| error.to_string())??;
        Ok(depth.into_iter().collect())
    }
}

fn node_state(state: MemberState) -> NodeState {
    match state {
        MemberState::Up => NodeState::Up,
        MemberState::Suspect => NodeState::Suspect,
        MemberState::Down => NodeState::Down,
        MemberState::Left => NodeState::Left,
    }
}

/// The monitor's word for why a member moved. A SWIM member is suspected when a probe of it
/// (direct and indirect, by this peer or by the one that gossiped it) went unanswered, and
/// declared down when nobody refuted that in time: both are `probes-unanswered`. Coming back
/// is being heard from again, at a newer incarnation.
fn reason(from: Option<MemberState>, to: MemberState) -> Reason {
    match (from, to) {
        (_, MemberState::Left) => Reason::Goodbye,
        (_, MemberState::Suspect | MemberState::Down) => Reason::ProbesUnanswered,
        (None, MemberState::Up) => Reason::FirstHeartbeat,
        (Some(_), MemberState::Up) => Reason::Heartbeat,
    }
}

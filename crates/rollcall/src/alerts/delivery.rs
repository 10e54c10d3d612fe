//! The third layer of alerting: delivery from the outbox, at least once, in order per sink.
//!
//! One task per sink walks that sink's undelivered outbox rows in id order. An attempt that
//! fails is retried with exponential back-off (1 s doubling to 5 min) and holds the sink's
//! later alerts, so receivers see every node's alerts in order; other sinks go on
//! unaffected. Every attempt's outcome is written back to the outbox, so a restart resumes
//! exactly where delivery stood (an alert sent but not yet marked may be sent again: that is
//! what the idempotency key is for).

use super::model::{Alert, StoredAlert};
use super::sinks::{DeliveryError, Sink};
use crate::clock::Clock;
use crate::cluster::link::Link;
use crate::store_thread::PersistHandle;
use rollcall_store::{OutboxRow, Store, Write};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Consecutive failures after which a sink is reported as failing.
pub const FAILING_AFTER: u32 = 5;

/// How a sink is doing, for the API and metrics.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SinkHealth {
    pub kind: &'static str,
    pub delivered: u64,
    pub failed_attempts: u64,
    pub consecutive_failures: u32,
    pub failing: bool,
    pub last_error: Option<String>,
    /// Alerts whose stored document could not be read (never expected; counted, skipped).
    pub unreadable: u64,
    /// Alertmanager only: alerts kept firing (re-sent every resend interval), and those not
    /// kept because the set was full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firing: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firing_untracked: Option<u64>,
}

pub type HealthBoard = Arc<Mutex<BTreeMap<String, SinkHealth>>>;

/// The running delivery loops.
pub struct Delivery {
    tasks: Vec<JoinHandle<()>>,
    pub health: HealthBoard,
}

impl Delivery {
    /// Starts one loop per sink. `committed` changes after every store commit (new rows may
    /// be waiting); `stop` ends the loops.
    pub fn start(
        sinks: Vec<Sink>,
        data_dir: PathBuf,
        persist: PersistHandle,
        committed: watch::Receiver<u64>,
        (clock, cluster): (Clock, Option<Arc<Link>>),
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Delivery> {
        let health: HealthBoard = Arc::default();
        let mut tasks = Vec::new();
        for sink in sinks {
            let reader = Store::open(&data_dir)?;
            restore_firing(&sink, &reader)?;
            health.lock().expect("not poisoned").insert(
                sink.name().to_string(),
                SinkHealth { kind: sink.config().kind(), ..SinkHealth::default() },
            );
            let worker = Worker {
                sink,
                reader: Arc::new(Mutex::new(reader)),
                persist: persist.clone(),
                committed: committed.clone(),
                stop: stop.clone(),
                health: health.clone(),
                clock: clock.clone(),
                cluster: cluster.clone(),
            };
            tasks.push(tokio::spawn(worker.run()));
        }
        Ok(Delivery { tasks, health })
    }

    /// Waits for every loop to finish (after `stop`).
    pub async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Alertmanager forgets firing alerts it stops hearing about: after a restart, tell the sink
/// which alerts it had delivered for incidents that are still open.
fn restore_firing(sink: &Sink, reader: &Store) -> anyhow::Result<()> {
    if sink.resend_interval().is_none() {
        return Ok(());
    }
    let mut latest: BTreeMap<u64, Alert> = BTreeMap::new();
    for payload in reader.delivered_for_open_incidents(sink.name())? {
        if let Ok(alert) = serde_json::from_str::<Alert>(&payload) {
            latest.insert(alert.incident.id, alert);
        }
    }
    sink.restore_firing(latest.into_values().collect());
    Ok(())
}

struct Worker {
    sink: Sink,
    reader: Arc<Mutex<Store>>,
    persist: PersistHandle,
    committed: watch::Receiver<u64>,
    stop: watch::Receiver<bool>,
    health: HealthBoard,
    clock: Clock,
    /// `[cluster]`: alerts with a fencing token go out only while this monitor leads with it.
    cluster: Option<Arc<Link>>,
}

impl Worker {
    async fn run(mut self) {
        // Rows up to this id are done (delivered, or skipped as unreadable).
        let mut cursor = 0i64;
        let mut backoff = FIRST_BACKOFF;
        let resend_every = self.sink.resend_interval();
        let mut resend = tokio::time::interval(resend_every.unwrap_or(Duration::from_secs(3600)));
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.committed.borrow_and_update();
            let row = match self.next_row(cursor).await {
                Ok(row) => row,
                Err(error) => {
                    tracing::error!(sink = self.sink.name(), %error, "cannot read the outbox");
                    None
                }
            };
            let Some(row) = row else {
                tokio::select! {
                    _ = self.stop.changed() => return,
                    _ = self.committed.changed() => {}
                    _ = resend.tick(), if resend_every.is_some() => self.resend().await,
                }
                continue;
            };
            let Ok(stored) = StoredAlert::parse(row.entry.payload) else {
                tracing::error!(
                    sink = self.sink.name(),
                    outbox_id = row.id,
                    "unreadable alert document; skipped"
                );
                self.record(row.id, Some("unreadable alert document".into()));
                self.update(|h| h.unreadable += 1);
                cursor = row.id;
                continue;
            };
            let alert = &stored.alert;
            if let Some(token) = alert.fencing_token
                && let Some(link) = &self.cluster
                && !link.gate().allows(token, std::time::Instant::now())
            {
                // Made while this monitor led; it no longer does (or its tenure ran out):
                // the new leader sends what the cluster's records say is undelivered.
                tracing::warn!(
                    sink = self.sink.name(), key = %alert.idempotency_key, fencing_token = token,
                    "alert not sent: this monitor no longer leads with its fencing token"
                );
                link.count_refused(1);
                self.record(row.id, Some(format!("fenced: not sent, fencing token {token} no longer leads")));
                cursor = row.id;
                continue;
            }
            match self.sink.deliver(&stored).await {
                Ok(()) => {
                    if let (Some(link), Some(_)) = (&self.cluster, alert.fencing_token) {
                        link.delivered(&alert.idempotency_key);
                    }
                    self.record(row.id, None);
                    self.update(|h| {
                        h.delivered += 1;
                        h.consecutive_failures = 0;
                        h.failing = false;
                    });
                    tracing::info!(sink = self.sink.name(), key = %alert.idempotency_key, "alert delivered");
                    cursor = row.id;
                    backoff = FIRST_BACKOFF;
                }
                Err(error) => {
                    self.fail(row.id, &alert.idempotency_key, &error, backoff);
                    tokio::select! {
                        _ = self.stop.changed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn next_row(&self, cursor: i64) -> anyhow::Result<Option<OutboxRow>> {
        let reader = self.reader.clone();
        let sink = self.sink.name().to_string();
        let row = tokio::task::spawn_blocking(move || {
            reader.lock().expect("not poisoned").next_undelivered(&sink, cursor)
        })
        .await??;
        Ok(row)
    }

    fn fail(&self, outbox_id: i64, key: &str, error: &DeliveryError, backoff: Duration) {
        self.record(outbox_id, Some(error.to_string()));
        self.update(|h| {
            h.failed_attempts += 1;
            h.consecutive_failures += 1;
            h.failing = h.consecutive_failures >= FAILING_AFTER;
            h.last_error = Some(error.to_string());
        });
        tracing::warn!(
            sink = self.sink.name(), key = %key, %error,
            retry_in = %humantime::format_duration(backoff), "alert delivery failed"
        );
    }

    async fn resend(&self) {
        match self.sink.resend_firing().await {
            Ok(count) => {
                tracing::debug!(sink = self.sink.name(), count, "re-sent firing alerts");
                self.update(|_| {});
            }
            Err(error) => {
                tracing::warn!(sink = self.sink.name(), %error, "re-sending firing alerts failed");
                self.update(|h| h.failed_attempts += 1);
            }
        }
    }

    fn record(&self, outbox_id: i64, error: Option<String>) {
        let at_ms = self.clock.wall_ms(self.clock.now());
        self.persist.write(vec![Write::Delivery { outbox_id, at_ms, error }]);
    }

    fn update(&self, change: impl FnOnce(&mut SinkHealth)) {
        if let Some(health) = self.health.lock().expect("not poisoned").get_mut(self.sink.name()) {
            change(health);
            if let Some((kept, untracked)) = self.sink.firing() {
                health.firing = Some(kept);
                health.firing_untracked = Some(untracked);
            }
        }
    }
}

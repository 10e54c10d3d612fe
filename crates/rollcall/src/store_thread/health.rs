//! Whether the store can commit, and what its queue holds: shared by the store thread (which
//! writes it), `/healthz` and the ping endpoints (which refuse while it fails), and metrics.
//!
//! While the store cannot commit (a full disk, an I/O error), the monitor keeps detecting and
//! queueing, visibly: `/healthz` answers 503 with the error, pings are refused with 503 (a
//! ping acknowledged must be durable; the client's `--retry` sends it again), and the queue is
//! bounded by shedding what can be rebuilt (ping history rows, sequence checkpoints) before
//! anything that pages (transitions, incidents, outbox rows, which are never dropped).

use rollcall_store::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most bytes (estimated) of queued writes before ping history rows are shed.
pub const MAX_QUEUED_BYTES: u64 = 64 * 1024 * 1024;
/// Most queued writes before ping history rows are shed.
pub const MAX_QUEUED_WRITES: u64 = 100_000;

/// A cheap, cloneable view of the store's health.
#[derive(Clone, Default)]
pub struct StoreHealth {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    failing: AtomicBool,
    /// The latest commit error, while failing.
    error: Mutex<Option<String>>,
    queued_writes: AtomicU64,
    queued_bytes: AtomicU64,
    shed_pings: AtomicU64,
    shed_checkpoint_rows: AtomicU64,
    pings_refused: AtomicU64,
}

/// The store's health for metrics and `/v1/status`.
#[derive(Clone, Debug, Default)]
pub struct StoreHealthSnapshot {
    pub failing: bool,
    pub error: Option<String>,
    pub queued_writes: u64,
    pub queued_bytes: u64,
    pub shed_pings: u64,
    pub shed_checkpoint_rows: u64,
    pub pings_refused: u64,
}

impl StoreHealth {
    /// The commit error while the store cannot commit; `None` when it can.
    pub fn failure(&self) -> Option<String> {
        if !self.inner.failing.load(Ordering::Acquire) {
            return None;
        }
        let error = self.inner.error.lock().map(|error| error.clone()).unwrap_or_default();
        Some(error.unwrap_or_else(|| "store commits are failing".to_string()))
    }

    pub fn snapshot(&self) -> StoreHealthSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StoreHealthSnapshot {
            failing: self.inner.failing.load(Ordering::Acquire),
            error: self.failure(),
            queued_writes: load(&self.inner.queued_writes),
            queued_bytes: load(&self.inner.queued_bytes),
            shed_pings: load(&self.inner.shed_pings),
            shed_checkpoint_rows: load(&self.inner.shed_checkpoint_rows),
            pings_refused: load(&self.inner.pings_refused),
        }
    }

    /// Counts a ping refused because the store cannot commit.
    pub fn refused_ping(&self) {
        self.inner.pings_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn fail(&self, error: String) {
        if let Ok(mut slot) = self.inner.error.lock() {
            *slot = Some(error);
        }
        self.inner.failing.store(true, Ordering::Release);
    }

    pub(super) fn recover(&self) {
        self.inner.failing.store(false, Ordering::Release);
        if let Ok(mut slot) = self.inner.error.lock() {
            *slot = None;
        }
    }

    pub(super) fn set_queue(&self, writes: u64, bytes: u64) {
        self.inner.queued_writes.store(writes, Ordering::Relaxed);
        self.inner.queued_bytes.store(bytes, Ordering::Relaxed);
    }

    pub(super) fn shed(&self, pings: u64, checkpoint_rows: u64) {
        self.inner.shed_pings.fetch_add(pings, Ordering::Relaxed);
        self.inner.shed_checkpoint_rows.fetch_add(checkpoint_rows, Ordering::Relaxed);
    }
}

/// About how many bytes a queued write holds: its fixed part and what it carries.
pub fn write_bytes(write: &Write) -> u64 {
    let carried = match write {
        Write::Node { record, .. } => record.id.len() + record.labels_raw.len(),
        Write::Transition(record) => record.node.len(),
        Write::Incident(record) => {
            record.members.iter().map(String::len).sum::<usize>() + record.subject.len()
        }
        Write::Outbox(entry) => entry.payload.len() + entry.subject.len() + entry.idempotency_key.len(),
        Write::Delivery { error, .. } => error.as_ref().map_or(0, String::len),
        Write::Check(record) => record.spec_json.len() + record.id.len(),
        Write::Ping { record, .. } => record.body.len() + record.check_id.len(),
        Write::IncidentChange(record) => {
            record.incident.members.iter().map(String::len).sum::<usize>() + record.summary.len()
        }
        _ => 0,
    };
    (std::mem::size_of::<Write>() + carried) as u64
}

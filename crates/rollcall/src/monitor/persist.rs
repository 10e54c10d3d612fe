//! The store thread: makes batches of writes durable, merging whatever has queued up into
//! one transaction (group commit), so a burst of ten thousand transitions costs a handful of
//! fsyncs rather than ten thousand.

use rollcall_store::{Store, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Persist {
    sender: Option<mpsc::Sender<Vec<Write>>>,
    committed: tokio::sync::watch::Receiver<u64>,
    thread: Option<JoinHandle<()>>,
    batches: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
}

impl Persist {
    pub fn start(mut store: Store) -> Persist {
        let (sender, receiver) = mpsc::channel::<Vec<Write>>();
        let batches = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let (batch_count, error_count) = (batches.clone(), errors.clone());
        // Bumped after every commit, so the delivery loops know new outbox rows are durable.
        let (committed_tx, committed) = tokio::sync::watch::channel(0u64);
        let thread = std::thread::Builder::new()
            .name("rollcall-store".into())
            .spawn(move || {
                while let Ok(mut batch) = receiver.recv() {
                    while let Ok(more) = receiver.try_recv() {
                        batch.extend(more);
                    }
                    write_with_retry(&mut store, &batch, &error_count);
                    batch_count.fetch_add(1, Ordering::Relaxed);
                    committed_tx.send_modify(|count| *count += 1);
                }
            })
            .expect("spawning a thread only fails when the process is out of resources");
        Persist { sender: Some(sender), committed, thread: Some(thread), batches, errors }
    }

    /// A handle other tasks (delivery loops) use to queue their own writes.
    pub fn handle(&self) -> PersistHandle {
        PersistHandle { sender: self.sender.clone().expect("handles are taken before shutdown") }
    }

    /// Changes after every commit.
    pub fn committed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Queues a batch; the store thread commits it (merged with others) as soon as it can.
    pub fn write(&self, batch: Vec<Write>) {
        if let Some(sender) = &self.sender {
            // The thread only stops after `shutdown`, so a send cannot fail before it.
            let _ = sender.send(batch);
        }
    }

    /// Committed batches and failed attempts so far.
    pub fn counters(&self) -> (u64, u64) {
        (self.batches.load(Ordering::Relaxed), self.errors.load(Ordering::Relaxed))
    }

    /// Waits until everything queued is committed. Every [`PersistHandle`] must be dropped
    /// first, or this waits for them.
    pub fn shutdown(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A failed commit (a full disk, a locked file) is retried with back-off rather than
/// dropped: transitions are never lost, the store just falls behind, visibly.
fn write_with_retry(store: &mut Store, batch: &[Write], errors: &AtomicU64) {
    let mut delay = Duration::from_millis(50);
    loop {
        match store.write(batch) {
            Ok(_) => return,
            Err(error) => {
                errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, writes = batch.len(), retry_in_ms = delay.as_millis() as u64, "store write failed");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A cloneable way to queue writes.
#[derive(Clone)]
pub struct PersistHandle {
    sender: mpsc::Sender<Vec<Write>>,
}

impl PersistHandle {
    pub fn write(&self, batch: Vec<Write>) {
        // The store thread outlives every handle (shutdown waits for them).
        let _ = self.sender.send(batch);
    }
}

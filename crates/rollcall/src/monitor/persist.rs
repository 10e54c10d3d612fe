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
        let thread = std::thread::Builder::new()
            .name("rollcall-store".into())
            .spawn(move || {
                while let Ok(mut batch) = receiver.recv() {
                    while let Ok(more) = receiver.try_recv() {
                        batch.extend(more);
                    }
                    write_with_retry(&mut store, &batch, &error_count);
                    batch_count.fetch_add(1, Ordering::Relaxed);
                }
            })
            .expect("spawning a thread only fails when the process is out of resources");
        Persist { sender: Some(sender), thread: Some(thread), batches, errors }
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

    /// Waits until everything queued is committed.
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

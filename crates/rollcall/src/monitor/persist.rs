//! The store thread: makes batches of writes durable, merging whatever has queued up into
//! one transaction (group commit), so a burst of ten thousand transitions costs a handful of
//! fsyncs rather than ten thousand.
//!
//! It also decides what a sequence checkpoint writes: only the nodes heard from since the
//! previous one, so an idle or dead part of a large fleet costs no rows. A checkpoint is
//! bulk work (a million rows take seconds to commit): it is committed in chunks, and
//! transitions, incidents and outbox rows queued meanwhile go first, so an alert never waits
//! behind a checkpoint.

use prometheus_client::metrics::histogram::Histogram;
use rollcall_proto::Instant;
use rollcall_proto::monitor::{NodeState, NodeView};
use rollcall_store::{Store, Write};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What the store thread is sent: urgent batches (committed as soon as possible, merged
/// with whatever else is urgent) or bulk ones (checkpoints, committed in chunks when nothing
/// urgent waits).
enum Job {
    Urgent(std::time::Instant, Vec<Write>),
    Bulk(std::time::Instant, Vec<Write>),
}

/// Most writes of bulk work committed in one transaction: a few tens of milliseconds, the
/// longest an urgent batch waits behind a checkpoint.
const BULK_CHUNK: usize = 10_000;

pub struct Persist {
    sender: Option<mpsc::Sender<Job>>,
    committed: tokio::sync::watch::Receiver<u64>,
    thread: Option<JoinHandle<()>>,
    batches: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    /// Seconds from queueing a batch to its commit (shares its counts with the thread).
    commit_seconds: Histogram,
    /// When the previous sequence checkpoint was taken; `None` before the first one.
    last_checkpoint: Option<Instant>,
}

/// Buckets of the store latency histogram, in seconds: a commit is an fsync or two, a
/// checkpoint of a large fleet a second or more.
const COMMIT_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

impl Persist {
    pub fn start(store: Store) -> Persist {
        let (sender, receiver) = mpsc::channel::<Job>();
        let commit_seconds = Histogram::new(COMMIT_BUCKETS);
        let latency = commit_seconds.clone();
        let batches = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let (batch_count, error_count) = (batches.clone(), errors.clone());
        // Bumped after every commit, so the delivery loops know new outbox rows are durable.
        let (committed_tx, committed) = tokio::sync::watch::channel(0u64);
        let thread = std::thread::Builder::new()
            .name("rollcall-store".into())
            .spawn(move || {
                let mut thread = StoreThread::new(store);
                // Ends once every sender is gone and everything queued is committed.
                while thread.receive(&receiver) {
                    let (work, queued_at) = thread.next_transaction();
                    if work.is_empty() {
                        continue;
                    }
                    write_with_retry(&mut thread.store, &work, &error_count);
                    // Each queued batch waited from its queueing to this commit.
                    for at in queued_at {
                        latency.observe(at.elapsed().as_secs_f64());
                    }
                    batch_count.fetch_add(1, Ordering::Relaxed);
                    committed_tx.send_modify(|count| *count += 1);
                }
            })
            .expect("spawning a thread only fails when the process is out of resources");
        Persist {
            sender: Some(sender),
            committed,
            thread: Some(thread),
            batches,
            errors,
            commit_seconds,
            last_checkpoint: None,
        }
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
            let _ = sender.send(Job::Urgent(std::time::Instant::now(), batch));
        }
    }

    /// Committed batches and failed attempts so far.
    pub fn counters(&self) -> (u64, u64) {
        (self.batches.load(Ordering::Relaxed), self.errors.load(Ordering::Relaxed))
    }

    /// Seconds from queueing each batch to its commit.
    pub fn commit_seconds(&self) -> Histogram {
        self.commit_seconds.clone()
    }

    /// Queues a sequence checkpoint: the record of every node whose sequence may have moved
    /// since the previous checkpoint, so that after a crash old datagrams are still refused
    /// as replays. A node's sequence only moves when a datagram of it is accepted, and an
    /// accepted heartbeat is also its detector's last arrival, so the nodes heard from since
    /// the previous checkpoint are the ones to write; paused nodes are written every time
    /// (cheap, and it does not rely on how a pause treats arrivals). The first checkpoint
    /// writes every node heard from since start: restored nodes are already in the store.
    /// Returns how many rows were queued.
    pub fn checkpoint<'a>(
        &mut self,
        nodes: impl Iterator<Item = NodeView<'a>>,
        now: Instant,
        record: impl Fn(&NodeView<'a>) -> Write,
    ) -> usize {
        let since = self.last_checkpoint.replace(now);
        let Some(sender) = &self.sender else { return 0 };
        let queued = std::time::Instant::now();
        let moved = nodes.filter(|view| {
            view.state == NodeState::Paused
                || view.last_heartbeat.is_some_and(|at| since.is_none_or(|since| at >= since))
        });
        // Queued a chunk at a time, each chunk one transaction: no single million-row vector
        // is ever built or copied.
        let mut rows = 0;
        let mut chunk = Vec::with_capacity(BULK_CHUNK);
        for view in moved {
            chunk.push(record(&view));
            if chunk.len() == BULK_CHUNK {
                rows += chunk.len();
                let _ = sender
                    .send(Job::Bulk(queued, std::mem::replace(&mut chunk, Vec::with_capacity(BULK_CHUNK))));
            }
        }
        if !chunk.is_empty() {
            rows += chunk.len();
            let _ = sender.send(Job::Bulk(queued, chunk));
        }
        rows
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

/// The store thread's queues: urgent writes go into the next transaction whole; bulk chunks
/// wait in `backlog` and are committed one per transaction when nothing urgent is queued.
struct StoreThread {
    store: Store,
    backlog: VecDeque<Vec<Write>>,
    /// When the oldest bulk batch still in `backlog` was queued.
    backlog_since: Option<std::time::Instant>,
    /// Nodes written (or forgotten) by urgent batches while bulk work was pending: their
    /// bulk rows are older than what is committed and are skipped, so a checkpoint never
    /// overwrites a newer state.
    superseded: HashSet<String>,
    urgent: Vec<Write>,
    urgent_since: Vec<std::time::Instant>,
    disconnected: bool,
}

impl StoreThread {
    fn new(store: Store) -> StoreThread {
        StoreThread {
            store,
            backlog: VecDeque::new(),
            backlog_since: None,
            superseded: HashSet::new(),
            urgent: Vec::new(),
            urgent_since: Vec::new(),
            disconnected: false,
        }
    }

    /// Takes every queued job, waiting for one when there is nothing to do. False once the
    /// senders are gone and nothing is left.
    fn receive(&mut self, receiver: &mpsc::Receiver<Job>) -> bool {
        if self.backlog.is_empty() && !self.disconnected {
            match receiver.recv() {
                Ok(job) => self.take(job),
                Err(_) => self.disconnected = true,
            }
        }
        loop {
            match receiver.try_recv() {
                Ok(job) => self.take(job),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.disconnected = true;
                    break;
                }
            }
        }
        !(self.disconnected && self.backlog.is_empty() && self.urgent.is_empty())
    }

    fn take(&mut self, job: Job) {
        match job {
            Job::Urgent(at, writes) => {
                self.urgent_since.push(at);
                self.urgent.extend(writes);
            }
            Job::Bulk(at, writes) => {
                self.backlog_since.get_or_insert(at);
                self.backlog.push_back(writes);
            }
        }
    }

    /// The next transaction's writes and the queueing instants it completes: everything
    /// urgent, else the next chunk of bulk work.
    fn next_transaction(&mut self) -> (Vec<Write>, Vec<std::time::Instant>) {
        if !self.urgent.is_empty() {
            if !self.backlog.is_empty() {
                for write in &self.urgent {
                    match write {
                        Write::Node { record, .. } => self.superseded.insert(record.id.clone()),
                        Write::ForgetNode { id } => self.superseded.insert(id.clone()),
                        _ => false,
                    };
                }
            }
            return (std::mem::take(&mut self.urgent), std::mem::take(&mut self.urgent_since));
        }
        let superseded = &self.superseded;
        let mut chunk = self.backlog.pop_front().unwrap_or_default();
        chunk.retain(|write| !matches!(write, Write::Node { record, .. } if superseded.contains(&record.id)));
        let mut done = Vec::new();
        if self.backlog.is_empty() {
            self.superseded.clear();
            done.extend(self.backlog_since.take());
        }
        (chunk, done)
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
    sender: mpsc::Sender<Job>,
}

impl PersistHandle {
    pub fn write(&self, batch: Vec<Write>) {
        // The store thread outlives every handle (shutdown waits for them).
        let _ = self.sender.send(Job::Urgent(std::time::Instant::now(), batch));
    }
}

#[cfg(test)]
mod tests;

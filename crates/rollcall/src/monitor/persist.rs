//! The store thread: makes batches of writes durable, merging whatever has queued up into
//! one transaction (group commit), so a burst of ten thousand transitions costs a handful of
//! fsyncs rather than ten thousand.
//!
//! It also decides what a sequence checkpoint writes: only the nodes heard from since the
//! previous one, so an idle or dead part of a large fleet costs no rows. A checkpoint is
//! bulk work (a million rows take seconds to commit): it is committed in chunks, and
//! transitions, incidents and outbox rows queued meanwhile go first, so an alert never waits
//! behind a checkpoint. It is also paced: the owner walks the node table with a cursor and
//! builds the next chunk only when fewer than [`CHUNKS_IN_FLIGHT`] are queued or being
//! committed, so the rows in memory at once are a few chunks, not the whole fleet (glibc
//! keeps freed memory, so a checkpoint's high-water mark would stay in the process).

use prometheus_client::metrics::histogram::Histogram;
use rollcall_proto::Instant;
use rollcall_proto::monitor::{NodeState, NodeView};
use rollcall_store::{Store, Write};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What the store thread is sent: urgent batches (committed as soon as possible, merged
/// with whatever else is urgent) or bulk ones (checkpoints, committed in chunks when nothing
/// urgent waits).
enum Job {
    Urgent(std::time::Instant, Vec<Write>),
    /// One chunk of a checkpoint: when the checkpoint started, its rows, and whether it is
    /// the checkpoint's last chunk (its wait is measured once, when that one is committed).
    Bulk {
        started: std::time::Instant,
        writes: Vec<Write>,
        last: bool,
    },
}

/// Most writes of bulk work committed in one transaction: a few tens of milliseconds, the
/// longest an urgent batch waits behind a checkpoint.
const BULK_CHUNK: usize = 10_000;

/// Most checkpoint chunks queued or being committed at once: one committing while the next
/// waits, so the store thread never idles for want of a chunk, and at most this many chunks
/// of rows exist at any moment.
pub const CHUNKS_IN_FLIGHT: usize = 2;

/// Most nodes the owner visits per step of a checkpoint (each visit reads the node's
/// detector level): a step is a few milliseconds of the owner even when few nodes moved.
const VISIT_PER_STEP: usize = 4 * BULK_CHUNK;

/// A checkpoint being written: where the owner's walk over the node table is, and the chunk
/// it is filling.
struct Checkpoint {
    /// Nodes heard from at or after this are written (`None`: every node heard from).
    since: Option<Instant>,
    /// The next node (in the table's order) to visit.
    cursor: usize,
    started: std::time::Instant,
    chunk: Vec<Write>,
    rows: usize,
}

pub struct Persist {
    sender: Option<mpsc::Sender<Job>>,
    committed: tokio::sync::watch::Receiver<u64>,
    thread: Option<JoinHandle<()>>,
    batches: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    /// Seconds from queueing a batch to its commit (shares its counts with the thread).
    commit_seconds: Histogram,
    /// When the previous sequence checkpoint was started; `None` before the first one.
    last_checkpoint: Option<Instant>,
    /// The checkpoint being written, if any.
    checkpoint: Option<Checkpoint>,
    /// Checkpoint chunks sent and not yet committed (the store thread decrements it after
    /// each commit, then bumps `committed`).
    in_flight: Arc<AtomicUsize>,
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
        let in_flight = Arc::new(AtomicUsize::new(0));
        let chunks_done = in_flight.clone();
        // Bumped after every commit, so the delivery loops know new outbox rows are durable.
        let (committed_tx, committed) = tokio::sync::watch::channel(0u64);
        let thread = std::thread::Builder::new()
            .name("rollcall-store".into())
            .spawn(move || {
                let mut thread = StoreThread::new(store);
                // Ends once every sender is gone and everything queued is committed.
                while thread.receive(&receiver) {
                    let Transaction { writes, queued_at, chunk } = thread.next_transaction();
                    if !writes.is_empty() {
                        write_with_retry(&mut thread.store, &writes, &error_count);
                        batch_count.fetch_add(1, Ordering::Relaxed);
                    }
                    // Each queued batch waited from its queueing to this commit.
                    for at in queued_at {
                        latency.observe(at.elapsed().as_secs_f64());
                    }
                    if chunk {
                        // Before the bump below, so an owner woken by it sees the room.
                        chunks_done.fetch_sub(1, Ordering::Release);
                    }
                    if !writes.is_empty() || chunk {
                        committed_tx.send_modify(|count| *count += 1);
                    }
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
            checkpoint: None,
            in_flight,
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

    /// Starts a sequence checkpoint: the record of every node whose sequence may have moved
    /// since the previous checkpoint started, so that after a crash old datagrams are still
    /// refused as replays. A node's sequence only moves when a datagram of it is accepted, and
    /// an accepted heartbeat is also its detector's last arrival, so the nodes heard from
    /// since then are the ones to write; paused nodes are written every time (cheap, and it
    /// does not rely on how a pause treats arrivals). The first checkpoint writes every node
    /// heard from since start: restored nodes are already in the store.
    ///
    /// The rows are built by [`Persist::advance_checkpoint`], a chunk at a time. A node heard
    /// from after this instant but visited before its heartbeat is written by the next
    /// checkpoint, which counts from here. False (and nothing changes) while the previous
    /// checkpoint is still being written: it goes on, and the next one starts later.
    pub fn start_checkpoint(&mut self, now: Instant) -> bool {
        if self.checkpoint.is_some() || self.sender.is_none() {
            return false;
        }
        let since = self.last_checkpoint.replace(now);
        self.checkpoint = Some(Checkpoint {
            since,
            cursor: 0,
            started: std::time::Instant::now(),
            chunk: Vec::new(),
            rows: 0,
        });
        true
    }

    /// Where the checkpoint being written has got to in the node table (`None`: none is).
    pub fn checkpoint_cursor(&self) -> Option<usize> {
        self.checkpoint.as_ref().map(|checkpoint| checkpoint.cursor)
    }

    /// Whether a checkpoint is being written and the store has room for its next chunk:
    /// the owner should call [`Persist::advance_checkpoint`] without waiting.
    pub fn checkpoint_ready(&self) -> bool {
        self.checkpoint.is_some() && self.chunks_in_flight() < CHUNKS_IN_FLIGHT
    }

    /// Checkpoint chunks queued or being committed.
    pub fn chunks_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// One step of the checkpoint being written: when the store has room, visits the nodes
    /// from the cursor (`nodes_from(cursor)` yields them in the table's order) until a chunk
    /// is full, [`VISIT_PER_STEP`] nodes are visited or the table ends, and queues the chunk
    /// when it is full or the table has ended. Returns the rows written once the checkpoint
    /// is complete, `None` while it goes on (or when there is none, or no room).
    pub fn advance_checkpoint<'a, I>(
        &mut self,
        nodes_from: impl FnOnce(usize) -> I,
        record: impl Fn(&NodeView<'a>) -> Write,
    ) -> Option<usize>
    where
        I: Iterator<Item = NodeView<'a>>,
    {
        if !self.checkpoint_ready() {
            return None;
        }
        let checkpoint = self.checkpoint.as_mut().expect("checkpoint_ready says there is one");
        let since = checkpoint.since;
        let moved = |view: &NodeView<'_>| {
            view.state == NodeState::Paused
                || view.last_heartbeat.is_some_and(|at| since.is_none_or(|since| at >= since))
        };
        let mut views = nodes_from(checkpoint.cursor);
        let (mut visited, mut ended) = (0, false);
        while visited < VISIT_PER_STEP && checkpoint.chunk.len() < BULK_CHUNK {
            let Some(view) = views.next() else {
                ended = true;
                break;
            };
            visited += 1;
            if moved(&view) {
                if checkpoint.chunk.capacity() == 0 {
                    checkpoint.chunk.reserve_exact(BULK_CHUNK);
                }
                checkpoint.chunk.push(record(&view));
            }
        }
        checkpoint.cursor += visited;
        let full = checkpoint.chunk.len() == BULK_CHUNK;
        // The last chunk is sent even when empty, so the checkpoint's wait is measured,
        // unless the checkpoint wrote nothing at all.
        if full || (ended && checkpoint.rows + checkpoint.chunk.len() > 0) {
            let writes = std::mem::take(&mut checkpoint.chunk);
            checkpoint.rows += writes.len();
            let job = Job::Bulk { started: checkpoint.started, writes, last: ended };
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            if let Some(sender) = &self.sender {
                // The thread only stops after `shutdown`, so a send cannot fail before it.
                let _ = sender.send(job);
            }
        }
        if !ended {
            return None;
        }
        self.checkpoint.take().map(|checkpoint| checkpoint.rows)
    }

    /// Starts the checkpoint written at shutdown, which must write everything: a checkpoint
    /// in progress starts over from the first node, still counting from when the previous
    /// one started, so every node heard from since is written in its latest state. The
    /// caller then advances it to its end, waiting on [`Persist::committed`] for room.
    pub fn restart_checkpoint(&mut self, now: Instant) {
        match &mut self.checkpoint {
            Some(checkpoint) => {
                checkpoint.cursor = 0;
                checkpoint.rows = 0;
                checkpoint.chunk.clear();
            }
            None => {
                self.start_checkpoint(now);
            }
        }
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
    /// Chunks of checkpoints, each with its arrival number and the start of its checkpoint
    /// if it is that checkpoint's last chunk.
    backlog: VecDeque<(u64, Vec<Write>, Option<std::time::Instant>)>,
    /// Jobs taken so far: the arrival number of the next one.
    arrivals: u64,
    /// Nodes written (or forgotten) by urgent batches while bulk work was pending, with the
    /// arrival number of the latest such batch: the rows of chunks that arrived before it are
    /// older than what is committed and are skipped, so a checkpoint never overwrites a newer
    /// state. Chunks that arrive later were built later, so their rows are kept.
    superseded: HashMap<String, u64>,
    urgent: Vec<Write>,
    urgent_since: Vec<std::time::Instant>,
    disconnected: bool,
}

/// What the store thread commits next.
struct Transaction {
    writes: Vec<Write>,
    /// When each batch this transaction completes was queued.
    queued_at: Vec<std::time::Instant>,
    /// Whether this is a checkpoint chunk (the owner's room for the next one).
    chunk: bool,
}

impl StoreThread {
    fn new(store: Store) -> StoreThread {
        StoreThread {
            store,
            backlog: VecDeque::new(),
            arrivals: 0,
            superseded: HashMap::new(),
            urgent: Vec::new(),
            urgent_since: Vec::new(),
            disconnected: false,
        }
    }

    /// Takes every queued job, waiting for one when there is nothing to do. False once the
    /// senders are gone and nothing is left.
    fn receive(&mut self, receiver: &mpsc::Receiver<Job>) -> bool {
        if self.backlog.is_empty() && self.urgent.is_empty() && !self.disconnected {
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
        self.arrivals += 1;
        match job {
            Job::Urgent(at, writes) => {
                if !self.backlog.is_empty() {
                    for write in &writes {
                        let id = match write {
                            Write::Node { record, .. } => &record.id,
                            Write::ForgetNode { id } => id,
                            _ => continue,
                        };
                        self.superseded.insert(id.clone(), self.arrivals);
                    }
                }
                self.urgent_since.push(at);
                self.urgent.extend(writes);
            }
            Job::Bulk { started, writes, last } => {
                self.backlog.push_back((self.arrivals, writes, last.then_some(started)));
            }
        }
    }

    /// The next transaction: everything urgent, else the next chunk of bulk work.
    fn next_transaction(&mut self) -> Transaction {
        if !self.urgent.is_empty() {
            keep_last_check_rows(&mut self.urgent);
            return Transaction {
                writes: std::mem::take(&mut self.urgent),
                queued_at: std::mem::take(&mut self.urgent_since),
                chunk: false,
            };
        }
        let Some((arrival, mut writes, last_of)) = self.backlog.pop_front() else {
            return Transaction { writes: Vec::new(), queued_at: Vec::new(), chunk: false };
        };
        let superseded = &self.superseded;
        writes.retain(|write| match write {
            Write::Node { record, .. } => superseded.get(&record.id).is_none_or(|&after| after < arrival),
            _ => true,
        });
        if self.backlog.is_empty() {
            // Chunks from now on are built after every urgent write taken so far.
            self.superseded.clear();
        }
        Transaction { writes, queued_at: last_of.into_iter().collect(), chunk: true }
    }
}

/// Drops every row of a check but its last from one transaction's writes. A check's row is
/// written whole (an upsert of every column) after each batch that changed it, so within
/// one transaction only the last one decides what is committed; the others kept their
/// places, so a deletion between two rows still comes before the last. Under a stream of
/// pings, group commit then writes each check once per commit rather than once per ping.
fn keep_last_check_rows(writes: &mut Vec<Write>) {
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (index, write) in writes.iter().enumerate() {
        if let Write::Check(check) = write {
            last.insert(&check.id, index);
        }
    }
    let checks = writes.iter().filter(|write| matches!(write, Write::Check(_))).count();
    if checks == last.len() {
        return;
    }
    let keep: Vec<bool> = writes
        .iter()
        .enumerate()
        .map(|(index, write)| match write {
            Write::Check(check) => last.get(check.id.as_str()) == Some(&index),
            _ => true,
        })
        .collect();
    let mut keep = keep.into_iter();
    writes.retain(|_| keep.next().expect("one flag per write"));
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

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
use rollcall_core::Instant;
use rollcall_core::monitor::{NodeState, NodeView};
use rollcall_store::{Store, Write};

pub(crate) mod health;
mod thread;
pub use health::{StoreHealth, StoreHealthSnapshot};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;
use thread::{StoreThread, Transaction};

/// What the store thread is sent: urgent batches (committed as soon as possible, merged
/// with whatever else is urgent) or bulk ones (checkpoints, committed in chunks when nothing
/// urgent waits).
enum Job {
    /// When it was queued, its writes, and its ticket (0: nobody waits for it; see
    /// [`Persist::write_acked`]).
    Urgent(std::time::Instant, Vec<Write>, u64),
    /// One chunk of a checkpoint: when the checkpoint started, its rows, and whether it is
    /// the checkpoint's last chunk (its wait is measured once, when that one is committed).
    Bulk { started: std::time::Instant, writes: Vec<Write>, last: bool },
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
    health: StoreHealth,
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
    /// The last ticket handed out by [`Persist::write_acked`].
    tickets: u64,
    /// The highest ticket committed: every ticket up to it is durable.
    durable: tokio::sync::watch::Receiver<u64>,
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
        let (durable_tx, durable) = tokio::sync::watch::channel(0u64);
        let health = StoreHealth::default();
        let shared = health.clone();
        let thread = std::thread::Builder::new()
            .name("rollcall-store".into())
            .spawn(move || {
                let mut thread = StoreThread::new(store, shared);
                let mut retry = Retry::default();
                // Ends once every sender is gone and everything queued is committed, or the
                // store has failed for longer than the shutdown grace after that.
                while thread.receive(&receiver) {
                    let failing = thread.health.failure().is_some();
                    if !failing {
                        thread.gather_pings(&receiver, thread::PING_WINDOW);
                    }
                    let mut chunks = 0;
                    if failing {
                        chunks += thread.shed_while_failing();
                    }
                    let Transaction { writes, queued_at, chunk, ticket } =
                        if failing { thread.next_retry() } else { thread.next_transaction() };
                    let outcome = if writes.is_empty() { Ok(()) } else { thread.store.write(&writes).map(drop) };
                    let committed = outcome.is_ok() && !writes.is_empty();
                    match outcome {
                        Ok(()) => {
                            if committed {
                                batch_count.fetch_add(1, Ordering::Relaxed);
                            }
                            // Urgent jobs are committed in the order they were queued, so
                            // every lower ticket is durable too.
                            durable_tx.send_if_modified(|durable| {
                                let raised = ticket > *durable;
                                *durable = (*durable).max(ticket);
                                raised
                            });
                            // Each queued batch waited from its queueing to this commit.
                            for at in queued_at {
                                latency.observe(at.elapsed().as_secs_f64());
                            }
                            if failing && thread.urgent.is_empty() {
                                tracing::info!("the store commits again; everything queued meanwhile is written");
                                thread.health.recover();
                            }
                            retry = Retry::default();
                        }
                        Err(error) => {
                            error_count.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(%error, writes = writes.len(), retry_in_ms = retry.delay.as_millis() as u64, "store write failed");
                            thread.health.fail(error.to_string());
                            if chunk {
                                thread.health.shed(0, writes.len() as u64);
                            } else {
                                thread.requeue(queued_at.first().copied(), writes, ticket);
                            }
                            if thread.gave_up_at_shutdown() {
                                thread.log_unwritten();
                                break;
                            }
                            retry.wait();
                        }
                    }
                    chunks += usize::from(chunk);
                    thread.publish_queue();
                    if chunks > 0 {
                        // Before the bump below, so an owner woken by it sees the room.
                        chunks_done.fetch_sub(chunks, Ordering::Release);
                    }
                    if committed || chunks > 0 {
                        committed_tx.send_modify(|count| *count += 1);
                    }
                }
            })
            .expect("spawning a thread only fails when the process is out of resources");
        Persist {
            sender: Some(sender),
            health,
            committed,
            thread: Some(thread),
            batches,
            errors,
            commit_seconds,
            last_checkpoint: None,
            checkpoint: None,
            in_flight,
            tickets: 0,
            durable,
        }
    }

    /// A handle other tasks (delivery loops) use to queue their own writes.
    pub fn handle(&self) -> PersistHandle {
        PersistHandle { sender: self.sender.clone().expect("handles are taken before shutdown") }
    }

    /// Whether the store can commit, and its queue (shared with `/healthz` and pings).
    pub fn health(&self) -> StoreHealth {
        self.health.clone()
    }

    /// Changes after every commit.
    pub fn committed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Queues a batch; the store thread commits it (merged with others) as soon as it can.
    pub fn write(&self, batch: Vec<Write>) {
        if let Some(sender) = &self.sender {
            // The thread only stops after `shutdown`, so a send cannot fail before it.
            let _ = sender.send(Job::Urgent(std::time::Instant::now(), batch, 0));
        }
    }

    /// Queues a batch like [`Persist::write`] and returns its ticket: the batch is committed
    /// once [`Persist::durable`] reaches the ticket. For answers that must not be given
    /// before what they say is durable (a lease grant and its fencing token).
    pub fn write_acked(&mut self, batch: Vec<Write>) -> u64 {
        self.tickets += 1;
        if let Some(sender) = &self.sender {
            // The thread only stops after `shutdown`, so a send cannot fail before it.
            let _ = sender.send(Job::Urgent(std::time::Instant::now(), batch, self.tickets));
        }
        self.tickets
    }

    /// The highest ticket of [`Persist::write_acked`] committed so far.
    pub fn durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.durable.clone()
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
    /// is full, `VISIT_PER_STEP` nodes are visited or the table ends, and queues the chunk
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

/// How long a failed commit waits before the next try: doubling from 50 ms to 1 s, so space
/// freed on a full disk is used within a second.
struct Retry {
    delay: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry { delay: Duration::from_millis(50) }
    }
}

impl Retry {
    fn wait(&mut self) {
        std::thread::sleep(self.delay);
        self.delay = (self.delay * 2).min(Duration::from_secs(1));
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
        let _ = self.sender.send(Job::Urgent(std::time::Instant::now(), batch, 0));
    }
}

#[cfg(test)]
mod tests;

/// Creates the data directory if needed, takes its lock (held until the returned guard is
/// dropped: for the process's life), opens the store and checks it is whole. Every refusal
/// is one sentence naming the directory or file.
pub fn open_data_dir(dir: &std::path::Path) -> anyhow::Result<(rollcall_store::DirLock, Store)> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data dir {}", dir.display()))?;
    let lock = rollcall_store::DirLock::acquire(dir)?;
    let store = Store::open(dir).context("cannot open the store")?;
    store.check_integrity()?;
    Ok((lock, store))
}

/// The store row of a transition (a node's, a check's, a peer's view of a member), with
/// wall-clock times: the one place a transition becomes a row.
pub fn transition_write(
    kind: rollcall_core::alerts::SubjectKind,
    transition: &rollcall_core::monitor::Transition,
    clock: &crate::clock::Clock,
) -> Write {
    Write::Transition(rollcall_store::TransitionRecord {
        id: 0,
        kind,
        node: transition.node.to_string(),
        generation: transition.generation,
        from: transition.from,
        to: transition.to,
        reason: transition.reason,
        at_ms: clock.wall_ms(transition.at),
        noticed_at_ms: clock.wall_ms(transition.noticed),
        exit: transition.exit,
    })
}

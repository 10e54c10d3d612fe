//! The store thread's queues and the order it commits them in.
//!
//! Urgent jobs (transitions, incidents, outbox rows, pings, delivery outcomes) go into the
//! next transaction together; checkpoint chunks wait in a backlog and are committed one per
//! transaction when nothing urgent is queued. While the store fails, the thread commits the
//! oldest jobs a few at a time (so space freed on a full disk is used at once), sheds
//! checkpoint chunks and, past the queue's bounds, ping history rows (counted), and never
//! drops a transition, an incident or an outbox row.

use super::Job;
use super::health::{MAX_QUEUED_BYTES, MAX_QUEUED_WRITES, StoreHealth, write_bytes};
use rollcall_store::{Store, Write};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc;
use std::time::Duration;

/// Most urgent jobs merged into one transaction while the store fails: small enough that a
/// little freed space is enough to commit the oldest ones.
const RETRY_JOBS: usize = 64;

/// How long the store thread holds a transaction of nothing but pings (and their checks'
/// rows) open for more pings before committing it. A ping is answered once its row is queued,
/// not once it is committed, so the wait delays no answer; under a stream of pings it turns
/// hundreds of commits a second (an fsync and a dozen WAL pages each) into at most
/// `1 s / PING_WINDOW`. What it costs: a monitor killed with `kill -9` loses the pings
/// acknowledged in the last `PING_WINDOW` plus one commit, where it lost those of the last
/// commit. Anything else queued (a transition, an incident, an outbox row, a lease) ends the
/// wait at once, so no alert waits for it.
pub(super) const PING_WINDOW: Duration = Duration::from_millis(10);

/// How often a ping window looks for what has arrived: the longest anything else (an alert)
/// waits behind it.
const PING_WINDOW_STEP: Duration = Duration::from_millis(2);

/// Most writes a ping window gathers before it commits early.
pub(super) const PING_WINDOW_WRITES: u64 = 4096;

/// How long a stopping monitor keeps retrying a failing store before it gives up, saying
/// what was not written.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub(super) struct StoreThread {
    pub(super) store: Store,
    pub(super) health: StoreHealth,
    /// Chunks of checkpoints, each with its arrival number and the start of its checkpoint
    /// if it is that checkpoint's last chunk.
    backlog: VecDeque<(u64, Vec<Write>, Option<std::time::Instant>)>,
    /// Jobs taken so far: the arrival number of the next one.
    arrivals: u64,
    /// Nodes written (or forgotten) by urgent batches while bulk work was pending, with the
    /// arrival number of the latest such batch: the rows of chunks that arrived before it are
    /// older than what is committed and are skipped, so a checkpoint never overwrites a newer
    /// state. Chunks that arrive later were built later, so their rows are kept.
    pub(super) superseded: HashMap<String, u64>,
    /// Urgent jobs in arrival order, each with when it was queued and its ticket (0 for
    /// none; see [`super::Persist::write_acked`]). A job is the smallest unit committed: a
    /// transition stays in one transaction with its incident and outbox.
    pub(super) urgent: VecDeque<(std::time::Instant, Vec<Write>, u64)>,
    /// When every sender was found gone (the process is stopping).
    disconnected_at: Option<std::time::Instant>,
    /// Urgent writes queued, and their estimated bytes.
    queued_writes: u64,
    queued_bytes: u64,
}

/// What the store thread commits next.
pub(super) struct Transaction {
    pub(super) writes: Vec<Write>,
    /// When each batch this transaction completes was queued.
    pub(super) queued_at: Vec<std::time::Instant>,
    /// Whether this is a checkpoint chunk (the owner's room for the next one).
    pub(super) chunk: bool,
    /// The highest ticket among the jobs this transaction completes (0: none).
    pub(super) ticket: u64,
}

impl StoreThread {
    pub(super) fn new(store: Store, health: StoreHealth) -> StoreThread {
        StoreThread {
            store,
            health,
            backlog: VecDeque::new(),
            arrivals: 0,
            superseded: HashMap::new(),
            urgent: VecDeque::new(),
            disconnected_at: None,
            queued_writes: 0,
            queued_bytes: 0,
        }
    }

    /// Takes every queued job, waiting for one when there is nothing to do. False once the
    /// senders are gone and nothing is left.
    pub(super) fn receive(&mut self, receiver: &mpsc::Receiver<Job>) -> bool {
        if self.backlog.is_empty() && self.urgent.is_empty() && self.disconnected_at.is_none() {
            match receiver.recv() {
                Ok(job) => self.take(job),
                Err(_) => self.disconnect(),
            }
        }
        loop {
            match receiver.try_recv() {
                Ok(job) => self.take(job),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.disconnect();
                    break;
                }
            }
        }
        !(self.disconnected_at.is_some() && self.backlog.is_empty() && self.urgent.is_empty())
    }

    /// While every urgent job queued is pings (see [`PING_WINDOW`]), takes the jobs that
    /// arrive until `window` after the oldest was queued, stopping at the first job that is
    /// not pings, at [`PING_WINDOW_WRITES`], or when the senders are gone. It looks every
    /// [`PING_WINDOW_STEP`] rather than waiting on the channel: a thread blocked on it would
    /// be woken by every batch the owner sends, a context switch per batch, which costs more
    /// than the commits saved.
    pub(super) fn gather_pings(&mut self, receiver: &mpsc::Receiver<Job>, window: Duration) {
        let Some(oldest) = self.urgent.front().map(|(at, _, _)| *at) else { return };
        if !self.urgent.iter().all(|(_, writes, ticket)| only_pings(writes, *ticket)) {
            return;
        }
        let deadline = oldest + window;
        while self.disconnected_at.is_none() && self.queued_writes < PING_WINDOW_WRITES {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(PING_WINDOW_STEP));
            while self.queued_writes < PING_WINDOW_WRITES {
                match receiver.try_recv() {
                    Ok(job) => {
                        let pings =
                            matches!(&job, Job::Urgent(_, writes, ticket) if only_pings(writes, *ticket));
                        self.take(job);
                        if !pings {
                            return;
                        }
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        self.disconnect();
                        return;
                    }
                }
            }
        }
    }

    fn disconnect(&mut self) {
        self.disconnected_at.get_or_insert_with(std::time::Instant::now);
    }

    fn take(&mut self, job: Job) {
        self.arrivals += 1;
        match job {
            Job::Urgent(at, writes, ticket) => {
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
                self.count(&writes, true);
                self.urgent.push_back((at, writes, ticket));
            }
            Job::Bulk { started, writes, last } => {
                self.backlog.push_back((self.arrivals, writes, last.then_some(started)));
            }
        }
    }

    fn count(&mut self, writes: &[Write], added: bool) {
        let bytes: u64 = writes.iter().map(write_bytes).sum();
        if added {
            self.queued_writes += writes.len() as u64;
            self.queued_bytes += bytes;
        } else {
            self.queued_writes = self.queued_writes.saturating_sub(writes.len() as u64);
            self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
        }
    }

    /// The next transaction: everything urgent, else the next chunk of bulk work.
    pub(super) fn next_transaction(&mut self) -> Transaction {
        if !self.urgent.is_empty() {
            let jobs = self.urgent.len();
            let mut transaction = self.take_urgent(jobs);
            keep_last_check_rows(&mut transaction.writes);
            return transaction;
        }
        let Some((arrival, mut writes, last_of)) = self.backlog.pop_front() else {
            return Transaction { writes: Vec::new(), queued_at: Vec::new(), chunk: false, ticket: 0 };
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
        Transaction { writes, queued_at: last_of.into_iter().collect(), chunk: true, ticket: 0 }
    }

    /// While the store fails: the oldest few urgent jobs, in one transaction.
    pub(super) fn next_retry(&mut self) -> Transaction {
        self.take_urgent(RETRY_JOBS)
    }

    fn take_urgent(&mut self, jobs: usize) -> Transaction {
        let mut writes = Vec::new();
        let mut queued_at = Vec::new();
        let mut ticket = 0;
        for _ in 0..jobs {
            let Some((at, job, job_ticket)) = self.urgent.pop_front() else { break };
            queued_at.push(at);
            writes.extend(job);
            ticket = ticket.max(job_ticket);
        }
        self.count(&writes, false);
        Transaction { writes, queued_at, chunk: false, ticket }
    }

    /// Puts back a transaction that failed, first in line, as one job.
    pub(super) fn requeue(&mut self, queued_at: Option<std::time::Instant>, writes: Vec<Write>, ticket: u64) {
        self.count(&writes, true);
        self.urgent.push_front((queued_at.unwrap_or_else(std::time::Instant::now), writes, ticket));
    }

    /// While the store fails: drops the queued checkpoint chunks (the next checkpoint writes
    /// their nodes again) and, when the queue is over its bounds, the ping history rows in it
    /// (their checks' rows stay, with the latest ping time). Returns the chunks dropped, each
    /// of which gives the owner room for another.
    pub(super) fn shed_while_failing(&mut self) -> usize {
        let chunks = self.backlog.len();
        let rows: usize = self.backlog.drain(..).map(|(_, writes, _)| writes.len()).sum();
        self.superseded.clear();
        let mut pings = 0u64;
        if self.queued_writes > MAX_QUEUED_WRITES || self.queued_bytes > MAX_QUEUED_BYTES {
            for (_, writes, _) in &mut self.urgent {
                let before = writes.len();
                writes.retain(|write| !matches!(write, Write::Ping { .. }));
                pings += (before - writes.len()) as u64;
            }
            // A job with a ticket is never emptied: only ping rows are dropped, and no
            // ticketed job carries one.
            self.urgent.retain(|(_, writes, _)| !writes.is_empty());
            self.recount();
            if pings > 0 {
                tracing::warn!(
                    pings,
                    "the store cannot commit and its queue is full: ping history rows dropped"
                );
            }
        }
        if rows > 0 {
            tracing::warn!(
                rows,
                "the store cannot commit: a sequence checkpoint is dropped (the next one writes its nodes)"
            );
        }
        self.health.shed(pings, rows as u64);
        chunks
    }

    fn recount(&mut self) {
        self.queued_writes = self.urgent.iter().map(|(_, writes, _)| writes.len() as u64).sum();
        self.queued_bytes = self.urgent.iter().flat_map(|(_, writes, _)| writes).map(write_bytes).sum();
    }

    pub(super) fn publish_queue(&self) {
        self.health.set_queue(self.queued_writes, self.queued_bytes);
    }

    /// True once the process is stopping and the store has failed for longer than the grace.
    pub(super) fn gave_up_at_shutdown(&self) -> bool {
        self.disconnected_at.is_some_and(|at| at.elapsed() > SHUTDOWN_GRACE)
    }

    /// Says, at a shutdown that gives up on a failing store, what was not written.
    pub(super) fn log_unwritten(&self) {
        let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
        for write in self.urgent.iter().flat_map(|(_, writes, _)| writes) {
            *kinds.entry(write_kind(write)).or_default() += 1;
        }
        tracing::error!(
            unwritten = ?kinds,
            "stopping with a store that cannot commit: these writes are lost (alerts in them will not be sent)"
        );
    }
}

/// Whether a job is one nobody waits on the commit of: ping history rows and check rows
/// only, with no ticket.
fn only_pings(writes: &[Write], ticket: u64) -> bool {
    ticket == 0 && writes.iter().all(|write| matches!(write, Write::Ping { .. } | Write::Check(_)))
}

fn write_kind(write: &Write) -> &'static str {
    match write {
        Write::Node { .. } => "node",
        Write::Transition(_) => "transition",
        Write::Incident(_) => "incident",
        Write::Outbox(_) => "outbox",
        Write::Delivery { .. } => "delivery",
        Write::Check(_) | Write::DeleteCheck { .. } => "check",
        Write::Ping { .. } => "ping",
        Write::ForgetNode { .. } => "forget",
        Write::IncidentChange(_) => "incident_change",
        Write::Silence(_) | Write::EndSilence { .. } => "silence",
        Write::Lease(_) | Write::EndLease { .. } => "lease",
    }
}

/// Drops every row of a check but its last from one transaction's writes. A check's row is
/// written whole (an upsert of every column) after each batch that changed it, so within
/// one transaction only the last one decides what is committed; the others kept their
/// places, so a deletion between two rows still comes before the last. Under a stream of
/// pings, group commit then writes each check once per commit rather than once per ping.
pub(super) fn keep_last_check_rows(writes: &mut Vec<Write>) {
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

use super::*;
use rollcall_core::monitor::NodeState;
use rollcall_store::NodeRecord;
use std::collections::VecDeque;

fn node(id: &str, sequence: u64, state: NodeState) -> Write {
    let record = NodeRecord {
        id: id.into(),
        generation: 1,
        sequence,
        interval_ms: 1000,
        state,
        labels_raw: Vec::new(),
    };
    Write::Node { record, updated_at_ms: 0 }
}

fn ids_and_states(writes: &[Write]) -> Vec<(String, u64, NodeState)> {
    writes
        .iter()
        .filter_map(|write| match write {
            Write::Node { record, .. } => Some((record.id.clone(), record.sequence, record.state)),
            _ => None,
        })
        .collect()
}

fn thread() -> (StoreThread, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(dir.path()).expect("a fresh store opens");
    (StoreThread::new(store, StoreHealth::default()), dir)
}

fn bulk(writes: Vec<Write>, last: bool) -> Job {
    Job::Bulk { started: std::time::Instant::now(), writes, last }
}

#[test]
fn urgent_writes_go_before_a_queued_checkpoint_and_win_over_its_rows() {
    let (mut thread, _dir) = thread();
    let (sender, receiver) = mpsc::channel();
    let now = std::time::Instant::now();
    // A checkpoint arrives as chunks: a full one, then the rest.
    let first: Vec<Write> = (0..BULK_CHUNK).map(|i| node(&format!("n{i}"), 1, NodeState::Up)).collect();
    let rest: Vec<Write> = (0..5).map(|i| node(&format!("m{i}"), 1, NodeState::Up)).collect();
    sender.send(bulk(first, false)).expect("the thread's receiver is alive");
    sender.send(bulk(rest, true)).expect("alive");
    sender.send(Job::Urgent(now, vec![node("n3", 2, NodeState::Down)], 0)).expect("alive");

    assert!(thread.receive(&receiver));
    let first = thread.next_transaction();
    assert_eq!(ids_and_states(&first.writes), vec![("n3".to_string(), 2, NodeState::Down)], "urgent first");
    assert_eq!(first.queued_at.len(), 1, "the urgent batch's wait is measured");
    assert!(!first.chunk);

    let chunk = thread.next_transaction();
    assert_eq!(chunk.writes.len(), BULK_CHUNK - 1, "a chunk, without the superseded row of n3");
    assert!(ids_and_states(&chunk.writes).iter().all(|(id, _, _)| id != "n3"));
    assert!(chunk.queued_at.is_empty(), "the checkpoint is not done yet");
    assert!(chunk.chunk, "a chunk makes room for the next one");

    let rest = thread.next_transaction();
    assert_eq!(rest.writes.len(), 5);
    assert_eq!(rest.queued_at.len(), 1, "the checkpoint's wait is measured once, when it is all committed");
    assert!(thread.superseded.is_empty(), "forgotten once the checkpoint is done");
}

#[test]
fn a_chunk_built_after_an_urgent_write_keeps_its_newer_row() {
    let (mut thread, _dir) = thread();
    let (sender, receiver) = mpsc::channel();
    let now = std::time::Instant::now();
    // A paced checkpoint: one chunk queued, then a transition of n1, then the next chunk,
    // built after the transition, with n1's newer record.
    sender
        .send(bulk(vec![node("n1", 1, NodeState::Up), node("n2", 1, NodeState::Up)], false))
        .expect("alive");
    sender.send(Job::Urgent(now, vec![node("n1", 2, NodeState::Suspect)], 0)).expect("alive");
    sender.send(bulk(vec![node("n1", 3, NodeState::Up)], true)).expect("alive");

    assert!(thread.receive(&receiver));
    let urgent = thread.next_transaction();
    assert_eq!(ids_and_states(&urgent.writes), vec![("n1".to_string(), 2, NodeState::Suspect)]);
    let older = thread.next_transaction();
    assert_eq!(
        ids_and_states(&older.writes),
        vec![("n2".to_string(), 1, NodeState::Up)],
        "n1's old row skipped"
    );
    let newer = thread.next_transaction();
    assert_eq!(
        ids_and_states(&newer.writes),
        vec![("n1".to_string(), 3, NodeState::Up)],
        "n1's newer row kept"
    );
}

fn check(id: &str, last_ping_at_ms: i64) -> Write {
    Write::Check(rollcall_store::CheckRecord {
        id: id.into(),
        token: "t".repeat(22),
        spec_json: "{}".into(),
        source: "api".into(),
        state: NodeState::Up,
        last_ping_at_ms: Some(last_ping_at_ms),
        updated_at_ms: last_ping_at_ms,
    })
}

#[test]
fn a_transaction_writes_each_check_once_in_its_latest_state_in_order_with_deletions() {
    let (mut thread, _dir) = thread();
    let (sender, receiver) = mpsc::channel();
    let now = std::time::Instant::now();
    // Three ping batches for check a, one for b, then a is deleted and created again.
    for at in 1..=3 {
        sender.send(Job::Urgent(now, vec![check("a", at)], 0)).expect("alive");
    }
    sender.send(Job::Urgent(now, vec![check("b", 7), node("n", 1, NodeState::Up)], 0)).expect("alive");
    sender
        .send(Job::Urgent(now, vec![Write::DeleteCheck { id: "c".into() }, check("c", 9)], 0))
        .expect("alive");
    sender
        .send(Job::Urgent(now, vec![check("c", 8), Write::DeleteCheck { id: "c".into() }], 0))
        .expect("alive");
    assert!(thread.receive(&receiver));
    let transaction = thread.next_transaction();
    let kept: Vec<String> = transaction
        .writes
        .iter()
        .map(|write| match write {
            Write::Check(check) => format!("{}@{}", check.id, check.last_ping_at_ms.unwrap_or(0)),
            Write::DeleteCheck { id } => format!("delete {id}"),
            Write::Node { record, .. } => record.id.clone(),
            _ => "other".into(),
        })
        .collect();
    assert_eq!(kept, ["a@3", "b@7", "n", "delete c", "c@8", "delete c"]);
    assert_eq!(transaction.queued_at.len(), 6, "every batch's wait is still measured");
}

#[test]
fn the_thread_ends_only_when_senders_are_gone_and_nothing_is_left() {
    let (mut thread, _dir) = thread();
    let (sender, receiver) = mpsc::channel();
    sender.send(bulk(vec![node("a", 1, NodeState::Up)], true)).expect("alive");
    drop(sender);
    assert!(thread.receive(&receiver), "work is left");
    assert_eq!(thread.next_transaction().writes.len(), 1);
    assert!(!thread.receive(&receiver), "nothing left and nobody to send more");
}

/// A fleet for checkpoints: `heard` nodes heard from at 5 s, then `silent` never heard from.
struct Fleet {
    ids: Vec<String>,
    heard: usize,
}

impl Fleet {
    fn new(heard: usize, silent: usize) -> Fleet {
        Fleet { ids: (0..heard + silent).map(|i| format!("node-{i:06}")).collect(), heard }
    }

    fn views(&self, start: usize) -> impl Iterator<Item = NodeView<'_>> {
        self.ids.iter().enumerate().skip(start).map(|(i, id)| NodeView {
            id,
            state: if i < self.heard { NodeState::Up } else { NodeState::New },
            generation: 1,
            sequence: i as u64,
            labels_raw: &[],
            interval: Duration::from_secs(1),
            last_heartbeat: (i < self.heard).then(|| Instant::from_millis(5_000)),
            level: 0.0,
            deadline: None,
            addr: None,
        })
    }
}

fn record(view: &NodeView<'_>) -> Write {
    node(view.id, view.sequence, view.state)
}

/// A `Persist` whose store thread is the test: it sees every job and says when one is done.
fn detached() -> (Persist, mpsc::Receiver<Job>, tokio::sync::watch::Sender<u64>) {
    let (sender, receiver) = mpsc::channel();
    let (committed_tx, committed) = tokio::sync::watch::channel(0);
    let persist = Persist {
        health: StoreHealth::default(),
        sender: Some(sender),
        committed,
        thread: None,
        batches: Arc::default(),
        errors: Arc::default(),
        commit_seconds: Histogram::new(COMMIT_BUCKETS),
        last_checkpoint: None,
        checkpoint: None,
        in_flight: Arc::default(),
        tickets: 0,
        durable: tokio::sync::watch::channel(0).1,
    };
    (persist, receiver, committed_tx)
}

/// Drives a started checkpoint to its end, committing the oldest chunk whenever there is no
/// room: returns the rows it reports, the rows sent, and the most chunks ever in flight.
fn drive(persist: &mut Persist, jobs: &mpsc::Receiver<Job>, fleet: &Fleet) -> (usize, Vec<String>, usize) {
    let mut queued: VecDeque<(Vec<Write>, bool)> = VecDeque::new();
    let (mut written, mut most_in_flight) = (Vec::new(), 0);
    let take = |queued: &mut VecDeque<(Vec<Write>, bool)>, most_in_flight: &mut usize| {
        while let Ok(job) = jobs.try_recv() {
            let Job::Bulk { writes, last, .. } = job else { panic!("a checkpoint sends only chunks") };
            assert!(writes.len() <= BULK_CHUNK);
            queued.push_back((writes, last));
        }
        *most_in_flight = (*most_in_flight).max(queued.len());
    };
    for _ in 0..1_000 {
        if let Some(rows) = persist.advance_checkpoint(|start| fleet.views(start), record) {
            take(&mut queued, &mut most_in_flight);
            assert!(queued.back().is_none_or(|(_, last)| *last), "the last chunk says so");
            // The store commits the rest.
            persist.in_flight.fetch_sub(queued.len(), Ordering::Release);
            written.extend(queued.into_iter().flat_map(|(writes, _)| ids_and_states(&writes)));
            let ids = written.into_iter().map(|(id, _, _)| id).collect();
            return (rows, ids, most_in_flight);
        }
        take(&mut queued, &mut most_in_flight);
        assert_eq!(persist.chunks_in_flight(), queued.len());
        if !persist.checkpoint_ready() {
            // The store commits the oldest chunk.
            let (writes, last) = queued.pop_front().expect("no room means chunks are in flight");
            assert!(!last);
            written.extend(ids_and_states(&writes));
            persist.in_flight.fetch_sub(1, Ordering::Release);
        }
    }
    panic!("the checkpoint did not end");
}

#[test]
fn a_paced_checkpoint_has_at_most_a_few_chunks_in_flight_and_writes_every_node_heard_from() {
    // Heard from at 5 s; a tail of silent nodes longer than one step's visits.
    let fleet = Fleet::new(5 * BULK_CHUNK + 123, 2 * VISIT_PER_STEP);
    let (mut persist, jobs, _committed) = detached();
    assert!(persist.start_checkpoint(Instant::from_millis(6_000)), "the first checkpoint starts");
    assert!(!persist.start_checkpoint(Instant::from_millis(6_500)), "not while one is being written");
    let (rows, mut ids, most_in_flight) = drive(&mut persist, &jobs, &fleet);
    assert_eq!(most_in_flight, CHUNKS_IN_FLIGHT, "the bound is reached and never passed");
    assert_eq!(rows, fleet.heard);
    ids.sort();
    assert_eq!(ids, fleet.ids[..fleet.heard], "every node heard from, once; none of the silent ones");
    assert_eq!(persist.checkpoint_cursor(), None, "done");

    // The next checkpoint counts from when this one started: nothing was heard since.
    assert!(persist.start_checkpoint(Instant::from_millis(7_000)));
    let (rows, ids, _) = drive(&mut persist, &jobs, &fleet);
    assert_eq!((rows, ids.len()), (0, 0), "a checkpoint with nothing to write sends nothing");
}

#[test]
fn a_checkpoint_at_shutdown_writes_every_node_through_the_store() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut persist = Persist::start(Store::open(dir.path()).expect("a fresh store opens"));
    let fleet = Fleet::new(3 * BULK_CHUNK + 7, 10);
    // A paced checkpoint is under way when the shutdown comes.
    assert!(persist.start_checkpoint(Instant::from_millis(1_000)));
    assert_eq!(persist.advance_checkpoint(|start| fleet.views(start), record), None);
    // What the owner does at shutdown: start over, and advance whenever there is room.
    persist.restart_checkpoint(Instant::from_millis(9_000));
    let mut commits = persist.committed();
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let mut rows = None;
    while persist.checkpoint_cursor().is_some() {
        commits.borrow_and_update();
        if !persist.checkpoint_ready() {
            runtime.block_on(commits.changed()).expect("the store thread is alive");
            continue;
        }
        rows = persist.advance_checkpoint(|start| fleet.views(start), record).or(rows);
    }
    assert_eq!(rows, Some(fleet.heard), "started over from the first node");
    persist.shutdown();
    let stored = Store::open(dir.path()).expect("reopens").nodes().expect("nodes read");
    assert_eq!(stored.len(), fleet.heard);
}

fn ping(check_id: &str) -> Write {
    Write::Ping {
        record: rollcall_store::PingRecord {
            check_id: check_id.into(),
            signal: "success".into(),
            rid: None,
            duration_ms: None,
            body: vec![0; 100],
            body_len: 100,
            body_truncated: false,
            at_ms: 0,
        },
        keep: 10,
    }
}

#[test]
fn a_failing_store_sheds_checkpoints_and_past_its_bounds_ping_history_but_never_a_transition() {
    let (mut thread, _dir) = thread();
    let (sender, receiver) = mpsc::channel();
    let now = std::time::Instant::now();
    sender.send(bulk(vec![node("n1", 1, NodeState::Up)], false)).expect("alive");
    sender.send(Job::Urgent(now, vec![node("n2", 2, NodeState::Down), ping("backup")], 0)).expect("alive");
    assert!(thread.receive(&receiver));
    // Within the bounds, a failing store drops only the checkpoint chunk.
    assert_eq!(thread.shed_while_failing(), 1, "the chunk is dropped and gives the owner its room back");
    assert_eq!(thread.urgent.len(), 1);
    assert_eq!(thread.urgent[0].1.len(), 2, "the ping stays while the queue is within its bounds");
    // Past the bounds, ping history goes; the node's down stays.
    let pings: Vec<Write> = (0..health::MAX_QUEUED_WRITES).map(|_| ping("backup")).collect();
    sender.send(Job::Urgent(now, pings, 0)).expect("alive");
    assert!(thread.receive(&receiver));
    assert_eq!(thread.shed_while_failing(), 0);
    let left: Vec<&Write> = thread.urgent.iter().flat_map(|(_, writes, _)| writes).collect();
    assert_eq!(left.len(), 1, "only the node's row is left");
    assert_eq!(ids_and_states(&thread.urgent[0].1), vec![("n2".to_string(), 2, NodeState::Down)]);
    let shed = thread.health.snapshot();
    assert_eq!((shed.shed_pings, shed.shed_checkpoint_rows), (health::MAX_QUEUED_WRITES + 1, 1));
}

#[test]
fn a_failed_transaction_goes_back_first_in_line_and_retries_take_a_few_jobs() {
    let (mut thread, _dir) = thread();
    let (sender, receiver) = mpsc::channel();
    let now = std::time::Instant::now();
    for i in 0..100 {
        sender.send(Job::Urgent(now, vec![node(&format!("n{i}"), 1, NodeState::Down)], 0)).expect("alive");
    }
    assert!(thread.receive(&receiver));
    let failed = thread.next_transaction();
    assert_eq!(failed.writes.len(), 100, "a healthy store commits everything queued at once");
    thread.requeue(failed.queued_at.first().copied(), failed.writes, failed.ticket);
    sender.send(Job::Urgent(now, vec![node("late", 1, NodeState::Down)], 0)).expect("alive");
    assert!(thread.receive(&receiver));
    let retry = thread.next_retry();
    let ids: Vec<String> = ids_and_states(&retry.writes).into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids.len(), 101);
    assert_eq!(
        (ids[0].as_str(), ids[99].as_str(), ids[100].as_str()),
        ("n0", "n99", "late"),
        "the failed one first"
    );
    // A long queue is retried a few jobs at a time, oldest first.
    for i in 0..200 {
        sender.send(Job::Urgent(now, vec![node(&format!("m{i}"), 1, NodeState::Down)], 0)).expect("alive");
    }
    assert!(thread.receive(&receiver));
    let retry = thread.next_retry();
    assert_eq!(retry.queued_at.len(), 64, "a few jobs per retry");
    assert_eq!(ids_and_states(&retry.writes)[0].0, "m0");
}

#[test]
fn an_acked_batch_is_committed_once_the_durable_ticket_reaches_its_own() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut persist = Persist::start(Store::open(dir.path()).expect("a fresh store opens"));
    let lease = |name: &str, token| {
        Write::Lease(rollcall_store::LeaseRecord {
            name: name.into(),
            node: "n1".into(),
            holder: "h".into(),
            token,
            ttl_ms: 1000,
            since_ms: 0,
        })
    };
    let first = persist.write_acked(vec![lease("a", 3)]);
    persist.write(vec![node("n1", 1, NodeState::Up)]);
    let second = persist.write_acked(vec![lease("b", 4)]);
    assert!(second > first, "tickets increase");
    let durable = persist.durable();
    let started = std::time::Instant::now();
    while *durable.borrow() < second {
        assert!(started.elapsed() < Duration::from_secs(10), "ticket {second} never committed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let reader = Store::open(dir.path()).expect("a reader opens");
    assert_eq!(
        reader.last_lease_token().expect("readable"),
        4,
        "what the ticket says is durable is in the file"
    );
    persist.shutdown();
}

/// A window far longer than a passing test runs: a gather that returns did not wait for it,
/// and one that waits for it takes the jobs it should have left and fails.
const NEVER: Duration = Duration::from_secs(30);

fn pings_job(check_id: &str, count: usize) -> Job {
    Job::Urgent(std::time::Instant::now(), (0..count).map(|_| ping(check_id)).collect(), 0)
}

#[test]
fn a_ping_window_gathers_pings_and_closes_at_the_first_other_write() {
    let (mut thread, _dir) = thread();
    let (sender, receiver) = mpsc::channel();
    sender.send(pings_job("backup", 1)).expect("alive");
    assert!(thread.receive(&receiver));
    sender.send(pings_job("backup", 2)).expect("alive");
    sender
        .send(Job::Urgent(std::time::Instant::now(), vec![node("n1", 1, NodeState::Down)], 0))
        .expect("alive");
    sender.send(pings_job("nightly", 1)).expect("alive");
    thread.gather_pings(&receiver, NEVER);
    assert_eq!(thread.urgent.len(), 3, "the pings and the down, not the ping after it");
    let transaction = thread.next_transaction();
    assert_eq!(transaction.writes.len(), 4);
    assert_eq!(ids_and_states(&transaction.writes), vec![("n1".to_string(), 1, NodeState::Down)]);

    // A write somebody waits for (a lease, with its ticket) closes the window too.
    sender.send(pings_job("backup", 1)).expect("alive");
    assert!(thread.receive(&receiver));
    assert_eq!(thread.urgent.len(), 2, "the ping left behind, and this one");
    thread.next_transaction();
    sender.send(pings_job("backup", 1)).expect("alive");
    assert!(thread.receive(&receiver));
    sender.send(Job::Urgent(std::time::Instant::now(), vec![ping("backup")], 7)).expect("alive");
    thread.gather_pings(&receiver, NEVER);
    assert_eq!(thread.next_transaction().ticket, 7);
}

#[test]
fn a_ping_window_opens_only_over_pings_and_ends_on_its_own() {
    let (mut thread, _dir) = thread();
    let (sender, receiver) = mpsc::channel();
    // Something else already queued: no window at all.
    sender
        .send(Job::Urgent(std::time::Instant::now(), vec![node("n1", 1, NodeState::Down)], 0))
        .expect("alive");
    sender.send(pings_job("backup", 1)).expect("alive");
    assert!(thread.receive(&receiver));
    sender.send(pings_job("backup", 1)).expect("alive");
    thread.gather_pings(&receiver, NEVER);
    assert_eq!(thread.urgent.len(), 2, "nothing gathered behind a down");
    thread.next_transaction();

    // Only pings, nothing more arrives: the window ends when it is over.
    assert!(thread.receive(&receiver));
    thread.gather_pings(&receiver, Duration::from_millis(20));
    assert_eq!(thread.urgent.len(), 1);
    thread.next_transaction();

    // A full window commits at once.
    sender.send(pings_job("backup", 1)).expect("alive");
    assert!(thread.receive(&receiver));
    sender.send(pings_job("backup", thread::PING_WINDOW_WRITES as usize)).expect("alive");
    sender.send(pings_job("backup", 1)).expect("alive");
    thread.gather_pings(&receiver, NEVER);
    assert_eq!(thread.urgent.len(), 2, "stopped once the window was full");

    thread.next_transaction();

    // The senders gone (the monitor stopping): the window ends at once.
    sender.send(pings_job("backup", 1)).expect("alive");
    assert!(thread.receive(&receiver));
    assert_eq!(thread.urgent.len(), 2, "the ping left behind, and this one");
    drop(sender);
    thread.gather_pings(&receiver, NEVER);
    assert!(thread.receive(&receiver), "what is queued is still committed");
    assert_eq!(thread.next_transaction().writes.len(), 2);
    assert!(!thread.receive(&receiver), "then the thread ends");
}

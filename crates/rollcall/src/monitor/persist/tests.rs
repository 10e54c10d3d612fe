use super::*;
use rollcall_proto::monitor::NodeState;
use rollcall_store::NodeRecord;

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
    (StoreThread::new(store), dir)
}

#[test]
fn urgent_writes_go_before_a_queued_checkpoint_and_win_over_its_rows() {
    let (mut thread, _dir) = thread();
    let (sender, receiver) = mpsc::channel();
    let now = std::time::Instant::now();
    // A checkpoint arrives as chunks: a full one, then the rest.
    let first: Vec<Write> = (0..BULK_CHUNK).map(|i| node(&format!("n{i}"), 1, NodeState::Up)).collect();
    let rest: Vec<Write> = (0..5).map(|i| node(&format!("m{i}"), 1, NodeState::Up)).collect();
    sender.send(Job::Bulk(now, first)).expect("the thread's receiver is alive");
    sender.send(Job::Bulk(now, rest)).expect("alive");
    sender.send(Job::Urgent(now, vec![node("n3", 2, NodeState::Down)])).expect("alive");

    assert!(thread.receive(&receiver));
    let (first, done) = thread.next_transaction();
    assert_eq!(ids_and_states(&first), vec![("n3".to_string(), 2, NodeState::Down)], "urgent first");
    assert_eq!(done.len(), 1, "the urgent batch's wait is measured");

    let (chunk, done) = thread.next_transaction();
    assert_eq!(chunk.len(), BULK_CHUNK - 1, "a chunk, without the superseded row of n3");
    assert!(ids_and_states(&chunk).iter().all(|(id, _, _)| id != "n3"));
    assert!(done.is_empty(), "the checkpoint is not done yet");

    let (rest, done) = thread.next_transaction();
    assert_eq!(rest.len(), 5);
    assert_eq!(done.len(), 1, "the checkpoint's wait is measured once, when it is all committed");
    assert!(thread.superseded.is_empty(), "forgotten once the checkpoint is done");
}

#[test]
fn the_thread_ends_only_when_senders_are_gone_and_nothing_is_left() {
    let (mut thread, _dir) = thread();
    let (sender, receiver) = mpsc::channel();
    sender.send(Job::Bulk(std::time::Instant::now(), vec![node("a", 1, NodeState::Up)])).expect("alive");
    drop(sender);
    assert!(thread.receive(&receiver), "work is left");
    let (chunk, _) = thread.next_transaction();
    assert_eq!(chunk.len(), 1);
    assert!(!thread.receive(&receiver), "nothing left and nobody to send more");
}

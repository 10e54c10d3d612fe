use super::*;

fn node(id: &str, generation: u64, sequence: u64, state: NodeState) -> Write {
    Write::Node {
        record: NodeRecord {
            id: id.into(),
            generation,
            sequence,
            interval_ms: 1000,
            state,
            labels_raw: vec![],
        },
        updated_at_ms: 1,
    }
}

fn transition(node: &str, from: NodeState, to: NodeState, reason: Reason) -> Write {
    Write::Transition(TransitionRecord {
        id: 0,
        node: node.into(),
        generation: 1,
        from,
        to,
        reason,
        at_ms: 10,
        noticed_at_ms: 11,
    })
}

#[test]
fn writes_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(dir.path()).unwrap();
        let ids = store
            .write(&[
                node("web-1", 1, 5, NodeState::Up),
                transition("web-1", NodeState::New, NodeState::Up, Reason::FirstHeartbeat),
                transition("web-1", NodeState::Up, NodeState::Down, Reason::Phi),
            ])
            .unwrap();
        assert_eq!(ids.len(), 2);
        assert!(ids[0] < ids[1]);
    }
    let store = Store::open(dir.path()).unwrap();
    let nodes = store.nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!((nodes[0].generation, nodes[0].sequence, nodes[0].state), (1, 5, NodeState::Up));
    let history = store.transitions(0, 100, None).unwrap();
    let kinds: Vec<_> = history.iter().map(|t| (t.from, t.to, t.reason)).collect();
    assert_eq!(
        kinds,
        [
            (NodeState::New, NodeState::Up, Reason::FirstHeartbeat),
            (NodeState::Up, NodeState::Down, Reason::Phi)
        ]
    );
    assert_eq!(store.transitions(history[0].id, 100, None).unwrap().len(), 1);
    assert_eq!(store.transitions(0, 100, Some("other")).unwrap().len(), 0);
}

#[test]
fn sequence_never_goes_back_within_a_generation() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.write(&[node("a", 1, 50, NodeState::Up)]).unwrap();
    // A transition's record may carry an older sequence than a checkpoint already wrote.
    store.write(&[node("a", 1, 40, NodeState::Down)]).unwrap();
    let stored = &store.nodes().unwrap()[0];
    assert_eq!((stored.sequence, stored.state), (50, NodeState::Down));
    // A new generation starts its sequence over.
    store.write(&[node("a", 2, 1, NodeState::Up)]).unwrap();
    let stored = &store.nodes().unwrap()[0];
    assert_eq!((stored.generation, stored.sequence), (2, 1));
}

#[test]
fn a_foreign_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    {
        let other = Connection::open(&path).unwrap();
        other.execute_batch("CREATE TABLE accounts (id INTEGER); INSERT INTO accounts VALUES (7);").unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let error = Store::open(dir.path()).err().unwrap();
    assert!(matches!(error, StoreError::Foreign { .. }), "{error}");
    assert!(error.to_string().contains("not a rollcall store"));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_file_that_is_not_sqlite_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    std::fs::write(&path, b"this is not a database, just some text that is long enough to matter").unwrap();
    assert!(Store::open(dir.path()).is_err());
    assert!(std::fs::read(&path).unwrap().starts_with(b"this is not a database"));
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    {
        let connection = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        connection.pragma_update(None, "user_version", 99).unwrap();
    }
    let error = Store::open(dir.path()).err().unwrap();
    assert!(matches!(error, StoreError::TooNew { found: 99, .. }), "{error}");
}

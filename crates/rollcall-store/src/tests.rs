use super::*;
use rollcall_core::alerts::{NotificationKind, Severity, SubjectKind};

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
        kind: SubjectKind::Node,
        node: node.into(),
        generation: 1,
        from,
        to,
        reason,
        at_ms: 10,
        noticed_at_ms: 11,
        exit: None,
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
    let history = store.transitions(0, 100, TransitionFilter::default()).unwrap();
    let kinds: Vec<_> = history.iter().map(|t| (t.from, t.to, t.reason)).collect();
    assert_eq!(
        kinds,
        [
            (NodeState::New, NodeState::Up, Reason::FirstHeartbeat),
            (NodeState::Up, NodeState::Down, Reason::Phi)
        ]
    );
    assert_eq!(store.transitions(history[0].id, 100, TransitionFilter::default()).unwrap().len(), 1);
    assert_eq!(
        store.transitions(0, 100, TransitionFilter { id: Some("other"), kind: None }).unwrap().len(),
        0
    );
    let newest = store.recent_transitions(SubjectKind::Node, "web-1", 1).unwrap();
    assert_eq!(newest.iter().map(|t| t.to).collect::<Vec<_>>(), [NodeState::Down]);
    assert_eq!(store.recent_transitions(SubjectKind::Node, "web-1", 10).unwrap().len(), 2);
    assert!(store.recent_transitions(SubjectKind::Check, "web-1", 10).unwrap().is_empty());
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

fn outbox(sink: &str, key: &str) -> Write {
    Write::Outbox(OutboxEntry {
        sink: sink.into(),
        idempotency_key: key.into(),
        incident: 7,
        subject: "web-1".into(),
        payload: format!("{{\"key\":\"{key}\"}}"),
        created_at_ms: 5,
    })
}

#[test]
fn outbox_entries_are_queued_once_per_sink_and_key_and_delivered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store
        .write(&[
            outbox("hook", "rollcall-7-0"),
            outbox("hook", "rollcall-7-1"),
            outbox("exec", "rollcall-7-0"),
        ])
        .unwrap();
    // Replaying the same batch (a crash between commit and acknowledgement) adds nothing.
    store.write(&[outbox("hook", "rollcall-7-0")]).unwrap();
    assert_eq!(store.outbox_depth().unwrap(), [("exec".to_string(), 1), ("hook".to_string(), 2)]);
    let first = store.next_undelivered("hook", 0).unwrap().unwrap();
    assert_eq!(first.entry.idempotency_key, "rollcall-7-0");
    store
        .write(&[Write::Delivery { outbox_id: first.id, at_ms: 10, error: Some("HTTP 500".into()) }])
        .unwrap();
    let again = store.next_undelivered("hook", 0).unwrap().unwrap();
    assert_eq!((again.id, again.attempts, again.last_error.as_deref()), (first.id, 1, Some("HTTP 500")));
    store.write(&[Write::Delivery { outbox_id: first.id, at_ms: 11, error: None }]).unwrap();
    let next = store.next_undelivered("hook", 0).unwrap().unwrap();
    assert_eq!(next.entry.idempotency_key, "rollcall-7-1");
    let delivered = &store.outbox_rows(Some("hook"), 0, 10).unwrap()[0];
    assert_eq!((delivered.attempts, delivered.delivered_at_ms), (2, Some(11)));
    // A late failure report for a delivered row changes nothing.
    store.write(&[Write::Delivery { outbox_id: first.id, at_ms: 12, error: Some("late".into()) }]).unwrap();
    assert_eq!(store.outbox_rows(Some("hook"), 0, 1).unwrap()[0].delivered_at_ms, Some(11));
}

#[test]
fn incidents_open_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let mut incident = IncidentRecord {
        id: 3,
        kind: NotificationKind::Firing,
        severity: Severity::Critical,
        subject_kind: SubjectKind::Group,
        subject: "correlated-failure".into(),
        members: vec!["a".into(), "b".into()],
        started_at_ms: 1,
        resolved_at_ms: None,
        next_sequence: 1,
        last_notified_at_ms: 1,
        silenced_by: None,
        notified: true,
    };
    store.write(&[Write::Incident(incident.clone())]).unwrap();
    assert_eq!(store.open_incidents().unwrap(), [incident.clone()]);
    incident.resolved_at_ms = Some(9);
    incident.next_sequence = 2;
    store.write(&[Write::Incident(incident.clone())]).unwrap();
    assert!(store.open_incidents().unwrap().is_empty());
    assert_eq!(store.recent_incidents(10).unwrap(), [incident]);
    assert_eq!(store.max_incident_id().unwrap(), 3);
}

#[test]
fn checks_and_their_newest_pings() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let check = CheckRecord {
        id: "backup".into(),
        token: "t".repeat(22),
        spec_json: "{}".into(),
        source: "api".into(),
        state: NodeState::Up,
        last_ping_at_ms: Some(3),
        updated_at_ms: 3,
    };
    store.write(&[Write::Check(check.clone())]).unwrap();
    for at_ms in 0..10 {
        store.write(&[ping_write("backup", at_ms, 3)]).unwrap();
    }
    let kept: Vec<i64> = store.pings("backup", 100).unwrap().iter().map(|p| p.at_ms).collect();
    assert_eq!(kept, [9, 8, 7]);
    assert_eq!(store.check("backup").unwrap(), Some(check));
    store.write(&[Write::DeleteCheck { id: "backup".into() }]).unwrap();
    assert!(store.checks().unwrap().is_empty());
    assert!(store.pings("backup", 100).unwrap().is_empty());
}

#[test]
fn pings_written_in_one_batch_keep_the_same_history_as_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let ping = |check_id: &str, at_ms: i64| ping_write(check_id, at_ms, 3);
    // Two checks' pings interleaved in one transaction, as group commit merges them.
    let batch: Vec<Write> = (0..10).flat_map(|at_ms| [ping("a", at_ms), ping("b", 100 + at_ms)]).collect();
    store.write(&batch).unwrap();
    let at = |store: &Store, check: &str| -> Vec<i64> {
        store.pings(check, 100).unwrap().iter().map(|p| p.at_ms).collect()
    };
    // Each check keeps its own newest three, whatever the other's pings did to the ids.
    assert_eq!(at(&store, "a"), [9, 8, 7]);
    assert_eq!(at(&store, "b"), [109, 108, 107]);
    store.write(&[ping("a", 10)]).unwrap();
    assert_eq!(at(&store, "a"), [10, 9, 8], "and the next ping prunes as before");
    assert_eq!(at(&store, "b"), [109, 108, 107], "without touching the other check");
}

#[test]
fn checks_pinged_in_turn_keep_their_own_history_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ping = |check_id: &str, at_ms: i64| ping_write(check_id, at_ms, 50);
    {
        let mut store = Store::open(dir.path()).unwrap();
        // 3 checks x 30 pings, one transaction each, in turn: the ids interleave.
        for at_ms in 0..30 {
            for check in ["a", "b", "c"] {
                store.write(&[ping(check, at_ms)]).unwrap();
            }
        }
    }
    let store = Store::open(dir.path()).unwrap();
    for check in ["a", "b", "c"] {
        let kept: Vec<i64> = store.pings(check, 100).unwrap().iter().map(|p| p.at_ms).collect();
        assert_eq!(kept, (0..30).rev().collect::<Vec<_>>(), "check {check} keeps all 30 of its pings");
    }
}

#[test]
fn a_version_1_store_is_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    {
        let connection = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        connection.execute_batch(MIGRATIONS[0]).unwrap();
        connection.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
        connection.pragma_update(None, "user_version", 1).unwrap();
        connection.execute("INSERT INTO nodes VALUES ('old', 1, 2, 1000, 'up', x'', 0)", []).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.nodes().unwrap()[0].id, "old");
    assert!(store.outbox_depth().unwrap().is_empty());
}

#[test]
fn an_exit_status_is_stored_with_its_transition() {
    let dir = tempfile::tempdir().unwrap();
    let killed = ExitStatus { code: None, signal: Some(9) };
    let failed = ExitStatus { code: Some(3), signal: None };
    let exited = |node: &str, exit: ExitStatus| {
        let mut write = transition(node, NodeState::Up, NodeState::Down, Reason::ProcessExited);
        if let Write::Transition(record) = &mut write {
            record.exit = Some(exit);
        }
        write
    };
    {
        let mut store = Store::open(dir.path()).unwrap();
        store
            .write(&[
                exited("a", killed),
                exited("b", failed),
                exited("c", ExitStatus::default()),
                transition("d", NodeState::Up, NodeState::Down, Reason::Phi),
            ])
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let stored: Vec<_> = store.transitions(0, 10, TransitionFilter::default()).unwrap();
    let exits: Vec<_> = stored.iter().map(|t| t.exit).collect();
    assert_eq!(exits, [Some(killed), Some(failed), Some(ExitStatus::default()), None]);
}

#[test]
fn a_version_6_store_keeps_its_exit_transitions_readable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let connection = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        for migration in &MIGRATIONS[..6] {
            connection.execute_batch(migration).unwrap();
        }
        connection.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
        connection.pragma_update(None, "user_version", 6).unwrap();
        connection
            .execute(
                "INSERT INTO transitions (node, generation, from_state, to_state, reason, at_ms, noticed_at_ms)
                 VALUES ('old', 1, 'up', 'down', 'process-exited', 10, 11)",
                [],
            )
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let stored = store.recent_transitions(SubjectKind::Node, "old", 1).unwrap();
    assert_eq!(stored[0].exit, Some(ExitStatus::default()), "an exit whose status was not kept");
}

/// A ping of `check_id` at `at_ms`, keeping the newest `keep` of its check.
fn ping_write(check_id: &str, at_ms: i64, keep: u32) -> Write {
    Write::Ping {
        record: PingRecord {
            check_id: check_id.into(),
            signal: "success".into(),
            rid: None,
            duration_ms: None,
            body: vec![],
            body_len: 0,
            body_truncated: false,
            at_ms,
        },
        keep,
    }
}

#[test]
fn a_cached_statement_is_not_compiled_again_when_its_parameters_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // The shape of the store's reads: a LIMIT bound by a parameter, through the cache.
    let sql = "SELECT id FROM transitions WHERE id > ?1 ORDER BY id LIMIT ?2";
    for limit in [10_i64, 20, 30] {
        let mut statement = store.connection.prepare_cached(sql).unwrap();
        let ids: Vec<i64> = statement
            .query_map(params![0, limit], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(ids.is_empty());
    }
    let statement = store.connection.prepare_cached(sql).unwrap();
    assert_eq!(
        statement.get_status(rusqlite::StatementStatus::RePrepare),
        0,
        "compiled once, used three times"
    );
}

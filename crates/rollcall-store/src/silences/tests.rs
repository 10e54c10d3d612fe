use crate::{
    IncidentChangeRecord, IncidentRecord, SilenceRecord, Store, TransitionFilter, TransitionRecord, Write,
};
use rollcall_core::alerts::{NotificationKind, Severity, SubjectKind};
use rollcall_core::monitor::{NodeState, Reason};

fn transition(node: &str) -> Write {
    Write::Transition(TransitionRecord {
        id: 0,
        kind: SubjectKind::Node,
        node: node.into(),
        generation: 1,
        from: NodeState::Up,
        to: NodeState::Down,
        reason: Reason::Phi,
        at_ms: 10,
        noticed_at_ms: 11,
        exit: None,
    })
}

/// Incident `id` of node `a`, as it stands after a change at `at_ms`.
fn incident(id: u64, at_ms: i64) -> IncidentRecord {
    IncidentRecord {
        id,
        kind: NotificationKind::Firing,
        severity: Severity::Critical,
        subject_kind: SubjectKind::Node,
        subject: "a".into(),
        members: vec!["a".into()],
        started_at_ms: 10,
        resolved_at_ms: None,
        next_sequence: 1,
        last_notified_at_ms: at_ms,
        silenced_by: None,
        notified: true,
    }
}

fn change(id: u64, change: &str) -> Write {
    Write::IncidentChange(IncidentChangeRecord {
        id: 0,
        incident: incident(id, 12),
        change: change.into(),
        at_ms: 12,
        sent: true,
        summary: "node a is down".into(),
    })
}

#[test]
fn transitions_and_incident_changes_share_one_increasing_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    // An incident change before any transition starts the shared counter.
    store.write(&[change(1, "opened")]).unwrap();
    store.write(&[transition("a"), change(1, "resolved"), transition("b")]).unwrap();
    store.write(&[change(2, "opened")]).unwrap();
    drop(store);
    // Across a reopen, the sequence goes on.
    let mut store = Store::open(dir.path()).unwrap();
    store.write(&[transition("c")]).unwrap();
    let transitions: Vec<i64> =
        store.transitions(0, 100, TransitionFilter::default()).unwrap().iter().map(|t| t.id).collect();
    let changes: Vec<i64> = store.incident_changes(0, 100).unwrap().iter().map(|c| c.id).collect();
    assert_eq!(changes, [1, 3, 5]);
    assert_eq!(transitions, [2, 4, 6]);
    assert_eq!(store.max_event_id().unwrap(), 6);
    let after_3 = &store.incident_changes(3, 100).unwrap()[0];
    assert_eq!(after_3.incident, incident(2, 12), "read back as written");
    assert_eq!(
        (after_3.change.as_str(), after_3.sent, after_3.summary.as_str()),
        ("opened", true, "node a is down")
    );
}

#[test]
fn silences_are_listed_until_they_end_or_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let silence = |id, ends_at_ms| SilenceRecord {
        id,
        matchers: vec![("group".into(), "web".into()), ("dc".into(), "eu-1".into())],
        reason: "deploy".into(),
        created_at_ms: 1,
        ends_at_ms,
    };
    store.write(&[Write::Silence(silence(1, 100)), Write::Silence(silence(2, 200))]).unwrap();
    assert_eq!(store.active_silences(50).unwrap(), [silence(1, 100), silence(2, 200)]);
    assert_eq!(store.active_silences(150).unwrap(), [silence(2, 200)]);
    store.write(&[Write::EndSilence { id: 2, at_ms: 60 }]).unwrap();
    assert_eq!(store.active_silences(50).unwrap(), [silence(1, 100)]);
    assert_eq!(store.max_silence_id().unwrap(), 2);
}

#[test]
fn a_version_7_store_keeps_its_incidents_and_their_changes() {
    use crate::{APPLICATION_ID, FILE_NAME, MIGRATIONS};
    let dir = tempfile::tempdir().unwrap();
    {
        // What version 7 wrote: the incident's words as text, and each change's incident as
        // the JSON the API shows (times in RFC 3339).
        let connection = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
        for migration in &MIGRATIONS[..7] {
            connection.execute_batch(migration).unwrap();
        }
        connection.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
        connection.pragma_update(None, "user_version", 7).unwrap();
        connection
            .execute_batch(
                r#"INSERT INTO incidents VALUES (4, 'firing', 'warning', 'group', 'correlated-failure',
                     'a' || char(10) || 'b', 1772366400123, NULL, 1, 1772366405000, 3, 0);
                   INSERT INTO incident_changes VALUES (7, 4, 'opened', 1772366405000,
                     '{"incident":{"id":4,"kind":"firing","severity":"warning","subject_kind":"group","subject":"correlated-failure","members":["a","b"],"started_at":"2026-03-01T12:00:00.123Z","resolved_at":null,"notifications":1,"last_notified_at":"2026-03-01T12:00:05.000Z","silenced_by":3},"sent":false,"summary":"2 nodes (a, b) down at once"}');
                   INSERT INTO incident_changes VALUES (9, 4, 'resolved', 1772366999999,
                     '{"incident":{"id":4,"kind":"firing","severity":"warning","subject_kind":"group","subject":"correlated-failure","members":["a","b"],"started_at":"2026-03-01T12:00:00.123Z","resolved_at":"2026-03-01T12:09:59.999Z","notifications":2,"last_notified_at":"2026-03-01T12:09:59.999Z","silenced_by":null},"sent":true,"summary":"2 nodes (a, b) recovered"}');"#,
            )
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let opened = IncidentRecord {
        id: 4,
        kind: NotificationKind::Firing,
        severity: Severity::Warning,
        subject_kind: SubjectKind::Group,
        subject: "correlated-failure".into(),
        members: vec!["a".into(), "b".into()],
        started_at_ms: 1_772_366_400_123,
        resolved_at_ms: None,
        next_sequence: 1,
        last_notified_at_ms: 1_772_366_405_000,
        silenced_by: Some(3),
        notified: false,
    };
    assert_eq!(store.open_incidents().unwrap(), std::slice::from_ref(&opened));
    let resolved = IncidentRecord {
        resolved_at_ms: Some(1_772_366_999_999),
        next_sequence: 2,
        last_notified_at_ms: 1_772_366_999_999,
        silenced_by: None,
        ..opened.clone()
    };
    let expected = [
        IncidentChangeRecord {
            id: 7,
            incident: opened,
            change: "opened".into(),
            at_ms: 1_772_366_405_000,
            sent: false,
            summary: "2 nodes (a, b) down at once".into(),
        },
        IncidentChangeRecord {
            id: 9,
            incident: resolved,
            change: "resolved".into(),
            at_ms: 1_772_366_999_999,
            sent: true,
            summary: "2 nodes (a, b) recovered".into(),
        },
    ];
    assert_eq!(store.incident_changes(0, 10).unwrap(), expected);
    assert_eq!(store.max_event_id().unwrap(), 9, "the event sequence goes on from the converted rows");
}

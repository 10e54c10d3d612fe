use crate::{IncidentChangeRecord, SilenceRecord, Store, TransitionFilter, TransitionRecord, Write};
use rollcall_core::alerts::SubjectKind;
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

fn change(incident: u64, change: &str) -> Write {
    Write::IncidentChange(IncidentChangeRecord {
        id: 0,
        incident,
        change: change.into(),
        at_ms: 12,
        detail: "{}".into(),
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
    assert_eq!(store.incident_changes(3, 100).unwrap()[0].incident, 2);
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

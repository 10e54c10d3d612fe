//! The alert document's words are the core's: the same strings as before they were.

use super::*;
use rollcall_core::alerts::NotificationKind;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::fmt::Debug;

/// `value` is written as `word`, and `word` is read back as `value`.
fn check<T: Serialize + DeserializeOwned + PartialEq + Debug + Copy>(value: T, word: &str) {
    assert_eq!(serde_json::to_value(value).expect("serialises"), Value::String(word.to_owned()));
    assert_eq!(serde_json::from_value::<T>(json!(word)).expect("deserialises"), value, "{word}");
}

#[test]
fn every_word_is_the_cores_as_str() {
    for state in NodeState::ALL {
        check(state, state.as_str());
    }
    for reason in Reason::ALL {
        check(reason, reason.as_str());
    }
    for kind in NotificationKind::ALL {
        check(kind, kind.as_str());
    }
    for severity in [Severity::Info, Severity::Warning, Severity::Critical] {
        check(severity, severity.as_str());
    }
    for kind in [SubjectKind::Node, SubjectKind::Check, SubjectKind::Group] {
        check(kind, kind.as_str());
    }
    assert!(serde_json::from_value::<Reason>(json!("missed-heartbeats")).is_err(), "not a reason");
}

#[test]
fn a_document_reads_and_writes_the_bytes_the_copied_enums_wrote() {
    // Written by the version whose document had its own copies of these enums.
    let before = r#"{"version":1,"idempotency_key":"rollcall-41-2","kind":"resolved","severity":"warning","incident":{"id":41,"started_at":"2026-03-01T12:00:00.000Z","resolved_at":"2026-03-01T12:05:00.000Z"},"subject":{"kind":"check","id":"backup"},"nodes":["backup"],"node_count":1,"labels":{"role":"db"},"transition":{"from":"down","to":"up","reason":"ping","at":"2026-03-01T12:05:00.000Z"},"summary":"check backup recovered"}"#;
    let alert: Alert = serde_json::from_str(before).expect("an alert document");
    assert_eq!(
        (alert.kind, alert.severity, alert.subject.kind),
        (AlertKind::Resolved, Severity::Warning, SubjectKind::Check)
    );
    let transition = alert.transition.as_ref().expect("a transition");
    assert_eq!(
        (transition.from, transition.to, transition.reason),
        (NodeState::Down, NodeState::Up, Reason::Ping)
    );
    assert_eq!(serde_json::to_string(&alert).expect("serialises"), before);
}

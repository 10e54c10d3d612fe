use super::*;
use rollcall_core::Instant;

fn group_firing(members: usize) -> Notification {
    Notification {
        incident: 9,
        sequence: 0,
        kind: NotificationKind::Firing,
        severity: core::Severity::Critical,
        subject_kind: core::SubjectKind::Group,
        subject: core::GROUP_SUBJECT.to_string(),
        members: (0..members).map(|i| format!("node-{i:04}")).collect(),
        transition: None,
        started_at: Instant::ZERO,
        resolved_at: None,
    }
}

#[test]
fn a_mass_failure_alert_names_a_few_members_and_counts_the_rest() {
    let clock = Clock::start();
    let alert = alert(&group_firing(5_000), BTreeMap::new(), &clock);
    assert_eq!(alert.node_count, 5_000);
    assert_eq!(alert.nodes.len(), NODES_IN_ALERT);
    assert!(alert.summary.starts_with("5000 nodes (node-0000, node-0001,"), "{}", alert.summary);
    assert!(alert.summary.contains("node-0009 and 4990 more)"), "{}", alert.summary);
    assert!(!alert.summary.contains("node-0010"), "{}", alert.summary);
    let body = serde_json::to_string(&alert).unwrap();
    assert!(body.len() < 4_096, "a 5,000-node alert is {} bytes", body.len());
}

#[test]
fn a_small_group_is_listed_whole() {
    let alert = alert(&group_firing(3), BTreeMap::new(), &Clock::start());
    assert_eq!((alert.node_count, alert.nodes.len()), (3, 3));
    assert!(
        alert.summary.starts_with("3 nodes (node-0000, node-0001, node-0002) down at once"),
        "{}",
        alert.summary
    );
}

/// A node's page for a `down (process-exited)` with `exit`.
fn exited(exit: ExitStatus) -> Alert {
    let transition = Transition {
        node: "api-1".into(),
        generation: 4,
        from: rollcall_core::monitor::NodeState::Up,
        to: rollcall_core::monitor::NodeState::Down,
        reason: rollcall_core::monitor::Reason::ProcessExited,
        at: Instant::ZERO,
        noticed: Instant::ZERO,
        exit: Some(exit),
    };
    let notification = Notification {
        subject_kind: core::SubjectKind::Node,
        subject: "api-1".to_string(),
        members: vec!["api-1".to_string()],
        transition: Some(transition),
        ..group_firing(1)
    };
    alert(&notification, BTreeMap::new(), &Clock::start())
}

#[test]
fn a_crashed_process_page_says_how_it_ended() {
    let killed = exited(ExitStatus { code: None, signal: Some(9) });
    assert_eq!(killed.summary, "node api-1 is down: process exited (signal 9, SIGKILL)");
    let transition = killed.transition.expect("a transition");
    assert_eq!((transition.exit_code, transition.exit_signal), (None, Some(9)));
    let failed = exited(ExitStatus { code: Some(3), signal: None });
    assert_eq!(failed.summary, "node api-1 is down: process exited (exit code 3)");
    assert_eq!(exited(ExitStatus::default()).summary, "node api-1 is down: process exited");
    // Only a status that is known appears in the document.
    let body = serde_json::to_value(&failed).expect("an alert serializes");
    assert_eq!(body["transition"]["exit_code"], 3);
    assert!(body["transition"].get("exit_signal").is_none(), "{body:#}");
}

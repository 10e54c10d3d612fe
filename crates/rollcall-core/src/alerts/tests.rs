//! The incident rules on a virtual clock.

use super::*;
use crate::monitor::Reason;
use std::sync::Arc;

struct Harness {
    alerter: Alerter,
    now: Instant,
    out: Vec<Notification>,
    /// When set, every notification goes through `admit` with these labels (as the shell
    /// does), and only delivered ones are kept.
    labels: Option<BTreeMap<String, String>>,
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

impl Harness {
    fn new(config: AlertConfig, population: usize) -> Harness {
        let mut alerter = Alerter::new(config).unwrap();
        alerter.set_population(population);
        Harness { alerter, now: Instant::from_millis(1_000), out: vec![], labels: None }
    }

    fn default(population: usize) -> Harness {
        Harness::new(AlertConfig::default(), population)
    }

    fn transition(&mut self, kind: SubjectKind, node: &str, from: NodeState, to: NodeState) {
        let reason = if to == NodeState::Down { Reason::Phi } else { Reason::Heartbeat };
        let t = Transition {
            node: Arc::from(node),
            generation: 1,
            from,
            to,
            reason,
            at: self.now,
            noticed: self.now,
            exit: None,
        };
        self.alerter.handle_transition(kind, &t, self.now);
        self.drain();
    }

    fn down(&mut self, node: &str) {
        self.transition(SubjectKind::Node, node, NodeState::Suspect, NodeState::Down);
    }

    fn up(&mut self, node: &str) {
        self.transition(SubjectKind::Node, node, NodeState::Down, NodeState::Up);
    }

    fn run_for(&mut self, span: Duration) {
        let target = self.now + span;
        while let Some(due) = self.alerter.poll_timeout().filter(|&due| due <= target) {
            self.now = due.max(self.now);
            self.alerter.handle_timeout(self.now);
            self.drain();
        }
        self.now = target;
    }

    fn drain(&mut self) {
        while let Some(n) = self.alerter.poll_notification() {
            if let Some(labels) = &self.labels
                && self.alerter.admit(&n, labels, self.now) != Admission::Deliver
            {
                continue;
            }
            self.out.push(n);
        }
    }

    /// (kind, subject, members, idempotency key) of everything sent so far.
    fn sent(&self) -> Vec<(&'static str, String, Vec<String>, String)> {
        self.out
            .iter()
            .map(|n| (n.kind.as_str(), n.subject.clone(), n.members.clone(), n.idempotency_key()))
            .collect()
    }

    fn kinds(&self) -> Vec<(&'static str, String)> {
        self.out.iter().map(|n| (n.kind.as_str(), n.subject.clone())).collect()
    }
}

fn check(h: &Harness, expected: &[(&str, &str)]) {
    let expected: Vec<(&str, String)> = expected.iter().map(|(k, s)| (*k, s.to_string())).collect();
    let got: Vec<(&str, String)> = h.kinds();
    assert_eq!(got, expected);
}

#[test]
fn a_down_opens_an_incident_after_the_grouping_wait_and_recovery_resolves_it() {
    let mut h = Harness::default(100);
    h.down("web-1");
    assert!(h.out.is_empty(), "held for group_wait");
    h.run_for(secs(5));
    check(&h, &[("firing", "web-1")]);
    let firing = &h.out[0];
    assert_eq!((firing.severity, firing.sequence), (Severity::Critical, 0));
    assert_eq!(firing.transition.as_ref().unwrap().to, NodeState::Down);
    h.run_for(secs(60));
    h.up("web-1");
    check(&h, &[("firing", "web-1"), ("resolved", "web-1")]);
    assert_eq!(h.out[1].idempotency_key(), format!("rollcall-{}-1", h.out[0].incident));
    assert!(h.out[1].resolved_at.is_some());
    assert_eq!(h.alerter.open_incidents().count(), 0);
}

#[test]
fn a_down_that_recovers_inside_the_wait_pages_nobody() {
    let mut h = Harness::default(100);
    h.down("web-1");
    h.run_for(secs(2));
    h.up("web-1");
    h.run_for(secs(60));
    assert!(h.out.is_empty());
    assert_eq!(h.alerter.stats().recovered_before_paging, 1);
}

#[test]
fn no_alert_for_births_goodbyes_or_maintenance() {
    let mut h = Harness::default(10);
    h.transition(SubjectKind::Node, "a", NodeState::New, NodeState::Up);
    h.transition(SubjectKind::Node, "a", NodeState::Up, NodeState::Left);
    h.transition(SubjectKind::Node, "b", NodeState::Up, NodeState::Paused);
    h.transition(SubjectKind::Node, "b", NodeState::Paused, NodeState::Up);
    h.transition(SubjectKind::Node, "c", NodeState::Up, NodeState::Up); // restart while up
    h.run_for(secs(3600));
    assert!(h.out.is_empty());
}

#[test]
fn a_node_that_leaves_while_down_resolves_its_incident() {
    let mut h = Harness::default(100);
    h.down("web-1");
    h.run_for(secs(10));
    h.transition(SubjectKind::Node, "web-1", NodeState::Down, NodeState::Left);
    check(&h, &[("firing", "web-1"), ("resolved", "web-1")]);
}

#[test]
fn open_incidents_remind_every_repeat_interval() {
    let mut h = Harness::default(100);
    h.down("web-1");
    h.run_for(secs(5));
    h.run_for(secs(4 * 3600 * 2 + 10));
    check(&h, &[("firing", "web-1"), ("reminder", "web-1"), ("reminder", "web-1")]);
    let keys: Vec<String> = h.out.iter().map(Notification::idempotency_key).collect();
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "every notification has its own key: {keys:?}");
    h.up("web-1");
    h.run_for(secs(5 * 3600));
    assert_eq!(h.out.len(), 4, "no reminder after the resolution");
}

#[test]
fn checks_page_at_once_without_grouping() {
    let mut h = Harness::default(100);
    h.transition(SubjectKind::Check, "backup", NodeState::Up, NodeState::Down);
    check(&h, &[("firing", "backup")]);
    assert_eq!(h.out[0].subject_kind, SubjectKind::Check);
}

#[test]
fn a_mass_failure_is_one_grouped_incident() {
    let mut h = Harness::default(10);
    for node in ["n1", "n2", "n3", "n4"] {
        h.down(node);
        h.run_for(Duration::from_millis(500));
    }
    h.run_for(secs(10));
    assert_eq!(h.out.len(), 1, "one page, not four: {:?}", h.kinds());
    let group = &h.out[0];
    assert_eq!(
        (group.kind, group.subject_kind, group.subject.as_str()),
        (NotificationKind::Firing, SubjectKind::Group, GROUP_SUBJECT)
    );
    assert_eq!(group.members, ["n1", "n2", "n3", "n4"]);
    // The group resolves when its last member is back, not before.
    for node in ["n1", "n2", "n3"] {
        h.up(node);
    }
    assert_eq!(h.out.len(), 1);
    h.up("n4");
    let resolved = h.out.last().unwrap();
    assert_eq!(resolved.kind, NotificationKind::Resolved);
    assert_eq!(resolved.members, ["n1", "n2", "n3", "n4"], "the resolution names every member");
    assert_eq!(h.alerter.stats().groups_opened, 1);
}

#[test]
fn a_few_downs_in_a_big_fleet_are_paged_one_by_one() {
    let mut h = Harness::default(100); // 30 % of 100 = 30 nodes would be a group
    for node in ["n1", "n2", "n3", "n4"] {
        h.down(node);
    }
    h.run_for(secs(10));
    assert_eq!(h.kinds().iter().filter(|(k, _)| *k == "firing").count(), 4);
    assert!(h.out.iter().all(|n| n.subject_kind == SubjectKind::Node));
}

#[test]
fn flapping_sends_one_notice_instead_of_a_stream() {
    let mut h = Harness::new(AlertConfig { group_wait: Duration::ZERO, ..AlertConfig::default() }, 100);
    for _ in 0..10 {
        h.down("flaky");
        h.run_for(secs(20));
        h.up("flaky");
        h.run_for(secs(20));
    }
    let kinds: Vec<&str> = h.out.iter().map(|n| n.kind.as_str()).collect();
    // Three downs page normally (6 changes allowed), then one flapping notice, then quiet.
    assert_eq!(kinds.iter().filter(|k| **k == "flapping").count(), 1, "{kinds:?}");
    assert!(kinds.len() <= 8, "{kinds:?}");
    assert!(h.alerter.is_flapping(SubjectKind::Node, "flaky"));
    assert!(h.alerter.stats().held > 0);
    // It settles down (up) for a whole window: the flapping incident resolves, no new page.
    let before = h.out.len();
    h.run_for(secs(601));
    assert!(!h.alerter.is_flapping(SubjectKind::Node, "flaky"));
    let after: Vec<&str> = h.out[before..].iter().map(|n| n.kind.as_str()).collect();
    assert_eq!(after, ["resolved"]);
}

#[test]
fn a_flapping_node_that_settles_down_is_paged_then() {
    let mut h = Harness::new(AlertConfig { group_wait: Duration::ZERO, ..AlertConfig::default() }, 100);
    for _ in 0..4 {
        h.down("flaky");
        h.run_for(secs(10));
        h.up("flaky");
        h.run_for(secs(10));
    }
    h.down("flaky");
    assert!(h.alerter.is_flapping(SubjectKind::Node, "flaky"));
    let before = h.out.len();
    h.run_for(secs(601));
    let after: Vec<&str> = h.out[before..].iter().map(|n| n.kind.as_str()).collect();
    assert_eq!(after, ["resolved", "firing"], "the flapping notice resolves and the down is paged");
}

#[test]
fn paused_subjects_are_not_reminded() {
    let mut h = Harness::new(AlertConfig { group_wait: Duration::ZERO, ..AlertConfig::default() }, 100);
    h.down("web-1");
    h.transition(SubjectKind::Node, "web-1", NodeState::Down, NodeState::Paused);
    h.run_for(secs(9 * 3600));
    check(&h, &[("firing", "web-1")]);
    assert!(h.alerter.stats().held >= 2);
}

#[test]
fn restored_incidents_keep_their_ids_and_resolve_after_a_restart() {
    let mut h = Harness::default(100);
    let incident = open_node_incident(41, "web-1", 3, h.now);
    h.alerter.restore(incident, |_| true);
    h.up("web-1");
    assert_eq!(
        h.sent(),
        [("resolved", "web-1".to_string(), vec!["web-1".to_string()], "rollcall-41-3".to_string())]
    );
    h.down("web-2");
    h.run_for(secs(5));
    assert_eq!(h.out[1].incident, 42, "new ids continue above restored ones");
}

#[test]
fn invalid_settings_are_refused_with_a_sentence() {
    for config in [
        AlertConfig { group_share: 0.0, ..AlertConfig::default() },
        AlertConfig { group_share: 1.5, ..AlertConfig::default() },
        AlertConfig { flap_changes: 1, ..AlertConfig::default() },
        AlertConfig { repeat_interval: Duration::ZERO, ..AlertConfig::default() },
    ] {
        let error = Alerter::new(config).err().unwrap();
        assert!(error.setting().starts_with("alerts."), "{error}");
    }
}

#[test]
fn a_restored_group_waits_only_for_members_still_down() {
    let mut h = Harness::default(10);
    let group = OpenIncident {
        id: 7,
        kind: NotificationKind::Firing,
        severity: Severity::Critical,
        subject_kind: SubjectKind::Group,
        subject: GROUP_SUBJECT.into(),
        members: vec!["a".into(), "b".into(), "c".into()],
        started_at: Instant::ZERO,
        next_sequence: 1,
        last_notified: h.now,
    };
    h.alerter.restore(group, |member| member != "b");
    h.up("a");
    assert!(h.out.is_empty(), "c is still down");
    h.up("c");
    assert_eq!(
        h.sent(),
        [(
            "resolved",
            GROUP_SUBJECT.to_string(),
            vec!["a".into(), "b".into(), "c".into()],
            "rollcall-7-1".into()
        )]
    );
}

fn silenced_harness() -> Harness {
    let config = AlertConfig { group_wait: Duration::ZERO, ..AlertConfig::default() };
    let mut h = Harness::new(config, 10);
    h.labels = Some(BTreeMap::from([("group".to_string(), "web".to_string())]));
    h
}

#[test]
fn a_silence_holds_firing_and_its_end_sends_it_if_still_down() {
    let mut h = silenced_harness();
    let matchers = vec![("group".to_string(), "web".to_string())];
    let silence = h.alerter.add_silence(matchers, "deploy".into(), h.now, h.now + secs(60));
    h.down("web-1");
    check(&h, &[]);
    assert_eq!(h.alerter.silenced_by(1), Some(silence.id));
    h.run_for(secs(59));
    check(&h, &[]);
    h.run_for(secs(2));
    check(&h, &[("firing", "web-1")]);
    assert_eq!(h.out[0].idempotency_key(), "rollcall-1-1");
    assert!(h.out[0].transition.is_some(), "the owed firing keeps its transition");
    h.up("web-1");
    check(&h, &[("firing", "web-1"), ("resolved", "web-1")]);
    assert_eq!(h.alerter.silences().count(), 0);
}

#[test]
fn what_recovers_under_a_silence_was_never_sent_and_is_never_resolved() {
    let mut h = silenced_harness();
    h.alerter.add_silence(vec![("node".into(), "web-1".into())], "".into(), h.now, h.now + secs(60));
    h.down("web-1");
    h.up("web-1");
    h.run_for(secs(120));
    check(&h, &[]);
    // Other nodes are not covered by a node matcher.
    h.down("web-2");
    check(&h, &[("firing", "web-2")]);
}

#[test]
fn a_resolution_of_an_incident_that_fired_before_the_silence_is_sent() {
    let mut h = silenced_harness();
    h.down("web-1");
    h.alerter.add_silence(
        vec![("group".into(), "web".into())],
        "".into(),
        h.now,
        h.now + secs(4 * 3600 + 60),
    );
    // The reminder after 4 h is held; the recovery is sent (the receiver saw it fire).
    h.run_for(secs(4 * 3600 + 1));
    check(&h, &[("firing", "web-1")]);
    h.up("web-1");
    check(&h, &[("firing", "web-1"), ("resolved", "web-1")]);
}

#[test]
fn deleting_a_silence_sends_what_it_held_as_a_reminder_when_the_firing_went_out() {
    let mut h = silenced_harness();
    h.down("web-1");
    let silence =
        h.alerter.add_silence(vec![("group".into(), "web".into())], "".into(), h.now, h.now + secs(86_400));
    h.run_for(secs(4 * 3600 + 1));
    check(&h, &[("firing", "web-1")]);
    assert!(h.alerter.remove_silence(silence.id));
    assert!(!h.alerter.remove_silence(silence.id));
    h.run_for(secs(1));
    check(&h, &[("firing", "web-1"), ("reminder", "web-1")]);
}

#[test]
fn a_silence_that_does_not_match_holds_nothing_and_a_restored_hold_is_released() {
    let mut h = silenced_harness();
    h.alerter.add_silence(vec![("group".into(), "db".into())], "".into(), h.now, h.now + secs(60));
    h.down("web-1");
    check(&h, &[("firing", "web-1")]);
    // After a restart: an incident held by a silence that ended while the monitor was down.
    let mut h = silenced_harness();
    let incident = OpenIncident {
        id: 7,
        kind: NotificationKind::Firing,
        severity: Severity::Critical,
        subject_kind: SubjectKind::Node,
        subject: "web-9".into(),
        members: vec!["web-9".into()],
        started_at: h.now,
        next_sequence: 1,
        last_notified: h.now,
    };
    h.alerter.restore(incident, |_| true);
    h.alerter.reserve_silence_ids_through(3);
    h.alerter.restore_held(7, 3, false);
    h.run_for(secs(1));
    check(&h, &[("firing", "web-9")]);
    assert_eq!(h.out[0].idempotency_key(), "rollcall-7-1");
    assert_eq!(h.alerter.add_silence(vec![], "".into(), h.now, h.now).id, 4);
}

#[test]
fn an_incident_held_and_resolved_while_the_monitor_was_down_is_never_resolved_at_a_receiver() {
    let mut h = silenced_harness();
    let incident = OpenIncident {
        id: 9,
        kind: NotificationKind::Firing,
        severity: Severity::Critical,
        subject_kind: SubjectKind::Group,
        subject: GROUP_SUBJECT.into(),
        members: vec!["web-8".into(), "web-9".into()],
        started_at: h.now,
        next_sequence: 1,
        last_notified: h.now,
    };
    // A group whose members are all up again when the monitor restarts: `restore` resolves
    // it at once.
    h.alerter.restore(incident, |_| false);
    h.alerter.restore_held(9, 1, false);
    h.drain();
    h.run_for(secs(1));
    check(&h, &[]);
}

fn stored_down(node: &str, at: Instant) -> Transition {
    Transition {
        node: Arc::from(node),
        generation: 1,
        from: NodeState::Suspect,
        to: NodeState::Down,
        reason: Reason::Phi,
        at,
        noticed: at,
        exit: None,
    }
}

#[test]
fn a_down_held_when_the_process_died_pages_after_a_restart() {
    let mut h = Harness::default(100);
    h.alerter.restore_down(stored_down("web-1", Instant::ZERO), h.now);
    assert!(h.out.is_empty(), "held in a fresh grouping window");
    h.run_for(secs(5));
    check(&h, &[("firing", "web-1")]);
    h.up("web-1");
    check(&h, &[("firing", "web-1"), ("resolved", "web-1")]);
}

#[test]
fn downs_held_together_when_the_process_died_page_once_grouped() {
    let mut h = Harness::default(20);
    for i in 0..10 {
        h.alerter.restore_down(stored_down(&format!("n{i}"), Instant::ZERO), h.now);
    }
    h.run_for(secs(5));
    assert_eq!(h.kinds(), [("firing", GROUP_SUBJECT.to_string())]);
    assert_eq!(h.out[0].members.len(), 10);
}

#[test]
fn a_restored_down_already_paged_is_not_paged_again() {
    let mut h = Harness::default(100);
    let incident = open_node_incident(5, "web-1", 1, h.now);
    h.alerter.restore(incident, |_| true);
    h.alerter.restore_down(stored_down("web-1", Instant::ZERO), h.now);
    h.run_for(secs(60));
    assert!(h.out.is_empty(), "its incident is open: no second firing");
    h.up("web-1");
    assert_eq!(h.sent()[0].3, "rollcall-5-1", "the restored incident resolves");
}

#[test]
fn a_restored_down_pages_at_once_without_grouping() {
    let config = AlertConfig { group_wait: Duration::ZERO, ..AlertConfig::default() };
    let mut h = Harness::new(config, 100);
    h.alerter.restore_down(stored_down("web-1", Instant::ZERO), h.now);
    h.drain();
    check(&h, &[("firing", "web-1")]);
}

/// An open firing incident about one node, as the shell restores it.
fn open_node_incident(id: u64, node: &str, next_sequence: u32, last_notified: Instant) -> OpenIncident {
    OpenIncident {
        id,
        kind: NotificationKind::Firing,
        severity: Severity::Critical,
        subject_kind: SubjectKind::Node,
        subject: node.into(),
        members: vec![node.into()],
        started_at: Instant::ZERO,
        next_sequence,
        last_notified,
    }
}

//! Incidents: the second layer of alerting. Transitions come in; notifications come out,
//! after the rules that keep people from being paged in vain: a down opens one incident and
//! a recovery resolves it; an open incident reminds every `repeat_interval`; a subject that
//! flaps sends one flapping notice instead of a stream; and a mass failure (a share of the
//! fleet down within `group_wait`) becomes one grouped incident, not N pages. Silences
//! hold the notifications of matching incidents while they last (see [`Alerter::admit`]).
//!
//! Sans-IO like the monitor: `now` is passed in, notifications are polled. Delivery (the
//! third layer) belongs to the shell, which writes every notification to its outbox before
//! sending it.

use crate::monitor::{NodeState, Transition};
use crate::{ConfigError, Instant};
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Settings of the incident layer.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertConfig {
    /// How often an open incident is re-notified (Alertmanager's default: 4 h).
    pub repeat_interval: Duration,
    /// More than this many state changes inside `flap_window` marks a subject flapping.
    pub flap_changes: u32,
    pub flap_window: Duration,
    /// A failure is "mass" when at least this share of all nodes goes down within
    /// `group_wait`, and at least `group_min_nodes` of them.
    pub group_share: f64,
    pub group_min_nodes: usize,
    /// How long a node's down is held to see whether it is part of a mass failure. Zero
    /// sends at once and never groups.
    pub group_wait: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            repeat_interval: Duration::from_secs(4 * 3600),
            flap_changes: 6,
            flap_window: Duration::from_secs(600),
            group_share: 0.30,
            group_min_nodes: 3,
            group_wait: Duration::from_secs(5),
        }
    }
}

impl AlertConfig {
    /// Checks every setting; the error is one sentence naming the bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.repeat_interval < Duration::from_secs(1) {
            return Err(ConfigError::new("alerts.repeat_interval", "must be at least 1s"));
        }
        if self.flap_changes < 2 {
            return Err(ConfigError::new("alerts.flap_changes", "must be at least 2"));
        }
        if self.flap_window.is_zero() {
            return Err(ConfigError::new("alerts.flap_window", "must be positive"));
        }
        if !(self.group_share > 0.0 && self.group_share <= 1.0) {
            return Err(ConfigError::new(
                "alerts.group_share",
                "must be above 0 and at most 1 (a share of the nodes)",
            ));
        }
        if self.group_min_nodes < 2 {
            return Err(ConfigError::new("alerts.group_min_nodes", "must be at least 2"));
        }
        Ok(())
    }
}

/// What an incident is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "kebab-case"))]
pub enum SubjectKind {
    Node,
    Check,
    /// A correlated failure of several nodes.
    Group,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Node => "node",
            SubjectKind::Check => "check",
            SubjectKind::Group => "group",
        }
    }

    pub fn parse(text: &str) -> Option<SubjectKind> {
        [SubjectKind::Node, SubjectKind::Check, SubjectKind::Group].into_iter().find(|k| k.as_str() == text)
    }
}

/// The name of grouped incidents' subject.
pub const GROUP_SUBJECT: &str = "correlated-failure";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "kebab-case"))]
pub enum NotificationKind {
    Firing,
    Reminder,
    Resolved,
    Flapping,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 4] = [
        NotificationKind::Firing,
        NotificationKind::Reminder,
        NotificationKind::Resolved,
        NotificationKind::Flapping,
    ];

    pub fn parse(text: &str) -> Option<NotificationKind> {
        NotificationKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Firing => "firing",
            NotificationKind::Reminder => "reminder",
            NotificationKind::Resolved => "resolved",
            NotificationKind::Flapping => "flapping",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "kebab-case"))]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Critical].into_iter().find(|s| s.as_str() == text)
    }
}

/// One message about one incident. `(incident, sequence)` is unique and stable: it is the
/// idempotency key receivers de-duplicate on.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub incident: u64,
    /// 0 for the notification that opened the incident, then 1, 2, ...
    pub sequence: u32,
    pub kind: NotificationKind,
    pub severity: Severity,
    pub subject_kind: SubjectKind,
    /// Node id, check id, or [`GROUP_SUBJECT`].
    pub subject: String,
    /// The nodes or checks concerned (one, or a group's members).
    pub members: Vec<String>,
    /// The transition that caused it (none for reminders and group notifications).
    pub transition: Option<Transition>,
    /// When the incident should have opened (the first deadline crossed).
    pub started_at: Instant,
    /// Set on `Resolved`.
    pub resolved_at: Option<Instant>,
}

impl Notification {
    pub fn idempotency_key(&self) -> String {
        format!("rollcall-{}-{}", self.incident, self.sequence)
    }
}

/// An open incident, as the shell stores it and restores it after a restart.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenIncident {
    pub id: u64,
    pub kind: NotificationKind,
    pub severity: Severity,
    pub subject_kind: SubjectKind,
    pub subject: String,
    pub members: Vec<String>,
    pub started_at: Instant,
    /// The sequence number the next notification will carry.
    pub next_sequence: u32,
    /// When the last notification (or reminder) was made.
    pub last_notified: Instant,
}

/// Counters for metrics.
#[derive(Clone, Debug, Default)]
pub struct AlertStats {
    pub notifications: BTreeMap<&'static str, u64>,
    /// Downs that recovered inside `group_wait` and so paged nobody.
    pub recovered_before_paging: u64,
    pub groups_opened: u64,
    pub flapping_marked: u64,
    /// Notifications not made because the subject was flapping or paused.
    pub held: u64,
    /// Notifications held by a silence.
    pub silenced: u64,
}

type Key = (SubjectKind, String);

/// The incident layer. Feed it every transition ([`Alerter::handle_transition`]), call
/// [`Alerter::handle_timeout`] when [`Alerter::poll_timeout`] says, and drain
/// [`Alerter::poll_notification`] after each call.
pub struct Alerter {
    config: AlertConfig,
    next_id: u64,
    open: BTreeMap<u64, OpenIncident>,
    /// The open incident of each subject (groups hold their members here too).
    by_subject: BTreeMap<Key, u64>,
    /// For each open group incident, how many of its members are still down: it resolves
    /// when none is (its `members` keep naming all of them, for the resolution).
    group_waiting: BTreeMap<u64, usize>,
    /// Reminder schedule: (due, incident).
    reminders: BTreeSet<(Instant, u64)>,
    /// Each open incident's entry in `reminders`, so that closing one finds it at once
    /// (a mass recovery closes thousands).
    reminder_of: std::collections::HashMap<u64, Instant>,
    /// Node downs held while a possible mass failure forms, with the window's end.
    pending: Vec<Transition>,
    window_end: Option<Instant>,
    /// Recent state changes per subject, for flap detection (bounded to `flap_changes + 1`).
    changes: BTreeMap<Key, VecDeque<Instant>>,
    /// Flapping subjects, with the instant at which they count as settled.
    flapping: BTreeMap<Key, Instant>,
    /// Subjects currently down (as far as alerting knows), for settling after a flap.
    down: BTreeSet<Key>,
    paused: BTreeSet<Key>,
    silences: BTreeMap<u64, Silence>,
    next_silence_id: u64,
    /// Open incidents whose latest notification a silence holds.
    held: BTreeMap<u64, Held>,
    /// Open incidents none of whose notifications was sent (all held).
    never_sent: BTreeSet<u64>,
    population: usize,
    out: VecDeque<Notification>,
    stats: AlertStats,
}

impl Alerter {
    pub fn new(config: AlertConfig) -> Result<Alerter, ConfigError> {
        config.validate()?;
        Ok(Alerter {
            config,
            next_id: 1,
            open: BTreeMap::new(),
            by_subject: BTreeMap::new(),
            group_waiting: BTreeMap::new(),
            reminders: BTreeSet::new(),
            reminder_of: Default::default(),
            pending: Vec::new(),
            window_end: None,
            changes: BTreeMap::new(),
            flapping: BTreeMap::new(),
            down: BTreeSet::new(),
            paused: BTreeSet::new(),
            silences: BTreeMap::new(),
            next_silence_id: 1,
            held: BTreeMap::new(),
            never_sent: BTreeSet::new(),
            population: 0,
            out: VecDeque::new(),
            stats: AlertStats::default(),
        })
    }

    pub fn stats(&self) -> &AlertStats {
        &self.stats
    }

    /// Open incidents, oldest first.
    pub fn open_incidents(&self) -> impl Iterator<Item = &OpenIncident> {
        self.open.values()
    }

    /// Whether the subject is currently marked flapping.
    pub fn is_flapping(&self, kind: SubjectKind, id: &str) -> bool {
        self.flapping.contains_key(&(kind, id.to_string()))
    }

    /// Tells the layer how many nodes the fleet has (the base of `group_share`).
    pub fn set_population(&mut self, nodes: usize) {
        self.population = nodes;
    }

    /// Re-opens an incident read from the store. Ids continue above the largest restored.
    /// `last_notified` is on the current clock (the shell maps stored wall times);
    /// `is_down` says which members are down now (a group waits for those to recover).
    pub fn restore(&mut self, incident: OpenIncident, is_down: impl Fn(&str) -> bool) {
        self.next_id = self.next_id.max(incident.id + 1);
        let kind =
            if incident.subject_kind == SubjectKind::Check { SubjectKind::Check } else { SubjectKind::Node };
        let mut attached = 0;
        for member in &incident.members {
            let down = is_down(member);
            if down {
                self.down.insert((kind, member.clone()));
            }
            // A single incident waits for its subject whatever the state; a group only for
            // the members still down.
            if down || incident.subject_kind != SubjectKind::Group {
                self.by_subject.insert((kind, member.clone()), incident.id);
                attached += 1;
            }
        }
        if incident.subject_kind == SubjectKind::Group {
            self.group_waiting.insert(incident.id, attached);
        }
        self.schedule_reminder(incident.last_notified + self.config.repeat_interval, incident.id);
        let (id, resolved_while_away) = (incident.id, attached == 0);
        let now = incident.last_notified;
        self.open.insert(id, incident);
        if resolved_while_away {
            self.close(id, None, now, true);
        }
    }

    /// Takes the down of a node that was down when the shell last stopped, after every open
    /// incident is restored. A down already covered by an open incident (its own, or a
    /// group's) only marks the node down. One that none covers was committed but not yet
    /// paged: it was held in the grouping window when the process died. It is held again,
    /// in a window that opens now, so it pages once (grouped if enough others were held
    /// with it) instead of never. `transition` is the node's stored latest transition.
    pub fn restore_down(&mut self, transition: Transition, now: Instant) {
        let key: Key = (SubjectKind::Node, transition.node.to_string());
        self.down.insert(key.clone());
        if self.by_subject.contains_key(&key) {
            return;
        }
        if self.config.group_wait.is_zero() {
            self.open_single(SubjectKind::Node, &transition, now);
        } else {
            self.hold(transition, now);
        }
    }

    /// Makes sure new incident ids are above `id` (ids of resolved incidents in the store).
    pub fn reserve_ids_through(&mut self, id: u64) {
        self.next_id = self.next_id.max(id + 1);
    }

    /// Takes one transition of a node or a check.
    pub fn handle_transition(&mut self, kind: SubjectKind, transition: &Transition, now: Instant) {
        debug_assert!(kind != SubjectKind::Group, "groups have no transitions of their own");
        let key: Key = (kind, transition.node.to_string());
        match transition.to {
            NodeState::Paused => {
                self.paused.insert(key);
                return;
            }
            _ if transition.from == NodeState::Paused => {
                self.paused.remove(&key);
            }
            _ => {}
        }
        if transition.from == transition.to {
            return; // a restart noticed while up: history, not an alert
        }
        let was_down = self.down.contains(&key);
        match transition.to {
            NodeState::Down => {
                self.down.insert(key.clone());
            }
            NodeState::Up | NodeState::Left => {
                self.down.remove(&key);
            }
            _ => {}
        }
        if counts_as_change(transition) && self.record_change(&key, now) {
            return; // flapping: held, the flapping notice speaks for it
        }
        match transition.to {
            NodeState::Down if kind == SubjectKind::Node && !self.config.group_wait.is_zero() => {
                self.hold(transition.clone(), now);
            }
            NodeState::Down => self.open_single(kind, transition, now),
            NodeState::Up | NodeState::Left if was_down => self.recover(&key, transition, now),
            _ => {}
        }
    }

    /// Releases held downs, sends due reminders, settles flapping subjects.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.window_end.is_some_and(|end| end <= now) {
            self.release_window(now);
        }
        while let Some(&(due, id)) = self.reminders.first() {
            if due > now {
                break;
            }
            self.reminders.pop_first();
            self.reminder_of.remove(&id);
            self.remind(id, now);
        }
        let settled: Vec<Key> =
            self.flapping.iter().filter(|(_, until)| **until <= now).map(|(key, _)| key.clone()).collect();
        for key in settled {
            self.settle(key, now);
        }
        self.silences.retain(|_, silence| silence.ends_at > now);
        self.release_held(now);
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let reminder = self.reminders.first().map(|&(due, _)| due);
        let settle = self.flapping.values().min().copied();
        let silence_end = self.silences.values().map(|silence| silence.ends_at).min();
        // A held notification whose silence is gone (deleted, or ended while the monitor was
        // down) is due at once.
        let orphan = self
            .held
            .values()
            .filter(|held| !self.silences.contains_key(&held.silence))
            .map(|held| held.since)
            .min();
        [self.window_end, reminder, settle, silence_end, orphan].into_iter().flatten().min()
    }

    pub fn poll_notification(&mut self) -> Option<Notification> {
        self.out.pop_front()
    }

    /// Records a state change; returns true if the subject is (now) flapping, in which case
    /// the transition is held.
    fn record_change(&mut self, key: &Key, now: Instant) -> bool {
        let window = self.config.flap_window;
        let limit = self.config.flap_changes as usize;
        let history = self.changes.entry(key.clone()).or_default();
        history.push_back(now);
        while history.front().is_some_and(|&first| now - first > window) || history.len() > limit + 1 {
            history.pop_front();
        }
        let crowded = history.len() > limit;
        if let Some(until) = self.flapping.get_mut(key) {
            *until = now + window;
            self.stats.held += 1;
            return true;
        }
        if crowded {
            self.mark_flapping(key.clone(), now);
            return true;
        }
        false
    }

    fn mark_flapping(&mut self, key: Key, now: Instant) {
        self.stats.flapping_marked += 1;
        self.flapping.insert(key.clone(), now + self.config.flap_window);
        // A flapping subject's own incident (if any) is replaced by the flapping notice;
        // the pending down (if any) is dropped.
        self.pending.retain(|t| *t.node != *key.1);
        if self.pending.is_empty() {
            self.window_end = None;
        }
        self.detach(&key, now);
        self.open_for(key, NotificationKind::Flapping, Severity::Warning, now, None, now);
    }

    /// The subject has been quiet for a whole window: close the flapping notice, and if it
    /// stayed down, page for that now.
    fn settle(&mut self, key: Key, now: Instant) {
        self.flapping.remove(&key);
        self.changes.remove(&key);
        if let Some(id) = self.by_subject.get(&key).copied() {
            self.close(id, None, now, true);
        }
        if self.down.contains(&key) {
            self.open_for(key, NotificationKind::Firing, Severity::Critical, now, None, now);
        }
    }

    /// Opens an incident about one subject and sends its first notification.
    fn open_for(
        &mut self,
        key: Key,
        kind: NotificationKind,
        severity: Severity,
        started_at: Instant,
        transition: Option<Transition>,
        now: Instant,
    ) {
        let incident = OpenIncident {
            id: self.new_id(),
            kind,
            severity,
            subject_kind: key.0,
            subject: key.1.clone(),
            members: vec![key.1.clone()],
            started_at,
            next_sequence: 0,
            last_notified: now,
        };
        self.by_subject.insert(key, incident.id);
        self.emit_open(incident, kind, transition, now);
    }

    /// Takes a subject out of its open incident without a word: a single incident closes
    /// silently, a group waits for one member less (and resolves if it was the last).
    fn detach(&mut self, key: &Key, now: Instant) {
        let Some(id) = self.by_subject.remove(key) else { return };
        if self.open.get(&id).is_some_and(|incident| incident.subject_kind == SubjectKind::Group) {
            if self.member_left_group(id) {
                self.close(id, None, now, true);
            }
        } else {
            self.close(id, None, now, false);
        }
    }

    /// One member of a group is back (or detached); true when it was the last one down.
    fn member_left_group(&mut self, id: u64) -> bool {
        let waiting = self.group_waiting.entry(id).or_insert(0);
        *waiting = waiting.saturating_sub(1);
        if *waiting == 0 {
            self.group_waiting.remove(&id);
            true
        } else {
            false
        }
    }

    fn hold(&mut self, transition: Transition, now: Instant) {
        if self.window_end.is_none() {
            self.window_end = Some(now + self.config.group_wait);
        }
        self.pending.push(transition);
    }

    /// The grouping window closed: one grouped incident if enough nodes went down together,
    /// else one incident each.
    fn release_window(&mut self, now: Instant) {
        self.window_end = None;
        let downs = std::mem::take(&mut self.pending);
        let threshold = ((self.population as f64) * self.config.group_share).ceil() as usize;
        if downs.len() >= self.config.group_min_nodes.max(threshold) && !downs.is_empty() {
            self.stats.groups_opened += 1;
            let id = self.new_id();
            let members: Vec<String> = downs.iter().map(|t| t.node.to_string()).collect();
            for member in &members {
                self.by_subject.insert((SubjectKind::Node, member.clone()), id);
            }
            self.group_waiting.insert(id, members.len());
            let started_at = downs.iter().map(|t| t.at).min().unwrap_or(now);
            let incident = OpenIncident {
                id,
                kind: NotificationKind::Firing,
                severity: Severity::Critical,
                subject_kind: SubjectKind::Group,
                subject: GROUP_SUBJECT.to_string(),
                members,
                started_at,
                next_sequence: 0,
                last_notified: now,
            };
            self.emit_open(incident, NotificationKind::Firing, None, now);
        } else {
            for transition in downs {
                self.open_single(SubjectKind::Node, &transition, now);
            }
        }
    }

    fn open_single(&mut self, kind: SubjectKind, transition: &Transition, now: Instant) {
        let key: Key = (kind, transition.node.to_string());
        if self.by_subject.contains_key(&key) {
            return; // already covered by an open incident (restored, or a group)
        }
        let (kind, severity) = (NotificationKind::Firing, Severity::Critical);
        self.open_for(key, kind, severity, transition.at, Some(transition.clone()), now);
    }

    fn recover(&mut self, key: &Key, transition: &Transition, now: Instant) {
        let before = self.pending.len();
        self.pending.retain(|t| *t.node != *key.1);
        if self.pending.len() < before {
            self.stats.recovered_before_paging += 1;
            if self.pending.is_empty() {
                self.window_end = None;
            }
            return;
        }
        let Some(id) = self.by_subject.remove(key) else { return };
        let Some(incident) = self.open.get(&id) else { return };
        if incident.subject_kind == SubjectKind::Group {
            // The group resolves, naming all its members, when the last one recovers.
            if self.member_left_group(id) {
                self.close(id, None, now, true);
            }
            return;
        }
        self.close(id, Some(transition.clone()), now, true);
    }

    /// Resolves an incident; `notify` false closes it silently (superseded by a flapping
    /// notice, which says more).
    fn close(&mut self, id: u64, transition: Option<Transition>, now: Instant, notify: bool) {
        let Some(mut incident) = self.open.remove(&id) else { return };
        self.group_waiting.remove(&id);
        if !notify {
            // Nothing will be admitted for it any more.
            self.held.remove(&id);
            self.never_sent.remove(&id);
        }
        if let Some(at) = self.reminder_of.remove(&id) {
            self.reminders.remove(&(at, id));
        }
        let kind =
            if incident.subject_kind == SubjectKind::Check { SubjectKind::Check } else { SubjectKind::Node };
        for member in &incident.members {
            let key = (kind, member.clone());
            if self.by_subject.get(&key) == Some(&id) {
                self.by_subject.remove(&key);
            }
        }
        if notify {
            let sequence = incident.next_sequence;
            incident.next_sequence += 1;
            self.push(&incident, sequence, NotificationKind::Resolved, transition, Some(now));
        }
    }

    fn schedule_reminder(&mut self, at: Instant, id: u64) {
        if let Some(previous) = self.reminder_of.insert(id, at) {
            self.reminders.remove(&(previous, id));
        }
        self.reminders.insert((at, id));
    }

    fn remind(&mut self, id: u64, now: Instant) {
        let Some(incident) = self.open.get(&id) else { return };
        let quiet = incident.members.iter().all(|member| {
            let kind = if incident.subject_kind == SubjectKind::Check {
                SubjectKind::Check
            } else {
                SubjectKind::Node
            };
            self.paused.contains(&(kind, member.clone()))
        });
        let next = now + self.config.repeat_interval;
        let incident = self.open.get_mut(&id).expect("looked up above");
        incident.last_notified = now;
        if quiet || incident.kind == NotificationKind::Flapping {
            self.stats.held += u64::from(quiet);
        } else {
            let sequence = incident.next_sequence;
            incident.next_sequence += 1;
            let snapshot = incident.clone();
            self.push(&snapshot, sequence, NotificationKind::Reminder, None, None);
        }
        self.schedule_reminder(next, id);
    }

    fn emit_open(
        &mut self,
        mut incident: OpenIncident,
        kind: NotificationKind,
        transition: Option<Transition>,
        now: Instant,
    ) {
        incident.next_sequence = 1;
        incident.last_notified = now;
        self.schedule_reminder(now + self.config.repeat_interval, incident.id);
        self.push(&incident, 0, kind, transition, None);
        self.open.insert(incident.id, incident);
    }

    fn push(
        &mut self,
        incident: &OpenIncident,
        sequence: u32,
        kind: NotificationKind,
        transition: Option<Transition>,
        resolved_at: Option<Instant>,
    ) {
        *self.stats.notifications.entry(kind.as_str()).or_default() += 1;
        self.out.push_back(Notification {
            incident: incident.id,
            sequence,
            kind,
            severity: incident.severity,
            subject_kind: incident.subject_kind,
            subject: incident.subject.clone(),
            members: incident.members.clone(),
            transition,
            started_at: incident.started_at,
            resolved_at,
        });
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// Changes that count towards flapping: going down and coming back. First heartbeats,
/// goodbyes and maintenance are operators' or births, not instability.
fn counts_as_change(transition: &Transition) -> bool {
    matches!(
        (transition.from, transition.to),
        (NodeState::Up | NodeState::Suspect, NodeState::Down) | (NodeState::Down, NodeState::Up)
    )
}

mod silences;

use silences::Held;
pub use silences::{Admission, Silence};

#[cfg(test)]
mod tests;

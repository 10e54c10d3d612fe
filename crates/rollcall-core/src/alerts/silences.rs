//! Silences: while one lasts, the notifications of the incidents it matches are held (the
//! transitions and incidents are still recorded); when it ends with the incident still open,
//! the owed notification is made.

use super::{Alerter, Notification, NotificationKind, SubjectKind};
use crate::Instant;
use crate::monitor::Transition;
use std::collections::BTreeMap;

/// A silence: while it lasts, notifications whose subject matches every matcher are held.
///
/// A matcher `node=ID` matches a node's incident (or a group's whose every member is ID),
/// `check=ID` a check's, and any other `key=value` the alert's labels (for a group: the
/// labels all its members share).
#[derive(Clone, Debug, PartialEq)]
pub struct Silence {
    pub id: u64,
    pub matchers: Vec<(String, String)>,
    pub reason: String,
    pub created_at: Instant,
    pub ends_at: Instant,
}

impl Silence {
    /// Whether the silence covers this notification (whatever the time).
    pub fn matches(&self, notification: &Notification, labels: &BTreeMap<String, String>) -> bool {
        !self.matchers.is_empty()
            && self.matchers.iter().all(|(key, value)| match key.as_str() {
                "node" => {
                    notification.subject_kind != SubjectKind::Check
                        && !notification.members.is_empty()
                        && notification.members.iter().all(|member| member == value)
                }
                "check" => notification.subject_kind == SubjectKind::Check && notification.subject == *value,
                _ => labels.get(key) == Some(value),
            })
    }
}

/// What the shell does with a notification, as [`Alerter::admit`] decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Send it.
    Deliver,
    /// A silence holds it: record it, send nothing. When the silence ends (or is deleted)
    /// while the incident is still open, a new notification is made.
    Hold { silence: u64 },
    /// Send nothing: the resolution of an incident nobody was told about (its notifications
    /// were all held).
    Drop,
}

/// A notification a silence held, owed when the silence ends.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Held {
    pub(super) silence: u64,
    /// The transition of a held firing, for the firing made when the silence ends.
    pub(super) transition: Option<Transition>,
    pub(super) since: Instant,
}

impl Alerter {
    /// Adds a silence from `now` until `ends_at`; returns it with its new id.
    pub fn add_silence(
        &mut self,
        matchers: Vec<(String, String)>,
        reason: String,
        now: Instant,
        ends_at: Instant,
    ) -> Silence {
        let silence = Silence { id: self.next_silence_id, matchers, reason, created_at: now, ends_at };
        self.next_silence_id += 1;
        self.silences.insert(silence.id, silence.clone());
        silence
    }

    /// Puts back a silence read from the store (ids continue above it).
    pub fn restore_silence(&mut self, silence: Silence) {
        self.next_silence_id = self.next_silence_id.max(silence.id + 1);
        self.silences.insert(silence.id, silence);
    }

    /// Makes sure new silence ids are above `id` (ids of ended silences in the store).
    pub fn reserve_silence_ids_through(&mut self, id: u64) {
        self.next_silence_id = self.next_silence_id.max(id + 1);
    }

    /// Ends a silence now; false for an unknown (or already ended) one. What it held is
    /// owed at the next [`Alerter::handle_timeout`] (which [`Alerter::poll_timeout`] asks
    /// for at once).
    pub fn remove_silence(&mut self, id: u64) -> bool {
        self.silences.remove(&id).is_some()
    }

    /// Active silences, by id.
    pub fn silences(&self) -> impl Iterator<Item = &Silence> {
        self.silences.values()
    }

    /// The silence holding an open incident's notifications, if one does.
    pub fn silenced_by(&self, incident: u64) -> Option<u64> {
        self.held.get(&incident).map(|held| held.silence)
    }

    /// Re-marks an open incident restored from the store as held by `silence`;
    /// `delivered_before` says whether any of its notifications was sent.
    /// Call it after [`Alerter::restore`]: an incident that `restore` resolved (its subject
    /// recovered while the monitor was down) and that nobody was told about is then dropped
    /// by [`Alerter::admit`] instead of resolved at a receiver that never saw it fire.
    pub fn restore_held(&mut self, incident: u64, silence: u64, delivered_before: bool) {
        if !delivered_before {
            self.never_sent.insert(incident);
        }
        let Some(open) = self.open.get(&incident) else { return };
        let since = open.last_notified;
        self.held.insert(incident, Held { silence, transition: None, since });
    }

    /// Decides whether a notification polled from [`Alerter::poll_notification`] is sent:
    /// the shell calls this with the subject's labels before writing any outbox row.
    ///
    /// A firing, reminder or flapping notice whose subject an active silence matches is
    /// held. A resolution is sent if anything about its incident was sent before (so a
    /// receiver that saw the incident fire sees it close, silence or not), and dropped if
    /// not. When the holding silence ends while the incident is still open, a new
    /// notification is made: the firing (or flapping notice) if none was sent, else a
    /// reminder. So nothing that is still firing stays unsaid once the silence is over.
    pub fn admit(
        &mut self,
        notification: &Notification,
        labels: &BTreeMap<String, String>,
        now: Instant,
    ) -> Admission {
        let id = notification.incident;
        let previous = self.held.remove(&id);
        if notification.kind == NotificationKind::Resolved {
            return if self.never_sent.remove(&id) { Admission::Drop } else { Admission::Deliver };
        }
        let silence = self
            .silences
            .values()
            .find(|silence| silence.ends_at > now && silence.matches(notification, labels))
            .map(|silence| silence.id);
        let Some(silence) = silence else {
            self.never_sent.remove(&id);
            return Admission::Deliver;
        };
        self.stats.silenced += 1;
        if notification.sequence == 0 {
            self.never_sent.insert(id);
        }
        let transition = notification.transition.clone().or(previous.and_then(|held| held.transition));
        self.held.insert(id, Held { silence, transition, since: now });
        Admission::Hold { silence }
    }

    // ---- internals ----

    /// Makes the notifications owed by silences that are gone, for incidents still open:
    /// the opening notification if none was sent, else a reminder. The shell passes them
    /// through [`Alerter::admit`] like any other (another silence may hold them again).
    pub(super) fn release_held(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, held)| !self.silences.contains_key(&held.silence))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            let held = self.held.remove(&id).expect("listed above");
            let Some(incident) = self.open.get_mut(&id) else {
                self.never_sent.remove(&id);
                continue;
            };
            let sequence = incident.next_sequence;
            incident.next_sequence += 1;
            incident.last_notified = now;
            let snapshot = incident.clone();
            if self.never_sent.contains(&id) {
                self.push(&snapshot, sequence, snapshot.kind, held.transition, None);
            } else {
                self.push(&snapshot, sequence, NotificationKind::Reminder, None, None);
            }
        }
    }
}

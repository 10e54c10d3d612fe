//! The owner's side of silences: the API's commands, and putting silences (and what they
//! hold) back after a restart. The rules themselves are the incident layer's
//! ([`rollcall_core::alerts::Alerter::admit`]).

use super::Owner;
use crate::clock::{Clock, rfc3339_ms};
use rollcall_core::alerts::{Alerter, Silence};
use rollcall_store::{IncidentRecord, SilenceRecord, Write};
use serde::Serialize;
use tokio::sync::oneshot;

/// Requests about silences, from HTTP handlers.
pub enum SilenceCommand {
    List {
        reply: oneshot::Sender<Vec<SilenceJson>>,
    },
    /// Matchers are checked by the handler; `ends_at_ms` is wall-clock time in the future.
    Add {
        matchers: Vec<(String, String)>,
        reason: String,
        ends_at_ms: i64,
        reply: oneshot::Sender<SilenceJson>,
    },
    /// False for an unknown or already ended silence.
    Remove {
        id: u64,
        reply: oneshot::Sender<bool>,
    },
}

/// A silence as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SilenceJson {
    pub id: u64,
    /// `key=value`, all of which must match.
    pub matchers: Vec<String>,
    pub reason: String,
    pub created_at: String,
    pub ends_at: String,
}

fn silence_json(silence: &Silence, clock: &Clock) -> SilenceJson {
    SilenceJson {
        id: silence.id,
        matchers: silence.matchers.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        reason: silence.reason.clone(),
        created_at: rfc3339_ms(clock.wall_ms(silence.created_at)),
        ends_at: rfc3339_ms(clock.wall_ms(silence.ends_at)),
    }
}

fn record(silence: &Silence, clock: &Clock) -> SilenceRecord {
    SilenceRecord {
        id: silence.id,
        matchers: silence.matchers.clone(),
        reason: silence.reason.clone(),
        created_at_ms: clock.wall_ms(silence.created_at),
        ends_at_ms: clock.wall_ms(silence.ends_at),
    }
}

/// Puts back the stored silences that have not ended, and marks the open incidents they
/// held (a hold whose silence ended while the monitor was down is released at once).
pub fn restore(
    alerter: &mut Alerter,
    (silences, max_silence_id): (&[SilenceRecord], u64),
    incidents: &[IncidentRecord],
    clock: &Clock,
) {
    alerter.reserve_silence_ids_through(max_silence_id);
    for silence in silences {
        alerter.restore_silence(Silence {
            id: silence.id,
            matchers: silence.matchers.clone(),
            reason: silence.reason.clone(),
            created_at: clock.instant_at_wall_ms(silence.created_at_ms),
            ends_at: clock.instant_at_wall_ms(silence.ends_at_ms),
        });
    }
    for incident in incidents {
        if let Some(silence) = incident.silenced_by {
            alerter.restore_held(incident.id, silence, incident.notified);
        }
    }
}

impl Owner {
    pub(super) fn answer_silence(&mut self, command: SilenceCommand) {
        let now = self.clock.now();
        match command {
            SilenceCommand::List { reply } => {
                let list =
                    self.alerter.silences().map(|silence| silence_json(silence, &self.clock)).collect();
                let _ = reply.send(list);
            }
            SilenceCommand::Add { matchers, reason, ends_at_ms, reply } => {
                let wall_now = self.clock.wall_ms(now);
                let span =
                    std::time::Duration::from_millis(ends_at_ms.saturating_sub(wall_now).max(0) as u64);
                let silence = self.alerter.add_silence(matchers, reason, now, now + span);
                tracing::info!(silence = silence.id, matchers = ?silence.matchers, "silence added");
                self.persist.write(vec![Write::Silence(record(&silence, &self.clock))]);
                let _ = reply.send(silence_json(&silence, &self.clock));
            }
            SilenceCommand::Remove { id, reply } => {
                let found = self.alerter.remove_silence(id);
                if found {
                    tracing::info!(silence = id, "silence removed");
                    self.persist.write(vec![Write::EndSilence { id, at_ms: self.clock.wall_ms(now) }]);
                }
                let _ = reply.send(found);
            }
        }
    }
}

//! Incident changes (the event stream's second kind of event) and silences.
//!
//! Transitions and incident changes share one sequence of ids: an incident change takes the
//! next id of the `transitions` table's AUTOINCREMENT counter, inside the transaction that
//! writes it. Ids are therefore unique across both tables and increase in commit order, so a
//! reader that remembers the last id it saw (an SSE client's `Last-Event-ID`) resumes
//! without missing or repeating an event of either kind.

use super::alerting::{INCIDENT_COLUMNS, IncidentRecord, RawIncident, incident_values};
use super::{Store, StoreError, Write};
use rusqlite::{OptionalExtension, ToSql, Transaction, params};

/// A change of an incident, as stored: the incident as it was just after the change (typed,
/// as in its own table), so a replay shows what was true then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentChangeRecord {
    /// Assigned by the store (ignored on write); shared sequence with transitions.
    pub id: i64,
    pub incident: IncidentRecord,
    /// `opened`, `notified`, `reminded`, `flapping`, `resolved`.
    pub change: String,
    pub at_ms: i64,
    /// Whether the change's notification was sent (false when a silence held it).
    pub sent: bool,
    /// The notification's one sentence.
    pub summary: String,
}

/// A silence: notifications of matching incidents are held until `ends_at_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SilenceRecord {
    pub id: u64,
    /// `key=value` matchers, all of which must match.
    pub matchers: Vec<(String, String)>,
    pub reason: String,
    pub created_at_ms: i64,
    pub ends_at_ms: i64,
}

pub(crate) fn write(tx: &Transaction<'_>, write: &Write) -> Result<(), StoreError> {
    match write {
        Write::IncidentChange(change) => {
            let id = next_event_id(tx)?;
            let i = &change.incident;
            let mut statement = tx.prepare_cached(&format!(
                "INSERT INTO incident_changes (id, change, at_ms, sent, summary, incident, {INCIDENT_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
            ))?;
            let incident = incident_values(i);
            let own: [&dyn ToSql; 5] = [&id, &change.change, &change.at_ms, &change.sent, &change.summary];
            let values = own.into_iter().chain(incident.iter().map(|value| value as &dyn ToSql));
            statement.execute(rusqlite::params_from_iter(values))?;
        }
        Write::Silence(silence) => {
            let matchers: Vec<String> = silence.matchers.iter().map(|(k, v)| format!("{k}={v}")).collect();
            tx.prepare_cached(
                "INSERT INTO silences (id, matchers, reason, created_at_ms, ends_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET matchers = ?2, reason = ?3, ends_at_ms = ?5",
            )?
            .execute(params![
                silence.id as i64,
                matchers.join("\n"),
                silence.reason,
                silence.created_at_ms,
                silence.ends_at_ms
            ])?;
        }
        Write::EndSilence { id, at_ms } => {
            tx.prepare_cached(
                "UPDATE silences SET ends_at_ms = min(ends_at_ms, ?2), deleted = 1 WHERE id = ?1",
            )?
            .execute(params![*id as i64, at_ms])?;
        }
        _ => unreachable!("written by Store::write or alerting::write"),
    }
    Ok(())
}

/// Takes the next id of the sequence transitions and incident changes share.
fn next_event_id(tx: &Transaction<'_>) -> Result<i64, StoreError> {
    // The counter row exists once a transition was ever inserted; before that, start it
    // from whatever incident changes already used.
    tx.prepare_cached(
        "INSERT INTO sqlite_sequence (name, seq)
         SELECT 'transitions', coalesce((SELECT max(id) FROM incident_changes), 0)
         WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'transitions')",
    )?
    .execute([])?;
    let id: i64 = tx
        .prepare_cached("UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'transitions' RETURNING seq")?
        .query_row([], |row| row.get(0))?;
    Ok(id)
}

impl Store {
    /// Incident changes with an id above `after`, oldest first, at most `limit`.
    pub fn incident_changes(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<IncidentChangeRecord>, StoreError> {
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT id, change, at_ms, sent, summary, incident, {INCIDENT_COLUMNS}
             FROM incident_changes WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))?;
        let rows = statement.query_map(params![after, limit as i64], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, RawIncident::read(row, 5)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, change, at_ms, sent, summary, incident) = row?;
            out.push(IncidentChangeRecord { id, incident: incident.parse()?, change, at_ms, sent, summary });
        }
        Ok(out)
    }

    /// The latest id of the event sequence (transitions and incident changes; 0 if none).
    pub fn max_event_id(&self) -> Result<i64, StoreError> {
        let id: Option<i64> = self
            .connection
            .query_row("SELECT seq FROM sqlite_sequence WHERE name = 'transitions'", [], |row| row.get(0))
            .optional()?;
        let changes: Option<i64> =
            self.connection.query_row("SELECT max(id) FROM incident_changes", [], |row| row.get(0))?;
        Ok(id.unwrap_or(0).max(changes.unwrap_or(0)))
    }

    /// Silences not deleted that end after `now_ms`, oldest first.
    pub fn active_silences(&self, now_ms: i64) -> Result<Vec<SilenceRecord>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT id, matchers, reason, created_at_ms, ends_at_ms FROM silences
             WHERE deleted = 0 AND ends_at_ms > ?1 ORDER BY id",
        )?;
        let rows = statement.query_map([now_ms], |row| {
            let matchers: String = row.get(1)?;
            Ok(SilenceRecord {
                id: row.get::<_, i64>(0)? as u64,
                matchers: matchers
                    .split('\n')
                    .filter_map(|m| m.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                reason: row.get(2)?,
                created_at_ms: row.get(3)?,
                ends_at_ms: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The largest silence id ever stored (0 if none), so new ids never collide.
    pub fn max_silence_id(&self) -> Result<u64, StoreError> {
        let id: Option<i64> =
            self.connection.query_row("SELECT max(id) FROM silences", [], |row| row.get(0))?;
        Ok(id.unwrap_or(0) as u64)
    }
}

#[cfg(test)]
mod tests;

//! Incidents, the alert outbox, checks and pings: the rows of the alerting layers.

use super::{Store, StoreError, Write};
use rollcall_core::alerts::{NotificationKind, Severity, SubjectKind};
use rollcall_core::monitor::NodeState;
use rusqlite::types::Value;
use rusqlite::{Row, Transaction, params};

/// An incident as stored, in the core's words (like a transition). `members` is kept as
/// newline-separated ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentRecord {
    pub id: u64,
    /// The kind of the notification that opened it (`Firing` or `Flapping`): an update
    /// keeps the stored one.
    pub kind: NotificationKind,
    pub severity: Severity,
    pub subject_kind: SubjectKind,
    pub subject: String,
    pub members: Vec<String>,
    pub started_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
    pub next_sequence: u32,
    pub last_notified_at_ms: i64,
    /// The silence holding the incident's latest notification, if one is.
    pub silenced_by: Option<u64>,
    /// Whether any notification of the incident was sent (a resolution follows only then).
    pub notified: bool,
}

/// The columns an incident is read from by [`RawIncident::read`], after its id.
pub(crate) const INCIDENT_COLUMNS: &str = "kind, severity, subject_kind, subject, members, started_at_ms,
    resolved_at_ms, next_sequence, last_notified_at_ms, silenced_by, notified";

/// An incident's columns as read, before its words are parsed (a closure of rusqlite's
/// cannot return a [`StoreError`]).
pub(crate) struct RawIncident {
    id: i64,
    kind: String,
    severity: String,
    subject_kind: String,
    subject: String,
    members: String,
    started_at_ms: i64,
    resolved_at_ms: Option<i64>,
    next_sequence: u32,
    last_notified_at_ms: i64,
    silenced_by: Option<i64>,
    notified: bool,
}

impl RawIncident {
    /// Reads the id at `at`, then [`INCIDENT_COLUMNS`].
    pub(crate) fn read(row: &Row<'_>, at: usize) -> rusqlite::Result<RawIncident> {
        Ok(RawIncident {
            id: row.get(at)?,
            kind: row.get(at + 1)?,
            severity: row.get(at + 2)?,
            subject_kind: row.get(at + 3)?,
            subject: row.get(at + 4)?,
            members: row.get(at + 5)?,
            started_at_ms: row.get(at + 6)?,
            resolved_at_ms: row.get(at + 7)?,
            next_sequence: row.get(at + 8)?,
            last_notified_at_ms: row.get(at + 9)?,
            silenced_by: row.get(at + 10)?,
            notified: row.get(at + 11)?,
        })
    }

    /// The record, or which stored word this version does not know (a hand-edited row).
    pub(crate) fn parse(self) -> Result<IncidentRecord, StoreError> {
        let id = self.id;
        let bad = |what: &str, value: &str| {
            StoreError::BadRow(format!("incident {id} has unknown {what} {value:?}"))
        };
        Ok(IncidentRecord {
            id: id as u64,
            kind: NotificationKind::parse(&self.kind).ok_or_else(|| bad("kind", &self.kind))?,
            severity: Severity::parse(&self.severity).ok_or_else(|| bad("severity", &self.severity))?,
            subject_kind: SubjectKind::parse(&self.subject_kind)
                .ok_or_else(|| bad("subject kind", &self.subject_kind))?,
            subject: self.subject,
            members: self.members.split('\n').filter(|m| !m.is_empty()).map(str::to_string).collect(),
            started_at_ms: self.started_at_ms,
            resolved_at_ms: self.resolved_at_ms,
            next_sequence: self.next_sequence,
            last_notified_at_ms: self.last_notified_at_ms,
            silenced_by: self.silenced_by.map(|id| id as u64),
            notified: self.notified,
        })
    }
}

/// An alert to queue for one sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    pub sink: String,
    pub idempotency_key: String,
    pub incident: u64,
    /// The node, check or group the alert is about (for queries; order is by `id`).
    pub subject: String,
    /// The alert document, JSON.
    pub payload: String,
    pub created_at_ms: i64,
}

/// A queued alert as read back, with its delivery state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub entry: OutboxEntry,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub delivered_at_ms: Option<i64>,
}

/// A check: its specification is stored as JSON written by the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRecord {
    pub id: String,
    pub token: String,
    pub spec_json: String,
    /// `config` (defined in the config file) or `api`.
    pub source: String,
    pub state: NodeState,
    pub last_ping_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingRecord {
    pub check_id: String,
    pub signal: String,
    pub rid: Option<String>,
    pub duration_ms: Option<i64>,
    pub body: Vec<u8>,
    /// The length of the whole body as received (`body` holds at most `pings.body_limit`).
    pub body_len: u64,
    pub body_truncated: bool,
    pub at_ms: i64,
}

/// Keeps a check's newest `keep` pings. The bound is found among the check's own rows (its
/// index is `(check_id, id)`): ping ids are shared by every check, so a bound computed from
/// the global id would let checks pinged in turn evict each other's history.
pub(crate) fn prune_pings(tx: &Transaction<'_>, check_id: &str, keep: u32) -> Result<(), StoreError> {
    if keep == 0 {
        tx.prepare_cached("DELETE FROM pings WHERE check_id = ?1")?.execute(params![check_id])?;
        return Ok(());
    }
    // The subquery is NULL while the check has `keep` rows or fewer: nothing is deleted.
    tx.prepare_cached(
        "DELETE FROM pings WHERE check_id = ?1 AND id < (
           SELECT id FROM pings WHERE check_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )?
    .execute(params![check_id, i64::from(keep) - 1])?;
    Ok(())
}

/// Inserts a ping without pruning its check's history, and returns its id; the caller
/// prunes once per check per transaction, which leaves the same rows as pruning after each.
pub(crate) fn insert_ping(tx: &Transaction<'_>, p: &PingRecord) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO pings (check_id, signal, rid, duration_ms, body, body_truncated, at_ms, body_len)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        p.check_id,
        p.signal,
        p.rid,
        p.duration_ms,
        p.body,
        p.body_truncated,
        p.at_ms,
        p.body_len as i64
    ])?;
    Ok(tx.last_insert_rowid())
}

/// An incident's id and [`INCIDENT_COLUMNS`], as both tables bind them (`incidents`, and
/// `incident_changes` after its own columns); the read side is [`RawIncident::read`].
pub(crate) fn incident_values(i: &IncidentRecord) -> [Value; 12] {
    [
        Value::Integer(i.id as i64),
        Value::Text(i.kind.as_str().into()),
        Value::Text(i.severity.as_str().into()),
        Value::Text(i.subject_kind.as_str().into()),
        Value::Text(i.subject.clone()),
        Value::Text(i.members.join("\n")),
        Value::Integer(i.started_at_ms),
        i.resolved_at_ms.map_or(Value::Null, Value::Integer),
        Value::Integer(i64::from(i.next_sequence)),
        Value::Integer(i.last_notified_at_ms),
        i.silenced_by.map_or(Value::Null, |id| Value::Integer(id as i64)),
        Value::Integer(i64::from(i.notified)),
    ]
}

pub(crate) fn write(tx: &Transaction<'_>, write: &Write) -> Result<(), StoreError> {
    match write {
        Write::Incident(i) => {
            tx.prepare_cached(
                "INSERT INTO incidents (id, kind, severity, subject_kind, subject, members, started_at_ms,
                   resolved_at_ms, next_sequence, last_notified_at_ms, silenced_by, notified)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (id) DO UPDATE SET members = ?6, resolved_at_ms = ?8, next_sequence = ?9,
                   last_notified_at_ms = ?10, silenced_by = ?11, notified = max(notified, ?12)",
            )?
            .execute(rusqlite::params_from_iter(incident_values(i)))?;
        }
        Write::Outbox(o) => {
            tx.prepare_cached(
                "INSERT INTO outbox (sink, idempotency_key, incident, subject, payload, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (sink, idempotency_key) DO NOTHING",
            )?
            .execute(params![
                o.sink,
                o.idempotency_key,
                o.incident as i64,
                o.subject,
                o.payload,
                o.created_at_ms
            ])?;
        }
        Write::Delivery { outbox_id, at_ms, error } => {
            tx.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_attempt_at_ms = ?2, last_error = ?3,
                   delivered_at_ms = CASE WHEN ?3 IS NULL THEN ?2 ELSE NULL END
                 WHERE id = ?1 AND delivered_at_ms IS NULL",
            )?
            .execute(params![outbox_id, at_ms, error])?;
        }
        Write::Check(c) => {
            tx.prepare_cached(
                "INSERT INTO checks (id, token, spec, source, state, last_ping_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET token = ?2, spec = ?3, source = ?4, state = ?5,
                   last_ping_at_ms = ?6, updated_at_ms = ?7",
            )?
            .execute(params![
                c.id,
                c.token,
                c.spec_json,
                c.source,
                c.state.as_str(),
                c.last_ping_at_ms,
                c.updated_at_ms
            ])?;
        }
        Write::DeleteCheck { id } => {
            tx.prepare_cached("DELETE FROM checks WHERE id = ?1")?.execute([id])?;
            tx.prepare_cached("DELETE FROM pings WHERE check_id = ?1")?.execute([id])?;
        }
        Write::Ping { record: p, keep } => {
            insert_ping(tx, p)?;
            prune_pings(tx, &p.check_id, *keep)?;
        }
        Write::ForgetNode { id } => {
            tx.prepare_cached("DELETE FROM nodes WHERE id = ?1")?.execute([id])?;
        }
        _ => unreachable!("written by Store::write or silences::write"),
    }
    Ok(())
}

impl Store {
    /// Incidents not yet resolved, oldest first.
    pub fn open_incidents(&self) -> Result<Vec<IncidentRecord>, StoreError> {
        self.incidents("WHERE resolved_at_ms IS NULL ORDER BY id", [])
    }

    /// The most recent incidents (open or not), newest first.
    pub fn recent_incidents(&self, limit: usize) -> Result<Vec<IncidentRecord>, StoreError> {
        self.incidents("ORDER BY id DESC LIMIT ?1", [limit as i64])
    }

    /// The most recent open incidents, newest first, at most `limit`.
    pub fn recent_open_incidents(&self, limit: usize) -> Result<Vec<IncidentRecord>, StoreError> {
        self.incidents("WHERE resolved_at_ms IS NULL ORDER BY id DESC LIMIT ?1", [limit as i64])
    }

    /// The largest incident id ever stored (0 if none), so new ids never collide.
    pub fn max_incident_id(&self) -> Result<u64, StoreError> {
        let id: Option<i64> =
            self.connection.query_row("SELECT max(id) FROM incidents", [], |row| row.get(0))?;
        Ok(id.unwrap_or(0) as u64)
    }

    /// The largest incident id below `limit` (a cluster's incidents are numbered from a
    /// base far above a single monitor's own).
    pub fn max_incident_id_below(&self, limit: u64) -> Result<u64, StoreError> {
        let id: Option<i64> = self.connection.query_row(
            "SELECT max(id) FROM incidents WHERE id < ?1",
            [limit.min(i64::MAX as u64) as i64],
            |row| row.get(0),
        )?;
        Ok(id.unwrap_or(0) as u64)
    }

    fn incidents<P: rusqlite::Params>(
        &self,
        tail: &str,
        params: P,
    ) -> Result<Vec<IncidentRecord>, StoreError> {
        let sql = format!("SELECT id, {INCIDENT_COLUMNS} FROM incidents {tail}");
        let mut statement = self.connection.prepare_cached(&sql)?;
        let rows = statement.query_map(params, |row| RawIncident::read(row, 0))?;
        rows.map(|row| row?.parse()).collect()
    }

    /// The oldest undelivered alert of `sink` with an id above `after`.
    pub fn next_undelivered(&self, sink: &str, after: i64) -> Result<Option<OutboxRow>, StoreError> {
        Ok(self
            .outbox(
                "WHERE sink = ?1 AND delivered_at_ms IS NULL AND id > ?2 ORDER BY id LIMIT 1",
                params![sink, after],
            )?
            .pop())
    }

    /// Payloads delivered to `sink` for incidents still open, oldest first (a sink that must
    /// re-send firing alerts rebuilds its set from these after a restart).
    pub fn delivered_for_open_incidents(&self, sink: &str) -> Result<Vec<String>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT o.payload FROM outbox o JOIN incidents i ON o.incident = i.id
             WHERE o.sink = ?1 AND i.resolved_at_ms IS NULL AND o.delivered_at_ms IS NOT NULL ORDER BY o.id",
        )?;
        let rows = statement.query_map([sink], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Alerts of `sink` (or every sink), oldest first, at most `limit`, with an id above `after`.
    pub fn outbox_rows(
        &self,
        sink: Option<&str>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.outbox(
            "WHERE (?1 IS NULL OR sink = ?1) AND id > ?2 ORDER BY id LIMIT ?3",
            params![sink, after, limit as i64],
        )
    }

    /// Undelivered alerts per sink.
    pub fn outbox_depth(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT sink, count(*) FROM outbox WHERE delivered_at_ms IS NULL GROUP BY sink ORDER BY sink",
        )?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn outbox<P: rusqlite::Params>(&self, tail: &str, params: P) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = format!(
            "SELECT id, sink, idempotency_key, incident, subject, payload, created_at_ms, attempts, last_error,
               delivered_at_ms FROM outbox {tail}"
        );
        let mut statement = self.connection.prepare_cached(&sql)?;
        let rows = statement.query_map(params, |row| {
            Ok(OutboxRow {
                id: row.get(0)?,
                entry: OutboxEntry {
                    sink: row.get(1)?,
                    idempotency_key: row.get(2)?,
                    incident: row.get::<_, i64>(3)? as u64,
                    subject: row.get(4)?,
                    payload: row.get(5)?,
                    created_at_ms: row.get(6)?,
                },
                attempts: row.get(7)?,
                last_error: row.get(8)?,
                delivered_at_ms: row.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every stored check.
    pub fn checks(&self) -> Result<Vec<CheckRecord>, StoreError> {
        self.check_rows("ORDER BY id", [])
    }

    /// The stored check with this id, if any.
    pub fn check(&self, id: &str) -> Result<Option<CheckRecord>, StoreError> {
        Ok(self.check_rows("WHERE id = ?1", [id])?.pop())
    }

    fn check_rows<P: rusqlite::Params>(&self, tail: &str, params: P) -> Result<Vec<CheckRecord>, StoreError> {
        let sql = format!(
            "SELECT id, token, spec, source, state, last_ping_at_ms, updated_at_ms FROM checks {tail}"
        );
        let mut statement = self.connection.prepare_cached(&sql)?;
        let rows = statement.query_map(params, |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get::<_, String>(4)?,
                row.get(5)?,
                row.get(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, token, spec_json, source, state, last_ping_at_ms, updated_at_ms): (
                String,
                _,
                _,
                _,
                _,
                _,
                _,
            ) = row?;
            let state = NodeState::parse(&state)
                .ok_or_else(|| StoreError::BadRow(format!("check {id:?} has unknown state {state:?}")))?;
            out.push(CheckRecord { id, token, spec_json, source, state, last_ping_at_ms, updated_at_ms });
        }
        Ok(out)
    }

    /// The newest pings of a check, newest first.
    pub fn pings(&self, check_id: &str, limit: usize) -> Result<Vec<PingRecord>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT check_id, signal, rid, duration_ms, body, body_truncated, at_ms, body_len FROM pings
             WHERE check_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = statement.query_map(params![check_id, limit as i64], |row| {
            Ok(PingRecord {
                check_id: row.get(0)?,
                signal: row.get(1)?,
                rid: row.get(2)?,
                duration_ms: row.get(3)?,
                body: row.get(4)?,
                body_truncated: row.get(5)?,
                at_ms: row.get(6)?,
                body_len: row.get::<_, i64>(7)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

//! Durable state for rollcall: the nodes the monitor knows and the history of their
//! transitions, in one SQLite file (WAL mode) under the data directory.
//!
//! The core never calls this crate: it emits events, and the daemon writes them here in
//! batches (one transaction, one fsync, per batch) before acting on them. Heartbeats are not
//! stored: a million a second must not become a million writes. This crate deliberately
//! knows nothing of sockets, HTTP or alerting.
//!
//! Start with [`Store::open`], then [`Store::write`] and the readers. The tables are
//! documented in `docs/STORE.md`; the schema evolves through [`MIGRATIONS`].

mod alerting;
mod leases;
mod lock;
mod schema;
mod silences;

pub use alerting::{CheckRecord, IncidentRecord, OutboxEntry, OutboxRow, PingRecord};
pub use leases::LeaseRecord;
pub use lock::{DirLock, LOCK_FILE_NAME};
pub use silences::{IncidentChangeRecord, SilenceRecord};

use rollcall_core::alerts::SubjectKind;
use rollcall_core::monitor::{NodeState, Reason, RestoredNode};
use rollcall_core::wire::ExitStatus;
use rusqlite::{Connection, OpenFlags, params};
use std::path::{Path, PathBuf};

/// Marks a SQLite file as rollcall's (`PRAGMA application_id`), so the monitor never mistakes
/// a foreign database for its own, or writes into one.
pub const APPLICATION_ID: i32 = 0x5243_4C4C; // "RCLL"

/// Stores up to this size get SQLite's full `integrity_check` at start; larger ones the
/// faster `quick_check` (a million nodes' store takes a few hundred megabytes).
pub const FULL_CHECK_BYTES: u64 = 64 * 1024 * 1024;

/// The file name under the data directory.
pub const FILE_NAME: &str = "rollcall.db";

pub use schema::MIGRATIONS;

/// What went wrong with the store. Every variant leaves the file as it was, except that a
/// failed `write` rolls its batch back whole.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists but is not a rollcall store (another program's database).
    #[error("{path} is not a rollcall store (application_id {found:#x}); refusing to touch it")]
    Foreign { path: PathBuf, found: i32 },
    /// The file was written by a newer rollcall.
    #[error("{path} has schema version {found}, newer than this rollcall knows ({known}); upgrade rollcall")]
    TooNew { path: PathBuf, found: i64, known: usize },
    /// A stored value this version cannot read (hand-edited or corrupt row).
    #[error("stored row is unreadable: {0}")]
    BadRow(String),
    /// SQLite refused (I/O error, full disk, corrupt file). Not a `#[source]`: its text is
    /// already in this one's, and a chain would print it twice.
    #[error("SQLite: {0}")]
    Sqlite(rusqlite::Error),
    /// Another process holds the data directory (the caller's fault: stop it, or use
    /// another directory). Nothing was opened.
    #[error("data dir {} is in use by {} (it holds {}); stop that process or choose another data dir", .dir.display(), holder_text(*.holder), LOCK_FILE_NAME)]
    Locked { dir: PathBuf, holder: Option<u32> },
    /// The store file fails SQLite's own check (a damaged disk, a partial copy, a stray
    /// write). Nothing was changed.
    #[error("{} is damaged ({detail}); restore it from a backup, or move it away to start a new, empty store", .path.display())]
    Corrupt { path: PathBuf, detail: String },
    /// The store file is empty while it should hold a store: refused rather than silently
    /// started anew, which would forget every node, check and open incident.
    #[error("{} is empty (0 bytes): the store was truncated or lost; restore it from a backup, or delete the file to start a new, empty store", .path.display())]
    Empty { path: PathBuf },
    /// The file system refused (permissions, a missing directory).
    #[error("{}: {error}", .path.display())]
    Io { path: PathBuf, error: std::io::Error },
}

fn holder_text(holder: Option<u32>) -> String {
    match holder {
        Some(pid) => format!("another rollcall process (pid {pid})"),
        None => "another rollcall process".to_string(),
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::Sqlite(error)
    }
}

/// A node's durable record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    pub id: String,
    pub generation: u64,
    pub sequence: u64,
    pub interval_ms: u32,
    pub state: NodeState,
    pub labels_raw: Vec<u8>,
}

/// A transition as stored, with wall-clock times in milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitionRecord {
    /// Assigned by the store; increasing.
    pub id: i64,
    /// Whose transition: a node's or a check's.
    pub kind: SubjectKind,
    /// The node's (or check's) id.
    pub node: String,
    pub generation: u64,
    pub from: NodeState,
    pub to: NodeState,
    pub reason: Reason,
    pub at_ms: i64,
    pub noticed_at_ms: i64,
    /// The exit status of a `down (process-exited)`: `Some` for every such transition (both
    /// fields `None` when the agent could not tell, or the row predates schema 7), `None` for
    /// any other.
    pub exit: Option<ExitStatus>,
}

/// One change to make durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Node {
        record: NodeRecord,
        updated_at_ms: i64,
    },
    Transition(TransitionRecord),
    /// Insert or update an incident (by id).
    Incident(IncidentRecord),
    /// Queue an alert for a sink. A second entry with the same (sink, key) is ignored, so
    /// replaying a batch after a crash queues nothing twice.
    Outbox(OutboxEntry),
    /// The outcome of one delivery attempt: `error` is `None` when the sink acknowledged.
    Delivery {
        outbox_id: i64,
        at_ms: i64,
        error: Option<String>,
    },
    /// Insert or update a check (by id).
    Check(CheckRecord),
    DeleteCheck {
        id: String,
    },
    /// Record a ping, keeping only the newest `keep` of its check.
    Ping {
        record: PingRecord,
        keep: u32,
    },
    /// Remove a node's record (its transitions stay in the history).
    ForgetNode {
        id: String,
    },
    /// Append a change of an incident to the event sequence (shared with transitions).
    IncidentChange(IncidentChangeRecord),
    /// Insert or update a silence (by id).
    Silence(SilenceRecord),
    /// End a silence now (deleted through the API).
    EndSilence {
        id: u64,
        at_ms: i64,
    },
    /// Insert or replace a lease (by name), and raise the token counter to its token.
    Lease(LeaseRecord),
    /// Delete a lease, if its row is still this tenure's (`token`).
    EndLease {
        name: String,
        token: u64,
    },
}

/// The store: one SQLite connection. Open one for the writer and others for readers (WAL
/// lets readers run beside the writer).
pub struct Store {
    connection: Connection,
}

impl Store {
    /// Runs `read` inside one read transaction, so that its queries all see the same commit
    /// (WAL snapshot isolation). Two reads of a live store outside one can straddle a
    /// commit: the event stream, which reads transitions then incident changes, would skip
    /// the transitions of a commit that landed between its two queries.
    pub fn snapshot<T>(&self, read: impl FnOnce(&Store) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.connection.execute_batch("BEGIN DEFERRED")?;
        let result = read(self);
        // A read transaction has nothing to commit or lose; ending it releases the snapshot.
        let ended = self.connection.execute_batch("COMMIT");
        let value = result?;
        ended?;
        Ok(value)
    }

    /// Opens (creating if missing) the store in `data_dir`, checks it is rollcall's, and
    /// applies pending migrations.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(FILE_NAME);
        if std::fs::metadata(&path).is_ok_and(|meta| meta.len() == 0) {
            return Err(StoreError::Empty { path });
        }
        let connection = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let found: i32 = connection.pragma_query_value(None, "application_id", |row| row.get(0))?;
        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let tables: i64 = connection.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))?;
        if found != APPLICATION_ID && (found != 0 || tables != 0) {
            return Err(StoreError::Foreign { path, found });
        }
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew { path, found: version, known: MIGRATIONS.len() });
        }
        connection.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a transaction is on disk when its commit returns, so a kill -9 (or a power
        // loss) right after never loses a transition the daemon went on to act on.
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        // Without the query planner stability guarantee, SQLite marks a statement whose plan
        // could use a bound value (`LIMIT ?`, a column compared with `?`) to be compiled again
        // whenever that parameter is rebound or cleared, and rusqlite clears the bindings of
        // every statement it returns to its cache: each `prepare_cached` statement would be
        // parsed and planned again on every use (8 % of the monitor's CPU under pings, in the
        // store thread and the event stream's reads). The plans do not depend on values here:
        // the store never runs ANALYZE, and its queries follow their indexes.
        connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        let mut store = Store { connection };
        store.migrate(version as usize)?;
        Ok(store)
    }

    /// Runs SQLite's own consistency check over the whole file: `integrity_check` for a
    /// store up to [`FULL_CHECK_BYTES`], the faster `quick_check` (page structure, no index
    /// against table comparison) above. The monitor calls it once at start, before trusting
    /// the store: a damaged page found later would stop every commit with the alerts in it.
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let path = self.connection.path().map(PathBuf::from).unwrap_or_default();
        let bytes = std::fs::metadata(&path).map(|meta| meta.len()).unwrap_or(0);
        let pragma = if bytes <= FULL_CHECK_BYTES { "integrity_check" } else { "quick_check" };
        let mut statement = self.connection.prepare(&format!("PRAGMA {pragma}(5)"))?;
        let problems: Vec<String> =
            statement.query_map([], |row| row.get::<_, String>(0))?.collect::<Result<_, _>>()?;
        match problems.as_slice() {
            [only] if only == "ok" => Ok(()),
            _ => {
                // One line for the refusal: the first few problems SQLite names.
                let lines = problems.iter().flat_map(|problem| problem.lines());
                let named: Vec<&str> = lines.filter(|line| !line.starts_with("***")).take(3).collect();
                Err(StoreError::Corrupt { path, detail: named.join("; ") })
            }
        }
    }

    fn migrate(&mut self, applied: usize) -> Result<(), StoreError> {
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = self.connection.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Makes a batch durable in one transaction (one fsync): all of it or none of it.
    /// Returns the ids given to the transitions, in order.
    pub fn write(&mut self, batch: &[Write]) -> Result<Vec<i64>, StoreError> {
        let tx = self.connection.transaction()?;
        let mut ids = Vec::new();
        // Each check's history is pruned once, after its last ping of the batch: the same
        // rows remain as when pruning after each ping (the bound only moves up), for one
        // delete per check instead of one per ping.
        let mut prunes: std::collections::BTreeMap<&str, u32> = std::collections::BTreeMap::new();
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO nodes (id, generation, sequence, interval_ms, state, labels, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET generation = ?2, sequence = max(sequence * (generation = ?2), ?3),
                   interval_ms = ?4, state = ?5, labels = ?6, updated_at_ms = ?7",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO transitions (node, generation, from_state, to_state, reason, at_ms, noticed_at_ms,
                   subject_kind, exit_code, exit_signal) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for write in batch {
                match write {
                    Write::Node { record, updated_at_ms } => {
                        upsert.execute(params![
                            record.id,
                            record.generation as i64,
                            record.sequence as i64,
                            record.interval_ms,
                            record.state.as_str(),
                            record.labels_raw,
                            updated_at_ms,
                        ])?;
                    }
                    Write::Ping { record, keep } => {
                        alerting::insert_ping(&tx, record)?;
                        prunes.insert(&record.check_id, *keep);
                    }
                    Write::Incident(_)
                    | Write::Outbox(_)
                    | Write::Delivery { .. }
                    | Write::Check(_)
                    | Write::DeleteCheck { .. }
                    | Write::ForgetNode { .. } => alerting::write(&tx, write)?,
                    Write::IncidentChange(_) | Write::Silence(_) | Write::EndSilence { .. } => {
                        silences::write(&tx, write)?
                    }
                    Write::Lease(_) | Write::EndLease { .. } => leases::write(&tx, write)?,
                    Write::Transition(t) => {
                        insert.execute(params![
                            t.node,
                            t.generation as i64,
                            t.from.as_str(),
                            t.to.as_str(),
                            t.reason.as_str(),
                            t.at_ms,
                            t.noticed_at_ms,
                            t.kind.as_str(),
                            t.exit.and_then(|exit| exit.code),
                            t.exit.and_then(|exit| exit.signal),
                        ])?;
                        ids.push(tx.last_insert_rowid());
                    }
                }
            }
            for (check, keep) in prunes {
                alerting::prune_pings(&tx, check, keep)?;
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Every stored node, for the monitor to restore at start.
    pub fn nodes(&self) -> Result<Vec<RestoredNode>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT id, generation, sequence, interval_ms, state, labels FROM nodes ORDER BY id")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, u32>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, Vec<u8>>(5)?,
            ))
        })?;
        let mut nodes = Vec::new();
        for row in rows {
            let (id, generation, sequence, interval_ms, state, labels_raw) = row?;
            let state = NodeState::parse(&state)
                .ok_or_else(|| StoreError::BadRow(format!("node {id:?} has unknown state {state:?}")))?;
            nodes.push(RestoredNode {
                id,
                generation: generation as u64,
                sequence: sequence as u64,
                interval_ms,
                state,
                labels_raw,
            });
        }
        Ok(nodes)
    }

    /// Transitions with an id above `after`, oldest first, at most `limit`; optionally of one
    /// kind of subject, and of one node (or check) only.
    pub fn transitions(
        &self,
        after: i64,
        limit: usize,
        filter: TransitionFilter<'_>,
    ) -> Result<Vec<TransitionRecord>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT id, node, generation, from_state, to_state, reason, at_ms, noticed_at_ms, subject_kind,
               exit_code, exit_signal
             FROM transitions WHERE id > ?1 AND (?2 IS NULL OR node = ?2) AND (?3 IS NULL OR subject_kind = ?3)
             ORDER BY id LIMIT ?4",
        )?;
        let kind = filter.kind.map(SubjectKind::as_str);
        let rows = statement.query_map(params![after, filter.id, kind, limit as i64], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                [row.get::<_, String>(3)?, row.get::<_, String>(4)?, row.get::<_, String>(5)?, row.get(8)?],
                row.get::<_, i64>(6)?,
                row.get::<_, i64>(7)?,
                ExitStatus { code: row.get(9)?, signal: row.get(10)? },
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, node, generation, [from, to, reason, kind], at_ms, noticed_at_ms, exit) = row?;
            let bad = |what: &str, value: &str| {
                StoreError::BadRow(format!("transition {id} has unknown {what} {value:?}"))
            };
            let reason = Reason::parse(&reason).ok_or_else(|| bad("reason", &reason))?;
            out.push(TransitionRecord {
                id,
                kind: SubjectKind::parse(&kind).ok_or_else(|| bad("kind", &kind))?,
                generation: generation as u64,
                from: NodeState::parse(&from).ok_or_else(|| bad("state", &from))?,
                to: NodeState::parse(&to).ok_or_else(|| bad("state", &to))?,
                reason,
                node,
                at_ms,
                noticed_at_ms,
                // Only an exit report's transition has a status, even an unknown one.
                exit: (reason == Reason::ProcessExited).then_some(exit),
            });
        }
        Ok(out)
    }
}

impl Store {
    /// The id of the latest transition (0 when there is none).
    pub fn max_transition_id(&self) -> Result<i64, StoreError> {
        let id: Option<i64> =
            self.connection.query_row("SELECT max(id) FROM transitions", [], |row| row.get(0))?;
        Ok(id.unwrap_or(0))
    }

    /// The latest `limit` transitions of one node (or check), newest first.
    pub fn recent_transitions(
        &self,
        kind: SubjectKind,
        id: &str,
        limit: usize,
    ) -> Result<Vec<TransitionRecord>, StoreError> {
        let ids: Vec<i64> = {
            let mut statement = self.connection.prepare_cached(
                "SELECT id FROM transitions WHERE node = ?1 AND subject_kind = ?2 ORDER BY id DESC LIMIT ?3",
            )?;
            let rows = statement.query_map(params![id, kind.as_str(), limit as i64], |row| row.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let Some(&oldest) = ids.last() else { return Ok(Vec::new()) };
        let filter = TransitionFilter { kind: Some(kind), id: Some(id) };
        let mut rows = self.transitions(oldest - 1, ids.len(), filter)?;
        rows.reverse();
        Ok(rows)
    }

    /// The raw label block of a stored node, if the node is known.
    pub fn node_labels(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut statement = self.connection.prepare_cached("SELECT labels FROM nodes WHERE id = ?1")?;
        let mut rows = statement.query([id])?;
        Ok(match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    }
}

/// Which transitions [`Store::transitions`] returns.
#[derive(Clone, Copy, Debug, Default)]
pub struct TransitionFilter<'a> {
    pub kind: Option<SubjectKind>,
    pub id: Option<&'a str>,
}

#[cfg(test)]
mod tests;

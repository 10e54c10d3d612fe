//! Transitions, paged (`GET /v1/events`); transitions and incident changes, live
//! (`GET /v1/events/stream`, Server-Sent Events: `event: transition` and `event: incident`).
//!
//! The stream reads the store, not a broadcast channel: each client keeps its own cursor
//! (the last event id it was sent), so a slow client only falls behind on its own and never
//! holds up detection or other clients. Transitions and incident changes take their ids
//! from one sequence in the store, written in the transaction that makes them durable, so a
//! client that reconnects with `Last-Event-ID` gets exactly what it missed, of both kinds.

use super::{ApiError, ApiQuery, AppState};
use crate::alerts::model::IncidentJson;
use crate::clock::rfc3339_ms;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use rollcall_core::alerts::SubjectKind;
use rollcall_core::wire::Labels;
use rollcall_store::{IncidentChangeRecord, TransitionFilter, TransitionRecord};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;

/// Most events one `/v1/events` page (or one read of the stream) returns.
const MAX_EVENTS_PAGE: usize = 1000;

#[derive(Deserialize)]
// An unknown filter is refused (400 naming it), not ignored: a typo must not list everything.
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events with an id above this one (for paging and polling). The stream starts
    /// from here when given (and no `Last-Event-ID`), else from now.
    since: Option<i64>,
    limit: Option<usize>,
    node: Option<String>,
    /// `node` or `check`: only transitions of that kind of subject.
    kind: Option<String>,
    /// Stream only: only nodes whose `group` label is this (for load balancers).
    group: Option<String>,
}

#[derive(Serialize)]
pub struct EventJson {
    id: i64,
    /// `node` or `check`.
    kind: &'static str,
    node: String,
    generation: u64,
    from: &'static str,
    to: &'static str,
    reason: &'static str,
    /// When it should have happened (the computed deadline), RFC 3339.
    at: String,
    /// When the monitor noticed it, RFC 3339.
    noticed_at: String,
    /// For `process-exited`: the watched process's exit code, when it exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    /// For `process-exited`: the signal that killed it, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_signal: Option<i32>,
}

impl From<TransitionRecord> for EventJson {
    fn from(row: TransitionRecord) -> EventJson {
        EventJson {
            id: row.id,
            kind: row.kind.as_str(),
            node: row.node,
            generation: row.generation,
            from: row.from.as_str(),
            to: row.to.as_str(),
            reason: row.reason.as_str(),
            at: rfc3339_ms(row.at_ms),
            noticed_at: rfc3339_ms(row.noticed_at_ms),
            exit_code: row.exit.and_then(|exit| exit.code),
            exit_signal: row.exit.and_then(|exit| exit.signal),
        }
    }
}

fn parse_kind(kind: Option<&str>) -> Result<Option<SubjectKind>, ApiError> {
    match kind {
        None => Ok(None),
        Some("node") => Ok(Some(SubjectKind::Node)),
        Some("check") => Ok(Some(SubjectKind::Check)),
        Some(other) => Err(ApiError::bad_request(format!("field `kind`: {other:?} is not node or check"))),
    }
}

pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Json<Vec<EventJson>>, ApiError> {
    let limit = query.limit.unwrap_or(MAX_EVENTS_PAGE).min(MAX_EVENTS_PAGE);
    let kind = parse_kind(query.kind.as_deref())?;
    let rows = state
        .read(move |store| {
            store.transitions(
                query.since.unwrap_or(0),
                limit,
                TransitionFilter { kind, id: query.node.as_deref() },
            )
        })
        .await?;
    Ok(Json(rows.into_iter().map(EventJson::from).collect()))
}

/// An incident change as the stream sends it (`event: incident`).
#[derive(Serialize)]
pub struct IncidentChangeJson {
    /// The event id (shared sequence with transitions).
    id: i64,
    /// `opened`, `notified` (sent after a silence ended), `reminded`, `flapping`, `resolved`.
    change: String,
    /// RFC 3339: when the change was made.
    at: String,
    /// The incident as it was after the change.
    incident: serde_json::Value,
    /// Whether a notification was sent for it (false when a silence held it).
    sent: bool,
    summary: String,
}

impl From<IncidentChangeRecord> for IncidentChangeJson {
    fn from(row: IncidentChangeRecord) -> IncidentChangeJson {
        // Through a `Value`, as when the change was stored as JSON: the fields keep the
        // order the stream has always sent them in.
        let incident = serde_json::to_value(IncidentJson::from(&row.incident))
            .expect("an incident serialises: plain data with string map keys");
        IncidentChangeJson {
            id: row.id,
            change: row.change,
            at: rfc3339_ms(row.at_ms),
            incident,
            sent: row.sent,
            summary: row.summary,
        }
    }
}

/// One event of the stream.
enum Row {
    Transition(TransitionRecord),
    Incident(IncidentChangeRecord),
}

impl Row {
    fn id(&self) -> i64 {
        match self {
            Row::Transition(row) => row.id,
            Row::Incident(row) => row.id,
        }
    }
}

/// A client's place in the stream.
struct Cursor {
    state: AppState,
    after: i64,
    kind: Option<SubjectKind>,
    node: Option<String>,
    group: Option<String>,
    /// Read but not yet sent.
    pending: VecDeque<Row>,
    /// Group label of each node seen, so the filter reads each node's labels once.
    groups: BTreeMap<String, Option<String>>,
}

pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let kind = parse_kind(query.kind.as_deref())?;
    let resume = headers.get("last-event-id").and_then(|value| value.to_str().ok());
    let after = match resume {
        Some(id) => id
            .trim()
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("Last-Event-ID {id:?} is not an event id")))?,
        // Without a place to resume from, `since` says where to start (default: now).
        None => match query.since {
            Some(since) => since,
            None => state.read(|store| store.max_event_id()).await?,
        },
    };
    let keep_alive = KeepAlive::new().interval(state.stream_keep_alive);
    let cursor = Cursor {
        state,
        after,
        kind,
        node: query.node,
        group: query.group,
        pending: VecDeque::new(),
        groups: BTreeMap::new(),
    };
    let events = futures_util::stream::unfold(cursor, |mut cursor| async move {
        let event = cursor.next().await?;
        Some((Ok(event), cursor))
    });
    Ok(Sse::new(events).keep_alive(keep_alive))
}

impl Cursor {
    /// The next event for this client, waiting for new commits when it has seen them all.
    /// `None` ends the stream (the monitor is stopping, or the store failed).
    async fn next(&mut self) -> Option<Event> {
        loop {
            while let Some(row) = self.pending.pop_front() {
                self.after = row.id();
                if !self.wanted(&row).await {
                    continue;
                }
                let id = row.id().to_string();
                let (name, data) = match row {
                    Row::Transition(row) => ("transition", serde_json::to_string(&EventJson::from(row))),
                    Row::Incident(row) => ("incident", serde_json::to_string(&IncidentChangeJson::from(row))),
                };
                return Some(Event::default().id(id).event(name).data(data.expect("always serializes")));
            }
            let mut committed = self.state.committed.clone();
            committed.borrow_and_update();
            let (after, kind, node) = (self.after, self.kind, self.node.clone());
            let rows = self
                .state
                .read(move |store| store.snapshot(|store| read_both(store, after, kind, node.as_deref())))
                .await
                .ok()?;
            if rows.is_empty() {
                // A stream ends when the monitor stops, so that shutdown never waits on it.
                let mut stopping = self.state.stopping.clone();
                tokio::select! {
                    changed = committed.changed() => changed.ok()?,
                    _ = stopping.wait_for(|stop| *stop) => return None,
                }
            }
            self.pending.extend(rows);
        }
    }

    async fn wanted(&mut self, row: &Row) -> bool {
        let row = match row {
            Row::Transition(row) => row,
            Row::Incident(change) => return self.wanted_incident(change).await,
        };
        let Some(group) = self.group.clone() else { return true };
        row.kind == SubjectKind::Node && self.in_group(&row.node, &group).await
    }

    /// An incident change passes the filters when its subject kind is the one asked for, and
    /// one of its members is the node asked for, or belongs to the group asked for.
    async fn wanted_incident(&mut self, change: &IncidentChangeRecord) -> bool {
        let is_check = change.incident.subject_kind == SubjectKind::Check;
        if let Some(kind) = self.kind
            && (kind == SubjectKind::Check) != is_check
        {
            return false;
        }
        let members = &change.incident.members;
        if let Some(node) = &self.node
            && !members.contains(node)
        {
            return false;
        }
        let Some(group) = self.group.clone() else { return true };
        if is_check {
            return false;
        }
        for member in members {
            if self.in_group(member, &group).await {
                return true;
            }
        }
        false
    }

    async fn in_group(&mut self, node: &str, group: &str) -> bool {
        if !self.groups.contains_key(node) {
            let id = node.to_string();
            let labels = self.state.read(move |store| store.node_labels(&id)).await.ok().flatten();
            let found = labels.and_then(|raw| {
                Labels::from_bytes(&raw).ok().and_then(|labels| labels.get("group").map(str::to_string))
            });
            self.groups.insert(node.to_string(), found);
        }
        self.groups.get(node).is_some_and(|found| found.as_deref() == Some(group))
    }
}

/// Transitions and incident changes with an id above `after`, merged in id order. Each
/// kind is read up to a page; when a page is full, nothing past its last id is returned
/// (the other kind may have rows beyond it that the next read will interleave correctly).
fn read_both(
    store: &rollcall_store::Store,
    after: i64,
    kind: Option<SubjectKind>,
    node: Option<&str>,
) -> Result<Vec<Row>, rollcall_store::StoreError> {
    let transitions = store.transitions(after, MAX_EVENTS_PAGE, TransitionFilter { kind, id: node })?;
    let changes = store.incident_changes(after, MAX_EVENTS_PAGE)?;
    let full_until = |ids: Option<i64>, len: usize| if len == MAX_EVENTS_PAGE { ids } else { None };
    let until = [
        full_until(transitions.last().map(|row| row.id), transitions.len()),
        full_until(changes.last().map(|row| row.id), changes.len()),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(i64::MAX);
    let mut rows: Vec<Row> = transitions
        .into_iter()
        .map(Row::Transition)
        .chain(changes.into_iter().map(Row::Incident))
        .filter(|row| row.id() <= until)
        .collect();
    rows.sort_by_key(Row::id);
    Ok(rows)
}

//! Transitions: paged (`GET /v1/events`) and live (`GET /v1/events/stream`, Server-Sent
//! Events).
//!
//! The stream reads the store, not a broadcast channel: each client keeps its own cursor
//! (the last transition id it was sent), so a slow client only falls behind on its own and
//! never holds up detection or other clients, and a client that reconnects with
//! `Last-Event-ID` gets exactly what it missed.

use super::{ApiError, ApiQuery, AppState};
use crate::clock::rfc3339_ms;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use rollcall_proto::alerts::SubjectKind;
use rollcall_proto::wire::Labels;
use rollcall_store::{TransitionFilter, TransitionRecord};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

/// Most events one `/v1/events` page (or one read of the stream) returns.
const MAX_EVENTS_PAGE: usize = 1000;

#[derive(Deserialize)]
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

/// A client's place in the stream.
struct Cursor {
    state: AppState,
    after: i64,
    kind: Option<SubjectKind>,
    node: Option<String>,
    group: Option<String>,
    /// Read but not yet sent.
    pending: VecDeque<TransitionRecord>,
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
            None => state.read(|store| store.max_transition_id()).await?,
        },
    };
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
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

impl Cursor {
    /// The next event for this client, waiting for new commits when it has seen them all.
    /// `None` ends the stream (the monitor is stopping, or the store failed).
    async fn next(&mut self) -> Option<Event> {
        loop {
            while let Some(row) = self.pending.pop_front() {
                self.after = row.id;
                if self.wanted(&row).await {
                    let id = row.id.to_string();
                    let data = serde_json::to_string(&EventJson::from(row)).expect("always serializes");
                    return Some(Event::default().id(id).event("transition").data(data));
                }
            }
            let mut committed = self.state.committed.clone();
            committed.borrow_and_update();
            let (after, kind, node) = (self.after, self.kind, self.node.clone());
            let rows = self
                .state
                .read(move |store| {
                    store.transitions(after, MAX_EVENTS_PAGE, TransitionFilter { kind, id: node.as_deref() })
                })
                .await
                .ok()?;
            if rows.is_empty() {
                committed.changed().await.ok()?;
            }
            self.pending.extend(rows);
        }
    }

    async fn wanted(&mut self, row: &TransitionRecord) -> bool {
        let Some(group) = &self.group else { return true };
        if row.kind != SubjectKind::Node {
            return false;
        }
        if !self.groups.contains_key(&row.node) {
            let node = row.node.clone();
            let labels = self.state.read(move |store| store.node_labels(&node)).await.ok().flatten();
            let found = labels.and_then(|raw| {
                Labels::from_bytes(&raw).ok().and_then(|labels| labels.get("group").map(str::to_string))
            });
            self.groups.insert(row.node.clone(), found);
        }
        self.groups.get(&row.node).is_some_and(|found| found.as_deref() == Some(group.as_str()))
    }
}

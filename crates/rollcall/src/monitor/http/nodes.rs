//! Node endpoints: list, detail, pause (maintenance, optionally with an end), resume.

use super::events::EventJson;
use super::{ApiError, ApiQuery, AppState, OptionalJson};
use crate::monitor::owner::{Command, NodeJson};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use std::time::Duration;

/// Filters of `GET /v1/nodes`.
#[derive(Deserialize, Default)]
// An unknown filter is refused (400 naming it), not ignored: a typo must not list everything.
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only nodes in this state.
    state: Option<String>,
    /// Only nodes with this label, as `key=value`.
    label: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<NodeJson>>, ApiError> {
    if let Some(wanted) = &query.state
        && rollcall_core::monitor::NodeState::parse(wanted).is_none()
    {
        return Err(ApiError::bad_request(format!(
            "field `state`: {wanted:?} is not one of new, up, suspect, down, left, paused"
        )));
    }
    let label = match &query.label {
        Some(text) => match text.split_once('=') {
            Some((key, value)) => Some((key.to_string(), value.to_string())),
            None => return Err(ApiError::bad_request(format!("field `label`: {text:?} is not key=value"))),
        },
        None => None,
    };
    let mut nodes = state.ask(|reply| Command::Nodes { reply }).await?;
    nodes.retain(|node| {
        query.state.as_deref().is_none_or(|wanted| node.state == wanted)
            && label.as_ref().is_none_or(|(key, value)| node.labels.get(key) == Some(value))
    });
    Ok(Json(nodes))
}

/// A node in detail: what the list shows, plus what its detector judges by and its latest
/// transitions.
#[derive(serde::Serialize)]
pub struct NodeDetailJson {
    #[serde(flatten)]
    node: NodeJson,
    /// The detector's recent inter-arrival times in milliseconds, oldest first (phi accrual's
    /// window, which starts with two seeds from the declared interval; empty for the fixed
    /// timeout).
    recent_intervals_ms: Vec<f64>,
    /// The detector level at which the node becomes suspect, and down.
    suspect_level: f64,
    down_level: f64,
    /// The node's latest transitions, newest first (at most 20).
    history: Vec<EventJson>,
}

/// Transitions shown with a node.
const DETAIL_HISTORY: usize = 20;

pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeDetailJson>, ApiError> {
    let found = state.ask(|reply| Command::NodeDetail { id: id.clone(), reply }).await?;
    let (node, facts) = found.ok_or_else(|| ApiError::not_found("node", &id))?;
    let key = id.clone();
    let history = state
        .read(move |store| {
            store.recent_transitions(rollcall_core::alerts::SubjectKind::Node, &key, DETAIL_HISTORY)
        })
        .await?;
    Ok(Json(NodeDetailJson {
        node,
        recent_intervals_ms: facts.recent_intervals.iter().map(|d| d.as_secs_f64() * 1000.0).collect(),
        suspect_level: facts.suspect_level,
        down_level: facts.down_level,
        history: history.into_iter().map(EventJson::from).collect(),
    }))
}

/// Body of `POST /v1/nodes/{id}/pause`: no body pauses until resumed; `for` ("2h") or
/// `until` (RFC 3339) sets the end of the maintenance.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PauseBody {
    #[serde(rename = "for")]
    for_: Option<String>,
    until: Option<String>,
}

impl PauseBody {
    /// The end of the maintenance in wall-clock milliseconds, if the body sets one.
    pub fn until_ms(self, state: &AppState) -> Result<Option<i64>, ApiError> {
        let now_ms = state.clock.wall_ms(state.clock.now());
        match (self.for_, self.until) {
            (Some(_), Some(_)) => Err(ApiError::bad_request("give `for` or `until`, not both".into())),
            (Some(span), None) => {
                let span = rollcall_core::settings::parse_duration(&span)
                    .map_err(|error| ApiError::bad_request(format!("field `for`: {error}")))?;
                Ok(Some(now_ms + span.as_millis() as i64))
            }
            (None, Some(until)) => {
                let at = humantime::parse_rfc3339_weak(&until)
                    .map_err(|error| ApiError::bad_request(format!("field `until`: {error}")))?;
                let ms =
                    at.duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as i64;
                if ms <= now_ms {
                    return Err(ApiError::bad_request("field `until` is in the past".into()));
                }
                Ok(Some(ms))
            }
            (None, None) => Ok(None),
        }
    }
}

pub async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<PauseBody>,
) -> Result<Json<NodeJson>, ApiError> {
    state.authorize(&headers)?;
    let until_ms = body.until_ms(&state)?;
    let found = state.ask(|reply| Command::Pause { id: id.clone(), until_ms, reply }).await?;
    found.map(Json).ok_or_else(|| ApiError::not_found("node", &id))
}

pub async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<NodeJson>, ApiError> {
    state.authorize(&headers)?;
    let found = state.ask(|reply| Command::Resume { id: id.clone(), reply }).await?;
    found.map(Json).ok_or_else(|| ApiError::not_found("node", &id))
}

/// A group of nodes (by their `group` label) for load balancers and service discovery:
/// every member with its state, and the addresses (`addr` label) of those that are up.
/// A group nobody belongs to (yet) is an empty group, not an error: a proxy config
/// generator renders an empty upstream from it instead of failing.
#[derive(serde::Serialize)]
pub struct GroupJson {
    group: String,
    /// `addr` labels of the members that are `up`, sorted: what a proxy should route to.
    up: Vec<String>,
    members: Vec<NodeJson>,
}

pub async fn group(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> Result<Json<GroupJson>, ApiError> {
    let members = state.ask(|reply| Command::Group { group: group.clone(), reply }).await?;
    let mut up: Vec<String> = members
        .iter()
        .filter(|node| node.state == "up")
        .filter_map(|node| node.labels.get("addr").cloned())
        .collect();
    up.sort();
    Ok(Json(GroupJson { group, up, members }))
}

/// `DELETE /v1/nodes/{id}`: forget a decommissioned node (it goes `left` with reason
/// `forget`, its record is removed, its history stays). A later heartbeat registers it anew.
pub async fn forget(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<axum::http::StatusCode, ApiError> {
    state.authorize(&headers)?;
    let found = state.ask(|reply| Command::Forget { id: id.clone(), reply }).await?;
    if found { Ok(axum::http::StatusCode::NO_CONTENT) } else { Err(ApiError::not_found("node", &id)) }
}

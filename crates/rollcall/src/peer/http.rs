//! The peer's read API: `/v1/nodes`, `/v1/nodes/{id}`, `/v1/events`, `/v1/status`,
//! `/v1/sinks`, `/metrics`, `/healthz`. The same shapes as the monitor's where they make
//! sense, for this peer's view of the cluster.
//!
//! Handlers never touch the core: each query is a command answered by the owner task. Sink
//! health is read from the delivery loops' board, the outbox depth from the store.

use super::alerting::SinksView;
use super::owner::{Command, EventJson, MemberJson, STATES};
use crate::alerts::delivery::SinkHealth;
use crate::http_error::ApiError;
use crate::http_server::{ConnectionCounters, ServerLimits};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::sync::{mpsc, oneshot, watch};

/// Most events one `/v1/events` page returns.
const MAX_EVENTS_PAGE: usize = 1000;
/// Largest request body read (the API has no writes).
const MAX_BODY: usize = 4096;

#[derive(Clone)]
pub struct AppState {
    commands: mpsc::Sender<Command>,
    /// `None` when no sink is configured.
    sinks: Option<SinksView>,
    /// The server's connection counts, for `/metrics`.
    connections: ConnectionCounters,
}

impl AppState {
    pub fn new(commands: mpsc::Sender<Command>, sinks: Option<SinksView>) -> AppState {
        AppState { commands, sinks, connections: ConnectionCounters::default() }
    }

    /// Each sink's health and undelivered outbox rows, by name; empty without sinks.
    async fn sink_health(&self) -> Result<BTreeMap<String, (SinkHealth, u64)>, ApiError> {
        let Some(view) = &self.sinks else { return Ok(BTreeMap::new()) };
        let depth = view.outbox_depth().await.map_err(ApiError::internal)?;
        let board = view.board.lock().map_err(|_| ApiError::internal("sink board poisoned".into()))?.clone();
        Ok(board
            .into_iter()
            .map(|(name, health)| {
                let pending = depth.get(&name).copied().unwrap_or(0);
                (name, (health, pending))
            })
            .collect())
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(make(reply)).await.map_err(|_| ApiError::unavailable())?;
        answer.await.map_err(|_| ApiError::unavailable())
    }
}

/// 200 `ok` while the peer can do its job; 503 naming why while its store (with sinks) cannot
/// commit, since its alerts then wait.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.sinks.as_ref().and_then(|view| view.store.failure()) {
        None => "ok\n".into_response(),
        Some(error) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: the store cannot commit: {error}\n"))
                .into_response()
        }
    }
}

/// Serves the API on `listener` under `limits` until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: ServerLimits,
    stop: watch::Receiver<bool>,
) {
    let counters = state.connections.clone();
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{id}", get(node))
        .route("/v1/events", get(events))
        .route("/v1/status", get(status))
        .route("/v1/sinks", get(sinks))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint".into()) })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state);
    crate::http_server::serve(listener, app, limits, counters, stop).await;
}

/// A query string, or a JSON error naming what is wrong with it.
fn query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(uri)
        .map(|Query(value)| value)
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodesQuery {
    /// Only members in this state.
    state: Option<String>,
}

async fn nodes(
    State(state): State<AppState>,
    uri: axum::http::Uri,
) -> Result<Json<Vec<MemberJson>>, ApiError> {
    let filter: NodesQuery = query(&uri)?;
    if let Some(wanted) = &filter.state
        && !STATES.iter().any(|state| state.as_str() == wanted)
    {
        return Err(ApiError::bad_request(format!(
            "field `state`: {wanted:?} is not one of up, suspect, down, left"
        )));
    }
    let mut members = state.ask(|reply| Command::Members { reply }).await?;
    members.retain(|member| filter.state.as_deref().is_none_or(|wanted| member.state == wanted));
    Ok(Json(members))
}

/// A member with its latest transitions, newest first (at most 20).
#[derive(Serialize)]
struct NodeDetailJson {
    #[serde(flatten)]
    member: MemberJson,
    history: Vec<EventJson>,
}

async fn node(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeDetailJson>, ApiError> {
    let found = state.ask(|reply| Command::Member { id: id.clone(), reply }).await?;
    let (member, history) = found.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no member named {id:?}"))
    })?;
    Ok(Json(NodeDetailJson { member, history }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Only events with an id above this one (for paging and polling).
    since: Option<u64>,
    limit: Option<usize>,
    node: Option<String>,
}

async fn events(
    State(state): State<AppState>,
    uri: axum::http::Uri,
) -> Result<Json<Vec<EventJson>>, ApiError> {
    let filter: EventsQuery = query(&uri)?;
    let limit = filter.limit.unwrap_or(MAX_EVENTS_PAGE).min(MAX_EVENTS_PAGE);
    let since = filter.since.unwrap_or(0);
    let node = filter.node;
    Ok(Json(state.ask(|reply| Command::Events { since, limit, node, reply }).await?))
}

async fn status(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let stats = state.ask(|reply| Command::Stats { reply }).await?;
    let members: serde_json::Map<String, serde_json::Value> = STATES
        .iter()
        .zip(stats.members)
        .map(|(state, count)| (state.as_str().to_string(), count.into()))
        .collect();
    let rejected: u64 = stats.core.rejected.values().sum();
    Ok(Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "name": stats.name,
        "cluster": stats.cluster,
        "addr": stats.addr.to_string(),
        "incarnation": stats.incarnation,
        "seed": stats.seed,
        "uptime": humantime::format_duration(std::time::Duration::from_secs(stats.uptime.as_secs())).to_string(),
        "uptime_seconds": stats.uptime.as_secs_f64(),
        "members": members,
        "health": {
            "score": stats.health_score,
            "multiplier": stats.health_score + 1,
            "max": stats.max_health,
        },
        "datagrams_received": stats.core.received,
        "datagrams_sent": stats.core.sent,
        "datagrams_rejected": rejected,
        "probes": stats.core.probes,
        "failed_probes": stats.core.failed_probes,
        "refutes": stats.core.refutes,
        "alerting": stats.alerts.as_ref().map(|alerts| serde_json::json!({
            "open_incidents": alerts.open_incidents,
            "sinks": state.sinks.as_ref().map_or(0, |view| view.board.lock().map_or(0, |board| board.len())),
        })),
    })))
}

/// A sink as `/v1/sinks` shows it: the monitor's shape.
#[derive(Serialize)]
struct SinkJson {
    name: String,
    #[serde(flatten)]
    health: SinkHealth,
    /// Alerts queued and not yet delivered.
    pending: u64,
}

/// Every configured sink with its health; `[]` without sinks.
async fn sinks(State(state): State<AppState>) -> Result<Json<Vec<SinkJson>>, ApiError> {
    let sinks = state.sink_health().await?;
    Ok(Json(sinks.into_iter().map(|(name, (health, pending))| SinkJson { name, health, pending }).collect()))
}

/// `/metrics` in the Prometheus text format (version 0.0.4).
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let stats = state.ask(|reply| Command::Stats { reply }).await?;
    let sinks = state.sink_health().await?;
    let kind = "text/plain; version=0.0.4; charset=utf-8";
    Ok((
        [(header::CONTENT_TYPE, kind)],
        super::metrics::render(&stats, &sinks, &state.connections.snapshot()),
    )
        .into_response())
}

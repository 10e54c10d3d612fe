//! The read API: `/v1/nodes`, `/v1/nodes/{id}`, `/v1/events`, `/healthz`, `/metrics`.
//!
//! Handlers never touch the core: node queries are commands answered by the owner task,
//! history queries read the store through their own connection.

use super::owner::{Command, NodeJson};
use crate::clock::{Clock, rfc3339_ms};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rollcall_store::Store;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};

/// Most events one `/v1/events` page returns.
const MAX_EVENTS_PAGE: usize = 1000;

#[derive(Clone)]
pub struct AppState {
    commands: mpsc::Sender<Command>,
    reader: Arc<Mutex<Store>>,
    #[allow(dead_code)] // kept for handlers that stamp wall time (the full API)
    clock: Clock,
}

impl AppState {
    pub fn new(commands: mpsc::Sender<Command>, reader: Store, clock: Clock) -> AppState {
        AppState { commands, reader: Arc::new(Mutex::new(reader)), clock }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(make(reply)).await.map_err(|_| ApiError::unavailable())?;
        answer.await.map_err(|_| ApiError::unavailable())
    }
}

pub async fn serve(listener: tokio::net::TcpListener, state: AppState, mut stop: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{id}", get(node))
        .route("/v1/events", get(events))
        .with_state(state);
    let shutdown = async move {
        let _ = stop.changed().await;
    };
    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!(%error, "HTTP server stopped");
    }
}

/// An error as JSON: a stable `code` and a human `message`.
#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn unavailable() -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "shutting_down",
            message: "the monitor is stopping".into(),
        }
    }

    fn not_found(what: &str, id: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!("no {what} named {id:?}"),
        }
    }

    fn internal(message: String) -> ApiError {
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "internal", message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

async fn nodes(State(state): State<AppState>) -> Result<Json<Vec<NodeJson>>, ApiError> {
    Ok(Json(state.ask(|reply| Command::Nodes { reply }).await?))
}

async fn node(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<NodeJson>, ApiError> {
    let found = state.ask(|reply| Command::Node { id: id.clone(), reply }).await?;
    found.map(Json).ok_or_else(|| ApiError::not_found("node", &id))
}

#[derive(Deserialize)]
struct EventsQuery {
    /// Only events with an id above this one (for paging and polling).
    #[serde(default)]
    since: i64,
    limit: Option<usize>,
    node: Option<String>,
}

#[derive(Serialize)]
struct EventJson {
    id: i64,
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

async fn events(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Vec<EventJson>>, ApiError> {
    let limit = query.limit.unwrap_or(MAX_EVENTS_PAGE).min(MAX_EVENTS_PAGE);
    let reader = state.reader.clone();
    let rows = tokio::task::spawn_blocking(move || {
        let store = reader.lock().map_err(|_| "store reader poisoned".to_string())?;
        store.transitions(query.since, limit, query.node.as_deref()).map_err(|error| error.to_string())
    })
    .await
    .map_err(|error| ApiError::internal(error.to_string()))?
    .map_err(ApiError::internal)?;
    Ok(Json(
        rows.into_iter()
            .map(|row| EventJson {
                id: row.id,
                node: row.node,
                generation: row.generation,
                from: row.from.as_str(),
                to: row.to.as_str(),
                reason: row.reason.as_str(),
                at: rfc3339_ms(row.at_ms),
                noticed_at: rfc3339_ms(row.noticed_at_ms),
            })
            .collect(),
    ))
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let stats = state.ask(|reply| Command::Stats { reply }).await?;
    let body = super::metrics::render(&stats);
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
        .into_response())
}

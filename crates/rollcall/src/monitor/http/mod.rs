//! The read API: `/v1/nodes`, `/v1/nodes/{id}`, `/v1/events`, `/healthz`, `/metrics`.
//!
//! Handlers never touch the core: node queries are commands answered by the owner task,
//! history queries read the store through their own connection.

use super::owner::Command;
use crate::alerts::delivery::HealthBoard;
use crate::clock::Clock;
use crate::http_server::{ConnectionCounters, ServerLimits};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rollcall_core::monitor::Rejection;
use rollcall_store::Store;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

mod alerts;
mod checks;
mod dashboard;
mod events;
mod explain;
mod leases;
mod nodes;
mod openapi;
mod phi;
mod silences;

pub use leases::LeaseChannels;
pub use phi::{PhiCurve, phi_curve};

/// Largest request body the API reads (pings have their own, smaller limit).
pub use crate::http_error::ApiError;

const MAX_BODY: usize = 64 * 1024;
/// How often an event stream writes a keep-alive comment, at most.
const STREAM_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What every handler shares, behind one `Arc`: axum clones the state for each request, and
/// one atomic increment is cheaper than a dozen (channel senders, watch receivers, `Arc`s),
/// which the ping path's profile showed at about 4 % of the monitor's CPU.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The fields, to change while the state is being built (before `serve` shares it).
    fn fields(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.0)
    }
}

#[derive(Clone)]
pub struct Shared {
    commands: mpsc::Sender<Command>,
    reader: Arc<Mutex<Store>>,
    clock: Clock,
    sinks: HealthBoard,
    /// Changes after every store commit: streams wake up and read what is new.
    committed: watch::Receiver<u64>,
    /// Whether the store can commit: `/healthz` and pings tell the truth about it.
    store: crate::store_thread::StoreHealth,
    /// Bearer token that write endpoints require; without one, writes are refused.
    api_token: Option<Arc<str>>,
    /// Reads of `/v1/...` need the token too.
    protect_reads: bool,
    /// The cluster session's status, with `[cluster]`.
    cluster: Option<watch::Receiver<crate::cluster::ClusterStatus>>,
    /// Turns true when the monitor stops: live streams end, so shutdown never waits on a
    /// connected client.
    stopping: watch::Receiver<bool>,
    /// `pings.ping_key`, the secret of `/ping/<ping-key>/<slug>`.
    ping_key: Option<Arc<str>>,
    /// The server's connection counts, for `/metrics`.
    connections: ConnectionCounters,
    /// How often an event stream with nothing to send writes a comment: often enough that
    /// the server's idle timeout never closes it.
    stream_keep_alive: Duration,
    /// Lease changes and the store's durable ticket, from the owner.
    leases: leases::LeaseChannels,
}

impl AppState {
    pub fn new(
        commands: mpsc::Sender<Command>,
        reader: Store,
        clock: Clock,
        health: (HealthBoard, crate::store_thread::StoreHealth),
        committed: watch::Receiver<u64>,
        api_token: Option<String>,
        protect_reads: bool,
    ) -> AppState {
        let (sinks, store) = health;
        let reader = Arc::new(Mutex::new(reader));
        let api_token = api_token.map(Arc::from);
        // Replaced by the server's own stop signal, counters and limits in `serve`.
        let (_, stopping) = watch::channel(false);
        AppState(Arc::new(Shared {
            commands,
            reader,
            clock,
            sinks,
            committed,
            store,
            api_token,
            protect_reads,
            cluster: None,
            stopping,
            ping_key: None,
            connections: ConnectionCounters::default(),
            stream_keep_alive: STREAM_KEEP_ALIVE,
            leases: leases::LeaseChannels::new((tokio::sync::broadcast::channel(1).0, watch::channel(0).1)),
        }))
    }

    /// The owner's lease channels (`Owner::lease_channels`), and etcd's leases with `[cluster]`.
    pub fn with_leases(mut self, channels: LeaseChannels) -> AppState {
        self.fields().leases = channels;
        self
    }

    /// With `[cluster]`: `/v1/cluster` and the cluster's metrics read this.
    pub fn with_cluster(mut self, status: watch::Receiver<crate::cluster::ClusterStatus>) -> AppState {
        self.fields().cluster = Some(status);
        self
    }

    /// Opens the slug URLs (`/ping/<ping-key>/<slug>`) with this key.
    pub fn with_ping_key(mut self, ping_key: Option<String>) -> AppState {
        self.fields().ping_key = ping_key.map(Arc::from);
        self
    }

    /// Whether `given` is the ping key, compared in constant time.
    fn is_ping_key(&self, given: &str) -> bool {
        self.ping_key.as_ref().is_some_and(|key| constant_time_eq(given.as_bytes(), key.as_bytes()))
    }

    /// Checks the bearer token of a write request. Nothing is changed when this fails.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.api_token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "writes_disabled",
                "write endpoints are disabled: set api.token in the config to enable them".into(),
            ));
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match given {
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer TOKEN".into(),
            )),
            Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "wrong API token".into())),
        }
    }

    /// Runs a blocking store read off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Store) -> Result<T, rollcall_store::StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let store = reader.lock().map_err(|_| "store reader poisoned".to_string())?;
            query(&store).map_err(|error| error.to_string())
        })
        .await
        .map_err(|error| ApiError::internal(error.to_string()))?
        .map_err(ApiError::internal)
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(make(reply)).await.map_err(|_| ApiError::unavailable())?;
        answer.await.map_err(|_| ApiError::unavailable())
    }
}

/// Serves the API on `listener` under `limits` until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut state: AppState,
    limits: ServerLimits,
    stop: watch::Receiver<bool>,
) {
    state.fields().stopping = stop.clone();
    state.fields().stream_keep_alive = STREAM_KEEP_ALIVE.min(limits.idle_timeout / 2);
    let counters = state.connections.clone();
    let state_for_reads = state.clone();
    let app = Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/{file}", get(dashboard::asset))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/nodes/{id}", get(nodes::detail).delete(nodes::forget))
        .route("/v1/nodes/{id}/pause", post(nodes::pause))
        .route("/v1/nodes/{id}/resume", post(nodes::resume))
        .route("/v1/nodes/{id}/phi", get(phi::curve))
        .route("/v1/nodes/{id}/explain", get(explain::node))
        .route("/v1/silences", get(silences::list).post(silences::create))
        .route("/v1/silences/{id}", axum::routing::delete(silences::delete))
        .route("/v1/groups/{group}", get(nodes::group))
        .route("/v1/leases", get(leases::list))
        .route("/v1/leases/{name}", get(leases::detail))
        .route("/v1/leases/{name}/acquire", post(leases::acquire))
        .route("/v1/leases/{name}/renew", post(leases::renew))
        .route("/v1/leases/{name}/release", post(leases::release))
        .route("/v1/leases/{name}/watch", get(leases::watch))
        .route("/v1/events", get(events::list))
        .route("/v1/events/stream", get(events::stream))
        .route("/v1/checks", get(checks::list).post(checks::create))
        .route("/v1/checks/{id}", get(checks::detail).patch(checks::update).delete(checks::delete))
        .route("/v1/checks/{id}/pause", post(checks::pause))
        .route("/v1/checks/{id}/resume", post(checks::resume))
        .route("/v1/status", get(status))
        .route("/v1/cluster", get(cluster))
        .route("/v1/incidents", get(alerts::incidents))
        .route("/v1/sinks", get(alerts::sinks))
        .route("/v1/outbox", get(alerts::outbox))
        .route("/v1/openapi.json", get(openapi::document))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .merge(
            Router::new()
                .route("/ping/{token}", get(checks::ping).post(checks::ping))
                .route("/ping/{token}/{signal}", get(checks::ping_signal).post(checks::ping_signal))
                .route(
                    "/ping/{key}/{slug}/{signal}",
                    get(checks::ping_slug_signal).post(checks::ping_slug_signal),
                )
                .layer(axum::extract::DefaultBodyLimit::max(checks::MAX_PING_BODY)),
        )
        .fallback(no_route)
        .with_state(state);
    let app = app.layer(axum::middleware::from_fn_with_state(state_for_reads, guard));
    crate::http_server::serve(listener, app, limits, counters, stop).await;
}

/// A path no operation serves: a JSON error like every other, naming the likely mistake
/// when a segment is empty (`/v1/leases//acquire`: a name left out).
async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    let path = uri.path();
    let message = if path.contains("//") || (path.len() > 1 && path.ends_with('/')) {
        format!("no operation serves {method} {path}: a path segment is empty (a name or id left out?)")
    } else {
        format!("no operation serves {method} {path}; see /v1/openapi.json")
    };
    ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
}

/// 200 `ok` while the monitor can do its job; 503 with the reason while it cannot (a store
/// that cannot commit holds back every alert), so a load balancer or a supervisor sees it.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.failure() {
        None => "ok\n".into_response(),
        Some(error) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: the store cannot commit: {error}\n"))
                .into_response()
        }
    }
}

/// `/v1/cluster`: this monitor's view of its cluster (404 without `[cluster]`).
async fn cluster(State(state): State<AppState>) -> Result<Json<crate::cluster::ClusterStatus>, ApiError> {
    match &state.cluster {
        Some(status) => Ok(Json(status.borrow().clone())),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "this monitor runs alone: add a [cluster] section to run several (docs/HA.md)".into(),
        )),
    }
}

/// The monitor's own status, for people and for `rollcall status`.
async fn status(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let stats = state.ask(|reply| Command::Stats { reply }).await?;
    let depth: std::collections::BTreeMap<String, u64> =
        state.read(|store| store.outbox_depth()).await?.into_iter().collect();
    let sinks = state.sinks.lock().map_err(|_| ApiError::internal("sink board poisoned".into()))?.clone();
    let nodes: serde_json::Map<String, serde_json::Value> = rollcall_core::monitor::NodeState::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), stats.core.nodes_in(*s).into()))
        .collect();
    let checks: u64 = stats.checks.checks_by_state.iter().sum();
    Ok(Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": humantime::format_duration(std::time::Duration::from_secs(stats.uptime.as_secs())).to_string(),
        "uptime_seconds": stats.uptime.as_secs_f64(),
        "detector": stats.detector,
        "nodes": nodes,
        "checks": checks,
        "open_incidents": stats.open_incidents,
        "self_pauses": stats.core.self_pauses,
        "heartbeats_received": stats.core.heartbeats,
        "heartbeats_rejected": stats.core.rejected_total(),
        "limits_hit": {
            "capacity": stats.core.rejected.get(&Rejection::Capacity).copied().unwrap_or(0),
            "not_allowed": stats.core.rejected.get(&Rejection::NotAllowed).copied().unwrap_or(0),
            "pings_rate_limited": stats.checks.rejected(rollcall_core::checks::PingError::RateLimited),
        },
        "store": {
            "commits": stats.store_batches,
            "errors": stats.store_errors,
            "failing": stats.store.failing,
            "error": stats.store.error,
            "queued_writes": stats.store.queued_writes,
        },
        "sinks": sinks.iter().map(|(name, health)| serde_json::json!({
            "name": name,
            "kind": health.kind,
            "failing": health.failing,
            "pending": depth.get(name).copied().unwrap_or(0),
        })).collect::<Vec<_>>(),
    })))
}

/// `/metrics`: OpenMetrics text when the scraper asks for it (Prometheus does), the classic
/// text format otherwise (what `promtool check metrics` and plain `curl` get).
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let stats = state.ask(|reply| Command::Stats { reply }).await?;
    let depth = state.read(|store| store.outbox_depth()).await?;
    let sinks = state.sinks.lock().map_err(|_| ApiError::internal("sink board poisoned".into()))?.clone();
    let cluster = state.cluster.as_ref().map(|status| status.borrow().clone());
    let body =
        super::metrics::render(&stats, &sinks, &depth, &state.connections.snapshot(), cluster.as_ref());
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    if openmetrics {
        let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        return Ok(([(header::CONTENT_TYPE, kind)], body).into_response());
    }
    let kind = "text/plain; version=0.0.4; charset=utf-8";
    Ok(([(header::CONTENT_TYPE, kind)], super::metrics::classic_text(&body)).into_response())
}

/// Checks the bearer token before anything else of a request is looked at: every write to
/// `/v1/...` needs it (so a bad body from a stranger is a 401, not a 400 that tells them
/// how to shape one), and with `api.protect_reads` every read of `/v1/...` too. Handlers of
/// writes check it again. Pings, `/healthz`, `/metrics` and the dashboard's files stay open.
async fn guard(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let write = !matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    if (write || state.protect_reads)
        && request.uri().path().starts_with("/v1/")
        && let Err(error) = state.authorize(request.headers())
    {
        return error.into_response();
    }
    next.run(request).await
}

/// A query string, or a JSON error naming what is wrong with it (axum's own rejection is
/// plain text).
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        Ok(ApiQuery(value))
    }
}

/// A JSON body that may be absent (empty means `T::default()`), or a JSON error: 400 naming
/// the bad field, 413 when the body is over the limit.
pub struct OptionalJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for OptionalJson<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(body_rejection)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalJson)
            .map_err(|error| ApiError::bad_request(format!("body: {error}")))
    }
}

/// A body that could not be read: too large (413) or broken (400), as JSON.
pub fn body_rejection(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is over {MAX_BODY} bytes"),
        )
    } else {
        ApiError::bad_request(rejection.body_text())
    }
}

/// Compares secrets without leaking, through timing, how long a matching prefix is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

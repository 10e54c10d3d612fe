//! Leases with fencing tokens (docs/LEASES.md): `GET /v1/leases`, `GET /v1/leases/{name}`,
//! `POST /v1/leases/{name}/acquire`, `.../renew`, `.../release`, and
//! `GET /v1/leases/{name}/watch` (Server-Sent Events: `event: lease`, one per change of
//! holder, the first being the lease as it is when the stream starts).
//!
//! An acquire is answered only once the grant and its token are committed to the store:
//! a token a client has seen is never handed out again, even after a crash.

use super::{ApiError, AppState, body_rejection};
use crate::cluster::leases::ClusterLeases;
use crate::monitor::owner::{Command, LeaseChange, LeaseCommand, LeaseFailure, LeaseJson};
use axum::Json;
use axum::extract::{FromRequest, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use rollcall_core::leases::{validate_name, validate_request};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Longest an acquire waits for its commit before answering 503 (the store is failing; the
/// grant may have been made: retrying the acquire with the same holder is safe).
const COMMIT_WAIT: Duration = Duration::from_secs(10);

/// What the lease handlers share with the owner.
#[derive(Clone)]
pub struct LeaseChannels {
    changes: broadcast::Sender<LeaseChange>,
    durable: watch::Receiver<u64>,
    /// With `[cluster]`: etcd holds the leases, and every operation goes there.
    cluster: Option<Arc<ClusterLeases>>,
}

impl LeaseChannels {
    pub fn new((changes, durable): (broadcast::Sender<LeaseChange>, watch::Receiver<u64>)) -> LeaseChannels {
        LeaseChannels { changes, durable, cluster: None }
    }

    pub fn with_cluster(self, cluster: Arc<ClusterLeases>) -> LeaseChannels {
        LeaseChannels { cluster: Some(cluster), ..self }
    }
}

/// Body of `POST /v1/leases/{name}/acquire`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireBody {
    /// The holder's node, registered with this monitor and up.
    node: String,
    /// Who holds it (default: the node's id); contenders on one node need their own.
    holder: Option<String>,
    ttl_ms: u64,
}

/// Body of `renew` and `release`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolderBody {
    holder: String,
    token: u64,
}

fn failure(failure: LeaseFailure) -> ApiError {
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    ApiError::new(status, failure.code, failure.message)
}

fn checked_name(name: &str) -> Result<(), ApiError> {
    validate_name("lease name", name).map_err(|error| ApiError::bad_request(error.to_string()))
}

async fn body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    request: axum::extract::Request,
) -> Result<T, ApiError> {
    let bytes = axum::body::Bytes::from_request(request, state).await.map_err(body_rejection)?;
    serde_json::from_slice(&bytes).map_err(|error| ApiError::bad_request(format!("body: {error}")))
}

fn lease_command(command: LeaseCommand) -> Command {
    Command::Lease(command)
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<LeaseJson>>, ApiError> {
    if let Some(cluster) = &state.leases.cluster {
        return cluster.list().await.map(Json).map_err(failure);
    }
    Ok(Json(state.ask(|reply| lease_command(LeaseCommand::List { reply })).await?))
}

/// The lease as it is now, from etcd with `[cluster]`, else from the owner.
async fn current(state: &AppState, name: &str) -> Result<Option<LeaseJson>, ApiError> {
    if let Some(cluster) = &state.leases.cluster {
        return cluster.get(name).await.map_err(failure);
    }
    state.ask(|reply| lease_command(LeaseCommand::Get { name: name.to_string(), reply })).await
}

pub async fn detail(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<LeaseJson>, ApiError> {
    checked_name(&name)?;
    current(&state, &name).await?.map(Json).ok_or_else(|| ApiError::not_found("lease", &name))
}

pub async fn acquire(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<Json<LeaseJson>, ApiError> {
    state.authorize(&headers)?;
    checked_name(&name)?;
    let body: AcquireBody = body(&state, request).await?;
    let ttl = Duration::from_millis(body.ttl_ms);
    let holder = body.holder.unwrap_or_else(|| body.node.clone());
    if let Some(cluster) = &state.leases.cluster {
        validate_request(&name, &body.node, &holder, ttl).map_err(|error| failure(error.into()))?;
        let node = body.node.clone();
        state.ask(|reply| lease_command(LeaseCommand::CheckNode { node, reply })).await?.map_err(failure)?;
        // etcd has committed the grant when it answers.
        return cluster.acquire(&name, &body.node, &holder, ttl).await.map(Json).map_err(failure);
    }
    let answer = state
        .ask(|reply| lease_command(LeaseCommand::Acquire { name, node: body.node, holder, ttl, reply }))
        .await?;
    let (lease, ticket) = answer.map_err(failure)?;
    let mut durable = state.leases.durable.clone();
    match tokio::time::timeout(COMMIT_WAIT, durable.wait_for(|durable| *durable >= ticket)).await {
        Ok(Ok(_)) => Ok(Json(lease)),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_durable",
            "the grant could not be committed to the store in time; retry the acquire with the same holder"
                .into(),
        )),
    }
}

pub async fn renew(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<Json<LeaseJson>, ApiError> {
    by_holder(state, name, headers, request, HolderVerb::Renew).await
}

pub async fn release(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<Json<LeaseJson>, ApiError> {
    by_holder(state, name, headers, request, HolderVerb::Release).await
}

/// What a holder asks with its token.
#[derive(Clone, Copy)]
enum HolderVerb {
    Renew,
    Release,
}

/// `renew` and `release`: the same checks, then etcd with `[cluster]`, else the owner.
async fn by_holder(
    state: AppState,
    name: String,
    headers: HeaderMap,
    request: axum::extract::Request,
    verb: HolderVerb,
) -> Result<Json<LeaseJson>, ApiError> {
    state.authorize(&headers)?;
    checked_name(&name)?;
    let HolderBody { holder, token } = body(&state, request).await?;
    if let Some(cluster) = &state.leases.cluster {
        let answer = match verb {
            HolderVerb::Renew => cluster.renew(&name, &holder, token).await,
            HolderVerb::Release => cluster.release(&name, &holder, token).await,
        };
        return answer.map(Json).map_err(failure);
    }
    let answer = state
        .ask(|reply| {
            lease_command(match verb {
                HolderVerb::Renew => LeaseCommand::Renew { name, holder, token, reply },
                HolderVerb::Release => LeaseCommand::Release { name, holder, token, reply },
            })
        })
        .await?;
    answer.map(Json).map_err(failure)
}

/// The lease's changes of holder as they happen, after one first event with the lease as
/// it is (`change: "current"`, or `"free"` with no `lease` when nobody holds it). A client
/// too slow to keep up gets `event: lagged` and should read the lease again.
pub async fn watch(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    checked_name(&name)?;
    // Subscribed before reading the current state, so no change falls between the two.
    let changes = state.leases.changes.subscribe();
    let first = match current(&state, &name).await? {
        Some(lease) => serde_json::json!({ "change": "current", "lease": lease }),
        None => serde_json::json!({ "change": "free", "name": name }),
    };
    let first = Event::default().event("lease").data(first.to_string());
    let keep_alive = KeepAlive::new().interval(state.stream_keep_alive);
    let stopping = state.stopping.clone();
    let rest = futures_util::stream::unfold(
        (changes, stopping, name),
        |(mut changes, mut stopping, name)| async move {
            loop {
                let received = tokio::select! {
                    received = changes.recv() => received,
                    _ = stopping.wait_for(|stop| *stop) => return None,
                };
                let event = match received {
                    Ok(change) if change.lease.name == name => {
                        let data = serde_json::to_string(&change).expect("always serializes");
                        Event::default().event("lease").data(data)
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(missed)) => Event::default()
                        .event("lagged")
                        .data(serde_json::json!({ "missed": missed }).to_string()),
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                return Some((Ok(event), (changes, stopping, name)));
            }
        },
    );
    let events = futures_util::StreamExt::chain(futures_util::stream::once(async move { Ok(first) }), rest);
    Ok(Sse::new(events).keep_alive(keep_alive))
}

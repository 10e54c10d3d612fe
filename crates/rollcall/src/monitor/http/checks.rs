//! Checks: the ping endpoints (Healthchecks.io's grammar) and the checks API.

use super::nodes::PauseBody;
use super::{ApiError, AppState, OptionalJson};
use crate::checks::{CheckInput, CheckJson};
use crate::monitor::owner::{CheckCommand, CheckFailure, Command, PingRefusal, PingTarget};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rollcall_core::checks::PingError;
use serde::Deserialize;
use std::net::SocketAddr;

/// Largest ping body read; longer ones are refused (413). Bodies over the configured
/// `pings.body_limit` (10,000 bytes by default) but under this are kept truncated and flagged.
pub const MAX_PING_BODY: usize = 1024 * 1024;

/// A ping's body, read only after its declared length is checked: a ping that declares more
/// than [`MAX_PING_BODY`] is answered 413 before a byte of it is read, and one that sends more
/// without declaring it (chunked) as soon as it passes the limit. Either way the connection is
/// closed, so the rest is never read, and the refusal is counted.
pub struct PingBody(Bytes);

impl axum::extract::FromRequest<AppState> for PingBody {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> Result<Self, Response> {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        if declared.is_some_and(|length| length > MAX_PING_BODY as u64) {
            return Err(too_large(state));
        }
        match Bytes::from_request(request, state).await {
            Ok(body) => Ok(PingBody(body)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large(state)),
            Err(rejection) => Err(rejection.into_response()),
        }
    }
}

/// 413 and `Connection: close`, counted by the owner (a full command queue loses the count,
/// never the answer).
fn too_large(state: &AppState) -> Response {
    let error = PingError::BodyTooLarge;
    let _ = state.commands.try_send(Command::Check(CheckCommand::Refused { error }));
    let mut response = (StatusCode::PAYLOAD_TOO_LARGE, format!("{error}\n")).into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[derive(Deserialize)]
pub struct PingQuery {
    rid: Option<String>,
    /// `?create=1` on a slug URL: make the check if it is missing (with `pings.auto_create`).
    create: Option<String>,
}

/// `/ping/<token>`.
pub async fn ping(
    state: State<AppState>,
    Path(token): Path<String>,
    source: ConnectInfo<SocketAddr>,
    query: Query<PingQuery>,
    PingBody(body): PingBody,
) -> Response {
    ping_with(state, PingTarget::Token(token), None, source, query, body).await
}

/// `/ping/<token>/<signal>`, or `/ping/<ping-key>/<slug>` when the first part is the ping
/// key (a check's token never is: the config and the API refuse it). A wrong key is taken
/// for a token; the owner answers it as an unknown slug.
pub async fn ping_signal(
    state: State<AppState>,
    Path((first, second)): Path<(String, String)>,
    source: ConnectInfo<SocketAddr>,
    query: Query<PingQuery>,
    PingBody(body): PingBody,
) -> Response {
    let (target, suffix) = if state.is_ping_key(&first) {
        (PingTarget::Slug { slug: second, create: query.create.as_deref() == Some("1") }, None)
    } else {
        (PingTarget::Token(first), Some(second))
    };
    ping_with(state, target, suffix, source, query, body).await
}

/// `/ping/<ping-key>/<slug>/<signal>`.
pub async fn ping_slug_signal(
    state: State<AppState>,
    Path((key, slug, signal)): Path<(String, String, String)>,
    source: ConnectInfo<SocketAddr>,
    query: Query<PingQuery>,
    PingBody(body): PingBody,
) -> Response {
    // A wrong key still goes to the owner, behind the source's rate limit like a guessed
    // token, so the key cannot be guessed at full speed.
    let target = if state.is_ping_key(&key) {
        PingTarget::Slug { slug, create: query.create.as_deref() == Some("1") }
    } else {
        PingTarget::WrongKey
    };
    ping_with(state, target, Some(signal), source, query, body).await
}

async fn ping_with(
    State(state): State<AppState>,
    target: PingTarget,
    suffix: Option<String>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    Query(query): Query<PingQuery>,
    body: Bytes,
) -> Response {
    // A ping is acknowledged only once it can be made durable: while the store cannot commit,
    // refuse it (`curl --retry` sends it again) rather than answer 200 for nothing.
    if let Some(error) = state.store.failure() {
        state.store.refused_ping();
        let mut response =
            (StatusCode::SERVICE_UNAVAILABLE, format!("the store cannot commit ({error}); try again\n"))
                .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    }
    let asked = state
        .ask(|reply| {
            Command::Check(CheckCommand::Ping {
                target,
                suffix,
                rid: query.rid,
                body: body.to_vec(),
                source: source.ip(),
                reply,
            })
        })
        .await;
    match asked {
        Ok(Ok(receipt)) => {
            let mut response = (StatusCode::OK, "OK\n").into_response();
            if let Ok(value) = HeaderValue::from_str(receipt.state.as_str()) {
                response.headers_mut().insert("x-rollcall-check-state", value);
            }
            if receipt.body_truncated {
                response.headers_mut().insert("x-rollcall-body-truncated", HeaderValue::from_static("1"));
            }
            response
        }
        Ok(Err(PingRefusal { error, retry_after })) => {
            let status = StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            let mut response = (status, format!("{error}\n")).into_response();
            if let Some(after) = retry_after {
                let secs = after.as_secs_f64().ceil().max(1.0) as u64;
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        Err(error) => error.into_response(),
    }
}

fn failure(error: CheckFailure) -> ApiError {
    ApiError::new(
        StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST),
        error.code,
        error.message,
    )
}

fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    payload.map(|Json(value)| value).map_err(|rejection| match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::bad_request("send the body as JSON with Content-Type: application/json".into())
        }
        JsonRejection::BytesRejection(rejection) => super::body_rejection(rejection),
        other => ApiError::bad_request(other.body_text()),
    })
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<CheckJson>>, ApiError> {
    let reveal = state.authorize(&headers).is_ok();
    Ok(Json(state.ask(|reply| Command::Check(CheckCommand::List { reveal, reply })).await?))
}

pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<CheckJson>, ApiError> {
    let reveal = state.authorize(&headers).is_ok();
    let found =
        state.ask(|reply| Command::Check(CheckCommand::Get { id: id.clone(), reveal, reply })).await?;
    found.map(Json).ok_or_else(|| ApiError::not_found("check", &id))
}

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    payload: Result<Json<CheckInput>, JsonRejection>,
) -> Result<(StatusCode, Json<CheckJson>), ApiError> {
    state.authorize(&headers)?;
    let input = body(payload)?;
    let created = state.ask(|reply| Command::Check(CheckCommand::Create { input, reply })).await?;
    created.map(|check| (StatusCode::CREATED, Json(check))).map_err(failure)
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    payload: Result<Json<CheckInput>, JsonRejection>,
) -> Result<Json<CheckJson>, ApiError> {
    state.authorize(&headers)?;
    let patch = body(payload)?;
    let updated = state.ask(|reply| Command::Check(CheckCommand::Update { id, patch, reply })).await?;
    updated.map(Json).map_err(failure)
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    state.authorize(&headers)?;
    let deleted = state.ask(|reply| Command::Check(CheckCommand::Delete { id, reply })).await?;
    deleted.map(|()| StatusCode::NO_CONTENT).map_err(failure)
}

pub async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<PauseBody>,
) -> Result<Json<CheckJson>, ApiError> {
    state.authorize(&headers)?;
    let until_ms = body.until_ms(&state)?;
    let paused = state.ask(|reply| Command::Check(CheckCommand::Pause { id, until_ms, reply })).await?;
    paused.map(Json).map_err(failure)
}

pub async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<CheckJson>, ApiError> {
    state.authorize(&headers)?;
    let resumed = state.ask(|reply| Command::Check(CheckCommand::Resume { id, reply })).await?;
    resumed.map(Json).map_err(failure)
}

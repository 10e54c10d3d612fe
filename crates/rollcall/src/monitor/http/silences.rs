//! Silences: `GET /v1/silences`, `POST /v1/silences`, `DELETE /v1/silences/{id}`.
//!
//! A silence holds the notifications of matching incidents (transitions are still recorded
//! and shown) until it ends; what happens then is the incident layer's rule, documented in
//! docs/ALERTS.md.

use super::{ApiError, AppState, body_rejection};
use crate::monitor::owner::{Command, SilenceCommand, SilenceJson};
use axum::Json;
use axum::extract::{FromRequest, Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use std::time::Duration;

/// Longest a silence may last: a forgotten silence must not mute a node for ever.
const MAX_SILENCE: Duration = Duration::from_secs(90 * 24 * 3600);
/// Most matchers in one silence, and longest key, value and reason.
const MAX_MATCHERS: usize = 16;
const MAX_TEXT: usize = 256;
const MAX_REASON: usize = 1024;

/// Body of `POST /v1/silences`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceBody {
    /// `key=value`: `node=ID`, `check=ID`, or any label (`group=web`); all must match.
    matchers: Vec<String>,
    #[serde(default)]
    reason: String,
    /// How long, as "2h" or "30m"; or give `until`.
    #[serde(rename = "for")]
    for_: Option<String>,
    /// RFC 3339 end.
    until: Option<String>,
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<SilenceJson>>, ApiError> {
    let list = state.ask(|reply| Command::Silence(SilenceCommand::List { reply })).await?;
    Ok(Json(list))
}

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<(StatusCode, Json<SilenceJson>), ApiError> {
    state.authorize(&headers)?;
    let bytes = axum::body::Bytes::from_request(request, &state).await.map_err(body_rejection)?;
    let body: SilenceBody =
        serde_json::from_slice(&bytes).map_err(|error| ApiError::bad_request(format!("body: {error}")))?;
    let matchers = parse_matchers(&body.matchers)?;
    if body.reason.len() > MAX_REASON {
        return Err(ApiError::bad_request(format!("field `reason`: longer than {MAX_REASON} bytes")));
    }
    let now_ms = state.clock.wall_ms(state.clock.now());
    let ends_at_ms = match (body.for_, body.until) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give `for` or `until`, not both".into())),
        (None, None) => {
            return Err(ApiError::bad_request("field `for` or `until`: a silence needs an end".into()));
        }
        (Some(span), None) => {
            let span = rollcall_core::settings::parse_duration(&span)
                .map_err(|error| ApiError::bad_request(format!("field `for`: {error}")))?;
            if span.is_zero() {
                return Err(ApiError::bad_request("field `for`: must be positive".into()));
            }
            now_ms.saturating_add(span.as_millis().min(i64::MAX as u128) as i64)
        }
        (None, Some(until)) => {
            let at = humantime::parse_rfc3339_weak(&until)
                .map_err(|error| ApiError::bad_request(format!("field `until`: {error}")))?;
            let ms = at.duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as i64;
            if ms <= now_ms {
                return Err(ApiError::bad_request("field `until` is in the past".into()));
            }
            ms
        }
    };
    if ends_at_ms - now_ms > MAX_SILENCE.as_millis() as i64 {
        return Err(ApiError::bad_request("field `for`/`until`: a silence lasts at most 90 days".into()));
    }
    let reason = body.reason;
    let silence = state
        .ask(|reply| Command::Silence(SilenceCommand::Add { matchers, reason, ends_at_ms, reply }))
        .await?;
    Ok((StatusCode::CREATED, Json(silence)))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    state.authorize(&headers)?;
    let number = id.parse::<u64>().map_err(|_| ApiError::not_found("silence", &id))?;
    let found = state.ask(|reply| Command::Silence(SilenceCommand::Remove { id: number, reply })).await?;
    if found { Ok(StatusCode::NO_CONTENT) } else { Err(ApiError::not_found("silence", &id)) }
}

/// Checks `key=value` matchers; the error names the field and the bad matcher.
fn parse_matchers(texts: &[String]) -> Result<Vec<(String, String)>, ApiError> {
    if texts.is_empty() {
        return Err(ApiError::bad_request(
            "field `matchers`: give at least one key=value (a silence of everything is a pause)".into(),
        ));
    }
    if texts.len() > MAX_MATCHERS {
        return Err(ApiError::bad_request(format!("field `matchers`: at most {MAX_MATCHERS}")));
    }
    let mut matchers: Vec<(String, String)> = Vec::new();
    for text in texts {
        let bad = |why: &str| ApiError::bad_request(format!("field `matchers`: {text:?} {why}"));
        let (key, value) = text.split_once('=').ok_or_else(|| bad("is not key=value"))?;
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || value.is_empty() {
            return Err(bad("has an empty key or value"));
        }
        if key.len() > MAX_TEXT || value.len() > MAX_TEXT || text.chars().any(char::is_control) {
            return Err(bad("is too long or has control characters"));
        }
        if matchers.iter().any(|(k, _)| k == key) {
            return Err(bad("repeats a key"));
        }
        matchers.push((key.to_string(), value.to_string()));
    }
    Ok(matchers)
}

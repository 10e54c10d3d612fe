//! Alerting endpoints: incidents, sinks and their health, the outbox.

use super::{ApiError, ApiQuery, AppState};
use crate::alerts::delivery::SinkHealth;
use crate::alerts::model::IncidentJson;
use crate::clock::rfc3339_ms;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const MAX_PAGE: usize = 1000;

#[derive(Deserialize)]
// An unknown filter is refused (400 naming it), not ignored: a typo must not list everything.
#[serde(deny_unknown_fields)]
pub struct IncidentsQuery {
    /// Only open incidents (newest first, like the full list).
    #[serde(default)]
    open: bool,
    limit: Option<usize>,
}

pub async fn incidents(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<IncidentsQuery>,
) -> Result<Json<Vec<IncidentJson>>, ApiError> {
    let limit = query.limit.unwrap_or(100).min(MAX_PAGE);
    let rows = state
        .read(
            move |store| {
                if query.open { store.recent_open_incidents(limit) } else { store.recent_incidents(limit) }
            },
        )
        .await?;
    Ok(Json(rows.iter().map(IncidentJson::from).collect()))
}

#[derive(Serialize)]
pub struct SinkJson {
    name: String,
    #[serde(flatten)]
    health: SinkHealth,
    /// Alerts queued and not yet delivered.
    pending: u64,
}

pub async fn sinks(State(state): State<AppState>) -> Result<Json<Vec<SinkJson>>, ApiError> {
    let depth: BTreeMap<String, u64> = state.read(|store| store.outbox_depth()).await?.into_iter().collect();
    let board = state.sinks.lock().map_err(|_| ApiError::internal("sink board poisoned".into()))?.clone();
    Ok(Json(
        board
            .into_iter()
            .map(|(name, health)| SinkJson { pending: depth.get(&name).copied().unwrap_or(0), name, health })
            .collect(),
    ))
}

#[derive(Deserialize)]
// An unknown filter is refused (400 naming it), not ignored: a typo must not list everything.
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    sink: Option<String>,
    #[serde(default)]
    since: i64,
    limit: Option<usize>,
}

#[derive(Serialize)]
pub struct OutboxJson {
    id: i64,
    sink: String,
    idempotency_key: String,
    incident: u64,
    subject: String,
    created_at: String,
    attempts: u32,
    last_error: Option<String>,
    delivered_at: Option<String>,
}

pub async fn outbox(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<OutboxQuery>,
) -> Result<Json<Vec<OutboxJson>>, ApiError> {
    let limit = query.limit.unwrap_or(100).min(MAX_PAGE);
    let rows = state.read(move |store| store.outbox_rows(query.sink.as_deref(), query.since, limit)).await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| OutboxJson {
                id: row.id,
                sink: row.entry.sink,
                idempotency_key: row.entry.idempotency_key,
                incident: row.entry.incident,
                subject: row.entry.subject,
                created_at: rfc3339_ms(row.entry.created_at_ms),
                attempts: row.attempts,
                last_error: row.last_error,
                delivered_at: row.delivered_at_ms.map(rfc3339_ms),
            })
            .collect(),
    ))
}

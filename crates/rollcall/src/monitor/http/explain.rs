//! `GET /v1/nodes/{id}/explain`: see `monitor/explain.rs`.

use super::{ApiError, AppState};
use crate::monitor::explain::Explanation;
use crate::monitor::owner::Command;
use axum::Json;
use axum::extract::{Path, State};

pub async fn node(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Explanation>, ApiError> {
    let found = state.ask(|reply| Command::Explain { id: id.clone(), reply }).await?;
    found.map(Json).ok_or_else(|| ApiError::not_found("node", &id))
}

//! `GET /v1/openapi.json`: the API's OpenAPI 3.1 document.
//!
//! The document is `docs/openapi.json` in the repository, embedded at build time, so the
//! binary serves exactly what is reviewed and what `tests/openapi.rs` checks the real
//! responses against.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, as kept in the repository.
const DOCUMENT: &str = include_str!("../../../../../docs/openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

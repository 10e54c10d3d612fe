//! The web dashboard: `/` and `/assets/{file}`, served from files embedded in the binary.
//!
//! There is no build step and nothing is fetched from elsewhere at run time: the page is
//! plain HTML, CSS and JavaScript modules from `crates/rollcall/assets/`, included with
//! `include_str!`. The JavaScript reads the same JSON API as every other client
//! (`/v1/nodes`, `/v1/events/stream`, ...); this file only serves the files.
//!
//! Every response carries `Content-Security-Policy: default-src 'self'` (no inline script,
//! no other host), and an `ETag` that is a hash of the embedded content, with
//! `Cache-Control: no-cache`: browsers revalidate on each load, and a new binary's assets are
//! never hidden by a stale cache.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Builds an [`Asset`] from a file in `crates/rollcall/assets/`.
macro_rules! asset {
    ($name:literal, $content_type:literal) => {{
        const BODY: &str = include_str!(concat!("../../../assets/", $name));
        const HASH: [u8; 18] = etag(BODY.as_bytes());
        const ETAG: &str = match std::str::from_utf8(&HASH) {
            Ok(text) => text,
            Err(_) => panic!("an ETag is ASCII hex"),
        };
        Asset { name: $name, content_type: $content_type, body: BODY, etag: ETAG }
    }};
}

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    /// Quoted FNV-1a hash of `body`, computed at compile time.
    etag: &'static str,
}

/// The page itself, served at `/`.
const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// Everything under `/assets/`.
const ASSETS: &[Asset] = &[
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("views.js", "text/javascript; charset=utf-8"),
    asset!("charts.js", "text/javascript; charset=utf-8"),
    asset!("cluster.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The policy every dashboard response carries: scripts, styles, images and connections
/// (fetch, `EventSource`) only from the monitor itself.
const CSP: &str = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `GET /`: the dashboard's single page (views are chosen by the URL's `#` fragment).
pub async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

/// `GET /assets/{file}`: a script, the style sheet or the icon; 404 for anything else.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|asset| asset.name == file) {
        Some(asset) => serve(asset, &headers),
        None => {
            (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain")], "no such asset\n").into_response()
        }
    }
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == asset.etag));
    let common = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    let etag = HeaderValue::from_static(asset.etag);
    if fresh {
        return (StatusCode::NOT_MODIFIED, common, [(header::ETAG, etag)]).into_response();
    }
    let kind = HeaderValue::from_static(asset.content_type);
    (common, [(header::ETAG, etag), (header::CONTENT_TYPE, kind)], asset.body).into_response()
}

/// `"` + 16 hex digits of the 64-bit FNV-1a hash of `bytes` + `"`: a strong ETag, computed
/// at compile time. Not a cryptographic hash; it only has to change when the content does.
const fn etag(bytes: &[u8]) -> [u8; 18] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    let mut out = [b'"'; 18];
    let mut digit = 0;
    while digit < 16 {
        let nibble = ((hash >> (60 - 4 * digit)) & 0xf) as u8;
        out[1 + digit] = if nibble < 10 { b'0' + nibble } else { b'a' + nibble - 10 };
        digit += 1;
    }
    out
}

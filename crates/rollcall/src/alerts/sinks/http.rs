//! The one HTTP request the webhook and Alertmanager sinks make: a JSON POST, one attempt.
//! ureq is blocking, so the request runs on tokio's blocking pool.

use super::DeliveryError;
use std::io::Read;
use std::time::Duration;

/// How much of an error response's body goes into [`DeliveryError::Status`].
const SNIPPET_BYTES: u64 = 1024;

/// ureq enforces the timeout itself; this margin on top only matters if it did not (a bug), so
/// the delivery loop is never stuck on one attempt.
const GUARD: Duration = Duration::from_secs(2);

/// An agent whose every request ends within `timeout` and which follows no redirects (a POST
/// redirected is not a POST delivered: a 3xx is reported as a failure).
pub(super) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("rollcall/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// POSTs `body` as JSON to `url` with extra `headers`; a 2xx answer is success.
pub(super) async fn post_json(
    agent: &ureq::Agent,
    url: &str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let (agent, url) = (agent.clone(), url.to_owned());
    let task = tokio::task::spawn_blocking(move || post_blocking(&agent, &url, &headers, &body, timeout));
    match tokio::time::timeout(timeout + GUARD, task).await {
        Err(_elapsed) => Err(DeliveryError::Timeout(timeout)),
        Ok(Err(join)) => Err(DeliveryError::Io(format!("the request thread failed: {join}"))),
        Ok(Ok(result)) => result,
    }
}

fn post_blocking(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(&'static str, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let mut request = agent.post(url).header("Content-Type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let mut response = request.send(body).map_err(|error| from_ureq(error, timeout))?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    // The body only explains the failure, so a read error just leaves it shorter.
    let mut snippet = Vec::new();
    let _ = response.body_mut().as_reader().take(SNIPPET_BYTES).read_to_end(&mut snippet);
    Err(DeliveryError::Status(status, String::from_utf8_lossy(&snippet).trim().to_owned()))
}

fn from_ureq(error: ureq::Error, timeout: Duration) -> DeliveryError {
    match error {
        ureq::Error::Timeout(_) => DeliveryError::Timeout(timeout),
        ureq::Error::Io(error)
            if matches!(error.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) =>
        {
            DeliveryError::Timeout(timeout)
        }
        other => DeliveryError::Io(other.to_string()),
    }
}

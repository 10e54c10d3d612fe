//! Sinks: where alerts go once they leave the outbox (a webhook, a command, Prometheus Alertmanager).
//!
//! A sink makes one attempt per call and reports how it went; it does not retry, back off,
//! read the outbox or decide routing.
//! Those belong to the delivery loop, which asks [`SinkConfig::routes`] which sinks an alert goes
//! to, calls [`Sink::deliver`] until it succeeds, and calls [`Sink::resend_firing`] every
//! [`Sink::resend_interval`] for the sinks that have one.
//! Start reading at [`parse_sinks`] (configuration), then [`Sink`]; the contracts with receivers
//! are in docs/ALERTS.md.

mod alertmanager;
mod exec;
mod http;
mod webhook;

pub use alertmanager::AlertmanagerSink;
pub use exec::ExecSink;
pub use webhook::WebhookSink;

use crate::alerts::model::{Alert, Severity, StoredAlert};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// Per attempt, when the sink does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often Alertmanager hears again about firing alerts, when the sink does not say.
/// Alertmanager's default `resolve_timeout` is 5 minutes; once a minute leaves room for four
/// failed attempts in a row before it resolves an alert on its own.
pub const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_secs(60);

/// One `[[sink]]` table as written in the config file. Unknown keys are refused, naming the key.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub command: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub resend_interval: Option<String>,
    #[serde(rename = "match")]
    pub match_labels: Option<BTreeMap<String, String>>,
    pub min_severity: Option<String>,
}

/// One sink, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Unique among the sinks; names the sink in logs, metrics and the outbox.
    pub name: String,
    pub target: SinkTarget,
    /// The longest one attempt may take, from connecting (or starting the command) to the answer.
    pub timeout: Duration,
    pub route: Route,
}

/// Where a sink delivers, and the settings that only make sense for that kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    /// POST of the alert document to `url`.
    Webhook { url: String, secret: Option<Secret> },
    /// Runs `command` (argv, no shell) with the alert in environment variables.
    Exec { command: Vec<String> },
    /// POST to `{url}/api/v2/alerts`; `url` is stored without a trailing slash.
    Alertmanager { url: String, resend_interval: Duration },
}

/// Which alerts a sink receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Every entry must be among the alert's labels, with the same value.
    pub match_labels: BTreeMap<String, String>,
    /// Alerts below this severity are not sent.
    pub min_severity: Severity,
}

/// A shared secret; its `Debug` does not print it, so configs can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why one attempt failed. In every case the attempt did not count as delivered: the delivery
/// loop retries it (with the same idempotency key), and the sink's state is as before the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver did not answer, or the command did not finish, within the sink's timeout
    /// (the command and everything it started were killed).
    /// Nobody's fault we can name: the receiver is slow, hung or unreachable.
    /// Nothing is known to be delivered, though the receiver may have acted on it.
    #[error("no answer within {}; the alert is not counted as delivered", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The receiver answered with this non-2xx HTTP status (and the start of its body).
    /// The receiver's fault, or the configuration's for a 4xx (wrong URL or secret).
    /// Not delivered.
    #[error("the receiver answered HTTP {0}, so the alert is not delivered: {1}")]
    Status(u16, String),
    /// The connection failed (refused, reset, unreachable) or the answer was not HTTP.
    /// The network's or the receiver's fault. Not delivered.
    #[error("cannot talk to the receiver, so the alert is not delivered: {0}")]
    Io(String),
    /// The command ran and exited with this non-zero status (and the start of its output).
    /// The command's fault, or that of whatever it calls; it may have done part of its work.
    /// Not counted as delivered.
    #[error("the command exited with status {0}, so the alert is not counted as delivered: {1}")]
    ExitStatus(i32, String),
    /// The command was killed by this signal, not by us.
    /// Someone else's doing (the OOM killer, an operator). Not counted as delivered.
    #[error("the command was killed by signal {0}, so the alert is not counted as delivered: {1}")]
    Signal(i32, String),
    /// The command could not be started (not found, not executable).
    /// The configuration's fault. Nothing ran, nothing was delivered.
    #[error("cannot start the command, so nothing was delivered: {0}")]
    Spawn(String),
}

/// A ready sink. Cloning is cheap and clones share state (the Alertmanager sink's firing set).
#[derive(Debug, Clone)]
pub enum Sink {
    Webhook(WebhookSink),
    Exec(ExecSink),
    Alertmanager(AlertmanagerSink),
}

/// Validates the `[[sink]]` tables. The error is one sentence naming the sink and the field.
pub fn parse_sinks(raw: Vec<RawSink>) -> Result<Vec<SinkConfig>, String> {
    let mut names = BTreeSet::new();
    let mut sinks = Vec::with_capacity(raw.len());
    for (index, raw) in raw.into_iter().enumerate() {
        let config = parse_sink(index, raw)?;
        if !names.insert(config.name.clone()) {
            return Err(format!(
                "sink {:?}: the name is used by an earlier [[sink]]; every sink needs a unique name",
                config.name
            ));
        }
        sinks.push(config);
    }
    Ok(sinks)
}

impl SinkConfig {
    /// Whether `alert` goes to this sink: every `match` label is among the alert's labels with
    /// the same value, and the alert is at least `min_severity`.
    pub fn routes(&self, alert: &Alert) -> bool {
        alert.severity >= self.route.min_severity
            && self.route.match_labels.iter().all(|(key, value)| alert.labels.get(key) == Some(value))
    }

    /// The config's `kind` word.
    pub fn kind(&self) -> &'static str {
        match self.target {
            SinkTarget::Webhook { .. } => "webhook",
            SinkTarget::Exec { .. } => "exec",
            SinkTarget::Alertmanager { .. } => "alertmanager",
        }
    }
}

impl Sink {
    pub fn new(config: SinkConfig) -> Sink {
        match config.target {
            SinkTarget::Webhook { .. } => Sink::Webhook(WebhookSink::new(config)),
            SinkTarget::Exec { .. } => Sink::Exec(ExecSink::new(config)),
            SinkTarget::Alertmanager { .. } => Sink::Alertmanager(AlertmanagerSink::new(config)),
        }
    }

    pub fn name(&self) -> &str {
        &self.config().name
    }

    pub fn config(&self) -> &SinkConfig {
        match self {
            Sink::Webhook(sink) => sink.config(),
            Sink::Exec(sink) => sink.config(),
            Sink::Alertmanager(sink) => sink.config(),
        }
    }

    /// For sinks that keep alerts firing (Alertmanager): how many they keep, and how many
    /// they could not keep because their set was full.
    pub fn firing(&self) -> Option<(usize, u64)> {
        match self {
            Sink::Alertmanager(sink) => Some((sink.firing_count(), sink.untracked())),
            Sink::Webhook(_) | Sink::Exec(_) => None,
        }
    }

    /// Makes one attempt to deliver `stored`, within the sink's timeout. Routing is not checked
    /// here: the caller has decided that the alert goes to this sink. The webhook and exec sinks
    /// pass the stored bytes on as they are; Alertmanager's renders from the parsed document.
    pub async fn deliver(&self, stored: &StoredAlert) -> Result<(), DeliveryError> {
        match self {
            Sink::Webhook(sink) => sink.deliver(stored).await,
            Sink::Exec(sink) => sink.deliver(stored).await,
            Sink::Alertmanager(sink) => sink.deliver(&stored.alert).await,
        }
    }

    /// How often [`Sink::resend_firing`] must be called; `None` for sinks that need no resending.
    pub fn resend_interval(&self) -> Option<Duration> {
        match self {
            Sink::Alertmanager(sink) => Some(sink.resend_interval()),
            Sink::Webhook(_) | Sink::Exec(_) => None,
        }
    }

    /// Tells the sink which alerts are firing after a restart (the latest alert of every open
    /// incident); alerts this sink does not route, and resolved ones, are ignored.
    /// A no-op for sinks without a resend interval.
    pub fn restore_firing(&self, alerts: Vec<Alert>) {
        if let Sink::Alertmanager(sink) = self {
            sink.restore_firing(alerts);
        }
    }

    /// Re-posts every alert still firing; returns how many. `Ok(0)` for sinks without a resend
    /// interval.
    pub async fn resend_firing(&self) -> Result<usize, DeliveryError> {
        match self {
            Sink::Alertmanager(sink) => sink.resend_firing().await,
            Sink::Webhook(_) | Sink::Exec(_) => Ok(0),
        }
    }
}

fn parse_sink(index: usize, raw: RawSink) -> Result<SinkConfig, String> {
    let name = match raw.name.as_deref().map(str::trim) {
        Some("") => {
            return Err(format!("sink #{}: the name is empty; give every [[sink]] a name", index + 1));
        }
        Some(name) => name.to_owned(),
        None => return Err(format!("sink #{}: no name; give every [[sink]] a unique name", index + 1)),
    };
    let kind = raw.kind.as_deref().ok_or_else(|| {
        format!("sink {name:?}: no kind; set kind = \"webhook\", \"exec\" or \"alertmanager\"")
    })?;
    let only = |field: &str, present: bool, kinds: &str| {
        if present {
            Err(format!("sink {name:?}: {field} only applies to kind = {kinds}, not {kind:?}"))
        } else {
            Ok(())
        }
    };
    let target = match kind {
        "webhook" => {
            only("command", raw.command.is_some(), "\"exec\"")?;
            only("resend_interval", raw.resend_interval.is_some(), "\"alertmanager\"")?;
            let url = http_url(&name, raw.url.as_deref())?;
            let secret = match raw.secret {
                Some(secret) if secret.is_empty() => {
                    return Err(format!("sink {name:?}: secret is empty; remove it or set a real secret"));
                }
                secret => secret.map(Secret),
            };
            SinkTarget::Webhook { url, secret }
        }
        "exec" => {
            only("url", raw.url.is_some(), "\"webhook\" or \"alertmanager\"")?;
            only("secret", raw.secret.is_some(), "\"webhook\"")?;
            only("resend_interval", raw.resend_interval.is_some(), "\"alertmanager\"")?;
            let command = raw.command.unwrap_or_default();
            if command.first().is_none_or(|program| program.is_empty()) {
                return Err(format!(
                    "sink {name:?}: kind = \"exec\" needs command = [\"/path/to/program\", \"arg\", ...]"
                ));
            }
            SinkTarget::Exec { command }
        }
        "alertmanager" => {
            only("command", raw.command.is_some(), "\"exec\"")?;
            only("secret", raw.secret.is_some(), "\"webhook\"")?;
            let url = alertmanager_url(&name, raw.url.as_deref())?;
            let resend_interval = duration(&name, "resend_interval", raw.resend_interval.as_deref())?
                .unwrap_or(DEFAULT_RESEND_INTERVAL);
            SinkTarget::Alertmanager { url, resend_interval }
        }
        other => {
            return Err(format!(
                "sink {name:?}: kind = {other:?} is not a sink kind; use \"webhook\", \"exec\" or \"alertmanager\""
            ));
        }
    };
    let timeout = duration(&name, "timeout", raw.timeout.as_deref())?.unwrap_or(DEFAULT_TIMEOUT);
    let min_severity = match raw.min_severity.as_deref() {
        None | Some("info") => Severity::Info,
        Some("warning") => Severity::Warning,
        Some("critical") => Severity::Critical,
        Some(other) => {
            return Err(format!(
                "sink {name:?}: min_severity = {other:?} is not a severity; use \"info\", \"warning\" or \"critical\""
            ));
        }
    };
    let route = Route { match_labels: raw.match_labels.unwrap_or_default(), min_severity };
    Ok(SinkConfig { name, target, timeout, route })
}

/// A positive duration such as "10s"; `None` when the field is absent.
fn duration(name: &str, field: &str, text: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(text) = text else { return Ok(None) };
    let value = rollcall_core::settings::parse_duration(text)
        .map_err(|error| format!("sink {name:?}: {field} = {error}"))?;
    if value.is_zero() {
        return Err(format!("sink {name:?}: {field} is zero; it must be positive, e.g. \"10s\""));
    }
    Ok(Some(value))
}

/// An `http://host[:port][/path]` URL. https is refused because this build has no TLS.
fn http_url(name: &str, text: Option<&str>) -> Result<String, String> {
    let Some(text) = text else {
        return Err(format!("sink {name:?}: no url; set url = \"http://host:port/path\""));
    };
    if text.get(..8).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://")) {
        return Err(format!(
            "sink {name:?}: url {text:?} uses https, which this build does not support yet (it ships without TLS); use an http:// URL, for example a local relay"
        ));
    }
    let parsed = text.parse::<ureq::http::Uri>().ok().filter(|uri| uri.scheme_str() == Some("http"));
    match parsed {
        Some(uri) if uri.host().is_some_and(|host| !host.is_empty()) => Ok(text.to_owned()),
        _ => Err(format!(
            "sink {name:?}: url {text:?} is not an http:// URL; only http:// is supported, e.g. \"http://127.0.0.1:9000/hook\""
        )),
    }
}

/// Alertmanager's base URL, without a trailing slash; the sink appends `/api/v2/alerts`.
fn alertmanager_url(name: &str, text: Option<&str>) -> Result<String, String> {
    let url = http_url(name, text)?;
    if url.contains(['?', '#']) {
        return Err(format!(
            "sink {name:?}: url {url:?} has a query or fragment; give Alertmanager's base URL, e.g. \"http://127.0.0.1:9093\""
        ));
    }
    let base = url.trim_end_matches('/');
    if base.ends_with("/api/v2/alerts") {
        return Err(format!(
            "sink {name:?}: url {url:?} already ends in /api/v2/alerts; give the base URL, the sink appends the path"
        ));
    }
    Ok(base.to_owned())
}

#[cfg(test)]
mod tests;

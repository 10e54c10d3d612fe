//! The Alertmanager sink: POST of postable alerts to `{url}/api/v2/alerts`, and the resending
//! that keeps them firing.
//!
//! Alertmanager resolves a firing alert on its own once it has not heard of it for its
//! `resolve_timeout`, so every alert this sink delivered as firing is kept in a set and re-posted
//! every resend interval until a `resolved` alert for its incident goes out.
//! Alertmanager tells alerts apart by their label set, so the labels are a pure function of the
//! alert that opened them, and a resolution re-uses the labels that were posted while firing.

use super::{DeliveryError, SinkConfig, SinkTarget, http};
use crate::alerts::model::{Alert, AlertKind, Severity, SubjectKind};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// At most this many alerts are kept firing; past it, new ones are posted once but not resent
/// (counted in [`AlertmanagerSink::untracked`]).
pub const MAX_FIRING: usize = 100_000;
/// At most this many alerts per POST when resending.
const BATCH: usize = 500;

/// Firing alerts by (incident id, alertname): an incident can have a down alert and a flapping
/// notice open at once, and both must keep firing.
type FiringSet = BTreeMap<(u64, &'static str), Alert>;

#[derive(Debug, Clone)]
pub struct AlertmanagerSink {
    config: SinkConfig,
    endpoint: String,
    resend_interval: Duration,
    agent: ureq::Agent,
    firing: Arc<Mutex<FiringSet>>,
    /// Held for the whole of every POST, so a resend that took its snapshot before a resolution
    /// cannot reach Alertmanager after it and open the alert again.
    posting: Arc<tokio::sync::Mutex<()>>,
    untracked: Arc<AtomicU64>,
}

impl AlertmanagerSink {
    /// # Panics
    /// If `config` is not an Alertmanager sink's ([`super::Sink::new`] dispatches on the kind).
    pub fn new(config: SinkConfig) -> AlertmanagerSink {
        let SinkTarget::Alertmanager { url, resend_interval } = &config.target else {
            panic!("AlertmanagerSink::new called with a {} sink's config", config.kind());
        };
        AlertmanagerSink {
            endpoint: format!("{url}/api/v2/alerts"),
            resend_interval: *resend_interval,
            agent: http::agent(config.timeout),
            firing: Arc::default(),
            posting: Arc::default(),
            untracked: Arc::default(),
            config,
        }
    }

    pub fn config(&self) -> &SinkConfig {
        &self.config
    }

    pub fn resend_interval(&self) -> Duration {
        self.resend_interval
    }

    /// How many alerts are kept firing (and resent).
    pub fn firing_count(&self) -> usize {
        self.firing_set().len()
    }

    /// How many firing alerts were posted but not kept for resending because the set was full.
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }

    /// Posts `alert`: `firing`, `reminder` and `flapping` as firing (and keeps them for
    /// resending once posted), `resolved` with `endsAt` for every alert of its incident.
    pub async fn deliver(&self, alert: &Alert) -> Result<(), DeliveryError> {
        let _posting = self.posting.lock().await;
        if alert.kind != AlertKind::Resolved {
            let alert = self.same_identity(alert);
            self.post(&[postable(&alert, &alert, None)]).await?;
            self.keep(alert);
            return Ok(());
        }
        // The incident is over whether or not this POST succeeds: a retry posts it again, and
        // resending it as firing meanwhile would contradict it.
        let ended = self.take_incident(alert.incident.id);
        let ends_at = ends_at(alert);
        let mut batch: Vec<Value> =
            ended.iter().map(|opened| postable(opened, alert, Some(&ends_at))).collect();
        if !ended.iter().any(|opened| opened.kind != AlertKind::Flapping) {
            // Not in the set (never seen as firing, or lost to a restart): derive the labels from
            // the resolution itself, which carries the incident's subject and severity.
            batch.push(postable(alert, alert, Some(&ends_at)));
        }
        self.post(&batch).await
    }

    /// Adds the latest alert of every open incident, after a restart. Resolved alerts, and
    /// alerts this sink does not route, are ignored. Call [`Self::resend_firing`] soon after.
    pub fn restore_firing(&self, alerts: Vec<Alert>) {
        for alert in alerts {
            if alert.kind != AlertKind::Resolved && self.config.routes(&alert) {
                self.keep(alert);
            }
        }
    }

    /// Re-posts every alert in the firing set, in batches; returns how many were posted.
    /// On an error the remaining batches are not sent this time.
    pub async fn resend_firing(&self) -> Result<usize, DeliveryError> {
        let _posting = self.posting.lock().await;
        let firing: Vec<Alert> = self.firing_set().values().cloned().collect();
        for chunk in firing.chunks(BATCH) {
            let batch: Vec<Value> = chunk.iter().map(|alert| postable(alert, alert, None)).collect();
            self.post(&batch).await?;
        }
        Ok(firing.len())
    }

    async fn post(&self, batch: &[Value]) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(batch).expect("a JSON value serialises");
        http::post_json(&self.agent, &self.endpoint, Vec::new(), body, self.config.timeout).await
    }

    /// `alert`, with the labels, severity and start of the alert already firing for the same
    /// incident and name (if any), so that Alertmanager sees the same alert again.
    fn same_identity(&self, alert: &Alert) -> Alert {
        let mut alert = alert.clone();
        if let Some(opened) = self.firing_set().get(&(alert.incident.id, alertname(&alert))) {
            alert.labels = opened.labels.clone();
            alert.severity = opened.severity;
            alert.incident.started_at = opened.incident.started_at.clone();
        }
        alert
    }

    fn keep(&self, alert: Alert) {
        let key = (alert.incident.id, alertname(&alert));
        let mut firing = self.firing_set();
        if firing.len() >= MAX_FIRING && !firing.contains_key(&key) {
            self.untracked.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(sink = %self.config.name, incident = key.0, "firing set full; the alert will not be resent");
            return;
        }
        firing.insert(key, alert);
    }

    fn take_incident(&self, incident: u64) -> Vec<Alert> {
        let mut firing = self.firing_set();
        let keys: Vec<_> = firing
            .range((incident, "")..)
            .take_while(|(key, _)| key.0 == incident)
            .map(|(key, _)| *key)
            .collect();
        keys.iter().filter_map(|key| firing.remove(key)).collect()
    }

    fn firing_set(&self) -> std::sync::MutexGuard<'_, FiringSet> {
        // Nothing panics while holding the lock (plain map operations), and the set stays
        // consistent even if something did, so a poisoned lock is used as is.
        self.firing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One postable alert (Alertmanager API v2 `postableAlert`): labels from `opened` (the alert that
/// opened it, so that they match what Alertmanager already has), annotations from `latest`.
pub fn postable(opened: &Alert, latest: &Alert, ends_at: Option<&str>) -> Value {
    let mut value = json!({
        "labels": labels(opened),
        "annotations": {
            "summary": latest.summary,
            "description": description(latest),
            "nodes": latest.nodes.join(","),
        },
        "startsAt": opened.incident.started_at,
    });
    if let Some(ends_at) = ends_at {
        value["endsAt"] = Value::from(ends_at);
    }
    // The exit status of a crashed process, as separate annotations for templates and routes.
    if let Some(transition) = &latest.transition {
        if let Some(code) = transition.exit_code {
            value["annotations"]["exit_code"] = Value::from(code.to_string());
        }
        if let Some(signal) = transition.exit_signal {
            value["annotations"]["exit_signal"] = Value::from(signal.to_string());
        }
    }
    if let Some(token) = latest.fencing_token {
        value["annotations"]["fencing_token"] = Value::from(token.to_string());
    }
    value
}

/// `RollcallFlapping` for flapping notices, otherwise by subject.
pub fn alertname(alert: &Alert) -> &'static str {
    match (alert.kind, alert.subject.kind) {
        (AlertKind::Flapping, _) => "RollcallFlapping",
        (_, SubjectKind::Node) => "RollcallNodeDown",
        (_, SubjectKind::Check) => "RollcallCheckDown",
        (_, SubjectKind::Group) => "RollcallCorrelatedFailure",
    }
}

/// The alert's labels (names sanitised), then ours on top: `alertname`, `node` or `check`,
/// `severity` (always `warning` for flapping) and `incident`. Empty values are left out, as
/// Prometheus treats an empty label as an absent one.
pub fn labels(alert: &Alert) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> =
        alert.labels.iter().map(|(key, value)| (label_name(key), value.clone())).collect();
    labels.insert("alertname".to_owned(), alertname(alert).to_owned());
    match alert.subject.kind {
        SubjectKind::Node => labels.insert("node".to_owned(), alert.subject.id.clone()),
        SubjectKind::Check => labels.insert("check".to_owned(), alert.subject.id.clone()),
        SubjectKind::Group => None,
    };
    let severity = if alert.kind == AlertKind::Flapping { Severity::Warning } else { alert.severity };
    labels.insert("severity".to_owned(), severity.as_str().to_owned());
    labels.insert("incident".to_owned(), alert.incident.id.to_string());
    labels.retain(|_, value| !value.is_empty());
    labels
}

/// A valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`): other characters become `_`, and a
/// leading digit (or an empty name) gets a `_` in front.
pub fn label_name(key: &str) -> String {
    let name: String = key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    match name.chars().next() {
        Some(first) if !first.is_ascii_digit() => name,
        _ => format!("_{name}"),
    }
}

fn description(alert: &Alert) -> String {
    let subject = format!("{} {}", alert.subject.kind.as_str(), alert.subject.id);
    let mut text = format!(
        "{}: {} (incident {}, started {}).",
        alert.kind.as_str(),
        subject,
        alert.incident.id,
        alert.incident.started_at
    );
    if let Some(transition) = &alert.transition {
        text.push_str(&format!(
            " Last transition: {} to {} at {} ({}).",
            transition.from.as_str(),
            transition.to.as_str(),
            transition.at,
            transition.reason.as_str()
        ));
    }
    text
}

/// When a resolution ends the alert: its `resolved_at`, else its transition's time, else now.
fn ends_at(alert: &Alert) -> String {
    alert
        .incident
        .resolved_at
        .clone()
        .or_else(|| alert.transition.as_ref().map(|transition| transition.at.clone()))
        .unwrap_or_else(|| humantime::format_rfc3339_seconds(SystemTime::now()).to_string())
}

//! Checks in the shell: the forms a check takes outside the core (a `[[check]]` table in
//! the config file, a JSON body on the API, a row in the store, a JSON view for readers) and
//! the conversions between them and [`rollcall_core::checks::CheckSpec`].

use crate::clock::rfc3339_ms;
use rollcall_core::Instant;
use rollcall_core::checks::{CheckRecord, CheckSpec, CheckView, Outcome, Schedule};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A check as written in the config file (`[[check]]`) or posted to the API. Every field is
/// optional so the same form serves `PATCH`; [`CheckInput::into_spec`] says what is missing.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The secret in the ping URL. Required in the config file (it must not change across
    /// restarts); generated when the API is not given one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The name in `/ping/<ping-key>/<slug>` (`a-z 0-9 - _`); the id when not given and the
    /// id is a valid slug.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// "1h", "1d": a ping at least this often. Give `period` or `cron`, not both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// A five-field cron expression ("0 3 * * *").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone of `cron` (default "UTC").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// How late a ping may be, and how long a started run may take (default 1h).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Grace when none is given: Healthchecks.io's default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

impl CheckInput {
    /// A full specification. `token` is used when the input has none (the API's generated
    /// one); the error is one sentence naming the field.
    pub fn into_spec(self, token: Option<String>) -> Result<CheckSpec, String> {
        let id = self.id.ok_or("a check needs an `id`")?;
        let token = self.token.or(token).ok_or_else(|| {
            format!("check {id:?} needs a `token` (at least 22 characters of A-Z a-z 0-9 _ -)")
        })?;
        let grace = parse_span(&id, "grace", self.grace.as_deref())?.unwrap_or(DEFAULT_GRACE);
        let schedule = match (self.period, self.cron) {
            (Some(period), None) => {
                if self.timezone.is_some() {
                    return Err(format!("check {id:?}: `timezone` only applies to `cron`"));
                }
                Schedule::Period { period: parse_span(&id, "period", Some(&period))?.expect("given"), grace }
            }
            (None, Some(expression)) => {
                Schedule::Cron { expression, timezone: self.timezone.unwrap_or_else(|| "UTC".into()), grace }
            }
            (Some(_), Some(_)) => return Err(format!("check {id:?}: give `period` or `cron`, not both")),
            (None, None) => return Err(format!("check {id:?} needs a `period` or a `cron` schedule")),
        };
        let spec = CheckSpec {
            id,
            token,
            slug: self.slug,
            schedule,
            labels: self.labels.unwrap_or_default(),
            description: self.description.unwrap_or_default(),
        };
        spec.validate().map_err(|error| error.to_string())?;
        Ok(spec)
    }

    /// The input that recreates `spec`, so a `PATCH` can overlay its fields on it.
    pub fn from_spec(spec: &CheckSpec) -> CheckInput {
        let (period, cron, timezone) = match &spec.schedule {
            Schedule::Period { period, .. } => (Some(span(*period)), None, None),
            Schedule::Cron { expression, timezone, .. } => {
                (None, Some(expression.clone()), Some(timezone.clone()))
            }
        };
        CheckInput {
            id: Some(spec.id.clone()),
            token: Some(spec.token.clone()),
            slug: spec.slug.clone(),
            period,
            cron,
            timezone,
            grace: Some(span(spec.schedule.grace())),
            labels: Some(spec.labels.clone()),
            description: Some(spec.description.clone()),
        }
    }

    /// `self` with the fields `patch` sets replaced. Switching between `period` and `cron`
    /// drops the other one.
    pub fn patched(mut self, patch: CheckInput) -> CheckInput {
        if patch.period.is_some() {
            self.cron = None;
            self.timezone = None;
        }
        if patch.cron.is_some() {
            self.period = None;
        }
        CheckInput {
            id: self.id,
            token: patch.token.or(self.token),
            slug: patch.slug.or(self.slug),
            period: patch.period.or(self.period),
            cron: patch.cron.or(self.cron),
            timezone: patch.timezone.or(self.timezone),
            grace: patch.grace.or(self.grace),
            labels: patch.labels.or(self.labels),
            description: patch.description.or(self.description),
        }
    }
}

fn parse_span(id: &str, field: &str, text: Option<&str>) -> Result<Option<Duration>, String> {
    text.map(|text| {
        rollcall_core::settings::parse_duration(text)
            .map_err(|error| format!("check {id:?}: `{field}` = {error}"))
    })
    .transpose()
}

fn span(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// What the store keeps of a check besides its state: the spec and the facts a restart
/// needs (JSON in the `spec` column).
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    input: CheckInput,
    last_ping_wall_ms: Option<u64>,
    last_success_wall_ms: Option<u64>,
    last_outcome: Option<String>,
    paused_until_wall_ms: Option<u64>,
}

/// Where a check was defined: the config file owns its checks (removed from the file,
/// removed from the monitor); the API owns the others.
pub const SOURCE_CONFIG: &str = "config";
pub const SOURCE_API: &str = "api";

pub fn to_store(record: &CheckRecord, source: &str, now_ms: i64) -> rollcall_store::CheckRecord {
    let stored = Stored {
        input: CheckInput { token: None, ..CheckInput::from_spec(&record.spec) },
        last_ping_wall_ms: record.last_ping_wall_ms,
        last_success_wall_ms: record.last_success_wall_ms,
        last_outcome: record.last_outcome.map(|outcome| outcome.as_str().to_string()),
        paused_until_wall_ms: record.paused_until_wall_ms,
    };
    rollcall_store::CheckRecord {
        id: record.spec.id.clone(),
        token: record.spec.token.clone(),
        spec_json: serde_json::to_string(&stored).expect("a check always serializes"),
        source: source.to_string(),
        state: record.state,
        last_ping_at_ms: record.last_ping_wall_ms.map(|ms| ms as i64),
        updated_at_ms: now_ms,
    }
}

pub fn from_store(row: &rollcall_store::CheckRecord) -> Result<CheckRecord, String> {
    let stored: Stored = serde_json::from_str(&row.spec_json)
        .map_err(|error| format!("check {:?}: unreadable row: {error}", row.id))?;
    let spec = CheckInput { token: Some(row.token.clone()), ..stored.input }.into_spec(None)?;
    Ok(CheckRecord {
        spec,
        state: row.state,
        last_ping_wall_ms: stored.last_ping_wall_ms,
        last_success_wall_ms: stored.last_success_wall_ms,
        last_outcome: stored.last_outcome.as_deref().and_then(Outcome::parse),
        paused_until_wall_ms: stored.paused_until_wall_ms,
    })
}

/// A check as the API shows it.
#[derive(Serialize, Debug, Clone)]
pub struct CheckJson {
    pub id: String,
    /// The name in `/ping/<ping-key>/<slug>`, if the check has one.
    pub slug: Option<String>,
    pub state: &'static str,
    /// `period` or `cron` (+ `timezone`), and `grace`, as in the input form.
    pub schedule: CheckInput,
    pub labels: BTreeMap<String, String>,
    pub description: String,
    /// The ping path (`/ping/TOKEN`): shown only to callers with the API token.
    pub ping_path: Option<String>,
    pub last_ping_at: Option<String>,
    pub last_success_at: Option<String>,
    pub last_outcome: Option<&'static str>,
    pub paused_until: Option<String>,
    /// Milliseconds until the check goes down (or its maintenance ends) if nothing arrives.
    pub deadline_in_ms: Option<i64>,
    pub open_runs: usize,
    /// The last pings, newest first.
    pub pings: Vec<PingJson>,
}

#[derive(Serialize, Debug, Clone)]
pub struct PingJson {
    pub signal: String,
    pub at: String,
    pub rid: Option<String>,
    pub duration_ms: Option<u64>,
    pub body: String,
    pub body_len: usize,
    pub body_truncated: bool,
}

pub fn check_json(view: &CheckView<'_>, now: Instant, reveal: bool) -> CheckJson {
    let mut schedule = CheckInput::from_spec(view.spec);
    schedule.id = None;
    schedule.token = None;
    schedule.slug = None;
    schedule.labels = None;
    schedule.description = None;
    let ms = |wall: Option<u64>| wall.map(|ms| rfc3339_ms(ms as i64));
    CheckJson {
        id: view.id.to_string(),
        slug: view.spec.slug().map(str::to_string),
        state: view.state.as_str(),
        schedule,
        labels: view.spec.labels.clone(),
        description: view.spec.description.clone(),
        ping_path: reveal.then(|| format!("/ping/{}", view.spec.token)),
        last_ping_at: ms(view.last_ping_wall_ms),
        last_success_at: ms(view.last_success_wall_ms),
        last_outcome: view.last_outcome.map(Outcome::as_str),
        paused_until: ms(view.paused_until_wall_ms),
        deadline_in_ms: view.deadline.map(|at| {
            if at >= now { (at - now).as_millis() as i64 } else { -((now - at).as_millis() as i64) }
        }),
        open_runs: view.open_runs,
        pings: view
            .history
            .iter()
            .rev()
            .map(|ping| PingJson {
                signal: ping.signal.to_string(),
                at: rfc3339_ms(ping.wall_ms as i64),
                rid: ping.rid.as_deref().map(str::to_string),
                duration_ms: ping.duration.map(|d| d.as_millis() as u64),
                body: String::from_utf8_lossy(&ping.body).into_owned(),
                body_len: ping.body_len,
                body_truncated: ping.body_truncated,
            })
            .collect(),
    }
}

/// A fresh token: 128 bits from the OS random source, as 32 hex digits.
pub fn generate_token() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| format!("cannot read the OS random source: {error}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests;

//! The owner's side of checks: pings, the checks API, check events into the store and the
//! incident layer.

use super::{Owner, log_transition};
use crate::checks::{
    CheckInput, CheckJson, SOURCE_API, SOURCE_CONFIG, check_json, from_store, generate_token, to_store,
};
use crate::store_thread::transition_write;
use rollcall_core::alerts::SubjectKind;
use rollcall_core::checks::{
    CheckError, CheckEvent, CheckSpec, Checks, Ping, PingError, PingReceipt, Schedule, Signal, validate_slug,
};
use rollcall_core::ratelimit::RateLimiter;
use rollcall_store::{PingRecord, Write};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::oneshot;

/// Requests about checks, from HTTP handlers.
pub enum CheckCommand {
    List {
        reveal: bool,
        reply: oneshot::Sender<Vec<CheckJson>>,
    },
    Get {
        id: String,
        reveal: bool,
        reply: oneshot::Sender<Option<CheckJson>>,
    },
    Create {
        input: CheckInput,
        reply: oneshot::Sender<Result<CheckJson, CheckFailure>>,
    },
    Update {
        id: String,
        patch: CheckInput,
        reply: oneshot::Sender<Result<CheckJson, CheckFailure>>,
    },
    Delete {
        id: String,
        reply: oneshot::Sender<Result<(), CheckFailure>>,
    },
    Pause {
        id: String,
        until_ms: Option<i64>,
        reply: oneshot::Sender<Result<CheckJson, CheckFailure>>,
    },
    Resume {
        id: String,
        reply: oneshot::Sender<Result<CheckJson, CheckFailure>>,
    },
    Ping {
        target: PingTarget,
        /// The path after the token or slug (`start`, `fail`, `log`, an exit code), if any.
        suffix: Option<String>,
        rid: Option<String>,
        body: Vec<u8>,
        source: IpAddr,
        reply: oneshot::Sender<Result<PingReceipt, PingRefusal>>,
    },
    /// A ping the HTTP layer refused before reading it (a body over the hard limit): only
    /// counted.
    Refused {
        error: PingError,
    },
}

/// How a ping names its check.
#[derive(Debug)]
pub enum PingTarget {
    /// `/ping/<token>`.
    Token(String),
    /// `/ping/<ping-key>/<slug>`, the ping key already checked by the HTTP layer; `create`
    /// (`?create=1`) asks for the check to be made if it is missing and `pings.auto_create`
    /// is on.
    Slug { slug: String, create: bool },
    /// `/ping/<wrong-key>/<slug>/<signal>`: answered like an unknown slug, after the source's
    /// rate limit.
    WrongKey,
}

/// Healthchecks' defaults for a check made by its first ping: a day, and an hour of grace.
const AUTO_PERIOD: Duration = Duration::from_secs(86_400);
const AUTO_GRACE: Duration = Duration::from_secs(3600);

/// Where a ping's answer goes.
pub(super) type PingReply = oneshot::Sender<Result<PingReceipt, PingRefusal>>;

/// Why a checks command did nothing: an HTTP status, a stable code, a sentence.
#[derive(Debug)]
pub struct CheckFailure {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

/// Why a ping did nothing, and when to try again for a rate limit.
#[derive(Debug)]
pub struct PingRefusal {
    pub error: PingError,
    pub retry_after: Option<Duration>,
}

impl From<CheckError> for CheckFailure {
    fn from(error: CheckError) -> CheckFailure {
        let (status, code) = match &error {
            CheckError::Invalid(_) => (400, "invalid"),
            CheckError::DuplicateId(_) | CheckError::DuplicateToken | CheckError::DuplicateSlug(_) => {
                (409, "conflict")
            }
            CheckError::Capacity(_) => (409, "capacity"),
            CheckError::UnknownCheck(_) => (404, "not_found"),
            CheckError::EndsInPast => (400, "invalid"),
        };
        CheckFailure { status, code, message: error.to_string() }
    }
}

fn invalid(message: String) -> CheckFailure {
    CheckFailure { status: 400, code: "invalid", message }
}

fn not_found(id: &str) -> CheckFailure {
    CheckFailure { status: 404, code: "not_found", message: format!("no check named {id:?}") }
}

/// The check table, its rate limiters, and who owns each check (config file or API).
pub struct CheckState {
    pub table: Checks,
    pub by_source: RateLimiter<IpAddr>,
    pub by_token: RateLimiter<String>,
    pub sources: BTreeMap<String, &'static str>,
    /// `pings.auto_create`: `/ping/<ping-key>/<slug>?create=1` makes a missing check.
    pub auto_create: bool,
    /// `pings.ping_key`: no check may have it as its token, or its URLs would be ambiguous.
    pub ping_key: Option<String>,
}

impl Owner {
    pub(super) fn answer_check(&mut self, command: CheckCommand) {
        let now = self.clock.now();
        let wall = self.wall_ms();
        match command {
            CheckCommand::List { reveal, reply } => {
                let _ = reply
                    .send(self.checks.table.checks().map(|view| check_json(&view, now, reveal)).collect());
            }
            CheckCommand::Get { id, reveal, reply } => {
                let _ = reply.send(self.check_view(&id, reveal));
            }
            CheckCommand::Create { input, reply } => {
                let result = (|| {
                    let token = generate_token().map_err(|message| CheckFailure {
                        status: 500,
                        code: "internal",
                        message,
                    })?;
                    let spec = input.into_spec(Some(token)).map_err(invalid)?;
                    self.refuse_ping_key_token(&spec)?;
                    let id = spec.id.clone();
                    self.checks.table.add(spec, now, wall)?;
                    self.checks.sources.insert(id.clone(), SOURCE_API);
                    Ok(id)
                })();
                let _ = reply.send(result.map(|id| self.after_check_change(&id)));
            }
            CheckCommand::Update { id, patch, reply } => {
                let result = (|| {
                    if patch.id.as_ref().is_some_and(|new| *new != id) {
                        return Err(invalid("a check's `id` cannot change; create a new check".into()));
                    }
                    let view = self.checks.table.check(&id).ok_or_else(|| not_found(&id))?;
                    let spec =
                        CheckInput::from_spec(view.spec).patched(patch).into_spec(None).map_err(invalid)?;
                    self.refuse_ping_key_token(&spec)?;
                    self.checks.table.update(&id, spec, now, wall)?;
                    Ok(())
                })();
                let _ = reply.send(result.map(|()| self.after_check_change(&id)));
            }
            CheckCommand::Delete { id, reply } => {
                let result = if self.checks.table.remove(&id) {
                    self.checks.sources.remove(&id);
                    self.persist.write(vec![Write::DeleteCheck { id: id.clone() }]);
                    Ok(())
                } else {
                    Err(not_found(&id))
                };
                let _ = reply.send(result);
            }
            CheckCommand::Pause { id, until_ms, reply } => {
                let result = match until_ms {
                    None if self.checks.table.pause(&id, now) => Ok(()),
                    None => Err(not_found(&id)),
                    Some(until) => self
                        .checks
                        .table
                        .pause_until(&id, until.max(0) as u64, now, wall)
                        .map_err(CheckFailure::from),
                };
                let _ = reply.send(result.map(|()| self.after_check_change(&id)));
            }
            CheckCommand::Resume { id, reply } => {
                let result =
                    if self.checks.table.resume(&id, now, wall) { Ok(()) } else { Err(not_found(&id)) };
                let _ = reply.send(result.map(|()| self.after_check_change(&id)));
            }
            CheckCommand::Ping { target, suffix, rid, body, source, reply } => {
                let result = self.ping(target, suffix.as_deref(), rid.as_deref(), &body, source);
                self.answer_pings(&mut vec![(reply, result)]);
            }
            CheckCommand::Refused { error } => self.checks.table.record_rejection(error),
        }
    }

    /// Answers pings already handled: their events are drained and their writes queued for
    /// the store in one batch first, so no ping is answered before its row is queued.
    pub(super) fn answer_pings(&mut self, pinged: &mut Vec<(PingReply, Result<PingReceipt, PingRefusal>)>) {
        if pinged.is_empty() {
            return;
        }
        self.drain_events();
        for (reply, result) in pinged.drain(..) {
            let _ = reply.send(result);
        }
    }

    /// One HTTP ping: the source's and the token's rate limits first (so that scanning for
    /// tokens is limited too), then the table. Its events are left for the caller to drain.
    pub(super) fn ping(
        &mut self,
        target: PingTarget,
        suffix: Option<&str>,
        rid: Option<&str>,
        body: &[u8],
        source: IpAddr,
    ) -> Result<PingReceipt, PingRefusal> {
        let now = self.clock.now();
        let refuse = |checks: &mut CheckState, error: PingError, retry_after: Option<Duration>| {
            checks.table.record_rejection(error);
            PingRefusal { error, retry_after }
        };
        if !self.checks.by_source.allow(&source, now) {
            let retry_after = self.checks.by_source.retry_after(&source, now);
            return Err(refuse(&mut self.checks, PingError::RateLimited, retry_after));
        }
        if matches!(target, PingTarget::WrongKey) {
            return Err(refuse(&mut self.checks, PingError::UnknownSlug, None));
        }
        let signal = match Signal::parse(suffix) {
            Ok(signal) => signal,
            // No signal after an unknown token: `/ping/<ping-key>/<slug>` with a wrong key,
            // answered like an unknown slug (a known token keeps its 400).
            Err(_) if self.is_wrong_ping_key(&target) => {
                return Err(refuse(&mut self.checks, PingError::UnknownSlug, None));
            }
            Err(error) => return Err(refuse(&mut self.checks, error, None)),
        };
        let token = match target {
            PingTarget::Token(token) => token,
            PingTarget::Slug { slug, create } => match self.token_of_slug(&slug, create) {
                Some(token) => token,
                None => return Err(refuse(&mut self.checks, PingError::UnknownSlug, None)),
            },
            PingTarget::WrongKey => unreachable!("refused above"),
        };
        let token = token.as_str();
        // Both URL forms share the check's bucket, keyed by its token.
        let key = token.to_string();
        if self.checks.table.by_token(token).is_some() && !self.checks.by_token.allow(&key, now) {
            let retry_after = self.checks.by_token.retry_after(&key, now);
            return Err(refuse(&mut self.checks, PingError::RateLimited, retry_after));
        }
        let wall = self.wall_ms();
        self.checks
            .table
            .handle_ping(token, Ping { signal, rid, body }, now, wall)
            .map_err(|error| PingRefusal { error, retry_after: None })
    }

    fn is_wrong_ping_key(&self, target: &PingTarget) -> bool {
        let PingTarget::Token(token) = target else { return false };
        self.checks.ping_key.is_some() && self.checks.table.by_token(token).is_none()
    }

    fn refuse_ping_key_token(&self, spec: &CheckSpec) -> Result<(), CheckFailure> {
        if self.checks.ping_key.as_ref() == Some(&spec.token) {
            return Err(CheckFailure {
                status: 409,
                code: "conflict",
                message: format!("check {:?}: its token is pings.ping_key; give it another", spec.id),
            });
        }
        Ok(())
    }

    /// The token of the check a slug names, after making the check if it is missing,
    /// `create` was asked and `pings.auto_create` is on.
    fn token_of_slug(&mut self, slug: &str, create: bool) -> Option<String> {
        if let Some(check) = self.checks.table.by_slug(slug) {
            return Some(check.spec.token.clone());
        }
        if !create || !self.checks.auto_create || validate_slug(slug).is_err() {
            return None;
        }
        let token = generate_token().map_err(|error| tracing::error!(%error, "cannot make a token")).ok()?;
        let spec = CheckSpec {
            id: slug.to_string(),
            token: token.clone(),
            slug: None,
            schedule: Schedule::Period { period: AUTO_PERIOD, grace: AUTO_GRACE },
            labels: BTreeMap::new(),
            description: "created by its first ping".into(),
        };
        let (now, wall) = (self.clock.now(), self.wall_ms());
        // An id taken by a check with another slug, a full table: nothing is made (a full table is counted by the table).
        if let Err(error) = self.checks.table.add(spec, now, wall) {
            tracing::debug!(slug, %error, "a ping asked for a check that cannot be made");
            return None;
        }
        tracing::info!(check = slug, "check created by its first ping");
        self.checks.sources.insert(slug.to_string(), SOURCE_API);
        let mut batch = Vec::new();
        self.persist_check(slug, &mut batch);
        self.persist.write(batch);
        Some(token)
    }

    fn check_view(&self, id: &str, reveal: bool) -> Option<CheckJson> {
        self.checks.table.check(id).map(|view| check_json(&view, self.clock.now(), reveal))
    }

    /// Persists a check after a command changed it and answers with its view (with its ping
    /// path: only authorised callers send commands).
    fn after_check_change(&mut self, id: &str) -> CheckJson {
        self.drain_events();
        let mut batch = Vec::new();
        self.persist_check(id, &mut batch);
        self.persist.write(batch);
        self.check_view(id, true).expect("the check was just changed, so it exists")
    }

    pub(super) fn persist_check(&self, id: &str, batch: &mut Vec<Write>) {
        if let Some(record) = self.checks.table.record(id) {
            let source = self.checks.sources.get(id).copied().unwrap_or(SOURCE_API);
            batch.push(Write::Check(to_store(&record, source, self.clock.wall_ms(self.clock.now()))));
        }
    }

    /// Check events into store writes and the incident layer, in order.
    /// A check's own row is written once per batch, after its events, in its latest state:
    /// a run of pings to one check costs one row of it, not one per ping.
    pub(super) fn drain_check_events(&mut self, batch: &mut Vec<Write>) {
        let mut changed: BTreeSet<std::sync::Arc<str>> = BTreeSet::new();
        while let Some(event) = self.checks.table.poll_event() {
            match event {
                CheckEvent::Transition(transition) => {
                    log_transition("check", &transition);
                    self.alerter.handle_transition(SubjectKind::Check, &transition, transition.noticed);
                    batch.push(transition_write(SubjectKind::Check, &transition, &self.clock));
                    changed.insert(transition.node.clone());
                }
                CheckEvent::Pinged { check, ping } => {
                    let keep = self.checks.table.config().history as u32;
                    batch.push(Write::Ping {
                        record: PingRecord {
                            check_id: check.to_string(),
                            signal: ping.signal.to_string(),
                            rid: ping.rid.as_deref().map(str::to_string),
                            duration_ms: ping.duration.map(|d| d.as_millis() as i64),
                            body: ping.body.to_vec(),
                            body_len: ping.body_len as u64,
                            body_truncated: ping.body_truncated,
                            at_ms: ping.wall_ms as i64,
                        },
                        keep,
                    });
                    changed.insert(check);
                }
            }
        }
        for check in changed {
            self.persist_check(&check, batch);
        }
    }

    fn wall_ms(&self) -> u64 {
        self.clock.wall_ms(self.clock.now()).max(0) as u64
    }
}

/// Builds the check table at start: the stored checks first (with their states), then the
/// config file's, which win for the checks the file defines; config checks no longer in the
/// file are removed. Returns the table and the writes that record the changes.
pub fn start_checks(
    settings: &crate::settings::Settings,
    stored: &[rollcall_store::CheckRecord],
    stored_pings: &BTreeMap<String, Vec<PingRecord>>,
    clock: &crate::clock::Clock,
    now: rollcall_core::Instant,
    wall: u64,
    now_ms: i64,
) -> anyhow::Result<(CheckState, Vec<Write>)> {
    let ping = &settings.pings;
    let mut table = Checks::new(ping.table.clone())
        .map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
    let mut sources: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut writes = Vec::new();
    let configured: BTreeMap<&str, &CheckSpec> =
        settings.checks.iter().map(|spec| (spec.id.as_str(), spec)).collect();
    for row in stored {
        if row.source == SOURCE_CONFIG && !configured.contains_key(row.id.as_str()) {
            tracing::info!(check = %row.id, "check removed from the config file; forgetting it");
            writes.push(Write::DeleteCheck { id: row.id.clone() });
            continue;
        }
        match from_store(row) {
            Ok(record) => {
                table
                    .restore(record, now, wall)
                    .map_err(|error| anyhow::anyhow!("cannot restore check {:?}: {error}", row.id))?;
                let pings = stored_pings.get(row.id.as_str()).into_iter().flatten();
                // The store lists them newest first; the history wants them in arrival order.
                table.restore_pings(&row.id, pings.rev().filter_map(|ping| restored_ping(ping, clock)));
                sources.insert(
                    row.id.clone(),
                    if row.source == SOURCE_CONFIG { SOURCE_CONFIG } else { SOURCE_API },
                );
            }
            Err(problem) => anyhow::bail!("cannot restore the store: {problem}"),
        }
    }
    for spec in &settings.checks {
        let changed = match table.check(&spec.id) {
            Some(view) if view.spec == spec => false,
            Some(_) => {
                table
                    .update(&spec.id, spec.clone(), now, wall)
                    .map_err(|error| anyhow::anyhow!("invalid configuration: {error}"))?;
                true
            }
            None => {
                table
                    .add(spec.clone(), now, wall)
                    .map_err(|error| anyhow::anyhow!("invalid configuration: {error}"))?;
                true
            }
        };
        let moved = sources.insert(spec.id.clone(), SOURCE_CONFIG) != Some(SOURCE_CONFIG);
        if changed || moved {
            let record = table.record(&spec.id).expect("just added");
            writes.push(Write::Check(to_store(&record, SOURCE_CONFIG, now_ms)));
        }
    }
    let state = CheckState {
        table,
        by_source: RateLimiter::new(ping.per_source_rate, ping.per_source_burst, 100_000)
            .map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?,
        by_token: RateLimiter::new(ping.per_token_rate, ping.per_token_burst, 100_000)
            .map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?,
        sources,
        auto_create: ping.auto_create,
        ping_key: ping.ping_key.clone(),
    };
    Ok((state, writes))
}

/// A stored ping as the check table keeps it. `None` for a signal this version cannot read.
fn restored_ping(
    ping: &PingRecord,
    clock: &crate::clock::Clock,
) -> Option<rollcall_core::checks::PingRecord> {
    Some(rollcall_core::checks::PingRecord {
        signal: ping.signal.parse::<Signal>().ok()?,
        at: clock.instant_at_wall_ms(ping.at_ms),
        wall_ms: ping.at_ms.max(0) as u64,
        rid: ping.rid.as_deref().map(std::sync::Arc::from),
        duration: ping.duration_ms.map(|ms| Duration::from_millis(ms.max(0) as u64)),
        body: std::sync::Arc::from(ping.body.as_slice()),
        body_len: ping.body_len as usize,
        body_truncated: ping.body_truncated,
    })
}

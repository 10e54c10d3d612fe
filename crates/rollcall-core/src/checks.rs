//! Checks: job-style heartbeat sources fed by HTTP pings, in Healthchecks.io's grammar
//! (`/ping/{token}`, `/start`, `/fail`, `/log`, `/{exit-code}`, `?rid=`).
//!
//! This is the sans-IO table of checks: it judges pings and deadlines and returns events.
//! It does not speak HTTP, rate-limit (see [`crate::ratelimit`]), store anything or read a
//! clock: the shell passes the monotonic `now` and the wall time in milliseconds since the
//! Unix epoch (`wall_ms`) to every call that needs them. Start reading at [`Checks`].
//!
//! The rules, in short (the user-facing version is `docs/CHECKS.md`):
//! - a check is `new` until its first finished run; a success (or exit code 0) makes it
//!   `up`, a failure (`/fail` or a non-zero exit code) makes it `down` at once, with reason
//!   `fail-signal`; a `down` check is `up` again on its next success;
//! - an `up` check goes `down` (reason `timeout`) at the earlier of its schedule deadline
//!   (period: last success + period + grace; cron: first tick after the last success, in the
//!   check's time zone, + grace) and the deadline of any started run (start + grace);
//! - `/log` and `/start` never change the state by themselves; a `new` or `down` check has
//!   no deadline;
//! - a paused check records pings and never goes down; when the pause ends (a resume, or
//!   the end of a maintenance window) the check takes the state its last finished run said
//!   and, if `up`, a full deadline counted from that moment.

mod check;
mod spec;
mod types;

pub use spec::{
    CheckField, CheckSpec, CheckSpecError, MAX_CRON_EXPRESSION, MAX_DESCRIPTION, MAX_SLUG, MAX_SPAN,
    MAX_TOKEN_LEN, MIN_SPAN, MIN_TOKEN_LEN, Schedule, validate_slug,
};
pub use types::{
    CheckError, CheckEvent, CheckRecord, CheckView, ChecksConfig, ChecksStats, MAX_RID, Outcome, Ping,
    PingError, PingReceipt, PingRecord, Signal,
};

use crate::monitor::{NodeState, Reason, Transition};
use crate::{ConfigError, Instant};
use check::{Check, Due};
use core::time::Duration;
use sha2::{Digest, Sha256};
use spec::Compiled;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// The table of checks (sans-IO).
///
/// A shell drives it like this:
/// 1. at start, [`Checks::restore`] every stored check, then [`Checks::add`] the checks of
///    the config file that the store did not have (or [`Checks::update`] those that changed);
/// 2. for every HTTP ping, parse the path with [`Signal::parse`], ask the rate limiters,
///    then call [`Checks::handle_ping`] with the token, the ping, `now` and `wall_ms`;
///    report pings refused before that with [`Checks::record_rejection`];
/// 3. when the instant returned by [`Checks::poll_timeout`] has come, call
///    [`Checks::handle_timeout`];
/// 4. after each `handle_*` call or command, drain [`Checks::poll_event`] and act on each
///    event in order (persist, then react), and persist [`Checks::record`] of the checks it
///    names.
///
/// Each check has at most one entry in an ordered timer queue, moved on every ping in
/// O(log N): a timeout only ever looks at the checks whose deadline has come.
#[derive(Debug)]
pub struct Checks {
    config: ChecksConfig,
    /// Checks by dense index; a removed check leaves a hole that the next addition reuses.
    slots: Vec<Option<Check>>,
    free: Vec<u32>,
    by_id: BTreeMap<Arc<str>, u32>,
    /// By SHA-256 of the token, so that a lookup compares digests, never the secret itself.
    by_token: BTreeMap<[u8; 32], u32>,
    /// By slug (`/ping/<ping-key>/<slug>`); the ping key, checked by the shell, is the secret.
    by_slug: BTreeMap<Arc<str>, u32>,
    /// Every pending deadline, with its check's index.
    timers: BTreeSet<(Instant, u32)>,
    events: VecDeque<CheckEvent>,
    stats: ChecksStats,
    /// The end of the monitor's last stall, if any (see [`Checks::handle_self_pause`]).
    observed_from: Option<Instant>,
}

impl Checks {
    /// An empty table. Fails if the configuration is invalid (one sentence naming the problem).
    pub fn new(config: ChecksConfig) -> Result<Checks, ConfigError> {
        config.validate()?;
        Ok(Checks {
            config,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: BTreeMap::new(),
            by_token: BTreeMap::new(),
            by_slug: BTreeMap::new(),
            timers: BTreeSet::new(),
            events: VecDeque::new(),
            stats: ChecksStats::default(),
            observed_from: None,
        })
    }

    // ---- getters ----

    pub fn config(&self) -> &ChecksConfig {
        &self.config
    }

    pub fn stats(&self) -> &ChecksStats {
        &self.stats
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn check(&self, id: &str) -> Option<CheckView<'_>> {
        self.by_id.get(id).map(|&index| self.view(index))
    }

    /// Every check, by id.
    pub fn checks(&self) -> impl Iterator<Item = CheckView<'_>> {
        self.by_id.values().map(|&index| self.view(index))
    }

    /// The check a ping URL names, if any.
    pub fn by_token(&self, token: &str) -> Option<CheckView<'_>> {
        self.index_of_token(token).map(|index| self.view(index))
    }

    /// The check a slug names, if any.
    pub fn by_slug(&self, slug: &str) -> Option<CheckView<'_>> {
        self.by_slug.get(slug).map(|&index| self.view(index))
    }

    /// What the store keeps of a check.
    pub fn record(&self, id: &str) -> Option<CheckRecord> {
        let check = self.get(*self.by_id.get(id)?);
        Some(CheckRecord {
            spec: check.spec.clone(),
            state: check.state,
            last_ping_wall_ms: check.last_ping_wall_ms,
            last_success_wall_ms: check.last_success_wall_ms,
            last_outcome: check.last_outcome,
            paused_until_wall_ms: check.paused_until.map(|(wall_ms, _)| wall_ms),
        })
    }

    // ---- inputs ----

    /// Handles one ping. A refused ping changes nothing but its counter.
    ///
    /// The body is kept up to `body_limit` bytes; a longer one is cut and the ping flagged,
    /// never refused. The receipt says the check's state after the ping.
    pub fn handle_ping(
        &mut self,
        token: &str,
        ping: Ping<'_>,
        now: Instant,
        wall_ms: u64,
    ) -> Result<PingReceipt, PingError> {
        let Some(index) = self.index_of_token(token) else {
            return Err(self.reject(PingError::UnknownToken));
        };
        let rid: Option<Arc<str>> = match ping.rid {
            None | Some("") => None,
            Some(rid) if rid.len() <= MAX_RID && rid.bytes().all(|b| b.is_ascii_graphic()) => {
                Some(rid.into())
            }
            Some(_) => return Err(self.reject(PingError::BadRid)),
        };
        *self.stats.pings.entry(ping.signal.as_str()).or_default() += 1;
        let kept = ping.body.len().min(self.config.body_limit);
        let body_truncated = kept < ping.body.len();
        self.stats.bodies_truncated += u64::from(body_truncated);
        let (max_runs, history) = (self.config.max_open_runs, self.config.history);

        let check = self.get_mut(index);
        check.last_ping_wall_ms = Some(wall_ms);
        let mut dropped = false;
        let duration = match ping.signal {
            Signal::Start => {
                dropped = check.open_run(rid.clone(), now, max_runs);
                None
            }
            Signal::Log => None,
            Signal::Success | Signal::Fail | Signal::ExitCode(_) => check.close_run(rid.as_deref(), now),
        };
        let record = PingRecord {
            signal: ping.signal,
            at: now,
            wall_ms,
            rid,
            duration,
            body: ping.body[..kept].into(),
            body_len: ping.body.len(),
            body_truncated,
        };
        check.remember(record.clone(), history);
        let id = check.id.clone();
        self.stats.runs_dropped += u64::from(dropped);
        self.events.push_back(CheckEvent::Pinged { check: id.clone(), ping: record });

        if ping.signal.is_finish() {
            self.finish(index, !ping.signal.is_failure(), now, wall_ms);
        }
        self.reschedule(index);
        Ok(PingReceipt { check: id, state: self.get(index).state, duration, body_truncated })
    }

    /// Handles every deadline due at `now`. Call it when [`Checks::poll_timeout`] says.
    pub fn handle_timeout(&mut self, now: Instant, wall_ms: u64) {
        let mut fired = Vec::new();
        while let Some(&(at, index)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.get_mut(index).timer = None;
            fired.push(index);
        }
        self.stats.deadlines_fired += fired.len() as u64;
        for index in fired {
            self.on_deadline(index, now, wall_ms);
        }
    }

    /// The monitor's own loop was stalled until `resumed` (the `SelfPause` event of
    /// [`crate::Monitor`]): pings may have been waiting in the network. No check goes down
    /// before one grace after `resumed`; a deadline that comes earlier is pushed to then.
    pub fn handle_self_pause(&mut self, resumed: Instant) {
        self.observed_from = Some(self.observed_from.map_or(resumed, |from| from.max(resumed)));
    }

    /// The wall clock was stepped (NTP, a VM restored from a snapshot, a suspended machine):
    /// `wall_ms` is a fresh reading at `now`. The deadlines kept as wall times (cron
    /// deadlines, the ends of maintenance windows) are mapped to the monotonic clock again.
    ///
    /// A step back makes them wait until the wall clock passes them. A step forward brings
    /// them sooner: a window whose end the step passed ends at once, but a cron deadline comes
    /// no sooner than one grace from `now` (and no later than it was due before), because a cron
    /// daemon on the stepped clock starts the jobs the step skipped only after it (Vixie cron
    /// and cronie run them at once).
    /// One pass over the checks; steps are rare.
    pub fn handle_wall_step(&mut self, now: Instant, wall_ms: u64) {
        self.stats.wall_steps += 1;
        for index in 0..self.slots.len() {
            let Some(check) = self.slots[index].as_mut() else { continue };
            let grace = check.grace();
            if let Some(Due { at, wall_ms: Some(due_wall) }) = check.due {
                let due = Due { at: wall_to_instant(due_wall, now, wall_ms), wall_ms: Some(due_wall) };
                // Never sooner than one grace from now, but never later than it already was:
                // a small step forward (or slewing taken up as one) postpones nothing.
                check.due = Some(push_back(due, at.min(now + grace)));
            }
            if let Some((until, _)) = check.paused_until {
                check.paused_until = Some((until, wall_to_instant(until, now, wall_ms).max(now)));
            }
            // Slots are indexed by u32 (see `insert`).
            self.reschedule(index as u32);
        }
    }

    /// Counts a ping the shell refused before it reached the table: a bad signal, a rate
    /// limit. Changes nothing else.
    pub fn record_rejection(&mut self, error: PingError) {
        self.reject(error);
    }

    // ---- commands ----

    /// Adds a check, `new` until its first finished run.
    pub fn add(&mut self, spec: CheckSpec, now: Instant, wall_ms: u64) -> Result<(), CheckError> {
        let schedule = self.admit(&spec)?;
        self.insert(spec, schedule, NodeState::New, now, wall_ms);
        Ok(())
    }

    /// Replaces a check's spec (the id stays). Its state, pings and open runs are kept; an
    /// `up` check whose schedule changed gets a deadline recomputed from its last success,
    /// but never sooner than one grace from `now`.
    pub fn update(
        &mut self,
        id: &str,
        spec: CheckSpec,
        now: Instant,
        wall_ms: u64,
    ) -> Result<(), CheckError> {
        let Some(&index) = self.by_id.get(id) else { return Err(CheckError::UnknownCheck(id.into())) };
        if spec.id != id {
            return Err(CheckError::Invalid(
                CheckSpecError::new(CheckField::Id, "a check's id cannot change").of(id),
            ));
        }
        spec.validate().map_err(CheckError::Invalid)?;
        let old_key = token_key(&self.get(index).spec.token);
        let new_key = token_key(&spec.token);
        if self.by_token.get(&new_key).is_some_and(|&other| other != index) {
            return Err(CheckError::DuplicateToken);
        }
        if let Some(slug) = spec.slug()
            && self.by_slug.get(slug).is_some_and(|&other| other != index)
        {
            return Err(CheckError::DuplicateSlug(slug.into()));
        }
        let schedule = spec.schedule.compile().map_err(|error| CheckError::Invalid(error.of(id)))?;
        self.by_token.remove(&old_key);
        self.by_token.insert(new_key, index);
        if let Some(old_slug) = self.get(index).spec.slug() {
            let old_slug: Arc<str> = old_slug.into();
            self.by_slug.remove(&old_slug);
        }
        if let Some(slug) = spec.slug() {
            self.by_slug.insert(slug.into(), index);
        }
        let check = self.get_mut(index);
        let changed = check.spec.schedule != spec.schedule;
        check.spec = spec;
        check.schedule = schedule;
        if changed && check.state == NodeState::Up {
            let (anchor, anchor_wall_ms) = (check.anchor, check.anchor_wall_ms);
            self.rebase(index, anchor, anchor_wall_ms, now, wall_ms);
        }
        self.reschedule(index);
        Ok(())
    }

    /// Removes a check and its pending deadline. Returns false for an unknown id.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(index) = self.by_id.remove(id) else { return false };
        self.set_timer(index, None);
        let check = self.slots[index as usize].take().expect("by_id only names occupied slots");
        self.by_token.remove(&token_key(&check.spec.token));
        if let Some(slug) = check.spec.slug() {
            self.by_slug.remove(slug);
        }
        self.stats.checks_by_state[check.state.index()] -= 1;
        self.free.push(index);
        true
    }

    /// Pauses a check until [`Checks::resume`]: pings are recorded, deadlines are not
    /// judged. Pausing a check in a maintenance window makes the pause open-ended. Returns
    /// false for an unknown id.
    pub fn pause(&mut self, id: &str, now: Instant) -> bool {
        let Some(&index) = self.by_id.get(id) else { return false };
        if self.get(index).state != NodeState::Paused {
            self.transition(index, NodeState::Paused, Reason::Pause, now, now);
        }
        self.get_mut(index).paused_until = None;
        self.reschedule(index);
        true
    }

    /// Pauses a check until the wall time `until_wall_ms` (a maintenance window). When it
    /// ends, the check is judged again with a full deadline counted from the end of the
    /// window (a period + grace, or the next cron tick + grace), so it never goes down at once.
    pub fn pause_until(
        &mut self,
        id: &str,
        until_wall_ms: u64,
        now: Instant,
        wall_ms: u64,
    ) -> Result<(), CheckError> {
        let Some(&index) = self.by_id.get(id) else { return Err(CheckError::UnknownCheck(id.into())) };
        if until_wall_ms <= wall_ms {
            return Err(CheckError::EndsInPast);
        }
        if self.get(index).state != NodeState::Paused {
            self.transition(index, NodeState::Paused, Reason::Pause, now, now);
        }
        let end = wall_to_instant(until_wall_ms, now, wall_ms);
        self.get_mut(index).paused_until = Some((until_wall_ms, end));
        self.reschedule(index);
        Ok(())
    }

    /// Ends a pause now: the check takes the state its last finished run said (`new` if it
    /// never finished one) and, if `up`, a full deadline from `now`. Returns false for an
    /// unknown id; resuming a check that is not paused does nothing.
    pub fn resume(&mut self, id: &str, now: Instant, wall_ms: u64) -> bool {
        let Some(&index) = self.by_id.get(id) else { return false };
        if self.get(index).state == NodeState::Paused {
            self.end_pause(index, now, wall_ms, now, wall_ms);
        }
        true
    }

    /// Adds a check read back from the store. It gets a fresh grace: an `up` check is judged
    /// from its last success, but never sooner than one grace from `now` (the table was not
    /// watching while the daemon was down). Open runs are not stored: a run in flight across
    /// a restart finishes without a duration.
    pub fn restore(&mut self, record: CheckRecord, now: Instant, wall_ms: u64) -> Result<(), CheckError> {
        let id = &record.spec.id;
        if matches!(record.state, NodeState::Suspect | NodeState::Left) {
            let state = record.state.as_str();
            let problem = format!("a check is never {state}");
            return Err(CheckError::Invalid(CheckSpecError::new(CheckField::State, problem).of(id)));
        }
        if record.paused_until_wall_ms.is_some() && record.state != NodeState::Paused {
            let problem = "only a paused check has a maintenance end";
            return Err(CheckError::Invalid(CheckSpecError::new(CheckField::State, problem).of(id)));
        }
        let schedule = self.admit(&record.spec)?;
        let index = self.insert(record.spec, schedule, record.state, now, wall_ms);
        let check = self.get_mut(index);
        check.last_ping_wall_ms = record.last_ping_wall_ms;
        check.last_success_wall_ms = record.last_success_wall_ms;
        check.last_outcome = record.last_outcome;
        // A window that ended while the daemon was down ends at the next timeout.
        check.paused_until =
            record.paused_until_wall_ms.map(|until| (until, wall_to_instant(until, now, wall_ms)));
        if record.state == NodeState::Up {
            let anchor_wall_ms = record.last_success_wall_ms.unwrap_or(wall_ms).min(wall_ms);
            self.rebase(index, None, anchor_wall_ms, now, wall_ms);
        }
        self.reschedule(index);
        Ok(())
    }

    /// Puts pings read back from the store into a restored check's history, oldest first
    /// (the history keeps the newest `history` of them). Returns false for an unknown check.
    pub fn restore_pings(&mut self, id: &str, pings: impl IntoIterator<Item = PingRecord>) -> bool {
        let Some(&index) = self.by_id.get(id) else { return false };
        let limit = self.config.history;
        let check = self.get_mut(index);
        for ping in pings {
            check.remember(ping, limit);
        }
        true
    }

    // ---- outputs ----

    /// The instant by which the shell must call [`Checks::handle_timeout`], if any deadline
    /// is pending.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// The next event to act on, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<CheckEvent> {
        self.events.pop_front()
    }

    // ---- internals ----

    fn get(&self, index: u32) -> &Check {
        self.slots[index as usize].as_ref().expect("indices in maps and timers name occupied slots")
    }

    fn get_mut(&mut self, index: u32) -> &mut Check {
        self.slots[index as usize].as_mut().expect("indices in maps and timers name occupied slots")
    }

    fn index_of_token(&self, token: &str) -> Option<u32> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        self.by_token.get(&token_key(token)).copied()
    }

    fn view(&self, index: u32) -> CheckView<'_> {
        let check = self.get(index);
        CheckView {
            id: &check.id,
            spec: &check.spec,
            state: check.state,
            last_ping_wall_ms: check.last_ping_wall_ms,
            last_success_wall_ms: check.last_success_wall_ms,
            last_outcome: check.last_outcome,
            paused_until_wall_ms: check.paused_until.map(|(wall_ms, _)| wall_ms),
            deadline: check.timer,
            open_runs: check.runs.len(),
            history: &check.history,
        }
    }

    fn reject(&mut self, error: PingError) -> PingError {
        *self.stats.rejected.entry(error.as_str()).or_default() += 1;
        error
    }

    /// Validates a spec for a new entry and compiles its schedule.
    fn admit(&mut self, spec: &CheckSpec) -> Result<Compiled, CheckError> {
        spec.validate().map_err(CheckError::Invalid)?;
        if self.by_id.contains_key(spec.id.as_str()) {
            return Err(CheckError::DuplicateId(spec.id.clone()));
        }
        if self.by_token.contains_key(&token_key(&spec.token)) {
            return Err(CheckError::DuplicateToken);
        }
        if let Some(slug) = spec.slug().filter(|slug| self.by_slug.contains_key(*slug)) {
            return Err(CheckError::DuplicateSlug(slug.into()));
        }
        if self.by_id.len() >= self.config.max_checks {
            self.stats.capacity_refused += 1;
            return Err(CheckError::Capacity(self.config.max_checks));
        }
        spec.schedule.compile().map_err(|error| CheckError::Invalid(error.of(&spec.id)))
    }

    /// Adds an admitted check without a deadline; returns its index.
    fn insert(
        &mut self,
        spec: CheckSpec,
        schedule: Compiled,
        state: NodeState,
        now: Instant,
        wall_ms: u64,
    ) -> u32 {
        let id: Arc<str> = spec.id.as_str().into();
        let token = token_key(&spec.token);
        let slug: Option<Arc<str>> = spec.slug().map(Arc::from);
        let check = Check {
            id: id.clone(),
            spec,
            schedule,
            state,
            watch_from: now,
            anchor: Some(now),
            anchor_wall_ms: wall_ms,
            due: None,
            up_since: now,
            runs: VecDeque::new(),
            history: VecDeque::new(),
            last_ping_wall_ms: None,
            last_success_wall_ms: None,
            last_outcome: None,
            paused_until: None,
            timer: None,
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index as usize] = Some(check);
                index
            }
            None => {
                // max_checks is validated to fit u32, and admit() keeps the table within it.
                let index = u32::try_from(self.slots.len()).expect("max_checks fits in u32");
                self.slots.push(Some(check));
                index
            }
        };
        self.by_id.insert(id, index);
        self.by_token.insert(token, index);
        if let Some(slug) = slug {
            self.by_slug.insert(slug, index);
        }
        self.stats.checks_by_state[state.index()] += 1;
        index
    }

    /// A finished run: a success brings the check up and restarts its schedule from now; a
    /// failure brings it down at once.
    fn finish(&mut self, index: u32, success: bool, now: Instant, wall_ms: u64) {
        let check = self.get_mut(index);
        if success {
            check.last_outcome = Some(Outcome::Success);
            check.last_success_wall_ms = Some(wall_ms);
            if matches!(check.state, NodeState::New | NodeState::Down) {
                check.up_since = now;
                self.transition(index, NodeState::Up, Reason::Ping, now, now);
            }
            self.rebase(index, Some(now), wall_ms, now, wall_ms);
        } else {
            check.last_outcome = Some(Outcome::Failure);
            if matches!(check.state, NodeState::New | NodeState::Up) {
                self.transition(index, NodeState::Down, Reason::FailSignal, now, now);
            }
        }
    }

    /// Counts the check's schedule from `anchor` (whose wall time is `anchor_wall_ms`; `None`
    /// if only the wall time is known), never letting the deadline come sooner than one grace
    /// from `now`.
    fn rebase(
        &mut self,
        index: u32,
        anchor: Option<Instant>,
        anchor_wall_ms: u64,
        now: Instant,
        wall_ms: u64,
    ) {
        let check = self.get_mut(index);
        check.anchor = anchor;
        check.anchor_wall_ms = anchor_wall_ms;
        let grace = check.grace();
        let due = match &check.schedule {
            Compiled::Period { period, grace } => Some(match anchor {
                Some(anchor) => Due { at: anchor + *period + *grace, wall_ms: None },
                None => {
                    let due_wall = anchor_wall_ms.saturating_add(millis(*period + *grace));
                    Due { at: wall_to_instant(due_wall, now, wall_ms), wall_ms: None }
                }
            }),
            Compiled::Cron { .. } => check.schedule.next_tick_after(anchor_wall_ms).map(|tick| {
                let due_wall = tick.saturating_add(millis(grace));
                Due { at: wall_to_instant(due_wall, now, wall_ms), wall_ms: Some(due_wall) }
            }),
        };
        check.due = due.map(|due| push_back(due, now + grace));
        if due.is_none() {
            self.stats.cron_misses += 1;
        }
    }

    /// Ends a pause at `end` (≤ `now`, whose wall time is `end_wall_ms`).
    fn end_pause(&mut self, index: u32, end: Instant, end_wall_ms: u64, now: Instant, wall_ms: u64) {
        let check = self.get_mut(index);
        check.paused_until = None;
        check.up_since = end;
        let to = check.state_after_pause();
        self.transition(index, to, Reason::Resume, end, now);
        if to == NodeState::Up {
            self.rebase(index, Some(end), end_wall_ms, now, wall_ms);
        }
        self.reschedule(index);
    }

    /// Sets the check's one pending deadline for its current state, or clears it.
    fn reschedule(&mut self, index: u32) {
        let check = self.get(index);
        let deadline = match check.state {
            NodeState::Up => match (check.due.map(|due| due.at), check.earliest_run_deadline()) {
                (Some(due), Some(run)) => Some(due.min(run)),
                (due, run) => due.or(run),
            },
            NodeState::Paused => check.paused_until.map(|(_, end)| end),
            _ => None,
        };
        self.set_timer(index, deadline);
    }

    fn set_timer(&mut self, index: u32, deadline: Option<Instant>) {
        let check = self.get_mut(index);
        let old = std::mem::replace(&mut check.timer, deadline);
        if let Some(old) = old {
            let removed = self.timers.remove(&(old, index));
            debug_assert!(removed, "a check's timer field mirrors its entry in the queue");
        }
        if let Some(deadline) = deadline {
            self.timers.insert((deadline, index));
        }
    }

    /// A check's deadline came.
    fn on_deadline(&mut self, index: u32, now: Instant, wall_ms: u64) {
        let check = self.get_mut(index);
        match check.state {
            NodeState::Paused => {
                let Some((until, mapped)) = check.paused_until else { return };
                if wall_ms < until {
                    // The wall clock was stepped back, or ran slower: the window is not over.
                    check.paused_until = Some((until, wall_to_instant(until, now, wall_ms)));
                    self.stats.deadlines_deferred += 1;
                    self.reschedule(index);
                } else {
                    // A window that ended before the table watched the check (it ended while
                    // the daemon was down) ends, for the table, when it started watching; one
                    // that a step forward jumped over ends at the step (or, unreported, when
                    // its monotonic instant came), so its full deadline is counted from there.
                    let end = wall_to_instant(until, now, wall_ms).max(check.watch_from).max(mapped);
                    let end_wall = wall_ms.saturating_sub(millis(now - end));
                    self.end_pause(index, end, end_wall, now, wall_ms);
                }
            }
            NodeState::Up => self.judge(index, now, wall_ms),
            // Stale: every state change reschedules, so this is not expected.
            _ => self.reschedule(index),
        }
    }

    /// An `up` check's deadline came: down if its schedule deadline or a run's deadline has
    /// really passed, otherwise the deadline moves.
    fn judge(&mut self, index: u32, now: Instant, wall_ms: u64) {
        let pardon = self.observed_from.map(|from| (from, from + self.get(index).grace()));
        let check = self.get_mut(index);
        if let Some((from, pardon)) = pardon.filter(|&(_, pardon)| now < pardon) {
            // The deadline falls within one grace after a stall of the monitor: its silence
            // overlaps the stall, which proves nothing about the job.
            check.up_since = check.up_since.max(from);
            check.due = check.due.map(|due| push_back(due, pardon));
            self.stats.deadlines_deferred += 1;
            return self.reschedule(index);
        }
        let mut late: Option<Instant> = None;
        let mut deferred = false;
        if let Some(due) = check.due.filter(|due| due.at <= now) {
            match due.wall_ms {
                Some(due_wall) if wall_ms < due_wall => {
                    // The wall clock says the tick + grace has not passed yet (it was stepped
                    // back): wait for it.
                    check.due = Some(Due { at: wall_to_instant(due_wall, now, wall_ms), ..due });
                    deferred = true;
                }
                // Dated on the monotonic clock: after a step forward that the shell did not
                // report, the wall time of the deadline maps to before the step, perhaps
                // before the success it was counted from.
                Some(_) | None => late = Some(due.at),
            }
        }
        if let Some(run) = check.expire_runs(now) {
            late = Some(late.map_or(run, |at| at.min(run)));
        }
        self.stats.deadlines_deferred += u64::from(deferred);
        if let Some(at) = late {
            self.transition(index, NodeState::Down, Reason::Timeout, at, now);
        }
        self.reschedule(index);
    }

    fn transition(&mut self, index: u32, to: NodeState, reason: Reason, at: Instant, now: Instant) {
        debug_assert!(at <= now, "a transition is never dated in the future");
        let check = self.get_mut(index);
        let from = check.state;
        check.state = to;
        let transition = Transition {
            node: check.id.clone(),
            generation: 0,
            from,
            to,
            reason,
            at,
            noticed: now,
            exit: None,
        };
        self.stats.checks_by_state[from.index()] -= 1;
        self.stats.checks_by_state[to.index()] += 1;
        *self.stats.transitions.entry((from, to)).or_default() += 1;
        self.events.push_back(CheckEvent::Transition(transition));
    }
}

/// The key of a token in the lookup table.
fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn millis(span: Duration) -> u64 {
    u64::try_from(span.as_millis()).unwrap_or(u64::MAX)
}

/// The monotonic instant at which the wall clock reads `target_ms`, if it keeps pace with
/// the monotonic clock from the pair (`now`, `wall_ms`).
fn wall_to_instant(target_ms: u64, now: Instant, wall_ms: u64) -> Instant {
    if target_ms >= wall_ms {
        now + Duration::from_millis(target_ms - wall_ms)
    } else {
        now - Duration::from_millis(wall_ms - target_ms)
    }
}

/// `due`, moved no sooner than `floor` (its wall time moves along).
fn push_back(due: Due, floor: Instant) -> Due {
    if due.at >= floor {
        return due;
    }
    let shift = millis(floor - due.at);
    Due { at: floor, wall_ms: due.wall_ms.map(|wall| wall.saturating_add(shift)) }
}

#[cfg(test)]
mod tests;

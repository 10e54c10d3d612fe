//! The values the check table takes from and hands to its shell: signals, pings, errors,
//! events, records for the store, counters.

use super::spec::{CheckSpec, CheckSpecError};
use crate::monitor::{NodeState, Transition};
use crate::{ConfigError, Instant};
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Longest `rid`, in bytes.
pub const MAX_RID: usize = 64;

/// What a ping says, from the last segment of its path (Healthchecks.io's grammar).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    /// `/ping/{token}`: the job ran and succeeded.
    Success,
    /// `/ping/{token}/start`: the job started; it must finish within the grace.
    Start,
    /// `/ping/{token}/fail`: the job failed.
    Fail,
    /// `/ping/{token}/log`: a message (the body) to record; changes nothing.
    Log,
    /// `/ping/{token}/{code}`: the job's exit code; 0 is a success, anything else a failure.
    ExitCode(u8),
}

impl Signal {
    /// Every kind, in the order of [`Signal::as_str`]'s names (an exit code stands for all).
    pub const KINDS: [&'static str; 5] = ["success", "start", "fail", "log", "exit-code"];

    /// Reads the path segment after the token: `None` or `""` is a success, then `start`,
    /// `fail`, `log`, or a decimal exit code 0 to 255 (ASCII digits only, at most three).
    /// Anything else is [`PingError::BadSignal`] (HTTP 400).
    pub fn parse(suffix: Option<&str>) -> Result<Signal, PingError> {
        match suffix.unwrap_or("") {
            "" => Ok(Signal::Success),
            "start" => Ok(Signal::Start),
            "fail" => Ok(Signal::Fail),
            "log" => Ok(Signal::Log),
            code if !code.is_empty() && code.len() <= 3 && code.bytes().all(|b| b.is_ascii_digit()) => {
                code.parse::<u8>().map(Signal::ExitCode).map_err(|_| PingError::BadSignal)
            }
            _ => Err(PingError::BadSignal),
        }
    }

    /// The kind, as a metric label and a storage column: one of [`Signal::KINDS`].
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Success => "success",
            Signal::Start => "start",
            Signal::Fail => "fail",
            Signal::Log => "log",
            Signal::ExitCode(_) => "exit-code",
        }
    }

    /// The exit code, for [`Signal::ExitCode`].
    pub fn exit_code(self) -> Option<u8> {
        match self {
            Signal::ExitCode(code) => Some(code),
            _ => None,
        }
    }

    /// Whether the signal ends a run: success, fail or an exit code.
    pub fn is_finish(self) -> bool {
        matches!(self, Signal::Success | Signal::Fail | Signal::ExitCode(_))
    }

    /// Whether the signal reports a failure: fail or a non-zero exit code.
    pub fn is_failure(self) -> bool {
        matches!(self, Signal::Fail | Signal::ExitCode(1..))
    }
}

/// The storage form: the kind, and for an exit code `exit-code:N` (e.g. `exit-code:3`).
impl core::fmt::Display for Signal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Signal::ExitCode(code) => write!(f, "exit-code:{code}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Reads the storage form back (the inverse of `Display`; not the URL grammar, which is
/// [`Signal::parse`]).
impl core::str::FromStr for Signal {
    type Err = PingError;

    fn from_str(s: &str) -> Result<Signal, PingError> {
        match s {
            "success" => Ok(Signal::Success),
            "start" => Ok(Signal::Start),
            "fail" => Ok(Signal::Fail),
            "log" => Ok(Signal::Log),
            _ => match s.strip_prefix("exit-code:") {
                Some(code) if code.bytes().all(|b| b.is_ascii_digit()) => {
                    code.parse().map(Signal::ExitCode).map_err(|_| PingError::BadSignal)
                }
                _ => Err(PingError::BadSignal),
            },
        }
    }
}

/// One ping as the shell received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ping<'a> {
    pub signal: Signal,
    /// The `rid` query parameter: pairs a start with its finish when runs overlap. An empty
    /// string counts as absent.
    pub rid: Option<&'a str>,
    /// The request body, whole: the table keeps at most `body_limit` bytes of it.
    pub body: &'a [u8],
}

/// What the shell tells the pinger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingReceipt {
    pub check: Arc<str>,
    /// The check's state after the ping.
    pub state: NodeState,
    /// From the paired start to this finish, when there was one.
    pub duration: Option<Duration>,
    /// Whether the body was cut at `body_limit` (the ping still counts).
    pub body_truncated: bool,
}

/// Why a ping was refused. Every variant is the pinger's doing; a refused ping changes
/// nothing but its counter in [`ChecksStats::rejected`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum PingError {
    /// No check has this token (HTTP 404). Nothing is created.
    #[error("no check has this token")]
    UnknownToken,
    /// No check has this slug (HTTP 404), and none was created: `?create=1` was not given,
    /// auto-provisioning is off, or the slug is not one.
    #[error("no check has this slug")]
    UnknownSlug,
    /// The path after the token is not `start`, `fail`, `log` or an exit code 0-255 (HTTP 400).
    #[error("the signal must be start, fail, log or an exit code from 0 to 255")]
    BadSignal,
    /// The `rid` is longer than 64 bytes or has a character outside visible ASCII (HTTP 400).
    #[error("the rid must be at most 64 visible ASCII characters")]
    BadRid,
    /// The shell's rate limiter refused the ping, per token or per source address (HTTP 429).
    /// The table never returns it; the shell reports it with [`super::Checks::record_rejection`].
    #[error("too many pings")]
    RateLimited,
    /// The body is over the shell's hard limit, declared or read (HTTP 413): the shell refuses
    /// it before reading it all and reports it with [`super::Checks::record_rejection`].
    #[error("the body is over 1 MiB, and the monitor keeps only its first bytes anyway: send a shorter one")]
    BodyTooLarge,
}

impl PingError {
    pub const ALL: [PingError; 6] = [
        PingError::UnknownToken,
        PingError::UnknownSlug,
        PingError::BadSignal,
        PingError::BadRid,
        PingError::RateLimited,
        PingError::BodyTooLarge,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            PingError::UnknownToken => "unknown_token",
            PingError::UnknownSlug => "unknown_slug",
            PingError::BadSignal => "bad_signal",
            PingError::BadRid => "bad_rid",
            PingError::RateLimited => "rate_limited",
            PingError::BodyTooLarge => "body_too_large",
        }
    }

    /// The HTTP status the shell answers with.
    pub fn http_status(self) -> u16 {
        match self {
            PingError::UnknownToken | PingError::UnknownSlug => 404,
            PingError::BadSignal | PingError::BadRid => 400,
            PingError::RateLimited => 429,
            PingError::BodyTooLarge => 413,
        }
    }
}

/// Why a command on the table failed. Every variant is the caller's (operator's or
/// config file's) doing, and the table is left as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The spec or record is invalid: which check, which field, and the problem.
    #[error("{0}")]
    Invalid(CheckSpecError),
    /// Another check has this id.
    #[error("a check with id {0:?} already exists")]
    DuplicateId(String),
    /// Another check has this token (the id of that check is not revealed).
    #[error("another check already uses this token")]
    DuplicateToken,
    /// Another check has this slug (its own, or its id).
    #[error("another check already uses the slug {0:?}")]
    DuplicateSlug(String),
    /// The table holds `max_checks` already (counted in [`ChecksStats::capacity_refused`]).
    #[error("the check table is full ({0} checks)")]
    Capacity(usize),
    /// No check has this id.
    #[error("no check with id {0:?}")]
    UnknownCheck(String),
    /// A maintenance window that ends at or before the current wall time.
    #[error("the maintenance window ends in the past")]
    EndsInPast,
}

/// How the last finished run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        [Outcome::Success, Outcome::Failure].into_iter().find(|outcome| outcome.as_str() == s)
    }
}

/// One received ping, as kept in a check's history and handed to the shell to persist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingRecord {
    pub signal: Signal,
    /// When the table handled it (monotonic).
    pub at: Instant,
    /// The shell's wall time at that moment, in milliseconds since the Unix epoch.
    pub wall_ms: u64,
    pub rid: Option<Arc<str>>,
    /// From the paired start, for a finish that found one.
    pub duration: Option<Duration>,
    /// The first `body_limit` bytes of the body.
    pub body: Arc<[u8]>,
    /// The length of the whole body as received.
    pub body_len: usize,
    pub body_truncated: bool,
}

/// What the shell must act on, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckEvent {
    /// A check changed state: record it durably, then react (log, alert). `node` is the
    /// check id and `generation` is always 0; `at` is the computed deadline for a timeout,
    /// the ping's instant for a ping, the end of the window for a maintenance that ended.
    Transition(Transition),
    /// A ping was accepted (emitted before the transition it may cause): persist or show it.
    Pinged { check: Arc<str>, ping: PingRecord },
}

/// Settings of [`super::Checks`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChecksConfig {
    /// Most checks in the table; more are refused and counted.
    pub max_checks: usize,
    /// Bytes of a ping body kept; the rest is dropped and the ping flagged.
    pub body_limit: usize,
    /// Pings kept per check (the oldest is dropped).
    pub history: usize,
    /// Started runs kept per check while they wait for their finish (the oldest is dropped
    /// and counted in [`ChecksStats::runs_dropped`]).
    pub max_open_runs: usize,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig { max_checks: 10_000, body_limit: 10_000, history: 50, max_open_runs: 16 }
    }
}

impl ChecksConfig {
    /// Checks every setting; the error is one sentence naming the bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_checks == 0 || self.max_checks > u32::MAX as usize {
            return Err(ConfigError::new("max_checks", format!("must be between 1 and {}", u32::MAX)));
        }
        if self.body_limit > 16 << 20 {
            return Err(ConfigError::new("body_limit", "must be at most 16 MiB"));
        }
        if self.history == 0 || self.history > 10_000 {
            return Err(ConfigError::new("history", "must be between 1 and 10000 pings"));
        }
        if self.max_open_runs == 0 || self.max_open_runs > 1024 {
            return Err(ConfigError::new("max_open_runs", "must be between 1 and 1024"));
        }
        Ok(())
    }
}

/// What the store keeps of a check, and what [`super::Checks::restore`] takes back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRecord {
    pub spec: CheckSpec,
    /// `New`, `Up`, `Down` or `Paused` (a check is never `Suspect` or `Left`).
    pub state: NodeState,
    /// Wall time of the last ping of any kind (for display).
    pub last_ping_wall_ms: Option<u64>,
    /// Wall time of the last success: after a restore, an `up` check is judged from it.
    pub last_success_wall_ms: Option<u64>,
    /// How the last finished run ended: decides the state when a pause ends.
    pub last_outcome: Option<Outcome>,
    /// The end of the maintenance window of a paused check, if it has one.
    pub paused_until_wall_ms: Option<u64>,
}

/// A check as the table sees it now: for APIs.
#[derive(Clone, Debug)]
pub struct CheckView<'a> {
    pub id: &'a str,
    pub spec: &'a CheckSpec,
    pub state: NodeState,
    pub last_ping_wall_ms: Option<u64>,
    pub last_success_wall_ms: Option<u64>,
    pub last_outcome: Option<Outcome>,
    pub paused_until_wall_ms: Option<u64>,
    /// The pending deadline: when the check goes down (`up`) or its maintenance ends
    /// (`paused` with an end).
    pub deadline: Option<Instant>,
    /// Started runs still waiting for their finish.
    pub open_runs: usize,
    /// The last pings, oldest first.
    pub history: &'a VecDeque<PingRecord>,
}

/// Counters of what the table has done since it started. Cheap to clone for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChecksStats {
    /// Accepted pings by [`Signal::as_str`].
    pub pings: BTreeMap<&'static str, u64>,
    /// Refused pings by [`PingError::as_str`].
    pub rejected: BTreeMap<&'static str, u64>,
    /// Accepted pings whose body was cut at `body_limit`.
    pub bodies_truncated: u64,
    /// Started runs dropped because a check had `max_open_runs` open already.
    pub runs_dropped: u64,
    /// Additions and restores refused because the table was full.
    pub capacity_refused: u64,
    /// Transitions by (from, to).
    pub transitions: BTreeMap<(NodeState, NodeState), u64>,
    /// Checks in each state, indexed by `NodeState as usize`.
    pub checks_by_state: [u64; 6],
    /// Deadlines taken off the timer queue by `handle_timeout`: the work it did. It never
    /// looks at a check whose deadline has not come.
    pub deadlines_fired: u64,
    /// Deadlines that fired but were pushed back: the wall clock said a cron tick had not
    /// passed yet, a maintenance window had not ended yet, or the monitor had just stalled.
    pub deadlines_deferred: u64,
    /// Cron schedules for which no next tick was found (the check then has no schedule
    /// deadline until its next success).
    pub cron_misses: u64,
    /// Steps of the wall clock the shell reported ([`super::Checks::handle_wall_step`]).
    pub wall_steps: u64,
}

impl ChecksStats {
    pub fn checks_in(&self, state: NodeState) -> u64 {
        self.checks_by_state[state.index()]
    }

    pub fn rejected(&self, error: PingError) -> u64 {
        self.rejected.get(error.as_str()).copied().unwrap_or(0)
    }

    pub fn pings(&self, kind: &str) -> u64 {
        self.pings.get(kind).copied().unwrap_or(0)
    }
}

//! What a check is: its id, secret token, schedule and labels, validated once; and the
//! compiled schedule that turns a wall time into the next cron tick.

use crate::wire::{self, MAX_NODE_ID};
use chrono::DateTime;
use chrono_tz::Tz;
use core::time::Duration;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// Shortest token: 22 characters of a 64-letter alphabet carry 132 bits, at least the
/// 128 bits the brief asks for (16 random bytes in unpadded base64url).
pub const MIN_TOKEN_LEN: usize = 22;
/// Longest token, so that a lookup never hashes an unbounded string from the network.
pub const MAX_TOKEN_LEN: usize = 128;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 1024;
/// Longest cron expression, in bytes.
pub const MAX_CRON_EXPRESSION: usize = 256;
/// Shortest period and grace.
pub const MIN_SPAN: Duration = Duration::from_secs(1);
/// Longest period and grace (a year), so deadlines stay far from overflow.
pub const MAX_SPAN: Duration = Duration::from_secs(366 * 24 * 3600);

/// When a check expects its pings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// A ping at least every `period`; the check is late `grace` after that.
    Period { period: Duration, grace: Duration },
    /// A ping after every tick of a five-field cron `expression` (minute, hour, day of month,
    /// month, day of week, as in Vixie cron and Healthchecks.io), evaluated in the IANA time
    /// zone `timezone` (e.g. `Europe/Berlin`, or `UTC`); the check is late `grace` after a tick.
    Cron { expression: String, timezone: String, grace: Duration },
}

impl Schedule {
    /// How late a ping may be, and how long a started run may take.
    pub fn grace(&self) -> Duration {
        match self {
            Schedule::Period { grace, .. } | Schedule::Cron { grace, .. } => *grace,
        }
    }

    /// Checks the schedule; the error names the field and the problem (its check is not
    /// known here: [`CheckSpec::validate`] names it).
    pub fn validate(&self) -> Result<(), CheckSpecError> {
        self.compile().map(|_| ())
    }

    /// The schedule in the form the check table evaluates.
    pub(crate) fn compile(&self) -> Result<Compiled, CheckSpecError> {
        check_span(CheckField::Grace, self.grace())?;
        match self {
            Schedule::Period { period, grace } => {
                check_span(CheckField::Period, *period)?;
                Ok(Compiled::Period { period: *period, grace: *grace })
            }
            Schedule::Cron { expression, timezone, grace } => {
                let cron = parse_cron(expression)?;
                let tz: Tz = timezone.parse().map_err(|_| {
                    CheckSpecError::new(
                        CheckField::Timezone,
                        format!("unknown time zone {timezone:?} (use an IANA name such as \"Europe/Berlin\" or \"UTC\")"),
                    )
                })?;
                let compiled = Compiled::Cron { cron: Box::new(cron), tz, grace: *grace };
                // A pattern such as `0 0 30 2 *` parses but never matches: refuse it now rather
                // than have a check that can never be late. 2000-01-01 is an arbitrary fixed
                // start, so validation is a pure function of the expression.
                if compiled.next_tick_after(946_684_800_000).is_none() {
                    return Err(CheckSpecError::new(
                        CheckField::Cron,
                        format!("the cron expression {expression:?} never matches a date"),
                    ));
                }
                Ok(compiled)
            }
        }
    }
}

/// A check, as configured in the file or through the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSpec {
    /// 1 to 64 bytes, no whitespace or control character (the rules of node ids).
    pub id: String,
    /// The secret in the ping URL: at least 22 characters of `A-Z a-z 0-9 _ -` (at least
    /// 128 bits when drawn at random), at most 128.
    pub token: String,
    /// The name in Healthchecks' second URL form, `/ping/<ping-key>/<slug>`: 1 to 64
    /// characters of `a-z 0-9 - _`. `None` means the id, when the id is a valid slug (see
    /// [`CheckSpec::slug`]).
    pub slug: Option<String>,
    pub schedule: Schedule,
    /// Same rules as node labels (see [`wire::encode_labels`]).
    pub labels: BTreeMap<String, String>,
    /// Free text for people, at most 1024 bytes.
    pub description: String,
}

impl CheckSpec {
    /// The check's slug: its own, or else its id if the id is a valid slug (a check whose id
    /// is not, such as `Backup.DB`, has none unless given one).
    pub fn slug(&self) -> Option<&str> {
        match &self.slug {
            Some(slug) => Some(slug),
            None => validate_slug(&self.id).is_ok().then_some(self.id.as_str()),
        }
    }

    /// Checks every field; the error names the check, the field and the problem, and reads
    /// as one sentence.
    pub fn validate(&self) -> Result<(), CheckSpecError> {
        validate_id(&self.id)?;
        let id = self.id.as_str();
        validate_token(&self.token).map_err(|error| error.of(id))?;
        if let Some(slug) = &self.slug {
            validate_slug(slug).map_err(|error| error.of(id))?;
        }
        self.schedule.validate().map_err(|error| error.of(id))?;
        let labels: Vec<(&str, &str)> = self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        wire::encode_labels(&labels, &mut Vec::new()).map_err(|error| {
            let problem = match error {
                wire::EncodeError::Label { index, reason } => {
                    format!("label {:?}: {reason}", labels[index].0)
                }
                other => other.to_string(),
            };
            CheckSpecError::new(CheckField::Labels, problem).of(id)
        })?;
        if self.description.len() > MAX_DESCRIPTION {
            return Err(CheckSpecError::new(
                CheckField::Description,
                format!("the description is longer than {MAX_DESCRIPTION} bytes"),
            )
            .of(id));
        }
        Ok(())
    }
}

/// The part of a check's definition (or of its stored record) that is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckField {
    Id,
    Token,
    Slug,
    Period,
    Grace,
    Cron,
    Timezone,
    Labels,
    Description,
    /// A stored record's state or maintenance end (see `Checks::restore`).
    State,
}

/// Why a check's definition or record is refused: which check, which field, and the
/// problem. `Display` is one sentence: `check "backup": the grace is zero`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSpecError {
    check: Option<String>,
    field: CheckField,
    problem: Cow<'static, str>,
}

impl CheckSpecError {
    /// A refused `field`; `problem` is the sentence without the check's name.
    pub fn new(field: CheckField, problem: impl Into<Cow<'static, str>>) -> CheckSpecError {
        CheckSpecError { check: None, field, problem: problem.into() }
    }

    /// The same error, about the check `id`.
    pub fn of(self, id: &str) -> CheckSpecError {
        CheckSpecError { check: Some(id.to_owned()), ..self }
    }

    /// The check's id, when the error is about a whole check.
    pub fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }

    /// The refused field.
    pub fn field(&self) -> CheckField {
        self.field
    }

    /// The problem, without the check's name.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl fmt::Display for CheckSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.check {
            Some(check) => write!(f, "check {check:?}: {}", self.problem),
            None => f.write_str(&self.problem),
        }
    }
}

impl std::error::Error for CheckSpecError {}

/// Node id rules: 1 to 64 bytes, no control character, no whitespace.
pub(crate) fn validate_id(id: &str) -> Result<(), CheckSpecError> {
    let refuse = |problem: String| Err(CheckSpecError::new(CheckField::Id, problem));
    if id.is_empty() || id.len() > MAX_NODE_ID {
        return refuse(format!("the check id {id:?} must be 1 to {MAX_NODE_ID} bytes long"));
    }
    if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return refuse(format!("the check id {id:?} contains whitespace or a control character"));
    }
    Ok(())
}

/// Longest slug, in bytes (the limit of ids).
pub const MAX_SLUG: usize = MAX_NODE_ID;

/// Healthchecks' slug grammar: 1 to 64 characters of `a-z 0-9 - _`.
pub fn validate_slug(slug: &str) -> Result<(), CheckSpecError> {
    let refuse = |problem: String| Err(CheckSpecError::new(CheckField::Slug, problem));
    if slug.is_empty() || slug.len() > MAX_SLUG {
        return refuse(format!("the slug {slug:?} must be 1 to {MAX_SLUG} characters long"));
    }
    if !slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        return refuse(format!("the slug {slug:?} may only contain a-z, 0-9, `-` and `_`"));
    }
    Ok(())
}

fn validate_token(token: &str) -> Result<(), CheckSpecError> {
    if token.len() < MIN_TOKEN_LEN || token.len() > MAX_TOKEN_LEN {
        return Err(CheckSpecError::new(
            CheckField::Token,
            format!(
                "the token must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} characters long (at least 128 bits), not {}",
                token.len()
            ),
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(CheckSpecError::new(
            CheckField::Token,
            "the token may only contain A-Z, a-z, 0-9, `_` and `-`",
        ));
    }
    Ok(())
}

fn check_span(field: CheckField, span: Duration) -> Result<(), CheckSpecError> {
    let name = if field == CheckField::Grace { "grace" } else { "period" };
    let refuse = |problem: String| Err(CheckSpecError::new(field, problem));
    if span.is_zero() {
        return refuse(format!("the {name} is zero"));
    }
    if span < MIN_SPAN {
        return refuse(format!("the {name} is shorter than 1 s"));
    }
    if span > MAX_SPAN {
        return refuse(format!("the {name} is longer than 366 days"));
    }
    Ok(())
}

/// Parses the five-field grammar of Healthchecks.io: no seconds field, no year field, and
/// Vixie cron's rule that a restricted day of month and day of week match either.
fn parse_cron(expression: &str) -> Result<Cron, CheckSpecError> {
    if expression.len() > MAX_CRON_EXPRESSION {
        return Err(CheckSpecError::new(
            CheckField::Cron,
            format!("the cron expression is longer than {MAX_CRON_EXPRESSION} bytes"),
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|error| {
            CheckSpecError::new(
                CheckField::Cron,
                format!("the cron expression {expression:?} does not parse: {error}"),
            )
        })
}

/// A validated schedule, ready to evaluate.
#[derive(Clone, Debug)]
pub(crate) enum Compiled {
    Period { period: Duration, grace: Duration },
    Cron { cron: Box<Cron>, tz: Tz, grace: Duration },
}

impl Compiled {
    pub fn grace(&self) -> Duration {
        match self {
            Compiled::Period { grace, .. } | Compiled::Cron { grace, .. } => *grace,
        }
    }

    /// The first cron tick strictly after `wall_ms` (milliseconds since the Unix epoch), in
    /// the same unit; `None` for a period schedule, for a wall time out of range, or when the
    /// search finds no tick.
    ///
    /// The tick is found in the check's time zone with croner's rules for daylight saving
    /// time: a fixed time that falls in a skipped hour (spring forward) runs at the first
    /// valid instant after the gap, on the same day; a fixed time that happens twice (fall
    /// back) runs once, at its first occurrence; wildcard and step fields run at every
    /// matching wall time that exists.
    pub fn next_tick_after(&self, wall_ms: u64) -> Option<u64> {
        let Compiled::Cron { cron, tz, .. } = self else { return None };
        let start = DateTime::from_timestamp_millis(i64::try_from(wall_ms).ok()?)?.with_timezone(tz);
        let tick = cron.find_next_occurrence(&start, false).ok()?;
        u64::try_from(tick.timestamp_millis()).ok()
    }
}

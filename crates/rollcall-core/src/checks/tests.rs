//! Scenario tests of the check table on a virtual clock (the cron and time-zone ones are in
//! `tests/cron.rs`, pause, maintenance and restore in `tests/pause.rs`).

mod cron;
mod pause;
mod slugs;
mod steps;

use super::*;
use proptest::prelude::*;

/// The virtual clock starts here...
const START: Instant = Instant::from_millis(1_000);
/// ...when the wall clock reads 2025-03-01T00:00:00Z. The two clocks move in lockstep unless
/// a test steps the wall clock with [`Harness::step_wall`].
const WALL0: u64 = 1_740_787_200_000;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn token(id: &str) -> String {
    format!("tok_{id}_0123456789abcdefghij")
}

fn spec(id: &str, schedule: Schedule) -> CheckSpec {
    CheckSpec {
        id: id.into(),
        token: token(id),
        slug: None,
        schedule,
        labels: BTreeMap::from([("team".to_string(), "ops".to_string())]),
        description: "nightly backup".into(),
    }
}

fn period(period_s: u64, grace_s: u64) -> Schedule {
    Schedule::Period { period: secs(period_s), grace: secs(grace_s) }
}

/// A check table on a virtual clock, collecting what it emits.
struct Harness {
    checks: Checks,
    now: Instant,
    /// Added to the wall clock on top of the lockstep: a stepped wall clock.
    wall_offset_ms: i64,
    transitions: Vec<Transition>,
    pings: Vec<(Arc<str>, PingRecord)>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_config(ChecksConfig::default())
    }

    fn with_config(config: ChecksConfig) -> Harness {
        Harness {
            checks: Checks::new(config).unwrap(),
            now: START,
            wall_offset_ms: 0,
            transitions: vec![],
            pings: vec![],
        }
    }

    fn wall(&self) -> u64 {
        let lockstep = WALL0 + (self.now - START).as_millis() as u64;
        lockstep.checked_add_signed(self.wall_offset_ms).unwrap()
    }

    fn step_wall(&mut self, by_ms: i64) {
        self.wall_offset_ms += by_ms;
    }

    fn add(&mut self, id: &str, schedule: Schedule) {
        let (now, wall) = (self.now, self.wall());
        self.checks.add(spec(id, schedule), now, wall).unwrap();
        self.drain();
    }

    fn send(&mut self, id: &str, suffix: Option<&str>, rid: Option<&str>, body: &[u8]) -> PingReceipt {
        self.try_send(&token(id), suffix, rid, body).unwrap()
    }

    fn try_send(
        &mut self,
        token: &str,
        suffix: Option<&str>,
        rid: Option<&str>,
        body: &[u8],
    ) -> Result<PingReceipt, PingError> {
        let signal = match Signal::parse(suffix) {
            Ok(signal) => signal,
            Err(error) => {
                self.checks.record_rejection(error);
                return Err(error);
            }
        };
        let (now, wall) = (self.now, self.wall());
        let receipt = self.checks.handle_ping(token, Ping { signal, rid, body }, now, wall);
        self.drain();
        receipt
    }

    fn success(&mut self, id: &str) -> PingReceipt {
        self.send(id, None, None, b"")
    }

    fn drain(&mut self) {
        while let Some(event) = self.checks.poll_event() {
            match event {
                CheckEvent::Transition(transition) => self.transitions.push(transition),
                CheckEvent::Pinged { check, ping } => self.pings.push((check, ping)),
            }
        }
    }

    /// Steps the clock to `target`, waking at every deadline the table asks for.
    fn run_until(&mut self, target: Instant) {
        while let Some(wake) = self.checks.poll_timeout() {
            let wake = wake.max(self.now);
            if wake > target {
                break;
            }
            self.now = wake;
            let wall = self.wall();
            self.checks.handle_timeout(wake, wall);
            self.drain();
        }
        self.now = target;
    }

    fn run_for(&mut self, span: Duration) {
        self.run_until(self.now + span);
    }

    fn state(&self, id: &str) -> NodeState {
        self.checks.check(id).expect("check exists").state
    }

    fn deadline(&self, id: &str) -> Option<Instant> {
        self.checks.check(id).expect("check exists").deadline
    }

    fn history(&self) -> Vec<(String, &'static str, &'static str, &'static str)> {
        self.transitions
            .iter()
            .map(|t| (t.node.to_string(), t.from.as_str(), t.to.as_str(), t.reason.as_str()))
            .collect()
    }
}

fn check_history(harness: &Harness, expected: &[(&str, &str, &str, &str)]) {
    let expected: Vec<_> = expected.iter().map(|(n, f, t, r)| (n.to_string(), *f, *t, *r)).collect();
    assert_eq!(harness.history(), expected);
}

fn check_parse(suffix: Option<&str>, expected: Result<Signal, PingError>) {
    assert_eq!(Signal::parse(suffix), expected, "suffix {suffix:?}");
}

// ---- the grammar ----

#[test]
fn every_signal_parses() {
    check_parse(None, Ok(Signal::Success));
    check_parse(Some(""), Ok(Signal::Success));
    check_parse(Some("start"), Ok(Signal::Start));
    check_parse(Some("fail"), Ok(Signal::Fail));
    check_parse(Some("log"), Ok(Signal::Log));
    check_parse(Some("0"), Ok(Signal::ExitCode(0)));
    check_parse(Some("1"), Ok(Signal::ExitCode(1)));
    check_parse(Some("255"), Ok(Signal::ExitCode(255)));
    check_parse(Some("007"), Ok(Signal::ExitCode(7)));
    for bad in ["256", "-1", "+1", "abc", "1000", "0x1", " 1", "START", "fail/", "success", "1.0", "٣"] {
        check_parse(Some(bad), Err(PingError::BadSignal));
    }
}

#[test]
fn signals_round_trip_through_their_storage_form() {
    let all = [
        Signal::Success,
        Signal::Start,
        Signal::Fail,
        Signal::Log,
        Signal::ExitCode(0),
        Signal::ExitCode(255),
    ];
    for signal in all {
        assert_eq!(signal.to_string().parse::<Signal>(), Ok(signal));
        assert!(Signal::KINDS.contains(&signal.as_str()));
    }
    assert_eq!("exit-code:256".parse::<Signal>(), Err(PingError::BadSignal));
    assert!(Signal::ExitCode(3).is_failure() && !Signal::ExitCode(0).is_failure());
    assert!(Signal::ExitCode(0).is_finish() && !Signal::Log.is_finish() && !Signal::Start.is_finish());
}

#[test]
fn ping_errors_have_names_and_statuses() {
    let names: Vec<_> = PingError::ALL.iter().map(|e| (e.as_str(), e.http_status())).collect();
    assert_eq!(
        names,
        [
            ("unknown_token", 404),
            ("unknown_slug", 404),
            ("bad_signal", 400),
            ("bad_rid", 400),
            ("rate_limited", 429),
            ("body_too_large", 413)
        ]
    );
}

// ---- the state machine ----

#[test]
fn first_success_brings_a_new_check_up() {
    let mut h = Harness::new();
    h.add("backup", period(60, 30));
    assert_eq!(h.state("backup"), NodeState::New);
    assert_eq!(h.deadline("backup"), None, "a new check is never judged");
    h.run_for(secs(3600));
    assert_eq!(h.state("backup"), NodeState::New);
    let receipt = h.success("backup");
    assert_eq!(receipt.state, NodeState::Up);
    check_history(&h, &[("backup", "new", "up", "ping")]);
    assert_eq!(h.transitions[0].at, h.now);
    assert_eq!(h.transitions[0].generation, 0);
    assert_eq!(h.checks.stats().checks_in(NodeState::Up), 1);
}

#[test]
fn period_and_grace_down_at_exactly_last_success_plus_period_plus_grace() {
    let mut h = Harness::new();
    h.add("backup", period(60, 30));
    h.success("backup");
    h.run_for(secs(50));
    h.success("backup");
    let last = h.now;
    let deadline = last + secs(90);
    assert_eq!(h.deadline("backup"), Some(deadline));
    h.run_until(deadline - Duration::from_millis(1));
    assert_eq!(h.state("backup"), NodeState::Up, "not a millisecond early");
    h.run_until(deadline + secs(1));
    check_history(&h, &[("backup", "new", "up", "ping"), ("backup", "up", "down", "timeout")]);
    assert_eq!(h.transitions[1].at, deadline, "dated at the computed deadline");
    assert_eq!(h.transitions[1].noticed, deadline);
    assert_eq!(h.deadline("backup"), None, "a down check waits for a success");
    h.run_for(secs(86_400));
    assert_eq!(h.transitions.len(), 2, "down stays down quietly");
    h.success("backup");
    assert_eq!(h.history()[2], ("backup".into(), "down", "up", "ping"), "no rise for checks");
}

#[test]
fn steady_successes_never_alarm() {
    let mut h = Harness::new();
    h.add("backup", period(60, 5));
    for _ in 0..1000 {
        h.success("backup");
        h.run_for(secs(64));
    }
    check_history(&h, &[("backup", "new", "up", "ping")]);
}

#[test]
fn fail_and_non_zero_exit_codes_go_down_at_once() {
    for suffix in ["fail", "1", "2", "127", "255"] {
        let mut h = Harness::new();
        h.add("job", period(3600, 60));
        h.success("job");
        h.run_for(secs(10));
        let receipt = h.send("job", Some(suffix), None, b"disk full");
        assert_eq!(receipt.state, NodeState::Down, "suffix {suffix}");
        check_history(&h, &[("job", "new", "up", "ping"), ("job", "up", "down", "fail-signal")]);
        assert_eq!(h.transitions[1].at, h.now);
        assert_eq!(h.deadline("job"), None);
        assert_eq!(h.send("job", Some("0"), None, b"").state, NodeState::Up, "exit code 0 is a success");
        assert_eq!(h.history()[2], ("job".into(), "down", "up", "ping"));
        assert_eq!(h.checks.check("job").unwrap().last_outcome, Some(Outcome::Success));
    }
}

#[test]
fn a_failure_on_a_new_check_goes_down() {
    let mut h = Harness::new();
    h.add("job", period(3600, 60));
    h.send("job", Some("fail"), None, b"");
    check_history(&h, &[("job", "new", "down", "fail-signal")]);
    h.send("job", Some("3"), None, b"");
    assert_eq!(h.transitions.len(), 1, "down on down is not a transition");
}

#[test]
fn log_records_the_body_and_changes_nothing() {
    let mut h = Harness::new();
    h.add("job", period(60, 30));
    h.success("job");
    let deadline = h.deadline("job");
    h.run_for(secs(20));
    let receipt = h.send("job", Some("log"), None, b"step 2 of 5");
    assert_eq!(receipt.state, NodeState::Up);
    assert_eq!(h.deadline("job"), deadline, "a log does not move the deadline");
    assert_eq!(h.transitions.len(), 1);
    let view = h.checks.check("job").unwrap();
    let last = view.history.back().unwrap();
    assert_eq!((last.signal, &*last.body, last.body_truncated), (Signal::Log, &b"step 2 of 5"[..], false));
    assert_eq!(view.last_ping_wall_ms, Some(h.wall()));
    assert_eq!(h.checks.stats().pings("log"), 1);
    assert_eq!(h.pings.len(), 2, "every accepted ping is an event");
}

#[test]
fn start_without_finish_goes_down_at_start_plus_grace() {
    let mut h = Harness::new();
    h.add("job", period(86_400, 600));
    h.success("job");
    h.run_for(secs(3600));
    let start = h.now;
    assert_eq!(h.send("job", Some("start"), None, b"").state, NodeState::Up);
    assert_eq!(h.deadline("job"), Some(start + secs(600)), "the run's deadline is earlier");
    h.run_until(start + secs(601));
    check_history(&h, &[("job", "new", "up", "ping"), ("job", "up", "down", "timeout")]);
    assert_eq!(h.transitions[1].at, start + secs(600));
    // The run finishes late: it still has its duration, and the check comes back up.
    h.run_for(secs(99));
    let receipt = h.success("job");
    assert_eq!(receipt.duration, Some(secs(700)));
    assert_eq!(receipt.state, NodeState::Up);
    assert_eq!(h.checks.check("job").unwrap().open_runs, 0);
}

#[test]
fn start_does_not_move_the_schedule_and_the_earlier_deadline_wins() {
    let mut h = Harness::new();
    h.add("job", period(100, 50));
    h.success("job");
    let due = h.now + secs(150);
    h.run_for(secs(140));
    h.send("job", Some("start"), None, b"");
    assert_eq!(h.deadline("job"), Some(due), "the schedule deadline comes before start + grace");
    h.run_until(due);
    assert_eq!(h.state("job"), NodeState::Down);
    assert_eq!(h.transitions[1].at, due);
}

#[test]
fn start_then_finish_reports_the_duration() {
    let mut h = Harness::new();
    h.add("job", period(3600, 600));
    h.send("job", Some("start"), None, b"");
    assert_eq!(h.state("job"), NodeState::New, "a start does not bring a check up");
    assert_eq!(h.deadline("job"), None, "nor is a new check's run judged");
    h.run_for(secs(42));
    let receipt = h.success("job");
    assert_eq!(receipt.duration, Some(secs(42)));
    assert_eq!(h.pings.last().unwrap().1.duration, Some(secs(42)));
    h.run_for(secs(1));
    h.send("job", Some("start"), None, b"");
    h.run_for(secs(5));
    assert_eq!(
        h.send("job", Some("fail"), None, b"").duration,
        Some(secs(5)),
        "a failure has a duration too"
    );
    assert_eq!(h.success("job").duration, None, "no open run, no duration");
}

#[test]
fn rid_pairs_overlapping_runs() {
    let mut h = Harness::new();
    h.add("job", period(3600, 600));
    h.success("job");
    let a_start = h.now;
    h.send("job", Some("start"), Some("A"), b"");
    h.run_for(secs(10));
    h.send("job", Some("start"), Some("B"), b"");
    h.run_for(secs(20));
    assert_eq!(h.send("job", None, Some("A"), b"").duration, Some(h.now - a_start), "A's own start");
    h.run_for(secs(5));
    assert_eq!(h.send("job", None, Some("C"), b"").duration, None, "an unknown rid pairs with nothing");
    assert_eq!(h.checks.check("job").unwrap().open_runs, 1, "B is still open");
    assert_eq!(h.send("job", None, None, b"").duration, Some(secs(25)), "no rid: the most recent open run");
    assert_eq!(h.checks.check("job").unwrap().open_runs, 0);
    let rids: Vec<_> = h.pings.iter().map(|(_, p)| p.rid.as_deref().map(str::to_owned)).collect();
    assert_eq!(rids[1..], [Some("A".into()), Some("B".into()), Some("A".into()), Some("C".into()), None]);
}

#[test]
fn an_overlapping_run_is_still_judged_after_its_sibling_finishes() {
    let mut h = Harness::new();
    h.add("job", period(86_400, 600));
    h.success("job");
    h.send("job", Some("start"), Some("A"), b"");
    h.run_for(secs(100));
    let b_start = h.now;
    h.send("job", Some("start"), Some("B"), b"");
    h.run_for(secs(100));
    h.send("job", None, Some("A"), b"");
    assert_eq!(h.deadline("job"), Some(b_start + secs(600)));
    h.run_until(b_start + secs(600));
    assert_eq!(h.state("job"), NodeState::Down);
    assert_eq!(h.transitions.last().unwrap().at, b_start + secs(600));
}

#[test]
fn a_repeated_start_replaces_the_open_run() {
    let mut h = Harness::new();
    h.add("job", period(3600, 600));
    h.success("job");
    h.send("job", Some("start"), None, b"");
    h.run_for(secs(300));
    let second = h.now;
    h.send("job", Some("start"), None, b"");
    h.send("job", Some("start"), Some("X"), b"");
    h.send("job", Some("start"), Some("X"), b"");
    assert_eq!(h.checks.check("job").unwrap().open_runs, 2, "one without rid, one X");
    assert_eq!(h.deadline("job"), Some(second + secs(600)), "timed from the repeated start");
}

#[test]
fn open_runs_are_bounded_and_the_oldest_dropped_is_counted() {
    let mut h = Harness::new();
    h.add("job", period(3600, 600));
    for n in 0..17 {
        h.send("job", Some("start"), Some(&format!("run-{n}")), b"");
    }
    assert_eq!(h.checks.check("job").unwrap().open_runs, 16);
    assert_eq!(h.checks.stats().runs_dropped, 1);
    assert_eq!(h.send("job", None, Some("run-0"), b"").duration, None, "run-0 was dropped");
    assert!(h.send("job", None, Some("run-1"), b"").duration.is_some());
}

#[test]
fn a_run_started_while_down_gets_a_grace_from_the_recovery() {
    let mut h = Harness::new();
    h.add("job", period(86_400, 600));
    h.send("job", Some("fail"), None, b"");
    h.send("job", Some("start"), Some("B"), b"");
    h.run_for(secs(3600));
    h.send("job", None, Some("A"), b"");
    assert_eq!(h.state("job"), NodeState::Up);
    assert_eq!(h.deadline("job"), Some(h.now + secs(600)), "not at once");
}

#[test]
fn bodies_are_truncated_and_flagged_not_refused() {
    let mut h = Harness::new();
    h.add("job", period(60, 30));
    let body = vec![b'x'; 10_001];
    let receipt = h.send("job", None, None, &body);
    assert!(receipt.body_truncated);
    assert_eq!(receipt.state, NodeState::Up, "the ping still counts");
    let (_, ping) = h.pings.last().unwrap();
    assert_eq!((ping.body.len(), ping.body_len, ping.body_truncated), (10_000, 10_001, true));
    let exact = vec![b'y'; 10_000];
    assert!(!h.send("job", Some("log"), None, &exact).body_truncated);
    assert_eq!(h.checks.stats().bodies_truncated, 1);
}

#[test]
fn history_keeps_the_last_pings() {
    let config = ChecksConfig { history: 3, body_limit: 4, ..ChecksConfig::default() };
    let mut h = Harness::with_config(config);
    h.add("job", period(60, 30));
    for n in 0..5u8 {
        h.send("job", Some("log"), None, &[b'0' + n; 6]);
    }
    let view = h.checks.check("job").unwrap();
    let bodies: Vec<&[u8]> = view.history.iter().map(|p| &*p.body).collect();
    assert_eq!(bodies, [b"2222", b"3333", b"4444"]);
    assert!(view.history.iter().all(|p| p.body_truncated && p.body_len == 6));
}

#[test]
fn unknown_tokens_and_bad_input_change_nothing_but_counters() {
    let mut h = Harness::new();
    h.add("job", period(60, 30));
    h.success("job");
    let before = (h.checks.record("job"), h.deadline("job"), h.checks.len());
    assert_eq!(h.try_send(&token("nope"), None, None, b""), Err(PingError::UnknownToken));
    assert_eq!(h.try_send("short", Some("fail"), None, b""), Err(PingError::UnknownToken));
    assert_eq!(h.try_send(&"a".repeat(100_000), None, None, b""), Err(PingError::UnknownToken));
    assert_eq!(h.try_send(&token("job"), Some("256"), None, b""), Err(PingError::BadSignal));
    assert_eq!(h.try_send(&token("job"), Some("fail"), Some(&"r".repeat(65)), b""), Err(PingError::BadRid));
    assert_eq!(h.try_send(&token("job"), Some("fail"), Some("a b"), b""), Err(PingError::BadRid));
    h.checks.record_rejection(PingError::RateLimited);
    assert_eq!((h.checks.record("job"), h.deadline("job"), h.checks.len()), before);
    assert_eq!(h.pings.len(), 1, "no event for a refused ping");
    let stats = h.checks.stats();
    assert_eq!(stats.rejected(PingError::UnknownToken), 3);
    assert_eq!(stats.rejected(PingError::BadSignal), 1);
    assert_eq!(stats.rejected(PingError::BadRid), 2);
    assert_eq!(stats.rejected(PingError::RateLimited), 1);
    assert_eq!(stats.pings.values().sum::<u64>(), 1);
    assert_eq!(h.send("job", None, Some(""), b"").duration, None, "an empty rid counts as none");
}

// ---- the table ----

fn check_invalid(change: impl FnOnce(&mut CheckSpec), field: CheckField, expected: &str) {
    let mut spec = spec("job", period(60, 30));
    change(&mut spec);
    let error = spec.validate().unwrap_err();
    let sentence = error.to_string();
    assert!(sentence.contains(expected), "{sentence:?} should contain {expected:?}");
    assert!(!sentence.contains('\n'));
    assert_eq!(error.field(), field, "{sentence}");
    if field != CheckField::Id {
        assert_eq!(error.check(), Some("job"), "the error names its check: {sentence}");
    }
    let mut checks = Checks::new(ChecksConfig::default()).unwrap();
    assert_eq!(checks.add(spec, START, WALL0), Err(CheckError::Invalid(error)));
    assert!(checks.is_empty());
}

#[test]
fn specs_are_validated_with_one_sentence() {
    check_invalid(|s| s.schedule = period(60, 0), CheckField::Grace, "the grace is zero");
    check_invalid(
        |s| s.schedule = Schedule::Period { period: Duration::from_millis(500), grace: secs(1) },
        CheckField::Period,
        "shorter than 1 s",
    );
    check_invalid(|s| s.schedule = period(400 * 86_400, 1), CheckField::Period, "longer than 366 days");
    let cron = |expression: &str, timezone: &str| Schedule::Cron {
        expression: expression.into(),
        timezone: timezone.into(),
        grace: secs(60),
    };
    check_invalid(
        |s| s.schedule = cron("61 * * * *", "UTC"),
        CheckField::Cron,
        "does not parse: Component error",
    );
    check_invalid(
        |s| s.schedule = cron("0 0 * * * *", "UTC"),
        CheckField::Cron,
        "Pattern must have 5 fields",
    );
    check_invalid(
        |s| s.schedule = cron("0 3 * * *", "Mars/Olympus"),
        CheckField::Timezone,
        "unknown time zone \"Mars/Olympus\"",
    );
    check_invalid(|s| s.schedule = cron("0 0 30 2 *", "UTC"), CheckField::Cron, "never matches");
    check_invalid(|s| s.token = "tooShort123".into(), CheckField::Token, "at least 128 bits");
    check_invalid(|s| s.token = "a".repeat(21) + "!", CheckField::Token, "may only contain");
    check_invalid(|s| s.id = String::new(), CheckField::Id, "1 to 64 bytes");
    check_invalid(|s| s.id = "has space".into(), CheckField::Id, "whitespace");
    check_invalid(|s| s.id = "x".repeat(65), CheckField::Id, "1 to 64 bytes");
    check_invalid(
        |s| _ = s.labels.insert("bad key".into(), "v".into()),
        CheckField::Labels,
        "label \"bad key\"",
    );
    check_invalid(|s| s.description = "d".repeat(1025), CheckField::Description, "description");
    assert_eq!(spec("job", cron("@daily", "Europe/Berlin")).validate(), Ok(()));
}

#[test]
fn add_refuses_duplicates_and_counts_a_full_table() {
    let mut checks = Checks::new(ChecksConfig { max_checks: 2, ..ChecksConfig::default() }).unwrap();
    checks.add(spec("a", period(60, 30)), START, WALL0).unwrap();
    assert_eq!(checks.add(spec("a", period(60, 30)), START, WALL0), Err(CheckError::DuplicateId("a".into())));
    let mut same_token = spec("b", period(60, 30));
    same_token.token = token("a");
    assert_eq!(checks.add(same_token, START, WALL0), Err(CheckError::DuplicateToken));
    checks.add(spec("b", period(60, 30)), START, WALL0).unwrap();
    assert_eq!(checks.add(spec("c", period(60, 30)), START, WALL0), Err(CheckError::Capacity(2)));
    assert_eq!(checks.stats().capacity_refused, 1);
    assert!(checks.remove("a"));
    assert!(!checks.remove("a"));
    checks.add(spec("c", period(60, 30)), START, WALL0).unwrap();
    let ids: Vec<_> = checks.checks().map(|c| c.id.to_owned()).collect();
    assert_eq!(ids, ["b", "c"], "by id");
    assert!(checks.by_token(&token("a")).is_none());
    assert_eq!(checks.by_token(&token("c")).unwrap().id, "c");
    assert!(Checks::new(ChecksConfig { history: 0, ..ChecksConfig::default() }).is_err());
}

#[test]
fn update_rotates_the_token_and_recomputes_the_deadline() {
    let mut h = Harness::new();
    h.add("job", period(3600, 300));
    h.success("job");
    h.run_for(secs(1000));
    let mut new_spec = spec("job", period(600, 120));
    new_spec.token = token("job2");
    h.checks.update("job", new_spec.clone(), h.now, h.wall()).unwrap();
    assert_eq!(h.try_send(&token("job"), None, None, b""), Err(PingError::UnknownToken));
    assert_eq!(
        h.deadline("job"),
        Some(h.now + secs(120)),
        "last success + 720 s has passed: one grace from now"
    );
    assert_eq!(h.checks.check("job").unwrap().spec, &new_spec);
    h.try_send(&token("job2"), None, None, b"").unwrap();
    assert_eq!(h.deadline("job"), Some(h.now + secs(720)));

    let mut renamed = new_spec.clone();
    renamed.id = "other".into();
    assert!(matches!(h.checks.update("job", renamed, h.now, h.wall()), Err(CheckError::Invalid(_))));
    h.add("other", period(60, 30));
    let mut clash = new_spec.clone();
    clash.token = token("other");
    assert_eq!(h.checks.update("job", clash, h.now, h.wall()), Err(CheckError::DuplicateToken));
    assert_eq!(
        h.checks.update("nope", new_spec, h.now, h.wall()),
        Err(CheckError::UnknownCheck("nope".into()))
    );
}

#[test]
fn removing_a_check_removes_its_deadline() {
    let mut h = Harness::new();
    h.add("job", period(60, 30));
    h.success("job");
    assert!(h.checks.poll_timeout().is_some());
    h.checks.remove("job");
    assert_eq!(h.checks.poll_timeout(), None);
    assert_eq!(h.try_send(&token("job"), None, None, b""), Err(PingError::UnknownToken));
    assert_eq!(h.checks.stats().checks_by_state.iter().sum::<u64>(), 0);
}

#[test]
fn ten_thousand_checks_cost_nothing_per_timeout_but_the_due_ones() {
    let mut h = Harness::new();
    for n in 0..10_000u64 {
        h.add(&format!("job-{n}"), period(3600 + n, 60));
        h.success(&format!("job-{n}"));
    }
    let first = START + secs(3660);
    assert_eq!(h.checks.poll_timeout(), Some(first));
    let fired_before = h.checks.stats().deadlines_fired;
    h.run_until(first + secs(2));
    assert_eq!(
        h.checks.stats().deadlines_fired - fired_before,
        3,
        "only the three due checks were looked at"
    );
    assert_eq!(h.checks.stats().checks_in(NodeState::Down), 3);
    // A ping moves one entry and touches no other check.
    h.success("job-5000");
    assert_eq!(h.checks.stats().deadlines_fired - fired_before, 3);
}

#[test]
fn a_monitor_stall_pushes_deadlines_one_grace_past_it() {
    let mut h = Harness::new();
    h.add("job", period(60, 30));
    h.success("job");
    let due = h.now + secs(90);
    // The shell was stopped from before the deadline until well after it.
    h.now = due + secs(100);
    let resumed = h.now;
    h.checks.handle_self_pause(resumed);
    h.run_for(Duration::ZERO);
    assert_eq!(h.state("job"), NodeState::Up, "the silence overlaps the stall");
    assert_eq!(h.deadline("job"), Some(resumed + secs(30)));
    h.run_until(resumed + secs(30));
    assert_eq!(h.transitions.last().unwrap().at, resumed + secs(30));
    assert_eq!(h.state("job"), NodeState::Down);
}

proptest! {
    /// Whatever the pings, the deadline of an up check is never before its last ping, no
    /// transition is dated in the future, and nothing panics.
    #[test]
    fn deadlines_never_precede_the_last_ping(
        steps in proptest::collection::vec((0u64..200, 0u8..7, 0u8..3), 1..120),
    ) {
        let mut h = Harness::new();
        h.add("job", period(60, 30));
        for (gap_s, what, rid) in steps {
            h.run_for(secs(gap_s));
            let rid = ["a", "b", ""][usize::from(rid)];
            let suffix = ["", "start", "fail", "log", "0", "3", "pause"][usize::from(what)];
            if suffix == "pause" {
                h.checks.pause("job", h.now);
                h.run_for(secs(gap_s));
                h.checks.resume("job", h.now, h.wall());
                h.drain();
                continue;
            }
            h.send("job", Some(suffix), Some(rid), b"");
            if let Some(deadline) = h.deadline("job") {
                prop_assert!(deadline > h.now);
            }
        }
        for transition in &h.transitions {
            prop_assert!(transition.at <= transition.noticed);
        }
        let stats = h.checks.stats();
        prop_assert_eq!(stats.checks_by_state.iter().sum::<u64>(), 1);
    }

    /// A job that succeeds within every period + grace, with runs shorter than the grace, is
    /// never declared down. (A ping that arrives exactly at its deadline loses the race in
    /// this harness, which handles timeouts first.)
    #[test]
    fn punctual_jobs_never_go_down(steps in proptest::collection::vec((1u64..90, 0u64..30, any::<bool>()), 1..100)) {
        let mut h = Harness::new();
        h.add("job", period(60, 30));
        h.success("job");
        for (gap_s, run_s, with_start) in steps {
            let run_s = run_s.min(gap_s);
            h.run_for(secs(gap_s - run_s));
            if with_start {
                h.send("job", Some("start"), Some("r"), b"");
            }
            h.run_for(secs(run_s));
            h.send("job", Some("0"), Some("r"), b"");
        }
        prop_assert_eq!(h.history(), vec![("job".to_string(), "new", "up", "ping")]);
    }

    #[test]
    fn signal_parse_never_panics(suffix in "\\PC{0,8}") {
        if let Ok(signal) = Signal::parse(Some(&suffix)) {
            prop_assert!(suffix.len() <= 5);
            prop_assert!(Signal::KINDS.contains(&signal.as_str()));
        }
    }
}

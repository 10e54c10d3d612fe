//! Pause, maintenance windows and restore, on a virtual clock.

use super::*;

#[test]
fn a_paused_check_records_pings_and_never_goes_down() {
    let mut h = Harness::new();
    h.add("job", period(60, 30));
    h.success("job");
    assert!(h.checks.pause("job", h.now));
    assert!(!h.checks.pause("nope", h.now));
    h.drain();
    assert_eq!(h.deadline("job"), None);
    h.run_for(secs(86_400));
    assert_eq!(h.send("job", Some("fail"), None, b"").state, NodeState::Paused, "recorded, not judged");
    h.send("job", Some("start"), None, b"");
    h.run_for(secs(86_400));
    check_history(&h, &[("job", "new", "up", "ping"), ("job", "up", "paused", "pause")]);
    assert_eq!(h.pings.len(), 3);
    // The last finished run failed: the resume says so.
    assert!(h.checks.resume("job", h.now, h.wall()));
    h.drain();
    assert_eq!(h.history()[2], ("job".into(), "paused", "down", "resume"));
}

#[test]
fn resume_gives_a_fresh_deadline_from_now() {
    let mut h = Harness::new();
    h.add("job", period(60, 30));
    h.success("job");
    h.checks.pause("job", h.now);
    h.run_for(secs(1000));
    let resumed = h.now;
    h.checks.resume("job", h.now, h.wall());
    h.drain();
    assert_eq!(h.history()[2], ("job".into(), "paused", "up", "resume"));
    assert_eq!(h.deadline("job"), Some(resumed + secs(90)));
    h.run_until(resumed + secs(90));
    assert_eq!(h.history()[3], ("job".into(), "up", "down", "timeout"));
    assert!(h.checks.resume("job", h.now, h.wall()), "resuming a check that is not paused does nothing");
    assert_eq!(h.transitions.len(), 4);

    let mut fresh = Harness::new();
    fresh.add("new", period(60, 30));
    fresh.checks.pause("new", fresh.now);
    fresh.checks.resume("new", fresh.now, fresh.wall());
    fresh.drain();
    assert_eq!(fresh.state("new"), NodeState::New, "never finished a run: new again");
}

#[test]
fn maintenance_that_ends_restarts_the_deadline_from_the_end() {
    let mut h = Harness::new();
    h.add("job", period(3600, 300));
    h.success("job");
    let end_wall = h.wall() + 7_200_000;
    let end = h.now + secs(7200);
    h.checks.pause_until("job", end_wall, h.now, h.wall()).unwrap();
    h.drain();
    assert_eq!(h.deadline("job"), Some(end));
    assert_eq!(h.checks.record("job").unwrap().paused_until_wall_ms, Some(end_wall));
    h.run_until(end);
    check_history(
        &h,
        &[("job", "new", "up", "ping"), ("job", "up", "paused", "pause"), ("job", "paused", "up", "resume")],
    );
    assert_eq!(h.transitions[2].at, end);
    assert_eq!(h.deadline("job"), Some(end + secs(3900)), "a full period + grace from the end");
    h.run_until(end + secs(3899));
    assert_eq!(h.state("job"), NodeState::Up);
    h.run_until(end + secs(3900));
    assert_eq!(h.history()[3], ("job".into(), "up", "down", "timeout"));
    assert_eq!(h.transitions[3].at, end + secs(3900));

    assert_eq!(h.checks.pause_until("job", h.wall(), h.now, h.wall()), Err(CheckError::EndsInPast));
    assert_eq!(
        h.checks.pause_until("x", h.wall() + 1, h.now, h.wall()),
        Err(CheckError::UnknownCheck("x".into()))
    );
}

#[test]
fn maintenance_waits_for_the_wall_clock_and_pause_makes_it_open_ended() {
    let mut h = Harness::new();
    h.add("job", period(60, 30));
    h.success("job");
    let end_wall = h.wall() + 600_000;
    h.checks.pause_until("job", end_wall, h.now, h.wall()).unwrap();
    // The wall clock is stepped back a minute: the window ends a minute later on the monotonic clock.
    h.step_wall(-60_000);
    h.run_for(secs(600));
    assert_eq!(h.state("job"), NodeState::Paused);
    assert_eq!(h.checks.stats().deadlines_deferred, 1);
    h.run_for(secs(60));
    assert_eq!(h.state("job"), NodeState::Up);

    h.checks.pause_until("job", h.wall() + 1000, h.now, h.wall()).unwrap();
    h.checks.pause("job", h.now);
    h.run_for(secs(86_400));
    assert_eq!(h.state("job"), NodeState::Paused, "an open-ended pause");
    assert_eq!(h.checks.record("job").unwrap().paused_until_wall_ms, None);
}

#[test]
fn restore_round_trips_and_gives_a_fresh_grace() {
    let mut before = Harness::new();
    before.add("stale", period(3600, 300));
    before.add("recent", period(3600, 300));
    before.add("failing", period(3600, 300));
    before.add("quiet", period(3600, 300));
    before.success("stale");
    before.run_for(secs(3000));
    before.success("recent");
    before.send("failing", Some("fail"), None, b"");
    before.success("quiet");
    before.checks.pause_until("quiet", before.wall() + 60_000, before.now, before.wall()).unwrap();
    let records: Vec<CheckRecord> =
        before.checks.checks().map(|c| before.checks.record(c.id).unwrap()).collect();

    // The daemon comes back twenty minutes later, on a fresh monotonic clock.
    let mut after = Harness::new();
    after.wall_offset_ms = (before.wall() + 1_200_000 - WALL0) as i64;
    for record in records.iter().cloned() {
        after.checks.restore(record, after.now, after.wall()).unwrap();
    }
    let restored: Vec<CheckRecord> =
        after.checks.checks().map(|c| after.checks.record(c.id).unwrap()).collect();
    assert_eq!(restored, records, "a record round-trips");
    // Last success 4200 s before: its deadline passed while the daemon was down, so it gets one grace.
    assert_eq!(after.deadline("stale"), Some(START + secs(300)));
    // Last success 1200 s before: judged from it.
    assert_eq!(after.deadline("recent"), Some(START + secs(2700)));
    assert_eq!(after.deadline("failing"), None);
    assert_eq!(after.checks.stats().checks_in(NodeState::Up), 2);
    after.run_for(secs(1));
    check_history(&after, &[("quiet", "paused", "up", "resume")]);
    assert_eq!(after.transitions[0].at, START, "the window ended while the daemon was down");
    assert_eq!(after.deadline("quiet"), Some(START + secs(3900)), "a full deadline from the restore");

    let mut bad = records[0].clone();
    bad.state = NodeState::Suspect;
    assert!(matches!(after.checks.restore(bad, after.now, after.wall()), Err(CheckError::Invalid(_))));
    let twice = after.checks.restore(records[0].clone(), after.now, after.wall());
    assert_eq!(twice, Err(CheckError::DuplicateId(records[0].spec.id.clone())));
}

#[test]
fn restored_pings_refill_the_history_up_to_its_bound() {
    let mut checks = Checks::new(ChecksConfig { history: 3, ..ChecksConfig::default() }).unwrap();
    let spec = CheckSpec {
        id: "job".into(),
        token: "abcdefghijklmnopqrstuv".into(),
        slug: None,
        schedule: Schedule::Period { period: Duration::from_secs(60), grace: Duration::from_secs(60) },
        labels: Default::default(),
        description: String::new(),
    };
    checks.add(spec, Instant::ZERO, 0).unwrap();
    let ping = |wall_ms: u64| PingRecord {
        signal: Signal::Success,
        at: Instant::ZERO,
        wall_ms,
        rid: None,
        duration: None,
        body: Arc::from(&b""[..]),
        body_len: 0,
        body_truncated: false,
    };
    assert!(checks.restore_pings("job", (1..=5).map(ping)));
    let kept: Vec<u64> = checks.check("job").unwrap().history.iter().map(|p| p.wall_ms).collect();
    assert_eq!(kept, [3, 4, 5]);
    assert!(!checks.restore_pings("nobody", [ping(9)]));
}

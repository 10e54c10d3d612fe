//! Cron schedules in time zones, across daylight saving changes, on a virtual clock that
//! steps through the days. Expected instants are computed here with chrono-tz directly,
//! not with the code under test.

use super::*;
use chrono::{LocalResult, NaiveDate, TimeZone};
use chrono_tz::Tz;

const HOUR_MS: u64 = 3_600_000;

fn cron(expression: &str, timezone: &str, grace_s: u64) -> Schedule {
    Schedule::Cron { expression: expression.into(), timezone: timezone.into(), grace: secs(grace_s) }
}

fn tz(name: &str) -> Tz {
    name.parse().unwrap()
}

/// The wall time (ms since the epoch) of a local time, the way a cron daemon runs a fixed
/// time job (Vixie cron, cronie): a time that happens twice runs at its first occurrence,
/// a time that does not exist runs at the first valid minute after the gap (`skipped_to`).
fn local_ms(zone: Tz, date: NaiveDate, (hour, minute): (u32, u32), skipped_to: (u32, u32)) -> u64 {
    let naive = date.and_hms_opt(hour, minute, 0).unwrap();
    let instant = match zone.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t,
        LocalResult::None => return local_ms(zone, date, skipped_to, skipped_to),
    };
    instant.timestamp_millis() as u64
}

fn days(from: (i32, u32, u32), to: (i32, u32, u32)) -> impl Iterator<Item = NaiveDate> {
    let first = NaiveDate::from_ymd_opt(from.0, from.1, from.2).unwrap();
    let last = NaiveDate::from_ymd_opt(to.0, to.1, to.2).unwrap();
    first.iter_days().take_while(move |day| *day <= last)
}

impl Harness {
    /// Steps the (lockstep) clock to the instant at which the wall clock reads `wall_ms`.
    fn run_until_wall(&mut self, wall_ms: u64) {
        assert_eq!(self.wall_offset_ms, 0, "only for a wall clock in lockstep");
        self.run_until(START + Duration::from_millis(wall_ms - WALL0));
    }

    fn instant_of_wall(&self, wall_ms: u64) -> Instant {
        START + Duration::from_millis(wall_ms - WALL0)
    }

    fn downs(&self) -> Vec<Transition> {
        self.transitions.iter().filter(|t| t.to == NodeState::Down).cloned().collect()
    }
}

#[test]
fn cron_deadline_is_the_next_tick_plus_grace() {
    let mut h = Harness::new();
    h.add("nightly", cron("0 3 * * *", "UTC", 600));
    h.success("nightly");
    let deadline = START + secs(3 * 3600 + 600);
    assert_eq!(h.deadline("nightly"), Some(deadline));
    h.run_until(deadline - Duration::from_millis(1));
    assert_eq!(h.state("nightly"), NodeState::Up);
    h.run_until(deadline);
    check_history(&h, &[("nightly", "new", "up", "ping"), ("nightly", "up", "down", "timeout")]);
    assert_eq!(h.transitions[1].at, deadline);
    h.run_for(secs(600));
    h.success("nightly");
    assert_eq!(h.deadline("nightly"), Some(deadline + secs(86_400)), "tomorrow's tick + grace");
}

#[test]
fn a_ping_counts_for_the_latest_tick_at_or_before_it() {
    let mut h = Harness::new();
    h.add("hourly", cron("0 * * * *", "UTC", 60));
    // One second before the 01:00 tick: it still counts for 00:00, so 01:00 + grace is due.
    h.run_until_wall(WALL0 + HOUR_MS - 1000);
    h.success("hourly");
    assert_eq!(h.deadline("hourly"), Some(h.instant_of_wall(WALL0 + HOUR_MS + 60_000)));
    h.run_until_wall(WALL0 + HOUR_MS);
    h.success("hourly");
    assert_eq!(h.deadline("hourly"), Some(h.instant_of_wall(WALL0 + 2 * HOUR_MS + 60_000)));
}

#[test]
fn a_cron_deadline_waits_for_the_wall_clock() {
    let mut h = Harness::new();
    h.add("nightly", cron("0 3 * * *", "UTC", 600));
    h.success("nightly");
    let deadline = START + secs(3 * 3600 + 600);
    // The wall clock is stepped back half an hour (NTP): 03:10 comes 30 minutes later.
    h.step_wall(-1_800_000);
    h.run_until(deadline);
    assert_eq!(h.state("nightly"), NodeState::Up);
    assert_eq!(h.checks.stats().deadlines_deferred, 1);
    assert_eq!(h.deadline("nightly"), Some(deadline + secs(1800)));
    h.run_until(deadline + secs(1800));
    assert_eq!(h.state("nightly"), NodeState::Down);
    assert_eq!(h.transitions[1].at, deadline + secs(1800));
}

#[test]
fn berlin_half_past_two_across_both_changes_never_goes_down_falsely() {
    let berlin = tz("Europe/Berlin");
    let mut h = Harness::new();
    h.add("backup", cron("30 2 * * *", "Europe/Berlin", 300));
    let mut deadlines = BTreeMap::new();
    for day in days((2025, 3, 1), (2025, 11, 30)) {
        // The job runs when the cron daemon starts it, takes ten seconds, then pings.
        let ping = local_ms(berlin, day, (2, 30), (3, 0)) + 10_000;
        h.run_until_wall(ping);
        assert_eq!(h.success("backup").state, NodeState::Up, "{day}");
        deadlines.insert(day.to_string(), h.deadline("backup").unwrap() - h.now);
    }
    assert_eq!(h.downs(), vec![], "no false alarm");
    let minutes = |day: &str| deadlines[day].as_secs() / 60;
    // 2:30 does not exist on 30 March: the tick is 3:00 CEST, 23.5 h after the 29th's 2:30 CET.
    assert_eq!(minutes("2025-03-29"), 23 * 60 + 30 + 5 - 1);
    assert_eq!(minutes("2025-03-30"), 23 * 60 + 30 + 5 - 1, "3:00 CEST to 2:30 CEST");
    // 2:30 happens twice on 26 October: the tick is the first one, and only that one.
    assert_eq!(minutes("2025-10-25"), 24 * 60 + 5 - 1);
    assert_eq!(minutes("2025-10-26"), 25 * 60 + 5 - 1, "2:30 CEST to 2:30 CET the next day");
    assert_eq!(minutes("2025-06-15"), 24 * 60 + 5 - 1);
}

#[test]
fn a_cron_daemon_that_skips_the_missing_time_is_reported() {
    // Some cron daemons do not run a job whose time falls in the spring-forward gap at all.
    // The check expects it at 3:00 (croner's rule), so it goes down at 3:00 + grace: documented.
    let berlin = tz("Europe/Berlin");
    let mut h = Harness::new();
    h.add("backup", cron("30 2 * * *", "Europe/Berlin", 300));
    for day in days((2025, 3, 25), (2025, 4, 2)) {
        let at = berlin.from_local_datetime(&day.and_hms_opt(2, 30, 0).unwrap());
        if let LocalResult::Single(at) = at {
            h.run_until_wall(at.timestamp_millis() as u64);
            h.success("backup");
        }
    }
    let downs = h.downs();
    assert_eq!(downs.len(), 1);
    let expected = berlin.with_ymd_and_hms(2025, 3, 30, 3, 5, 0).unwrap().timestamp_millis() as u64;
    assert_eq!(downs[0].at, h.instant_of_wall(expected));
    assert_eq!(h.state("backup"), NodeState::Up, "the next day's run brought it back");
}

#[test]
fn new_york_nine_am_daily_across_march_and_november_never_goes_down() {
    let new_york = tz("America/New_York");
    let mut h = Harness::new();
    h.add("report", cron("0 9 * * *", "America/New_York", 3600));
    for day in days((2025, 3, 1), (2025, 11, 30)) {
        let ping = local_ms(new_york, day, (9, 0), (9, 0));
        h.run_until_wall(ping);
        assert_eq!(h.success("report").state, NodeState::Up);
        let tomorrow = local_ms(new_york, day.succ_opt().unwrap(), (9, 0), (9, 0));
        let expected = Duration::from_millis(tomorrow - ping) + secs(3600);
        assert_eq!(h.deadline("report").unwrap() - h.now, expected, "{day}");
        if day == NaiveDate::from_ymd_opt(2025, 3, 8).unwrap() {
            assert_eq!(expected, secs(24 * 3600), "23 h to the next 9:00 EDT + 1 h grace");
        }
        if day == NaiveDate::from_ymd_opt(2025, 11, 1).unwrap() {
            assert_eq!(expected, secs(26 * 3600), "25 h to the next 9:00 EST + 1 h grace");
        }
    }
    assert_eq!(h.downs(), vec![]);
}

#[test]
fn a_missed_run_on_the_change_day_goes_down_at_the_local_tick_plus_grace() {
    let new_york = tz("America/New_York");
    let mut h = Harness::new();
    h.add("report", cron("0 9 * * *", "America/New_York", 3600));
    for day in days((2025, 3, 5), (2025, 3, 8)) {
        h.run_until_wall(local_ms(new_york, day, (9, 0), (9, 0)));
        h.success("report");
    }
    h.run_until_wall(local_ms(new_york, NaiveDate::from_ymd_opt(2025, 3, 11).unwrap(), (9, 0), (9, 0)));
    let downs = h.downs();
    assert_eq!(downs.len(), 1);
    let expected = new_york.with_ymd_and_hms(2025, 3, 9, 10, 0, 0).unwrap().timestamp_millis() as u64;
    assert_eq!(downs[0].at, h.instant_of_wall(expected), "10:00 EDT, 23 h after the last 10:00 EST");
}

#[test]
fn every_half_hour_through_both_changes_never_goes_down() {
    // A wildcard job runs at every wall time that exists: skipped in the spring gap, twice in
    // the autumn's repeated hour. Berlin's offsets are whole hours, so that is every 30 real minutes.
    for (from, to) in [((2025, 3, 29), (2025, 3, 31)), ((2025, 10, 25), (2025, 10, 27))] {
        let midnight =
            |(y, m, d): (i32, u32, u32)| NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(0, 0, 0);
        let start = midnight(from).unwrap().and_utc().timestamp_millis() as u64;
        let end = midnight(to).unwrap().and_utc().timestamp_millis() as u64;
        let mut h = Harness::new();
        h.add("poll", cron("*/30 * * * *", "Europe/Berlin", 120));
        let mut ping = start;
        while ping <= end {
            h.run_until_wall(ping + 5_000);
            h.success("poll");
            assert_eq!(h.deadline("poll").unwrap() - h.now, secs(30 * 60 + 120 - 5));
            ping += HOUR_MS / 2;
        }
        assert_eq!(h.downs(), vec![]);
    }
}

#[test]
fn cron_maintenance_restarts_from_the_next_tick_after_the_end() {
    let mut h = Harness::new();
    h.add("nightly", cron("0 3 * * *", "UTC", 600));
    h.success("nightly");
    // Maintenance from 00:00 to 05:00: the 03:00 run is not expected.
    let end = WALL0 + 5 * HOUR_MS;
    h.checks.pause_until("nightly", end, h.now, h.wall()).unwrap();
    h.run_until_wall(end);
    assert_eq!(h.state("nightly"), NodeState::Up);
    assert_eq!(h.deadline("nightly"), Some(h.instant_of_wall(WALL0 + 27 * HOUR_MS + 600_000)));
    assert_eq!(h.downs(), vec![]);
}

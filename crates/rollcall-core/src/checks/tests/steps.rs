//! Steps of the monitor's wall clock (NTP, a VM restored from a snapshot), reported by the
//! shell with `handle_wall_step` or not: cron deadlines and maintenance windows follow the
//! wall clock, and nothing is dated before the step or the success it counts from.

use super::*;

fn cron(expression: &str, grace_s: u64) -> Schedule {
    Schedule::Cron { expression: expression.into(), timezone: "UTC".into(), grace: secs(grace_s) }
}

impl Harness {
    /// Steps the wall clock and tells the table, as the shell does when it notices.
    fn step_wall_reported(&mut self, by_ms: i64) {
        self.step_wall(by_ms);
        let (now, wall) = (self.now, self.wall());
        self.checks.handle_wall_step(now, wall);
        self.drain();
    }
}

#[test]
fn a_clock_that_was_ahead_and_stepped_back_keeps_punctual_minutely_pings_up() {
    // Issue #11's case: the monitor's wall clock is 40 s ahead, then NTP steps it back.
    let mut h = Harness::new();
    h.step_wall(40_000);
    h.add("minutely", cron("* * * * *", 15));
    // The job pings five seconds after each minute (true time; the wall clock says :45).
    h.run_for(secs(5));
    h.success("minutely");
    h.run_for(secs(15));
    h.step_wall_reported(-40_000);
    // The deadline follows the wall clock at once: 00:01:00 + 15 s, true time.
    assert_eq!(h.deadline("minutely"), Some(START + secs(75)));
    for minute in 1..=10 {
        h.run_until(START + secs(60 * minute + 5));
        assert_eq!(h.success("minutely").state, NodeState::Up, "minute {minute}");
    }
    check_history(&h, &[("minutely", "new", "up", "ping")]);
    assert_eq!(h.checks.stats().deadlines_deferred, 0, "no deadline fired early");
    assert_eq!(h.checks.stats().wall_steps, 1);
}

#[test]
fn a_step_forward_brings_a_cron_deadline_no_sooner_than_one_grace() {
    let mut h = Harness::new();
    h.add("silent", cron("0 * * * *", 300));
    h.add("catches-up", cron("0 * * * *", 300));
    h.run_for(secs(10));
    h.success("silent");
    h.success("catches-up");
    assert_eq!(h.deadline("silent"), Some(START + secs(3600 + 300)));
    // At 00:30 the wall clock jumps two hours forward: 01:05 has passed on the wall clock.
    h.run_until(START + secs(1800));
    let stepped = h.now;
    h.step_wall_reported(2 * 3600 * 1000);
    assert_eq!(h.deadline("silent"), Some(stepped + secs(300)), "one grace after the step");
    // The cron daemon on the stepped clock runs the skipped job late, within the grace.
    h.run_for(secs(120));
    assert_eq!(h.success("catches-up").state, NodeState::Up);
    h.run_until(stepped + secs(300));
    let downs: Vec<_> = h.transitions.iter().filter(|t| t.to == NodeState::Down).collect();
    assert_eq!(downs.len(), 1, "{downs:?}");
    assert_eq!((&*downs[0].node, downs[0].at), ("silent", stepped + secs(300)));
    // The job that pinged is judged by the stepped wall clock: 03:00 + grace, wall time.
    let wall_at_ping = WALL0 + 1_800_000 + 120_000 + 2 * 3_600_000;
    let next = WALL0 + 3 * 3_600_000 + 300_000;
    assert_eq!(
        h.deadline("catches-up"),
        Some(stepped + secs(120) + Duration::from_millis(next - wall_at_ping))
    );
}

#[test]
fn an_unreported_step_forward_never_dates_a_down_before_the_success() {
    let mut h = Harness::new();
    h.add("hourly", cron("0 * * * *", 300));
    h.run_for(secs(10));
    h.success("hourly");
    let success = h.now;
    let deadline = START + secs(3600 + 300);
    // The shell does not report the step: the deadline still comes on the monotonic clock.
    h.step_wall(2 * 3600 * 1000);
    h.run_until(deadline);
    assert_eq!(h.state("hourly"), NodeState::Down);
    let down = h.transitions.last().unwrap();
    assert!(down.at >= success, "dated {:?}, after the success at {success:?}", down.at);
    assert_eq!(down.at, deadline);
}

#[test]
fn maintenance_windows_end_when_the_wall_clock_passes_them_either_way() {
    let mut h = Harness::new();
    h.add("back", period(3600, 300));
    h.add("forward", period(3600, 300));
    h.success("back");
    h.success("forward");
    let end = h.wall() + 600_000;
    h.checks.pause_until("back", end, h.now, h.wall()).unwrap();
    h.checks.pause_until("forward", end, h.now, h.wall()).unwrap();
    h.run_for(secs(60));
    // Back a minute: the window ends a minute later on the monotonic clock.
    h.step_wall_reported(-60_000);
    assert_eq!(h.deadline("back"), Some(START + secs(660)));
    // Then forward twenty minutes: the wall clock is past the end, which comes at once.
    h.step_wall_reported(20 * 60_000);
    assert_eq!(h.deadline("forward"), Some(h.now));
    h.run_for(Duration::ZERO);
    assert_eq!(h.state("forward"), NodeState::Up);
    assert_eq!(h.state("back"), NodeState::Up);
    // A full deadline from the end of the window, never a down at once.
    assert_eq!(h.deadline("forward"), Some(h.now + secs(3900)));
    assert_eq!(h.downs_count(), 0);
}

impl Harness {
    fn downs_count(&self) -> usize {
        self.transitions.iter().filter(|t| t.to == NodeState::Down).count()
    }
}

#[test]
fn a_small_step_forward_never_postpones_a_deadline() {
    let mut h = Harness::new();
    h.add("hourly", cron("0 * * * *", 300));
    h.success("hourly");
    let deadline = START + secs(3600 + 300);
    assert_eq!(h.deadline("hourly"), Some(deadline));
    // A minute before the deadline the wall clock is stepped 600 ms forward (or slewing adds
    // up to that): the deadline stays where it was, not one grace after the step.
    h.run_until(deadline - secs(60));
    h.step_wall_reported(600);
    assert_eq!(h.deadline("hourly"), Some(deadline));
    h.run_until(deadline);
    assert_eq!(h.state("hourly"), NodeState::Down);
    assert_eq!(h.transitions.last().map(|t| t.at), Some(deadline));
}

//! One check's state: its schedule deadline, its open runs, its ping history.

use super::spec::{CheckSpec, Compiled};
use super::types::{Outcome, PingRecord};
use crate::Instant;
use crate::monitor::NodeState;
use core::time::Duration;
use std::collections::VecDeque;
use std::sync::Arc;

/// What the table knows of one check.
#[derive(Clone, Debug)]
pub(crate) struct Check {
    pub id: Arc<str>,
    pub spec: CheckSpec,
    pub schedule: Compiled,
    pub state: NodeState,
    /// When the table started watching the check (its addition or restore): no transition
    /// is dated before it.
    pub watch_from: Instant,
    /// The schedule is counted from here: the last success, or a resume, the end of a
    /// maintenance window, with its wall time (cron ticks are found from the wall time).
    /// `None` after a restore: the last success is then known by its wall time only.
    pub anchor: Option<Instant>,
    pub anchor_wall_ms: u64,
    /// The schedule deadline computed from the anchor; `None` when the cron search found no
    /// tick.
    pub due: Option<Due>,
    /// When the check last became `up`: a run that started earlier is timed from here, so
    /// a run that began while the check was not judged never fires at once.
    pub up_since: Instant,
    /// Started runs waiting for their finish, oldest first.
    pub runs: VecDeque<Run>,
    /// The last pings, oldest first.
    pub history: VecDeque<PingRecord>,
    pub last_ping_wall_ms: Option<u64>,
    pub last_success_wall_ms: Option<u64>,
    pub last_outcome: Option<Outcome>,
    /// The end of the maintenance window, as wall time and as the monotonic instant it
    /// mapped to when it was set.
    pub paused_until: Option<(u64, Instant)>,
    /// The check's entry in the timer queue, if any.
    pub timer: Option<Instant>,
}

/// A schedule deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Due {
    pub at: Instant,
    /// For a cron schedule, the same deadline in wall time: when `at` comes, the wall clock
    /// decides whether it has really passed (the wall clock may have been stepped).
    pub wall_ms: Option<u64>,
}

/// A started run.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    pub rid: Option<Arc<str>>,
    pub started: Instant,
    /// Its deadline already fired: it still pairs with a late finish, for the duration, but
    /// it no longer decides the check's state.
    pub overdue: bool,
}

impl Check {
    pub fn grace(&self) -> Duration {
        self.schedule.grace()
    }

    /// The instant at which `run` is late.
    pub fn run_deadline(&self, run: &Run) -> Instant {
        run.started.max(self.up_since) + self.grace()
    }

    /// The earliest deadline among the runs that can still make the check late.
    pub fn earliest_run_deadline(&self) -> Option<Instant> {
        self.runs.iter().filter(|run| !run.overdue).map(|run| self.run_deadline(run)).min()
    }

    /// Opens a run. A start with the rid of an open run (or without rid, while a run without
    /// rid is open) replaces it: the job was started again. Returns whether the oldest run
    /// had to be dropped to stay within `max_runs`.
    pub fn open_run(&mut self, rid: Option<Arc<str>>, now: Instant, max_runs: usize) -> bool {
        if let Some(position) = self.runs.iter().position(|run| run.rid == rid) {
            self.runs.remove(position);
        }
        let dropped = self.runs.len() >= max_runs;
        if dropped {
            self.runs.pop_front();
        }
        self.runs.push_back(Run { rid, started: now, overdue: false });
        debug_assert!(self.runs.len() <= max_runs, "a run is dropped before one is pushed past the bound");
        dropped
    }

    /// Closes the run a finish belongs to and returns how long it took: the run with the
    /// same rid, or without rid the most recent open run.
    pub fn close_run(&mut self, rid: Option<&str>, now: Instant) -> Option<Duration> {
        let position = match rid {
            Some(rid) => self.runs.iter().rposition(|run| run.rid.as_deref() == Some(rid))?,
            None => self.runs.len().checked_sub(1)?,
        };
        let run = self.runs.remove(position).expect("position comes from the same deque");
        Some(now - run.started)
    }

    /// Marks every run whose deadline is at or before `now` overdue; returns the earliest
    /// such deadline.
    pub fn expire_runs(&mut self, now: Instant) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let grace = self.grace();
        let up_since = self.up_since;
        for run in self.runs.iter_mut().filter(|run| !run.overdue) {
            let deadline = run.started.max(up_since) + grace;
            if deadline <= now {
                run.overdue = true;
                earliest = Some(earliest.map_or(deadline, |at| at.min(deadline)));
            }
        }
        earliest
    }

    /// Adds a ping to the history, dropping the oldest beyond `limit`.
    pub fn remember(&mut self, record: PingRecord, limit: usize) {
        if self.history.len() >= limit {
            self.history.pop_front();
        }
        self.history.push_back(record);
    }

    /// The state a check takes when its pause ends: what its last finished run said, or
    /// `new` if it never finished one.
    pub fn state_after_pause(&self) -> NodeState {
        match self.last_outcome {
            None => NodeState::New,
            Some(Outcome::Success) => NodeState::Up,
            Some(Outcome::Failure) => NodeState::Down,
        }
    }
}

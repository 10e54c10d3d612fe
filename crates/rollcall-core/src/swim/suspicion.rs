//! Lifeguard's two timing rules, as HashiCorp memberlist implements them: the suspicion
//! timeout that shrinks with independent confirmations, and the local health multiplier
//! that stretches a struggling peer's probe interval and timeout. The formulas are in
//! `docs/PEER.md`, "Timing"; tests check them against hand-computed values.

use super::SwimConfig;
use core::time::Duration;
use rollcall_detect::Instant;
use std::sync::Arc;

/// The shortest and longest suspicion timeouts for a cluster of `n` live members:
/// `min = suspicion_mult × max(1, log10(n)) × probe_interval`, `max = suspicion_max_mult × min`.
pub fn suspicion_bounds(config: &SwimConfig, n: u32) -> (Duration, Duration) {
    let scale = f64::from(n.max(1)).log10().max(1.0);
    let min = config.probe_interval.mul_f64(f64::from(config.suspicion_mult) * scale);
    (min, min * config.suspicion_max_mult.max(1))
}

/// How many independent confirmations shrink a suspicion to its minimum: `k =
/// suspicion_confirmations` (memberlist ties it to `suspicion_mult - 2`), or 0 when the
/// cluster is too small to supply them (`n - 2 < k`).
pub fn expected_confirmations(config: &SwimConfig, n: u32) -> u32 {
    let k = config.suspicion_confirmations;
    if n.saturating_sub(2) < k { 0 } else { k }
}

/// The suspicion timeout after `confirmations` independent confirmations:
/// `max(min, max - (max - min) × log(C + 1) / log(k + 1))`, or `min` when `k` is 0.
pub fn suspicion_timeout(min: Duration, max: Duration, k: u32, confirmations: u32) -> Duration {
    if k == 0 {
        return min;
    }
    let fraction = f64::from(confirmations + 1).ln() / f64::from(k + 1).ln();
    let span = (max.as_secs_f64() - min.as_secs_f64()) * fraction;
    let timeout = max.as_secs_f64() - span;
    Duration::from_secs_f64(timeout.max(min.as_secs_f64()))
}

/// One open suspicion of a member.
#[derive(Clone, Debug)]
pub(crate) struct Suspicion {
    pub incarnation: u32,
    pub started: Instant,
    pub min: Duration,
    pub max: Duration,
    pub k: u32,
    /// The first accuser, then each distinct confirmer (at most `k` of them count).
    pub accusers: Accusers,
    pub deadline: Instant,
}

impl Suspicion {
    pub fn new(config: &SwimConfig, n: u32, incarnation: u32, accuser: Accuser, now: Instant) -> Suspicion {
        let (min, max) = suspicion_bounds(config, n);
        let k = expected_confirmations(config, n);
        let mut suspicion = Suspicion {
            incarnation,
            started: now,
            min,
            max,
            k,
            accusers: Accusers::new(accuser),
            deadline: now,
        };
        suspicion.deadline = now + suspicion.timeout();
        suspicion
    }

    pub fn confirmations(&self) -> u32 {
        self.accusers.len().saturating_sub(1)
    }

    pub fn timeout(&self) -> Duration {
        suspicion_timeout(self.min, self.max, self.k, self.confirmations())
    }

    /// Records the accuser `made` would return, unless `same` says it accused already;
    /// true (and a new, earlier deadline) if it is a new, counted one.
    pub fn confirm(&mut self, same: impl Fn(&Accuser) -> bool, made: impl FnOnce() -> Accuser) -> bool {
        if self.confirmations() >= self.k || self.accusers.iter().any(same) {
            return false;
        }
        self.accusers.push(made());
        self.deadline = self.started + self.timeout();
        true
    }
}

/// Who accused a member: a member of our table, by slot (slot 0 is this peer), which is
/// compared as a number and costs no allocation; or, rarely, a name the table does not
/// hold. Slots are never reused and each holds one name for good, so two accusers are the
/// same member exactly when their slots are equal (see `Peer::same_accuser`).
#[derive(Clone, Debug)]
pub(crate) enum Accuser {
    Slot(u32),
    Name(Arc<str>),
}

/// How many accusers a suspicion holds inline: the first and two confirmations, as many
/// as count with the default `suspicion_confirmations` (2).
const INLINE: usize = 3;

/// A suspicion's accusers, the first [`INLINE`] of them kept in the suspicion itself: they
/// are compared for every confirmation heard, and at 10,000 simulated peers a vector of
/// its own was one more cache miss each time.
#[derive(Clone, Debug)]
pub(crate) struct Accusers {
    inline: [Accuser; INLINE],
    /// How many of `inline` are held (at least 1).
    len: u32,
    /// Those after the first [`INLINE`] (a `suspicion_confirmations` above 2).
    more: Vec<Accuser>,
}

impl Accusers {
    fn new(first: Accuser) -> Accusers {
        Accusers { inline: [first, Accuser::Slot(0), Accuser::Slot(0)], len: 1, more: Vec::new() }
    }

    pub fn len(&self) -> u32 {
        self.len + self.more.len() as u32
    }

    /// The first accuser: the one that started the suspicion.
    pub fn first(&self) -> &Accuser {
        &self.inline[0]
    }

    fn push(&mut self, accuser: Accuser) {
        match self.inline.get_mut(self.len as usize) {
            Some(place) => {
                *place = accuser;
                self.len += 1;
            }
            None => self.more.push(accuser),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Accuser> {
        self.inline[..self.len as usize].iter().chain(&self.more)
    }
}

/// Lifeguard's local health multiplier ("awareness" in memberlist): a score in
/// `0..max`, raised by failed probes without the nacks that would clear us, and by having to
/// refute a suspicion of ourselves; lowered by each successful probe.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Health {
    pub score: u32,
    pub max: u32,
}

impl Health {
    pub fn apply(&mut self, delta: i64) {
        let top = i64::from(self.max.saturating_sub(1));
        self.score = (i64::from(self.score) + delta).clamp(0, top) as u32;
    }

    /// `span × (score + 1)`.
    pub fn scale(&self, span: Duration) -> Duration {
        span * (self.score + 1)
    }
}

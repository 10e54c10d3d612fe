//! foca (crates.io) as a [`Machine`]: its `Runtime` collects sends, notifications and timer
//! requests; timers wait in the node's own heap until the loop wakes it.

use crate::metrics::{Kind, View};
use crate::sansio::Machine;
use core::cmp::Reverse;
use core::num::NonZeroU32;
use foca::{Config, Foca, Identity, Member, Notification, PostcardCodec, Runtime, Timer};
use rand_core::SeedableRng;
use rand_xorshift::XorShiftRng;
use rollcall_core::Instant;
use serde::{Deserialize, Serialize};
use std::collections::BinaryHeap;
use std::time::Duration;

/// A node's identity: its index, and a generation it bumps when it was declared down
/// (foca's `Identity::renew`), so that a false `down` is recoverable as rollcall's
/// refutation is, instead of leaving the node defunct for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FocaId {
    node: u32,
    generation: u32,
}

impl Identity for FocaId {
    type Addr = u32;

    fn renew(&self) -> Option<Self> {
        Some(FocaId { node: self.node, generation: self.generation + 1 })
    }

    fn addr(&self) -> u32 {
        self.node
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// foca's LAN profile for `nodes` (`Config::new_lan`): period 1 s, probe RTT 500 ms, 3
/// indirect probes, `max_transmissions = 4 x log10(n + 1)`, suspicion `4 x max(1, log10 n)`
/// periods, gossip to 3 members every 200 ms, announce every 30 s.
pub fn config(nodes: u32) -> Config {
    Config::new_lan(NonZeroU32::new(nodes).expect("a cell has nodes"))
}

type Inner = Foca<FocaId, PostcardCodec, XorShiftRng, foca::NoCustomBroadcast>;

pub struct FocaNode {
    foca: Inner,
    runtime: Collector,
}

struct Pending {
    at: Instant,
    order: u64,
    timer: Timer<FocaId>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// foca's `Runtime`: everything it asks for, kept until the loop drains it.
struct Collector {
    index: u32,
    now: Instant,
    order: u64,
    /// Counts failed probes, each its own suspicion episode (see [`View::episode`]).
    failed: u64,
    timers: BinaryHeap<Reverse<Pending>>,
    sends: Vec<(u32, Vec<u8>)>,
    views: Vec<View>,
}

impl Runtime<FocaId> for Collector {
    fn notify(&mut self, notification: Notification<'_, FocaId>) {
        let (subject, kind, episode) = match notification {
            Notification::MemberUp(id) => (id, Kind::Up, u64::from(id.generation)),
            Notification::MemberDown(id) => (id, Kind::Down, u64::from(id.generation)),
            Notification::ProbeFailed(_, id) => {
                self.failed += 1;
                (id, Kind::Suspect, u64::from(self.index) << 32 | self.failed)
            }
            _ => return,
        };
        self.views.push(View { observer: self.index, subject: subject.node, kind, episode, at: self.now });
    }

    fn send_to(&mut self, to: FocaId, data: &[u8]) {
        self.sends.push((to.node, data.to_vec()));
    }

    fn submit_after(&mut self, timer: Timer<FocaId>, after: Duration) {
        self.order += 1;
        self.timers.push(Reverse(Pending { at: self.now + after, order: self.order, timer }));
    }
}

/// Builds node `index` of `nodes`, warm: every other member is applied as alive (without
/// broadcasting it), as rollcall's peers start knowing everyone.
pub fn boot(config: &Config, nodes: u32, seed: u64, index: u32) -> FocaNode {
    let id = FocaId { node: index, generation: 0 };
    let rng = XorShiftRng::seed_from_u64(seed ^ u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut foca = Foca::new(id, config.clone(), rng, PostcardCodec);
    let mut runtime = Collector {
        index,
        now: Instant::ZERO,
        order: 0,
        failed: 0,
        timers: BinaryHeap::new(),
        sends: Vec::new(),
        views: Vec::new(),
    };
    let others = (0..nodes).filter(|&n| n != index).map(|node| Member::alive(FocaId { node, generation: 0 }));
    foca.apply_many(others, false, &mut runtime).expect("applying known members cannot fail");
    // The warm start is not news: keep only the timers it set, shifted by a random phase
    // so that nodes started together do not probe in lockstep (rollcall's peers draw theirs).
    runtime.views.clear();
    let phase = Duration::from_secs_f64(rollcall_sim::Rng::new(seed ^ u64::from(index)).f64());
    let timers = core::mem::take(&mut runtime.timers);
    runtime.timers =
        timers.into_iter().map(|Reverse(p)| Reverse(Pending { at: p.at + phase, ..p })).collect();
    FocaNode { foca, runtime }
}

impl Machine for FocaNode {
    fn handle_datagram(&mut self, now: Instant, from: u32, bytes: &[u8]) {
        let _ = from;
        self.runtime.now = now;
        // A datagram foca refuses changes nothing; the simulation sends none on purpose.
        let _ = self.foca.handle_data(bytes, &mut self.runtime);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.runtime.now = now;
        // Timers set for `now` by the timers handled here are handled in this call too.
        while self.runtime.timers.peek().is_some_and(|Reverse(p)| p.at <= now) {
            let Reverse(pending) = self.runtime.timers.pop().expect("peeked");
            let _ = self.foca.handle_timer(pending.timer, &mut self.runtime);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.runtime.timers.peek().map(|Reverse(p)| p.at)
    }

    fn drain(&mut self, sends: &mut Vec<(u32, Vec<u8>)>, views: &mut Vec<View>) {
        sends.append(&mut self.runtime.sends);
        views.append(&mut self.runtime.views);
    }
}

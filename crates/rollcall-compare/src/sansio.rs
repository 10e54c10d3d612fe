//! The event loop for sans-IO implementations (rollcall's `Peer`, foca): N machines, the
//! shared [`Wire`], and the plan's crashes on one virtual clock.
//!
//! It is rollcall-sim's peer engine reduced to what the comparison needs: events in a heap
//! ordered by (instant, insertion number), one pending wake-up per machine (stale ones are
//! skipped), datagrams routed after every step. A run is a pure function of the cell.

use crate::metrics::{Run, View};
use crate::model::{Cell, Plan, Wire};
use core::cmp::Reverse;
use core::time::Duration;
use rollcall_core::Instant;
use std::collections::BinaryHeap;

/// What the loop needs from an implementation's node.
pub trait Machine {
    fn handle_datagram(&mut self, now: Instant, from: u32, bytes: &[u8]);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    /// Moves out the datagrams to send (recipient, bytes) and the view changes (with this
    /// node as observer).
    fn drain(&mut self, sends: &mut Vec<(u32, Vec<u8>)>, views: &mut Vec<View>);
}

/// Progress every this many events.
const PROGRESS_EVERY: u64 = 1 << 16;

enum Event {
    Deliver { to: u32, from: u32, bytes: Vec<u8> },
    Wake { node: u32 },
    Crash { node: u32 },
}

struct Queued {
    at: Instant,
    order: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

struct Engine<M> {
    machines: Vec<Option<M>>,
    wakes: Vec<Option<Instant>>,
    wire: Wire,
    queue: BinaryHeap<Reverse<Queued>>,
    order: u64,
    run: Run,
    sends: Vec<(u32, Vec<u8>)>,
    views: Vec<View>,
}

/// Runs `cell` with the machines `boot` makes (`boot(index)` at instant zero), reporting
/// the virtual time reached.
pub fn run<M: Machine>(
    cell: &Cell,
    plan: &Plan,
    mut boot: impl FnMut(u32) -> M,
    progress: &mut dyn FnMut(Duration),
) -> Run {
    let n = cell.nodes as usize;
    let mut engine = Engine {
        machines: Vec::with_capacity(n),
        wakes: vec![None; n],
        wire: Wire::new(cell, plan),
        queue: BinaryHeap::with_capacity(n * 4),
        order: 0,
        run: Run::default(),
        sends: Vec::new(),
        views: Vec::new(),
    };
    for node in 0..cell.nodes {
        engine.machines.push(Some(boot(node)));
        engine.flush(node, Instant::ZERO);
    }
    for &(node, at) in &plan.crashes {
        engine.push(at, Event::Crash { node });
    }
    while let Some(Reverse(queued)) = engine.queue.pop() {
        if queued.at > plan.end {
            break;
        }
        let now = queued.at;
        match queued.event {
            Event::Deliver { to, from, bytes } => {
                if let Some(machine) = engine.machines[to as usize].as_mut() {
                    machine.handle_datagram(now, from, &bytes);
                    engine.flush(to, now);
                }
            }
            Event::Wake { node } => {
                if engine.wakes[node as usize] == Some(now)
                    && let Some(machine) = engine.machines[node as usize].as_mut()
                {
                    engine.wakes[node as usize] = None;
                    machine.handle_timeout(now);
                    engine.flush(node, now);
                }
            }
            Event::Crash { node } => {
                engine.machines[node as usize] = None;
                engine.wakes[node as usize] = None;
                engine.wire.crash(node);
            }
        }
        engine.run.events += 1;
        if engine.run.events % PROGRESS_EVERY == 0 {
            progress(Duration::from_nanos(now.as_nanos()));
        }
    }
    engine.run.traffic = engine.wire.traffic;
    engine.run
}

impl<M: Machine> Engine<M> {
    fn push(&mut self, at: Instant, event: Event) {
        self.order += 1;
        self.queue.push(Reverse(Queued { at, order: self.order, event }));
    }

    /// Routes node `index`'s datagrams, records its views, and queues its next wake-up.
    fn flush(&mut self, index: u32, now: Instant) {
        let Some(machine) = self.machines[index as usize].as_mut() else { return };
        machine.drain(&mut self.sends, &mut self.views);
        let wake = machine.poll_timeout().map(|at| at.max(now));
        if let Some(at) = wake
            && self.wakes[index as usize].is_none_or(|queued| at < queued)
        {
            self.wakes[index as usize] = Some(at);
            self.push(at, Event::Wake { node: index });
        }
        self.run.views.append(&mut self.views);
        let mut sends = core::mem::take(&mut self.sends);
        for (to, bytes) in sends.drain(..) {
            if let Some(latency) = self.wire.send(index, to, bytes.len(), now) {
                self.push(now + latency, Event::Deliver { to, from: index, bytes });
            }
        }
        self.sends = sends;
    }
}

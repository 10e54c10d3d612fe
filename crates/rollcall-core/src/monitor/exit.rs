//! Exit reports: the node's own agent saw the process it watches end.
//!
//! Silence is the only sign of a machine that lost power, but a process that crashes on a
//! healthy machine is seen exiting by the agent beside it. An authenticated, fresh report of
//! that is stronger evidence than any silence, so the node goes `down` at once: no
//! suspicion, no confirmation round.

use super::node::Node;
use super::{Monitor, MonitorEvent, NodeState, Reason};
use crate::Instant;
use crate::wire::{ExitStatus, Message};
use std::net::SocketAddr;

impl Monitor {
    /// Takes an exit report that `handle_datagram` already authenticated and found fresh:
    /// its generation is the node's or newer, and its sequence is newer within a generation.
    /// So a report replayed from before a restart, or repeated by its agent, cannot take a
    /// restarted node down again; only heartbeats of a newer generation bring it back up.
    pub(super) fn accept_exit(&mut self, index: u32, message: &Message<'_>, from: SocketAddr, now: Instant) {
        self.stats.exits += 1;
        let node = self.note_last_word(index, message, from);
        match node.state {
            NodeState::New | NodeState::Up | NodeState::Suspect => {
                let status = ExitStatus::from_labels(&message.labels);
                self.transition_with(index, NodeState::Down, Reason::ProcessExited, now, now, Some(status));
            }
            // Already down (the agent repeats its report, since UDP may lose one); in
            // maintenance, where nothing is judged; or gone on purpose, so nobody is paged.
            NodeState::Down | NodeState::Paused | NodeState::Left => {}
        }
        self.schedule(index);
    }

    /// The bookkeeping of a node's last word (a goodbye or an exit report, both already found
    /// fresh): where it came from, its generation (a newer one is persisted) and sequence. A
    /// recovery in progress is over: the process whose heartbeats it was counting is gone.
    pub(super) fn note_last_word(
        &mut self,
        index: u32,
        message: &Message<'_>,
        from: SocketAddr,
    ) -> &mut Node {
        let node = self.nodes.get_mut(index);
        node.addr = Some(from);
        if message.generation > node.generation {
            node.generation = message.generation;
            self.events.push_back(MonitorEvent::NodeChanged { node: node.id.clone() });
        }
        node.sequence = message.sequence;
        node.marks.reset_rise();
        node
    }
}

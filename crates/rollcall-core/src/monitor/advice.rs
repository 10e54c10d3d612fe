//! Interval advice: the heartbeat interval the monitor asks agents to use.
//!
//! The shell derives an interval per `group` label (and one for the whole fleet) from the
//! user's goals and what it observed (`rollcall_detect::qos::advise`), and hands it to the
//! core with [`Monitor::set_advised_interval`](super::Monitor::set_advised_interval). An
//! agent that takes advice flags its heartbeats ([`FOLLOWS_ADVICE`](crate::wire::FOLLOWS_ADVICE));
//! when such a heartbeat declares another interval than its group's advice, the monitor
//! answers it with an [`Advice`](crate::wire::Kind::Advice) datagram echoing the heartbeat's
//! generation and sequence (which is what makes a replayed advice recognisable to the agent).
//!
//! No per-node state: an agent that cannot follow (its own bounds stop it) would otherwise
//! be advised at every heartbeat, so advice goes only to every [`ADVICE_EVERY`]th heartbeat
//! of a generation, starting with the first. That bounds the monitor's extra traffic to one
//! datagram per eight heartbeats of the agents that disagree, and nothing for the others.

use crate::wire::Labels;
use std::collections::BTreeMap;

/// Of a disagreeing agent's heartbeats, every how many gets an advice datagram.
pub const ADVICE_EVERY: u64 = 8;

/// Advised intervals in milliseconds, by `group` label, and for nodes in no advised group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AdviceTable {
    fleet: Option<u32>,
    groups: BTreeMap<Box<str>, u32>,
}

impl AdviceTable {
    pub(crate) fn set(&mut self, group: Option<&str>, interval_ms: Option<u32>) {
        match (group, interval_ms) {
            (None, interval_ms) => self.fleet = interval_ms,
            (Some(group), Some(ms)) => {
                self.groups.insert(group.into(), ms);
            }
            (Some(group), None) => {
                self.groups.remove(group);
            }
        }
    }

    pub(crate) fn get(&self, group: Option<&str>) -> Option<u32> {
        match group {
            None => self.fleet,
            Some(group) => self.groups.get(group).copied(),
        }
    }

    /// The interval advised to a node with these labels: its group's, else the fleet's.
    pub(crate) fn for_labels(&self, labels: &Labels<'_>) -> Option<u32> {
        if self.groups.is_empty() {
            return self.fleet;
        }
        labels.get("group").and_then(|group| self.groups.get(group).copied()).or(self.fleet)
    }

    /// Whether a heartbeat with this sequence number may be answered with advice.
    pub(crate) fn due(sequence: u64) -> bool {
        sequence.saturating_sub(1).is_multiple_of(ADVICE_EVERY)
    }
}

#[cfg(test)]
mod tests;

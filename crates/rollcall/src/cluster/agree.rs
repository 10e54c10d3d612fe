//! The agreement rule: a node is down for the cluster only when a quorum of the monitors
//! that count say so. Pure (no etcd, no clock): the session feeds it every monitor's
//! published verdicts and the set of monitors that count, and takes the changes.
//!
//! A monitor counts (is a *voter*) when it is live (its member key exists) and not cut off
//! (`super::cut_off`). Each voter publishes only the nodes it cannot hear (suspect or down);
//! a voter that says nothing about a node hears it, or does not know it.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What a monitor publishes about a node it cannot hear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// `suspect` or `down`.
    pub state: Opinion,
    /// The local transition's reason (`phi`, `timeout`, ...).
    pub reason: String,
    /// The idempotency key under which this monitor paged the node while failing open (etcd
    /// out of reach): the leader then adopts the failure instead of paging it again as new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paged: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Opinion {
    Suspect,
    Down,
}

/// The cluster's verdict on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Agreed {
    Up,
    /// Some voters cannot hear it, fewer than the quorum say it is down.
    Suspect {
        unreachable_from: Vec<String>,
    },
    /// At least a quorum of voters say it is down; `reason` is the first one's reason;
    /// `paged` when one of them paged it on its own view while failing open.
    Down {
        reason: String,
        paged: bool,
    },
}

impl Agreed {
    #[cfg(test)]
    pub fn is_down(&self) -> bool {
        matches!(self, Agreed::Down { .. })
    }
}

/// One node whose verdict changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub node: String,
    pub from: Agreed,
    pub to: Agreed,
}

/// Every voter's verdicts and the agreed result.
#[derive(Debug, Default)]
pub struct Agreement {
    /// `[cluster] quorum`; `None`: a majority of the voters.
    quorum: Option<usize>,
    voters: BTreeSet<String>,
    /// Per node, the monitors that cannot hear it (voters or not: a monitor that stops
    /// counting keeps its votes for when it counts again).
    votes: HashMap<String, BTreeMap<String, Vote>>,
    /// The last verdict handed out for each node that is not up.
    agreed: HashMap<String, Agreed>,
    /// Nodes to look at again.
    dirty: BTreeSet<String>,
}

impl Agreement {
    pub fn new(quorum: Option<usize>) -> Agreement {
        Agreement { quorum, ..Agreement::default() }
    }

    /// How many voters must say down: the configured quorum, or a majority, never more than
    /// there are voters (losing monitors must not silence the cluster) and at least one.
    pub fn needed(&self) -> usize {
        let voters = self.voters.len();
        self.quorum.unwrap_or(voters / 2 + 1).min(voters).max(1)
    }

    pub fn voters(&self) -> &BTreeSet<String> {
        &self.voters
    }

    /// `monitor` published `vote` about `node` (`None`: it hears the node again).
    pub fn vote(&mut self, monitor: &str, node: &str, vote: Option<Vote>) {
        match vote {
            Some(vote) => {
                self.votes.entry(node.to_string()).or_default().insert(monitor.to_string(), vote);
            }
            None => {
                if let Some(votes) = self.votes.get_mut(node) {
                    votes.remove(monitor);
                    if votes.is_empty() {
                        self.votes.remove(node);
                    }
                }
            }
        }
        self.dirty.insert(node.to_string());
    }

    /// The monitors that count from now on.
    pub fn set_voters(&mut self, voters: BTreeSet<String>) {
        if voters != self.voters {
            self.voters = voters;
            self.dirty.extend(self.votes.keys().cloned());
            self.dirty.extend(self.agreed.keys().cloned());
        }
    }

    /// Forgets every vote (a new session reads them all again), keeping what was agreed so
    /// that reading them again reports only real changes.
    pub fn clear_votes(&mut self) {
        self.dirty.extend(self.votes.keys().cloned());
        self.votes.clear();
    }

    /// The verdict on `node` now.
    pub fn verdict(&self, node: &str) -> Agreed {
        let Some(votes) = self.votes.get(node) else { return Agreed::Up };
        let counted: Vec<(&String, &Vote)> =
            votes.iter().filter(|(monitor, _)| self.voters.contains(*monitor)).collect();
        let downs: Vec<&Vote> =
            counted.iter().filter(|(_, vote)| vote.state == Opinion::Down).map(|(_, vote)| *vote).collect();
        if !self.voters.is_empty() && downs.len() >= self.needed() {
            let paged = votes.values().any(|vote| vote.paged.is_some());
            return Agreed::Down { reason: downs[0].reason.clone(), paged };
        }
        if counted.is_empty() {
            return Agreed::Up;
        }
        Agreed::Suspect { unreachable_from: counted.iter().map(|(monitor, _)| (*monitor).clone()).collect() }
    }

    /// The verdicts that changed since the last call.
    pub fn changes(&mut self) -> Vec<Change> {
        let mut changes = Vec::new();
        for node in std::mem::take(&mut self.dirty) {
            let to = self.verdict(&node);
            let from = self.agreed.get(&node).cloned().unwrap_or(Agreed::Up);
            if to == from {
                continue;
            }
            if to == Agreed::Up {
                self.agreed.remove(&node);
            } else {
                self.agreed.insert(node.clone(), to.clone());
            }
            changes.push(Change { node, from, to });
        }
        changes
    }

    /// The nodes agreed down (as last handed out by [`Agreement::changes`]): node, reason,
    /// and whether a monitor paged it while failing open.
    pub fn downs(&self) -> Vec<(String, String, bool)> {
        let mut downs: Vec<(String, String, bool)> = self
            .agreed
            .iter()
            .filter_map(|(node, agreed)| match agreed {
                Agreed::Down { reason, paged } => Some((node.clone(), reason.clone(), *paged)),
                _ => None,
            })
            .collect();
        downs.sort();
        downs
    }

    /// Nodes some voters cannot hear but that are not agreed down, with those voters: at
    /// most `limit` of them, by name, and how many there are in all.
    pub fn in_doubt(&self, limit: usize) -> (Vec<(String, Vec<String>)>, usize) {
        let mut doubt: Vec<(String, Vec<String>)> = self
            .agreed
            .iter()
            .filter_map(|(node, agreed)| match agreed {
                Agreed::Suspect { unreachable_from } => Some((node.clone(), unreachable_from.clone())),
                _ => None,
            })
            .collect();
        let total = doubt.len();
        doubt.sort();
        doubt.truncate(limit);
        (doubt, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> Option<Vote> {
        Some(Vote { state: Opinion::Down, reason: "phi".into(), paged: None })
    }

    fn suspect() -> Option<Vote> {
        Some(Vote { state: Opinion::Suspect, reason: "phi".into(), paged: None })
    }

    fn voters(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn a_majority_of_three_must_say_down() {
        let mut table = Agreement::new(None);
        table.set_voters(voters(&["m1", "m2", "m3"]));
        assert_eq!(table.needed(), 2);
        table.vote("m2", "web-1", down());
        let changes = table.changes();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].to, Agreed::Suspect { unreachable_from: vec!["m2".into()] });
        table.vote("m1", "web-1", down());
        let changes = table.changes();
        assert_eq!(changes[0].to, Agreed::Down { reason: "phi".into(), paged: false });
        assert_eq!(table.downs(), vec![("web-1".to_string(), "phi".to_string(), false)]);
        // One hears it again: no longer a quorum.
        table.vote("m1", "web-1", None);
        table.vote("m2", "web-1", None);
        let changes = table.changes();
        assert_eq!((changes[0].from.is_down(), changes[0].to.clone()), (true, Agreed::Up));
        assert!(table.changes().is_empty(), "nothing changed since");
    }

    #[test]
    fn suspects_do_not_make_a_down_and_non_voters_do_not_count() {
        let mut table = Agreement::new(None);
        table.set_voters(voters(&["m1", "m2", "m3"]));
        table.vote("m1", "db", suspect());
        table.vote("m2", "db", suspect());
        table.vote("m3", "db", down());
        assert!(!table.verdict("db").is_down());
        // m4 is cut off (not a voter): its down says nothing.
        table.vote("m4", "db", down());
        assert!(!table.verdict("db").is_down());
        table.vote("m1", "db", down());
        assert!(table.verdict("db").is_down());
    }

    #[test]
    fn losing_voters_lowers_the_majority_and_a_lone_monitor_decides() {
        let mut table = Agreement::new(None);
        table.set_voters(voters(&["m1", "m2", "m3"]));
        table.vote("m1", "n", down());
        table.changes();
        table.set_voters(voters(&["m1"]));
        let changes = table.changes();
        assert_eq!(changes.len(), 1, "a change of voters looks at every node again");
        assert!(changes[0].to.is_down());
    }

    #[test]
    fn a_configured_quorum_is_capped_by_the_voters() {
        let mut table = Agreement::new(Some(3));
        table.set_voters(voters(&["m1", "m2", "m3", "m4", "m5"]));
        assert_eq!(table.needed(), 3);
        table.set_voters(voters(&["m1", "m2"]));
        assert_eq!(table.needed(), 2);
    }

    #[test]
    fn a_down_paged_while_failing_open_is_agreed_as_paged() {
        let mut table = Agreement::new(None);
        table.set_voters(voters(&["m1", "m2"]));
        table.vote(
            "m1",
            "n",
            Some(Vote { state: Opinion::Down, reason: "phi".into(), paged: Some("k".into()) }),
        );
        table.vote("m2", "n", down());
        assert_eq!(table.verdict("n"), Agreed::Down { reason: "phi".into(), paged: true });
    }

    #[test]
    fn reading_votes_again_reports_only_real_changes() {
        let mut table = Agreement::new(None);
        table.set_voters(voters(&["m1"]));
        table.vote("m1", "a", down());
        table.vote("m1", "b", down());
        table.changes();
        table.clear_votes();
        table.vote("m1", "a", down());
        let changes = table.changes();
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].node.as_str(), changes[0].to.clone()), ("b", Agreed::Up));
        let (doubt, total) = table.in_doubt(10);
        assert!(doubt.is_empty() && total == 0);
    }
}

//! SWIM's rules for membership statements: which update overrides which, suspicion and its
//! confirmations, declaring down, refuting statements about ourselves, and the events and
//! gossip each change produces.
//!
//! Precedence, for a member at incarnation `i` in our table (SWIM section 4.2, as memberlist):
//! - `up(j)` wins over any state if `j > i`;
//! - `suspect(j)` wins over `up` if `j >= i`; over `suspect` it is a confirmation (Lifeguard);
//! - `down(j)` and `left(j)` win over `up` and `suspect` if `j >= i`; `left` also over `down`;
//! - nothing but a newer `up` brings a member back from `down` or `left`.
//!
//! About ourselves, `suspect`, `down` or `left` at our incarnation or above is refuted: we
//! take a larger incarnation and gossip `up` (and Lifeguard counts it against our health).

use super::gossip::{Name, Owned};
use super::members::Members;
use super::suspicion::{Accuser, Suspicion};
use super::wire::{Body, Entries, MemberState, Update};
use super::{MemberId, Peer, SwimEvent, Timer};
use rollcall_detect::Instant;
use std::net::SocketAddr;
use std::sync::Arc;

/// Most suspects an accuser pings again per protocol period: a bound on the extra traffic
/// when many members fail at once (each suspicion lasts a few periods at most then).
pub(super) const MAX_RECHECKS: usize = 4;

impl Peer {
    /// Applies one statement from gossip, a sync page, or our own probe.
    pub(super) fn apply(&mut self, now: Instant, update: &Update<'_>) {
        if self.is_me(update.name) {
            return self.about_me(now, update);
        }
        let index = self.members.find(update.name);
        self.apply_at(now, index, update, Looked::No);
    }

    /// [`Peer::apply`] about another member, found at table slot `index` (or unknown): the
    /// callers that looked it up already save a second lookup (hundreds of millions of them
    /// in a simulation of 10,000 peers).
    /// `accuser` says where the statement's accuser is, if the caller looked.
    fn apply_at(&mut self, now: Instant, index: Option<u32>, update: &Update<'_>, accuser: Looked) {
        debug_assert!(!self.is_me(update.name), "statements about ourselves go to about_me");
        match update.state {
            MemberState::Up => self.apply_up(now, index, update),
            MemberState::Suspect => self.apply_suspect(now, index, update, accuser),
            MemberState::Down | MemberState::Left => self.apply_down(now, index, update, accuser),
        }
    }

    /// What every authenticated datagram says of its sender: it is up at the incarnation in
    /// its header. A member we never heard of joins; one we hold at an older incarnation
    /// (suspect, down or left) has refuted, and this is its refutation even when no gossip
    /// brought it. Under loss a peer that heard a suspicion late, after the refutation's
    /// gossip had run its course, otherwise kept it for the whole timeout and declared a
    /// live member down (the sweep in docs/PEER.md); the suspect's next datagram to it now
    /// ends that.
    ///
    /// Returns the sender's slot, if the table holds it (now).
    pub(super) fn apply_sender(
        &mut self,
        now: Instant,
        from: SocketAddr,
        name: &str,
        incarnation: u32,
    ) -> Option<u32> {
        let index = self.members.find(name);
        if index.is_some_and(|index| incarnation <= self.members.incarnation(index)) {
            return index;
        }
        // A known member keeps the address it is known by (the source address of a
        // datagram may differ from the one it advertises).
        let addr = index.map_or(from, |index| self.members.slot(index).id.addr);
        let update = Update { state: MemberState::Up, incarnation, name, addr: Some(addr), accuser: None };
        // The sender is never this peer: `handle_datagram` rejects datagrams in our name.
        self.apply_at(now, index, &update, Looked::No);
        // A member new to us may have joined the table just now.
        index.or_else(|| self.members.find(name))
    }

    /// A sync page: like gossip, except that `down` counts as `suspect` (memberlist's merge
    /// rule), so that one peer's stale verdict cannot kill a member outright; it must fail
    /// our own suspicion timeout, which it refutes if it is alive.
    pub(super) fn merge_page(&mut self, now: Instant, sender: Sender<'_>, entries: Entries<'_>) {
        for entry in entries.iter() {
            if entry.state == MemberState::Down && !self.is_me(entry.name) {
                let accuser = entry.accuser.filter(|a| !a.is_empty()).or(Some(sender.name));
                self.apply_from(now, &Update { state: MemberState::Suspect, accuser, ..entry }, sender);
            } else {
                self.apply_from(now, &entry, sender);
            }
        }
    }

    /// Applies a statement received from another peer: accusations of third parties only
    /// if the sender is `trusted` (see `receive`).
    ///
    /// Two more rules keep stale verdicts (a healed partition's) from killing live members:
    /// an accusation made by an accuser we hold down or left is ignored too, and another
    /// peer's `down` of a member we hold `up` only starts our own suspicion, so the member
    /// gets a suspicion timeout to refute (a peer that had heard the suspicion, as nearly
    /// all have when a member really failed, takes the `down` at once).
    pub(super) fn apply_from(&mut self, now: Instant, update: &Update<'_>, sender: Sender<'_>) {
        if update.state == MemberState::Up || self.is_me(update.name) {
            return self.apply(now, update);
        }
        // An accusation by the sender (the commonest) names it with the very string the
        // datagram's header does: its slot is known already, and was just read (its state
        // is read there, not from the bits, which would be one more cache miss).
        let by_sender = update.accuser.is_some_and(|name| core::ptr::eq(name, sender.name));
        let (accuser, accuser_down) = match sender.at {
            Some(at) if by_sender => {
                (Some(at), matches!(self.members.state(at), MemberState::Down | MemberState::Left))
            }
            _ => {
                let accuser = update.accuser.and_then(|name| self.members.find(name));
                (accuser, accuser.is_some_and(|index| self.members.gone(index)))
            }
        };
        if !sender.trusted || accuser_down {
            self.stats.distrusted += 1;
            return;
        }
        let index = self.members.find(update.name);
        let held_up = index.is_some_and(|index| self.members.state(index) == MemberState::Up);
        let accuser = Looked::At(accuser);
        if update.state == MemberState::Down && held_up {
            self.apply_at(now, index, &Update { state: MemberState::Suspect, ..*update }, accuser);
        } else {
            self.apply_at(now, index, update, accuser);
        }
    }

    fn about_me(&mut self, now: Instant, update: &Update<'_>) {
        if self.leaving || update.state == MemberState::Up || update.incarnation < self.incarnation() {
            return;
        }
        // Others could not reach us: we were most likely the one cut off (or stalled), so
        // our own recent accusations of others are doubtful. Stop spreading them; what our
        // table says is corrected by their refutations and our own next probes, and a true
        // failure is still spread by the peers that saw it.
        self.gossip.retain(|queued| !matches!(queued.state, MemberState::Suspect | MemberState::Down));
        let incarnation = update.incarnation.max(self.incarnation()).saturating_add(1);
        let me = self.members.slot(0).id.clone();
        self.members.set(0, MemberState::Up, incarnation, None, &mut self.rng);
        // Without our address: whoever knows us has it, and whoever does not learns it from
        // our own datagrams or a sync page.
        let refute = Owned { state: MemberState::Up, incarnation, id: me, accuser: None, addr: false };
        self.gossip.push(0, refute);
        self.health.apply(1);
        self.stats.refutes += 1;
        self.events.push_back(SwimEvent::Refuted { incarnation, at: now });
        // A refutation is a race against suspicion timers that may be at their minimum:
        // push it at once to the accuser and to K random members instead of waiting for
        // the next pings to carry it.
        let mut targets = self.members.random_up(&mut self.rng, self.config.indirect_probes as usize, 0);
        if let Some(accuser) = update.accuser.and_then(|name| self.members.find(name))
            && !targets.contains(&accuser)
        {
            targets.push(accuser);
        }
        for target in targets {
            let addr = self.members.slot(target).id.addr;
            self.send(addr, &Body::Gossip, None);
        }
    }

    fn apply_up(&mut self, now: Instant, index: Option<u32>, update: &Update<'_>) {
        let Some(index) = index else {
            // A member we do not know needs its address. A statement without one (an
            // incarnation bump, meant for those who know the member) is dropped here; the
            // member reaches us with its address in a sync page or through its own datagrams.
            let Some(addr) = update.addr else { return };
            if self.members.full(self.config.max_members) {
                self.stats.members_refused += 1;
                return;
            }
            let id = MemberId::new(update.name, addr);
            let index = self.members.insert(id, update.incarnation, MemberState::Up, &mut self.rng);
            return self.changed(now, index, None, None, true);
        };
        let slot = self.members.slot(index);
        if update.incarnation <= slot.incarnation {
            return;
        }
        let from = slot.state;
        let moved = update.addr.filter(|&addr| addr != slot.id.addr);
        let id = moved.map(|addr| MemberId::new(update.name, addr));
        self.members.set(index, MemberState::Up, update.incarnation, id, &mut self.rng);
        self.suspicions.remove(&index);
        // The address is passed on only when it changed: the others know it otherwise.
        self.changed(now, index, Some(from), None, moved.is_some());
    }

    fn apply_suspect(&mut self, now: Instant, index: Option<u32>, update: &Update<'_>, looked: Looked) {
        // Suspicion of a member we do not know is dropped (memberlist does the same): it
        // will reach us again as `up` or `down` if it matters.
        let Some(index) = index else { return };
        // Most suspicions heard are of members already down: the state words say so
        // without reading the slot (it would be ignored at any incarnation).
        if self.members.gone(index) {
            return;
        }
        let slot = self.members.slot(index);
        if update.incarnation < slot.incarnation {
            return;
        }
        // No accuser (or an empty one) is this peer. The accuser is kept by slot, not by
        // name: most suspicions heard are old news, or about members already down, and a
        // confirmation is checked against the others without comparing names.
        let (name, at) = match update.accuser {
            Some(name) if !name.is_empty() => (Some(name), looked.or_find(&self.members, name)),
            _ => (None, Some(0)),
        };
        let accuser = || at.map_or_else(|| Accuser::Name(Arc::from(name.unwrap_or_default())), Accuser::Slot);
        match slot.state {
            MemberState::Down | MemberState::Left => {}
            MemberState::Suspect => {
                let members = &self.members;
                let Some(suspicion) = self.suspicions.get_mut(&index) else { return };
                let old = suspicion.deadline;
                if suspicion.confirm(|held| same_accuser(members, held, at, name), accuser) {
                    // An independent confirmation: the deadline moves earlier, and the news
                    // is passed on so that others can count it too.
                    let new = suspicion.deadline;
                    self.timers.remove(&(old, Timer::Suspicion(index)));
                    self.timers.insert((new, Timer::Suspicion(index)));
                    let id = slot.id.clone();
                    let incarnation = slot.incarnation;
                    let state = MemberState::Suspect;
                    let accuser = Some(self.accuser_name(&accuser()));
                    self.gossip.push(index, Owned { state, incarnation, id, accuser, addr: false });
                }
            }
            MemberState::Up => {
                let accuser = accuser();
                let name = self.accuser_name(&accuser);
                self.members.set(index, MemberState::Suspect, update.incarnation, None, &mut self.rng);
                let n = self.members.live();
                let suspicion = Suspicion::new(&self.config, n, update.incarnation, accuser, now);
                self.timers.insert((suspicion.deadline, Timer::Suspicion(index)));
                self.suspicions.insert(index, suspicion);
                self.changed(now, index, Some(MemberState::Up), Some(name), false);
            }
        }
    }

    fn apply_down(&mut self, now: Instant, index: Option<u32>, update: &Update<'_>, looked: Looked) {
        let Some(index) = index else { return };
        // The state from the state words: a `down` of a member already down (the commonest)
        // is settled without reading its slot.
        let from = self.members.state(index);
        let overrides = match from {
            MemberState::Up | MemberState::Suspect => true,
            MemberState::Down => update.state == MemberState::Left,
            MemberState::Left => false,
        };
        if !overrides || update.incarnation < self.members.incarnation(index) {
            return;
        }
        let accuser =
            update.accuser.filter(|a| !a.is_empty()).map(|name| match looked.or_find(&self.members, name) {
                Some(at) => Name::Member(self.members.slot(at).id.clone()),
                None => Name::Own(Arc::from(name)),
            });
        self.members.set(index, update.state, update.incarnation, None, &mut self.rng);
        self.suspicions.remove(&index);
        self.changed(now, index, Some(from), accuser, false);
    }

    /// A suspicion's timer fired at `at`: declare the member down if the suspicion still
    /// stands (not refuted, not moved to another deadline).
    pub(super) fn suspicion_expired(&mut self, now: Instant, at: Instant, index: u32) {
        let Some(suspicion) = self.suspicions.get(&index) else { return };
        if suspicion.deadline != at {
            return;
        }
        let incarnation = suspicion.incarnation;
        self.suspicions.remove(&index);
        let slot = self.members.slot(index);
        if slot.state != MemberState::Suspect || slot.incarnation != incarnation {
            return;
        }
        self.members.set(index, MemberState::Down, incarnation, None, &mut self.rng);
        let me = Name::Member(self.members.slot(0).id.clone());
        self.changed(now, index, Some(MemberState::Suspect), Some(me), false);
    }

    /// Asking the suspect: each protocol period, this peer pings every member whose open
    /// suspicion it started with its own failed probe, or that it has held longer than the
    /// suspicion's minimum timeout (the first [`MAX_RECHECKS`] of them), the suspicion
    /// first in the datagram (the buddy rule). A live suspect acks, and the ack's header
    /// carries its new incarnation, which ends the suspicion here. Acks to these pings are
    /// counted as late acks (they belong to no probe).
    ///
    /// Why the accuser: the first to suspect and the last to give up, it depended on the
    /// suspect's direct refutation (one datagram) or gossip, and under 10 % loss a
    /// refutation's gossip sometimes reached every peer but the accuser.
    /// Why any peer after the minimum: a real failure is confirmed by others' probes and
    /// declared down around its minimum timeout, so a suspicion still open after it is
    /// most often a refuted one whose refutation missed this peer (it heard the suspicion
    /// late, after the refutation's gossip had run its course). Nothing else would reach it
    /// before the longest, unconfirmed timeout ran out: the suspect's own datagrams come
    /// once per round-robin round (200 periods at 200 peers), and a sync page names a
    /// fraction of the table. The sweep in docs/PEER.md traced its last false down to this.
    pub(super) fn recheck_suspects(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .suspicions
            .iter()
            .filter(|(_, suspicion)| {
                matches!(suspicion.accusers.first(), Accuser::Slot(0))
                    || now >= suspicion.started + suspicion.min
            })
            .map(|(&index, _)| index)
            .take(MAX_RECHECKS)
            .collect();
        for index in due {
            let id = self.members.slot(index).id.clone();
            let seq = self.take_seq();
            let note = self.suspect_note(index);
            self.send(id.addr, &Body::Ping { seq, target: &id.name }, note);
        }
    }

    /// The buddy rule: a ping to a member we suspect carries that suspicion, first.
    pub(super) fn suspect_note(&self, member: u32) -> Option<Owned> {
        let slot = self.members.slot(member);
        (slot.state == MemberState::Suspect).then(|| Owned {
            state: MemberState::Suspect,
            incarnation: slot.incarnation,
            id: slot.id.clone(),
            accuser: Some(Name::Member(self.members.slot(0).id.clone())),
            addr: false,
        })
    }

    /// What this peer states about table slot `index`, as an update.
    pub(super) fn entry(&self, index: u32) -> Owned {
        self.entry_by(index, None)
    }

    /// [`Peer::entry`], with `accuser` as the accuser if given (who just accused).
    fn entry_by(&self, index: u32, accuser: Option<Name>) -> Owned {
        let slot = self.members.slot(index);
        let me = || Some(Name::Member(self.members.slot(0).id.clone()));
        let accuser = accuser.or_else(|| match slot.state {
            MemberState::Suspect => {
                self.suspicions.get(&index).map(|s| self.accuser_name(s.accusers.first())).or_else(me)
            }
            MemberState::Down => me(),
            _ => None,
        });
        let (state, incarnation, id) = (slot.state, slot.incarnation, slot.id.clone());
        Owned { state, incarnation, id, accuser, addr: true }
    }

    /// An accuser's name, for gossip: shared with the table's identity when it is a member.
    fn accuser_name(&self, accuser: &Accuser) -> Name {
        match accuser {
            Accuser::Slot(at) => Name::Member(self.members.slot(*at).id.clone()),
            Accuser::Name(name) => Name::Own(name.clone()),
        }
    }

    /// Gossips a member's new state, with its address if `addr` (an `up` of a member new to
    /// us, or at a new address), and reports it if the state itself changed.
    fn changed(
        &mut self,
        now: Instant,
        index: u32,
        from: Option<MemberState>,
        accuser: Option<Name>,
        addr: bool,
    ) {
        let slot = self.members.slot(index);
        let mut update = self.entry_by(index, accuser);
        update.addr = addr;
        if from != Some(slot.state) {
            self.events.push_back(SwimEvent::Member {
                member: slot.id.clone(),
                from,
                to: slot.state,
                incarnation: slot.incarnation,
                at: now,
            });
        }
        self.gossip.push(index, update);
    }
}

/// The sender of the statements being applied: its name (as the datagram's header has it),
/// its slot if the table holds it, and whether its accusations of others count (see
/// `Peer::receive`).
#[derive(Clone, Copy)]
pub(super) struct Sender<'a> {
    pub name: &'a str,
    pub at: Option<u32>,
    pub trusted: bool,
}

/// Where a statement's accuser sits in our table: looked up already by the caller (`At`,
/// `None` if the table does not hold it), or not yet.
#[derive(Clone, Copy)]
pub(super) enum Looked {
    No,
    At(Option<u32>),
}

impl Looked {
    fn or_find(self, members: &Members, name: &str) -> Option<u32> {
        match self {
            Looked::At(at) => at,
            Looked::No => members.find(name),
        }
    }
}

/// Whether `held` is the accuser named `name` (`None`: this peer), found at slot `at`.
/// Slots are compared as numbers; a name the table did not hold when it accused may have
/// joined it since, so a name is compared with the other side's name.
fn same_accuser(members: &Members, held: &Accuser, at: Option<u32>, name: Option<&str>) -> bool {
    let name = || name.unwrap_or_else(|| &members.slot(0).id.name);
    match (held, at) {
        (Accuser::Slot(held), Some(at)) => *held == at,
        (Accuser::Slot(held), None) => *members.slot(*held).id.name == *name(),
        (Accuser::Name(held), _) => **held == *name(),
    }
}

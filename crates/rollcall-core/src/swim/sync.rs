//! Push-pull sync: pages of the member table exchanged with one member at a time, the
//! stand-in for memberlist's TCP state exchange within one datagram.
//!
//! A periodic sync sends a short page (this peer and what it believes of the recipient) with
//! a digest of its table. A recipient whose table has the same digest answers with a short
//! page too: two short datagrams instead of two full pages. A recipient whose digest differs
//! answers with a full page and asks for one back, so both sides still learn what the other
//! knows. A join sends a full page without a digest and gets a full page back; a reconnect
//! (to a member believed down, usually dead) sends a short page without a digest, which a
//! live recipient answers with a full page, as a join. Short reconnect pages are most of the
//! saving of wire version 2: they used to be full pages sent every 2 s to dead members.

use super::Peer;
use super::apply::Sender;
use super::wire::{Body, Datagram, Entries, MemberState, Writer};
use rollcall_detect::Instant;
use std::net::SocketAddr;

/// Which page to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Page {
    /// As many entries as fit, continuing where the last page stopped; `reply` asks for a
    /// full page back.
    Full { reply: bool },
    /// Ourselves, the recipient, and the digest of our table; asks for an answer.
    Digest,
    /// Ourselves and the recipient; asks for a full page back (a reconnect).
    Hello,
    /// Ourselves and the recipient: the answer to a digest equal to ours.
    Short,
}

impl Peer {
    /// A sync page arrived: merge it, then answer if asked (see the module doc).
    pub(super) fn on_sync(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &Datagram<'_>,
        sender: Sender<'_>,
    ) {
        let Body::Sync { reply, digest, entries } = datagram.body else { return };
        self.merge_page(now, sender, entries);
        if !reply || self.leaving {
            return;
        }
        let page = match digest {
            Some(digest) if digest == self.members.digest() => Page::Short,
            Some(_) => Page::Full { reply: true },
            None => Page::Full { reply: false },
        };
        let peer = self.members.find(datagram.sender);
        self.send_sync(from, peer, page);
    }

    /// A sync page for the member at `to`: ourselves first, then what we believe of the
    /// recipient (so that it can refute at once), then for a full page as many `up` and
    /// `left` members as fit, continuing where the last page stopped.
    pub(super) fn send_sync(&mut self, to: SocketAddr, recipient: Option<u32>, page: Page) {
        let mut out = core::mem::take(&mut self.scratch);
        let me = self.members.slot(0).id.clone();
        let inc = self.members.slot(0).incarnation;
        let (reply, digest) = match page {
            Page::Full { reply } => (reply, None),
            Page::Digest => (true, Some(self.members.digest())),
            Page::Hello => (true, None),
            Page::Short => (false, None),
        };
        let body = Body::Sync { reply, digest, entries: Entries::EMPTY };
        let mut writer = Writer::new(
            &mut out,
            self.config.max_datagram,
            self.cluster,
            self.keys.send_key_id(),
            &me.name,
            inc,
            &body,
        );
        writer.begin_entries();
        let mut fits = writer.push(&self.entry(0).view());
        if let Some(recipient) = recipient.filter(|&r| r != 0) {
            fits = fits && writer.push(&self.entry(recipient).view());
        }
        if matches!(page, Page::Full { .. }) && fits {
            self.fill_page(&mut writer, recipient);
        }
        writer.begin_updates();
        writer.finish(&self.keys);
        self.queue(to, out);
    }

    /// The rest of a full page: `up` and `left` members from the page cursor on.
    fn fill_page(&mut self, writer: &mut Writer<'_, '_>, recipient: Option<u32>) {
        let len = self.members.len();
        let mut walked = 0;
        while walked < len {
            let index = ((self.page_cursor + walked) % len) as u32;
            let state = self.members.state(index);
            // Only `up` and `left` travel in pages: accusations spread by gossip alone, so a
            // peer back from a partition cannot flood the cluster with its stale verdicts
            // (a member it missed is found by its own probes soon enough).
            let listed = index != 0
                && Some(index) != recipient
                && matches!(state, MemberState::Up | MemberState::Left);
            if listed && !writer.push(&self.entry(index).view()) {
                break;
            }
            walked += 1;
        }
        self.page_cursor = (self.page_cursor + walked) % len;
    }
}

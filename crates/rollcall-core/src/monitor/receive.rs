//! The monitor's inputs from the network: a datagram decoded and authenticated here
//! ([`Monitor::handle_datagram`]), a batch of datagrams another thread authenticated with the
//! same function ([`VerifiedBatch`], [`Monitor::handle_verified`]), and a heartbeat an
//! embedder authenticated its own way ([`Monitor::handle_heartbeat`]). All three end in the
//! same freshness check and the same per-kind handling.

use super::{Monitor, Rejection};
use crate::Instant;
use crate::keyring::KeyRing;
use crate::wire::{self, Kind, Labels, Message};
use core::time::Duration;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Tables of more nodes than this are warmed before a batch is handled (see
/// [`Monitor::handle_verified`]): a few hundred bytes a node, so about what a core's cache
/// holds; the hot-path benchmark gains from warming at 100,000 nodes, not at 1,000.
const WARM_ABOVE: usize = 1 << 14;

/// Datagrams decoded and authenticated off the thread that owns the [`Monitor`], owned so
/// that they can cross to it: several receive threads verify in parallel, the owner hands
/// each batch to [`Monitor::handle_verified`].
///
/// A batch is filled only by [`VerifiedBatch::push`], which runs the same check as
/// [`Monitor::handle_datagram`] (size, format, key, tag, then the kinds a monitor takes), so
/// every entry in it is authenticated: the owner does not verify the MAC again. It also
/// counts what it refused, by reason, so the monitor's rejection counters still add up.
/// Its buffers are kept across [`VerifiedBatch::clear`], so a thread that reuses batches
/// allocates nothing per datagram.
#[derive(Clone, Debug, Default)]
pub struct VerifiedBatch {
    /// The node ids of the entries, one after another (whole `str`s, so every entry's range
    /// falls on character boundaries).
    ids: String,
    /// The label blocks of the entries, one after another, each validated by the decoder.
    labels: Vec<u8>,
    entries: Vec<Entry>,
    rejected: BTreeMap<Rejection, u64>,
}

/// One verified datagram of a batch: its fixed fields, and where its id and labels are.
#[derive(Clone, Copy, Debug)]
struct Entry {
    from: SocketAddr,
    kind: Kind,
    key_id: u16,
    id_end: u32,
    labels_end: u32,
    generation: u64,
    sequence: u64,
    interval_ms: u32,
    follows_advice: bool,
}

impl VerifiedBatch {
    pub fn new() -> VerifiedBatch {
        VerifiedBatch::default()
    }

    /// Decodes and authenticates `datagram` with `ring` and keeps it for the owner, or counts
    /// why it was refused (and returns that).
    pub fn push(&mut self, from: SocketAddr, datagram: &[u8], ring: &KeyRing) -> Result<(), Rejection> {
        let message = match verify(datagram, ring) {
            Ok(message) => message,
            Err(rejection) => {
                self.add_rejections([(rejection, 1)]);
                return Err(rejection);
            }
        };
        self.ids.push_str(message.node);
        self.labels.extend_from_slice(message.labels.as_bytes());
        // A batch holds a bounded number of datagrams of at most `MAX_DATAGRAM` bytes each,
        // far below `u32::MAX` bytes; saturating keeps a misuse from wrapping silently.
        let end = |len: usize| u32::try_from(len).unwrap_or(u32::MAX);
        self.entries.push(Entry {
            from,
            kind: message.kind,
            key_id: message.key_id,
            id_end: end(self.ids.len()),
            labels_end: end(self.labels.len()),
            generation: message.generation,
            sequence: message.sequence,
            interval_ms: message.interval_ms,
            follows_advice: message.follows_advice,
        });
        Ok(())
    }

    /// Verified datagrams held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Datagrams refused so far, all reasons together.
    pub fn rejected(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Takes the refusal counts out (for a batch that will not reach the owner: its
    /// refusals still have to be counted, by the next batch that does).
    pub fn take_rejections(&mut self) -> BTreeMap<Rejection, u64> {
        std::mem::take(&mut self.rejected)
    }

    /// Adds refusal counts (see [`VerifiedBatch::take_rejections`]).
    pub fn add_rejections(&mut self, counts: impl IntoIterator<Item = (Rejection, u64)>) {
        for (rejection, count) in counts {
            *self.rejected.entry(rejection).or_default() += count;
        }
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.ids.clear();
        self.labels.clear();
        self.entries.clear();
        self.rejected.clear();
    }

    /// The entries as the decoder returned them, with their senders.
    pub fn messages(&self) -> impl Iterator<Item = (SocketAddr, Message<'_>)> {
        let mut starts = (0usize, 0usize);
        self.entries.iter().map(move |entry| {
            let (id_start, labels_start) = starts;
            let (id_end, labels_end) = (entry.id_end as usize, entry.labels_end as usize);
            starts = (id_end, labels_end);
            let message = Message {
                kind: entry.kind,
                key_id: entry.key_id,
                node: &self.ids[id_start..id_end],
                generation: entry.generation,
                sequence: entry.sequence,
                interval_ms: entry.interval_ms,
                labels: Labels::verified(&self.labels[labels_start..labels_end]),
                follows_advice: entry.follows_advice,
            };
            (entry.from, message)
        })
    }
}

/// Decodes and authenticates a datagram (MAC first), and refuses the kinds only agents take.
/// The one check in front of the monitor, wherever it runs.
fn verify<'a>(datagram: &'a [u8], ring: &KeyRing) -> Result<Message<'a>, Rejection> {
    let message = wire::decode(datagram, ring).map_err(Rejection::Decode)?;
    match message.kind {
        Kind::Heartbeat | Kind::Goodbye | Kind::Exit | Kind::Ack | Kind::IndirectAck => Ok(message),
        Kind::Probe | Kind::ProbeRequest | Kind::Advice => Err(Rejection::UnexpectedKind),
    }
}

impl Monitor {
    /// Handles one received datagram. Bad input is counted by reason and dropped: it never
    /// changes a node.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.observe_clock(now);
        // The decoder straight into the dispatch by kind, which refuses the kinds only agents
        // take as `verify` does: a `Result` of the message remapped on the way cost about
        // 10 ns per heartbeat in the microbenchmark (docs/BENCHMARKS.md, session 9).
        match wire::decode(datagram, &self.ring) {
            Ok(message) => self.handle_message(&message, from, now),
            Err(error) => self.reject(Rejection::Decode(error)),
        }
    }

    /// Handles a batch of datagrams that another thread decoded and authenticated with
    /// [`VerifiedBatch::push`], all received by `now`: exactly what
    /// [`Monitor::handle_datagram`] does with each, minus the decoding and the MAC, and the
    /// batch's refusals added to [`Monitor::stats`].
    ///
    /// The batch was verified with the key ring its thread holds: after
    /// [`Monitor::set_key_ring`], the shell gives its receive threads the new ring too.
    pub fn handle_verified(&mut self, now: Instant, batch: &VerifiedBatch) {
        self.observe_clock(now);
        for (&rejection, &count) in &batch.rejected {
            *self.stats.rejected.entry(rejection).or_default() += count;
        }
        // Misses overlap across the batch's ids here, rather than one heartbeat at a time
        // below (see `NodeTable::warm`). A small table stays in cache, where this pass
        // would only hash every id twice.
        if self.nodes.len() > WARM_ABOVE {
            let warmth =
                batch.messages().fold(0u8, |warmth, (_, message)| warmth ^ self.nodes.warm(message.node));
            std::hint::black_box(warmth);
        }
        for (from, message) in batch.messages() {
            self.handle_message(&message, from, now);
        }
    }

    /// Handles one heartbeat that the caller has already received and authenticated its own
    /// way (its own transport, its own keys): [`Monitor::handle_datagram`] is this, behind
    /// rollcall's decoder and authentication.
    ///
    /// The same rules apply as to a datagram: a `generation` older than the node's, or a
    /// `sequence` not above the last accepted one in the same generation, is refused (the
    /// caller's transport may reorder or repeat); a node id must be 1 to
    /// [`wire::MAX_NODE_ID`] bytes without whitespace or control characters. Labels are a
    /// block built with [`wire::encode_labels`] and read back with [`Labels::from_bytes`].
    /// The node has no address, so a confirmation round cannot probe it: with `confirm`
    /// set, its silence is judged by the detector alone.
    ///
    /// A refusal is counted in [`Monitor::stats`] and changes nothing.
    pub fn handle_heartbeat(
        &mut self,
        now: Instant,
        node: &str,
        generation: u64,
        sequence: u64,
        interval: Duration,
        labels: Labels<'_>,
    ) -> Result<(), Rejection> {
        self.observe_clock(now);
        if wire::check_node(node).is_err() {
            let rejection = Rejection::Decode(wire::DecodeError::Malformed);
            self.reject(rejection);
            return Err(rejection);
        }
        let interval_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX).max(1);
        let heartbeat = Message {
            kind: Kind::Heartbeat,
            key_id: 0,
            node,
            generation,
            sequence,
            interval_ms,
            labels,
            follows_advice: false,
        };
        self.accept_report(&heartbeat, None, now)
    }

    /// An authenticated message, by kind.
    #[inline]
    fn handle_message(&mut self, message: &Message<'_>, from: SocketAddr, now: Instant) {
        match message.kind {
            Kind::Heartbeat | Kind::Goodbye | Kind::Exit => {
                // Counted in the stats like any rejection; a datagram's sender hears nothing.
                let _ = self.accept_report(message, Some(from), now);
            }
            Kind::Ack | Kind::IndirectAck => self.accept_ack(message, now),
            Kind::Probe | Kind::ProbeRequest | Kind::Advice => self.reject(Rejection::UnexpectedKind),
        }
    }

    /// A heartbeat, goodbye or exit report, authenticated: the node's generation and
    /// sequence decide whether it is fresh, then its kind what it changes. `from` is `None`
    /// for a heartbeat handed over by [`Monitor::handle_heartbeat`].
    ///
    /// Inlined into its callers: on the saturated path a call here cost measurably more
    /// than the function's own first branches (docs/BENCHMARKS.md, session 9).
    #[inline]
    fn accept_report(
        &mut self,
        message: &Message<'_>,
        from: Option<SocketAddr>,
        now: Instant,
    ) -> Result<(), Rejection> {
        let refuse = |monitor: &mut Monitor, rejection: Rejection| {
            monitor.reject(rejection);
            Err(rejection)
        };
        let (index, registered) = match self.nodes.index_of(message.node) {
            Some(index) => (index, false),
            // A goodbye or an exit report from a stranger says nothing worth a table entry.
            None if message.kind != Kind::Heartbeat => return refuse(self, Rejection::UnknownNode),
            None => match self.register(message, now) {
                Ok(index) => (index, true),
                Err(rejection) => return refuse(self, rejection),
            },
        };
        if !registered {
            let node = self.nodes.get(index);
            if message.generation < node.generation {
                return refuse(self, Rejection::OldGeneration);
            }
            if message.generation == node.generation && message.sequence <= node.sequence {
                return refuse(self, Rejection::Replay);
            }
        }
        match (message.kind, from) {
            (Kind::Goodbye, Some(from)) => self.accept_goodbye(index, message, from, now),
            (Kind::Exit, Some(from)) => self.accept_exit(index, message, from, now),
            _ => {
                self.accept_heartbeat(index, message, from, registered, now);
                if let Some(from) = from {
                    self.advise(message, from);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! `monitor.receive_threads` > 1: several sockets bound to the heartbeat address with
//! SO_REUSEPORT, each read by its own OS thread that authenticates and decodes what it reads
//! (`VerifiedBatch::push`, the core's one check) and hands the verified datagrams to the
//! owner in batches, so the MAC and the kernel's receive path use more than one core.
//!
//! The kernel spreads datagrams over the sockets by a hash of the 4-tuple, so one agent's
//! heartbeats always land on one socket and stay in order. Every kind the monitor takes
//! (heartbeats, goodbyes, exit reports, probe answers) can land on any socket, so every
//! thread hands over all of them. The owner keeps the first socket (a duplicate of its file
//! descriptor) for sending probes and advice.

use super::{ReceiveStats, is_ipv6, kernel_drops, read_buffers, read_verified};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use rollcall_core::KeyRing;
use rollcall_core::monitor::VerifiedBatch;
use std::net::UdpSocket;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use tokio::sync::mpsc;

/// Batches each thread may have queued for the owner (at most `BATCH` datagrams each). A
/// full queue drops the new batch and counts it, as a full socket buffer does: the owner's
/// pace bounds the memory. Sized to hold about what the default 8 MiB socket buffer holds
/// (tens of thousands of small datagrams): with 64 batches, a burst the single socket
/// absorbed was dropped here instead (docs/BENCHMARKS.md, session 9).
const QUEUE_PER_THREAD: usize = 512;
/// How long a thread waits for a datagram before it looks at the stop flag again: the
/// bound on how long shutdown waits for an idle thread.
const POLL_MS: u16 = 100;

/// The receive threads, their sockets' counters, and the queue they feed the owner from.
pub struct ReceiveThreads {
    batches: mpsc::Receiver<VerifiedBatch>,
    threads: Vec<Thread>,
    stop: Arc<AtomicBool>,
}

/// Counters of one receive thread, for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadStats {
    pub receive: ReceiveStats,
    /// Datagrams that passed the MAC and the decoder on this thread.
    pub verified: u64,
    /// Verified datagrams dropped because the owner's queue was full.
    pub handoff_dropped: u64,
}

struct Thread {
    socket: Arc<UdpSocket>,
    counters: Arc<Counters>,
    handle: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Counters {
    datagrams: AtomicU64,
    batches: AtomicU64,
    errors: AtomicU64,
    verified: AtomicU64,
    handoff_dropped: AtomicU64,
}

impl ReceiveThreads {
    /// Starts `count` threads: one reads `first` (the socket the owner was given, which must
    /// have been bound with SO_REUSEPORT), the others sockets of their own bound to the same
    /// address with `recv_buffer_bytes` asked for.
    pub fn start(
        first: &UdpSocket,
        count: usize,
        recv_buffer_bytes: usize,
        ring: &KeyRing,
    ) -> anyhow::Result<ReceiveThreads> {
        let addr = first.local_addr()?;
        let mut sockets = vec![first.try_clone()?];
        for _ in 1..count {
            let socket = super::bind(addr, recv_buffer_bytes, true).map_err(|error| {
                anyhow::anyhow!(
                    "monitor.receive_threads needs the heartbeat socket bound with SO_REUSEPORT, \
                     and a second socket could not be bound to {addr}: {error}"
                )
            })?;
            sockets.push(socket);
        }
        let (tx, batches) = mpsc::channel(QUEUE_PER_THREAD * count);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(count);
        for (index, socket) in sockets.into_iter().enumerate() {
            let socket = Arc::new(socket);
            let counters = Arc::new(Counters::default());
            let reader = Reader {
                socket: socket.clone(),
                counters: counters.clone(),
                ring: ring.clone(),
                queue: tx.clone(),
                stop: stop.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("rollcall-recv-{index}"))
                .spawn(move || reader.run())?;
            threads.push(Thread { socket, counters, handle: Some(handle) });
        }
        tracing::info!(threads = count, %addr, "receive threads started (SO_REUSEPORT)");
        Ok(ReceiveThreads { batches, threads, stop })
    }

    /// The next batch, waiting for one; `None` once every thread has stopped.
    pub async fn recv(&mut self) -> Option<VerifiedBatch> {
        self.batches.recv().await
    }

    /// A batch already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<VerifiedBatch> {
        self.batches.try_recv().ok()
    }

    /// The counters of every thread, in thread order.
    pub fn stats(&self) -> Vec<ThreadStats> {
        self.threads
            .iter()
            .map(|thread| {
                let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
                let counters = &thread.counters;
                ThreadStats {
                    receive: ReceiveStats {
                        datagrams: load(&counters.datagrams),
                        batches: load(&counters.batches),
                        errors: load(&counters.errors),
                        kernel_drops: kernel_drops(thread.socket.as_raw_fd()),
                    },
                    verified: load(&counters.verified),
                    handoff_dropped: load(&counters.handoff_dropped),
                }
            })
            .collect()
    }

    /// Stops every thread and waits for them (each notices within `POLL_MS`).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in &mut self.threads {
            if let Some(handle) = thread.handle.take()
                && handle.join().is_err()
            {
                tracing::warn!("a receive thread panicked");
            }
        }
    }
}

impl Drop for ReceiveThreads {
    /// An owner that ends without `stop` (an error) still stops its threads; they are not
    /// waited for.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The sum of every thread's counters, as the one socket's would read.
pub fn total(stats: &[ThreadStats]) -> ReceiveStats {
    let mut total = ReceiveStats::default();
    for thread in stats {
        total.datagrams += thread.receive.datagrams;
        total.batches += thread.receive.batches;
        total.errors += thread.receive.errors;
        if let Some(drops) = thread.receive.kernel_drops {
            total.kernel_drops = Some(total.kernel_drops.unwrap_or(0) + drops);
        }
    }
    total
}

/// What one thread owns.
struct Reader {
    socket: Arc<UdpSocket>,
    counters: Arc<Counters>,
    ring: KeyRing,
    queue: mpsc::Sender<VerifiedBatch>,
    stop: Arc<AtomicBool>,
}

impl Reader {
    /// Reads batches until stopped or until the owner is gone. The first socket shares its
    /// file description with the owner's non-blocking tokio socket, so a blocking
    /// `recvmmsg` is not available on it: every thread reads without waiting and, when
    /// nothing is queued, waits in `poll` with a timeout, which also bounds how long a stop
    /// takes to be noticed.
    fn run(self) {
        let mut buffers = read_buffers();
        let mut batch = VerifiedBatch::new();
        let ipv6 = is_ipv6(&*self.socket);
        while !self.stop.load(Ordering::Relaxed) {
            let count =
                match read_verified(self.socket.as_raw_fd(), ipv6, &mut buffers, &self.ring, &mut batch) {
                    Ok(count) => count as u64,
                    Err(Errno::EAGAIN | Errno::EINTR) => 0,
                    Err(error) => {
                        // ICMP errors from an earlier send surface here on some kernels.
                        self.counters.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%error, "UDP receive failed");
                        0
                    }
                };
            if count == 0 {
                self.wait();
                continue;
            }
            self.counters.datagrams.fetch_add(count, Ordering::Relaxed);
            self.counters.batches.fetch_add(1, Ordering::Relaxed);
            self.counters.verified.fetch_add(batch.len() as u64, Ordering::Relaxed);
            if batch.is_empty() && batch.rejected() == 0 {
                continue;
            }
            match self.queue.try_send(std::mem::take(&mut batch)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(mut dropped)) => {
                    self.counters.handoff_dropped.fetch_add(dropped.len() as u64, Ordering::Relaxed);
                    // The refusals still reach the owner's counters, with the next batch.
                    batch.add_rejections(dropped.take_rejections());
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }

    /// Waits until the socket is readable or `POLL_MS` has passed.
    fn wait(&self) {
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        if let Err(error) = poll(&mut fds, POLL_MS)
            && error != Errno::EINTR
        {
            tracing::debug!(%error, "poll on a receive socket failed");
        }
    }
}
